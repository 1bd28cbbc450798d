"""A new person's Top-N: retrieval's candidates topped up with what people like them like, ordered by the ranker's
score blended with that popularity, the more the fewer movies they named.

A new person names a few liked movies (and maybe their gender and age). From one or three movies retrieval knows
little, and what such a person goes on to like is mostly what everyone likes: on the validation newcomers most
popular beats EASE and the ranker alone in NDCG@10 until about five movies are named (docs/recommender.md, "New
people"). So for a person who named m movies, config.NEWCOMER_LISTS[m] (the largest key at most m) gives
  popular  how many of the movies most liked by people of their gender and age group (Popularity.prior), unseen,
           replace the lowest of retrieval's candidates (the list keeps its length and retrieval order), and
  weight   how much that popularity counts against the ranker's score, and
  retrieval
           how much retrieval's own score does: z(logit(ranker score)) + weight × z(prior) + retrieval ×
           z(retrieval score), each z-scored within the list (both 0: the ranker's own order).
Chosen on validation users held out of training (pipeline/evaluation/newcomers.py, `make newcomers`). Known users'
lists never come here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline import config
from pipeline.ranking import candidates
from pipeline.ranking.ranker_inputs import standardized

GENDER, AGE = config.USER_FIELDS.index("gender"), config.USER_FIELDS.index("age")


@dataclass(frozen=True)
class Popularity:
    """Liked ratings per movie code by (gender, age group) in shifted codes, where 0 means "any": likes[0, 0] is
    every liked rating's count, likes[g, 0] one gender's, likes[0, a] one age group's, likes[g, a] both."""

    likes: np.ndarray  # (genders + 1, ages + 1, n_movies)

    @staticmethod
    def of(liked: pd.DataFrame, users: pd.DataFrame, n_movies: int) -> Popularity:
        """From liked ratings (user_id, movie_id codes) and the user table (codes)."""
        table = users.set_index("user_id").sort_index()
        genders, ages = int(table["gender"].max()) + 2, int(table["age"].max()) + 2
        gender = table["gender"].to_numpy()[liked["user_id"].to_numpy()] + 1
        age = table["age"].to_numpy()[liked["user_id"].to_numpy()] + 1
        cell = (gender * ages + age) * n_movies + liked["movie_id"].to_numpy()
        likes = np.bincount(cell, minlength=genders * ages * n_movies).reshape(genders, ages, n_movies)
        likes = likes.astype(np.float32)
        likes[0] = likes[1:].sum(axis=0)
        likes[:, 0] = likes[:, 1:].sum(axis=1)
        return Popularity(likes)

    def prior(self, profiles: np.ndarray) -> np.ndarray:
        """(people, n_movies): log(1 + likes overall) + log(1 + likes in the person's group), from each person's
        user fields (shifted codes; an unknown gender or age widens the group to everyone of that field)."""
        overall = np.log1p(self.likes[0, 0])
        group = np.log1p(self.likes[profiles[:, GENDER], profiles[:, AGE]])
        return overall[None, :] + group


def settings_for(named: np.ndarray, table: dict | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(popular, weight, retrieval) of people who named `named` liked movies: the entry of the largest key of
    `table` (config.NEWCOMER_LISTS) at most theirs, the smallest key's for fewer."""
    table = table if table is not None else config.NEWCOMER_LISTS
    steps = np.asarray(sorted(table), np.int64)
    at = np.maximum(np.searchsorted(steps, np.asarray(named), side="right") - 1, 0)
    popular = np.asarray([table[step]["popular"] for step in steps], np.int64)[at]
    weight = np.asarray([table[step]["weight"] for step in steps], np.float64)[at]
    retrieval = np.asarray([table[step]["retrieval"] for step in steps], np.float64)[at]
    return popular, weight, retrieval


def popular_unseen(prior: np.ndarray, liked_movies: list[np.ndarray], popular: np.ndarray) -> list[np.ndarray]:
    """Each person's `popular[i]` highest-prior movies they did not name (codes, highest first)."""
    out = []
    for row, (count, mine) in enumerate(zip(popular, liked_movies)):
        ranked = np.argsort(-prior[row], kind="stable")
        out.append(ranked[~np.isin(ranked, mine)][: max(int(count), 0)])
    return out


def blended(
    scores: np.ndarray,
    prior_at: np.ndarray,
    weight: np.ndarray,
    retrieval_at: np.ndarray | None = None,
    retrieval: np.ndarray | float = 0.0,
) -> np.ndarray:
    """z(logit(scores)) + weight × z(prior_at) + retrieval × z(retrieval_at) within each list; a list whose weight
    and retrieval are 0 keeps its scores."""
    weight = np.broadcast_to(np.asarray(weight, np.float64), (len(scores),))
    retrieval = np.broadcast_to(np.asarray(retrieval, np.float64), (len(scores),))
    out = scores.astype(np.float32, copy=True)
    blend = (weight != 0) | (retrieval != 0)
    if blend.any():
        probability = np.clip(scores[blend].astype(np.float64), 1e-12, 1 - 1e-12)
        logits = np.log(probability) - np.log1p(-probability)
        out[blend] = standardized(logits) + weight[blend, None] * standardized(prior_at[blend])
        if retrieval_at is not None:
            out[blend] += retrieval[blend, None] * standardized(retrieval_at[blend])
    return out


def candidate_lists(
    two_stage, popularity: Popularity, liked_movies: list[np.ndarray], profiles, contexts, popular: np.ndarray
) -> tuple[candidates.CandidateLists, np.ndarray]:
    """New people's candidate lists, each with its `popular[i]` most popular unseen movies in, and the prior of
    every candidate: (lists, (L, K) prior)."""
    profiles = np.asarray(profiles, np.int64)
    prior = popularity.prior(profiles)
    include = popular_unseen(prior, liked_movies, popular)
    lists = candidates.person_lists(
        two_stage.retrieval, liked_movies, profiles, contexts, two_stage.cfg, include=include
    )
    return lists, np.take_along_axis(prior, lists.movies, axis=1)


def best(lists: candidates.CandidateLists, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each list's n best candidates by `scores` (ties keep retrieval order): (movies, scores)."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :n]
    return np.take_along_axis(lists.movies, order, axis=1), np.take_along_axis(scores, order, axis=1)


def top_n(
    two_stage,
    popularity: Popularity,
    liked_movies: list[np.ndarray],
    profiles: np.ndarray,
    contexts: np.ndarray,
    n: int,
    table: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """New people's n best movies and their blended scores, from the liked movies they named (codes, oldest
    first), their user fields and contexts (shifted codes), through `two_stage` (scorers.TwoStage)."""
    popular, weight, retrieval = settings_for([len(np.unique(mine)) for mine in liked_movies], table)
    lists, prior_at = candidate_lists(two_stage, popularity, liked_movies, profiles, contexts, popular)
    scores = blended(two_stage.scorer(lists, two_stage.movies), prior_at, weight, lists.scores, retrieval)
    return best(lists, scores, n)
