"""The candidate stage: EASE over each user's whole liked history → the top-K unseen movies and their scores.

EASE (Steck 2019) learns movie × movie weights B that best rebuild each user's liked movies from the
user's other liked movies: min ||X - XB||² + l2·||B||² with diag(B) = 0, in closed form
P = (XᵀX + l2·I)⁻¹, B = -P / diag(P) column by column, diagonal 0. A user's (or a new person's)
score for a movie is the sum of B's rows over their liked movies, so a liked list is all it needs.

Two such models are fitted: on liked ratings (`weights`, which proposes the candidates) and on every
rating, liked or not (`rated_weights`: which movies get watched together). The ranker reads both
models' scores of each candidate; retrieval itself ranks by the liked model alone.

Each B is catalogue × catalogue: 55 MB in float32 for ML-1M's 3,706 movies, and each fit inverts a
matrix of that size (a few seconds here). For a catalogue of 50k+ movies that no longer fits; README
says what replaces it there.

Outputs: artifacts/models/[<split>/]retrieval.npz (both B as float32), read back by `load`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import typer
from scipy import sparse

from pipeline import config
from pipeline.data.preprocess import load_processed
from pipeline.files import atomic_path, record_timing


@dataclass(frozen=True)
class Retrieval:
    """EASE's weights B (n_movies × n_movies, float32) fitted on liked ratings, and those fitted on every
    rating (`rated_weights`); movies are codes 0..n_movies-1."""

    weights: np.ndarray
    rated_weights: np.ndarray

    @property
    def n_movies(self) -> int:
        return self.weights.shape[0]

    def scores(self, liked: sparse.csr_matrix) -> np.ndarray:
        """liked (n × n_movies, 1 where liked) → EASE scores (n × n_movies, float32)."""
        return np.asarray(liked @ self.weights, dtype=np.float32)

    def rated_scores(self, rated: sparse.csr_matrix) -> np.ndarray:
        """rated (n × n_movies, 1 where rated) → the every-rating model's scores (n × n_movies, float32)."""
        return np.asarray(rated @ self.rated_weights, dtype=np.float32)

    def top_k(self, liked: sparse.csr_matrix, seen: sparse.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Each row's k best movies that `seen` does not mark, best first: (movies, scores), both n × k.

        Ties go to the lower movie code. k is capped at the smallest number of unseen movies of any row.
        """
        scores = self.scores(liked)
        scores[seen.nonzero()] = -np.inf
        k = int(min(k, self.n_movies - seen.getnnz(axis=1).max(initial=0)))
        if k <= 0:
            return np.zeros((scores.shape[0], 0), np.int64), np.zeros((scores.shape[0], 0), np.float32)
        # Partition first (k of ~3.7k per row), then order those k: score descending, movie code ascending.
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        part_scores = np.take_along_axis(scores, part, axis=1)
        order = np.lexsort((part, -part_scores), axis=1)
        movies = np.take_along_axis(part, order, axis=1)
        return movies.astype(np.int64), np.take_along_axis(part_scores, order, axis=1)


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


def path(split: str = "random", models_dir: Path = config.MODELS_DIR) -> Path:
    return config.model_path("retrieval", split, models_dir).with_suffix(".npz")


def save(retrieval: Retrieval, target: Path) -> Path:
    with atomic_path(target) as tmp:
        np.savez(tmp, weights=retrieval.weights, rated_weights=retrieval.rated_weights)
    return target


def load(source: Path) -> Retrieval:
    with np.load(source) as stored:
        return Retrieval(stored["weights"], stored["rated_weights"])


def retrieval_command(
    split: config.Split = typer.Option(config.Split.random, help="The split whose training rows to fit."),
    processed_dir: Path = typer.Option(config.PROCESSED_DIR),
    models_dir: Path = typer.Option(config.MODELS_DIR),
) -> None:
    """Fit the retrieval stage (EASE on liked and on all ratings) on a split's training rows → retrieval.npz."""

    split = split.value
    started = time.perf_counter()
    try:
        data = load_processed(processed_dir).split(split)
    except FileNotFoundError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    fitted = fit(data.train, len(data.users), len(data.movies))
    target = save(fitted, path(split, models_dir))
    seconds = time.perf_counter() - started
    record_timing(models_dir.parent, f"retrieval ({split})", seconds)
    typer.echo(
        f"retrieval ({split}): EASE over {int((data.train['label'] == 1).sum()):,} liked and "
        f"{len(data.train):,} rated training ratings, {fitted.n_movies:,} movies, L2 {config.EASE_L2:g}; "
        f"fitted in {seconds:.0f} s; saved {target}"
    )
