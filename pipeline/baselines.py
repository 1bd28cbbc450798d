"""Non-learned baselines that score (user, movie) pairs from the training rows alone.

Each baseline becomes a scorer `(user_ids, movie_ids) -> scores` via `fit_baseline`, so the
evaluation runs it through exactly the same metric code as the trained models.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

BASELINES = ("random", "most_popular", "positive_rate", "ease")

# Weight of the global positive rate in `positive_rate`, in pseudo-ratings: a movie with 10
# training ratings is pulled halfway to the global rate, one with 200 barely moves. Small enough
# not to flatten popular movies, large enough that a single 5-star rating cannot top the chart.
PRIOR_STRENGTH = 10.0

# L2 weight of EASE's item-item regression, chosen in a one-off scratch run on the two validation carves
# that `make tune` uses (never on test rows): over 100, 300, 1000 and 3000, and over liked vs all rated
# training ratings as the user-movie matrix, liked with 300 gave the best Recall@10 and NDCG@10 on the
# random carve and the best NDCG@10 on the temporal one.
EASE_L2 = 300.0

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


def liked_matrix(train: pd.DataFrame, n_users: int, n_movies: int) -> np.ndarray:
    """users × movies, 1.0 where the user has a liked (label = 1) rating of the movie in `train`, else 0."""
    liked = train[train["label"] == 1]
    matrix = np.zeros((n_users, n_movies), dtype=np.float64)
    matrix[liked["user_id"].to_numpy(), liked["movie_id"].to_numpy()] = 1.0
    return matrix


def ease_weights(liked: np.ndarray, l2: float = EASE_L2) -> np.ndarray:
    """EASE (Steck 2019): the movie × movie weights B that best rebuild each user's liked movies from the
    user's other liked movies, min ||X - XB||² + l2·||B||² with diag(B) = 0, in closed form:
    P = (XᵀX + l2·I)⁻¹, B = -P / diag(P) column by column, diagonal set to 0. X = `liked` (liked_matrix).
    """
    precision = np.linalg.inv(liked.T @ liked + l2 * np.eye(liked.shape[1]))
    weights = -precision / np.diag(precision)
    np.fill_diagonal(weights, 0.0)
    return weights


def ease_scorer(train: pd.DataFrame, l2: float = EASE_L2) -> Scorer:
    """score(user, movie) = sum of B[m', movie] over the user's liked training movies m' (ease_weights).

    Users and movies are integer codes; a code above every code in `train` scores 0.
    """
    n_users, n_movies = int(train["user_id"].max()) + 1, int(train["movie_id"].max()) + 1
    liked = liked_matrix(train, n_users, n_movies)
    scores = (liked @ ease_weights(liked, l2)).astype(np.float32)

    def score(user_ids: np.ndarray, movie_ids: np.ndarray) -> np.ndarray:
        users, movies = np.asarray(user_ids), np.asarray(movie_ids)
        known = (users < n_users) & (movies < n_movies)
        out = np.zeros(len(users), dtype=np.float64)
        out[known] = scores[users[known], movies[known]]
        return out

    return score


def fit_baseline(name: str, train: pd.DataFrame, seed: int = 0) -> Scorer:
    """A scorer `(user_ids, movie_ids) -> scores` for baseline `name` fitted on `train`.

    random: pair_random_scores(user_ids, movie_ids, seed): a fixed pseudo-random score per (user, movie),
        so it does not depend on how the pairs are batched.
    most_popular: popularity(train), 0 for movies without training ratings.
    positive_rate: positive_rate(train), the global rate for movies without training ratings.
    ease: ease_scorer(train), a strong collaborative-filtering reference from the user's liked movies.
    """
    if name == "random":
        return lambda user_ids, movie_ids: pair_random_scores(user_ids, movie_ids, seed)
    if name == "most_popular":
        counts = popularity(train)
        return lambda user_ids, movie_ids: score_pairs(counts, movie_ids, 0.0)
    if name == "positive_rate":
        rates, fallback = positive_rate(train), global_rate(train)
        return lambda user_ids, movie_ids: score_pairs(rates, movie_ids, fallback)
    if name == "ease":
        return ease_scorer(train)
    raise ValueError(f"unknown baseline {name!r}; expected one of {', '.join(BASELINES)}")
