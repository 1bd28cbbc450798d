"""Fit the two-stage ranker: DeepCTR AutoInt ordering the retrieval stage's candidates.

Training asks exactly what serving asks, without leakage: the training rows are cut into per-user folds;
for fold f, a retrieval model fitted on the *other* folds proposes each user's K candidates, and the
user's liked movies of fold f label them. A training row's retrieval signal therefore comes from a
model that never saw that row, and its movie is never in its list's history (it is not an input row).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import typer
from tqdm import tqdm

from pipeline import config, config_scale, quiet_imports
from pipeline.config import TrainConfig
from pipeline.data.processed import Processed
from pipeline.data.splits import split_temporal
from pipeline.files import record_timing
from pipeline.ranking import architecture, list_shards
from pipeline.ranking.candidates import CandidateLists, user_chunks, user_lists
from pipeline.ranking.ranker_inputs import list_inputs, movie_table
from pipeline.retrieval import retriever
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


def fold_lists(
    train: pd.DataFrame,
    users: pd.DataFrame,
    n_movies: int,
    cfg: TrainConfig,
    chunk_users: int | None = None,
    progress=lambda message: None,
) -> Iterator[tuple[int, Iterator[CandidateLists]]]:
    """Out-of-fold candidate lists, lazily: for each fold, (fold, its lists chunk by chunk in user order),
    from a retrieval model fitted without that fold and labelled by it. Each fold's chunks are to be used
    up before the next fold is asked for. Lists without a single liked candidate teach a listwise loss
    nothing and are dropped."""
    for held_out, (inputs, labels) in enumerate(fold_pairs(train, cfg)):
        yield held_out, _fold_chunks(held_out, inputs, labels, users, n_movies, cfg, chunk_users, progress)


def _fold_chunks(held_out, inputs, labels, users, n_movies, cfg, chunk_users, progress) -> Iterator[CandidateLists]:
    started = time.perf_counter()
    fitted = retriever.fit(inputs, len(users), n_movies)
    made, liked = 0, 0.0
    chunks = user_chunks(inputs, chunk_users, labels)
    total = -(-inputs["user_id"].nunique() // chunk_users) if chunk_users else 1
    for chunk_inputs, chunk_labels in tqdm(
        chunks, total=total, desc=f"fold {held_out + 1}/{cfg.folds}", unit="chunk", disable=total < 2, leave=False
    ):
        lists = user_lists(fitted, chunk_inputs, users, cfg, labels_from=chunk_labels)
        if cfg.loss == "listwise":
            lists = lists.take(lists.labels.sum(axis=1) > 0)
        made, liked = made + len(lists), liked + float(lists.labels.sum())
        yield lists
    progress(
        f"fold {held_out + 1}/{cfg.folds}: {made:,} lists, {liked / max(1, made * cfg.candidates):.1%} liked "
        f"candidates, {fitted.kind} retrieval ({time.perf_counter() - started:.0f} s)"
    )


def training_lists(
    train: pd.DataFrame, users: pd.DataFrame, n_movies: int, cfg: TrainConfig, progress=lambda message: None
) -> CandidateLists:
    """Every out-of-fold candidate list (fold_lists) in memory, fold by fold."""
    return CandidateLists.concat(
        [chunk for _, chunks in fold_lists(train, users, n_movies, cfg, None, progress) for chunk in chunks]
    )


def list_settings(cfg: TrainConfig, n_movies: int) -> dict:
    """What decides cfg's training lists (config.LIST_SETTINGS), with the retrieval model's settings."""
    return {**{name: getattr(cfg, name) for name in config.LIST_SETTINGS}, "retrieval": retriever.settings(n_movies)}


def lists_path(split: str = "random", models_dir: Path = config.MODELS_DIR) -> Path:
    """The folder of a split's candidate-list shards (pipeline/ranking/list_shards.py)."""
    return config.model_path("candidate_lists", split, models_dir).with_suffix("")


def saved_lists(folder: Path | None, cfg: TrainConfig, n_movies: int) -> CandidateLists | None:
    """The lists `candidates_command` saved in `folder` if they were made with cfg's list settings, else None
    (a one-off option such as CANDIDATES=50 then builds its own lists)."""
    if folder is None or list_shards.settings_of(folder) != list_settings(cfg, n_movies):
        return None
    return list_shards.load(folder)[0]


def validation_owners(n_users: int, cfg: TrainConfig, rng: np.random.Generator) -> np.ndarray:
    """The users whose lists are held out for val_loss (cfg.validation_split of all users), drawn from rng."""
    return rng.choice(n_users, int(cfg.validation_split * n_users), replace=False)


def list_ratings(processed_dir: Path, split: str) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """What the lists are made of, and no more: the split's training ratings (the columns user_lists reads,
    as 32-bit codes), the user table and the catalogue size. At 25 M ratings this is ~0.7 GB where the
    whole processed split would be several."""
    processed_dir = Path(processed_dir)
    name = "train.parquet" if split == "random" else f"{split}_train.parquet"
    for needed in (name, "users.parquet", "movies.parquet"):
        if not (processed_dir / needed).is_file():
            raise FileNotFoundError(f"{processed_dir / needed} not found; run `make preprocess` first")
    columns = ["user_id", "movie_id", "label", "timestamp", *config.CONTEXT_FIELDS]
    train = pd.read_parquet(processed_dir / name, columns=columns)
    train = train.astype({column: np.int32 for column in columns if column != "timestamp"})
    users = pd.read_parquet(processed_dir / "users.parquet")
    n_movies = pq.ParquetFile(processed_dir / "movies.parquet").metadata.num_rows
    return train, users, n_movies


def anonymized(lists: CandidateLists, cfg: TrainConfig, rng: np.random.Generator) -> CandidateLists:
    """cfg.anonymous_share of the lists with user_id and zip unknown (0); of those, cfg.newcomer_share made
    to look like a new person's: only liked movies known (no disliked ones; ALS's every-rating score from the
    liked ones only), and for half of them gender, age and occupation unknown too."""
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
    changed = {"profile": profile, "disliked": disliked, "rated_from_disliked": rated_from_disliked}
    if lists.als_rated is not None:
        als_rated = lists.als_rated.copy()
        als_rated[newcomer] = lists.als_rated_from_liked[newcomer]
        changed["als_rated"] = als_rated
    return dataclasses.replace(lists, **changed)


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
    logits.optimizer.build(logits.trainable_variables)  # one trace of the train step, as in build_model
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
    validation = np.isin(lists.owner, validation_owners(len(data.users), cfg, rng))
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
    """Build the two-stage rankers' out-of-fold candidate lists once → models/[<split>/]candidate_lists/
    (one parquet shard per fold, row groups of config_scale.LIST_CHUNK_USERS users, lists.json last)."""
    started = time.perf_counter()
    cfg = config.model_settings(config.model_name(config.DEFAULT_ARCHITECTURE), split.value)
    try:
        train, users, n_movies = list_ratings(processed_dir, split.value)
    except FileNotFoundError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    folds = fold_lists(train, users, n_movies, cfg, config_scale.LIST_CHUNK_USERS, progress=typer.echo)
    if Path(models_dir).resolve() == config.MODELS_DIR.resolve():
        producer = "make candidates" if split.value == "random" else "make study"
    else:
        producer = f"python -m pipeline candidates --split {split.value} --processed-dir {processed_dir} " + (
            f"--models-dir {models_dir}"
        )
    target = list_shards.write(lists_path(split.value, models_dir), folds, list_settings(cfg, n_movies), producer)
    seconds = time.perf_counter() - started
    record_timing(
        models_dir.parent, "candidate lists" + ("" if split.value == "random" else f" ({split.value})"), seconds
    )
    lists = sum(group.lists for group in list_shards.groups(target))
    typer.echo(
        f"candidate lists ({split.value}): {lists:,} lists of {cfg.candidates} in {seconds:.0f} s; saved {target}"
    )
