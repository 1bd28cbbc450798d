"""Hyper-parameter search on a validation split carved from the training rows only.

The test rows are never read here. Each candidate is trained epoch by epoch and scored after every
epoch under the same protocols as `evaluate`, on a random sample of validation users, so the number
of epochs is tuned without retraining. Output: artifacts/tuning.json, per validation carve its size,
the baselines' scores and one record per candidate × epoch.
"""
from __future__ import annotations

import dataclasses
import fcntl
import json
import time
from pathlib import Path

import numpy as np
import typer

from pipeline import config, evaluate
from pipeline.config import TrainConfig
from pipeline.files import write_json
from pipeline.preprocess import Processed, load_processed, split_temporal
from pipeline.scoring import ModelScorer

VALIDATION_SHARE = 0.1
# How validation rows are carved from a split's training rows, mirroring the two test splits:
#   random    a random 10 % of the random split's training rows;
#   temporal  each user's latest 10 % of the temporal split's training rows.
CARVES = config.SPLITS


@dataclasses.dataclass(frozen=True)
class Candidate:
    carve: str
    cfg: TrainConfig


def carve_validation(data: Processed, users_sample: int, seed: int = 0, carve: str = "random") -> Processed:
    """The training rows of split `carve`, less validation rows (see CARVES) kept for `users_sample` users."""
    rng = np.random.default_rng(seed)
    if carve == "random":
        is_val = rng.random(len(data.train)) < VALIDATION_SHARE
        fit, val = data.train[~is_val].reset_index(drop=True), data.train[is_val]
    elif carve == "temporal":
        data = data.split("temporal")
        fit, val = split_temporal(data.train, VALIDATION_SHARE)
    else:
        raise ValueError(f"unknown carve {carve!r}; expected one of {', '.join(CARVES)}")
    users = val["user_id"].unique()
    chosen = rng.choice(users, size=min(users_sample, len(users)), replace=False)
    val = val[val["user_id"].isin(chosen)].reset_index(drop=True)
    return dataclasses.replace(data, train=fit, test=val)


def run_candidate(cfg: TrainConfig, tuning: Processed, field_dims: dict[str, int], progress=print) -> list[dict]:
    """Train `cfg` for cfg.epochs, validating after each epoch; one record per epoch."""
    import tensorflow as tf

    from pipeline.train import build_model, epoch_rows, fit_arguments

    tf.keras.utils.set_random_seed(cfg.seed)
    model = build_model(field_dims, cfg)
    users = evaluate.test_users(tuning)
    records, seconds = [], 0.0
    for epoch in range(cfg.epochs):
        started = time.perf_counter()
        if epoch == 0 or cfg.fresh_negatives:
            arguments = fit_arguments(epoch_rows(tuning.train, cfg, tuning.movies, epoch), cfg)
        model.fit(**arguments, epochs=epoch + 1, initial_epoch=epoch, shuffle=True, verbose=0)
        seconds += time.perf_counter() - started
        result, _, _ = evaluate.evaluate_scorer(ModelScorer(model), tuning, users)
        record = {"config": dataclasses.asdict(cfg), "epoch": epoch + 1, "train_seconds": round(seconds, 1),
                  **{f"{protocol}/{name}": value for protocol, metrics in result.items()
                     for name, value in metrics.items() if name != "users"}}
        records.append(record)
        progress(summary_line(record))
    return records


def summary_line(record: dict) -> str:
    return (f"{evaluate.describe(record['config'])}; epoch {record['epoch']} | "
            f"seed ndcg {record['seed_protocol/ndcg@10']:.4f} "
            f"auc {record['rated/auc']:.4f} | full recall {record['full_catalog/recall@10']:.4f} "
            f"ndcg {record['full_catalog/ndcg@10']:.4f} hr {record['full_catalog/hr@10']:.4f} "
            f"| {record['train_seconds']} s")


def baseline_records(tuning: Processed) -> list[dict]:
    users = evaluate.test_users(tuning)
    records = []
    for name in ("most_popular", "positive_rate"):
        result, _, _ = evaluate.evaluate_scorer(evaluate.baseline_score_fn(name, tuning.train), tuning, users)
        records.append({"baseline": name, **{f"{protocol}/{metric}": value for protocol, metrics in result.items()
                                             for metric, value in metrics.items() if metric != "users"}})
    return records


def search_space() -> list[Candidate]:
    """The candidates tried, in the order they were tried (see README, "Choosing the settings").

    Seed-task candidates (rated rows only: AUC and the seed protocol) use the random carve. Ranking
    candidates use the temporal carve, the harder of the two test splits for beating popularity.
    `make tune ONLY=<i>` reruns candidate i.
    """
    base = config.MODEL_DEFAULTS
    seed_task = dataclasses.replace(base["autoint_mlp"], learning_rate=1e-3, epochs=8)
    ranker = dataclasses.replace(base["autoint_mlp_ranking"], epochs=6)
    return [
        Candidate("random", seed_task),
        Candidate("random", dataclasses.replace(base["autoint"], learning_rate=1e-3, epochs=8)),
        Candidate("random", dataclasses.replace(seed_task, learning_rate=2e-3, lr_decay=0.7)),
        Candidate("temporal", ranker),
        Candidate("temporal", dataclasses.replace(ranker, target="graded")),
        Candidate("temporal", dataclasses.replace(ranker, learning_rate=2e-3, lr_decay=0.6)),
        Candidate("random", dataclasses.replace(seed_task, batch_size=512, epochs=5)),
        Candidate("random", dataclasses.replace(seed_task, dnn_hidden_units=(128, 64))),
        Candidate("temporal", dataclasses.replace(ranker, negatives=6, epochs=4)),
        Candidate("random", dataclasses.replace(seed_task, l2_reg_embedding=1e-4, epochs=10)),
        Candidate("temporal", dataclasses.replace(ranker, dnn_hidden_units=(128, 64), dnn_dropout=0.2)),
        Candidate("temporal", dataclasses.replace(ranker, ema_momentum=0.999)),
        Candidate("random", dataclasses.replace(seed_task, dnn_hidden_units=(128, 64), l2_reg_embedding=1e-4,
                                                epochs=10)),
        Candidate("random", dataclasses.replace(seed_task, dnn_hidden_units=(256, 128))),
        Candidate("random", dataclasses.replace(base["autoint"], learning_rate=1e-3, l2_reg_embedding=1e-4,
                                                epochs=10)),
        Candidate("temporal", dataclasses.replace(ranker, recency_weight=2.0)),
        Candidate("random", dataclasses.replace(base["autoint"], learning_rate=1e-3, embedding_dim=32, epochs=8)),
        Candidate("random", dataclasses.replace(seed_task, dnn_hidden_units=(512, 256))),
        Candidate("temporal", dataclasses.replace(ranker, negative_sampler="popularity", epochs=4)),
        Candidate("temporal", dataclasses.replace(ranker, negatives_per="user")),
    ]


def empty_results(tuning: Processed, baselines: list[dict]) -> dict:
    return {"validation": {"fit_rows": len(tuning.train), "validation_rows": len(tuning.test),
                           "users": int(tuning.test["user_id"].nunique())},
            "baselines": baselines, "candidates": []}


def config_key(cfg: dict) -> str:
    """A candidate's identity; settings added to TrainConfig since a record was written take their defaults."""
    return json.dumps(config.with_defaults(cfg), sort_keys=True)


def keep_current(results: dict, candidates: list[Candidate]) -> dict:
    """Drop the records of candidates no longer in the search space (so the report shows only those)."""
    current = {(c.carve, config_key(dataclasses.asdict(c.cfg))) for c in candidates}
    kept = {carve: {**part, "candidates": [r for r in part["candidates"]
                                           if (carve, config_key(r["config"])) in current]}
            for carve, part in results.items()}
    return {carve: part for carve, part in kept.items() if part["candidates"]}


def save_candidate(out: Path, candidate: Candidate, header: dict, records: list[dict],
                   space: list[Candidate]) -> None:
    """Merge one candidate's records into `out`, replacing an earlier run of the same candidate.

    Read, merge and write under a lock, so that candidates run side by side (`--only`) all land.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(f".{out.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = keep_current(json.loads(out.read_text()) if out.is_file() else {}, space)
        part = results.setdefault(candidate.carve, header)
        key = config_key(dataclasses.asdict(candidate.cfg))
        part["candidates"] = [r for r in part["candidates"] if config_key(r["config"]) != key] + records
        write_json(out, results)


def tune_command(
    users_sample: int = typer.Option(1000, min=1, help="Validation users scored per epoch."),
    only: list[int] = typer.Option(None, help="Run only these candidates (indices into the search space) and "
                                              "merge their records into an existing tuning.json."),
    processed_dir: Path = typer.Option(config.PROCESSED_DIR),
    out: Path = typer.Option(config.ARTIFACTS_DIR / "tuning.json"),
) -> None:
    """Search learning rate and its decay, epochs, negatives, labels and embedding size on training rows only."""
    try:
        data = load_processed(processed_dir)
    except FileNotFoundError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2)
    space = search_space()
    if only and not all(0 <= index < len(space) for index in only):
        typer.echo(f"error: --only takes indices 0-{len(space) - 1}", err=True)
        raise typer.Exit(2)
    if not only and out.is_file():
        out.unlink()  # a full search starts afresh
    carved: dict[str, tuple[Processed, dict]] = {}
    for index in only or range(len(space)):
        candidate = space[index]
        if candidate.carve not in carved:
            tuning = carve_validation(data, users_sample, carve=candidate.carve)
            carved[candidate.carve] = tuning, empty_results(tuning, baseline_records(tuning))
            for record in carved[candidate.carve][1]["baselines"]:
                typer.echo(f"{candidate.carve} {record['baseline']}: full recall "
                           f"{record['full_catalog/recall@10']:.4f} ndcg {record['full_catalog/ndcg@10']:.4f}"
                           f" | seed ndcg {record['seed_protocol/ndcg@10']:.4f} auc {record['rated/auc']:.4f}")
        tuning, header = carved[candidate.carve]
        records = run_candidate(candidate.cfg, tuning, data.encoders.dims(),
                                progress=lambda line: typer.echo(f"{index} {candidate.carve} {line}"))
        save_candidate(out, candidate, header, records, space)
    typer.echo(f"wrote {out}")


if __name__ == "__main__":
    typer.run(tune_command)
