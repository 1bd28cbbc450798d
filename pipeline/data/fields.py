"""The 14 categorical fields: those derived from raw values (a movie's year, decade and first three genres from
movies.dat; a rating's year, month and decade from its timestamp) and their codes (Encoders, saved as
encoders.json). Encoders are fitted once, by the preprocess stage; every later stage only applies them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import config, manifests
from pipeline.files import write_json

# The command that remakes every processed file (each one's manifest names it as the producer).
REBUILD = "make preprocess"


class UnknownValueError(ValueError):
    """A raw value the encoders were not fitted on."""


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
