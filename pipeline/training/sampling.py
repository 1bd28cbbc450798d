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


def sample_unrated(
    train: pd.DataFrame, catalogue: pd.DataFrame, negatives: int, sampler: str, seed: int, per: str = "rating"
) -> pd.DataFrame:
    """`negatives` movies per training rating (or per user on average: negative_sources) that the user has
    no training rating for, as label-0 rows.

    A sampled row keeps the user's fields and the rating-time context of the real rating it was drawn
    for; its movie fields come from `catalogue`. `sampler` is "uniform" over the catalogue or
    "popularity" (proportional to a movie's training ratings, so popular movies are also seen unrated).
    """
    rng = np.random.default_rng(seed)
    catalogue = catalogue.sort_values("movie_id", ignore_index=True)
    n_movies = len(catalogue)
    if sampler == "uniform":
        weights = None
    elif sampler == "popularity":
        counts = np.bincount(train["movie_id"], minlength=n_movies).astype(float) + 1.0
        weights = counts / counts.sum()
    else:
        raise ValueError(f"unknown negative sampler {sampler!r}; expected one of {', '.join(config.NEGATIVE_SAMPLERS)}")
    rated = np.unique(train["user_id"].to_numpy() * n_movies + train["movie_id"].to_numpy())
    source = negative_sources(train, negatives, per, rng)
    users = train["user_id"].to_numpy()[source]
    movies = rng.choice(n_movies, size=len(source), p=weights)
    # Redraw the few draws that hit a rated movie; users have rated at most ~2/3 of the catalogue.
    for _ in range(50):
        keys = users * n_movies + movies
        hit = rated[np.minimum(np.searchsorted(rated, keys), len(rated) - 1)] == keys
        if not hit.any():
            break
        movies[hit] = rng.choice(n_movies, size=int(hit.sum()), p=weights)
    sampled = train.iloc[source].reset_index(drop=True)
    for field in config.MOVIE_FIELDS:
        sampled[field] = catalogue[field].to_numpy()[movies]
    sampled["rating"] = 0
    sampled["label"] = 0
    return sampled[~hit].reset_index(drop=True) if hit.any() else sampled


def training_rows(train: pd.DataFrame, cfg: TrainConfig, catalogue: pd.DataFrame | None) -> pd.DataFrame:
    """The rows the model is fitted on: the ratings, plus sampled unrated movies when cfg.negatives > 0.

    Shuffled once here, because Keras holds out the *last* rows for validation and would otherwise
    validate on sampled rows only.
    """
    if cfg.recency_weight:
        order = train.groupby("user_id")["timestamp"].rank(method="first") - 1
        latest = train.groupby("user_id")["timestamp"].transform("size").clip(lower=2) - 1
        train = train.assign(weight=(1 + cfg.recency_weight * order / latest).astype("float32"))
    if cfg.target == "rated":
        train = train.assign(label=np.float32(1))
    elif cfg.target == "graded":
        train = train.assign(label=(train["rating"] / config.MAX_RATING).astype("float32"))
    elif cfg.target != "liked":
        raise ValueError(f"unknown target {cfg.target!r}; expected one of {', '.join(config.TARGETS)}")
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
