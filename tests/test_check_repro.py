"""The reproduction check: tolerance, missing pieces, and the command's table and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from pipeline.config_evaluation import REFERENCE_TABLE, REPRO_TOLERANCE
from pipeline.evaluation.check_repro import check, check_repro_command

ROOT = Path(__file__).resolve().parent.parent


def results(shift: float = 0.0) -> dict:
    """A metrics.json payload whose reference-protocol numbers are the reference's plus `shift`."""
    protocols = {
        model: {
            "reference_protocol": {**{m: v + shift for m, v in published.items()}, "users": 6000},
            "rated": {"auc": 0.8, "logloss": 0.5, "ndcg@10": 0.9, "users": 6000},
        }
        for model, published in REFERENCE_TABLE.items()
    }
    return {"models": protocols, "baselines": {"random": protocols["autoint"]}}


@pytest.fixture
def run(tmp_path):
    app = typer.Typer()
    app.command()(check_repro_command)

    def invoke(payload: dict | str | None):
        path = tmp_path / "metrics.json"
        if payload is not None:
            path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
        return CliRunner().invoke(app, ["--metrics", str(path)])

    return invoke


def test_reference_table_covers_both_reference_models():
    assert set(REFERENCE_TABLE) == {"autoint", "autoint_mlp"}
    assert REPRO_TOLERANCE == 0.005


@pytest.mark.parametrize("shift", [0.0, 0.004, -0.004, 0.005, -0.005])
def test_within_tolerance_passes_boundary_included(shift):
    assert check(results(shift)) == []


@pytest.mark.parametrize("shift", [0.0051, -0.006, 0.1])
def test_outside_tolerance_fails_for_every_metric(shift):
    failures = check(results(shift))
    assert len(failures) == 4
    assert all("tolerance" in failure for failure in failures)


def test_one_metric_off_names_that_metric():
    metrics = results()
    metrics["models"]["autoint_mlp"]["reference_protocol"]["hit_rate@10"] -= 0.02
    (failure,) = check(metrics)
    assert "autoint_mlp" in failure and "hit_rate@10" in failure


def test_tolerance_and_table_are_parameters():
    assert check(results(0.004), tolerance=0.001) != []
    assert (
        check({"models": {"x": {"reference_protocol": {"ndcg@10": 0.5}}}}, reference_table={"x": {"ndcg@10": 0.5}})
        == []
    )


def test_missing_model_is_reported_once():
    metrics = results()
    del metrics["models"]["autoint"]
    assert check(metrics) == ["autoint: model missing from metrics"]
    assert len(check({})) == 2


def test_missing_protocol_metric_or_non_number_fails():
    metrics = results()
    del metrics["models"]["autoint"]["reference_protocol"]
    del metrics["models"]["autoint_mlp"]["reference_protocol"]["ndcg@10"]
    failures = check(metrics)
    assert failures == ["autoint: reference_protocol missing", "autoint_mlp reference_protocol ndcg@10: metric missing"]
    for bad in ("0.66", None, True, float("nan"), float("inf")):
        metrics = results()
        metrics["models"]["autoint"]["reference_protocol"]["ndcg@10"] = bad
        assert check(metrics) == [f"autoint reference_protocol ndcg@10: not a number ({bad!r})"]


def test_command_passes_and_prints_the_table(run):
    result = run(results(0.001))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["model", "metric", "ours", "reference", "diff", "ok"]
    assert lines[1].split() == ["autoint", "ndcg@10", "0.66301", "0.66201", "+0.00100", "yes"]
    assert len(lines) == 6 and result.stderr == ""


def test_command_fails_with_one_stderr_line_per_failure(run):
    metrics = results(0.01)
    del metrics["models"]["autoint_mlp"]
    result = run(metrics)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "autoint reference_protocol ndcg@10: ours 0.67201 vs reference 0.66201, |diff| 0.01000 > tolerance 0.005",
        "autoint reference_protocol hit_rate@10: ours 0.64026 vs reference 0.63026, |diff| 0.01000 > tolerance 0.005",
        "autoint_mlp: model missing from metrics",
    ]
    assert "NO" in result.stdout


@pytest.mark.parametrize(
    "payload, message", [(None, "is missing"), ("{not json", "cannot be read"), ("[1, 2]", "not a JSON object")]
)
def test_command_unreadable_file_exits_2_with_one_line(run, payload, message):
    result = run(payload)
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr
    assert result.stdout == ""


def test_runs_as_a_module(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(results(-0.002)))
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.evaluation.check_repro", "--metrics", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "autoint_mlp" in done.stdout
