"""EASE (Steck 2019): a liked list in → every movie's score out, from movie × movie weights.

EASE learns movie × movie weights B that best rebuild each user's liked movies from the
user's other liked movies: min ||X - XB||² + l2·||B||² with diag(B) = 0, in closed form
P = (XᵀX + l2·I)⁻¹, B = -P / diag(P) column by column, diagonal 0. A user's (or a new person's)
score for a movie is the sum of B's rows over their liked movies, so a liked list is all it needs, and
liked movie j's term of movie i's score is B[j, i]: taking j out of the list lowers the score by exactly
that ("because you liked" names the largest).

Two such models are fitted: on liked ratings (`weights`, which proposes the candidates) and on every
rating, liked or not (`rated_weights`: which movies get watched together). The ranker reads both
models' scores of each candidate; retrieval itself ranks by the liked model alone.

Each B is catalogue × catalogue: 55 MB in float32 for ML-1M's 3,706 movies, and each fit inverts a
matrix of that size (a few seconds here). At its peak a fit holds the float64 Gram matrix, np.linalg.inv's
working copies and result, and the first model's weights: ~39 bytes per catalogue² (measured), so memory
grows with the catalogue squared and time with its cube; config.RETRIEVAL["ease_max_movies"] says where
ALS (als.py) takes over, and docs/scale.md what was measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import sparse

from pipeline import config
from pipeline.retrieval.base import Retriever, interaction_matrix, liked_matrix


@dataclass(frozen=True)
class Retrieval(Retriever):
    """EASE's weights B (n_movies × n_movies, float32) fitted on liked ratings, and those fitted on every
    rating (`rated_weights`); movies are codes 0..n_movies-1."""

    weights: np.ndarray
    rated_weights: np.ndarray
    # ALS fitted on the same rows, whose scores the ranker also reads (retriever.fit attaches it), or None.
    als: Retriever | None = field(default=None, compare=False)
    kind = "ease"

    @property
    def n_movies(self) -> int:
        return self.weights.shape[0]

    def scores(self, liked: sparse.csr_matrix) -> np.ndarray:
        """liked (n × n_movies, 1 where liked) → EASE scores (n × n_movies, float32)."""
        return np.asarray(liked @ self.weights, dtype=np.float32)

    def rated_scores(self, rated: sparse.csr_matrix) -> np.ndarray:
        """rated (n × n_movies, 1 where rated) → the every-rating model's scores (n × n_movies, float32)."""
        return np.asarray(rated @ self.rated_weights, dtype=np.float32)

    def contribution_terms(self, liked: np.ndarray, movies: np.ndarray) -> np.ndarray:
        """B[j, i] for each liked movie j and each of `movies` i (codes): the score is their sum over j."""
        return self.weights[np.ix_(liked, movies)]

    def arrays(self) -> dict[str, np.ndarray]:
        """What retriever.save stores (and from_arrays reads back)."""
        return {"weights": self.weights, "rated_weights": self.rated_weights}

    @staticmethod
    def from_arrays(stored) -> Retrieval:
        return Retrieval(stored["weights"], stored["rated_weights"])


def ease_weights(liked: sparse.csr_matrix, l2: float = config.EASE_L2) -> np.ndarray:
    """EASE's B for the users × movies matrix `liked` (see the module docstring), as float32."""
    gram = (liked.T @ liked).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += l2
    precision = np.linalg.inv(gram)
    weights = -precision / np.diag(precision)
    np.fill_diagonal(weights, 0.0)
    return weights.astype(np.float32)


def fit(train: pd.DataFrame, n_users: int, n_movies: int, l2: float = config.EASE_L2) -> Retrieval:
    """Both EASE models fitted on `train` (codes below n_users / n_movies): on its liked rows and on all."""
    return Retrieval(
        ease_weights(liked_matrix(train, n_users, n_movies), l2),
        ease_weights(interaction_matrix(train, n_users, n_movies), l2),
    )
