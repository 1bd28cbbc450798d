"""Trained models as scorers: a two-stage ranker over candidate lists, a 14-field model over rows or
users × the catalogue, and `load_scorer`, which gives either for a model file.

`make recommend`, `make recommend-all`, the web app, the service and the evaluation all score through here;
they differ only in which users, which context and which movies are excluded, and in the runtime that turns
input rows into scores (runtimes.py: the Keras model, or its LiteRT file on the serving paths). A 14-field score
function takes a dict {field: int array} and returns one float per row (a baseline becomes one through
pipeline.evaluation.baselines).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse
from tqdm import tqdm

from pipeline import config, manifests
from pipeline.config import TrainConfig
from pipeline.ranking import export, model_files
from pipeline.ranking.candidates import CandidateLists
from pipeline.ranking.ranker_inputs import list_inputs, movie_table
from pipeline.ranking.runtimes import KerasRuntime, LiteRuntime
from pipeline.retrieval import retriever

ScoreFn = Callable[[dict[str, np.ndarray]], np.ndarray]


class ListScorer:
    """A trained ranker as a function CandidateLists → (L, K) scores, through `runtime` (runtimes.py)."""

    def __init__(self, runtime, cfg: TrainConfig):
        self.runtime = runtime
        self.cfg = cfg

    def __call__(self, lists: CandidateLists, movies: np.ndarray) -> np.ndarray:
        n_lists, k = lists.movies.shape
        out = np.empty(n_lists * k, dtype=np.float32)
        per_call = max(1, self.runtime.batch_rows // max(k, 1))
        dtypes = self.runtime.dtypes
        for start in range(0, n_lists, per_call):
            inputs = list_inputs(lists.take(slice(start, start + per_call)), movies, self.cfg)
            batch = {
                name: np.asarray(values, dtype=dtypes[name]).reshape(len(values), -1) for name, values in inputs.items()
            }
            out[start * k : (start + per_call) * k] = self.runtime(batch)
        return out.reshape(n_lists, k)


def ranked(lists: CandidateLists, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each list's n best candidates by ranker score (ties keep retrieval order): (movies, scores)."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :n]
    return np.take_along_axis(lists.movies, order, axis=1), np.take_along_axis(scores, order, axis=1)


@dataclass(frozen=True)
class TwoStage:
    """The default recommender: retrieval proposes cfg.candidates movies per list, the ranker orders them."""

    retrieval: retriever.Retriever
    scorer: ListScorer
    movies: np.ndarray  # movie_table(catalogue)

    @property
    def cfg(self) -> TrainConfig:
        return self.scorer.cfg

    def top_n(self, lists: CandidateLists, n: int, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Each list's n best candidates and their ranker scores (lists of many users go in chunks)."""
        from tqdm import tqdm

        chunk = max(1, config.SCORING_BATCH_ROWS // max(self.cfg.candidates, 1))
        movies, scores = [], []
        for start in tqdm(range(0, len(lists), chunk), desc="ranking", unit="chunk", disable=not progress):
            part = lists.take(slice(start, start + chunk))
            best = ranked(part, self.scorer(part, self.movies), n)
            movies.append(best[0])
            scores.append(best[1])
        if not movies:
            return np.zeros((0, n), np.int64), np.zeros((0, n), np.float32)
        return np.concatenate(movies), np.concatenate(scores)


def ranked_frame(owners: np.ndarray, movies: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    """(user, rank, movie, score) rows from per-user arrays of movies and scores, best first."""
    n = movies.shape[1]
    return pd.DataFrame(
        {
            "user_id": np.repeat(owners, n),
            "rank": np.tile(np.arange(1, n + 1), len(owners)),
            "movie_id": movies.ravel(),
            "score": scores.ravel().astype(np.float64),
        }
    )


class ModelScorer:
    """A trained 14-field AutoInt as a score function of rows of field codes (not shifted), plus the
    history fields the model reads (`history_fields`, from cfg), if any, through `runtime` (runtimes.py)."""

    def __init__(self, runtime, cfg: config.TrainConfig | None = None):
        self.runtime = runtime
        self.shift = int(cfg.coded_from_one) if cfg else 0
        self.history_fields = cfg.history_fields if cfg else {}

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        rows = len(inputs[config.FIELDS[0]])
        out = np.empty(rows, dtype=np.float32)
        for start in range(0, rows, self.runtime.batch_rows):
            stop = start + self.runtime.batch_rows
            batch = {
                field: np.asarray(inputs[field][start:stop], dtype=np.int32)[:, None] + self.shift
                for field in config.FIELDS
            }
            batch |= {name: np.asarray(inputs[name][start:stop], dtype=np.int32) for name in self.history_fields}
            out[start:stop] = self.runtime(batch)
        return out


def load_runtime(name: str, split: str, models_dir: Path, runtime: str = "keras", variant: str = "float32"):
    """Model `name`'s scoring runtime: its Keras model, or its LiteRT file of `variant` (checked against its
    manifest first: a missing, damaged or stale file raises manifests.ArtifactError naming `make export`)."""
    if runtime == "keras":
        rows = config.scoring_batch_rows(config.MODELS[name].architecture)
        return KerasRuntime(model_files.load_keras(config.model_path(name, split, models_dir)), rows)
    path = config.litert_path(name, split, models_dir, variant)
    with manifests.checked(path, export.rebuild_command(variant)):
        return LiteRuntime(path)


def load_scorer(
    name: str, split: str, models_dir: Path, fitted, catalogue: pd.DataFrame, runtime: str = "keras", variant="float32"
):
    """Model `name` trained on `split`, ready to score through `runtime` ("keras" or "litert", of `variant`): a
    ModelScorer for a 14-field model, a TwoStage (over the retrieval model `fitted`) for a two-stage one."""
    cfg = config.train_config(model_files.load_training_log(name, split, models_dir)["config"])
    scoring = load_runtime(name, split, models_dir, runtime, variant)
    if cfg.candidates:
        return TwoStage(fitted, ListScorer(scoring, cfg), movie_table(catalogue))
    return ModelScorer(scoring, cfg)


def score_rows(score_fn: ScoreFn, frame: pd.DataFrame, histories: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Scores for rows that already carry all 14 field codes (e.g. the test ratings), with the row-aligned
    history fields the score function reads."""
    return score_fn({**{field: frame[field].to_numpy() for field in config.FIELDS}, **(histories or {})})


def excluded_pairs(user_codes, movie_codes: np.ndarray, exclude: pd.DataFrame | None) -> sparse.csr_matrix:
    """users × movies (positions in `user_codes` and `movie_codes`), True at every (user_id, movie_id) pair of
    `exclude`; sparse, so that a chunk of users is made dense only when it is scored."""
    shape = (len(user_codes), len(movie_codes))
    if exclude is None or not len(exclude):
        return sparse.csr_matrix(shape, dtype=bool)
    user_pos = pd.Index(user_codes).get_indexer(exclude["user_id"])
    movie_pos = pd.Index(movie_codes).get_indexer(exclude["movie_id"])
    keep = (user_pos >= 0) & (movie_pos >= 0)
    return sparse.csr_matrix((np.ones(int(keep.sum()), bool), (user_pos[keep], movie_pos[keep])), shape=shape)


def top_n(
    score_fn: ScoreFn,
    users: pd.DataFrame,
    catalogue: pd.DataFrame,
    exclude: pd.DataFrame | None = None,
    n: int = config.TOP_N,
    chunk_rows: int = 500_000,
    progress: bool = False,
    histories: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Rank every catalogue movie for each user and keep the best `n` that are not excluded.

    The score function is called on the (user, movie) rows that are not excluded, a chunk of users (at most
    `chunk_rows` pairs) at a time; only that chunk's pairs and exclusions are ever dense.

    users      one row per user: the user fields and the context fields (codes)
    catalogue  one row per candidate movie: the movie fields (codes)
    exclude    (user_id, movie_id) code pairs never to recommend, e.g. the movies a user rated
    histories  {history field: (len(users), length)} per user, for a score function that reads them
    Returns columns user_id, rank (1-based), movie_id, score (codes); ties go to the lower movie code.
    """
    catalogue = catalogue.sort_values("movie_id", ignore_index=True)
    movie_codes = catalogue["movie_id"].to_numpy()
    n_movies = len(catalogue)
    per_chunk = max(1, chunk_rows // max(n_movies, 1))
    user_values = {field: users[field].to_numpy() for field in (*config.USER_FIELDS, *config.CONTEXT_FIELDS)}
    movie_values = {field: catalogue[field].to_numpy() for field in config.MOVIE_FIELDS}

    excluded = excluded_pairs(users["user_id"], movie_codes, exclude)

    results = []
    bar = tqdm(total=len(users), unit="user", desc="scoring", disable=not progress)
    for start in range(0, len(users), per_chunk):
        stop = min(start + per_chunk, len(users))
        # Excluded pairs are never scored (on ML-1M 1M of the 22.4M pairs): they cannot be recommended.
        pairs = np.flatnonzero(~excluded[start:stop].toarray().ravel())
        user_rows, movie_rows = np.divmod(pairs, n_movies)
        inputs = {field: values[start:stop][user_rows] for field, values in user_values.items()}
        inputs |= {field: values[movie_rows] for field, values in movie_values.items()}
        inputs |= {name: values[start:stop][user_rows] for name, values in (histories or {}).items()}
        scores = np.full((stop - start) * n_movies, -np.inf)
        scores[pairs] = score_fn(inputs)
        scores = scores.reshape(stop - start, n_movies)
        # Stable sort on the negated score: equal scores keep catalogue (movie code) order. Sorting whole
        # rows costs ~1 % of the scoring time, so no partial sort that would need its own tie rule.
        order = np.argsort(-scores, axis=1, kind="stable")[:, :n]
        best = np.take_along_axis(scores, order, axis=1)
        frame = pd.DataFrame(
            {
                "user_id": np.repeat(user_values["user_id"][start:stop], order.shape[1]),
                "rank": np.tile(np.arange(1, order.shape[1] + 1), stop - start),
                "movie_id": movie_codes[order.ravel()],
                "score": best.ravel().astype(np.float64),
            }
        )
        results.append(frame[np.isfinite(frame["score"])])
        bar.update(stop - start)
    bar.close()
    if not results:
        return pd.DataFrame({"user_id": [], "rank": [], "movie_id": [], "score": []})
    return pd.concat(results, ignore_index=True)
