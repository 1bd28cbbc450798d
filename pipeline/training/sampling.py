"""Training rows of the 14-field models: the ratings, relabelled by target, plus sampled unrated movies.

The sampled-negative ("sampled") models learn which *unrated* movies a user will like: for each rating,
`negatives` movies the user has no training rating for are added as label-0 rows that carry the
user's fields and the context of that rating. Everything here is pandas/NumPy; no TensorFlow.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from pipeline import config
from pipeline.config import TrainConfig


def row_weights(rows: pd.DataFrame) -> np.ndarray | None:
    """The per-row loss weights training_rows set (cfg.recency_weight), or None when every row weighs 1."""
    return rows["weight"].to_numpy(dtype="float32") if "weight" in rows else None


def negative_sources(train: pd.DataFrame, negatives: int, per: str, rng: np.random.Generator) -> np.ndarray:
    """Which training rating (row position) each sampled negative is drawn for.

    per="rating": `negatives` for every rating, so a user gets negatives × their number of ratings.
    per="user": every user gets the same count, negatives × the mean number of ratings per user (rounded),
    drawn for ratings of theirs picked at random; light users then meet more unrated movies, heavy users fewer.
    """
    if per == "rating":
        return np.repeat(np.arange(len(train)), negatives)
    if per != "user":
        raise ValueError(f"unknown negatives_per {per!r}; expected one of {', '.join(config.NEGATIVES_PER)}")
    rows_by_user = np.argsort(train["user_id"].to_numpy(), kind="stable")
    _, starts, sizes = np.unique(train["user_id"].to_numpy()[rows_by_user], return_index=True, return_counts=True)
    each = int(round(negatives * len(train) / len(sizes)))
    picked = np.repeat(starts, each) + (rng.random(each * len(sizes)) * np.repeat(sizes, each)).astype(np.int64)
    return rows_by_user[picked]


def sampler_weights(sampler: str, movie_counts: np.ndarray) -> np.ndarray | None:
    """The probability of drawing each movie as a negative, from its number of training ratings: None for
    "uniform" over the catalogue, or proportional to ratings + 1 for "popularity" (so popular movies are
    also seen unrated)."""
    if sampler == "uniform":
        return None
    if sampler != "popularity":
        raise ValueError(f"unknown negative sampler {sampler!r}; expected one of {', '.join(config.NEGATIVE_SAMPLERS)}")
    counts = movie_counts.astype(float) + 1.0
    return counts / counts.sum()


def pair_keys(users: np.ndarray, movies: np.ndarray, n_movies: int, dtype=np.int64) -> np.ndarray:
    """One integer per (user, movie) pair: the keys of a rated-pair index."""
    return (users.astype(np.int64) * n_movies + movies).astype(dtype)


def is_rated(rated: np.ndarray, users: np.ndarray, movies: np.ndarray, n_movies: int) -> np.ndarray:
    """Whether each (user, movie) pair is among the sorted pair keys `rated`."""
    keys = pair_keys(users, movies, n_movies, rated.dtype)
    # Sorted queries walk the index in order (several times faster than random probes).
    order = np.argsort(keys)
    found = np.minimum(np.searchsorted(rated, keys[order]), len(rated) - 1)
    out = np.empty(len(keys), dtype=bool)
    out[order] = rated[found] == keys[order]
    return out


def redraw_rated(rated, users, movies, n_movies: int, draw, redraws: int = 50) -> np.ndarray:
    """Redraw in place, up to `redraws` times, the movies that the user at the same position has rated:
    draw(attempt, where) gives new movies for the positions `where` (ascending) at attempt 1, 2, ...
    Returns the positions that were still rated at the last check (empty once every draw is unrated);
    users have rated at most ~2/3 of the catalogue, so few draws need a second one."""
    where = np.arange(len(movies))
    for attempt in range(1, redraws + 1):
        where = where[is_rated(rated, users[where], movies[where], n_movies)]
        if len(where) == 0:
            break
        movies[where] = draw(attempt, where)
    return where


def unrated_rows(
    ratings: dict[str, np.ndarray], source, movies, catalogue: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The label-0 rows of the movies drawn for the ratings at positions `source`: every column of that
    rating (the user's fields, the rating's context, its weight) except the movie's fields, which come
    from `catalogue` (each field's codes indexed by movie code), and rating and label 0."""
    movie = {field: catalogue[field][movies] for field in config.MOVIE_FIELDS}
    out = {name: movie[name] if name in movie else values[source] for name, values in ratings.items()}
    out |= movie
    return out | {"rating": np.zeros(len(source), dtype=np.int64), "label": np.zeros(len(source), dtype=np.int64)}


def sample_unrated(
    train: pd.DataFrame, catalogue: pd.DataFrame, negatives: int, sampler: str, seed: int, per: str = "rating"
) -> pd.DataFrame:
    """`negatives` movies per training rating (or per user on average: negative_sources) that the user has
    no training rating for, as label-0 rows (unrated_rows), drawn by `sampler` (sampler_weights); a draw
    still rated after the redraws is dropped.
    """
    rng = np.random.default_rng(seed)
    catalogue = catalogue.sort_values("movie_id", ignore_index=True)
    n_movies = len(catalogue)
    weights = sampler_weights(sampler, np.bincount(train["movie_id"], minlength=n_movies))
    rated = np.unique(pair_keys(train["user_id"].to_numpy(), train["movie_id"].to_numpy(), n_movies))
    source = negative_sources(train, negatives, per, rng)
    users = train["user_id"].to_numpy()[source]
    movies = rng.choice(n_movies, size=len(source), p=weights)
    hit = redraw_rated(
        rated, users, movies, n_movies, lambda _, where: rng.choice(n_movies, size=len(where), p=weights)
    )
    columns = {name: train[name].to_numpy() for name in train.columns}
    codes = {field: catalogue[field].to_numpy() for field in config.MOVIE_FIELDS}
    sampled = pd.DataFrame(unrated_rows(columns, source, movies, codes))
    return sampled.drop(index=hit).reset_index(drop=True) if len(hit) else sampled


def target_labels(target: str, rating: np.ndarray, label: np.ndarray) -> np.ndarray:
    """The label a rating trains on: its `label` (liked), 1 (rated) or rating / MAX_RATING (graded)."""
    if target == "liked":
        return label
    if target == "rated":
        return np.ones(len(rating), dtype=np.float32)
    if target == "graded":
        return (rating / config.MAX_RATING).astype(np.float32)
    raise ValueError(f"unknown target {target!r}; expected one of {', '.join(config.TARGETS)}")


def training_rows(train: pd.DataFrame, cfg: TrainConfig, catalogue: pd.DataFrame | None) -> pd.DataFrame:
    """The rows the model is fitted on: the ratings, plus sampled unrated movies when cfg.negatives > 0.

    Shuffled once here, because Keras holds out the *last* rows for validation and would otherwise
    validate on sampled rows only.
    """
    if cfg.recency_weight:
        order = train.groupby("user_id")["timestamp"].rank(method="first") - 1
        latest = train.groupby("user_id")["timestamp"].transform("size").clip(lower=2) - 1
        train = train.assign(weight=(1 + cfg.recency_weight * order / latest).astype("float32"))
    if cfg.target != "liked":
        train = train.assign(label=target_labels(cfg.target, train["rating"].to_numpy(), train["label"].to_numpy()))
    if cfg.negatives == 0:
        return train
    if catalogue is None:
        raise ValueError("negative sampling needs the movie catalogue")
    rows = pd.concat(
        [train, sample_unrated(train, catalogue, cfg.negatives, cfg.negative_sampler, cfg.seed, cfg.negatives_per)],
        ignore_index=True,
    )
    return rows.sample(frac=1.0, random_state=cfg.seed, ignore_index=True)


def epoch_rows(train: pd.DataFrame, cfg: TrainConfig, catalogue: pd.DataFrame | None, epoch: int) -> pd.DataFrame:
    """The rows of epoch `epoch` (from 0): with cfg.fresh_negatives a new draw of negatives (seed + epoch),
    otherwise the same rows as every other epoch."""
    fresh = cfg.negatives and cfg.fresh_negatives
    return training_rows(train, dataclasses.replace(cfg, seed=cfg.seed + epoch) if fresh else cfg, catalogue)
