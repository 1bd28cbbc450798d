"""What every retrieval model shares: the people × movies matrices it reads, and what it does with its scores.

A retrieval model (EASE in ease.py, ALS in als.py) scores every movie from a people × movies matrix of
liked movies (`scores`, the liked model) and from one of every rated movie (`rated_scores`, the every-rating
model). From those two, this base class gives the same scores only at chosen movies (`scores_at`,
`rated_scores_at`; ALS overrides them with K dot products) and each row's top-k unseen movies (`top_k`).
A subclass also splits one person's liked-model score of a movie into one term per liked movie
(`contribution_terms`); `contributions` names the liked movies with the largest terms ("because you liked").
Rows go in chunks of at most config.RETRIEVAL["scoring_cells"] people × movies scores, so that 150k people
× 18.5k movies never sit in memory at once; each row's scores do not depend on the chunk it is in (ALS's to
the last bits of float32: its factors × movies product takes a BLAS kernel by the chunk's size).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse

from pipeline import config


def interaction_matrix(rows: pd.DataFrame, n_users: int, n_movies: int) -> sparse.csr_matrix:
    """users × movies, 1.0 at every (user_id, movie_id) code pair of `rows` (duplicates count once)."""
    matrix = sparse.csr_matrix(
        (np.ones(len(rows), np.float32), (rows["user_id"].to_numpy(), rows["movie_id"].to_numpy())),
        shape=(n_users, n_movies),
    )
    matrix.data[:] = 1.0
    return matrix


def liked_matrix(rows: pd.DataFrame, n_users: int, n_movies: int) -> sparse.csr_matrix:
    """users × movies, 1.0 where the user has a liked (label = 1) rating of the movie in `rows`."""
    return interaction_matrix(rows[rows["label"] == 1], n_users, n_movies)


def row_chunks(n_rows: int, n_movies: int, cells: int | None = None):
    """Slices of at most `cells` // n_movies rows (at least one) that cover 0..n_rows-1."""
    per_chunk = max(1, (cells or config.RETRIEVAL["scoring_cells"]) // max(n_movies, 1))
    return [slice(start, start + per_chunk) for start in range(0, n_rows, per_chunk)]


class Retriever:
    """A retrieval model: `kind`, `n_movies`, and its two models' scores (a subclass gives `scores`
    and `rated_scores`, each people × movies csr in → people × n_movies float32 out)."""

    kind: str
    n_movies: int
    # The ALS model whose scores of the candidates the ranker also reads (TrainConfig.als_scores): an ALS retrieval
    # model is its own (als.py); an EASE one carries one when config.RETRIEVAL["als_beside_ease"] (retriever.fit).
    als: Retriever | None = None

    def scores(self, liked: sparse.csr_matrix) -> np.ndarray:
        raise NotImplementedError

    def rated_scores(self, rated: sparse.csr_matrix) -> np.ndarray:
        raise NotImplementedError

    def contribution_terms(self, liked: np.ndarray, movies: np.ndarray) -> np.ndarray:
        """For one person who liked `liked` (codes), each liked movie's term of the liked model's score of each
        of `movies` (codes): (len(liked), len(movies)) floats, row j for liked[j]. A term is positive only where
        taking liked[j] out of the row lowers that score (ALS puts 0 where its bare term is positive but would
        not)."""
        raise NotImplementedError

    def contributions(self, liked: np.ndarray, movies: np.ndarray, k: int) -> np.ndarray:
        """For one person who liked `liked` (codes), the liked movies with the k largest positive terms of each
        of `movies`' scores (contribution_terms), largest first: (len(movies), k) codes, -1 where fewer than k
        terms are positive. Equal terms go to the movie listed first in `liked`."""
        liked, movies = np.asarray(liked, np.int64), np.asarray(movies, np.int64)
        terms = np.array(self.contribution_terms(liked, movies))  # a copy: each pick is struck out below
        named = np.full((len(movies), k), -1, np.int64)
        columns = np.arange(len(movies))
        # k argmax passes rather than a sort of each column: a user may have liked a thousand movies (ML-1M's
        # most: 1,435 × 10 movies, a stable sort 0.65 ms, three passes 0.04 ms), and argmax takes the first of
        # equal terms.
        for place in range(min(k, len(liked))):
            best = terms.argmax(axis=0)
            positive = terms[best, columns] > 0
            named[positive, place] = liked[best[positive]]
            terms[best, columns] = -np.inf
        return named

    def scores_at(self, liked: sparse.csr_matrix, movies: np.ndarray) -> np.ndarray:
        """The liked model's scores only at `movies` ((n, K) codes) → (n, K) float32."""
        return self._at(self.scores, liked, movies)

    def rated_scores_at(self, rated: sparse.csr_matrix, movies: np.ndarray) -> np.ndarray:
        """The every-rating model's scores only at `movies` ((n, K) codes) → (n, K) float32."""
        return self._at(self.rated_scores, rated, movies)

    def _at(self, score, matrix: sparse.csr_matrix, movies: np.ndarray) -> np.ndarray:
        movies = np.asarray(movies)
        out = np.empty(movies.shape, np.float32)
        for rows in row_chunks(matrix.shape[0], self.n_movies):
            out[rows] = np.take_along_axis(score(matrix[rows]), movies[rows], axis=1)
        return out

    def top_k(self, liked: sparse.csr_matrix, seen: sparse.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Each row's k best movies by the liked model that `seen` does not mark, best first: (movies, scores),
        both n × k. Ties go to the lower movie code. k is capped at the smallest number of unseen movies of
        any row."""
        n = liked.shape[0]
        k = int(min(k, self.n_movies - seen.getnnz(axis=1).max(initial=0)))
        if k <= 0:
            return np.zeros((n, 0), np.int64), np.zeros((n, 0), np.float32)
        movies, best = np.empty((n, k), np.int64), np.empty((n, k), np.float32)
        for rows in row_chunks(n, self.n_movies):
            movies[rows], best[rows] = best_unseen(self.scores(liked[rows]), seen[rows], k)
        return movies, best


def best_unseen(scores: np.ndarray, seen: sparse.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k highest `scores` where `seen` is not set (k at most the fewest unseen of any row):
    (movies, scores), score descending, movie code ascending on ties."""
    scores[seen.nonzero()] = -np.inf
    # Partition first (k of thousands per row), then order those k: score descending, movie code ascending.
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    movies = np.take_along_axis(part, order, axis=1)
    return movies.astype(np.int64), np.take_along_axis(part_scores, order, axis=1)
