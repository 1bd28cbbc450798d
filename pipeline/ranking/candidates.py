"""Candidate lists: each user's (or new person's) K retrieval candidates with everything the ranker reads.

The ranking stage of the default recommender: DeepCTR AutoInt ordering the retrieval stage's candidates.

For each user the retrieval stage (EASE or ALS over the user's whole liked history) proposes the K movies they
are most likely to like; the ranker orders those K using what retrieval cannot see: who the user is,
when they rate, the movie's fields, and (through the history field and the retrieval signal) what they liked.

A CandidateLists holds L lists of K candidates in compact form (a list's user fields and history once, not K
times); pipeline.ranking.list_inputs expands them to the ranker's candidate rows.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from pipeline import config
from pipeline.config import TrainConfig
from pipeline.data import history
from pipeline.data.history import latest_context
from pipeline.files import atomic_path
from pipeline.retrieval import retriever


@dataclass(frozen=True)
class CandidateLists:
    """L candidate lists of K movies each, with everything the ranker reads about their user.

    owner     (L,) the user code of each list (-1 for a new person)
    profile   (L, 5) user fields in config.USER_FIELDS order, codes shifted by one (0 = unknown)
    context   (L, 3) rating-time fields in config.CONTEXT_FIELDS order, codes shifted by one
    history   (L, H) latest liked movies, oldest first, codes shifted by one (0 = padding)
    movies    (L, K) candidate movie codes (not shifted), retrieval order
    scores    (L, K) their retrieval scores (the liked model's, from the liked movies)
    disliked  (L, K) the liked model's scores from the user's rated-but-not-liked movies
    rated_from_liked, rated_from_disliked
              (L, K) the every-rating model's scores from the liked and from the other rated movies
              (kept apart so that a list can be made to look like a new person's, who names liked ones)
    recent    (L, K) the liked model's scores from the latest cfg.recent_liked liked movies, or None
    labels    (L, K) 1.0 where the candidate is a liked movie of the held-out fold (training only)
    als_scores, als_rated_from_liked, als_rated
              (L, K) ALS's scores (Retriever.als): its liked model's from the liked movies, its every-rating
              model's from the liked movies only and from every rated movie (the first two are all a new person
              has); None when the retrieval model has no ALS. With an ALS retrieval they repeat `scores`,
              `rated_from_liked` and `rated`.
    """

    owner: np.ndarray
    profile: np.ndarray
    context: np.ndarray
    history: np.ndarray
    movies: np.ndarray
    scores: np.ndarray
    disliked: np.ndarray
    rated_from_liked: np.ndarray
    rated_from_disliked: np.ndarray
    recent: np.ndarray | None = None
    labels: np.ndarray | None = None
    als_scores: np.ndarray | None = None
    als_rated_from_liked: np.ndarray | None = None
    als_rated: np.ndarray | None = None

    @property
    def rated(self) -> np.ndarray:
        """The every-rating model's scores from every movie the user rated."""
        return self.rated_from_liked + self.rated_from_disliked

    def __len__(self) -> int:
        return len(self.owner)

    def take(self, rows) -> CandidateLists:
        return CandidateLists(
            **{
                field.name: None if getattr(self, field.name) is None else getattr(self, field.name)[rows]
                for field in dataclasses.fields(self)
            }
        )

    def save(self, path: Path, settings: dict) -> Path:
        """Write the lists and the settings that made them (one .npz, written under a temporary name)."""
        arrays = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        with atomic_path(path) as tmp:
            np.savez(
                tmp, settings=json.dumps(settings, sort_keys=True), **{k: v for k, v in arrays.items() if v is not None}
            )
        return path

    @staticmethod
    def load(path: Path) -> tuple[CandidateLists, dict]:
        """The lists saved by `save`, and the settings they were made with."""
        with np.load(path) as stored:
            settings = json.loads(str(stored["settings"]))
            fields = {
                field.name: stored[field.name] if field.name in stored else None
                for field in dataclasses.fields(CandidateLists)
            }
        return CandidateLists(**fields), settings

    @staticmethod
    def concat(parts: list[CandidateLists]) -> CandidateLists:
        return CandidateLists(
            **{
                field.name: None
                if getattr(parts[0], field.name) is None
                else np.concatenate([getattr(part, field.name) for part in parts])
                for field in dataclasses.fields(CandidateLists)
            }
        )


def user_lists(
    fitted: retriever.Retriever,
    inputs: pd.DataFrame,
    users: pd.DataFrame,
    cfg: TrainConfig,
    labels_from: pd.DataFrame | None = None,
) -> CandidateLists:
    """One list per user with input rows: the top cfg.candidates movies of `fitted` that the user has no
    row of in `inputs`, with the user's fields, latest context and liked history from `inputs`.

    users        the user table (codes, one row per code 0..n_users-1)
    labels_from  rows whose liked movies label the candidates (a held-out fold), or None
    """
    n_users, n_movies = len(users), fitted.n_movies
    owners = np.flatnonzero(np.bincount(inputs["user_id"], minlength=n_users) > 0)
    liked = retriever.liked_matrix(inputs, n_users, n_movies)[owners]
    seen = retriever.interaction_matrix(inputs, n_users, n_movies)[owners]
    movies, scores = fitted.top_k(liked, seen, cfg.candidates)
    disliked = retriever.interaction_matrix(inputs[inputs["label"] == 0], n_users, n_movies)[owners]
    labels = None
    if labels_from is not None:
        positives = labels_from[labels_from["label"] == 1]
        keys = positives["user_id"].to_numpy(np.int64) * n_movies + positives["movie_id"].to_numpy()
        labels = np.isin(owners[:, None] * n_movies + movies, keys).astype(np.float32)
    profile = users.set_index("user_id").loc[owners, list(config.USER_FIELDS[1:])].to_numpy()
    rated_from_liked = fitted.rated_scores_at(liked, movies)
    rated_from_disliked = fitted.rated_scores_at(disliked, movies)
    return CandidateLists(
        owner=owners,
        profile=np.column_stack([owners, profile]).astype(np.int64) + 1,
        context=latest_context(inputs).loc[owners].to_numpy(np.int64) + 1,
        history=history.user_histories(inputs, n_users, cfg.history)[owners],
        movies=movies,
        scores=scores,
        disliked=fitted.scores_at(disliked, movies),
        rated_from_liked=rated_from_liked,
        rated_from_disliked=rated_from_disliked,
        recent=recent_scores(fitted, history.user_histories(inputs, n_users, cfg.recent_liked)[owners], movies),
        labels=labels,
        **als_fields(fitted, liked, seen, movies, scores, rated_from_liked, rated_from_disliked),
    )


def person_lists(
    fitted: retriever.Retriever,
    liked_movies: list[np.ndarray],
    profiles: np.ndarray,
    contexts: np.ndarray,
    cfg: TrainConfig,
    disliked_movies: list[np.ndarray] | None = None,
    owners: np.ndarray | None = None,
    include: list[np.ndarray] | None = None,
) -> CandidateLists:
    """Lists for people given as the movies they like (codes, oldest first) and whatever of their profile they
    gave (shifted codes, 0 = unknown); all their movies are excluded.

    A new person names liked movies only. A known user (`owners`: their codes) also has `disliked_movies`, the
    movies they rated but did not like (any order): then each list equals user_lists' for that user, built
    from a few arrays instead of the user's rows (a scored request of the service). `include` (unseen movies per
    person, fewer than cfg.candidates) are put in each list in place of its lowest other candidates, and the list
    is ordered by retrieval score again (a new person's popular candidates: pipeline.ranking.newcomer_lists)."""
    n_movies = fitted.n_movies
    disliked_movies = disliked_movies if disliked_movies is not None else [np.zeros(0, np.int64)] * len(liked_movies)
    liked, disliked = people_matrix(liked_movies, n_movies), people_matrix(disliked_movies, n_movies)
    seen = liked + disliked
    movies, scores = fitted.top_k(liked, seen, cfg.candidates)
    if include is not None and any(len(extra) for extra in include):
        movies, scores = merged(fitted, liked, movies, include)
    rated_from_liked = fitted.rated_scores_at(liked, movies)
    rated_from_disliked = fitted.rated_scores_at(disliked, movies)
    return CandidateLists(
        owner=np.full(len(liked_movies), -1) if owners is None else np.asarray(owners, np.int64),
        profile=np.asarray(profiles, np.int64),
        context=np.asarray(contexts, np.int64),
        history=latest_of(liked_movies, cfg.history),
        movies=movies,
        scores=scores,
        disliked=fitted.scores_at(disliked, movies),
        rated_from_liked=rated_from_liked,
        rated_from_disliked=rated_from_disliked,
        recent=recent_scores(fitted, latest_of(liked_movies, cfg.recent_liked), movies),
        **als_fields(fitted, liked, seen, movies, scores, rated_from_liked, rated_from_disliked),
    )


def als_fields(
    fitted: retriever.Retriever,
    liked: sparse.csr_matrix,
    rated: sparse.csr_matrix,
    movies: np.ndarray,
    scores: np.ndarray,
    rated_from_liked: np.ndarray,
    rated_from_disliked: np.ndarray,
) -> dict[str, np.ndarray | None]:
    """CandidateLists' ALS fields for lists of `movies` from people's `liked` and `rated` rows: the ALS beside an
    EASE retrieval folded in three times, an ALS retrieval's own scores again (`scores`, `rated_from_liked` and
    their sum with `rated_from_disliked`, as the ranker's rated_score reads them), or None without ALS."""
    model = fitted.als
    if model is None:
        return {"als_scores": None, "als_rated_from_liked": None, "als_rated": None}
    if model is fitted:
        return {
            "als_scores": scores,
            "als_rated_from_liked": rated_from_liked,
            "als_rated": rated_from_liked + rated_from_disliked,
        }
    return {
        "als_scores": model.scores_at(liked, movies),
        "als_rated_from_liked": model.rated_scores_at(liked, movies),
        "als_rated": model.rated_scores_at(rated, movies),
    }


def merged(fitted: retriever.Retriever, liked: sparse.csr_matrix, movies: np.ndarray, include: list[np.ndarray]):
    """Each row of `movies` (retrieval order) with `include`'s movies in place of its lowest others, ordered by the
    liked model's score from `liked` (ties: the lower movie code): (movies, scores)."""
    k = movies.shape[1]
    out = movies.copy()
    for row, extra in enumerate(include):
        extra = np.asarray(extra, np.int64)[: k - 1]
        if len(extra):
            others = movies[row][~np.isin(movies[row], extra)][: k - len(extra)]
            out[row] = np.concatenate([others, extra])
    scores = fitted.scores_at(liked, out)
    order = np.lexsort((out, -scores), axis=1)
    return np.take_along_axis(out, order, axis=1), np.take_along_axis(scores, order, axis=1)


def people_matrix(movies_of: list[np.ndarray], n_movies: int) -> sparse.csr_matrix:
    """people × movies, 1.0 at each person's movies (codes; duplicates count once)."""
    rows = np.repeat(np.arange(len(movies_of)), [len(movies) for movies in movies_of])
    columns = np.concatenate(movies_of) if movies_of else np.zeros(0, np.int64)
    matrix = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, columns)), shape=(len(movies_of), n_movies))
    matrix.data[:] = 1.0
    return matrix


def latest_of(liked_movies: list[np.ndarray], length: int) -> np.ndarray:
    """(people, length): each person's last `length` movie codes (oldest first, right-aligned), shifted by
    one, 0 pads: the history field's layout (history.user_histories) for a list given in order."""
    out = np.zeros((len(liked_movies), length), dtype=np.int32)
    for row, mine in enumerate(liked_movies):
        latest = np.asarray(mine, dtype=np.int32)[len(mine) - min(length, len(mine)) :] + 1
        out[row, length - len(latest) :] = latest
    return out


def recent_scores(fitted: retriever.Retriever, latest: np.ndarray, movies: np.ndarray) -> np.ndarray | None:
    """The liked model's scores of `movies` from each list's latest liked movies (shifted codes, 0 pads), or
    None when there are none to read (recent_liked = 0)."""
    if latest.shape[1] == 0:
        return None
    rows, columns = np.nonzero(latest)
    matrix = sparse.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, latest[rows, columns] - 1)), shape=(len(latest), fitted.n_movies)
    )
    return fitted.scores_at(matrix, movies)


def user_chunks(rows: pd.DataFrame, chunk_users: int | None, *also: pd.DataFrame):
    """`rows` cut into chunks of at most `chunk_users` of its users, as even as can be (all in one chunk when
    None), in user order, each with the rows of `also` (e.g. a held-out fold's) of the same users: (rows, *also)
    per chunk. A user's rows keep their order, so lists made chunk by chunk equal lists made at once."""
    present = np.unique(rows["user_id"].to_numpy())
    # Chunks of even size (6,040 users in chunks of 4,096 → two of 3,020), so that row groups, which the
    # streamed trainer deals to its workers, are alike.
    chunks = max(1, -(-len(present) // chunk_users)) if chunk_users else 1
    step = max(1, -(-len(present) // chunks))
    for start in range(0, len(present), step):
        lo, hi = present[start], present[min(start + step, len(present)) - 1]
        yield tuple(frame[frame["user_id"].between(lo, hi)] for frame in (rows, *also))


def with_context(lists: CandidateLists, codes) -> CandidateLists:
    """The same lists scored in another rating-time context (codes of config.CONTEXT_FIELDS, not shifted)."""
    context = np.tile(np.asarray(codes, dtype=np.int64) + 1, (len(lists), 1))
    return dataclasses.replace(lists, context=context)
