"""The preprocess stage (`make preprocess`): raw MovieLens files → the reference's 14 categorical fields, the
encoders and both splits, written as the processed tables (processed.py says what they are).

Bounded in memory (`python -m pipeline preprocess`, preprocess_files): ratings.dat is read in chunks of
config.PREPROCESS["chunk_rows"] rows and each rating is kept as four numbers only (user code, movie code,
rating, timestamp: 17 bytes); the splits are arrays of row numbers (8 bytes a rating each). A row's 14 fields
are looked up from its user's and movie's codes and its timestamp when its row group is written, so no frame
of every rating exists, only one row group of one table at a time. `preprocess` does the same in memory
(what the tests and small runs use); tests/test_preprocess_chunked.py checks that both give the same tables.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import typer

from pipeline import config
from pipeline.data import movielens
from pipeline.data.fields import Encoders, movie_features, rating_context
from pipeline.data.processed import ENCODERS, SPLIT_TABLES, Processed, table_manifest
from pipeline.data.raw_files import check_raw, read_movies, read_ratings_chunks, read_users
from pipeline.data.splits import random_rows, temporal_rows
from pipeline.files import atomic_path, record_timing, write_parquet

MISSING_REFERENCE = "some ratings refer to a user or movie missing from users.dat/movies.dat"


@dataclass(frozen=True, eq=False)
class Prepared:
    """Everything the stage knows before it writes a row, with each rating as four numbers only.

    `user`, `movie`, `rating`, `timestamp` hold one entry per rating in ratings.dat order (user and movie as
    codes); `splits` names the row numbers of each split table; `movies` and `users` are the encoded tables,
    row i holding code i.
    """

    encoders: Encoders
    movies: pd.DataFrame
    users: pd.DataFrame
    user: np.ndarray
    movie: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    splits: dict[str, np.ndarray]

    def rows(self, numbers: np.ndarray) -> pd.DataFrame:
        """Ratings `numbers` with the 14 field codes, rating, label and timestamp: a split table's rows."""
        return pd.DataFrame(self.columns(numbers))

    def columns(self, numbers: np.ndarray) -> dict[str, np.ndarray]:
        """rows(numbers) as one array per column (what the parquet writer takes without a copy)."""
        user, movie, timestamp = self.user[numbers], self.movie[numbers], self.timestamp[numbers]
        context = self.encoders.encode_frame(rating_context(timestamp))
        columns = {}
        for field in config.FIELDS:
            if field in config.USER_FIELDS:
                columns[field] = self.users[field].to_numpy()[user]
            elif field in config.MOVIE_FIELDS:
                columns[field] = self.movies[field].to_numpy()[movie]
            else:
                columns[field] = context[field].to_numpy()
        rating = self.rating[numbers].astype(np.int64)
        label = (rating >= config.LIKE_THRESHOLD).astype(np.int8)
        return {**columns, "rating": rating, "label": label, "timestamp": timestamp}


def unique_index(ids: pd.Series, file: str) -> pd.Index:
    index = pd.Index(ids)
    if not index.is_unique:
        raise ValueError(f"{file} lists an ID twice: {index[index.duplicated()][0]}")
    return index


def positions(index: pd.Index, ids: pd.Series) -> np.ndarray:
    """Where each of `ids` is in `index` (int32), or ValueError if one is not there."""
    found = index.get_indexer(ids)
    if (found < 0).any():
        raise ValueError(MISSING_REFERENCE)
    return found.astype(np.int32)


def prepare(ratings: Iterable[pd.DataFrame], movies: pd.DataFrame, users: pd.DataFrame) -> Prepared:
    """Fit the encoders and draw both splits from ratings.dat's rows, given as chunks in file order (how
    it is cut changes nothing), keeping each rating as codes only."""
    movie_table = movie_features(movies)
    user_index = unique_index(users["user_id"], "users.dat")
    movie_index = unique_index(movies["movie_id"], "movies.dat")
    parts: dict[str, list[np.ndarray]] = {"user": [], "movie": [], "rating": [], "timestamp": []}
    contexts = []
    for chunk in ratings:
        rating = chunk["rating"].to_numpy()
        outside = (rating < 1) | (rating > config.MAX_RATING)
        if outside.any():  # also what keeps them exact as int8
            raise ValueError(f"ratings must be 1..{config.MAX_RATING}; found {rating[outside][0]}")
        parts["user"].append(positions(user_index, chunk["user_id"]))
        parts["movie"].append(positions(movie_index, chunk["movie_id"]))
        parts["rating"].append(rating.astype(np.int8))
        # A copy, not a view that would keep the whole chunk alive.
        parts["timestamp"].append(chunk["timestamp"].to_numpy(dtype=np.int64, copy=True))
        contexts.append(rating_context(parts["timestamp"][-1]).drop_duplicates())
    if not contexts:
        raise ValueError("ratings.dat has no ratings")
    # Joined one array at a time, each list dropped once joined: at most one array is held twice.
    user_at, movie_at, rating, timestamp = (np.concatenate(parts.pop(name)) for name in list(parts))

    is_rated_user = np.bincount(user_at, minlength=len(users)) > 0
    is_rated_movie = np.bincount(movie_at, minlength=len(movies)) > 0
    rated_users, rated_movies = users[is_rated_user], movie_table[is_rated_movie]
    if rated_users.isna().any().any() or rated_movies.isna().any().any():
        raise ValueError(MISSING_REFERENCE)
    # Fitted over the values every rating row has, as the reference did over its frame of rating rows, so
    # every rated movie and every user has a code: a user's fields are the same in each of their rows.
    fitted = {
        **Encoders.fit(rated_users, config.USER_FIELDS).classes,
        **Encoders.fit(rated_movies, config.MOVIE_FIELDS).classes,
        **Encoders.fit(pd.concat(contexts, ignore_index=True), config.CONTEXT_FIELDS).classes,
    }
    encoders = Encoders({field: fitted[field] for field in config.FIELDS})
    user_code = np.full(len(users), -1, dtype=np.int32)
    user_code[is_rated_user] = encoders.encode("user_id", rated_users["user_id"])
    movie_code = np.full(len(movies), -1, dtype=np.int32)
    movie_code[is_rated_movie] = encoders.encode("movie_id", rated_movies["movie_id"])
    user, movie = user_code[user_at], movie_code[movie_at]
    del user_at, movie_at

    train, test = random_rows(len(rating))
    temporal_train, temporal_test = temporal_rows(user, timestamp)
    splits = {"train": train, "test": test, "temporal_train": temporal_train, "temporal_test": temporal_test}

    catalogue = movie_table.merge(movies[["movie_id", "title", "genres"]], on="movie_id")
    catalogue = catalogue[catalogue["movie_id"].isin(encoders.classes["movie_id"])]
    catalogue = encoders.encode_frame(catalogue)[[*config.MOVIE_FIELDS, "title", "genres"]]
    catalogue = catalogue.sort_values("movie_id", ignore_index=True)
    user_table = encoders.encode_frame(rated_users)[list(config.USER_FIELDS)].sort_values("user_id", ignore_index=True)
    return Prepared(encoders, catalogue, user_table, user, movie, rating, timestamp, splits)


def preprocess(ratings: pd.DataFrame, movies: pd.DataFrame, users: pd.DataFrame) -> Processed:
    """The stage in memory: the tables that preprocess_files writes, as frames (small data)."""
    prepared = prepare([ratings], movies, users)
    tables = {name: prepared.rows(numbers) for name, numbers in prepared.splits.items()}
    return Processed(**tables, movies=prepared.movies, users=prepared.users, encoders=prepared.encoders)


def write_rows(path: Path, prepared: Prepared, numbers: np.ndarray, row_group_rows: int) -> None:
    """prepared.rows(numbers) as one parquet file, built and written one row group at a time. With pyarrow's
    default row group size it is the file pandas' to_parquet writes for the whole frame (the schema carries
    the same pandas metadata)."""
    schema = pa.Schema.from_pandas(prepared.rows(numbers[:0]), preserve_index=False)
    with atomic_path(path, **table_manifest(path)) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for start in range(0, len(numbers), row_group_rows):
            columns = prepared.columns(numbers[start : start + row_group_rows])
            writer.write_table(pa.Table.from_arrays(list(columns.values()), schema=schema))


def save_prepared(prepared: Prepared, out_dir: Path, row_group_rows: int = config.PREPROCESS["row_group_rows"]) -> None:
    for name in SPLIT_TABLES:
        write_rows(out_dir / f"{name}.parquet", prepared, prepared.splits[name], row_group_rows)
    for name in ("movies", "users"):
        path = out_dir / f"{name}.parquet"
        write_parquet(path, getattr(prepared, name), **table_manifest(path))
    # Written last: its presence means the whole stage finished (the Makefile target is this file).
    prepared.encoders.save(out_dir / ENCODERS)


def preprocess_files(
    raw_dir: Path,
    out_dir: Path,
    chunk_rows: int = config.PREPROCESS["chunk_rows"],
    row_group_rows: int = config.PREPROCESS["row_group_rows"],
) -> Prepared:
    """The stage: raw_dir's three files → out_dir's tables, reading ratings.dat `chunk_rows` rows at a time."""
    check_raw(raw_dir)
    chunks = read_ratings_chunks(raw_dir / "ratings.dat", chunk_rows)
    prepared = prepare(chunks, read_movies(raw_dir / "movies.dat"), read_users(raw_dir / "users.dat"))
    save_prepared(prepared, out_dir, row_group_rows)
    return prepared


def summary(prepared: Prepared) -> str:
    rows = len(prepared.rating)
    positives = (prepared.rating >= config.LIKE_THRESHOLD).mean()
    dims = [prepared.encoders.dims()[field] for field in config.FIELDS]
    splits = {name: len(numbers) for name, numbers in prepared.splits.items()}
    lines = [
        f"ratings: {rows:,} (train {splits['train']:,}, test {splits['test']:,})",
        f"positives (rating >= {config.LIKE_THRESHOLD}): {positives:.2%}",
        f"users: {len(prepared.users):,}, rated movies: {len(prepared.movies):,}",
        f"field dims: {dims}",
    ]
    if rows == 1_000_209:
        ok = tuple(dims) == movielens.ML1M_FIELD_DIMS
        lines.append(
            f"field dims {'match' if ok else 'DO NOT match'} the reference's {list(movielens.ML1M_FIELD_DIMS)}"
        )
    lines.append(f"temporal split: train {splits['temporal_train']:,}, test {splits['temporal_test']:,}")
    return "\n".join(lines)


def preprocess_command(
    raw_dir: Path = typer.Option(config.RAW_DIR, help="Folder with ratings.dat, movies.dat, users.dat."),
    out_dir: Path = typer.Option(config.PROCESSED_DIR, help="Where the parquet tables and encoders go."),
) -> None:
    """Build the 14 categorical features, fit the encoders, split 80/20 (seed 42)."""
    started = time.perf_counter()
    try:
        prepared = preprocess_files(raw_dir, out_dir)
    except FileNotFoundError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    except ValueError as error:  # a damaged raw file: pandas' parse errors and the checks of prepare()
        typer.echo(f"error: cannot preprocess {raw_dir}: {error}", err=True)
        raise typer.Exit(2) from None
    if out_dir == config.PROCESSED_DIR:  # the product's data (not, say, a synthetic set): into its timing table
        record_timing(config.ARTIFACTS_DIR, "preprocess", time.perf_counter() - started)
    typer.echo(summary(prepared))
    typer.echo(f"wrote {out_dir}/{{train,test,temporal_train,temporal_test,movies,users}}.parquet and encoders.json")


if __name__ == "__main__":
    typer.run(preprocess_command)
