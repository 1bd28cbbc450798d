"""A user, or a new person's liked movies → the Top-N movies they have not seen: the one recommending core.

The terminal commands (terminal.py), the web page (app.py) and the HTTP service (http_api.py) all ask a
`Recommender`. The default mode is the two-stage recommender (retrieval proposes, AutoInt ranks:
pipeline.ranking.scorers.TwoStage); `mode="reference"` scores the whole catalogue with the reference
project's models instead. A Recommender is built in three layers, each a module: the processed data with its
IDs, contexts and tables of movies (served_data.py), the files it scores with, loaded on first use
(served_models.py), and here the answers: a known user's and a new person's Top-N, each movie with the liked
movies it is recommended because of, and every user's Top-N for the precomputed tables. User mistakes raise
`RecommendError` (errors.py), and everything is checked before TensorFlow is imported (a model loads on its
first use).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline import config
from pipeline.data.history import latest_context
from pipeline.ranking import candidates, newcomer_lists
from pipeline.ranking.scorers import ranked_frame, top_n
from pipeline.serving.errors import RecommendError, check_n, model_name
from pipeline.serving.served_models import ServedModels, check_trained


class Recommender(ServedModels):
    """Everything recommending needs, loaded once (Recommender.load); models are loaded on first use, under a
    lock. The retrieval model and the models trained on the random split are the ones served."""

    # --- Answers: ranked movie codes → what a person is shown ------------------------------------------

    def top_frame(self, movies: np.ndarray, scores: np.ndarray, liked: np.ndarray | None = None) -> pd.DataFrame:
        """rank, movie_id (MovieLens ID), title, genres, score of movie codes in ranked order, and because: the
        liked movies (codes `liked`) that add most to each one's retrieval score (`because`); empty lists when
        liked is None (the reference models: retrieval did not propose their movies)."""
        return pd.DataFrame(
            {
                "rank": np.arange(1, len(movies) + 1),
                "movie_id": self._raw_movie_ids[movies],
                "title": self._title_of[movies],
                "genres": self._genres_of[movies],
                "score": np.asarray(scores, dtype=float),
                "because": [[] for _ in movies] if liked is None else self.because(liked, movies),
            }
        )

    def because(self, liked: np.ndarray, movies: np.ndarray) -> list[list[dict]]:
        """For each of `movies` (codes), the up to config.BECAUSE_N movies of `liked` (codes) that add most to
        its retrieval score, most first, as [{movie_id (MovieLens ID), title}]; fewer when fewer add to it."""
        named = self.retrieval().contributions(liked, movies, config.BECAUSE_N)
        # Python lists, sliced to each row's count: the -1 padding comes last (its lookups are cut off).
        ids, titles = self._raw_movie_ids[named].tolist(), self._title_of[named].tolist()
        counts = (named >= 0).sum(axis=1).tolist()
        return [
            [{"movie_id": movie_id, "title": title} for movie_id, title in zip(row_ids[:count], row_titles[:count])]
            for row_ids, row_titles, count in zip(ids, titles, counts)
        ]

    # --- Top-N -----------------------------------------------------------------------------------------

    def _candidate_lists(self, scorer, ratings: pd.DataFrame, shared: dict | None = None) -> candidates.CandidateLists:
        """The lists of every user with rows in `ratings`; with `shared` (by list shape, one per chunk of
        every_users_top), rankers of one shape share them."""
        if shared is None:
            return candidates.user_lists(scorer.retrieval, ratings, self.users, scorer.cfg)
        shape = (scorer.cfg.candidates, scorer.cfg.history, scorer.cfg.recent_liked)
        if shape not in shared:
            shared[shape] = candidates.user_lists(scorer.retrieval, ratings, self.users, scorer.cfg)
        return shared[shape]

    def _ranked(
        self, name: str, ratings: pd.DataFrame, when: dict | None, n: int, shared: dict | None = None
    ) -> pd.DataFrame:
        """user_id, rank, movie_id, score (codes): the Top-n of each user with rows in `ratings`, their rated
        movies excluded, in context `when` (codes) or, None, in that of their latest rating."""
        scorer = self.scorer(name)
        if config.MODELS[name].candidates:
            lists = self._candidate_lists(scorer, ratings, shared)
            if when is not None:
                lists = candidates.with_context(lists, [when[field] for field in config.CONTEXT_FIELDS])
            return ranked_frame(lists.owner, *scorer.top_n(lists, n))
        users = self.users.join(latest_context(ratings), on="user_id", how="inner").assign(**(when or {}))
        return top_n(scorer, users, self.movies, exclude=ratings[["user_id", "movie_id"]], n=n)

    def top_for_user(self, name: str, user_id: int, year=None, month=None, n: int = config.TOP_N) -> pd.DataFrame:
        """`recommend` with model file `name`. A two-stage model's answer in the user's default context comes
        from its precomputed table when there is a fresh one (the same lists, made by recommend_all)."""
        check_n(n)
        code = self.user_code(user_id)
        when = self.context_codes(*self.context(user_id, year, month))
        table = self.precomputed(name) if year is None and month is None else None
        # Named at answer time from the liked movies, so that a precomputed answer carries them too.
        liked = self.liked_codes(code) if config.MODELS[name].candidates else None
        if table is not None and n <= table.n and table.movies[code, n - 1] >= 0:
            return self.top_frame(table.movies[code, :n], table.scores[code, :n], liked)
        if config.MODELS[name].candidates:
            scorer = self.scorer(name)
            movies, scores = scorer.top_n(self.user_list(scorer, code, when), n)
            return self.top_frame(movies[0], scores[0], liked)
        top = self._ranked(name, self.user_ratings(code), when, n)
        return self.top_frame(top["movie_id"].to_numpy(), top["score"].to_numpy(), liked)

    def user_list(self, scorer, code: int, when: dict) -> candidates.CandidateLists:
        """The candidate list of the user with code `code` in context `when` (codes) from their slice of the
        ratings: the same list as user_lists makes from their rows, in a few array operations."""
        mine = slice(self._bounds[code], self._bounds[code + 1])
        movies, liked = self._rated_movies[mine], self._rated_labels[mine] == 1
        context = np.asarray([[when[field] + 1 for field in config.CONTEXT_FIELDS]])
        return candidates.person_lists(
            scorer.retrieval, [movies[liked]], self._profiles[[code]], context, scorer.cfg, [movies[~liked]], [code]
        )

    def recommend(
        self,
        user_id: int,
        architecture: str = config.DEFAULT_ARCHITECTURE,
        year: int | None = None,
        month: int | None = None,
        n: int = config.TOP_N,
        mode: str = config.DEFAULT_MODE,
    ) -> pd.DataFrame:
        """The n best movies the user has not rated: rank, movie_id, title, genres, score, because (top_frame;
        MovieLens IDs)."""
        return self.top_for_user(model_name(architecture, mode), user_id, year, month, n)

    def top_for_liked(
        self, name: str, liked_ids, gender=None, age=None, occupation=None, year=None, month=None, n=config.TOP_N
    ):
        """`recommend_for_liked` with the two-stage model file `name`."""
        check_n(n)
        if not liked_ids:
            raise RecommendError("the liked list is empty; name at least one movie")
        if len(liked_ids) > config.MAX_LIKED:
            raise RecommendError(f"the liked list holds {len(liked_ids)} movies; at most {config.MAX_LIKED}")
        codes = self.movie_codes(liked_ids)
        who = self.new_person_profile(gender, age, occupation)
        when = self.context_codes(*self.context(None, year, month))
        scorer = self.scorer(name)
        shifted = np.asarray([[when[field] + 1 for field in config.CONTEXT_FIELDS]])
        movies, scores = newcomer_lists.top_n(scorer, self.popularity, [codes], who[None, :], shifted, n)
        return self.top_frame(movies[0], scores[0], codes)

    def recommend_for_liked(
        self,
        liked_ids: list[int],
        architecture: str = config.DEFAULT_ARCHITECTURE,
        gender: str | None = None,
        age: int | None = None,
        occupation: int | None = None,
        year: int | None = None,
        month: int | None = None,
        n: int = config.TOP_N,
    ) -> pd.DataFrame:
        """Top-n for a new person from the movies they like (MovieLens IDs, oldest first; duplicates ignored),
        with the two-stage model: no retraining, the person's user_id and zip are the ranker's unknown code."""
        name = model_name(architecture, "two_stage")
        return self.top_for_liked(name, liked_ids, gender, age, occupation, year, month, n)

    def every_users_top(
        self, names, n: int = config.TOP_N, progress: bool = False, chunk_users: int | None = None
    ) -> Iterator[dict[str, pd.DataFrame]]:
        """Every user's n best unrated movies by each model file of `names`, each in the context of that
        user's latest rating, `chunk_users` (default config.SCORING_CHUNK_USERS) users at a time: only one
        chunk's lists and Top-n are held, and a user's do not depend on the others. Per chunk {name: user_id,
        rank, movie_id, title, genres, score (MovieLens IDs)}; rankers of one list shape share each chunk's lists."""
        check_n(n)
        check_trained(self.models_dir, names)  # all of them before the first long run
        chunk_users = chunk_users or config.SCORING_CHUNK_USERS
        bar = tqdm(total=len(self.users), unit="user", desc="recommending", disable=not progress)
        for start in range(0, len(self.users), chunk_users):
            stop = min(start + chunk_users, len(self.users))
            # self.ratings is sorted by user: a chunk of users is one slice of it.
            ratings = self.ratings.iloc[self._bounds[start] : self._bounds[stop]]
            shared = {}
            yield {name: self._with_ids(self._ranked(name, ratings, None, n, shared)) for name in names}
            bar.update(stop - start)
        bar.close()

    def _with_ids(self, top: pd.DataFrame) -> pd.DataFrame:
        """user_id, rank, movie_id, title, genres, score (MovieLens IDs) of a Top-n frame of codes."""
        top["user_id"] = self.encoders.decode("user_id", top["user_id"]).astype("int64")
        return self.with_titles(top)[["user_id", "rank", "movie_id", "title", "genres", "score"]]

    def recommend_all(
        self,
        architecture: str = config.DEFAULT_ARCHITECTURE,
        n: int = config.TOP_N,
        progress: bool = True,
        mode: str = config.DEFAULT_MODE,
    ) -> pd.DataFrame:
        """Every user's n best unrated movies, each in the context of that user's latest rating:
        user_id, rank, movie_id, title, genres, score (MovieLens IDs)."""
        name = model_name(architecture, mode)
        return pd.concat([chunk[name] for chunk in self.every_users_top([name], n, progress)], ignore_index=True)
