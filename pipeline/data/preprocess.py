"""Raw MovieLens files → the reference's 14 categorical features, JSON encoders and a train/test split.

Outputs (all under data/processed/):
  train.parquet, test.parquet   one row per rating: the 14 fields as integer codes, rating, label, timestamp
                                (the reference's random 80/20 split)
  temporal_train.parquet, temporal_test.parquet
                                the same rows split per user in time: each user's latest 20 % are test
  movies.parquet                the encoded catalogue: movie field codes plus raw title and genres
  users.parquet                 the encoded users: user field codes
  encoders.json                 for each field the raw values in code order (code = position)

Each is recorded in its manifest (pipeline.manifests) with `make preprocess` as its producer, the tables with
encoders.json as their Make target (written last, it is the stage's: a damaged table has make run the stage
again), and checked against it when read (Encoders.load, load_processed).

Bounded in memory (`python -m pipeline preprocess`, preprocess_files): ratings.dat is read in chunks of
config.PREPROCESS["chunk_rows"] rows and each rating is kept as four numbers only (user code, movie code,
rating, timestamp: 17 bytes); the splits are arrays of row numbers (8 bytes a rating each). A row's 14 fields
are looked up from its user's and movie's codes and its timestamp when its row group is written, so no frame
of every rating exists, only one row group of one table at a time. `preprocess` does the same in memory
(what the tests and small runs use); tests/test_preprocess_chunked.py checks that both give the same tables.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import typer

from pipeline import config, manifests
from pipeline.data import movielens
from pipeline.files import atomic_path, record_timing, write_json, write_parquet

RATING_COLUMNS = ["user_id", "movie_id", "rating", "timestamp"]
SPLIT_TABLES = ("train", "test", "temporal_train", "temporal_test")
MISSING_REFERENCE = "some ratings refer to a user or movie missing from users.dat/movies.dat"
REBUILD = "make preprocess"
ENCODERS = "encoders.json"


class UnknownValueError(ValueError):
    """A raw value the encoders were not fitted on."""


# --- Reading the raw files --------------------------------------------------------------------------


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


# --- Features ---------------------------------------------------------------------------------------


def movie_features(movies: pd.DataFrame) -> pd.DataFrame:
    """Year and decade from the title's trailing "(YYYY)"; the first three genres, padded."""
    year = movies["title"].str.extract(r"\((\d{4})\)\s*$", expand=False)
    if year.isna().any():
        bad = movies.loc[year.isna(), "title"].iloc[0]
        raise ValueError(f"movie title without a trailing (YYYY): {bad!r}")
    year = year.astype("int64")
    genres = movies["genres"].str.split("|")
    out = pd.DataFrame({"movie_id": movies["movie_id"], "movie_year": year, "movie_decade": year // 10 * 10})
    for i in range(3):
        out[f"genre{i + 1}"] = genres.map(lambda g, i=i: g[i] if i < len(g) else config.GENRE_PLACEHOLDER)
    return out


def rating_context(timestamp: np.ndarray) -> pd.DataFrame:
    """The rating-time fields of Unix timestamps (UTC): rating_year, rating_month, rating_decade."""
    when = pd.to_datetime(pd.Series(timestamp), unit="s", utc=True)
    year = when.dt.year.astype("int64")
    return pd.DataFrame(
        {"rating_year": year, "rating_month": when.dt.month.astype("int64"), "rating_decade": year // 10 * 10}
    )


# --- Encoders ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Encoders:
    """For each field, the raw values in code order: code i ↔ classes[field][i] (sorted, as LabelEncoder)."""

    classes: dict[str, list]

    @classmethod
    def fit(cls, frame: pd.DataFrame, fields=config.FIELDS) -> Encoders:
        return cls({field: np.sort(frame[field].unique()).tolist() for field in fields})

    def dims(self) -> dict[str, int]:
        return {field: len(values) for field, values in self.classes.items()}

    def index(self, field: str) -> pd.Index:
        """The field's values as a pandas Index (built once per field: a service asks for it per request)."""
        cache = self.__dict__.setdefault("_indexes", {})
        if field not in cache:
            cache[field] = pd.Index(self.classes[field])
        return cache[field]

    def encode(self, field: str, values) -> np.ndarray:
        codes = self.index(field).get_indexer(pd.Index(values))
        if (codes < 0).any():
            unknown = pd.Index(values)[codes < 0].unique()[:5].tolist()
            raise UnknownValueError(f"{field}: value(s) the encoders never saw: {unknown}")
        return codes.astype("int64")

    def knows(self, field: str, value) -> bool:
        return self.index(field).get_indexer([value])[0] >= 0

    def decode(self, field: str, codes) -> np.ndarray:
        return np.asarray(self.classes[field], dtype=object)[np.asarray(codes)]

    def encode_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Replace every field column present in `frame` by its codes; other columns stay."""
        out = frame.copy()
        for field in self.classes:
            if field in out:
                out[field] = self.encode(field, out[field])
        return out

    def to_json(self) -> dict:
        return {"fields": list(self.classes), "classes": self.classes}

    @classmethod
    def from_json(cls, data: dict) -> Encoders:
        return cls({field: data["classes"][field] for field in data["fields"]})

    def save(self, path: Path) -> None:
        write_json(path, self.to_json(), producer=REBUILD)

    @classmethod
    def load(cls, path: Path) -> Encoders:
        """The encoders saved at `path`; manifests.ArtifactError if the file is missing, damaged or unreadable."""
        with manifests.checked(path, REBUILD) as readable:
            return cls.from_json(json.loads(readable.read_text(encoding="utf-8")))


# --- The stage --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Processed:
    train: pd.DataFrame
    test: pd.DataFrame
    movies: pd.DataFrame
    users: pd.DataFrame
    encoders: Encoders
    temporal_train: pd.DataFrame | None = None
    temporal_test: pd.DataFrame | None = None

    def split(self, name: str) -> Processed:
        """The same data with train/test taken from split `name` ("random" or "temporal")."""
        if name == "random":
            return self
        if name == "temporal":
            return dataclasses.replace(self, train=self.temporal_train, test=self.temporal_test)
        raise ValueError(f"unknown split {name!r}; expected one of {', '.join(config.SPLITS)}")


def random_rows(n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference's random split as row numbers: scikit-learn's train_test_split (20 % test, seed 42) of
    the numbers 0..n_rows-1, which draws the same permutation as the split of the rows themselves."""
    # Imported here: scikit-learn takes ~0.8 s to import and only this stage needs it.
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(np.arange(n_rows), test_size=config.TEST_SIZE, random_state=config.SPLIT_SEED)
    return train, test


def temporal_rows(user: np.ndarray, timestamp: np.ndarray, test_size: float = config.TEST_SIZE):
    """Per-user temporal holdout as row numbers (train, test), each sorted by user, then time: each user's
    latest `test_size` of ratings (at least one) are test. Ratings with the same timestamp keep their order."""
    order = np.lexsort((timestamp, user))  # stable: ties keep row order
    sorted_user = user[order]
    starts = np.flatnonzero(np.r_[True, sorted_user[1:] != sorted_user[:-1]])
    del sorted_user
    counts = np.diff(np.r_[starts, len(order)])
    n_test = np.maximum(1, np.floor(counts * test_size)).astype(np.int64)
    # Sorted, each user's ratings are one run; its last n_test are test.
    is_test = np.arange(len(order)) >= np.repeat(starts + counts - n_test, counts)
    return order[~is_test], order[is_test]


def split_temporal(frame: pd.DataFrame, test_size: float = config.TEST_SIZE) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-user temporal holdout of a frame's rows: each user's latest `test_size` of ratings (at least one)
    are test.

    A random split lets a user's later ratings teach the model about earlier ones; this one does not.
    Ratings with the same timestamp keep their frame order.
    """
    train, test = temporal_rows(frame["user_id"].to_numpy(), frame["timestamp"].to_numpy(), test_size)
    return frame.iloc[train].reset_index(drop=True), frame.iloc[test].reset_index(drop=True)


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


def table_manifest(path: Path) -> dict:
    """How a processed table is recorded (files.atomic_path's manifest arguments): made by `make preprocess`,
    through the encoders.json beside it, which is Make's target for the stage."""
    return {"producer": REBUILD, "target": Path(path).with_name(ENCODERS)}


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


def save_processed(processed: Processed, out_dir: Path) -> None:
    for name in (*SPLIT_TABLES, "movies", "users"):
        path = out_dir / f"{name}.parquet"
        write_parquet(path, getattr(processed, name), **table_manifest(path))
    # Written last: its presence means the whole stage finished (the Makefile target is this file).
    processed.encoders.save(out_dir / ENCODERS)


def read_table(path: Path) -> pd.DataFrame:
    """A processed table; manifests.ArtifactError if it is missing, damaged or unreadable."""
    with manifests.checked(path, REBUILD) as readable:
        return pd.read_parquet(readable)


def load_processed(processed_dir: Path, splits=config.SPLITS) -> Processed:
    """Read what `save_processed` wrote, the tables of `splits` only (the temporal ones are None without it: at
    25 M ratings each split's tables take 3 GB). FileNotFoundError names the Make target when the stage has not
    run (no encoders.json); manifests.ArtifactError names a file that is missing, damaged or unreadable."""
    if not (processed_dir / ENCODERS).is_file():
        raise FileNotFoundError(f"{processed_dir}/{ENCODERS} not found; run `{REBUILD}` first")
    names = ("train", "test", "movies", "users", *(("temporal_train", "temporal_test") if "temporal" in splits else ()))
    tables = {name: read_table(processed_dir / f"{name}.parquet") for name in names}
    return Processed(**tables, encoders=Encoders.load(processed_dir / ENCODERS))


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
