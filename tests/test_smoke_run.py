"""A whole small run: every artifact is written, the report holds its sections, the reference check fails on
generated data as it must."""

import json

from typer.testing import CliRunner

from pipeline import config
from tests.conftest import SMALL_RUN_MODELS


def test_small_run_writes_every_artifact(small_run):
    artifacts = small_run / "artifacts"
    results = json.loads((artifacts / "metrics.json").read_text())
    assert set(results["models"]) == set(SMALL_RUN_MODELS["random"])
    assert set(results["temporal"]["models"]) == set(SMALL_RUN_MODELS["temporal"])
    assert set(results["baselines"]) == {"random", "most_popular", "positive_rate", "ease", "als"}
    for name in (*config.REFERENCE_MODELS, "most_popular", "ease"):
        assert (artifacts / "predictions" / f"{name}.parquet").is_file()
    for name in (*SMALL_RUN_MODELS["random"], "ease"):
        assert (artifacts / "top10" / f"{name}.parquet").is_file()
    assert (artifacts / "top10" / "temporal" / "autoint_two_stage.parquet").is_file()
    # A two-stage model orders candidates: it has full-catalogue numbers only.
    two_stage = results["models"]["autoint_mlp_two_stage"]
    assert set(two_stage) == {"full_catalog", "train_seconds"}
    for name in ("report.md", "loss_curves.png", "metrics.png"):
        assert (artifacts / name).stat().st_size > 0
    report = (artifacts / "report.md").read_text()
    assert "### Targets" in report and "## Training" in report
    table = report.split("## `make all`: the product models")[1].split("\n\n")[1]
    assert "| AutoInt+MLP (two-stage) | random |" in table and "| AutoInt (two-stage) | temporal |" in table
    assert "| EASE (retrieval alone) | random |" in table and "| most popular | temporal |" in table
    assert "AutoInt+MLP (two-stage) random split full-catalogue recall@10" in report


def test_reference_only_evaluation_and_reproduction_check(small_run, tmp_path):
    from pipeline.cli import app

    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--path",
            "reference",
            "--processed-dir",
            str(small_run / "data" / "processed"),
            "--models-dir",
            str(small_run / "artifacts" / "models"),
            "--out-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "metrics.json").read_text())
    assert set(results["models"]) == set(config.REFERENCE_MODELS) and "temporal" not in results
    # Generated data is far from the reference's numbers: the check must say so and fail.
    check = CliRunner().invoke(app, ["check-repro", "--metrics", str(tmp_path / "metrics.json")])
    assert check.exit_code == 1 and "autoint" in check.output
