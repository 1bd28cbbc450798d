import json
import re
from pathlib import Path

from pipeline import config


def test_small_run_writes_every_artifact(small_run):
    artifacts = small_run / "artifacts"
    results = json.loads((artifacts / "metrics.json").read_text())
    assert set(results["models"]) == {*config.SEED_MODELS, *config.RANKING_MODELS}
    assert set(results["temporal"]["models"]) == {"autoint_ranking"}
    assert set(results["baselines"]) == {"random", "most_popular", "positive_rate", "ease"}
    for name in ("autoint", "autoint_mlp", "autoint_ranking", "most_popular"):
        assert (artifacts / "predictions" / f"{name}.parquet").is_file()
        assert (artifacts / "top10" / f"{name}.parquet").is_file()
    assert (artifacts / "top10" / "temporal" / "autoint_ranking.parquet").is_file()
    for name in ("report.md", "loss_curves.png", "metrics.png"):
        assert (artifacts / name).stat().st_size > 0
    report = (artifacts / "report.md").read_text()
    assert "## Targets" in report
    # One table holds every model and baseline of both splits.
    table = report.split("## Every model and baseline under every protocol and split")[1].split("\n\n")[1]
    assert "| AutoInt ranking | random |" in table and "| AutoInt ranking | temporal |" in table
    assert "| EASE (item-item, reference) | random |" in table and "| most popular | temporal |" in table
    assert "the EASE reference on the temporal split reaches" in report


def test_makefile_trains_the_models_config_evaluates():
    makefile = (Path(__file__).parent.parent / "Makefile").read_text()
    listed = {split: tuple(re.search(rf"^{split.upper()}_MODELS\s*:=\s*(.*)$", makefile, re.M).group(1).split())
              for split in config.SPLITS}
    assert listed == config.EVALUATED_MODELS


def test_seed_only_evaluation_and_reproduction_check(small_run, tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    result = CliRunner().invoke(app, ["evaluate", "--seed-only", "--processed-dir", str(small_run / "data" / "processed"),
                                      "--models-dir", str(small_run / "artifacts" / "models"), "--out-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "metrics.json").read_text())
    assert set(results["models"]) == set(config.SEED_MODELS) and "temporal" not in results
    # Generated data is far from the seed's numbers: the check must say so and fail.
    check = CliRunner().invoke(app, ["check-repro", "--metrics", str(tmp_path / "metrics.json")])
    assert check.exit_code == 1 and "autoint" in check.output
