"""Small generated data in MovieLens 1M's own file format, so tests never need the real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data.movielens import ML1M_GENRES

AGES = (1, 18, 25, 35, 45, 50, 56)


def write_fake_movielens(
    folder: Path, n_users: int = 300, n_movies: int = 200, ratings_per_user: int = 30, seed: int = 0
) -> Path:
    """Write ratings.dat, movies.dat and users.dat (`::`-separated, latin-1) into `folder`.

    Popular movies get more ratings and some movies get better ratings than others, so models
    and baselines have something to learn. Every user rates at least `ratings_per_user` // 2 movies.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)

    movie_ids = np.sort(rng.choice(np.arange(1, n_movies * 2), size=n_movies, replace=False))
    movie_lines = []
    for i, movie_id in enumerate(movie_ids):
        year = int(rng.integers(1930, 2001))
        genres = rng.choice(ML1M_GENRES, size=int(rng.integers(1, 5)), replace=False)
        title = f"Movie {movie_id}{' é' if i % 7 == 0 else ''} ({year})"
        movie_lines.append(f"{movie_id}::{title}::{'|'.join(genres)}")
    (folder / "movies.dat").write_bytes(("\n".join(movie_lines) + "\n").encode("latin-1"))

    user_lines = []
    for user_id in range(1, n_users + 1):
        gender = "M" if rng.random() < 0.7 else "F"
        user_lines.append(
            f"{user_id}::{gender}::{rng.choice(AGES)}::{rng.integers(0, 21)}::{rng.integers(10000, 99999)}"
        )
    (folder / "users.dat").write_bytes(("\n".join(user_lines) + "\n").encode("latin-1"))

    popularity = rng.zipf(1.6, size=n_movies).astype(float)
    popularity /= popularity.sum()
    quality = rng.normal(0.0, 1.0, size=n_movies)
    start, end = 956_703_932, 1_046_454_590  # the span of ML-1M's timestamps (2000-04 .. 2003-02)
    rating_lines = []
    for user_id in range(1, n_users + 1):
        count = int(rng.integers(ratings_per_user // 2, ratings_per_user * 2))
        chosen = rng.choice(n_movies, size=min(count, n_movies), replace=False, p=popularity)
        taste = rng.normal(0.0, 0.5)
        for movie_index in chosen:
            score = 3.2 + quality[movie_index] + taste + rng.normal(0.0, 0.8)
            rating = int(np.clip(np.rint(score), 1, 5))
            timestamp = int(rng.integers(start, end))
            rating_lines.append(f"{user_id}::{movie_ids[movie_index]}::{rating}::{timestamp}")
    (folder / "ratings.dat").write_bytes(("\n".join(rating_lines) + "\n").encode("latin-1"))
    return folder
