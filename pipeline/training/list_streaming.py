"""The two-stage ranker trained from its candidate-list shards through tf.data (`train --streaming`, `--workers N`).

The in-memory trainer (pipeline/training/ranker.py train_ranker) loads every out-of-fold list; this one reads the
shards `make candidates` wrote (pipeline/ranking/list_shards.py) one row group at a time, so memory holds one row
group, a shuffle buffer of whole lists and a few prefetched batches, whatever the number of ratings.

The rules are the in-memory trainer's: the same users' lists are held out for val_loss (ranker.validation_owners),
each epoch's training lists pass through ranker.anonymized, and a batch is batch_size // candidates whole lists,
expanded to candidate rows by the scorer's own list_inputs. What differs is the order: row groups in random order
per epoch, whole lists through a shuffle buffer. On N workers (MultiWorkerMirroredStrategy) each worker reads its
share of the row groups (dealt so the shares are even) with batches of 1/N of the lists, and all run the same
number of steps (the fewest full batches any worker has), so the global batch and the learning rate are the
model's settings.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from pipeline import config_scale, quiet_imports
from pipeline.config import TrainConfig
from pipeline.data.fields import Encoders
from pipeline.ranking import architecture, list_shards
from pipeline.ranking.candidates import CandidateLists
from pipeline.ranking.ranker_inputs import list_inputs, movie_table
from pipeline.training import callbacks, ranker, training_log

PARTS = {"train": 1, "validation": 2}


@dataclass(frozen=True)
class ListPlan:
    """Which lists a streamed epoch reads: the shards' row groups, and per group how many of its lists are
    training lists and how many held out (their owners are among `validation`)."""

    folder: Path
    groups: list[list_shards.Group]
    counts: dict[str, np.ndarray]  # part → lists per group
    validation: np.ndarray  # sorted user codes held out
    cfg: TrainConfig

    @staticmethod
    def open(folder: Path, n_users: int, cfg: TrainConfig) -> ListPlan:
        groups = list_shards.groups(folder)
        validation = np.sort(ranker.validation_owners(n_users, cfg, np.random.default_rng(cfg.seed)))
        held = np.array([np.isin(list_shards.owners(group), validation).sum() for group in groups], dtype=np.int64)
        sizes = np.array([group.lists for group in groups], dtype=np.int64)
        return ListPlan(Path(folder), groups, {"train": sizes - held, "validation": held}, validation, cfg)

    def worker_groups(self, worker: int, workers: int) -> np.ndarray:
        """The row groups worker `worker` of `workers` reads: dealt largest first, each to the worker with the
        fewest training lists so far (ties to the lower index), so the workers' shares are as even as the
        groups allow; the same on every worker, which computes it alone."""
        dealt, owner = np.zeros(workers, dtype=np.int64), np.empty(len(self.groups), dtype=np.int64)
        for index in np.argsort(-self.counts["train"], kind="stable"):
            owner[index] = int(np.argmin(dealt))
            dealt[owner[index]] += self.counts["train"][index]
        return np.flatnonzero(owner == worker)

    def lists_in(self, part: str, worker: int = 0, workers: int = 1) -> int:
        return int(self.counts[part][self.worker_groups(worker, workers)].sum())


def steps_per_epoch(plan: ListPlan, part: str, lists_per_batch: int, workers: int) -> int:
    """Batches every worker runs per epoch: one worker takes its last, partial batch (as the in-memory
    trainer does); several stop at the fewest full per-worker batches any of them has. A training epoch
    stops after cfg.epoch_lists lists when that is set."""
    if workers == 1:
        steps = math.ceil(plan.lists_in(part) / lists_per_batch)
    else:
        per_worker = max(1, lists_per_batch // workers)
        steps = min(plan.lists_in(part, w, workers) // per_worker for w in range(workers))
    if part == "train" and plan.cfg.epoch_lists:
        steps = min(steps, math.ceil(plan.cfg.epoch_lists / lists_per_batch))
    return steps


def _part_of(lists: CandidateLists, plan: ListPlan, part: str) -> CandidateLists:
    held = np.isin(lists.owner, plan.validation)
    return lists.take(held if part == "validation" else ~held)


def list_batches(
    plan: ListPlan, part: str, epoch: int, lists_per_batch: int, worker: int = 0, workers: int = 1
) -> Iterator[CandidateLists]:
    """The worker's lists of `part` in batches of `lists_per_batch` whole lists (the last may be smaller):
    training lists with row groups in random order, through a shuffle buffer, anonymized as the in-memory
    trainer does; validation lists in file order."""
    train = part == "train"
    rng = np.random.default_rng([plan.cfg.seed, epoch, worker, PARTS[part]])
    order = plan.worker_groups(worker, workers)
    if train:
        order = rng.permutation(order)
    capacity = config_scale.LIST_STREAMING["shuffle_buffer_lists"] if train else 0
    buffer: CandidateLists | None = None
    for index in order:
        if not plan.counts[part][index]:
            continue
        lists = _part_of(list_shards.read_group(plan.groups[index]), plan, part)
        buffer = lists if buffer is None else CandidateLists.concat([buffer, lists])
        if len(buffer) <= capacity:
            continue
        if train:
            buffer = buffer.take(rng.permutation(len(buffer)))
        leaving = (len(buffer) - capacity) // lists_per_batch * lists_per_batch
        for start in range(0, leaving, lists_per_batch):
            batch = buffer.take(slice(start, start + lists_per_batch))
            yield ranker.anonymized(batch, plan.cfg, rng) if train else batch
        buffer = buffer.take(slice(leaving, None))
    if buffer is not None and len(buffer):
        if train:
            buffer = buffer.take(rng.permutation(len(buffer)))
        for start in range(0, len(buffer), lists_per_batch):
            batch = buffer.take(slice(start, start + lists_per_batch))
            yield ranker.anonymized(batch, plan.cfg, rng) if train else batch


def dataset(plan: ListPlan, part: str, movies: np.ndarray, lists_per_batch: int, worker: int, workers: int, steps: int):
    """The worker's batches of every epoch in turn (`steps` each), expanded to candidate rows and their
    labels, as one tf.data.Dataset from a Python generator (no auto-sharding: each worker reads its own
    row groups). Keras keeps the training iterator across epochs; each validation pass starts a new one."""
    tf = quiet_imports.tensorflow()
    sample = list_inputs(list_shards.read_group(plan.groups[0]).take(slice(0, 1)), movies, plan.cfg)
    signature = (
        {name: tf.TensorSpec([None, *values.shape[1:]], tf.as_dtype(values.dtype)) for name, values in sample.items()},
        tf.TensorSpec([None, 1], tf.float32),
    )
    passes = itertools.count()

    def epoch_batches(epoch: int):
        for count, lists in enumerate(list_batches(plan, part, epoch, lists_per_batch, worker, workers)):
            if count >= steps:
                return
            yield list_inputs(lists, movies, plan.cfg), lists.labels.reshape(-1, 1).astype(np.float32)

    def every_batch():
        if part == "train":
            for epoch in range(plan.cfg.epochs):
                yield from epoch_batches(epoch)
        else:
            yield from epoch_batches(min(next(passes), plan.cfg.epochs - 1))

    data = tf.data.Dataset.from_generator(every_batch, output_signature=signature)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return data.with_options(options).prefetch(config_scale.LIST_STREAMING["prefetch_batches"])


def inputs_for(plan: ListPlan, part: str, movies: np.ndarray, strategy, workers: int):
    """(dataset, steps per epoch) of `part`: a plain dataset on one worker, or a distributed one (each worker
    builds its own row groups' pipeline with its share of the lists) under a strategy."""
    lists_per_batch = max(1, plan.cfg.batch_size // plan.cfg.candidates)
    steps = steps_per_epoch(plan, part, lists_per_batch, workers)
    if strategy is None:
        return dataset(plan, part, movies, lists_per_batch, 0, 1, steps), steps

    def per_worker(context):
        share = context.get_per_replica_batch_size(lists_per_batch)
        return dataset(plan, part, movies, share, context.input_pipeline_id, context.num_input_pipelines, steps)

    return strategy.distribute_datasets_from_function(per_worker), steps


def check_lists(folder: Path | None, cfg: TrainConfig, n_movies: int) -> Path:
    """The lists folder, if it holds lists made with cfg's list settings; else ValueError/FileNotFoundError
    with the command that makes them."""
    if folder is None or list_shards.settings_of(folder) is None:
        raise FileNotFoundError(
            f"{folder or 'no --candidate-lists'}: no finished candidate lists; run `make candidates` "
            "(python -m pipeline candidates) first"
        )
    if list_shards.settings_of(folder) != ranker.list_settings(cfg, n_movies):
        raise ValueError(
            f"{folder} was made with other list settings than {cfg.model}'s; rebuild it with `make candidates`"
        )
    return Path(folder)


def train_streamed_ranker(
    lists_folder: Path,
    processed_dir: Path,
    cfg: TrainConfig,
    strategy=None,
    workers: int = 1,
    echo=None,
    progress: bool = False,
):
    """Fit the two-stage ranker cfg describes on the lists in `lists_folder`, streamed, in one fit call.
    Returns the model and a training log like train_ranker's, plus "input": how the lists came and the
    per-epoch seconds and rows."""
    tf = quiet_imports.tensorflow()
    processed_dir = Path(processed_dir)
    catalogue = pd.read_parquet(processed_dir / "movies.parquet")
    n_users = pq.ParquetFile(processed_dir / "users.parquet").metadata.num_rows
    check_lists(lists_folder, cfg, len(catalogue))
    dims = Encoders.load(processed_dir / "encoders.json").dims()
    movies = movie_table(catalogue)
    started = time.perf_counter()
    plan = ListPlan.open(lists_folder, n_users, cfg)
    tf.keras.utils.set_random_seed(cfg.seed)
    if strategy is None:
        model = architecture.build_model(dims, cfg)
        fitted = ranker.trainable(model, cfg)
    else:
        with strategy.scope():
            model = architecture.build_model(dims, cfg)
            fitted = ranker.trainable(model, cfg)
    data, steps = inputs_for(plan, "train", movies, strategy, workers)
    lists_per_batch = max(1, cfg.batch_size // cfg.candidates)
    rows = min(steps * lists_per_batch, plan.lists_in("train")) * cfg.candidates
    log = callbacks.epoch_log(lambda epoch: rows, cfg, echo)
    fit = {
        "epochs": cfg.epochs,
        "steps_per_epoch": steps,
        "verbose": 0,
        "callbacks": [callbacks.lr_schedule(cfg), callbacks.epoch_progress(cfg.model, progress), log],
    }
    if plan.lists_in("validation") and steps_per_epoch(plan, "validation", lists_per_batch, workers):
        fit["validation_data"], fit["validation_steps"] = inputs_for(plan, "validation", movies, strategy, workers)
    losses = fitted.fit(data, **fit).history
    history = training_log.training_log(cfg, losses, time.perf_counter() - started, rows)
    history["input"] = {
        "mode": "streaming",
        "workers": workers,
        "source": str(lists_folder),
        "source_lists": int(sum(group.lists for group in plan.groups)),
        "epoch_lists": int(rows // cfg.candidates),
        "epochs": log.epochs,
    }
    return model, history
