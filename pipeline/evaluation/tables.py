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


def retrieval_baseline(part: dict) -> str:
    """The baseline one split's two-stage rows are held against: EASE alone (RETRIEVAL_BASELINE), or, where the
    catalogue was too large to fit EASE (config.RETRIEVAL["ease_max_movies"]), the retrieval stage alone."""
    if RETRIEVAL_BASELINE in part["baselines"]:
        return RETRIEVAL_BASELINE
    return part.get("data", {}).get("retrieval", RETRIEVAL_BASELINE)


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


# The retrieval models alone (EASE, the baseline the targets name; ALS, the retrieval stage of large catalogues)
# and most popular: what the comparison table holds every model against.
COMPARED_BASELINES = {"ease": "EASE", "als": "ALS", "most_popular": "most popular"}
COMPARED_METRICS = ("recall@10", "ndcg@10")


def versus(ours: dict, theirs: dict) -> str:
    """The relative change of Recall@10 and NDCG@10 from `theirs` to `ours`, e.g. "+6.7 % / +2.9 %"."""
    return " / ".join(
        f"{(ours[metric] / theirs[metric] - 1) * 100:+.1f} %" if theirs[metric] else "–" for metric in COMPARED_METRICS
    )


def comparison_table(results: dict) -> str:
    """Every model's full-catalogue Recall@10 and NDCG@10 against the retrieval models alone and most popular on
    the same split, and those baselines' own numbers (a baseline a split has not: blank)."""
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
                rows.append(f"| {label(name)} | {split} | {numbers} | " + " | ".join(changes) + " |")
    return "\n".join(rows)
