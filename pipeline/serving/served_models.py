"""The files a Recommender scores with: the retrieval stage, each model's scorer (its LiteRT file, or its .keras
with runtime "keras") and each two-stage model's precomputed Top-N table, every one loaded on first use (under
a lock) once it is checked against its manifest.

A missing, damaged or unreadable file is Unusable: its one line names the file, what is wrong and the command
that rebuilds it. A damaged one is remembered and not read again until the process restarts (make rebuilds it);
a missing one is looked for again.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow

from pipeline import config, config_serving, manifests
from pipeline.ranking import export, model_files
from pipeline.ranking.scorers import load_scorer
from pipeline.retrieval import retriever
from pipeline.serving.errors import RecommendError, Unusable
from pipeline.serving.served_data import ServedData, read_checked, read_served_data

# The commands that rebuild the files read here (the models': model_files.rebuild_command).
RETRIEVAL, PRECOMPUTE = "make retrieval", "make precompute"


@dataclass(frozen=True)
class Precomputed:
    """Every user's default Top-n of one model (each in the context of the user's latest rating), as
    `recommend_all` made it: movies and scores (n_users × n, by user code; -1 where a user has none)."""

    movies: np.ndarray
    scores: np.ndarray

    @property
    def n(self) -> int:
        return self.movies.shape[1]


def precomputed_path(name: str, models_dir: Path) -> Path:
    return Path(models_dir).parent / "precomputed" / f"{name}.parquet"


def check_trained(models_dir: Path, names) -> None:
    for name in names:
        if not config.model_path(name, "random", models_dir).is_file():
            raise RecommendError(f"model {name} is not trained yet; run `make train MODEL={name}` (or `make all`)")


@dataclass
class ServedModels(ServedData):
    """The served data and the files scored with it: the retrieval model and the models trained on the random
    split, loaded on first use."""

    models_dir: Path
    # "litert": the models' LiteRT files (no TensorFlow in the process); "keras": their .keras files.
    runtime: str = "litert"
    scorers: dict = field(default_factory=dict)

    def __post_init__(self):
        super().__post_init__()
        self._lock = threading.Lock()
        self._retrieval = None
        self._unusable = {}  # what could not be loaded: {model name, "retrieval" or a table's path: ArtifactError}
        self._precomputed = {}

    @classmethod
    def load(
        cls,
        processed_dir: Path = config.PROCESSED_DIR,
        models_dir: Path = config.MODELS_DIR,
        models=(),
        runtime: str = "litert",
    ):
        """The processed data, and the model files `models` loaded right away (others load on first use), to be
        scored through `runtime` (runtimes.RUNTIMES)."""
        processed_dir, models_dir = Path(processed_dir), Path(models_dir)
        rec = cls(*read_served_data(processed_dir), models_dir, runtime)
        # pyarrow's allocator keeps what the parquet reads freed (~120 MB on ML-1M) for later reads; a service
        # worker makes none, so it is handed back.
        pyarrow.default_memory_pool().release_unused()
        check_trained(models_dir, models)
        for name in models:
            rec.scorer(name)
        return rec

    def _remembered(self, key: str, load):
        """load(), which may raise manifests.ArtifactError, as Unusable; a damaged or unreadable file is not
        read again (it stays unusable until the process restarts and is rebuilt), a missing one is looked for."""
        if key not in self._unusable:
            try:
                return load()
            except manifests.ArtifactError as error:
                if error.missing:
                    raise Unusable(error) from None
                self._unusable[key] = error
        raise Unusable(self._unusable[key])

    def retrieval(self) -> retriever.Retriever:
        if self._retrieval is not None:  # no lock once loaded: every answer reads it (its "because" column)
            return self._retrieval
        with self._lock:
            if self._retrieval is None:
                source = retriever.path("random", self.models_dir)
                if not source.is_file():
                    raise RecommendError("the retrieval stage is not fitted yet; run `make all`")
                self._retrieval = self._remembered(
                    "retrieval", partial(read_checked, source, retriever.load, RETRIEVAL)
                )
        return self._retrieval

    def served_file(self, name: str) -> Path:
        """The file model `name` is scored from: its LiteRT file, or its .keras with runtime "keras"."""
        if self.runtime == "keras":
            return config.model_path(name, "random", self.models_dir)
        return config.litert_path(name, "random", self.models_dir, config_serving.LITERT["served_variant"])

    def check_model(self, name: str) -> None:
        """Unusable if what model `name` is scored from (its training log and the file served_file names, against
        their manifests) or, for a two-stage model, the retrieval stage cannot be used; nothing is loaded. With the
        LiteRT runtime its .keras is not read, so a damaged one does not stop serving (make retrains it)."""
        log = model_files.training_log_path(name, "random", self.models_dir)
        self._remembered(name, partial(manifests.check, log, model_files.rebuild_command(name)))
        if self.runtime == "keras":
            rebuild = model_files.rebuild_command(name)
        else:
            rebuild = export.rebuild_command(config_serving.LITERT["served_variant"])
        self._remembered(name, partial(manifests.check, self.served_file(name), rebuild))
        if config.MODELS[name].candidates:
            self._remembered(
                "retrieval", partial(manifests.check, retriever.path("random", self.models_dir), RETRIEVAL)
            )

    def problems(self, name: str) -> tuple[str | None, str | None]:
        """Why model file `name` cannot score (check_model), and why its precomputed table cannot be used (a
        damaged one; a missing or stale table is simply not used): each None when it can."""
        model = table = None
        try:
            self.check_model(name)
        except Unusable as error:
            model = str(error)
        try:
            self.precomputed(name)
        except Unusable as error:
            table = str(error)
        return model, table

    def scorer(self, name: str):
        """The scorer of model file `name` (a ModelScorer or a scorers.TwoStage), loaded on first use."""
        if name in self.scorers:
            return self.scorers[name]
        check_trained(self.models_dir, [name])
        fitted = self.retrieval() if config.MODELS[name].candidates else None
        with self._lock:
            if name not in self.scorers:
                variant = config_serving.LITERT["served_variant"]
                load = partial(load_scorer, name, "random", self.models_dir, fitted, self.movies, self.runtime, variant)
                self.scorers[name] = self._remembered(name, load)
            return self.scorers[name]

    def precomputed(self, name: str) -> Precomputed | None:
        """A two-stage model's precomputed Top-N table (`python -m pipeline precompute`), if one exists and is
        newer than the model, the retrieval stage and the processed data it was made from; else None."""
        if name in self._precomputed:  # no lock once read: a model loading under the lock must not hold it up
            return self._precomputed[name]
        with self._lock:
            if name not in self._precomputed:
                self._precomputed[name] = self._load_precomputed(name) if config.MODELS[name].candidates else None
            return self._precomputed[name]

    def _load_precomputed(self, name: str) -> Precomputed | None:
        path = precomputed_path(name, self.models_dir)
        # The table is stale once the model is retrained, whether or not its LiteRT file was exported since.
        model = config.model_path(name, "random", self.models_dir)
        made_from = [model, self.served_file(name), retriever.path("random", self.models_dir)]
        if not path.is_file() or any(
            not source.is_file() or source.stat().st_mtime > path.stat().st_mtime for source in made_from
        ):
            return None
        return self._remembered(str(path), partial(read_checked, path, self._table, PRECOMPUTE))

    def _table(self, path: Path) -> Precomputed:
        table = pd.read_parquet(path, columns=["user_id", "rank", "movie_id", "score"])
        n = int(table["rank"].max())
        movies = np.full((len(self.users), n), -1, dtype=np.int64)
        scores = np.zeros((len(self.users), n), dtype=np.float64)
        users, ranks = self._user_ids.get_indexer(table["user_id"]), table["rank"].to_numpy() - 1
        movies[users, ranks] = self._movie_ids.get_indexer(table["movie_id"])
        scores[users, ranks] = table["score"].to_numpy()
        return Precomputed(movies, scores)

    def trained_at(self, name: str) -> str | None:
        path = config.model_path(name, "random", self.models_dir)
        return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(path.stat().st_mtime)) if path.is_file() else None
