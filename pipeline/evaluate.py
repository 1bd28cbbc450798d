"""Trained models and baselines → metrics under three protocols, a report with plots, and the raw
predictions and Top-10 lists from which anyone can recompute every number.

Outputs (under artifacts/):
  metrics.json                       {"models": {name: {protocol: {metric: value}}}, "baselines": {...}}
  report.md, loss_curves.png, metrics.png
  predictions/<name>.parquet         test rows: user_id, movie_id, rating, label, score (raw MovieLens IDs)
  top10/<name>.parquet               full-catalog Top-10: user_id, rank, movie_id, score (raw IDs)
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import typer

from pipeline import baselines, config, metrics
from pipeline.files import atomic_path, write_json, write_parquet, write_text
from pipeline.preprocess import Processed, load_processed
from pipeline.scoring import ScoreFn, latest_context, score_rows, top_n

PROTOCOLS = {
    "seed_protocol": ("ndcg@10", "hit_rate@10"),
    "rated": ("auc", "logloss", "ndcg@10"),
    "full_catalog": ("recall@10", "ndcg@10", "hr@10"),
}
LABELS = {"autoint": "AutoInt", "autoint_mlp": "AutoInt+MLP", "autoint_tuned": "AutoInt (tuned)",
          "autoint_mlp_tuned": "AutoInt+MLP (tuned)", "autoint_ranking": "AutoInt ranking",
          "autoint_mlp_ranking": "AutoInt+MLP ranking", "random": "random",
          "most_popular": "most popular", "positive_rate": "per-movie positive rate (smoothed)",
          "ease": "EASE (item-item, reference)"}


def label(key: str) -> str:
    """A readable name for a model or baseline; a split suffix such as " (temporal)" is kept."""
    name, _, suffix = key.partition(" ")
    return LABELS.get(name, name) + (f" {suffix}" if suffix else "")


def baseline_score_fn(name: str, train: pd.DataFrame) -> ScoreFn:
    scorer = baselines.fit_baseline(name, train)
    return lambda inputs: scorer(inputs["user_id"], inputs["movie_id"])


def test_users(data: Processed) -> pd.DataFrame:
    """Each test user's fields plus the context of that user's most recent training rating."""
    users = data.users[data.users["user_id"].isin(data.test["user_id"].unique())]
    return users.join(latest_context(data.train), on="user_id", how="inner")


def evaluate_scorer(score_fn: ScoreFn, data: Processed, users: pd.DataFrame, k: int = config.TOP_N):
    """One scorer under every protocol. Returns (metrics, test predictions, full-catalog top-k), in codes."""
    predictions = data.test[["user_id", "movie_id", "rating", "label"]].copy()
    predictions["score"] = score_rows(score_fn, data.test)
    top = top_n(score_fn, users, data.movies, exclude=data.train[["user_id", "movie_id"]], n=k, progress=True)
    relevant = data.test.loc[data.test["label"] == 1, ["user_id", "movie_id"]]
    result = {
        "seed_protocol": metrics.seed_protocol(predictions, k),
        "rated": metrics.rated_metrics(predictions, k),
        "full_catalog": metrics.full_catalog_metrics(top, relevant, k),
    }
    return result, predictions, top


def to_raw_ids(frame: pd.DataFrame, data: Processed) -> pd.DataFrame:
    out = frame.copy()
    for field in ("user_id", "movie_id"):
        out[field] = data.encoders.decode(field, out[field]).astype("int64")
    return out


def beaten_by(results: dict) -> list[str]:
    """Plain sentences for every (model, baseline, metric) where the model does not beat the baseline."""
    lines = []
    for model, protocols in results["models"].items():
        for baseline, base_protocols in results["baselines"].items():
            for protocol, names in PROTOCOLS.items():
                for name in names:
                    ours, theirs = protocols[protocol].get(name), base_protocols[protocol].get(name)
                    if ours is None or theirs is None:
                        continue
                    worse = ours >= theirs if name == "logloss" else ours <= theirs
                    if worse:
                        lines.append(f"{label(model)} does not beat {label(baseline)} "
                                     f"on {protocol} {name}: {ours:.4f} vs {theirs:.4f}")
    return lines


def splits_of(results: dict) -> list[tuple[str, dict]]:
    """(split, that split's results) for every evaluated split: metrics.json keeps the random split's at the
    top level and the temporal split's under "temporal"."""
    return [(split, results if split == "random" else results[split])
            for split in config.SPLITS if split == "random" or split in results]


def metrics_table(results: dict) -> str:
    """One table: every model and baseline of every evaluated split under every protocol."""
    columns = [(protocol, name) for protocol, names in PROTOCOLS.items() for name in names]
    head = "| scorer | split | " + " | ".join(f"{p.replace('_', ' ')} {n}" for p, n in columns) + " |"
    rule = "|---|---|" + "---:|" * len(columns)
    rows = []
    for split, part in splits_of(results):
        for group in ("models", "baselines"):
            for name, protocols in part[group].items():
                cells = []
                for protocol, metric in columns:
                    value = protocols[protocol].get(metric)
                    cells.append("–" if value is None else f"{value:.4f}")
                rows.append(f"| {label(name)} | {split} | " + " | ".join(cells) + " |")
    return "\n".join([head, rule, *rows])


def seed_comparison_table(results: dict) -> str:
    rows = ["| model | NDCG@10 ours | NDCG@10 seed | diff | Hit Rate@10 ours | Hit Rate@10 seed | diff |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for model, seed in config.SEED_TABLE.items():
        if model not in results["models"]:
            continue
        ours = results["models"][model]["seed_protocol"]
        rows.append(
            f"| {LABELS[model]} | {ours['ndcg@10']:.5f} | {seed['ndcg@10']:.5f} | {ours['ndcg@10'] - seed['ndcg@10']:+.5f} "
            f"| {ours['hit_rate@10']:.5f} | {seed['hit_rate@10']:.5f} | {ours['hit_rate@10'] - seed['hit_rate@10']:+.5f} |")
    return "\n".join(rows)


def plot_losses(histories: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(histories), figsize=(5 * len(histories), 3.5), squeeze=False)
    for ax, (name, history) in zip(axes[0], histories.items()):
        epochs = [e["epoch"] for e in history["epochs"]]
        ax.plot(epochs, [e["loss"] for e in history["epochs"]], marker="o", label="training")
        ax.plot(epochs, [e["val_loss"] for e in history["epochs"]], marker="o", label="validation")
        ax.set(title=label(name), xlabel="epoch", ylabel="binary cross-entropy")
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def plot_metrics(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("seed_protocol", "ndcg@10"), ("seed_protocol", "hit_rate@10"), ("rated", "auc"),
              ("full_catalog", "recall@10"), ("full_catalog", "ndcg@10"), ("full_catalog", "hr@10")]
    names = [*results["models"], *results["baselines"]]
    colors = ["tab:blue" if n in results["models"] else "tab:gray" for n in names]
    fig, axes = plt.subplots(2, 3, figsize=(14, 7))
    for ax, (protocol, metric) in zip(axes.ravel(), panels):
        values = [{**results["models"], **results["baselines"]}[n][protocol][metric] for n in names]
        ax.barh([label(n) for n in names], values, color=colors)
        ax.invert_yaxis()
        ax.set_title(f"{protocol.replace('_', ' ')}: {metric}")
        for y, value in enumerate(values):
            ax.text(value, y, f" {value:.3f}", va="center", fontsize=8)
        ax.set_xlim(0, max(values) * 1.25 if max(values) > 0 else 1)
    fig.suptitle("Models (blue) vs baselines (grey)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def targets(results: dict) -> list[str]:
    """The recommendation-quality targets, each stated with the measured numbers and met or not."""
    lines = []
    for split, split_results in splits_of(results):
        if "most_popular" not in split_results["baselines"]:
            continue
        popular = split_results["baselines"]["most_popular"]["full_catalog"]
        for name in config.RANKING_MODELS:
            if name not in split_results["models"]:
                continue
            ours = split_results["models"][name]["full_catalog"]
            for metric in ("recall@10", "ndcg@10"):
                ratio = ours[metric] / popular[metric] if popular[metric] else float("inf")
                lines.append(f"{'met' if ratio >= 1.5 else 'NOT met'}: {LABELS[name]} {split} split full-catalog "
                             f"{metric} {ours[metric]:.4f} = {ratio:.2f} × most popular's {popular[metric]:.4f} "
                             "(target ≥ 1.5 ×)")
        if "ease" in split_results["baselines"]:
            ease = split_results["baselines"]["ease"]["full_catalog"]
            ratios = " and ".join(f"{metric} {ease[metric]:.4f} = {ease[metric] / popular[metric]:.2f} ×"
                                  for metric in ("recall@10", "ndcg@10") if popular[metric])
            lines.append(f"for scale, not a target: the EASE reference on the {split} split reaches {ratios} "
                         "most popular's")
    rate = results["baselines"].get("positive_rate", {}).get("seed_protocol", {}).get("ndcg@10")
    for name in ("autoint_tuned", "autoint_mlp_tuned"):
        if name not in results["models"] or rate is None:
            continue
        ours = results["models"][name]
        ndcg, auc = ours["seed_protocol"]["ndcg@10"], ours["rated"]["auc"]
        lines.append(f"{'met' if ndcg >= rate + 0.01 else 'NOT met'}: {LABELS[name]} seed-protocol NDCG@10 {ndcg:.4f} "
                     f"vs positive-rate baseline {rate:.4f} + 0.01")
        lines.append(f"{'met' if auc >= 0.81 else 'NOT met'}: {LABELS[name]} AUC on rated test rows {auc:.4f} "
                     "(target ≥ 0.81)")
    for split, split_results in splits_of(results):
        for name in config.RANKING_MODELS:
            if name in split_results["models"]:
                seconds = split_results["models"][name]["train_seconds"]
                lines.append(f"{'met' if seconds < 600 else 'NOT met'}: {LABELS[name]} ({split}) trained in "
                             f"{seconds:.0f} s (target < 600 s)")
    return lines


CARVE_TEXT = {"random": "a random 10 % of the random split's training rows",
              "temporal": "each user's latest 10 % of the temporal split's training rows"}


def describe(cfg: dict) -> str:
    """A tuning candidate's settings in one cell (settings a record predates take their defaults)."""
    cfg = config.with_defaults(cfg)
    units = cfg["dnn_hidden_units"]
    parts = [f"AutoInt+MLP {'-'.join(map(str, units))} (dropout {cfg['dnn_dropout']:g})" if units else "AutoInt"]
    if cfg["negatives"]:
        parts.append(f"{cfg['negatives']} {cfg['negative_sampler']} negatives"
                     + (" per rating on average, the same count for every user" if cfg["negatives_per"] == "user" else "")
                     + (", fresh each epoch" if cfg["fresh_negatives"] else ", drawn once"))
    else:
        parts.append("rated rows only")
    if cfg["target"] != "liked":
        parts.append(f"{cfg['target']} labels")
    if cfg["l2_reg_embedding"] != config.TrainConfig.l2_reg_embedding:
        parts.append(f"L2 on embeddings {cfg['l2_reg_embedding']:g}")
    if cfg["recency_weight"]:
        parts.append(f"later ratings weigh up to {1 + cfg['recency_weight']:g}×")
    if cfg["ema_momentum"]:
        parts.append(f"weights averaged (EMA {cfg['ema_momentum']:g})")
    decay = f" × {cfg['lr_decay']:g}/epoch" if cfg["lr_decay"] != 1.0 else ""
    parts.append(f"lr {cfg['learning_rate']:g}{decay}, batch {cfg['batch_size']}, emb {cfg['embedding_dim']}")
    return "; ".join(parts)


def tuning_table(tuning: dict) -> list[str]:
    lines = []
    for carve, part in tuning.items():
        lines += [f"### Validation carve: {carve}", "",
                  f"{part['validation']['fit_rows']:,} training rows to fit; scored on "
                  f"{part['validation']['validation_rows']:,} held-out rows ({CARVE_TEXT.get(carve, carve)}) of "
                  f"{part['validation']['users']:,} random users. The test rows are never used.", "",
                  "| candidate | epoch | seed NDCG@10 | AUC | full Recall@10 | full NDCG@10 | full HR@10 | train s |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for record in part["baselines"]:
            lines.append(f"| {label(record['baseline'])} | | {record['seed_protocol/ndcg@10']:.4f} | "
                         f"{record['rated/auc']:.4f} | {record['full_catalog/recall@10']:.4f} | "
                         f"{record['full_catalog/ndcg@10']:.4f} | {record['full_catalog/hr@10']:.4f} | |")
        for record in part["candidates"]:
            lines.append(f"| {describe(record['config'])} | {record['epoch']} | "
                         f"{record['seed_protocol/ndcg@10']:.4f} | {record['rated/auc']:.4f} | "
                         f"{record['full_catalog/recall@10']:.4f} | {record['full_catalog/ndcg@10']:.4f} | "
                         f"{record['full_catalog/hr@10']:.4f} | {record['train_seconds']} |")
        lines.append("")
    return lines


def report(results: dict, histories: dict[str, dict], tuning: dict | None = None) -> str:
    first = next(iter(results["models"]))
    lines = [
        "# Evaluation report: AutoInt and AutoInt+MLP on MovieLens 1M",
        "",
        f"Random 80/20 split of the ratings ({results['data']['train']:,} train, {results['data']['test']:,} test; "
        f"scikit-learn `train_test_split`, seed 42); label = rating ≥ {config.LIKE_THRESHOLD}. Every number below "
        "can be recomputed from `predictions/` and `top10/`.",
        "",
        "Models: **seed** = the seed's settings (`autoint`, `autoint_mlp`); **tuned** = the seed's task with tuned "
        "settings; **ranking** = trained with sampled unrated movies as extra negatives, the default of "
        "`make recommend` (see `pipeline/config.py`).",
        "",
        "## Against the seed's published table (seed protocol)",
        "",
        seed_comparison_table(results),
        "",
        "The seed protocol ranks only each user's own *test* rows (about 33 movies the user is known to have "
        f"rated), keeps users with at least one positive, and averages over them ({results['models'][first]['seed_protocol']['users']:,} "
        "users here). Two things in it are not standard, and we keep them only to compare with the seed:",
        "- its **\"Hit Rate@10\" is a recall**: |top 10 ∩ positives| / |positives|, not the share of users with a hit;",
        "- its **NDCG@10 uses an uncapped IDCG**, summed over *all* of a user's test positives rather than the best 10, "
        "so users with more than 10 positives can never reach 1.",
        "",
        "## Every model and baseline under every protocol and split",
        "",
        metrics_table(results),
        "",
        f"- **split**: *random* = the seed's random 80/20 split above; *temporal* = each user's latest 20 % of "
        "ratings as test, so no later rating teaches the model about an earlier one"
        + (f" ({results['temporal']['data']['train']:,} train, {results['temporal']['data']['test']:,} test; "
           "only the ranking models are trained on it)." if "temporal" in results else " (not evaluated in this run)."),
        "- **baselines**: *random*; *most popular* (count of liked training ratings); *per-movie positive rate* "
        f"(liked share, smoothed toward the global rate with {baselines.PRIOR_STRENGTH:g} pseudo-ratings); *EASE* "
        "(Steck 2019: a closed-form item-item regression over each user's liked movies, L2 "
        f"{baselines.EASE_L2:g} chosen on the validation carves), a strong collaborative-filtering reference "
        "that shows how far above popularity a split allows a ranking to get.",
        "- **seed protocol**: as above.",
        "- **rated**: AUC and logloss over all rated test rows; NDCG@10 with the usual capped IDCG, per user over the "
        "user's test rows. Logloss only means something for probabilities, so it is blank for counts.",
        "- **full catalog** (what `make recommend` does): for each test user, every movie without a training rating "
        "of that user is scored in the context of the user's most recent training rating; the Top-10 is compared "
        "with the user's positive test movies. HR@10 is the share of users with at least one hit. Averaged over "
        f"the users with a positive test movie ({results['models'][first]['full_catalog']['users']:,} on the random "
        "split).",
        "",
        "![metrics](metrics.png)",
        "",
    ]
    lines += ["## Targets", ""]
    lines += [f"- {line}" for line in targets(results)] or ["(no ranking or tuned models evaluated)"]
    lines += ["", "## Where a model does not beat a baseline", ""]
    losses = [f"{split} split: {line}" for split, part in splits_of(results) for line in beaten_by(part)]
    lines += [f"- {line}" for line in losses] or ["Every model beats every baseline on every metric."]
    lines += ["", "## Training", "", "| model | epochs | learning rate | negatives | train rows | train time (s) | final loss | final val_loss |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, history in histories.items():
        last, cfg = history["epochs"][-1], history["config"]
        negatives = f"{cfg.get('negatives', 0)}" + (" fresh each epoch" if cfg.get("fresh_negatives") else "")
        lines.append(f"| {label(name)} | {len(history['epochs'])} | "
                     f"{cfg['learning_rate']:g} | {negatives} | {history['train_rows']:,} | "
                     f"{history['train_seconds']} | {last['loss']:.4f} | {last['val_loss']:.4f} |")
    lines += ["", "![loss curves](loss_curves.png)", ""]
    if tuning:
        lines += ["## Hyper-parameter search (`make tune`)", "", *tuning_table(tuning), ""]
    return "\n".join(lines)


def evaluate(score_fns: dict[str, ScoreFn], baseline_names, data: Processed, k: int = config.TOP_N):
    """Every model and baseline through the same code. Returns (results, {name: (predictions, top)})."""
    users = test_users(data)
    results = {"data": {"train": len(data.train), "test": len(data.test)}, "models": {}, "baselines": {}}
    outputs = {}
    scorers = [("models", name, fn) for name, fn in score_fns.items()]
    scorers += [("baselines", name, baseline_score_fn(name, data.train)) for name in baseline_names]
    for group, name, fn in scorers:
        typer.echo(f"evaluating {name}", err=True)
        results[group][name], predictions, top = evaluate_scorer(fn, data, users, k)
        outputs[name] = (predictions, top)
    return results, outputs


def save_outputs(results: dict, outputs: dict, histories: dict, artifacts_dir: Path, data: Processed) -> None:
    """Predictions and Top-k lists per split (temporal ones in a temporal/ subfolder), plots, report, metrics."""
    for split, split_outputs in outputs.items():
        subfolder = "" if split == "random" else split
        for name, (predictions, top) in split_outputs.items():
            write_parquet(artifacts_dir / "predictions" / subfolder / f"{name}.parquet", to_raw_ids(predictions, data))
            write_parquet(artifacts_dir / "top10" / subfolder / f"{name}.parquet", to_raw_ids(top, data))
    plot_losses(histories, artifacts_dir / "loss_curves.png")
    plot_metrics(results, artifacts_dir / "metrics.png")
    tuning_path = artifacts_dir / "tuning.json"
    tuning = json.loads(tuning_path.read_text()) if tuning_path.is_file() else None
    write_text(artifacts_dir / "report.md", report(results, histories, tuning))
    # Written last: the Makefile treats metrics.json as the mark of a finished evaluation.
    write_json(artifacts_dir / "metrics.json", results)


def history_key(name: str, split: str) -> str:
    return name if split == "random" else f"{name} ({split})"


def evaluate_splits(data: Processed, models_dir: Path, evaluated=config.EVALUATED_MODELS):
    """Load and evaluate the models of every split. Returns (results, outputs, histories).

    The random split's results are the top level of `results` (as the seed reported them); every other
    split's sit under its own name. `histories` holds each model's training history, keyed by history_key.
    """
    from pipeline.scoring import ModelScorer
    from pipeline.train import load_history, load_model

    results, outputs, histories = {}, {}, {}
    for split, names in evaluated.items():
        split_data = data.split(split)
        score_fns = {name: ModelScorer(load_model(config.model_path(name, split, models_dir))) for name in names}
        split_results, outputs[split] = evaluate(score_fns, baselines.BASELINES, split_data)
        for name in names:
            history = histories[history_key(name, split)] = load_history(name, split, models_dir)
            split_results["models"][name]["train_seconds"] = history["train_seconds"]
        if split == "random":
            results.update(split_results)
        else:
            results[split] = split_results
    return results, outputs, histories


def evaluate_command(
    seed_only: bool = typer.Option(False, "--seed-only", help="Only the seed models on the random split "
                                   "(the reproduction CI checks; a fraction of the time)."),
    processed_dir: Path = typer.Option(config.PROCESSED_DIR),
    models_dir: Path = typer.Option(config.MODELS_DIR),
    out_dir: Path = typer.Option(config.ARTIFACTS_DIR, help="Where metrics, report, plots and lists go."),
) -> None:
    """Evaluate the trained models of every split and the baselines; write metrics, report and plots."""
    evaluated = {"random": config.SEED_MODELS} if seed_only else config.EVALUATED_MODELS
    missing = [f"{name} ({split})" for split, names in evaluated.items() for name in names
               if not config.model_path(name, split, models_dir).is_file()]
    try:
        data = load_processed(processed_dir)
    except FileNotFoundError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2)
    if missing:
        typer.echo(f"error: model(s) not trained: {', '.join(missing)}; run `make train`", err=True)
        raise typer.Exit(2)
    results, outputs, histories = evaluate_splits(data, models_dir, evaluated)
    save_outputs(results, outputs, histories, out_dir, data)
    typer.echo(seed_comparison_table(results))
    typer.echo("\n" + metrics_table(results))
    typer.echo(f"\nwrote {out_dir}/metrics.json, report.md, loss_curves.png, metrics.png, predictions/, top10/")


if __name__ == "__main__":
    typer.run(evaluate_command)
