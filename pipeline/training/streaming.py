"""Training rows of the 14-field models streamed from parquet through tf.data (`train --streaming`).

The in-memory path (train.train_model) materialises every training row and its sampled negatives as
NumPy arrays. This one never holds more than one parquet row group, a bounded shuffle buffer and a few
prefetched batches, so memory stays flat in the number of ratings; what does grow is the embedding
tables and the rated-pair index that keeps sampled negatives unrated (`RatedIndex`, 4-8 bytes per
training rating).

Which rows an epoch has, and which negatives they get, depend only on the seed, the epoch and each
rating's position in the parquet file, never on the reading order, the buffer or the number of
workers: every draw is a counter-based hash of (seed, epoch, row, slot, attempt). So a run on two
workers trains on the same rows as a run on one, and tests can check the rows exactly.

The rows follow the in-memory path's rules:
  * validation (Keras' validation_split): with no negatives, the last `validation_split` of the file's
    rows, as Keras holds out the last rows of unshuffled arrays; with negatives, a random share of the
    ratings (with their negatives), drawn anew each epoch when negatives are fresh (the in-memory path
    shuffles ratings and negatives together and then holds out its last rows);
  * labels by cfg.target; negatives: `negatives` per rating, uniform (or popularity-weighted) over the
    movies the user has no training rating for, carrying the user's fields and the rating's context.
Not supported here (ValueError): recency weights, negatives per user, the history field, two-stage rankers.
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

from pipeline import config
from pipeline.config import TrainConfig
from pipeline.training import callbacks, training_log

Batch = tuple[dict[str, np.ndarray], np.ndarray]
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_VALIDATION, _NEGATIVE = 1, 2  # hash salts


def check_supported(cfg: TrainConfig) -> None:
    unsupported = {
        "recency_weight": cfg.recency_weight,
        "negatives_per='user'": cfg.negatives_per == "user",
        "history": cfg.history,
        "candidates (two-stage rankers, pipeline/training/ranker.py)": cfg.candidates,
    }
    named = [name for name, value in unsupported.items() if value]
    if named:
        raise ValueError(
            f"streaming input does not support {', '.join(named)}; train {cfg.model} in memory "
            "(without --streaming / --workers)"
        )
    if cfg.target not in config.TARGETS:
        raise ValueError(f"unknown target {cfg.target!r}; expected one of {', '.join(config.TARGETS)}")
    if cfg.negative_sampler not in config.NEGATIVE_SAMPLERS:
        raise ValueError(f"unknown negative sampler {cfg.negative_sampler!r}")


# --- Counter-based random numbers -------------------------------------------------------------------


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective scramble of uint64 values."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def keyed_uniform(*keys) -> np.ndarray:
    """Uniform floats in [0, 1), one per broadcast element of the integer `keys`: the same keys always
    give the same number, in any order or batch."""
    with np.errstate(over="ignore"):
        h = np.zeros((), dtype=np.uint64)
        for key in keys:
            h = _mix(h + _GOLDEN + np.asarray(key).astype(np.uint64))
        return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


# --- What to read -----------------------------------------------------------------------------------

READ_COLUMNS = (*config.FIELDS, "rating", "label")


@dataclass(frozen=True)
class Source:
    """A training parquet file: its rows and where each row group starts."""

    path: Path
    rows: int
    group_starts: tuple[int, ...]  # row offset of every row group, plus the total

    @classmethod
    def open(cls, path: Path) -> Source:
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(path).metadata
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        return cls(Path(path), meta.num_rows, tuple(np.concatenate([[0], np.cumsum(sizes)]).tolist()))

    def read(self, group: int, start: int, stop: int, columns=READ_COLUMNS) -> dict[str, np.ndarray]:
        """Rows [start, stop) of the file, all inside row group `group`, plus their file positions ("row")."""
        import pyarrow.parquet as pq

        table = pq.ParquetFile(self.path).read_row_group(group, columns=list(columns))
        first = self.group_starts[group]
        table = table.slice(start - first, stop - start)
        out = {name: table.column(name).to_numpy() for name in columns}
        out["row"] = np.arange(start, stop, dtype=np.int64)
        return out

    def pieces(self, start: int, stop: int, piece_rows: int) -> list[tuple[int, int, int]]:
        """(row group, first row, end row) pieces of at most piece_rows rows covering [start, stop)."""
        out = []
        for group in range(len(self.group_starts) - 1):
            lo, hi = max(start, self.group_starts[group]), min(stop, self.group_starts[group + 1])
            out += [(group, s, min(s + piece_rows, hi)) for s in range(lo, hi, piece_rows)]
        return out


class RatedIndex:
    """The (user, movie) pairs of the training ratings, sorted, to keep sampled negatives unrated.

    Built from the parquet file row group by row group; uint32 keys when user × movie codes fit.
    """

    def __init__(self, source: Source, n_movies: int):
        import pyarrow.parquet as pq

        file = pq.ParquetFile(source.path)
        parts, n_users = [], 0
        for group in range(file.metadata.num_row_groups):
            table = file.read_row_group(group, columns=["user_id", "movie_id"])
            users, movies = table.column("user_id").to_numpy(), table.column("movie_id").to_numpy()
            n_users = max(n_users, int(users.max()) + 1 if len(users) else 0)
            parts.append(users.astype(np.int64) * n_movies + movies)
        dtype = np.uint32 if n_users * n_movies < 2**32 else np.int64
        keys = np.concatenate(parts).astype(dtype) if parts else np.empty(0, dtype)
        keys.sort()
        self.keys, self.n_movies = keys, n_movies
        self.movie_counts = np.bincount(keys % n_movies, minlength=n_movies) if len(keys) else np.zeros(n_movies)

    def contains(self, users: np.ndarray, movies: np.ndarray) -> np.ndarray:
        keys = (users.astype(np.int64) * self.n_movies + movies).astype(self.keys.dtype)
        # Sorted queries walk the index in order (several times faster than random probes).
        order = np.argsort(keys)
        found = np.minimum(np.searchsorted(self.keys, keys[order]), len(self.keys) - 1)
        out = np.empty(len(keys), dtype=bool)
        out[order] = self.keys[found] == keys[order]
        return out


@dataclass
class Plan:
    """Everything a worker needs to produce the rows of any epoch: the file, the catalogue, the settings."""

    source: Source
    cfg: TrainConfig
    catalogue: dict[str, np.ndarray]  # movie field codes, indexed by movie code
    rated: RatedIndex | None
    popularity_cdf: np.ndarray | None

    @classmethod
    def open(cls, train_path: Path, catalogue: pd.DataFrame, cfg: TrainConfig) -> Plan:
        check_supported(cfg)
        source = Source.open(train_path)
        catalogue = catalogue.sort_values("movie_id", ignore_index=True)
        if not np.array_equal(catalogue["movie_id"].to_numpy(), np.arange(len(catalogue))):
            raise ValueError("the catalogue's movie codes must be 0..n-1")
        movies = {field: catalogue[field].to_numpy(dtype=np.int32) for field in config.MOVIE_FIELDS}
        rated = RatedIndex(source, len(catalogue)) if cfg.negatives else None
        cdf = None
        if cfg.negatives and cfg.negative_sampler == "popularity":
            cdf = np.cumsum(rated.movie_counts.astype(float) + 1.0)
            cdf /= cdf[-1]
        return cls(source, cfg, movies, rated, cdf)

    # The epoch's rows ----------------------------------------------------------------------------------

    def draw_epoch(self, epoch: int) -> int:
        """The epoch number the draws use: fixed negatives are drawn once (as epoch 0)."""
        return epoch if self.cfg.negatives and self.cfg.fresh_negatives else 0

    @property
    def contiguous_validation(self) -> bool:
        """Without negatives Keras holds out the file's last rows; with them, a random share of ratings."""
        return self.cfg.negatives == 0

    def split_at(self) -> int:
        return int(math.floor(self.source.rows * (1.0 - self.cfg.validation_split)))

    def held_out(self, rows: np.ndarray, epoch: int) -> np.ndarray:
        if self.cfg.validation_split <= 0:
            return np.zeros(len(rows), dtype=bool)
        if self.contiguous_validation:
            return rows >= self.split_at()
        return keyed_uniform(self.cfg.seed, self.draw_epoch(epoch), _VALIDATION, rows) < self.cfg.validation_split

    def shard(self, part: str, worker: int, workers: int) -> tuple[int, int]:
        """The file rows [start, stop) worker `worker` of `workers` reads for `part` ("train"/"validation")."""
        start, stop = 0, self.source.rows
        if self.contiguous_validation and self.cfg.validation_split > 0:
            start, stop = (0, self.split_at()) if part == "train" else (self.split_at(), self.source.rows)
        span = stop - start
        return start + span * worker // workers, start + span * (worker + 1) // workers

    def ratings_in(self, part: str, epoch: int, worker: int, workers: int) -> int:
        """How many rated rows worker `worker` has in `part` this epoch (known without reading the file)."""
        start, stop = self.shard(part, worker, workers)
        if self.contiguous_validation or self.cfg.validation_split <= 0:
            return stop - start
        count = 0
        for lo in range(start, stop, 1 << 22):
            held = self.held_out(np.arange(lo, min(lo + (1 << 22), stop), dtype=np.int64), epoch)
            count += int(held.sum()) if part == "validation" else int((~held).sum())
        return count

    def rows_in(self, part: str, epoch: int, worker: int, workers: int) -> int:
        return self.ratings_in(part, epoch, worker, workers) * (1 + self.cfg.negatives)

    def labelled(self, chunk: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A chunk of rated rows as model rows: field codes (int32), label (float32) by cfg.target, row."""
        out = {field: chunk[field].astype(np.int32) for field in config.FIELDS}
        if self.cfg.target == "rated":
            out["label"] = np.ones(len(chunk["row"]), dtype=np.float32)
        elif self.cfg.target == "graded":
            out["label"] = (chunk["rating"] / config.MAX_RATING).astype(np.float32)
        else:
            out["label"] = chunk["label"].astype(np.float32)
        out["row"] = chunk["row"]
        return out

    def negatives_for(self, rows: dict[str, np.ndarray], epoch: int) -> dict[str, np.ndarray]:
        """cfg.negatives sampled unrated movies for each rated row, as label-0 rows (slot-major)."""
        k = self.cfg.negatives
        n_movies = len(self.catalogue["movie_id"])
        source = np.tile(np.arange(len(rows["row"])), k)
        keys = (
            self.cfg.seed,
            self.draw_epoch(epoch),
            _NEGATIVE,
            np.tile(rows["row"], k),
            np.repeat(np.arange(k), len(rows["row"])),
        )
        users = rows["user_id"][source]
        movies = self._movies(keyed_uniform(*keys, 0), n_movies)
        where = np.arange(len(movies))
        for attempt in range(1, config.STREAMING["negative_attempts"]):
            where = where[self.rated.contains(users[where], movies[where])]
            if len(where) == 0:
                break
            movies[where] = self._movies(
                keyed_uniform(*(key[where] if np.ndim(key) else key for key in keys), attempt), n_movies
            )
        out = {field: rows[field][source] for field in (*config.USER_FIELDS, *config.CONTEXT_FIELDS)}
        out |= {field: values[movies] for field, values in self.catalogue.items()}
        out["label"] = np.zeros(len(source), dtype=np.float32)
        out["row"] = rows["row"][source]
        return out

    def _movies(self, uniform: np.ndarray, n_movies: int) -> np.ndarray:
        if self.popularity_cdf is not None:
            picked = np.searchsorted(self.popularity_cdf, uniform, side="right")
            return np.minimum(picked, n_movies - 1).astype(np.int32)
        return np.minimum((uniform * n_movies).astype(np.int64), n_movies - 1).astype(np.int32)

    def with_negatives(self, rows: dict[str, np.ndarray], epoch: int, rng: np.random.Generator | None):
        """Rated rows plus their negatives, mixed (when rng) so every batch holds both."""
        if not self.cfg.negatives or len(rows["row"]) == 0:
            return rows
        sampled = self.negatives_for(rows, epoch)
        both = {name: np.concatenate([rows[name], sampled[name]]) for name in rows}
        if rng is None:
            return both
        order = rng.permutation(len(both["row"]))
        return {name: values[order] for name, values in both.items()}

    # Reading ------------------------------------------------------------------------------------------

    def rated_pieces(self, part: str, epoch: int, worker: int, workers: int, shuffle: bool) -> Iterator[dict]:
        """The worker's rated rows of `part`, piece by piece (file order, or pieces and rows shuffled)."""
        start, stop = self.shard(part, worker, workers)
        pieces = self.source.pieces(start, stop, config.STREAMING["piece_rows"])
        rng = np.random.default_rng([self.cfg.seed, epoch, worker, 1 if part == "train" else 2])
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
                g_lo, g_hi = max(start, self.source.group_starts[group]), min(stop, self.source.group_starts[group + 1])
                cache = (group, self.source.read(int(group), g_lo, g_hi))
            chunk = cache[1]
            first = chunk["row"][0]
            piece = {name: values[lo - first : hi - first] for name, values in chunk.items()}
            held = self.held_out(piece["row"], epoch)
            keep = held if part == "validation" else ~held
            piece = self.labelled({name: values[keep] for name, values in piece.items()})
            if shuffle:
                order = rng.permutation(len(piece["row"]))
                piece = {name: values[order] for name, values in piece.items()}
            yield piece

    def batches(
        self,
        part: str,
        epoch: int,
        batch_size: int,
        worker: int = 0,
        workers: int = 1,
        steps: int | None = None,
        with_rows: bool = False,
    ) -> Iterator[Batch]:
        """Batches of `batch_size` model rows (the last may be smaller), at most `steps` of them.

        Training rows pass through a shuffle buffer of STREAMING["shuffle_buffer_rows"] rated rows: each
        new piece joins the buffer, the buffer is permuted, and all but its capacity leave it, get their
        negatives, are mixed with them and cut into batches. Validation rows are read in file order.
        """
        shuffle = part == "train"
        capacity = config.STREAMING["shuffle_buffer_rows"] if shuffle else 0
        rng = np.random.default_rng([self.cfg.seed, epoch, worker, 3]) if shuffle else None
        buffer: dict[str, np.ndarray] | None = None
        pending: dict[str, np.ndarray] | None = None
        emitted = 0

        def cut(rows, final: bool):
            nonlocal pending, emitted
            rows = rows if pending is None else {name: np.concatenate([pending[name], rows[name]]) for name in rows}
            n = len(rows["row"])
            full = n - n % batch_size if not final else n
            for lo in range(0, full, batch_size):
                if steps is not None and emitted >= steps:
                    return
                emitted += 1
                yield self._batch({name: values[lo : lo + batch_size] for name, values in rows.items()}, with_rows)
            pending = {name: values[full:] for name, values in rows.items()}

        for piece in self.rated_pieces(part, epoch, worker, workers, shuffle):
            buffer = piece if buffer is None else {name: np.concatenate([buffer[name], piece[name]]) for name in piece}
            n = len(buffer["row"])
            if n <= capacity:
                continue
            order = rng.permutation(n) if shuffle else np.arange(n)
            leaving = {name: values[order[: n - capacity]] for name, values in buffer.items()}
            buffer = {name: values[order[n - capacity :]] for name, values in buffer.items()}
            yield from cut(self.with_negatives(leaving, epoch, rng), final=False)
            if steps is not None and emitted >= steps:
                return
        if buffer is not None and len(buffer["row"]):
            yield from cut(self.with_negatives(buffer, epoch, rng), final=True)
        elif pending is not None and len(pending["row"]):
            yield from cut({name: values[:0] for name, values in pending.items()}, final=True)

    @staticmethod
    def _batch(rows: dict[str, np.ndarray], with_rows: bool):
        inputs = {field: rows[field][:, None] for field in config.FIELDS}
        label = rows["label"][:, None]
        return (inputs, label, rows["row"]) if with_rows else (inputs, label)

    def epoch_frame(self, epoch: int, part: str = "train") -> pd.DataFrame:
        """Every row of `part` this epoch, computed from the whole file at once (the reference the
        streamed batches are checked against in the tests): fields, label, and the file row it comes from."""
        parts = []
        for piece in self.rated_pieces(part, epoch, 0, 1, shuffle=False):
            parts.append(self.with_negatives(piece, epoch, None))
        frame = (
            pd.DataFrame({name: np.concatenate([p[name] for p in parts]) for name in parts[0]})
            if parts
            else pd.DataFrame(columns=[*config.FIELDS, "label", "row"])
        )
        return frame


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
    from pipeline import quiet_imports

    tf = quiet_imports.tensorflow()
    signature = (
        {field: tf.TensorSpec([None, 1], tf.int32) for field in config.FIELDS},
        tf.TensorSpec([None, 1], tf.float32),
    )
    passes = itertools.count()

    def batches():
        if part == "train":
            for epoch in range(epochs):
                yield from plan.batches(part, epoch, batch_size, worker, workers, steps)
        else:
            yield from plan.batches(part, min(next(passes), epochs - 1), batch_size, worker, workers, steps)

    data = tf.data.Dataset.from_generator(batches, output_signature=signature)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return data.with_options(options).prefetch(config.STREAMING["prefetch_batches"])


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


def open_plan(processed_dir: Path, split: str, cfg: TrainConfig) -> tuple[Plan, dict[str, int]]:
    """The streaming plan of `split`'s training rows and the field dimensions, reading only the
    encoders and the catalogue into memory."""
    from pipeline.data.preprocess import Encoders

    encoders_path = Path(processed_dir) / "encoders.json"
    if not encoders_path.is_file():
        raise FileNotFoundError(f"{encoders_path} not found; run `make preprocess` first")
    name = "train.parquet" if split == "random" else f"{split}_train.parquet"
    catalogue = pd.read_parquet(Path(processed_dir) / "movies.parquet", columns=list(config.MOVIE_FIELDS))
    return Plan.open(Path(processed_dir) / name, catalogue, cfg), Encoders.load(encoders_path).dims()


def epoch_log(plan: Plan, cfg: TrainConfig, steps: int, echo):
    """A Keras callback that times every epoch, counts its rows, and (with `echo`) prints one line per epoch."""
    from pipeline import quiet_imports

    tf = quiet_imports.tensorflow()

    class EpochLog(tf.keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs = []

        def on_epoch_begin(self, epoch, logs=None):
            self.began = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds = time.perf_counter() - self.began
            rows = min(steps * cfg.batch_size, plan.rows_in("train", epoch, 0, 1))
            self.epochs.append(
                {
                    "epoch": epoch + 1,
                    "seconds": round(seconds, 2),
                    "train_rows": rows,
                    "rows_per_s": round(rows / seconds, 1),
                }
            )
            if echo:
                logs = logs or {}
                echo(
                    f"epoch {epoch + 1}/{cfg.epochs}: loss {logs.get('loss', float('nan')):.4f} "
                    f"val_loss {logs.get('val_loss', float('nan')):.4f}, {rows:,} rows in {seconds:.1f} s"
                )

    return EpochLog()


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
    from pipeline import quiet_imports
    from pipeline.ranking import architecture

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
    log = epoch_log(plan, cfg, steps, echo)
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
