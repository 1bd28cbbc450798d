"""Fit a model of config.MODELS on a split's training rows → <name>.keras and <name>.training_log.json.

The 14-field models (reference, tuned, sampled) are fitted here on rated rows (plus sampled negatives);
the two-stage rankers are fitted by pipeline.training.ranker on retrieval candidates. Both write the same files:
<name>.keras and <name>.training_log.json (pipeline.ranking.model_files).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys
import time
from enum import Enum
from pathlib import Path

import pandas as pd
import typer

from pipeline import config, quiet_imports, settings_files
from pipeline.config import TrainConfig
from pipeline.data import history
from pipeline.data.processed import Processed, load_processed
from pipeline.files import record_timing
from pipeline.ranking import architecture
from pipeline.ranking.model_files import save_model
from pipeline.training import callbacks, distributed, ranker, sampling
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
    return None if text is None else settings_files.parse_units(text)


def option_parameter(field: dataclasses.Field) -> inspect.Parameter:
    """The typer option of a training option (settings_files.OPTIONS): its type, spelling, help and limits."""
    declared = field.metadata
    if declared["choices"]:
        annotation = config.choice(field.name, declared["choices"])
    else:
        annotation = {"int": int, "float": float, "bool": bool}.get(settings_files.kind(field), str)
    option = typer.Option(
        None, settings_files.flag(field), help=declared["help"], min=declared["min"], max=declared["max"]
    )
    return inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)


def with_training_options(after: str):
    """A typer command that takes the training options as **options, with one typer option per training option
    (named as its TrainConfig field) put into its signature after parameter `after`, so `--help` lists each."""

    def add_options(command):
        parameters = [
            parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for parameter in inspect.signature(command, eval_str=True).parameters.values()
            if parameter.kind != inspect.Parameter.VAR_KEYWORD
        ]
        at = [parameter.name for parameter in parameters].index(after) + 1
        parameters[at:at] = [option_parameter(field) for field in settings_files.OPTIONS.values()]
        command.__signature__ = inspect.Signature(parameters, return_annotation=None)
        return command

    return add_options


def overrides_from_options(**options) -> dict:
    """The training options given on the command line (named as TrainConfig fields), as TrainConfig values."""
    overrides = {}
    for name, value in options.items():
        field = settings_files.OPTIONS[name]
        if value is None:
            continue
        if isinstance(value, Enum):
            value = value.value
        elif settings_files.kind(field).startswith("tuple"):
            try:
                value = parse_units(value)
            except ValueError:
                message = f'{value!r} is not a comma list of integers such as "32,32"'
                raise typer.BadParameter(message, param_hint=settings_files.flag(field)) from None
        overrides[name] = value
    return overrides


def option_arguments(overrides: dict) -> list[str]:
    """The `train` arguments that give `overrides` (TrainConfig fields → values), the inverse of
    overrides_from_options: what a launcher passes on to the `train` processes it starts."""
    arguments = []
    for name, value in overrides.items():
        spelling = settings_files.flag(settings_files.OPTIONS[name])
        if isinstance(value, bool):
            arguments.append(spelling.split("/")[0 if value else 1])
        else:
            arguments += [spelling, ",".join(map(str, value)) if isinstance(value, tuple) else str(value)]
    return arguments


def train_and_save(
    name: str,
    cfg: TrainConfig,
    data: Processed,
    split: str,
    models_dir: Path,
    progress: bool,
    candidate_lists: Path | None = None,
) -> dict:
    """Train model `name` with `cfg` on `data`'s training rows (split `split`) and save it; returns its training
    log. A two-stage ranker trains on the lists saved at `candidate_lists` when they fit its settings."""
    if cfg.candidates:
        lists = ranker.saved_lists(candidate_lists, cfg, len(data.movies))
        if candidate_lists is not None and lists is None:
            print(f"NOTE: {candidate_lists} does not fit {name}'s settings; building its lists for this run")
        fitted, log = ranker.train_ranker(data, cfg, progress=progress, lists=lists)
    else:
        fitted, log = train_model(data.train, data.encoders.dims(), cfg, progress=progress, catalogue=data.movies)
    log["split"] = split
    save_model(fitted, log, name, split, models_dir)
    record_timing(
        models_dir.parent, f"train {name}" + ("" if split == "random" else f" ({split})"), log["train_seconds"]
    )
    return log


@with_training_options(after="settings")
def train_command(
    model: config.Model = typer.Option(..., help="The model to train (config.MODELS)."),
    split: config.Split = typer.Option(config.Split.random, help="The split whose training rows to fit."),
    settings: Path = typer.Option(
        None,
        help="A settings file written by `python3 -m pipeline.settings_files` "
        "(what the Makefile passes); options below override it.",
    ),
    candidate_lists: Path = typer.Option(
        None,
        help="A two-stage ranker's out-of-fold lists (the folder `python -m pipeline candidates` writes); in memory, "
        "lists are built here when it is not given or was made with other settings.",
    ),
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
        "holding them in memory (a two-stage ranker: its --candidate-lists shards).",
    ),
    # --- end of scale options ---
    **options,
) -> None:
    """Train one model (its settings from config.MODELS, or --settings) and save it with its training log."""
    overrides = overrides_from_options(**options)
    name = model.value
    cfg = (
        config.train_config(json.loads(settings.read_text())["config"])
        if settings
        else config.model_settings(name, split.value)
    )
    cfg = dataclasses.replace(cfg, **overrides)
    # --- Scale: streamed or multi-worker training never loads the tables into memory ---
    if streaming or workers:
        raise typer.Exit(
            distributed.train_command(
                name,
                cfg,
                split.value,
                processed_dir,
                models_dir,
                workers,
                (["--settings", str(settings)] if settings else [])
                + (["--candidate-lists", str(candidate_lists)] if candidate_lists else [])
                + option_arguments(overrides),
                echo=typer.echo,
                error=lambda line: typer.echo(line, err=True),
                candidate_lists=candidate_lists,
            )
        )
    # --- end of scale dispatch ---
    try:
        data = load_processed(processed_dir).split(split.value)
    except FileNotFoundError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"training {name} on the {split.value} split's {len(data.train):,} ratings")
    log = train_and_save(name, cfg, data, split.value, models_dir, sys.stderr.isatty(), candidate_lists)
    typer.echo(epoch_table(log))
    typer.echo(f"{name}: trained in {log['train_seconds']} s; saved {config.model_path(name, split.value, models_dir)}")
