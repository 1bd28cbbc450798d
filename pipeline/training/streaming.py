"""Training rows of the 14-field models streamed from parquet through tf.data (`train --streaming`).

The in-memory path (train.train_model) materialises every training row and its sampled negatives as
NumPy arrays. This one never holds more than one parquet row group, a bounded shuffle buffer and a few
prefetched batches, so memory stays flat in the number of ratings; what does grow is the embedding
tables and the rated-pair index that keeps sampled negatives unrated (4-8 bytes per training rating).

Which rows an epoch has is the plan's (pipeline/training/stream_plan.py: the held-out ratings and the
negatives, keyed by file row, the same on any number of workers); this module decides only the order
they come in (pieces of row groups through a shuffle buffer), cuts them into batches, and feeds them to
Keras through tf.data, on one worker or on each worker of a MultiWorkerMirroredStrategy.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import config, config_scale, quiet_imports
from pipeline.config import TrainConfig
from pipeline.data.fields import Encoders
from pipeline.ranking import architecture
from pipeline.training import callbacks, training_log
from pipeline.training.stream_plan import Plan

Batch = tuple[dict[str, np.ndarray], np.ndarray]


def open_plan(processed_dir: Path, split: str, cfg: TrainConfig) -> tuple[Plan, dict[str, int]]:
    """The streaming plan of `split`'s training rows and the field dimensions, reading only the
    encoders and the catalogue into memory."""
    encoders_path = Path(processed_dir) / "encoders.json"
    if not encoders_path.is_file():
        raise FileNotFoundError(f"{encoders_path} not found; run `make preprocess` first")
    name = "train.parquet" if split == "random" else f"{split}_train.parquet"
    catalogue = pd.read_parquet(Path(processed_dir) / "movies.parquet", columns=list(config.MOVIE_FIELDS))
    return Plan.open(Path(processed_dir) / name, catalogue, cfg), Encoders.load(encoders_path).dims()


# --- The order of the rows --------------------------------------------------------------------------


def _take(rows: dict[str, np.ndarray], index) -> dict[str, np.ndarray]:
    return {name: values[index] for name, values in rows.items()}


def _join(first: dict[str, np.ndarray] | None, second: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return second if first is None else {name: np.concatenate([first[name], second[name]]) for name in second}


def rated_pieces(plan: Plan, part: str, epoch: int, worker: int, workers: int, shuffle: bool) -> Iterator[dict]:
    """The worker's rated rows of `part` (Plan.rated_rows), piece by piece, in file order or with the pieces
    shuffled."""
    start, stop = plan.shard(part, worker, workers)
    pieces = plan.source.pieces(start, stop, config_scale.STREAMING["piece_rows"])
    rng = np.random.default_rng([plan.cfg.seed, epoch, worker, 1 if part == "train" else 2])
    if shuffle:
        # Row groups in random order, and each row group's pieces in random order: pyarrow decodes whole
        # row groups, so a group is read once and its pieces used before the next group is read.
        groups = rng.permutation(sorted({piece[0] for piece in pieces}))
        pieces = [
            piece
            for group in groups
            for piece in rng.permutation(np.array([p for p in pieces if p[0] == group], dtype=np.int64))
        ]
    cache: tuple[int, dict] | None = None
    for group, lo, hi in pieces:
        if cache is None or cache[0] != group:
            g_lo, g_hi = max(start, plan.source.group_starts[group]), min(stop, plan.source.group_starts[group + 1])
            cache = (group, plan.source.read(int(group), g_lo, g_hi))
        first = cache[1]["row"][0]
        yield plan.rated_rows(_take(cache[1], slice(lo - first, hi - first)), part, epoch)


def shuffle_step(buffer: dict | None, piece: dict, capacity: int, rng: np.random.Generator) -> tuple[dict | None, dict]:
    """One step of a shuffle buffer: (the rows that leave, the buffer) after `piece` joins it.

    Once buffer and piece hold more than `capacity` rows, a uniformly random set of them leaves, in random
    order, so that `capacity` stay. The piece's staying rows take the places of the buffer's leaving rows,
    so a step copies about a piece's worth of rows, not the whole buffer.
    """
    buffer = buffer or _take(piece, slice(0))
    held, new = len(buffer["row"]), len(piece["row"])
    if held + new <= capacity:
        return None, _join(buffer, piece)
    leave = rng.choice(held + new, size=held + new - capacity, replace=False)
    from_buffer = leave < held
    holes, from_piece = leave[from_buffer], leave[~from_buffer] - held
    staying = np.ones(new, dtype=bool)
    staying[from_piece] = False
    stay = np.flatnonzero(staying)
    leaving = {}
    for name, values in piece.items():
        leaving[name] = np.empty((len(leave), *values.shape[1:]), dtype=values.dtype)
        leaving[name][from_buffer], leaving[name][~from_buffer] = buffer[name][holes], values[from_piece]
        buffer[name][holes] = values[stay[: len(holes)]]
        if len(stay) > len(holes):
            buffer[name] = np.concatenate([buffer[name], values[stay[len(holes) :]]])
    return leaving, buffer


def batches(
    plan: Plan,
    part: str,
    epoch: int,
    batch_size: int,
    worker: int = 0,
    workers: int = 1,
    steps: int | None = None,
    with_rows: bool = False,
) -> Iterator[Batch]:
    """Batches of `batch_size` model rows (the last may be smaller), at most `steps` of them.

    Training rows pass through a shuffle buffer of STREAMING["shuffle_buffer_rows"] rated rows
    (shuffle_step): the rows leaving it are mixed with their negatives and cut into batches. Validation
    rows are read in file order.
    """
    shuffle = part == "train"
    capacity = config_scale.STREAMING["shuffle_buffer_rows"]
    rng = np.random.default_rng([plan.cfg.seed, epoch, worker, 3]) if shuffle else None
    buffer: dict[str, np.ndarray] | None = None
    pending: dict[str, np.ndarray] | None = None
    emitted = 0

    def cut(rows, final: bool):
        nonlocal pending, emitted
        rows = _join(pending, rows)
        n = len(rows["row"])
        full = n if final else n - n % batch_size
        for lo in range(0, full, batch_size):
            if steps is not None and emitted >= steps:
                return
            emitted += 1
            chunk = _take(rows, slice(lo, lo + batch_size))
            inputs = {field: chunk[field][:, None] for field in config.FIELDS}
            yield (inputs, chunk["label"][:, None], chunk["row"]) if with_rows else (inputs, chunk["label"][:, None])
        pending = _take(rows, slice(full, None))

    for piece in rated_pieces(plan, part, epoch, worker, workers, shuffle):
        leaving, buffer = shuffle_step(buffer, piece, capacity, rng) if shuffle else (piece, None)
        if leaving is None:
            continue
        yield from cut(plan.with_negatives(leaving, rng), final=False)
        if steps is not None and emitted >= steps:
            return
    if buffer is not None and len(buffer["row"]):
        yield from cut(plan.with_negatives(buffer, rng), final=True)
    elif pending is not None and len(pending["row"]):
        yield from cut(_take(pending, slice(0)), final=True)


def epoch_frame(plan: Plan, epoch: int, part: str = "train") -> pd.DataFrame:
    """Every row of `part` this epoch in file order, negatives after their piece's ratings (the reference
    the streamed batches are checked against in the tests): fields, label, and the file row it comes from."""
    parts = [plan.with_negatives(piece, None) for piece in rated_pieces(plan, part, epoch, 0, 1, shuffle=False)]
    if not parts:
        return pd.DataFrame(columns=[*config.FIELDS, "label", "row"])
    return pd.DataFrame({name: np.concatenate([p[name] for p in parts]) for name in parts[0]})


# --- tf.data and Keras ------------------------------------------------------------------------------


def steps_per_epoch(plan: Plan, part: str, epochs: int, global_batch: int, workers: int) -> int:
    """Batches every worker runs in every epoch (Keras takes one steps_per_epoch for all of them).

    One worker takes its last, partial batch (as Keras does in memory); several stop at the fewest full
    per-worker batches any of them has, because MultiWorkerMirroredStrategy needs every worker to run the
    same number of steps. When the held-out rows change by epoch, the epoch with the fewest rows sets it.
    """

    def steps(epoch: int) -> int:
        if workers == 1:
            return math.ceil(plan.rows_in(part, epoch, 0, 1) / global_batch)
        per_worker = global_batch // workers
        return min(plan.rows_in(part, epoch, w, workers) // per_worker for w in range(workers))

    return min(steps(epoch) for epoch in sorted({plan.draw_epoch(e) for e in range(epochs)}))


def dataset(plan: Plan, part: str, epochs: int, batch_size: int, worker: int, workers: int, steps: int):
    """The worker's batches of every epoch, one epoch after the other, as one tf.data.Dataset (from a
    Python generator, prefetched; no auto-sharding: each worker already reads only its own rows).

    One dataset for the whole fit: Keras keeps the training iterator from epoch to epoch (steps_per_epoch
    is given), so each epoch's `steps` batches are exactly that epoch's rows; it makes a new validation
    iterator for every validation pass, so each new one starts the next epoch's validation rows.
    """
    tf = quiet_imports.tensorflow()
    signature = (
        {field: tf.TensorSpec([None, 1], tf.int32) for field in config.FIELDS},
        tf.TensorSpec([None, 1], tf.float32),
    )
    passes = itertools.count()

    def every_batch():
        if part == "train":
            for epoch in range(epochs):
                yield from batches(plan, part, epoch, batch_size, worker, workers, steps)
        else:
            yield from batches(plan, part, min(next(passes), epochs - 1), batch_size, worker, workers, steps)

    data = tf.data.Dataset.from_generator(every_batch, output_signature=signature)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return data.with_options(options).prefetch(config_scale.STREAMING["prefetch_batches"])


def inputs_for(plan: Plan, part: str, cfg: TrainConfig, strategy, workers: int):
    """(dataset, steps per epoch) of `part` for the whole fit: a plain dataset on one worker, or a
    distributed one (each worker builds its own shard's pipeline with the per-worker batch) under a strategy."""
    steps = steps_per_epoch(plan, part, cfg.epochs, cfg.batch_size, workers)
    if strategy is None:
        return dataset(plan, part, cfg.epochs, cfg.batch_size, 0, 1, steps), steps

    def per_worker(context):
        batch = context.get_per_replica_batch_size(cfg.batch_size)
        return dataset(plan, part, cfg.epochs, batch, context.input_pipeline_id, context.num_input_pipelines, steps)

    return strategy.distribute_datasets_from_function(per_worker), steps


def train_streaming(
    processed_dir: Path,
    split: str,
    cfg: TrainConfig,
    strategy=None,
    workers: int = 1,
    echo=None,
    progress: bool = False,
):
    """Fit cfg's model on `split`'s training rows streamed from processed_dir, in one fit call whose
    dataset runs through every epoch's rows in turn (each epoch's negatives and held-out rows its own).
    Returns the model and a history dict like train.train_model's, plus "input": how the rows came and
    per-epoch seconds and rows."""
    tf = quiet_imports.tensorflow()
    tf.keras.utils.set_random_seed(cfg.seed)
    opened = time.perf_counter()
    plan, field_dims = open_plan(processed_dir, split, cfg)
    opened = time.perf_counter() - opened
    if strategy is None:
        model = architecture.build_model(field_dims, cfg)
    else:
        with strategy.scope():
            model = architecture.build_model(field_dims, cfg)
    # Timed as train_model times: from the built model on, plus building the rated-pair index (the
    # in-memory path's sampling falls inside its time too).
    started = time.perf_counter() - opened
    data, steps = inputs_for(plan, "train", cfg, strategy, workers)
    log = callbacks.epoch_log(lambda epoch: min(steps * cfg.batch_size, plan.rows_in("train", epoch, 0, 1)), cfg, echo)
    fit = {
        "epochs": cfg.epochs,
        "steps_per_epoch": steps,
        "verbose": 0,
        "callbacks": [callbacks.lr_schedule(cfg), callbacks.epoch_progress(cfg.model, progress), log],
    }
    if cfg.validation_split > 0 and steps_per_epoch(plan, "validation", cfg.epochs, cfg.batch_size, workers):
        fit["validation_data"], fit["validation_steps"] = inputs_for(plan, "validation", cfg, strategy, workers)
    losses = model.fit(data, **fit).history
    total_rows = plan.source.rows * (1 + cfg.negatives)
    history = training_log.training_log(cfg, losses, time.perf_counter() - started, total_rows)
    history["input"] = {
        "mode": "streaming",
        "workers": workers,
        "source": str(plan.source.path),
        "source_rows": plan.source.rows,
        "epochs": log.epochs,
    }
    return model, history
