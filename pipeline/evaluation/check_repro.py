"""Check that our reference-protocol numbers match the original project's published table.

Reads artifacts/metrics.json, written by the evaluate stage, of this shape:

    {"models": {"autoint": {"reference_protocol": {"ndcg@10": .., "hit_rate@10": .., "users": ..},
                            "rated": {"auc": .., "logloss": .., "ndcg@10": .., "users": ..},
                            "full_catalog": {"recall@10": .., "ndcg@10": .., "hr@10": .., "users": ..}},
                "autoint_mlp": {...}},
     "baselines": {"random": {...same protocols...}, "most_popular": {...}, "positive_rate": {...}, "ease": {...}}}

Every model and metric of REFERENCE_TABLE must be present under models.<model>.reference_protocol, be a
finite number, and lie within REPRO_TOLERANCE of the published value (boundary inclusive).

    python -m pipeline.evaluation.check_repro [--metrics PATH]   # exit 0 pass, 1 mismatch, 2 unreadable file

The file is read checked against its manifest (pipeline.evaluation.metrics_files): a missing, damaged or unreadable
one is one line naming it and the command that remakes it (`make repro` for artifacts/repro/metrics.json).
"""

from __future__ import annotations

import math
from pathlib import Path

import typer

from pipeline import manifests
from pipeline.config import ARTIFACTS_DIR
from pipeline.config_evaluation import REFERENCE_TABLE, REPRO_TOLERANCE
from pipeline.evaluation import metrics_files
from pipeline.files import describe_os_error

PROTOCOL = "reference_protocol"
# |diff| is rounded before comparing so that a value exactly at the tolerance passes despite
# binary floating point (0.66701 - 0.66201 > 0.005 in floats).
DIFF_DECIMALS = 10


def compare(metrics: dict, reference_table: dict = REFERENCE_TABLE, tolerance: float = REPRO_TOLERANCE) -> list[dict]:
    """One row per (model, metric) of `reference_table`: model, metric, ours, reference, diff, ok, problem.

    ours/diff are None when the value is missing or not a finite number; problem is None when
    ok is True, else a one-line description of the failure.
    """
    rows = []
    for model, published in reference_table.items():
        for metric, reference in published.items():
            value, problem = _lookup(metrics, model, metric)
            diff = None if problem else float(value) - reference
            ok = problem is None and round(abs(diff), DIFF_DECIMALS) <= tolerance
            if problem is None and not ok:
                problem = (
                    f"{model} {PROTOCOL} {metric}: ours {value:.5f} vs reference {reference:.5f}, "
                    f"|diff| {abs(diff):.5f} > tolerance {tolerance}"
                )
            rows.append(
                {
                    "model": model,
                    "metric": metric,
                    "ours": None if diff is None else float(value),
                    "reference": reference,
                    "diff": diff,
                    "ok": ok,
                    "problem": problem,
                }
            )
    return rows


def _lookup(metrics: dict, model: str, metric: str) -> tuple[object, str | None]:
    """metrics["models"][model][PROTOCOL][metric] and None, or None and what is wrong."""
    models = metrics.get("models") if isinstance(metrics, dict) else None
    if not isinstance(models, dict) or model not in models:
        return None, f"{model}: model missing from metrics"
    protocols = models[model]
    if not isinstance(protocols, dict) or not isinstance(protocols.get(PROTOCOL), dict):
        return None, f"{model}: {PROTOCOL} missing"
    if metric not in protocols[PROTOCOL]:
        return None, f"{model} {PROTOCOL} {metric}: metric missing"
    value = protocols[PROTOCOL][metric]
    if not _is_number(value):
        return None, f"{model} {PROTOCOL} {metric}: not a number ({value!r})"
    return value, None


def check(metrics: dict, reference_table: dict = REFERENCE_TABLE, tolerance: float = REPRO_TOLERANCE) -> list[str]:
    """Failures of `metrics` against `reference_table` (see `compare`); an empty list means pass."""
    return _failures(compare(metrics, reference_table, tolerance))


def _failures(rows: list[dict]) -> list[str]:
    # A missing model fails every one of its metrics; report it once.
    return list(dict.fromkeys(row["problem"] for row in rows if not row["ok"]))


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _cell(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.5f}" if signed else f"{value:.5f}"


def check_repro_command(
    metrics_path: Path = typer.Option(ARTIFACTS_DIR / "metrics.json", "--metrics", help="metrics.json to check"),
) -> None:
    """Compare reference-protocol NDCG@10 / hit_rate@10 with the original project's published table."""
    try:
        metrics = metrics_files.read(metrics_path)
    except manifests.ArtifactError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    except OSError as error:  # of the file system (permissions, a read-only mount): the module runs without cli.main
        typer.echo(f"error: {describe_os_error(error)}", err=True)
        raise typer.Exit(2) from None
    if not isinstance(metrics, dict):
        typer.echo(f"error: {metrics_path} is not a JSON object", err=True)
        raise typer.Exit(2)

    rows = compare(metrics)
    typer.echo(f"{'model':<12} {'metric':<12} {'ours':>8} {'reference':>9} {'diff':>9}  ok")
    for row in rows:
        typer.echo(
            f"{row['model']:<12} {row['metric']:<12} {_cell(row['ours']):>8} {_cell(row['reference']):>9} "
            f"{_cell(row['diff'], signed=True):>9}  {'yes' if row['ok'] else 'NO'}"
        )
    failures = _failures(rows)
    for failure in failures:
        typer.echo(failure, err=True)
    if failures:
        raise typer.Exit(1)
    typer.echo(f"reproduction within tolerance {REPRO_TOLERANCE}")


if __name__ == "__main__":
    typer.run(check_repro_command)
