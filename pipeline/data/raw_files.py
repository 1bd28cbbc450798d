"""Reading MovieLens' raw `::`-separated files (ratings.dat, movies.dat, users.dat) into frames of raw values.

ratings.dat can be read in chunks (what `make preprocess` does, to stay bounded in memory) or whole (small
data: the tests and small runs).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from pipeline import config
from pipeline.data import movielens

RATING_COLUMNS = ["user_id", "movie_id", "rating", "timestamp"]


def read_ratings_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """ratings.dat in file order, `chunk_rows` ratings at a time."""
    # Splitting on ':' with the C parser is ~10x faster than the python parser on '::';
    # the empty columns between the doubled separators are dropped.
    with pd.read_csv(
        path,
        sep=":",
        header=None,
        usecols=[0, 2, 4, 6],
        dtype="int64",
        encoding=movielens.RAW_ENCODING,
        chunksize=chunk_rows,
    ) as chunks:
        for chunk in chunks:
            chunk.columns = RATING_COLUMNS
            yield chunk


def read_ratings(path: Path) -> pd.DataFrame:
    """All of ratings.dat as one frame (small data; the stage itself reads it in chunks)."""
    return pd.concat(read_ratings_chunks(path, config.PREPROCESS["chunk_rows"]), ignore_index=True)


def read_movies(path: Path) -> pd.DataFrame:
    return pd.read_csv(
        path,
        sep="::",
        header=None,
        engine="python",
        encoding=movielens.RAW_ENCODING,
        names=["movie_id", "title", "genres"],
        dtype={"title": str, "genres": str},
    )


def read_users(path: Path) -> pd.DataFrame:
    return pd.read_csv(
        path,
        sep="::",
        header=None,
        engine="python",
        encoding=movielens.RAW_ENCODING,
        names=["user_id", "gender", "age", "occupation", "zip"],
        dtype={"gender": str, "zip": str},
    )


def check_raw(raw_dir: Path) -> None:
    missing = [name for name in movielens.RAW_FILES if not (raw_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} not found in {raw_dir}; run `make download` first")


def read_raw(raw_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    check_raw(raw_dir)
    return (
        read_ratings(raw_dir / "ratings.dat"),
        read_movies(raw_dir / "movies.dat"),
        read_users(raw_dir / "users.dat"),
    )
