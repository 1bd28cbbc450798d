"""Fit the two-stage ranker: DeepCTR AutoInt ordering the retrieval stage's candidates.

Training asks exactly what serving asks, without leakage: the training rows are cut into per-user folds;
for fold f, a retrieval model fitted on the *other* folds proposes each user's K candidates, and the
user's liked movies of fold f label them. A training row's retrieval signal therefore comes from a
model that never saw that row, and its movie is never in its list's history (it is not an input row).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd
import typer

from pipeline import config, quiet_imports
from pipeline.config import TrainConfig
from pipeline.data.preprocess import Processed, load_processed, split_temporal
from pipeline.files import record_timing
from pipeline.ranking import architecture
from pipeline.ranking.candidates import CandidateLists, user_lists
from pipeline.ranking.ranker_inputs import list_inputs, movie_table
from pipeline.retrieval import ease
from pipeline.training.callbacks import epoch_progress
from pipeline.training.training_log import training_log


def folds_of(rows: pd.DataFrame, folds: int, seed: int) -> np.ndarray:
    """A fold 0..folds-1 for every row, dealt round-robin over each user's rows in random order, so every
    user's rows spread evenly over the folds."""
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(rows)), rows["user_id"].to_numpy()))
    position = np.empty(len(rows), dtype=np.int64)
    position[order] = np.arange(len(rows))
    first = np.searchsorted(rows["user_id"].to_numpy()[order], rows["user_id"].to_numpy())
    return (position - first) % folds


def fold_pairs(train: pd.DataFrame, cfg: TrainConfig):
    """(inputs, labels) row pairs of cfg.fold_scheme (see TrainConfig.folds), one per fold, lazily."""
    if cfg.fold_scheme == "random":
        fold = folds_of(train, cfg.folds, cfg.seed)
        for held_out in range(cfg.folds):
            yield train[fold != held_out], train[fold == held_out]
    elif cfg.fold_scheme == "time":
        rest = train
        for _ in range(cfg.folds):
            rest, latest = split_temporal(rest)
            yield rest, latest
    else:
        raise ValueError(f"unknown fold scheme {cfg.fold_scheme!r}; expected random or time")


def training_lists(
    train: pd.DataFrame, users: pd.DataFrame, n_movies: int, cfg: TrainConfig, progress=lambda message: None
) -> CandidateLists:
    """Out-of-fold candidate lists: for each fold, retrieval fitted without it proposes, the fold labels.
    Lists without a single liked candidate teach a listwise loss nothing and are dropped."""
    parts = []
    for held_out, (inputs, labels) in enumerate(fold_pairs(train, cfg)):
        started = time.perf_counter()
        fitted = ease.fit(inputs, len(users), n_movies)
        lists = user_lists(fitted, inputs, users, cfg, labels_from=labels)
        parts.append(lists.take(lists.labels.sum(axis=1) > 0) if cfg.loss == "listwise" else lists)
        progress(
            f"fold {held_out + 1}/{cfg.folds}: {len(parts[-1]):,} lists, "
            f"{parts[-1].labels.mean():.1%} liked candidates ({time.perf_counter() - started:.0f} s)"
        )
    return CandidateLists.concat(parts)


def list_settings(cfg: TrainConfig) -> dict:
    """What decides cfg's training lists (config.LIST_SETTINGS), with the retrieval model's L2."""
    return {**{name: getattr(cfg, name) for name in config.LIST_SETTINGS}, "ease_l2": config.EASE_L2}


def lists_path(split: str = "random", models_dir: Path = config.MODELS_DIR) -> Path:
    return config.model_path("candidate_lists", split, models_dir).with_suffix(".npz")


def saved_lists(path: Path | None, cfg: TrainConfig) -> CandidateLists | None:
    """The lists `candidates_command` saved at `path` if they were made with cfg's list settings, else None
    (a one-off option such as CANDIDATES=50 then builds its own lists)."""
    if path is None or not Path(path).is_file():
        return None
    lists, made_with = CandidateLists.load(path)
    return lists if made_with == list_settings(cfg) else None


def anonymized(lists: CandidateLists, cfg: TrainConfig, rng: np.random.Generator) -> CandidateLists:
    """cfg.anonymous_share of the lists with user_id and zip unknown (0); of those, cfg.newcomer_share made
    to look like a new person's: only liked movies known (no disliked ones), and for half of them gender,
    age and occupation unknown too."""
    if not cfg.anonymous_share:
        return lists
    profile, disliked, rated_from_disliked = (
        lists.profile.copy(),
        lists.disliked.copy(),
        lists.rated_from_disliked.copy(),
    )
    anonymous = rng.random(len(lists)) < cfg.anonymous_share
    profile[anonymous, 0] = 0
    profile[anonymous, config.USER_FIELDS.index("zip")] = 0
    newcomer = anonymous & (rng.random(len(lists)) < cfg.newcomer_share)
    disliked[newcomer] = 0.0
    rated_from_disliked[newcomer] = 0.0
    silent = newcomer & (rng.random(len(lists)) < 0.5)
    for field in ("gender", "age", "occupation"):
        profile[silent, config.USER_FIELDS.index(field)] = 0
    return dataclasses.replace(lists, profile=profile, disliked=disliked, rated_from_disliked=rated_from_disliked)


def list_dataset(lists: CandidateLists, movies: np.ndarray, cfg: TrainConfig, seed: int):
    """A tf.data pipeline of batches of whole lists (cfg.batch_size // cfg.candidates each), shuffled, each
    batch expanded to its candidate rows by list_inputs (the scorer's own function), with their labels."""
    tf = quiet_imports.tensorflow()
    n_lists, k = lists.movies.shape
    sample = list_inputs(lists.take(slice(0, 1)), movies, cfg)
    names = list(sample)

    def expand(index: np.ndarray):
        part = lists.take(index)
        inputs = list_inputs(part, movies, cfg)
        return [*(inputs[name] for name in names), part.labels.reshape(-1, 1)]

    def as_tensors(index):
        out = tf.numpy_function(
            expand, [index], [*(tf.as_dtype(sample[name].dtype) for name in names), tf.float32], stateful=False
        )
        for tensor, name in zip(out, names):
            tensor.set_shape([None, *sample[name].shape[1:]])
        out[-1].set_shape([None, 1])
        return dict(zip(names, out[:-1])), out[-1]

    lists_per_batch = max(1, cfg.batch_size // k)
    return (
        tf.data.Dataset.range(n_lists)
        .shuffle(n_lists, seed=seed)
        .batch(lists_per_batch)
        .map(as_tensors, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(2)
    )


def listwise_loss(k: int):
    """Softmax cross-entropy over each list of k candidate logits against its liked candidates (each
    liked one weighs 1/#liked), averaged over the lists with at least one liked candidate."""
    tf = quiet_imports.tensorflow()

    def loss(labels, logits):
        labels, logits = tf.reshape(labels, [-1, k]), tf.reshape(logits, [-1, k])
        liked = tf.reduce_sum(labels, axis=1)
        per_list = -tf.reduce_sum(labels * tf.nn.log_softmax(logits, axis=1), axis=1) / tf.maximum(liked, 1.0)
        return tf.reduce_sum(per_list) / tf.maximum(tf.reduce_sum(tf.cast(liked > 0, tf.float32)), 1.0)

    return loss


def trainable(model, cfg: TrainConfig):
    """What is fitted: with the listwise loss, the same weights as `model` but ending at the logit (the
    sigmoid of DeepCTR's PredictionLayer does not change an order); otherwise `model` itself."""
    tf = quiet_imports.tensorflow()
    if cfg.loss != "listwise":
        return model
    logits = tf.keras.Model(model.inputs, model.layers[-1].input)
    logits.compile(tf.keras.optimizers.Adam(cfg.learning_rate), listwise_loss(cfg.candidates))
    return logits


def train_ranker(
    data: Processed,
    cfg: TrainConfig,
    progress: bool = False,
    log=print,
    on_epoch=None,
    lists: CandidateLists | None = None,
):
    """Fit the ranker on out-of-fold candidate lists of data.train (`lists`, or built here when None).
    Returns the model and its training log. on_epoch(epoch, model, train_seconds), if given, is called after
    every epoch (make tune scores there)."""
    tf = quiet_imports.tensorflow()
    started = time.perf_counter()
    if lists is None:
        lists = training_lists(data.train, data.users, len(data.movies), cfg, progress=log)
    rng = np.random.default_rng(cfg.seed)
    validation = np.isin(
        lists.owner, rng.choice(len(data.users), int(cfg.validation_split * len(data.users)), replace=False)
    )
    fit_lists, val_lists = lists.take(~validation), lists.take(validation)
    movies = movie_table(data.movies)
    tf.keras.utils.set_random_seed(cfg.seed)
    model = architecture.build_model(data.encoders.dims(), cfg)
    fitted = trainable(model, cfg)
    bar = epoch_progress(cfg.model, progress)
    losses = {"loss": [], "val_loss": []}
    for epoch in range(cfg.epochs):
        fitted.optimizer.learning_rate.assign(cfg.learning_rate * cfg.lr_decay**epoch)
        epoch_lists = anonymized(fit_lists, cfg, rng)
        validation_data = list_dataset(val_lists, movies, cfg, cfg.seed) if len(val_lists) else None
        result = fitted.fit(
            list_dataset(epoch_lists, movies, cfg, cfg.seed + epoch),
            epochs=epoch + 1,
            initial_epoch=epoch,
            validation_data=validation_data,
            callbacks=[bar],
            verbose=0,
        )
        for key in losses:
            losses[key] += result.history.get(key, [float("nan")])
        if on_epoch is not None:
            on_epoch(epoch, model, time.perf_counter() - started)
    rows = len(fit_lists) * cfg.candidates
    return model, training_log(cfg, losses, time.perf_counter() - started, rows)


def candidates_command(
    split: config.Split = typer.Option(config.Split.random, help="The split whose training rows to cut into folds."),
    processed_dir: Path = typer.Option(config.PROCESSED_DIR),
    models_dir: Path = typer.Option(config.MODELS_DIR),
) -> None:
    """Build the two-stage rankers' out-of-fold candidate lists once → models/[<split>/]candidate_lists.npz."""
    started = time.perf_counter()
    cfg = config.model_settings(config.model_name(config.DEFAULT_ARCHITECTURE), split.value)
    try:
        data = load_processed(processed_dir).split(split.value)
    except FileNotFoundError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    lists = training_lists(data.train, data.users, len(data.movies), cfg, progress=typer.echo)
    target = lists.save(lists_path(split.value, models_dir), list_settings(cfg))
    seconds = time.perf_counter() - started
    record_timing(
        models_dir.parent, "candidate lists" + ("" if split.value == "random" else f" ({split.value})"), seconds
    )
    typer.echo(
        f"candidate lists ({split.value}): {len(lists):,} lists of {cfg.candidates} in {seconds:.0f} s; saved {target}"
    )
