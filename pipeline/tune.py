"""Hyper-parameter search on a validation split carved from the training rows only.

The test rows are never read here. Each candidate is trained epoch by epoch and scored after every
epoch under the same protocols as `evaluate`, on a random sample of validation users, so the number
of epochs is tuned without retraining. Output: artifacts/tuning.json (one record per candidate × epoch).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import typer

from pipeline import config, evaluate
from pipeline.config import TrainConfig
from pipeline.files import write_json
from pipeline.preprocess import Processed, load_processed
from pipeline.scoring import ModelScorer

VALIDATION_SHARE = 0.1


def carve_validation(data: Processed, users_sample: int, seed: int = 0) -> Processed:
    """Training rows split 90/10 at random (like the test split); validation kept for `users_sample` users."""
    rng = np.random.default_rng(seed)
    is_val = rng.random(len(data.train)) < VALIDATION_SHARE
    fit, val = data.train[~is_val].reset_index(drop=True), data.train[is_val]
    users = val["user_id"].unique()
    chosen = rng.choice(users, size=min(users_sample, len(users)), replace=False)
    val = val[val["user_id"].isin(chosen)].reset_index(drop=True)
    return dataclasses.replace(data, train=fit, test=val)


def run_candidate(cfg: TrainConfig, tuning: Processed, field_dims: dict[str, int], progress=print) -> list[dict]:
    """Train `cfg` for cfg.epochs, validating after each epoch; one record per epoch."""
    import tensorflow as tf

    from pipeline.train import build_model, epoch_rows, model_inputs

    tf.keras.utils.set_random_seed(cfg.seed)
    model = build_model(field_dims, cfg)
    users = evaluate.test_users(tuning)
    records, seconds = [], 0.0
    for epoch in range(cfg.epochs):
        started = time.perf_counter()
        if epoch == 0 or cfg.fresh_negatives:
            rows = epoch_rows(tuning.train, cfg, tuning.movies, epoch)
            inputs, labels = model_inputs(rows), rows["label"].to_numpy(dtype="float32")
        model.fit(inputs, labels, batch_size=cfg.batch_size, epochs=epoch + 1, initial_epoch=epoch,
                  shuffle=True, verbose=0)
        seconds += time.perf_counter() - started
        result, _, _ = evaluate.evaluate_scorer(ModelScorer(model), tuning, users)
        record = {"config": dataclasses.asdict(cfg), "epoch": epoch + 1, "train_seconds": round(seconds, 1),
                  **{f"{protocol}/{name}": value for protocol, metrics in result.items()
                     for name, value in metrics.items() if name != "users"}}
        records.append(record)
        progress(summary_line(record))
    return records


def summary_line(record: dict) -> str:
    cfg = record["config"]
    fresh = " fresh" if cfg.get("fresh_negatives") else ""
    return (f"{cfg['model']:<12} neg={cfg['negatives']}{fresh} {cfg['negative_sampler']:<10} lr={cfg['learning_rate']:g} "
            f"emb={cfg['embedding_dim']} epoch={record['epoch']} | seed ndcg {record['seed_protocol/ndcg@10']:.4f} "
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


def search_space() -> list[TrainConfig]:
    """The candidates tried (see README, "Choosing the recommendation models")."""
    base = config.MODEL_DEFAULTS
    grid = []
    for name in ("autoint", "autoint_mlp"):
        grid.append(dataclasses.replace(base[name], learning_rate=1e-3, epochs=6))
    ranker = dataclasses.replace(base["autoint"], learning_rate=1e-3, epochs=4)
    grid += [
        dataclasses.replace(ranker, negatives=1),
        dataclasses.replace(ranker, negatives=3),
        dataclasses.replace(ranker, negatives=3, negative_sampler="popularity"),
        dataclasses.replace(ranker, negatives=3, embedding_dim=32),
        dataclasses.replace(ranker, negatives=3, learning_rate=3e-3),
        dataclasses.replace(ranker, negatives=6, epochs=3),
        dataclasses.replace(base["autoint_mlp"], learning_rate=1e-3, epochs=5, negatives=3),
        dataclasses.replace(base["autoint_mlp"], learning_rate=1e-3, epochs=5, negatives=3, fresh_negatives=True),
    ]
    return grid


def tune_command(
    users_sample: int = typer.Option(1000, min=1, help="Validation users scored per epoch."),
    only: int = typer.Option(None, help="Run only the candidate with this index in the search space."),
    processed_dir: Path = typer.Option(config.PROCESSED_DIR),
    out: Path = typer.Option(config.ARTIFACTS_DIR / "tuning.json"),
) -> None:
    """Search learning rate, epochs, negatives, sampler and embedding size on training rows only."""
    try:
        data = load_processed(processed_dir)
    except FileNotFoundError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2)
    tuning = carve_validation(data, users_sample)
    candidates = search_space()
    if only is not None:
        candidates = [candidates[only]]
    records = {"validation": {"fit_rows": len(tuning.train), "validation_rows": len(tuning.test),
                              "users": int(tuning.test["user_id"].nunique())},
               "baselines": baseline_records(tuning), "candidates": []}
    for record in records["baselines"]:
        typer.echo(f"{record['baseline']}: full recall {record['full_catalog/recall@10']:.4f} "
                   f"ndcg {record['full_catalog/ndcg@10']:.4f} | seed ndcg {record['seed_protocol/ndcg@10']:.4f}")
    for cfg in candidates:
        records["candidates"] += run_candidate(cfg, tuning, data.encoders.dims(), progress=typer.echo)
        write_json(out, records)
    typer.echo(f"wrote {out}")


if __name__ == "__main__":
    typer.run(tune_command)
