"""Damaged inputs of the stages between preprocess and the report (issue #22): the processed tables and encoders.json,
metrics.json with its predictions/ and top10/, the report's pictures, tuning.json. Each is recorded in a manifest
when its stage writes it; a damaged one read by a later stage ends in one line naming it and the command that
remakes it (exit 2), and make's sweep moves it aside with the file Make remakes it through."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline import cli, config, manifests
from pipeline.cli import app
from pipeline.evaluation import evaluate, tune
from tests.test_make_rebuilds_damaged import recording
from tests.test_makefile import make, tree  # noqa: F401  (tree: the fixture of the repository's copy)

REPO = Path(__file__).resolve().parent.parent
EVALUATED = "elsewhere"  # a folder make does not evaluate into


def dirs(root: Path) -> list[str]:
    return ["--processed-dir", str(root / "data" / "processed"), "--models-dir", str(root / "artifacts" / "models")]


@pytest.fixture(scope="module")
def evaluated_run(small_run, tmp_path_factory) -> Path:
    """The small run (its tables written by processed.save_processed) evaluated again by the evaluate command into
    a folder of its own, with the report of that folder."""
    root = tmp_path_factory.mktemp("evaluated") / "run"
    shutil.copytree(small_run, root)
    out = root / EVALUATED
    result = CliRunner().invoke(app, ["evaluate", "--model", "autoint", *dirs(root), "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["report", "--out-dir", str(out), "--models-dir", str(root / "artifacts/models")])
    assert result.exit_code == 0, result.output
    return root


@pytest.fixture
def run(evaluated_run, tmp_path) -> Path:
    """A copy for one test to damage (copytree keeps mtimes, so every manifest still matches its file)."""
    shutil.copytree(evaluated_run, tmp_path / "run")
    return tmp_path / "run"


def manifest_of(path: Path) -> dict:
    return json.loads(manifests.manifest_path(path).read_text())


def truncate(path: Path, size: int = 100) -> None:
    with open(path, "r+b") as stream:
        stream.truncate(size)


def one_line(result, *words: str) -> str:
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and "Traceback" not in result.output
    line = result.stderr.strip()
    assert line.startswith("error: ") and "\n" not in line, line
    for word in words:
        assert word in line, line
    return line


def through_main(monkeypatch, capsys, *args: str) -> str:
    """`python -m pipeline <args>` in this process (cli.main, what __main__ runs): its one stderr line, exit 2."""
    monkeypatch.setattr(sys, "argv", ["pipeline", *args])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    captured = capsys.readouterr()
    assert exited.value.code == 2 and captured.out == "", captured
    line = captured.err.strip()
    assert line.startswith("error: ") and "\n" not in line, line
    return line


def evaluate_command_line(root: Path) -> str:
    """What evaluated_run's evaluation was, as its manifests should name it."""
    return (
        f"python -m pipeline evaluate --path product --model autoint --processed-dir {root}/data/processed "
        f"--models-dir {root}/artifacts/models --out-dir {root}/{EVALUATED}"
    )


def test_every_output_records_the_command_that_remakes_it_and_the_make_target_it_is_made_through(evaluated_run):
    processed = evaluated_run / "data" / "processed"
    for name in ("train", "test", "temporal_train", "temporal_test", "movies", "users"):
        assert manifest_of(processed / f"{name}.parquet")["target"] == "encoders.json"
        assert manifest_of(processed / f"{name}.parquet")["producer"] == "make preprocess"
    assert manifest_of(processed / "encoders.json")["producer"] == "make preprocess"
    assert manifest_of(processed / "encoders.json")["target"] is None

    out = evaluated_run / EVALUATED
    command = evaluate_command_line(evaluated_run)
    assert manifest_of(out / "metrics.json")["producer"] == command
    for table in ("predictions/autoint.parquet", "top10/most_popular.parquet"):
        assert manifest_of(out / table)["producer"] == command
        assert manifest_of(out / table)["target"] == "../metrics.json"
    assert manifest_of(out / "report.md")["producer"] == "make report"
    for picture in ("metrics.png", "loss_curves.png"):
        assert manifest_of(out / picture)["producer"] == "make report"
        assert manifest_of(out / picture)["target"] == "report.md"
    assert not list(out.glob("timings/*.manifest.json"))  # the report reads every *.json there
    manifests.check(out / "metrics.png", deep=True)  # recorded as it is, byte for byte


def test_the_make_target_of_each_evaluation_folder_else_the_command_line(monkeypatch):
    folders = {config.ARTIFACTS_DIR: "make evaluate", config.STUDY_DIR: "make study", config.REPRO_DIR: "make repro"}
    for folder, target in folders.items():
        assert evaluate.producer("product", ["autoint"], Path("x"), Path("y"), folder) == target
    monkeypatch.chdir(config.ROOT)  # as make runs it: the folder spelled relative to the repository
    assert evaluate.producer("study", [], config.PROCESSED_DIR, config.MODELS_DIR, Path("artifacts/study")) == (
        "make study"
    )
    line = evaluate.producer("product", [], config.PROCESSED_DIR, Path("my models"), Path("artifacts/synthetic-1m"))
    assert shlex.split(line) == [
        *("python", "-m", "pipeline", "evaluate", "--path", "product"),
        *("--models-dir", "my models", "--out-dir", "artifacts/synthetic-1m"),
    ]


def test_a_truncated_encoders_json_stops_evaluate_in_one_line_naming_make_preprocess(run):
    truncate(run / "data" / "processed" / "encoders.json")
    result = CliRunner().invoke(app, ["evaluate", "--model", "autoint", *dirs(run), "--out-dir", str(run / "again")])
    one_line(result, "encoders.json is damaged: 100 bytes where its manifest says", "rebuild it with `make preprocess`")
    assert not (run / "again").exists()


def test_an_encoders_json_damaged_before_it_had_a_manifest_cannot_be_read_and_names_make_preprocess(run, tmp_path):
    encoders = run / "data" / "processed" / "encoders.json"
    manifests.forget(encoders)
    encoders.write_text('{"fields": ["user_id"')
    result = CliRunner().invoke(app, ["evaluate", *dirs(run), "--out-dir", str(tmp_path / "out")])
    one_line(result, "encoders.json cannot be read (JSONDecodeError", "`make preprocess`")


def test_a_damaged_train_table_stops_evaluate_and_tune_in_one_line_naming_make_preprocess(run, tmp_path):
    table = run / "data" / "processed" / "train.parquet"
    table.write_bytes(b"PAR1" + b"\0" * (table.stat().st_size - 4))  # same size: only the hash tells
    result = CliRunner().invoke(app, ["evaluate", "--model", "autoint", *dirs(run), "--out-dir", str(tmp_path / "e")])
    one_line(result, "train.parquet is damaged: its sha256", "`make preprocess`")
    result = CliRunner().invoke(app, ["tune", "--only", "0", *dirs(run)[:2], "--out", str(tmp_path / "tuning.json")])
    one_line(result, "train.parquet is damaged", "`make preprocess`")


def test_a_table_that_is_not_parquet_and_has_no_manifest_is_one_line_too(run, tmp_path):
    table = run / "data" / "processed" / "users.parquet"
    manifests.forget(table)
    table.write_text("not a table\n")
    result = CliRunner().invoke(app, ["evaluate", "--model", "autoint", *dirs(run), "--out-dir", str(tmp_path / "e")])
    one_line(result, "users.parquet cannot be read (ArrowInvalid", "`make preprocess`")


def test_a_damaged_metrics_json_stops_report_and_check_repro_naming_the_evaluation_that_made_it(
    run, evaluated_run, monkeypatch, capsys
):
    metrics = run / EVALUATED / "metrics.json"
    truncate(metrics, 50)
    command = evaluate_command_line(evaluated_run)
    line = through_main(monkeypatch, capsys, "report", "--out-dir", str(run / EVALUATED), *dirs(run)[2:])
    assert f"{metrics} is damaged: 50 bytes where its manifest says" in line and f"`{command}`" in line, line
    one_line(CliRunner().invoke(app, ["check-repro", "--metrics", str(metrics)]), "metrics.json is damaged", command)


def test_a_damaged_metrics_json_where_make_evaluates_names_make_evaluate_and_make_repro(run):
    """The folders of config.ARTIFACTS_DIR and REPRO_DIR, through `python -m pipeline` with the run as its root (the
    small run's artifacts/metrics.json was written without a manifest: only reading it tells)."""
    (run / "artifacts" / "metrics.json").write_text('{"models": ')
    repro = run / "artifacts" / "repro" / "metrics.json"
    repro.parent.mkdir()
    repro.write_text("[")
    environment = {**os.environ, "ML_PIPELINE_ROOT": str(run)}
    for args, words in (
        (["pipeline", "report"], ("artifacts/metrics.json cannot be read (JSONDecodeError", "`make evaluate`")),
        (["pipeline.evaluation.check_repro", "--metrics", str(repro)], ("repro/metrics.json", "`make repro`")),
    ):
        done = subprocess.run(
            [sys.executable, "-m", *args], cwd=REPO, env=environment, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 2 and done.stdout == "" and len(done.stderr.splitlines()) == 1, done.stderr
        assert all(word in done.stderr for word in words), done.stderr


def test_a_damaged_tuning_json_stops_tune_only_before_it_trains_and_the_report_names_make_tune(
    small_processed, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "tuning.json"
    candidate = tune.search_space()[0]
    records = [tune.record_of(candidate.cfg, 0, 1.0, {"rated": {"auc": 0.5}})]
    header = {"validation": {"fit_rows": 1, "validation_rows": 1, "users": 1}, "baselines": [], "candidates": []}
    tune.save_candidate(out, candidate, header, records, [candidate])
    assert manifest_of(out)["producer"] == "make tune"
    truncate(out, 30)
    monkeypatch.setattr(tune, "run_candidate", lambda *args, **kwargs: pytest.fail("trained on a damaged tuning.json"))
    result = CliRunner().invoke(
        app, ["tune", "--only", "0", "--processed-dir", str(small_processed), "--out", str(out)]
    )
    one_line(result, "tuning.json is damaged: 30 bytes where its manifest says", "`make tune`")
    line = through_main(monkeypatch, capsys, "report", "--out-dir", str(tmp_path))
    assert "tuning.json is damaged" in line and "`make tune`" in line


def sweep(root: Path) -> list[str]:
    """What make runs first: the sweep with the system's Python, in the run's folder."""
    done = subprocess.run(
        ["python3", "-m", "pipeline.manifests", "sweep", "data", "artifacts", EVALUATED],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout == "", done.stderr
    return done.stderr.splitlines()


def test_the_sweep_moves_a_damaged_table_aside_with_encoders_json_and_a_damaged_prediction_with_metrics_json(run):
    processed, out = run / "data" / "processed", run / EVALUATED
    assert sweep(run) == []
    truncate(processed / "test.parquet")
    truncate(out / "predictions" / "autoint.parquet")
    (line_table, line_prediction) = sweep(run)
    assert "data/processed/test.parquet is damaged" in line_table and "(`make preprocess`)" in line_table
    assert not (processed / "test.parquet").exists() and not (processed / "encoders.json").exists()
    assert (processed / ".damaged-test.parquet").is_file() and (processed / ".damaged-encoders.json").is_file()
    assert (processed / "train.parquet").is_file()  # the intact tables stay; preprocess rewrites them
    assert f"{EVALUATED}/predictions/autoint.parquet is damaged" in line_prediction
    assert not (out / "metrics.json").exists() and (out / ".damaged-metrics.json").is_file()
    assert (out / "report.md").is_file()  # make remakes it because metrics.json is newer, not by the sweep


def test_a_damaged_picture_moves_report_md_aside(run):
    out = run / EVALUATED
    (out / "metrics.png").write_bytes(b"\x89PNG not a picture")
    (line,) = sweep(run)
    assert "metrics.png is damaged" in line and "(`make report`)" in line
    assert not (out / "report.md").exists() and (out / ".damaged-report.md").is_file()


def test_make_runs_preprocess_again_when_a_table_is_damaged(tree, small_processed):  # noqa: F811
    """The real Makefile on a copy of the repository whose stages are a stand-in, with the tables preprocess wrote."""
    shutil.copytree(small_processed, tree / "data" / "processed")
    recording(tree)
    truncate(tree / "data" / "processed" / "temporal_test.parquet")
    done, stages = make(tree, "all")
    assert done.returncode == 0, done.stderr
    assert "temporal_test.parquet is damaged" in done.stderr and ".damaged-encoders.json" in done.stderr
    # encoders.json is what every later stage is made from: all of make all runs again, preprocess first.
    assert [stage.split()[0] for stage in stages] == [
        *("preprocess", "train", "train", "candidates", "train", "train"),
        *("retrieval", "evaluate", "report", *["export"] * 4, "precompute", "recommend"),
    ]
