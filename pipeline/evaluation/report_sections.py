"""Report sections of the study's side results, each from one JSON file: the newcomer curve
(study/newcomers.json, make newcomers) and the LiteRT files (litert_bench.json, make bench-litert)."""

from __future__ import annotations

from pipeline import config
from pipeline.labels import label

NEWCOMER_TARGET = 1.03  # the served list's Recall@10 and NDCG@10 over the better baseline's, at every k


def newcomer_scorer_label(name: str) -> str:
    if name == "served":
        return "served: ranker + gender, age, occupation, popular candidates, blended with popularity and retrieval"
    if name == "group_popular":
        return "most popular in their gender and age group (the served blend's prior, alone)"
    model, _, rest = name.partition(", ")
    return f"{label(model)}, {rest}" if rest else label(name)


def newcomer_targets(results: dict, n: int = config.TOP_N) -> list[str]:
    """One line per (k, metric): the served list against the better of most popular and EASE."""
    lines = []
    for k, at in results["test"].items():
        for metric in (f"recall@{n}", f"ndcg@{n}"):
            best_name = max(results["baselines"], key=lambda name: at[name][metric])
            best, ours = at[best_name][metric], at["served"][metric]
            ratio = ours / best if best else float("inf")
            met = "met" if ratio >= NEWCOMER_TARGET else "**missed**"
            lines.append(
                f"{met}: {k} given, {metric} {ours:.4f} = {ratio:.3f} × {label(best_name)}'s {best:.4f} "
                f"(target ≥ {NEWCOMER_TARGET} ×)"
            )
    return lines


def newcomers_section(results: dict, n: int = config.TOP_N) -> list[str]:
    given = ", ".join(str(k) for k in results["given"])
    lines = [
        "## New people: the newcomer curve (`make newcomers`, part of the study)",
        "",
        f"{results['test_users']:,} test and {results['validation_users']:,} validation users were held out of every "
        f"stage's training (retrieval and ranker, trained on the {results['training_rows']:,} training rows of the "
        f"others). Each is given only their first k = {given} liked movies by time, in the context of the k-th "
        "rating; their later liked movies are what a Top-10 should find, and only the given movies are excluded. "
        f"Every k scores the same people: those with more than {max(results['given'])} liked movies. The served list "
        "adds the movies most liked by the person's gender and age group to the ranker's candidates and orders "
        "them by the ranker's score blended with that popularity and retrieval's own score, by settings per k chosen "
        "on the validation "
        "users (config.NEWCOMER_LISTS).",
        "",
        f"| k given | scorer | Recall@{n} | NDCG@{n} | HR@{n} |",
        "|---:|---|---:|---:|---:|",
    ]
    for k, at in results["test"].items():
        for name, values in at.items():
            if name != "users":
                lines.append(
                    f"| {k} | {newcomer_scorer_label(name)} | {values[f'recall@{n}']:.4f} | "
                    f"{values[f'ndcg@{n}']:.4f} | {values[f'hr@{n}']:.4f} |"
                )
    users = {at["users"] for at in results["test"].values()}
    lines += ["", f"Test users scored at every k: {', '.join(f'{u:,}' for u in sorted(users))}.", ""]
    lines += ["![newcomer curve](newcomers.png)", "", "### Targets", ""]
    lines += [f"- {line}" for line in newcomer_targets(results, n)]
    lines += [
        "",
        "### The served settings, chosen on the validation users",
        "",
        "For each k the grid of `popular` (popular candidates added) × `weight` (popularity against the ranker) × "
        "`retrieval` (retrieval's score against the ranker) was scored on the validation newcomers; the setting "
        "furthest above the better of most popular and EASE in both "
        f"Recall@{n} and NDCG@{n} was chosen.",
        "",
        f"| k given | most popular | EASE | chosen | its Recall@{n} / NDCG@{n} | × better baseline | served |",
        "|---:|---|---|---|---|---:|---|",
    ]
    for k, found in results["validation"].items():
        pair = lambda values: f"{values[f'recall@{n}']:.4f} / {values[f'ndcg@{n}']:.4f}"  # noqa: E731
        chosen = found["settings"][found["chosen"]]
        worst = min(
            chosen[metric] / max(baseline[metric] for baseline in found["baselines"].values())
            for metric in (f"recall@{n}", f"ndcg@{n}")
        )
        served = results["served"][k]
        lines.append(
            f"| {k} | {pair(found['baselines']['most_popular'])} | {pair(found['baselines']['ease'])} | "
            f"{found['chosen']} | {pair(chosen)} | {worst:.3f} | popular {served['popular']}, weight "
            f"{served['weight']:g}, retrieval {served['retrieval']:g} |"
        )
    stale = [k for k, entry in results["chosen_on_validation"].items() if entry != results["served"].get(k)]
    if stale:
        lines += ["", f"**config.NEWCOMER_LISTS differs from the validation choice at k = {', '.join(stale)}.**"]
    return lines + [""]


def litert_section(bench: dict) -> list[str]:
    """make bench-litert's tables: the LiteRT files ranking as Keras, and the quantized variants."""
    lines = [
        "## Serving without TensorFlow: the LiteRT files (`make bench-litert`, part of the study)",
        "",
        "| check | compared | same Top-10 |",
        "|---|---:|---:|",
    ]
    for check, result in bench["same_top10"]["checks"].items():
        compared = result.get("users", result.get("lists"))
        lines.append(f"| {check} | {compared:,} | {result['same_top10']:,} |")
    lines += [
        "",
        f"Largest score difference, float32 LiteRT vs Keras: {bench['same_top10']['largest_score_difference']:.1e}.",
        "",
        "| model | runtime | file | score one list / user's catalogue | Recall@10 | NDCG@10 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, variants in bench["variants"].items():
        for variant, entry in variants.items():
            metrics = [f"{entry[key]:.4f}" if key in entry else "" for key in ("recall_at_10", "ndcg_at_10")]
            lines.append(
                f"| {name} | {variant} | {entry['file_bytes'] / 1e6:.2f} MB | {entry['score_one_ms']:.2f} ms | "
                + " | ".join(metrics)
                + " |"
            )
    worth = {name: variants for name, variants in bench["quantized_worth_serving"].items() if variants}
    lines += [
        "",
        f"Served: {bench['served_variant']}. Quantized variants within 0.001 of float32 on both metrics and faster: "
        + (", ".join(f"{name}: {', '.join(v)}" for name, v in worth.items()) if worth else "none")
        + f". Load average {bench['machine']['load_average_before'][0]} before, "
        f"{bench['machine']['load_average_after'][0]} after.",
        "",
    ]
    return lines
