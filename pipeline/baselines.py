"""Non-learned baselines that score (user, movie) pairs from the training rows alone.

Each baseline becomes a scorer `(user_ids, movie_ids) -> scores` via `fit_baseline`, so the
evaluation runs it through exactly the same metric code as the trained models.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

BASELINES = ("random", "most_popular", "positive_rate")

# Weight of the global positive rate in `positive_rate`, in pseudo-ratings: a movie with 10
# training ratings is pulled halfway to the global rate, one with 200 barely moves. Small enough
# not to flatten popular movies, large enough that a single 5-star rating cannot top the chart.
PRIOR_STRENGTH = 10.0

Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


def random_scores(n: int, seed: int = 0) -> np.ndarray:
    """n scores drawn uniformly from [0, 1) by numpy's default generator seeded with `seed`."""
    return np.random.default_rng(seed).random(n)


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
    g the global positive rate of `train` and m = `strength` (PRIOR_STRENGTH = 10 when None).
    """
    m = PRIOR_STRENGTH if strength is None else float(strength)
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


def fit_baseline(name: str, train: pd.DataFrame, seed: int = 0) -> Scorer:
    """A scorer `(user_ids, movie_ids) -> scores` for baseline `name` fitted on `train`.

    random: pair_random_scores(user_ids, movie_ids, seed): a fixed pseudo-random score per (user, movie),
        so it does not depend on how the pairs are batched.
    most_popular: popularity(train), 0 for movies without training ratings.
    positive_rate: positive_rate(train), the global rate for movies without training ratings.
    """
    if name == "random":
        return lambda user_ids, movie_ids: pair_random_scores(user_ids, movie_ids, seed)
    if name == "most_popular":
        counts = popularity(train)
        return lambda user_ids, movie_ids: score_pairs(counts, movie_ids, 0.0)
    if name == "positive_rate":
        rates, fallback = positive_rate(train), global_rate(train)
        return lambda user_ids, movie_ids: score_pairs(rates, movie_ids, fallback)
    raise ValueError(f"unknown baseline {name!r}; expected one of {', '.join(BASELINES)}")
