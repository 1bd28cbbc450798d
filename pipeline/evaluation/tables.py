"""The metrics table of an evaluation (metrics.json → Markdown), shared by `evaluate`'s summary and the report."""

from __future__ import annotations

from pipeline import config
from pipeline.evaluation.baselines import RETRIEVAL_BASELINE
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


def scorer_label(name: str, part: dict) -> str:
    """A scorer's readable name in one split's results; retrieval alone by the kind that split's evaluation used
    (EASE, or ALS for a large catalogue)."""
    kind = part.get("data", {}).get("retrieval")
    return f"{kind.upper()} (retrieval alone)" if name == RETRIEVAL_BASELINE and kind else label(name)


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
                rows.append(f"| {scorer_label(name, part)} | {split} | " + " | ".join(cells) + " |")
    return "\n".join([head, rule, *rows])


COMPARED_BASELINES = {RETRIEVAL_BASELINE: "retrieval alone", "most_popular": "most popular"}
COMPARED_METRICS = ("recall@10", "ndcg@10")


def versus(ours: dict, theirs: dict) -> str:
    """The relative change of Recall@10 and NDCG@10 from `theirs` to `ours`, e.g. "+6.7 % / +2.9 %"."""
    return " / ".join(
        f"{(ours[metric] / theirs[metric] - 1) * 100:+.1f} %" if theirs[metric] else "–" for metric in COMPARED_METRICS
    )


def comparison_table(results: dict) -> str:
    """Every model's full-catalogue Recall@10 and NDCG@10 against retrieval alone and most popular on the same
    split, and those two baselines' own numbers."""
    against = " | ".join(f"vs {title} (Recall / NDCG)" for title in COMPARED_BASELINES.values())
    rows = [
        f"| scorer | split | Recall@10 | NDCG@10 | {against} |",
        "|---|---|---:|---:|" + "---|" * len(COMPARED_BASELINES),
    ]
    for split, part in splits_of(results):
        compared = {name: part["baselines"].get(name, {}).get("full_catalog") for name in COMPARED_BASELINES}
        scored = {name: protocols.get("full_catalog") for name, protocols in part["models"].items()} | compared
        for name, ours in scored.items():
            if ours:
                changes = [
                    "" if name == base or not theirs else versus(ours, theirs) for base, theirs in compared.items()
                ]
                numbers = " | ".join(f"{ours[metric]:.4f}" for metric in COMPARED_METRICS)
                rows.append(f"| {scorer_label(name, part)} | {split} | {numbers} | " + " | ".join(changes) + " |")
    return "\n".join(rows)
