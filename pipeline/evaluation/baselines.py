"""Non-learned baselines that score (user, movie) pairs from the training rows alone.

Each baseline becomes a scorer `(user_ids, movie_ids) -> scores` via `fit_baseline`, so the
evaluation runs it through exactly the same metric code as the trained models.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from pipeline import config
from pipeline.retrieval import retriever

BASELINES = ("random", "most_popular", "positive_rate", "ease", "als")
# EASE alone: with most popular, what the report holds the two-stage rankers against. ALS alone is the "als" row
# (the retrieval stage is EASE up to config.RETRIEVAL["ease_max_movies"] movies and ALS above).
RETRIEVAL_BASELINE = "ease"

Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


def pair_random_scores(user_ids: np.ndarray, movie_ids: np.ndarray, seed: int = 0) -> np.ndarray:
    """A score in [0, 1) for each (user, movie) pair from the splitmix64 hash of the pair and `seed`."""
    with np.errstate(over="ignore"):
        x = (np.asarray(user_ids, dtype=np.uint64) << np.uint64(32)) ^ np.asarray(movie_ids, dtype=np.uint64)
        x = x + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def popularity(train: pd.DataFrame) -> pd.Series:
    """Number of positive (label = 1) training ratings of each movie in `train`, indexed by movie_id.

    Movies rated in `train` but never positively get 0.
    """
    counts = train["label"].eq(1).groupby(train["movie_id"]).sum().astype(np.int64)
    return counts.rename("popularity")


def positive_rate(train: pd.DataFrame, strength: float | None = None) -> pd.Series:
    """Smoothed share of positive training ratings of each movie, indexed by movie_id.

    rate = (pos + m * g) / (n + m), with pos and n the movie's positive and total training ratings,
    g the global positive rate of `train` and m = `strength` (config.POSITIVE_RATE_PRIOR = 10 when None).
    """
    m = config.POSITIVE_RATE_PRIOR if strength is None else float(strength)
    g = global_rate(train)
    grouped = train["label"].eq(1).groupby(train["movie_id"])
    return ((grouped.sum() + m * g) / (grouped.size() + m)).rename("positive_rate")


def global_rate(train: pd.DataFrame) -> float:
    """Share of positive (label = 1) rows in `train`."""
    return float(train["label"].eq(1).mean())


def score_pairs(table: pd.Series, movie_ids: np.ndarray, default: float) -> np.ndarray:
    """table[movie_id] for each movie id, as floats; movies absent from `table` get `default`."""
    positions = table.index.get_indexer(np.asarray(movie_ids))
    found = positions >= 0
    scores = np.full(len(positions), default, dtype=np.float64)
    scores[found] = table.to_numpy(dtype=np.float64)[positions[found]]
    return scores


def retrieval_scorer(
    kind: str,
    train: pd.DataFrame,
    fitted: retriever.Retriever | None = None,
    chunk_users: int = config.SCORING_CHUNK_USERS,
) -> Scorer:
    """score(user, movie) = retrieval model `kind`'s (EASE or ALS) score from the user's liked training movies:
    `fitted`'s when it is of that kind, else a liked model fitted on `train`. Users and movies are codes; a code
    unknown to `train` scores 0. The asked pairs' users are scored `chunk_users` at a time over the whole
    catalogue (a row's scores do not depend on the others), so no more than one chunk × catalogue block is
    ever held."""
    n_users, n_movies = int(train["user_id"].max()) + 1, int(train["movie_id"].max()) + 1
    if fitted is None or fitted.kind != kind:
        fitted = retriever.fit_liked(train, n_users, n_movies, kind)
    n_movies = fitted.n_movies
    liked = retriever.liked_matrix(train, n_users, n_movies)

    def score(user_ids: np.ndarray, movie_ids: np.ndarray) -> np.ndarray:
        users, movies = np.asarray(user_ids), np.asarray(movie_ids)
        out = np.zeros(len(users), dtype=np.float64)
        known = np.flatnonzero((users < n_users) & (movies < n_movies))
        distinct, row = np.unique(users[known], return_inverse=True)
        for start in range(0, len(distinct), chunk_users):
            mine = (row >= start) & (row < start + chunk_users)
            block = fitted.scores(liked[distinct[start : start + chunk_users]])
            out[known[mine]] = block[row[mine] - start, movies[known[mine]]]
        return out

    return score


def evaluated(n_movies: int, retrieval_kind: str) -> tuple[str, ...]:
    """BASELINES less EASE for a catalogue too large to fit it (config.RETRIEVAL["ease_max_movies"]) unless the
    retrieval stage, whose fit it then reuses, is EASE."""
    too_large = n_movies > config.RETRIEVAL["ease_max_movies"] and retrieval_kind != "ease"
    return tuple(name for name in BASELINES if not (name == "ease" and too_large))


def fit_baseline(
    name: str,
    train: pd.DataFrame,
    seed: int = 0,
    fitted: retriever.Retriever | None = None,
    chunk_users: int = config.SCORING_CHUNK_USERS,
) -> Scorer:
    """A scorer `(user_ids, movie_ids) -> scores` for baseline `name` fitted on `train`.

    random: pair_random_scores(user_ids, movie_ids, seed): a fixed pseudo-random score per (user, movie),
        so it does not depend on how the pairs are batched.
    most_popular: popularity(train), 0 for movies without training ratings.
    positive_rate: positive_rate(train), the global rate for movies without training ratings.
    ease, als: retrieval_scorer(name, train, fitted, chunk_users), a retrieval model alone (`fitted`, the
        recommender's retrieval stage, when it is of that kind): strong collaborative-filtering references.
    """
    if name == "random":
        return lambda user_ids, movie_ids: pair_random_scores(user_ids, movie_ids, seed)
    if name == "most_popular":
        counts = popularity(train)
        return lambda user_ids, movie_ids: score_pairs(counts, movie_ids, 0.0)
    if name == "positive_rate":
        rates, fallback = positive_rate(train), global_rate(train)
        return lambda user_ids, movie_ids: score_pairs(rates, movie_ids, fallback)
    if name in ("ease", "als"):
        return retrieval_scorer(name, train, fitted, chunk_users)
    raise ValueError(f"unknown baseline {name!r}; expected one of {', '.join(BASELINES)}")
