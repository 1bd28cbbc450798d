"""Which rows an epoch of streamed training has (`train --streaming`): the plan every worker shares.

The rows follow the in-memory path's rules, taken from pipeline/training/sampling.py (labels by cfg.target,
the sampler's law, unrated negatives with the user's fields and the rating's context, the redraws):
  * validation (Keras' validation_split): with no negatives, the last `validation_split` of the file's
    rows, as Keras holds out the last rows of unshuffled arrays; with negatives, a random share of the
    ratings (with their negatives), drawn anew each epoch when negatives are fresh (the in-memory path
    shuffles ratings and negatives together and then holds out its last rows);
  * negatives: `negatives` per rating; a draw still rated after the redraws is kept (the in-memory path
    drops it), so that every worker knows its row count without reading the file.
Not supported here (ValueError): recency weights, negatives per user, the history field, two-stage rankers.

Which ratings are held out and which negatives they get depend only on the seed, the epoch and each
rating's position in the parquet file, never on the reading order, the buffer or the number of workers:
every draw is one number of NumPy's counter-based Philox generator, keyed by (seed, epoch), at a counter
given by (row, slot, attempt). So a run on two workers trains on the same rows as a run on one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from pipeline import config, config_scale
from pipeline.config import TrainConfig
from pipeline.training import sampling

READ_COLUMNS = (*config.FIELDS, "rating", "label")
_VALIDATION, _NEGATIVE = 1, 2  # which question a draw answers: a word of its Philox counter


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


def keyed_uniform(seed: int, epoch: int, kind: int, rows: np.ndarray, slot: int = 0, attempt: int = 0) -> np.ndarray:
    """One uniform float in [0, 1) per file row in `rows`: the number at position `row` of the Philox stream
    keyed by (seed, epoch) whose counter's upper words are (kind, slot, attempt).

    Philox computes any position of its stream directly (4 numbers per counter value), so a number depends
    on those values alone, not on which other rows are drawn with it or in what order. The numbers between
    the smallest and the largest row are generated, so `rows` should be a piece of the file, not all of it.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        return np.empty(0)
    first = int(rows.min()) // 4 * 4
    counter = np.array([first // 4, kind, slot, attempt], dtype=np.uint64)
    bits = np.random.Philox(key=np.array([seed, epoch], dtype=np.uint64), counter=counter)
    return np.random.Generator(bits).random(int(rows.max()) + 1 - first)[rows - first]


@dataclass(frozen=True)
class Source:
    """A training parquet file: its rows and where each row group starts."""

    path: Path
    rows: int
    group_starts: tuple[int, ...]  # row offset of every row group, plus the total

    @classmethod
    def open(cls, path: Path) -> Source:
        meta = pq.ParquetFile(path).metadata
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        return cls(Path(path), meta.num_rows, tuple(np.concatenate([[0], np.cumsum(sizes)]).astype(int).tolist()))

    def read(self, group: int, start: int, stop: int, columns=READ_COLUMNS) -> dict[str, np.ndarray]:
        """Rows [start, stop) of the file, all inside row group `group`, plus their file positions ("row")."""
        table = pq.ParquetFile(self.path).read_row_group(group, columns=list(columns))
        table = table.slice(start - self.group_starts[group], stop - start)
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


def rated_index(source: Source, n_movies: int) -> np.ndarray:
    """The sorted (user, movie) pair keys of the training ratings (sampling.pair_keys), built row group by
    row group; uint32 keys (4 bytes per rating) when user × movie codes fit."""
    file = pq.ParquetFile(source.path)
    parts, n_users = [], 0
    for group in range(file.num_row_groups):
        table = file.read_row_group(group, columns=["user_id", "movie_id"])
        users, movies = table.column("user_id").to_numpy(), table.column("movie_id").to_numpy()
        n_users = max(n_users, int(users.max()) + 1 if len(users) else 0)
        parts.append(sampling.pair_keys(users, movies, n_movies))
    dtype = np.uint32 if n_users * n_movies < 2**32 else np.int64
    keys = np.concatenate(parts).astype(dtype) if parts else np.empty(0, dtype)
    keys.sort()
    return keys


@dataclass
class Plan:
    """Everything a worker needs to know which rows any epoch has: the file, the catalogue, the settings."""

    source: Source
    cfg: TrainConfig
    catalogue: dict[str, np.ndarray]  # movie field codes, indexed by movie code
    rated: np.ndarray | None  # rated_index, when there are negatives to keep unrated
    sampler_cdf: np.ndarray | None  # the cumulative sampler_weights (None: uniform)

    @classmethod
    def open(cls, train_path: Path, catalogue: pd.DataFrame, cfg: TrainConfig) -> Plan:
        check_supported(cfg)
        source = Source.open(train_path)
        catalogue = catalogue.sort_values("movie_id", ignore_index=True)
        if not np.array_equal(catalogue["movie_id"].to_numpy(), np.arange(len(catalogue))):
            raise ValueError("the catalogue's movie codes must be 0..n-1")
        movies = {field: catalogue[field].to_numpy(dtype=np.int32) for field in config.MOVIE_FIELDS}
        rated, cdf = None, None
        if cfg.negatives:
            rated = rated_index(source, len(catalogue))
            counts = np.bincount(rated % len(catalogue), minlength=len(catalogue))
            weights = sampling.sampler_weights(cfg.negative_sampler, counts)
            if weights is not None:
                cdf = np.cumsum(weights)
                cdf /= cdf[-1]  # as Generator.choice turns its p into draws
        return cls(source, cfg, movies, rated, cdf)

    # How many rows, and which are held out ------------------------------------------------------------

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
        uniform = keyed_uniform(self.cfg.seed, self.draw_epoch(epoch), _VALIDATION, rows)
        return uniform < self.cfg.validation_split

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
        held = sum(
            int(self.held_out(np.arange(lo, min(lo + (1 << 22), stop)), epoch).sum())
            for lo in range(start, stop, 1 << 22)
        )
        return held if part == "validation" else stop - start - held

    def rows_in(self, part: str, epoch: int, worker: int, workers: int) -> int:
        return self.ratings_in(part, epoch, worker, workers) * (1 + self.cfg.negatives)

    # The rows ------------------------------------------------------------------------------------------

    def rated_rows(self, chunk: dict[str, np.ndarray], part: str, epoch: int) -> dict[str, np.ndarray]:
        """The rows of `part` among a chunk of file rows (Source.read), as model rows: field codes (int32),
        label (float32, sampling.target_labels), file row, and with negatives the movies drawn for them
        ("negatives", one column per slot)."""
        held = self.held_out(chunk["row"], epoch)
        chunk = {name: values[held if part == "validation" else ~held] for name, values in chunk.items()}
        out = {field: chunk[field].astype(np.int32) for field in config.FIELDS}
        out["label"] = sampling.target_labels(self.cfg.target, chunk["rating"], chunk["label"]).astype(np.float32)
        out["row"] = chunk["row"]
        if self.cfg.negatives:
            out["negatives"] = self.draw_negatives(out["row"], out["user_id"], epoch)
        return out

    def draw_negatives(self, rows: np.ndarray, users: np.ndarray, epoch: int) -> np.ndarray:
        """cfg.negatives movies for each rating (file rows `rows`, by `users`), drawn by the sampler and
        redrawn while the user has rated them (sampling.redraw_rated): a (rows, negatives) array."""
        n_movies = len(self.catalogue["movie_id"])
        out = np.empty((len(rows), self.cfg.negatives), dtype=np.int32)
        for slot in range(self.cfg.negatives):
            movies = self._movies(rows, epoch, slot, 0)
            sampling.redraw_rated(
                self.rated,
                users,
                movies,
                n_movies,
                lambda attempt, where, slot=slot: self._movies(rows[where], epoch, slot, attempt),
                config_scale.STREAMING["negative_attempts"],
            )
            out[:, slot] = movies
        return out

    def _movies(self, rows: np.ndarray, epoch: int, slot: int, attempt: int) -> np.ndarray:
        """The movie of each row's draw (slot, attempt): uniform over the catalogue, or by the sampler's cdf."""
        uniform = keyed_uniform(self.cfg.seed, self.draw_epoch(epoch), _NEGATIVE, rows, slot, attempt)
        n_movies = len(self.catalogue["movie_id"])
        if self.sampler_cdf is not None:
            return np.minimum(np.searchsorted(self.sampler_cdf, uniform, side="right"), n_movies - 1)
        return np.minimum((uniform * n_movies).astype(np.int64), n_movies - 1)

    def with_negatives(self, rows: dict[str, np.ndarray], rng: np.random.Generator | None) -> dict[str, np.ndarray]:
        """Rated rows (rated_rows) followed by their negatives as label-0 rows (sampling.unrated_rows, slot
        by slot), mixed (when rng) so that every batch holds both."""
        rows = dict(rows)
        drawn = rows.pop("negatives", None)
        if drawn is None or len(rows["row"]) == 0:
            return rows
        source = np.tile(np.arange(len(rows["row"])), drawn.shape[1])
        sampled = sampling.unrated_rows(rows, source, drawn.T.ravel(), self.catalogue)
        if rng is None:
            return {name: np.concatenate([values, sampled[name].astype(values.dtype)]) for name, values in rows.items()}
        # Scattered to random places: one copy of every row, where concatenating and permuting would make two.
        order = rng.permutation(len(rows["row"]) + len(source))
        rated, unrated = order[: len(rows["row"])], order[len(rows["row"]) :]
        mixed = {name: np.empty(len(order), dtype=values.dtype) for name, values in rows.items()}
        for name, column in mixed.items():
            column[rated], column[unrated] = rows[name], sampled[name]
        return mixed
