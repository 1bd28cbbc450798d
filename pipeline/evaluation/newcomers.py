"""How well the two-stage recommender serves people it has never seen (part of `make study`).

A share of users is held out of every stage's training (retrieval and ranker). Each held-out user is
given only their first few liked movies by time, as a newcomer would name them, in the context of the
last of those ratings; their other liked movies are what a Top-10 should find. Only the given movies
are excluded. The same few movies go to EASE (the retrieval stage alone) and to most popular.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from pipeline import config
from pipeline.data.preprocess import Processed
from pipeline.evaluation import baselines, metrics
from pipeline.ranking import candidates, ranker_inputs, scorers
from pipeline.ranking.runtimes import KerasRuntime
from pipeline.retrieval import retriever
from pipeline.training import ranker


@dataclasses.dataclass(frozen=True)
class Newcomers:
    """The held-out users (codes) with their given liked movies (codes, oldest first), the rating-time
    context of the last one (codes), and their other liked movies (user_id, movie_id)."""

    users: np.ndarray
    given: list[np.ndarray]
    context: np.ndarray
    relevant: pd.DataFrame


def hold_out(
    data: Processed,
    share: float = config.NEW_USER_SHARE,
    given: int = config.NEW_USER_GIVEN,
    seed: int = config.SPLIT_SEED,
) -> tuple[pd.DataFrame, Newcomers]:
    """(the training rows of the other users, the held-out users with at least one liked movie beyond
    the `given`)."""
    rng = np.random.default_rng(seed)
    held = np.sort(rng.choice(len(data.users), int(round(share * len(data.users))), replace=False))
    ratings = pd.concat([data.train, data.test], ignore_index=True)
    liked = ratings[ratings["user_id"].isin(held) & (ratings["label"] == 1)]
    liked = liked.sort_values(["user_id", "timestamp", "movie_id"], kind="stable")
    position = liked.groupby("user_id").cumcount().to_numpy()
    first, rest = liked[position < given], liked[position >= given]
    users = np.intersect1d(first["user_id"].unique(), rest["user_id"].unique())
    first = first[first["user_id"].isin(users)]
    given_movies = [group["movie_id"].to_numpy() for _, group in first.groupby("user_id", sort=True)]
    context = first.groupby("user_id", sort=True).tail(1)[list(config.CONTEXT_FIELDS)].to_numpy()
    train = data.train[~data.train["user_id"].isin(held)].reset_index(drop=True)
    return train, Newcomers(
        users, given_movies, context, rest.loc[rest["user_id"].isin(users), ["user_id", "movie_id"]]
    )


def profiles(data: Processed, users: np.ndarray, demographics: bool) -> np.ndarray:
    """The ranker's user fields of the newcomers: user_id and zip unknown; gender, age and occupation
    their own (shifted) when `demographics`, else unknown too."""
    table = data.users.set_index("user_id").loc[users]
    out = np.zeros((len(users), len(config.USER_FIELDS)), dtype=np.int64)
    if demographics:
        for field in ("gender", "age", "occupation"):
            out[:, config.USER_FIELDS.index(field)] = table[field].to_numpy() + 1
    return out


def top_frame(users: np.ndarray, movies: np.ndarray) -> pd.DataFrame:
    k = movies.shape[1]
    return pd.DataFrame(
        {"user_id": np.repeat(users, k), "rank": np.tile(np.arange(1, k + 1), len(users)), "movie_id": movies.ravel()}
    )


def popular_top(train: pd.DataFrame, newcomers: Newcomers, n_movies: int, k: int) -> np.ndarray:
    """Most popular (liked training ratings) movies, excluding each newcomer's given ones."""
    counts = baselines.popularity(train).reindex(range(n_movies), fill_value=0).to_numpy()
    order = np.argsort(-counts, kind="stable")
    return np.stack([order[~np.isin(order, given)][:k] for given in newcomers.given])


def evaluate_new_users(
    data: Processed, architecture: str = config.DEFAULT_ARCHITECTURE, k: int = config.TOP_N, echo=print
) -> dict:
    """Train retrieval and the default ranker without the held-out users, then score every scorer on them."""
    share, given = config.NEW_USER_SHARE, config.NEW_USER_GIVEN
    train, newcomers = hold_out(data, share, given)
    echo(
        f"new users: {len(newcomers.users):,} held-out users; training retrieval and the ranker on the "
        f"{len(train):,} training rows of the others"
    )
    cfg = config.MODELS[config.model_name(architecture, "two_stage")]
    fitted = retriever.fit(train, len(data.users), len(data.movies))
    model, _ = ranker.train_ranker(dataclasses.replace(data, train=train), cfg, log=echo)
    two_stage = scorers.TwoStage(
        fitted, scorers.ListScorer(KerasRuntime(model), cfg), ranker_inputs.movie_table(data.movies)
    )
    contexts = newcomers.context + 1
    given = retrieval_rows(newcomers, fitted.n_movies)
    tops = {
        "ease": fitted.top_k(given, given, k)[0],
        "most_popular": popular_top(train, newcomers, len(data.movies), k),
    }
    for demographics, suffix in (
        (False, f"{config.NEW_USER_GIVEN} movies"),
        (True, f"{config.NEW_USER_GIVEN} movies + gender, age, occupation"),
    ):
        lists = candidates.person_lists(
            fitted, newcomers.given, profiles(data, newcomers.users, demographics), contexts, cfg
        )
        tops[f"{config.model_name(architecture, 'two_stage')}, {suffix}"] = two_stage.top_n(lists, k)[0]
    results = {
        name: metrics.full_catalog_metrics(top_frame(newcomers.users, movies), newcomers.relevant, k)
        for name, movies in tops.items()
    }
    return {
        "share": config.NEW_USER_SHARE,
        "given": config.NEW_USER_GIVEN,
        "held_out_users": int(round(config.NEW_USER_SHARE * len(data.users))),
        "users": len(newcomers.users),
        "baselines": ["ease", "most_popular"],
        "scorers": results,
    }


def retrieval_rows(newcomers: Newcomers, n_movies: int):
    """The newcomers' given movies as a people × movies matrix (what EASE scores from, and excludes)."""
    rows = np.repeat(np.arange(len(newcomers.given)), [len(given) for given in newcomers.given])
    return retriever.interaction_matrix(
        pd.DataFrame({"user_id": rows, "movie_id": np.concatenate(newcomers.given)}), len(newcomers.given), n_movies
    )
