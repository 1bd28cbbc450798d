"""The metrics table of an evaluation (metrics.json → Markdown), shared by `evaluate`'s summary and the report."""

from __future__ import annotations

from pipeline import config
from pipeline.evaluation.metrics import PROTOCOLS
from pipeline.labels import label


def splits_of(results: dict) -> list[tuple[str, dict]]:
    """(split, that split's results) for every evaluated split: metrics.json keeps the random split's at the
    top level and the temporal split's under "temporal"."""
    return [
        (split, results if split == "random" else results[split])
        for split in config.SPLITS
        if split == "random" or split in results
    ]


def cell(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def metrics_table(results: dict) -> str:
    """One table: every model and baseline of every evaluated split under every protocol."""
    columns = [(protocol, name) for protocol, names in PROTOCOLS.items() for name in names]
    head = "| scorer | split | " + " | ".join(f"{p.replace('_', ' ')} {n}" for p, n in columns) + " |"
    rule = "|---|---|" + "---:|" * len(columns)
    rows = []
    for split, part in splits_of(results):
        for group in ("models", "baselines"):
            for name, protocols in part[group].items():
                cells = [cell(protocols.get(protocol, {}).get(metric)) for protocol, metric in columns]
                rows.append(f"| {label(name)} | {split} | " + " | ".join(cells) + " |")
    return "\n".join([head, rule, *rows])
