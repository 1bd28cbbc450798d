"""ALS (Hu, Koren & Volinsky 2008, via the `implicit` library): a liked list in → every movie's score out,
from movie factors, for catalogues too large for EASE's movie × movie matrices.

ALS factorises the users × movies matrix X (1 where liked) into user factors U and movie factors V,
weighting each liked cell by `alpha` and every other cell by 1: min Σ c_um (x_um - u·v)² + λ(|U|² + |V|²).
Only V is kept. A person's factors are always folded in from the row they are given: the exact
least-squares solve u = (VᵀV + λI + Σ_liked (c-1) v vᵀ)⁻¹ Σ_liked c v, which is implicit's own
`recalculate_user` (one call for a whole chunk of people, solved in C++ on config.RETRIEVAL["threads"]
threads). So a known user and a new person who name the same movies get the same scores, and a model
scores people only from the rows it is given, never from factors it learnt while fitting. A movie's score
is u·v.

"Because you liked": with A = VᵀV + λI + Σ_liked (c-1) v vᵀ fixed for a person, movie i's score is linear in
their liked row, Σ_liked c v_jᵀ A⁻¹ v_i, and liked movie j's term is t_ji = c v_jᵀ A⁻¹ v_i (implicit's
`explain`). Taking j out of the row also takes (c-1) v_j v_jᵀ out of A; by Sherman-Morrison the score then falls
by t_ji (c - (c-1) s_j) / (c (1 - (c-1) v_jᵀ A⁻¹ v_j)), where s_j = u·v_j is j's own score and the denominator
is positive. So a positive term lowers the score on removal only while s_j < c / (c-1) (1.11 at alpha 10);
a liked movie scored above that (1 % of the liked cells on ML-1M) is not named.

As with EASE, two models are fitted with the same settings: on liked ratings (`item_factors`, which
proposes the candidates) and on every rating (`rated_item_factors`: which movies get watched together).
Memory grows with the ratings and catalogue × factors, not with the catalogue squared: at 25 M ratings
(18,530 movies) see docs/scale.md.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import sparse
from threadpoolctl import ThreadpoolController, threadpool_limits

from pipeline import config
from pipeline.retrieval.base import Retriever, interaction_matrix, liked_matrix, row_chunks

# implicit's OpenMP threads sleep as soon as a loop ends instead of spinning for the next one (libgomp reads this
# when implicit first loads it, below): a spinning thread takes a core from every other process and thread, and a
# person's fold-in is one short loop per request. With every test's retrieval on ALS, `make test` took 188 s with
# spinning threads and 125 s without (119 s on EASE); a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@functools.cache
def blas_controller() -> ThreadpoolController:
    """threadpoolctl's handle on the loaded BLAS, found once: threadpool_limits looks for it on every call
    (1.6 ms here, more than the solve it would wrap)."""
    return ThreadpoolController()


def single_blas_thread():
    """BLAS on one thread: a person's 128 × 128 solve took 1.8 ms on two busy threads, 0.3 ms on one."""
    return blas_controller().limit(limits=1, user_api="blas")


def implicit_model(factors: int, regularization: float, alpha: float, iterations: int = 1, seed: int = 0):
    """implicit's CPU AlternatingLeastSquares with these settings, on config.RETRIEVAL["threads"] threads."""
    # Imported on first use: 70 ms that an EASE retrieval stage (and serving's start-up) need not pay.
    from implicit.cpu.als import AlternatingLeastSquares

    # Its own threads do the work; implicit warns (and slows down ~10x) when BLAS starts threads under them.
    with threadpool_limits(1, "blas"):
        return AlternatingLeastSquares(
            factors=factors,
            regularization=regularization,
            alpha=alpha,
            iterations=iterations,
            random_state=seed,
            num_threads=config.RETRIEVAL["threads"],
        )


@dataclass(frozen=True)
class Retrieval(Retriever):
    """ALS's movie factors (n_movies × factors, float32) fitted on liked ratings, those fitted on every rating
    (`rated_item_factors`), and the regularisation and alpha that the fold-in of a person's factors needs."""

    item_factors: np.ndarray
    rated_item_factors: np.ndarray
    regularization: float
    alpha: float
    _models: tuple = field(init=False, repr=False, compare=False)
    kind = "als"

    def __post_init__(self):
        models = []
        for factors in (self.item_factors, self.rated_item_factors):
            model = implicit_model(factors.shape[1], self.regularization, self.alpha)
            model.item_factors = np.ascontiguousarray(factors, dtype=np.float32)
            models.append(model)
        object.__setattr__(self, "_models", tuple(models))

    @property
    def n_movies(self) -> int:
        return self.item_factors.shape[0]

    @property
    def als(self) -> Retrieval:
        """The ALS model whose scores the ranker also reads: this one."""
        return self

    def user_factors(self, rows: sparse.csr_matrix, rated: bool = False) -> np.ndarray:
        """Each row's factors in the liked model (or the every-rating one), folded in from that row alone."""
        model = self._models[rated]
        rows = sparse.csr_matrix(rows, dtype=np.float32)
        with single_blas_thread():
            return model.recalculate_user(np.arange(rows.shape[0]), rows)

    def scores(self, liked: sparse.csr_matrix) -> np.ndarray:
        """liked (n × n_movies, 1 where liked) → ALS scores (n × n_movies, float32)."""
        return self.user_factors(liked) @ self.item_factors.T

    def rated_scores(self, rated: sparse.csr_matrix) -> np.ndarray:
        """rated (n × n_movies, 1 where rated) → the every-rating model's scores (n × n_movies, float32)."""
        return self.user_factors(rated, rated=True) @ self.rated_item_factors.T

    def contribution_terms(self, liked: np.ndarray, movies: np.ndarray) -> np.ndarray:
        """t_ji = c v_jᵀ A⁻¹ v_i for each liked movie j and each of `movies` i (codes), with c = alpha (implicit's
        confidence of a liked cell) and A this liked row's fold-in matrix; 0 in the rows of liked movies whose
        removal would not lower the scores their terms add to (own score s_j >= c / (c-1): the module docstring)."""
        mine = self.item_factors[liked].astype(np.float64)
        c = self.alpha
        with single_blas_thread():
            # The same VᵀV as implicit's own fold-in (recalculate_user) reads.
            gram = self._models[0].YtY + self.regularization * np.eye(mine.shape[1]) + (c - 1) * mine.T @ mine
            # u = A⁻¹ Σ_liked c v and each A⁻¹ v_i, in one solve.
            solved = np.linalg.solve(gram, np.column_stack([c * mine.sum(axis=0), self.item_factors[movies].T]))
            terms = c * mine @ solved[:, 1:]
            terms[c - (c - 1) * (mine @ solved[:, 0]) <= 0] = 0.0
        return terms

    def scores_at(self, liked: sparse.csr_matrix, movies: np.ndarray) -> np.ndarray:
        return self._dot_at(liked, movies, rated=False)

    def rated_scores_at(self, rated: sparse.csr_matrix, movies: np.ndarray) -> np.ndarray:
        return self._dot_at(rated, movies, rated=True)

    def _dot_at(self, matrix: sparse.csr_matrix, movies: np.ndarray, rated: bool) -> np.ndarray:
        """u·v at each row's K movies only: K dot products per row instead of the whole catalogue."""
        items = self.rated_item_factors if rated else self.item_factors
        movies = np.asarray(movies)
        out = np.empty(movies.shape, np.float32)
        for rows in row_chunks(matrix.shape[0], movies.shape[1] * items.shape[1]):
            users = self.user_factors(matrix[rows], rated)
            out[rows] = np.einsum("nf,nkf->nk", users, items[movies[rows]])
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """What retriever.save stores (and from_arrays reads back)."""
        return {
            "item_factors": self.item_factors,
            "rated_item_factors": self.rated_item_factors,
            "regularization": np.float64(self.regularization),
            "alpha": np.float64(self.alpha),
        }

    @staticmethod
    def from_arrays(stored) -> Retrieval:
        # Copies: implicit's Cython code takes writable arrays only, and the factors are small (movies × factors).
        return Retrieval(
            np.array(stored["item_factors"]),
            np.array(stored["rated_item_factors"]),
            float(stored["regularization"]),
            float(stored["alpha"]),
        )


def item_factors(matrix: sparse.csr_matrix, settings: dict) -> np.ndarray:
    """The movie factors of ALS fitted on the users × movies matrix `matrix` with `settings`
    (config.RETRIEVAL["als"]'s keys), float32."""
    model = implicit_model(**settings)
    with threadpool_limits(1, "blas"):
        model.fit(sparse.csr_matrix(matrix, dtype=np.float32), show_progress=False)
    return np.asarray(model.item_factors, dtype=np.float32)


def fit(train: pd.DataFrame, n_users: int, n_movies: int, settings: dict | None = None) -> Retrieval:
    """Both ALS models fitted on `train` (codes below n_users / n_movies): on its liked rows and on all."""
    settings = settings or config.RETRIEVAL["als"]
    return Retrieval(
        item_factors(liked_matrix(train, n_users, n_movies), settings),
        item_factors(interaction_matrix(train, n_users, n_movies), settings),
        settings["regularization"],
        settings["alpha"],
    )
