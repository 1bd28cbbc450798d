"""Fit a model of config.MODELS on a split's training rows → <name>.keras and <name>.training_log.json.

The 14-field models (reference, tuned, sampled) are fitted here on rated rows (plus sampled negatives);
the two-stage rankers are fitted by pipeline.ranking.ranker on retrieval candidates. Both write the same files:
<name>.keras and <name>.training_log.json (pipeline.ranking.model_files).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from enum import Enum
from pathlib import Path

import pandas as pd
import typer

from pipeline import config, quiet_imports
from pipeline.config import TrainConfig
from pipeline.data import history
from pipeline.data.preprocess import Processed, load_processed
from pipeline.files import record_timing
from pipeline.ranking import architecture
from pipeline.ranking.model_files import save_model
from pipeline.training import callbacks, sampling
from pipeline.training.training_log import epoch_table, training_log


def row_history_inputs(rows: pd.DataFrame, ratings: pd.DataFrame, n_users: int, cfg: TrainConfig) -> dict:
    """The history fields cfg asks for, per row of `rows`, from the training `ratings` (own movie left out)."""
    return {
        name: history.row_histories(rows, ratings, n_users, length, label)
        for name, (length, label) in cfg.history_fields.items()
    }


def fit_arguments(
    rows: pd.DataFrame,
    cfg: TrainConfig,
    extra_callbacks: list = (),
    ratings: pd.DataFrame | None = None,
    n_users: int = 0,
) -> dict:
    """What every model.fit of a 14-field model is given for `rows` under `cfg`: inputs (with the history
    fields, from the training `ratings`), labels, row weights, batch size and callbacks (train and tune
    both use it, so they cannot drift apart)."""
    histories = row_history_inputs(rows, ratings, n_users, cfg) if cfg.history_fields else None
    return {
        "x": architecture.model_inputs(rows, cfg, histories),
        "y": rows["label"].to_numpy(dtype="float32"),
        "sample_weight": sampling.row_weights(rows),
        "batch_size": cfg.batch_size,
        "callbacks": [callbacks.lr_schedule(cfg), *extra_callbacks],
    }


def train_model(
    train: pd.DataFrame,
    field_dims: dict[str, int],
    cfg: TrainConfig,
    progress: bool = False,
    catalogue: pd.DataFrame | None = None,
):
    """Fit on `train` (the last `validation_split` of its rows are held out, as Keras does).

    Returns the model and its training log: settings, per-epoch loss and val_loss, wall time, rows.
    """
    tf = quiet_imports.tensorflow()
    tf.keras.utils.set_random_seed(cfg.seed)
    model = architecture.build_model(field_dims, cfg)
    n_users = field_dims["user_id"]
    bar = [callbacks.epoch_progress(cfg.model, progress)]
    started = time.perf_counter()
    if cfg.negatives and cfg.fresh_negatives:
        # A new draw of unrated movies every epoch, so the model meets epochs × negatives different
        # ones per rating instead of the same few again. val_loss is then on each epoch's own held-out
        # tenth of the rows.
        losses = {"loss": [], "val_loss": []}
        for epoch in range(cfg.epochs):
            rows = sampling.epoch_rows(train, cfg, catalogue, epoch)
            fitted = model.fit(
                **fit_arguments(rows, cfg, bar, train, n_users),
                epochs=epoch + 1,
                initial_epoch=epoch,
                validation_split=cfg.validation_split,
                shuffle=True,
                verbose=0,
            )
            for key in losses:
                losses[key] += fitted.history.get(key, [float("nan")])
    else:
        rows = sampling.training_rows(train, cfg, catalogue)
        losses = model.fit(
            **fit_arguments(rows, cfg, bar, train, n_users),
            epochs=cfg.epochs,
            validation_split=cfg.validation_split,
            shuffle=True,
            verbose=0,
        ).history
    return model, training_log(cfg, losses, time.perf_counter() - started, len(rows))


def parse_units(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    text = text.strip().strip("()")
    return tuple(int(part) for part in text.replace(" ", "").split(",") if part)


def overrides_from_options(**options) -> dict:
    """The command line's training options that were given, as TrainConfig fields."""
    renamed = {"lr": "learning_rate"}
    values = {renamed.get(key, key): value for key, value in options.items() if value is not None}
    if "dnn_hidden_units" in values:
        values["dnn_hidden_units"] = parse_units(values["dnn_hidden_units"])
    return {key: value.value if isinstance(value, Enum) else value for key, value in values.items()}


def train_and_save(name: str, cfg: TrainConfig, data: Processed, split: str, models_dir: Path, progress: bool) -> dict:
    """Train model `name` with `cfg` on `data`'s training rows (split `split`) and save it; returns its training log."""
    if cfg.candidates:
        from pipeline.training import ranker

        fitted, log = ranker.train_ranker(data, cfg, progress=progress)
    else:
        fitted, log = train_model(data.train, data.encoders.dims(), cfg, progress=progress, catalogue=data.movies)
    log["split"] = split
    save_model(fitted, log, name, split, models_dir)
    record_timing(
        models_dir.parent, f"train {name}" + ("" if split == "random" else f" ({split})"), log["train_seconds"]
    )
    return log


def train_command(
    model: config.Model = typer.Option(..., help="The model to train (config.MODELS)."),
    split: config.Split = typer.Option(config.Split.random, help="The split whose training rows to fit."),
    settings: Path = typer.Option(
        None,
        help="A settings file written by `python3 -m pipeline.settings_files` "
        "(what the Makefile passes); options below override it.",
    ),
    epochs: int = typer.Option(None, min=1),
    lr: float = typer.Option(None, "--lr", min=0.0, help="Adam learning rate."),
    batch_size: int = typer.Option(None, min=1),
    embedding_dim: int = typer.Option(None, min=1),
    att_layer_num: int = typer.Option(None, min=0),
    att_head_num: int = typer.Option(None, min=1),
    dnn_hidden_units: str = typer.Option(None, help='Comma list, e.g. "32,32"; "" for none.'),
    dnn_dropout: float = typer.Option(None, min=0.0, max=1.0),
    validation_split: float = typer.Option(None, min=0.0, max=0.9),
    negatives: int = typer.Option(None, min=0, help="Sampled unrated movies per rating (0: rated rows only)."),
    negative_sampler: config.NegativeSampler = typer.Option(None),
    negatives_per: config.NegativesPer = typer.Option(None, help="Negatives per rating, or the same count per user."),
    fresh_negatives: bool = typer.Option(
        None, "--fresh-negatives/--fixed-negatives", help="Draw new negatives every epoch, or once."
    ),
    seed: int = typer.Option(None, help="Random seed of the weights and of the sampled negatives."),
    processed_dir: Path = typer.Option(config.PROCESSED_DIR),
    models_dir: Path = typer.Option(config.MODELS_DIR),
    # --- Scale: streaming input and workers (pipeline/training/streaming.py, pipeline/training/distributed.py) ---
    workers: int = typer.Option(
        None,
        min=1,
        help="Train on N workers (MultiWorkerMirroredStrategy, streamed "
        "input): N local processes, or this host's part of the cluster its TF_CONFIG names.",
    ),
    streaming: bool = typer.Option(
        False,
        "--streaming/--in-memory",
        help="Stream the training rows from parquet through tf.data instead of "
        "holding them in memory (14-field models).",
    ),
    # --- end of scale options ---
) -> None:
    """Train one model (its settings from config.MODELS, or --settings) and save it with its training log."""
    overrides = overrides_from_options(
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        embedding_dim=embedding_dim,
        att_layer_num=att_layer_num,
        att_head_num=att_head_num,
        dnn_hidden_units=dnn_hidden_units,
        dnn_dropout=dnn_dropout,
        validation_split=validation_split,
        negatives=negatives,
        negative_sampler=negative_sampler,
        negatives_per=negatives_per,
        fresh_negatives=fresh_negatives,
        seed=seed,
    )
    name = model.value
    cfg = (
        config.train_config(json.loads(settings.read_text())["config"])
        if settings
        else config.model_settings(name, split.value)
    )
    cfg = dataclasses.replace(cfg, **overrides)
    # --- Scale: streamed or multi-worker training never loads the tables into memory ---
    if streaming or workers:
        from pipeline.training import distributed

        raise typer.Exit(
            distributed.train_command(
                name,
                cfg,
                split.value,
                processed_dir,
                models_dir,
                workers,
                echo=typer.echo,
                error=lambda line: typer.echo(line, err=True),
            )
        )
    # --- end of scale dispatch ---
    try:
        data = load_processed(processed_dir).split(split.value)
    except FileNotFoundError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"training {name} on the {split.value} split's {len(data.train):,} ratings")
    log = train_and_save(name, cfg, data, split.value, models_dir, progress=sys.stderr.isatty())
    typer.echo(epoch_table(log))
    typer.echo(
        f"{name}: trained in {history['train_seconds']} s; saved {config.model_path(name, split.value, models_dir)}"
    )
