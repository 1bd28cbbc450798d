"""metrics.json (and the study's, the tuning records, the training histories, the stage timings) → report.md
with its pictures. Data flows one way: evaluate and tune write numbers; this module only reads them.

Outputs (under artifacts/, or the folder given): report.md, metrics.png, loss_curves.png, timings.png, and
study_metrics.png when the study has run. A report of SYNTHETIC data (pipeline.data.synth) says so in its title,
its first lines and its pictures. Each is recorded in its manifest (pipeline.manifests) with `make report` as its
producer, the pictures with report.md as their Make target. What it reads (metrics.json, tuning.json, the training
logs) is checked against its manifest first: a damaged one ends in one line naming it and the command that
remakes it (manifests.ArtifactError).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from pipeline import config, config_evaluation, manifests
from pipeline.data import synth
from pipeline.evaluation import metrics_files, plots, report_sections
from pipeline.evaluation.metrics import PROTOCOLS
from pipeline.evaluation.tables import cell, comparison_table, metrics_table, retrieval_baseline, splits_of
from pipeline.files import record_timing, write_text
from pipeline.labels import label
from pipeline.ranking.model_files import load_training_log
from pipeline.settings_files import every_model

REBUILD = "make report"
TUNING_REBUILD = "make tune"
CARVE_TEXT = {
    "random": "a random 10 % of the random split's training rows",
    "temporal": "each user's latest 10 % of the temporal split's training rows",
}


def reference_table(results: dict) -> str:
    rows = [
        "| model | NDCG@10 ours | NDCG@10 reference | diff | Hit Rate@10 ours | Hit Rate@10 reference | diff |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for model, published in config_evaluation.REFERENCE_TABLE.items():
        if model not in results["models"]:
            continue
        ours = results["models"][model]["reference_protocol"]
        rows.append(
            " | ".join(
                [
                    f"| {label(model)}",
                    *(
                        f"{ours[metric]:.5f} | {published[metric]:.5f} | {ours[metric] - published[metric]:+.5f}"
                        for metric in ("ndcg@10", "hit_rate@10")
                    ),
                ]
            )
            + " |"
        )
    return "\n".join(rows)


def beaten_by(results: dict) -> list[str]:
    """Plain sentences for every (model, baseline, metric) where the model does not beat the baseline."""
    lines = []
    for model, protocols in results["models"].items():
        for baseline, base_protocols in results["baselines"].items():
            for protocol, names in PROTOCOLS.items():
                for name in names:
                    ours = protocols.get(protocol, {}).get(name)
                    theirs = base_protocols.get(protocol, {}).get(name)
                    if ours is None or theirs is None:
                        continue
                    if (ours >= theirs) if name == "logloss" else (ours <= theirs):
                        lines.append(
                            f"{label(model)} does not beat {label(baseline)} "
                            f"on {protocol} {name}: {ours:.4f} vs {theirs:.4f}"
                        )
    return lines


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def targets(results: dict) -> list[str]:
    """The targets (config_evaluation.GOALS), each stated with the measured numbers and met or not."""
    goals = config_evaluation.GOALS
    lines = []
    for split, part in splits_of(results):
        against = retrieval_baseline(part)
        alone = part["baselines"].get(against, {}).get("full_catalog")
        kind = against.upper()
        for name in config.TWO_STAGE_MODELS:
            ours = part["models"].get(name, {}).get("full_catalog")
            if not ours or not alone:
                continue
            for metric in ("recall@10", "ndcg@10"):
                ratio = ours[metric] / alone[metric]
                lines.append(
                    f"{verdict(ratio >= goals['two_stage_vs_ease'])}: {label(name)} {split} split full-catalogue "
                    f"{metric} {ours[metric]:.4f} = {ratio:.3f} × {kind}'s {alone[metric]:.4f} (target ≥ 1 ×, "
                    f"aim ≥ {goals['two_stage_vs_ease_aim']:g} ×)"
                )
    for name in config.models_of("tuned"):
        ours = results["models"].get(name)
        if not ours:
            continue
        auc, ndcg = ours["rated"]["auc"], ours["reference_protocol"]["ndcg@10"]
        lines.append(
            f"{verdict(auc >= goals['tuned_auc'])}: {label(name)} AUC on rated test rows {auc:.4f} "
            f"(target ≥ {goals['tuned_auc']})"
        )
        lines.append(
            f"{verdict(ndcg >= goals['tuned_reference_ndcg'])}: {label(name)} reference-protocol NDCG@10 "
            f"{ndcg:.4f} (target ≥ {goals['tuned_reference_ndcg']})"
        )
    for split, part in splits_of(results):
        for name in config.TWO_STAGE_MODELS:
            if name in part["models"]:
                seconds = part["models"][name]["train_seconds"]
                lines.append(
                    f"{verdict(seconds <= goals['ranker_train_seconds'])}: {label(name)} ({split}) trained in "
                    f"{seconds:.0f} s (target ≤ {goals['ranker_train_seconds']} s)"
                )
    return lines


def describe(cfg: dict) -> str:
    """A model's or tuning candidate's settings in one cell (settings a record predates take their defaults)."""
    cfg = config.with_defaults(cfg)
    units = cfg["dnn_hidden_units"]
    architecture = cfg.get("architecture", "autoint")
    if architecture in config.ARCHITECTURES:
        parts = [f"AutoInt+MLP {'-'.join(map(str, units))} (dropout {cfg['dnn_dropout']:g})" if units else "AutoInt"]
    else:  # another DeepCTR ranker of the study, with its own DNN
        parts = [f"{architecture} (DeepCTR, DNN {'-'.join(map(str, units)) or 'none'})"]
    if cfg["candidates"]:
        folds = "by time" if cfg["fold_scheme"] == "time" else "random"
        parts.append(
            f"ranks retrieval's top {cfg['candidates']} ({cfg['folds']} out-of-fold retrieval models, folds {folds}, "
            f"{cfg['loss']} loss, {cfg['anonymous_share']:.0%} of lists anonymous, "
            f"{cfg['anonymous_share'] * cfg['newcomer_share']:.0%} as newcomers)"
        )
    elif cfg["negatives"]:
        parts.append(
            f"{cfg['negatives']} {cfg['negative_sampler']} negatives"
            + (" per rating on average, the same count for every user" if cfg["negatives_per"] == "user" else "")
            + (", fresh each epoch" if cfg["fresh_negatives"] else ", drawn once")
        )
    else:
        parts.append("rated rows only")
    if cfg["history"]:
        parts.append(f"liked history of {cfg['history']}")
    if cfg["disliked_history"]:
        parts.append(f"disliked history of {cfg['disliked_history']}")
    if cfg["score_buckets"]:
        parts.append("scores also bucketed")
    if cfg.get("als_scores"):
        parts.append("ALS's scores too")
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
    columns = [
        ("reference_protocol/ndcg@10", "reference NDCG@10"),
        ("rated/auc", "AUC"),
        ("full_catalog/recall@10", "full Recall@10"),
        ("full_catalog/ndcg@10", "full NDCG@10"),
        ("full_catalog/hr@10", "full HR@10"),
    ]
    lines = []
    for carve, part in tuning.items():
        lines += [
            f"### Validation carve: {carve}",
            "",
            f"{part['validation']['fit_rows']:,} training rows to fit; scored on "
            f"{part['validation']['validation_rows']:,} held-out rows ({CARVE_TEXT[carve.split()[0]]}) of "
            f"{part['validation']['users']:,} users. The test rows are never used.",
            "",
            "| candidate | epoch | " + " | ".join(title for _, title in columns) + " | train s |",
            "|---|---:|" + "---:|" * len(columns) + "---:|",
        ]
        for record in part["baselines"]:
            lines.append(
                f"| {label(record['baseline'])} | | " + " | ".join(cell(record.get(key)) for key, _ in columns) + " | |"
            )
        for record in part["candidates"]:
            lines.append(
                f"| {describe(record['config'])} | {record['epoch']} | "
                + " | ".join(cell(record.get(key)) for key, _ in columns)
                + f" | {record['train_seconds']} |"
            )
        lines.append("")
    return lines


def training_table(histories: dict[str, dict]) -> list[str]:
    lines = [
        "| model | split | settings | train rows | train time (s) | final loss | final val_loss |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for (name, split), history in histories.items():
        last = history["epochs"][-1]
        lines.append(
            f"| {label(name)} | {split} | {describe(history['config'])}; {len(history['epochs'])} epochs | "
            f"{history['train_rows']:,} | {history['train_seconds']} | {last['loss']:.4f} | {last['val_loss']:.4f} |"
        )
    return lines


def timing_table(timings: list[dict]) -> list[str]:
    lines = ["| stage | wall time (s) | finished |", "|---|---:|---|"]
    lines += [f"| {t['stage']} | {t['seconds']:.0f} | {t['finished']} |" for t in timings]
    return lines


def results_section(results: dict, heading: str, picture: str) -> list[str]:
    lines = [heading, "", metrics_table(results), "", f"![metrics]({picture})", ""]
    lines += ["### Against retrieval alone and most popular (full catalogue)", "", comparison_table(results), ""]
    lines += ["### Targets", ""]
    lines += [f"- {line}" for line in targets(results)] or ["(no two-stage or tuned model evaluated)"]
    lines += ["", "### Where a model does not beat a baseline", ""]
    losses = [f"{split} split: {line}" for split, part in splits_of(results) for line in beaten_by(part)]
    lines += [f"- {line}" for line in losses] or ["Every model beats every baseline on every metric."]
    return lines + [""]


PROTOCOL_TEXT = """\
- **reference protocol** (the original project's): each user's own *test* rows (about 33 movies the user
  rated) are ranked; users with at least one positive count. Its **"Hit Rate@10" is a recall** (|top 10 ∩
  positives| / |positives|) and its **NDCG@10 uses an uncapped IDCG**; both kept only to compare with the
  published table.
- **rated**: AUC and logloss over all rated test rows; NDCG@10 with the usual capped IDCG, per user over the
  user's test rows. Logloss only means something for probabilities, so it is blank for counts.
- **full catalog** (what `make recommend` does): for each test user, every movie without a training rating of
  that user can be recommended, in the context of the user's most recent training rating; the Top-10 is
  compared with the user's liked test movies. HR@10 is the share of users with at least one hit.
- The **two-stage** models order the retrieval stage's candidates, so they only have full-catalogue numbers:
  a rated test row outside a user's candidates has no score of theirs.
- **baselines**: *random*; *most popular* (count of liked training ratings); *per-movie positive rate* (liked
  share, smoothed toward the global rate); *EASE* alone (Steck 2019: a closed-form item-item regression over
  each user's liked movies), the retrieval stage alone and the baseline the two-stage targets name; *ALS* alone
  (implicit-feedback matrix factorisation over the liked movies: the retrieval stage above 12,000 movies)."""


def trained_histories(models_dir: Path) -> dict[tuple[str, str], dict]:
    """{(name, split): training history} of every model of any path that is trained."""

    return {
        (name, split): load_training_log(name, split, models_dir)
        for name, split in every_model()
        if config.model_path(name, split, models_dir).is_file()
    }


SYNTHETIC_TEXT = (
    "**SYNTHETIC DATA, not MovieLens.** Every user, movie and rating below was generated by "
    "`pipeline/data/synth.py` for scale tests; these numbers say whether the product path runs and learns at "
    "this size, and are never a MovieLens result."
)


def is_synthetic(results: list[dict | None], processed_dir: Path | None) -> bool:
    """Whether the report is of SYNTHETIC data: an evaluation that says so, or processed data that is."""
    return any(part and part.get("synthetic") for part in results) or bool(
        processed_dir and synth.is_synthetic(processed_dir)
    )


def build_report(artifacts: Path, models_dir: Path | None = None, processed_dir: Path | None = None) -> str:
    """The report from whatever the runs left in `artifacts` (models in `models_dir`, default artifacts/models);
    sections whose inputs are missing are skipped."""
    product, study = read_metrics(artifacts), read_metrics(artifacts / "study")
    tuning = read_json(artifacts / "tuning.json", TUNING_REBUILD)
    first = product or study
    synthetic = is_synthetic([product, study], processed_dir)
    if synthetic:
        lines = [
            "# SYNTHETIC DATA: evaluation report of AutoInt and AutoInt+MLP (not MovieLens)",
            "",
            SYNTHETIC_TEXT,
            "",
        ]
        lines += [f"Data: {first['dataset']}.", ""] if first and first.get("dataset") else []
    else:
        lines = ["# Evaluation report: AutoInt and AutoInt+MLP on MovieLens 1M", ""]
    if not first:
        return "\n".join(lines + ["Nothing evaluated yet: run `make all`.", ""])
    lines += [
        f"Random 80/20 split of the ratings ({first['data']['train']:,} train, {first['data']['test']:,} test; "
        f"scikit-learn `train_test_split`, seed 42); label = rating ≥ {config.LIKE_THRESHOLD}. Every number "
        "below can be recomputed from `predictions/` and `top10/`.",
        "",
        "Models (`pipeline/config.py`): **two-stage** = the default recommender: EASE retrieval proposes each "
        "user's candidates, AutoInt ranks them with the user's liked history; **reference** = the original "
        "project's settings; in the study also **tuned** (the reference task with the liked history, tuned "
        "on validation) and **sampled negatives** (the previous default: trained with sampled unrated "
        "movies, scored over the whole catalogue).",
        "",
    ]
    # The published table is of MovieLens 1M: nothing to hold a synthetic run or a run without them against.
    if not synthetic and any(name in first["models"] for name in config_evaluation.REFERENCE_TABLE):
        lines += [
            "## Against the original project's published table (reference protocol)",
            "",
            reference_table(first),
            "",
        ]
    lines += [PROTOCOL_TEXT, ""]
    if product:
        lines += results_section(
            product, f"## `make all`: the product models (made {product.get('made', '?')})", "metrics.png"
        )
    if study:
        lines += results_section(
            study, f"## `make study`: every model, both splits (made {study.get('made', '?')})", "study_metrics.png"
        )
    histories = trained_histories(models_dir or artifacts / "models")
    if histories:
        lines += ["## Training", "", *training_table(histories), "", "![loss curves](loss_curves.png)", ""]
    timings = read_timings(artifacts)
    if timings:
        lines += ["## Time per stage", "", *timing_table(timings), "", "![timings](timings.png)", ""]
    if tuning:
        lines += ["## Hyper-parameter search (`make tune`, part of the study)", "", *tuning_table(tuning), ""]
    newcomers = read_json(artifacts / "study" / "newcomers.json", "make newcomers")
    if newcomers:
        lines += report_sections.newcomers_section(newcomers)
    litert = read_json(artifacts / "litert_bench.json", "make bench-litert")
    if litert:
        lines += report_sections.litert_section(litert)
    return "\n".join(lines)


def read_json(path: Path, rebuild: str | None = None):
    """path's JSON, None when there is no such file; manifests.ArtifactError, naming `rebuild` (else the producer
    its manifest records), when it is damaged or unreadable."""
    if not Path(path).is_file():
        return None
    with manifests.checked(path, rebuild) as readable:
        return json.loads(readable.read_text())


def read_metrics(folder: Path) -> dict | None:
    """folder/metrics.json, None before that folder is evaluated."""
    path = Path(folder) / metrics_files.NAME
    return metrics_files.read(path) if path.is_file() else None


def read_timings(artifacts: Path) -> list[dict]:
    """The stages' timing records in the order they finished (their files' modification times)."""
    paths = sorted((artifacts / "timings").glob("*.json"), key=lambda path: path.stat().st_mtime)
    return [json.loads(path.read_text()) for path in paths]


def write_report(artifacts: Path, models_dir: Path | None = None, processed_dir: Path | None = None) -> Path:
    """report.md and its pictures from what is in `artifacts` (models in `models_dir`, default artifacts/models)."""
    report = artifacts / "report.md"
    product, study = read_metrics(artifacts), read_metrics(artifacts / "study")
    marked = "SYNTHETIC data: " if is_synthetic([product, study], processed_dir) else ""
    drawn = []
    if product:
        drawn.append(artifacts / "metrics.png")
        plots.plot_metrics(product, drawn[-1], f"{marked}make all: models (blue) vs baselines (grey), random split")
    if study:
        drawn.append(artifacts / "study_metrics.png")
        plots.plot_metrics(study, drawn[-1], f"{marked}make study: models (blue) vs baselines (grey), random split")
    histories = trained_histories(models_dir or artifacts / "models")
    if histories:
        drawn.append(artifacts / "loss_curves.png")
        plots.plot_losses(
            {
                label(name) + ("" if split == "random" else f", {split}"): history
                for (name, split), history in histories.items()
            },
            drawn[-1],
        )
    newcomers = read_json(artifacts / "study" / "newcomers.json", "make newcomers")
    if newcomers:
        drawn.append(artifacts / "newcomers.png")
        plots.plot_newcomers(newcomers, drawn[-1], f"{marked}New people: Top-10 from their first k liked movies")
    timings = read_timings(artifacts)
    if timings:
        drawn.append(artifacts / "timings.png")
        plots.plot_timings(timings, drawn[-1])
    # plots.py writes through files.atomic_path without a producer, which removes a picture's old manifest before
    # the rename: each is recorded here once it is in place, remade by `make report` through report.md.
    for picture in drawn:
        manifests.write(picture, REBUILD, target=report)
    write_text(report, build_report(artifacts, models_dir, processed_dir), producer=REBUILD)
    return report


def report_command(
    out_dir: Path = typer.Option(
        config.ARTIFACTS_DIR,
        "--out-dir",
        "--artifacts",
        help="The folder evaluate wrote metrics.json to; the report goes there too (--artifacts: its old name).",
    ),
    models_dir: Path = typer.Option(
        None, help="The models whose training logs the report shows; default <out-dir>/models."
    ),
    processed_dir: Path = typer.Option(
        None, help="The processed data evaluated; a SYNTHETIC set marks the report (as its metrics.json does)."
    ),
) -> None:
    """Write report.md and its pictures from metrics.json (and the study's, tuning.json, histories, timings)."""
    started = time.perf_counter()
    path = write_report(out_dir, models_dir, processed_dir)
    record_timing(out_dir, "report", time.perf_counter() - started)
    typer.echo(f"wrote {path} and its pictures")
