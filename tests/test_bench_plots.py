"""The benchmarks' plots are drawn from their JSON as the benchmarks write it, whole, even with parts missing."""

from __future__ import annotations

import matplotlib.image

from pipeline.bench import plots
from pipeline.bench.scale_bench import STAGES


def assert_picture(path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = matplotlib.image.imread(path).shape
    assert width > 500 and height > 300
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left beside it


def test_training_at_scale_draws_workers_and_input_alone(tmp_path):
    run = {"rows_per_s": 12_000.0, "peak_rss_gib": [1.1, 1.2]}
    bench = {
        "synthetic": {
            "5M": {"ratings": 5_000_000, "runs": {"1": {"rows_per_s": 9_000.0, "peak_rss_gib": 1.4}, "2": run}},
            "1M": {
                "ratings": 1_000_000,
                "runs": {"1": {"rows_per_s": 10_000.0, "peak_rss_gib": 0.9}},
                "input_only": {"model": "autoint", "rows_per_s": 90_000.0, "peak_rss_gib": 0.5},
            },
        }
    }
    path = tmp_path / "train_bench.png"
    plots.training_at_scale(bench, path)
    assert_picture(path)


def test_stages_at_scale_skips_stages_not_measured(tmp_path):
    measured = {"seconds": 120.0, "peak_rss_gib": 2.0}
    bench = {
        "sizes": {
            "1M": {"ratings": 1_000_000, "stages": {"generate": measured, "ranker epoch": {"rows_per_s": 5.0}}},
            "5M": {"ratings": 5_000_000, "stages": {"generate": measured, "evaluate": {**measured, "seconds": 30}}},
        }
    }
    path = tmp_path / "scale_bench.png"
    plots.stages_at_scale(bench, STAGES, path)
    assert_picture(path)
