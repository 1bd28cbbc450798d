"""DeepCTR AutoInt / AutoInt+MLP from the feature schema → a fitted model and its per-epoch losses.

Outputs (under artifacts/models/): <name>.keras (reloadable with DeepCTR's custom objects) and
<name>.history.json (hyper-parameters, per-epoch train/validation loss, wall time).
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import typer

from pipeline import config
from pipeline.config import TrainConfig
from pipeline.files import atomic_path, write_json
from pipeline.preprocess import load_processed


class _NoThread:
    def __init__(self, *args, **kwargs):
        pass

    def start(self):
        pass


def quiet_model_imports() -> None:
    """Import TensorFlow and DeepCTR without their start-up chatter, for the commands' terminal output.

    TensorFlow 2.21 writes C++ log lines to stderr while it is imported, whatever TF_CPP_MIN_LOG_LEVEL
    says; DeepCTR's import starts a thread that asks PyPI for a newer version and, offline, prints to
    stdout (which would break --json). Python errors still raise.
    """
    if "deepctr" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    import requests  # noqa: F401  (imported first, so that it keeps the real Thread)

    real_thread, threading.Thread = threading.Thread, _NoThread
    try:
        import deepctr  # noqa: F401
    finally:
        threading.Thread = real_thread


def feature_columns(field_dims: dict[str, int], embedding_dim: int) -> list:
    quiet_model_imports()
    from deepctr.feature_column import SparseFeat

    return [SparseFeat(field, vocabulary_size=field_dims[field], embedding_dim=embedding_dim)
            for field in config.FIELDS]


def build_model(field_dims: dict[str, int], cfg: TrainConfig):
    """DeepCTR's off-the-shelf AutoInt, compiled; `dnn_hidden_units=()` means attention only."""
    quiet_model_imports()
    import tensorflow as tf
    from deepctr.models import AutoInt

    columns = feature_columns(field_dims, cfg.embedding_dim)
    # AutoInt always adds a linear term; DeepCTR fails at fit on an empty linear column list.
    model = AutoInt(
        columns, columns,
        att_layer_num=cfg.att_layer_num, att_head_num=cfg.att_head_num, att_res=cfg.att_res,
        dnn_hidden_units=cfg.dnn_hidden_units, dnn_activation=cfg.dnn_activation,
        dnn_dropout=cfg.dnn_dropout, l2_reg_embedding=cfg.l2_reg_embedding, l2_reg_dnn=cfg.l2_reg_dnn,
        seed=cfg.seed, task="binary",
    )
    ema = {"use_ema": True, "ema_momentum": cfg.ema_momentum} if cfg.ema_momentum else {}
    model.compile(tf.keras.optimizers.Adam(cfg.learning_rate, **ema), "binary_crossentropy")
    return model


def lr_schedule(cfg: TrainConfig):
    """The Keras callback that sets epoch e's learning rate to cfg.learning_rate * cfg.lr_decay ** e."""
    import tensorflow as tf

    return tf.keras.callbacks.LearningRateScheduler(lambda epoch: cfg.learning_rate * cfg.lr_decay ** epoch)


def row_weights(rows: pd.DataFrame) -> np.ndarray | None:
    """The per-row loss weights training_rows set (cfg.recency_weight), or None when every row weighs 1."""
    return rows["weight"].to_numpy(dtype="float32") if "weight" in rows else None


def model_inputs(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {field: frame[field].to_numpy(dtype="int64") for field in config.FIELDS}


def fit_arguments(rows: pd.DataFrame, cfg: TrainConfig) -> dict:
    """What every model.fit here is given for `rows` under `cfg`: inputs, labels, row weights, batch size
    and the learning-rate schedule (train and tune both use it, so they cannot drift apart)."""
    return {"x": model_inputs(rows), "y": rows["label"].to_numpy(dtype="float32"),
            "sample_weight": row_weights(rows), "batch_size": cfg.batch_size, "callbacks": [lr_schedule(cfg)]}


def negative_sources(train: pd.DataFrame, negatives: int, per: str, rng: np.random.Generator) -> np.ndarray:
    """Which training rating (row position) each sampled negative is drawn for.

    per="rating": `negatives` for every rating, so a user gets negatives × their number of ratings.
    per="user": every user gets the same count, negatives × the mean number of ratings per user (rounded),
    drawn for ratings of theirs picked at random; light users then meet more unrated movies, heavy users fewer.
    """
    if per == "rating":
        return np.repeat(np.arange(len(train)), negatives)
    if per != "user":
        raise ValueError(f"unknown negatives_per {per!r}; expected one of {', '.join(config.NEGATIVES_PER)}")
    rows_by_user = np.argsort(train["user_id"].to_numpy(), kind="stable")
    _, starts, sizes = np.unique(train["user_id"].to_numpy()[rows_by_user], return_index=True, return_counts=True)
    each = int(round(negatives * len(train) / len(sizes)))
    picked = np.repeat(starts, each) + (rng.random(each * len(sizes)) * np.repeat(sizes, each)).astype(np.int64)
    return rows_by_user[picked]


def sample_unrated(train: pd.DataFrame, catalogue: pd.DataFrame, negatives: int, sampler: str,
                   seed: int, per: str = "rating") -> pd.DataFrame:
    """`negatives` movies per training rating (or per user on average: negative_sources) that the user has
    no training rating for, as label-0 rows.

    A sampled row keeps the user's fields and the rating-time context of the real rating it was drawn
    for; its movie fields come from `catalogue`. `sampler` is "uniform" over the catalogue or
    "popularity" (proportional to a movie's training ratings, so popular movies are also seen unrated).
    """
    rng = np.random.default_rng(seed)
    catalogue = catalogue.sort_values("movie_id", ignore_index=True)
    n_movies = len(catalogue)
    if sampler == "uniform":
        weights = None
    elif sampler == "popularity":
        counts = np.bincount(train["movie_id"], minlength=n_movies).astype(float) + 1.0
        weights = counts / counts.sum()
    else:
        raise ValueError(f"unknown negative sampler {sampler!r}; expected one of {', '.join(config.NEGATIVE_SAMPLERS)}")
    rated = np.unique(train["user_id"].to_numpy() * n_movies + train["movie_id"].to_numpy())
    source = negative_sources(train, negatives, per, rng)
    users = train["user_id"].to_numpy()[source]
    movies = rng.choice(n_movies, size=len(source), p=weights)
    # Redraw the few draws that hit a rated movie; users have rated at most ~2/3 of the catalogue.
    for _ in range(50):
        keys = users * n_movies + movies
        hit = rated[np.minimum(np.searchsorted(rated, keys), len(rated) - 1)] == keys
        if not hit.any():
            break
        movies[hit] = rng.choice(n_movies, size=int(hit.sum()), p=weights)
    sampled = train.iloc[source].reset_index(drop=True)
    for field in config.MOVIE_FIELDS:
        sampled[field] = catalogue[field].to_numpy()[movies]
    sampled["rating"] = 0
    sampled["label"] = 0
    return sampled[~hit].reset_index(drop=True) if hit.any() else sampled


def training_rows(train: pd.DataFrame, cfg: TrainConfig, catalogue: pd.DataFrame | None) -> pd.DataFrame:
    """The rows the model is fitted on: the ratings, plus sampled unrated movies when cfg.negatives > 0.

    Shuffled once here, because Keras holds out the *last* rows for validation and would otherwise
    validate on sampled rows only.
    """
    if cfg.recency_weight:
        order = train.groupby("user_id")["timestamp"].rank(method="first") - 1
        latest = train.groupby("user_id")["timestamp"].transform("size").clip(lower=2) - 1
        train = train.assign(weight=(1 + cfg.recency_weight * order / latest).astype("float32"))
    if cfg.target == "rated":
        train = train.assign(label=np.float32(1))
    elif cfg.target == "graded":
        train = train.assign(label=(train["rating"] / config.MAX_RATING).astype("float32"))
    elif cfg.target != "liked":
        raise ValueError(f"unknown target {cfg.target!r}; expected one of {', '.join(config.TARGETS)}")
    if cfg.negatives == 0:
        return train
    if catalogue is None:
        raise ValueError("negative sampling needs the movie catalogue")
    rows = pd.concat([train, sample_unrated(train, catalogue, cfg.negatives, cfg.negative_sampler, cfg.seed,
                                                 cfg.negatives_per)],
                     ignore_index=True)
    return rows.sample(frac=1.0, random_state=cfg.seed, ignore_index=True)


def epoch_rows(train: pd.DataFrame, cfg: TrainConfig, catalogue: pd.DataFrame | None, epoch: int) -> pd.DataFrame:
    """The rows of epoch `epoch` (from 0): with cfg.fresh_negatives a new draw of negatives (seed + epoch),
    otherwise the same rows as every other epoch."""
    fresh = cfg.negatives and cfg.fresh_negatives
    return training_rows(train, dataclasses.replace(cfg, seed=cfg.seed + epoch) if fresh else cfg, catalogue)


def train_model(train: pd.DataFrame, field_dims: dict[str, int], cfg: TrainConfig, verbose: int = 2,
                catalogue: pd.DataFrame | None = None):
    """Fit on `train` (the last `validation_split` of its rows are held out, as Keras does).

    Returns the model and a history dict: per-epoch loss and val_loss, and the wall time.
    """
    import tensorflow as tf

    tf.keras.utils.set_random_seed(cfg.seed)
    model = build_model(field_dims, cfg)
    started = time.perf_counter()
    if cfg.negatives and cfg.fresh_negatives:
        # A new draw of unrated movies every epoch, so the model meets epochs × negatives different
        # ones per rating instead of the same few again. val_loss is then on each epoch's own held-out
        # tenth of the rows.
        losses = {"loss": [], "val_loss": []}
        for epoch in range(cfg.epochs):
            rows = epoch_rows(train, cfg, catalogue, epoch)
            fitted = model.fit(**fit_arguments(rows, cfg), epochs=epoch + 1, initial_epoch=epoch,
                               validation_split=cfg.validation_split, shuffle=True, verbose=verbose)
            for key in losses:
                losses[key] += fitted.history.get(key, [float("nan")])
        train = rows
    else:
        train = training_rows(train, cfg, catalogue)
        losses = model.fit(**fit_arguments(train, cfg), epochs=cfg.epochs, validation_split=cfg.validation_split,
                           shuffle=True, verbose=verbose).history
    history = {
        "config": dataclasses.asdict(cfg),
        "epochs": [
            {"epoch": i + 1, "loss": float(loss), "val_loss": float(val)}
            for i, (loss, val) in enumerate(zip(losses["loss"], losses.get(
                "val_loss", [float("nan")] * len(losses["loss"]))))
        ],
        "train_seconds": round(time.perf_counter() - started, 1),
        "train_rows": len(train),
    }
    return model, history


def history_path(name: str, split: str = "random", models_dir: Path = config.MODELS_DIR) -> Path:
    return config.model_path(name, split, models_dir).with_suffix(".history.json")


def load_history(name: str, split: str = "random", models_dir: Path = config.MODELS_DIR) -> dict:
    return json.loads(history_path(name, split, models_dir).read_text())


def save_model(model, history: dict, models_dir: Path, name: str) -> Path:
    path = models_dir / f"{name}.keras"
    with atomic_path(path) as tmp:
        model.save(tmp)
    write_json(models_dir / f"{name}.history.json", history)
    return path


def load_model(path: Path):
    quiet_model_imports()
    import tensorflow as tf
    from deepctr.layers import custom_objects

    return tf.keras.models.load_model(path, custom_objects=custom_objects, compile=False)


def epoch_table(history: dict) -> str:
    rows = [f"{'epoch':>5}  {'loss':>8}  {'val_loss':>8}"]
    rows += [f"{e['epoch']:>5}  {e['loss']:8.4f}  {e['val_loss']:8.4f}" for e in history["epochs"]]
    return "\n".join(rows)


def parse_units(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    text = text.strip().strip("()")
    return tuple(int(part) for part in text.replace(" ", "").split(",") if part)


def train_command(
    model: str = typer.Option("autoint", help=f"One of {', '.join(config.MODEL_DEFAULTS)}."),
    epochs: int = typer.Option(None, min=1, help="Default: the seed's 5."),
    lr: float = typer.Option(None, "--lr", min=0.0, help="Adam learning rate. Default: 1e-4."),
    batch_size: int = typer.Option(None, min=1, help="Default: 2048."),
    embedding_dim: int = typer.Option(None, min=1, help="Default: 16."),
    att_layer_num: int = typer.Option(None, min=1),
    att_head_num: int = typer.Option(None, min=1),
    dnn_hidden_units: str = typer.Option(None, help='Comma list, e.g. "32,32"; "" for none.'),
    dnn_dropout: float = typer.Option(None, min=0.0, max=1.0),
    validation_split: float = typer.Option(None, min=0.0, max=0.9),
    negatives: int = typer.Option(None, min=0, help="Sampled unrated movies per rating (0: rated rows only)."),
    negative_sampler: str = typer.Option(None, help=f"One of {', '.join(config.NEGATIVE_SAMPLERS)}."),
    negatives_per: str = typer.Option(None, help=f"One of {', '.join(config.NEGATIVES_PER)}: negatives per rating, "
                                                 "or the same count for every user."),
    fresh_negatives: bool = typer.Option(None, "--fresh-negatives/--fixed-negatives",
                                         help="Draw new negatives every epoch, or once. Default: the model's setting."),
    seed: int = typer.Option(None),
    split: str = typer.Option("random", help=f"One of {', '.join(config.SPLITS)}."),
    processed_dir: Path = typer.Option(config.PROCESSED_DIR),
    models_dir: Path = typer.Option(config.MODELS_DIR),
) -> None:
    """Train one model (defaults: the seed's settings) and save it with its loss history."""
    if model not in config.MODEL_DEFAULTS:
        typer.echo(f"error: unknown model {model!r}; choose one of {', '.join(config.MODEL_DEFAULTS)}", err=True)
        raise typer.Exit(2)
    overrides = {
        "epochs": epochs, "learning_rate": lr, "batch_size": batch_size, "embedding_dim": embedding_dim,
        "att_layer_num": att_layer_num, "att_head_num": att_head_num,
        "dnn_hidden_units": parse_units(dnn_hidden_units), "dnn_dropout": dnn_dropout,
        "validation_split": validation_split, "seed": seed, "negatives": negatives,
        "negative_sampler": negative_sampler, "negatives_per": negatives_per, "fresh_negatives": fresh_negatives,
    }
    cfg = dataclasses.replace(config.MODEL_DEFAULTS[model],
                              **{key: value for key, value in overrides.items() if value is not None})
    if (split not in config.SPLITS or cfg.negative_sampler not in config.NEGATIVE_SAMPLERS
            or cfg.negatives_per not in config.NEGATIVES_PER):
        typer.echo(f"error: split must be one of {', '.join(config.SPLITS)}, the sampler one of "
                   f"{' or '.join(config.NEGATIVE_SAMPLERS)} and negatives-per {' or '.join(config.NEGATIVES_PER)}",
                   err=True)
        raise typer.Exit(2)
    try:
        data = load_processed(processed_dir).split(split)
    except FileNotFoundError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2)
    typer.echo(f"training {model} on the {split} split's {len(data.train):,} ratings: {cfg}")
    fitted, history = train_model(data.train, data.encoders.dims(), cfg,
                                  verbose=1 if sys.stdout.isatty() else 2, catalogue=data.movies)
    history["split"] = split
    path = save_model(fitted, history, config.model_path(model, split, models_dir).parent, model)
    typer.echo(epoch_table(history))
    typer.echo(f"trained in {history['train_seconds']} s; saved {path}")


if __name__ == "__main__":
    typer.run(train_command)
