"""The processed data on disk: what the preprocess stage leaves in data/processed/, and its checked read.

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
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline import config, manifests
from pipeline.data.fields import REBUILD, Encoders
from pipeline.files import write_parquet

SPLIT_TABLES = ("train", "test", "temporal_train", "temporal_test")
ENCODERS = "encoders.json"


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


def table_manifest(path: Path) -> dict:
    """How a processed table is recorded (files.atomic_path's manifest arguments): made by `make preprocess`,
    through the encoders.json beside it, which is Make's target for the stage."""
    return {"producer": REBUILD, "target": Path(path).with_name(ENCODERS)}


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
