"""A user, or a new person's liked movies → profile, liked history and the Top-N movies they have not seen.

The one recommending core: the terminal commands (terminal.py), the web page (app.py) and the HTTP service
(http_api.py) all ask a `Recommender`. The default mode is the two-stage recommender (retrieval proposes,
AutoInt ranks: pipeline.ranking.scorers.TwoStage); `mode="reference"` scores the whole catalogue with the
reference project's models instead. Movies and users go in and out as MovieLens IDs; internal codes never
leave this module. Encoders are only applied here, never fitted. User mistakes raise `RecommendError`, and
everything is checked before TensorFlow is imported (a model loads on its first use).

An architecture and mode become a model file name in `model_name` only; the methods that take `name`
(top_for_user, top_for_liked) are what a caller that resolved it already (the service) calls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow
from tqdm import tqdm

from pipeline import config, manifests
from pipeline.data.history import latest_context
from pipeline.data.movielens import AGE_LABELS, GENDER_LABELS, OCCUPATION_LABELS
from pipeline.data.preprocess import Encoders
from pipeline.ranking import candidates, export, model_files
from pipeline.ranking.scorers import load_scorer, ranked_frame, top_n
from pipeline.retrieval import retriever

# The columns of train/test.parquet used here; reading all of them costs about a second at start-up.
RATING_COLUMNS = ["user_id", "movie_id", "rating", "label", "timestamp", *config.CONTEXT_FIELDS]
# The commands that rebuild what a Recommender reads (the models': model_files.rebuild_command).
PREPROCESS, RETRIEVAL, PRECOMPUTE = "make preprocess", "make retrieval", "make precompute"


class RecommendError(ValueError):
    """A user mistake or a missing artifact; the message is the one line shown to the user."""


class NotFound(RecommendError):
    """A user or movie ID that the data does not have (the service answers 404)."""


class Unusable(RecommendError):
    """A missing, damaged or unreadable artifact (manifests.ArtifactError): the one line names the file, what is
    wrong and the command that rebuilds it (the service answers 503)."""

    def __init__(self, error: manifests.ArtifactError):
        super().__init__(str(error))
        self.artifact = error


def read_checked(path: Path, read, rebuild: str):
    """read(path) once path is checked against its manifest; manifests.ArtifactError if it is missing, damaged
    or cannot be read."""
    with manifests.checked(path, rebuild):
        return read(path)


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


def model_name(architecture: str, mode: str = config.DEFAULT_MODE) -> str:
    """The model file of `architecture` trained in `mode`, e.g. autoint_mlp → autoint_mlp_two_stage."""
    if architecture not in config.ARCHITECTURES:
        raise RecommendError(f"unknown model {architecture!r}; choose one of {', '.join(config.ARCHITECTURES)}")
    if mode not in config.SERVED_MODES:
        raise RecommendError(f"unknown mode {mode!r}; choose one of {', '.join(config.SERVED_MODES)}")
    return config.model_name(architecture, mode)


def parse_user(text: str) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise RecommendError(f"user must be a MovieLens user ID (a whole number), not {text!r}") from None


def check_n(n: int) -> None:
    if n < 1:
        raise RecommendError(f"N must be at least 1, not {n}")


def context_source(year, month, new_person: bool = False) -> str:
    if year is not None or month is not None:
        return "given"
    return "the latest month in the ratings" if new_person else "the month of the user's latest rating"


@dataclass
class Recommender:
    """Everything recommending needs, loaded once; models are loaded on first use, under a lock.

    ratings holds every rating of both random-split halves (codes), sorted by user and time; the
    retrieval model and the models trained on the random split are the ones served.
    """

    encoders: Encoders
    movies: pd.DataFrame
    users: pd.DataFrame
    ratings: pd.DataFrame
    models_dir: Path
    # "litert": the models' LiteRT files (no TensorFlow in the process); "keras": their .keras files.
    runtime: str = "litert"
    scorers: dict = field(default_factory=dict)

    def __post_init__(self):
        # Built once: an interactive page or a service asks for one user after another.
        self._bounds = np.searchsorted(self.ratings["user_id"].to_numpy(), np.arange(len(self.users) + 1))
        self._user_ids = self.encoders.index("user_id")
        self._movie_ids = self.encoders.index("movie_id")
        self._titles = self.movies.set_index("movie_id")[["title", "genres"]]
        # By movie code, for building answers without a join.
        ordered = self.movies.sort_values("movie_id")
        self._raw_movie_ids = self.encoders.decode("movie_id", ordered["movie_id"]).astype("int64")
        self._title_of, self._genres_of = ordered["title"].to_numpy(), ordered["genres"].to_numpy()
        self._lock = threading.Lock()
        self._retrieval = None
        self._unusable = {}  # what could not be loaded: {model name, "retrieval" or a table's path: ArtifactError}
        self._precomputed = {}
        likes = self.ratings.loc[self.ratings["label"] == 1, "movie_id"].value_counts()
        by_likes = self.movies[["movie_id", "title", "genres"]].assign(
            likes=likes.reindex(self.movies["movie_id"]).fillna(0).astype("int64").to_numpy()
        )
        by_likes = by_likes.sort_values(["likes", "movie_id"], ascending=[False, True], ignore_index=True)
        by_likes["movie_id"] = self.encoders.decode("movie_id", by_likes["movie_id"]).astype("int64")
        self._by_likes = by_likes
        # By user code, for a scored request's candidate list (user_list) without a pandas lookup.
        self._rated_movies = self.ratings["movie_id"].to_numpy(np.int64)
        self._rated_labels = self.ratings["label"].to_numpy()
        known = self.users.sort_values("user_id")
        self._rating_years = self.ratings["rating_year"].to_numpy()
        self._rating_months = self.ratings["rating_month"].to_numpy()
        self._latest_rating = int(np.argmax(self.ratings["timestamp"].to_numpy()))  # the first of the latest
        self._profiles = np.column_stack([known["user_id"], known[list(config.USER_FIELDS[1:])]]).astype(np.int64) + 1

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
        if not (processed_dir / "encoders.json").is_file():
            raise RecommendError(f"no processed data in {processed_dir}; run `make preprocess` (or `make all`)")
        try:
            encoders = read_checked(processed_dir / "encoders.json", Encoders.load, PREPROCESS)
            splits = [
                read_checked(
                    processed_dir / f"{s}.parquet", partial(pd.read_parquet, columns=RATING_COLUMNS), PREPROCESS
                )
                for s in ("train", "test")
            ]
            movies = read_checked(processed_dir / "movies.parquet", pd.read_parquet, PREPROCESS)
            users = read_checked(processed_dir / "users.parquet", pd.read_parquet, PREPROCESS)
        except manifests.ArtifactError as error:
            raise Unusable(error) from None
        # 32-bit codes and one copy at a time: at 25 M ratings these columns are 1 GB, not three copies of 1.6 GB.
        ratings = pd.concat(
            [
                split.astype({column: np.int32 for column in RATING_COLUMNS if column != "timestamp"})
                for split in splits
            ],
            ignore_index=True,
        )
        del splits
        order = np.lexsort((ratings["timestamp"].to_numpy(), ratings["user_id"].to_numpy()))  # stable, as sort_values
        rec = cls(encoders, movies, users, ratings.take(order).reset_index(drop=True), models_dir, runtime)
        del ratings
        # pyarrow's allocator keeps what the parquet reads freed (~120 MB on ML-1M) for later reads; a service
        # worker makes none, so it is handed back.
        pyarrow.default_memory_pool().release_unused()
        check_trained(models_dir, models)
        for name in models:
            rec.scorer(name)
        return rec

    # --- Models, loaded on first use --------------------------------------------------------------------

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
        return config.litert_path(name, "random", self.models_dir, config.LITERT["served_variant"])

    def check_model(self, name: str) -> None:
        """Unusable if what model `name` is scored from (its training log and the file served_file names, against
        their manifests) or, for a two-stage model, the retrieval stage cannot be used; nothing is loaded. With the
        LiteRT runtime its .keras is not read, so a damaged one does not stop serving (make retrains it)."""
        log = model_files.training_log_path(name, "random", self.models_dir)
        self._remembered(name, partial(manifests.check, log, model_files.rebuild_command(name)))
        if self.runtime == "keras":
            rebuild = model_files.rebuild_command(name)
        else:
            rebuild = export.rebuild_command(config.LITERT["served_variant"])
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
                variant = config.LITERT["served_variant"]
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

    # --- IDs, codes and context -------------------------------------------------------------------------

    def user_ratings(self, code: int) -> pd.DataFrame:
        """The ratings of the user with code `code`, oldest first."""
        return self.ratings.iloc[self._bounds[code] : self._bounds[code + 1]]

    def user_code(self, user_id: int) -> int:
        code = int(self._user_ids.get_indexer([user_id])[0])
        if code < 0:
            ids = self._user_ids
            raise NotFound(f"unknown user {user_id}; user IDs run from {ids.min()} to {ids.max()}")
        return code

    def movie_codes(self, movie_ids: list[int]) -> np.ndarray:
        """Codes of MovieLens movie IDs, duplicates dropped (first kept); unknown IDs raise NotFound."""
        unique = list(dict.fromkeys(movie_ids))
        codes = self._movie_ids.get_indexer(unique)
        if (codes < 0).any():
            unknown = [str(movie) for movie, code in zip(unique, codes) if code < 0]
            raise NotFound(
                f"movie ID(s) not in the catalogue: {', '.join(unknown[:10])}; "
                "search titles with the web page or the service's /movies?q="
            )
        return codes.astype(np.int64)

    def valid_years(self) -> list[int]:
        return [int(year) for year in self.encoders.classes["rating_year"]]

    def check_context(self, year: int | None, month: int | None) -> None:
        if month is not None and not 1 <= month <= 12:
            raise RecommendError(f"month must be between 1 and 12, not {month}")
        if year is not None and year not in self.valid_years():
            years = ", ".join(map(str, self.valid_years()))
            raise RecommendError(f"year {year} is outside what the model knows; valid years: {years}")

    def context(self, user_id: int | None, year: int | None = None, month: int | None = None) -> tuple[int, int]:
        """The rating-time year and month to score in: those given, else those of the user's latest rating
        (for a new person, user_id None: the latest month in the data)."""
        self.check_context(year, month)
        # The ratings are sorted by user and time: a user's latest is the last of their slice.
        latest = self._latest_rating if user_id is None else self._bounds[self.user_code(user_id) + 1] - 1
        if year is None:
            year = int(self.encoders.classes["rating_year"][self._rating_years[latest]])
        if month is None:
            month = int(self.encoders.classes["rating_month"][self._rating_months[latest]])
        if not self.encoders.knows("rating_month", month):
            raise RecommendError(
                f"month {month} never occurs in the ratings; valid months: "
                f"{', '.join(map(str, self.encoders.classes['rating_month']))}"
            )
        return year, month

    def context_codes(self, year: int, month: int) -> dict[str, int]:
        encode = self.encoders.encode
        return {
            "rating_year": int(encode("rating_year", [year])[0]),
            "rating_month": int(encode("rating_month", [month])[0]),
            "rating_decade": int(encode("rating_decade", [year // 10 * 10])[0]),
        }

    def new_person_profile(self, gender: str | None = None, age: int | None = None, occupation: int | None = None):
        """The ranker's user fields of a new person: user_id and zip unknown (0), the rest as given or unknown."""
        given = {"gender": gender, "age": age, "occupation": occupation}
        allowed = {"gender": sorted(GENDER_LABELS), "age": sorted(AGE_LABELS), "occupation": sorted(OCCUPATION_LABELS)}
        codes = []
        for name in config.USER_FIELDS:
            value = given.get(name)
            if value is None:
                codes.append(0)
                continue
            if value not in allowed[name] or not self.encoders.knows(name, value):
                raise RecommendError(f"{name} must be one of {', '.join(map(str, allowed[name]))}, not {value!r}")
            codes.append(int(self.encoders.encode(name, [value])[0]) + 1)
        return np.asarray(codes, dtype=np.int64)

    # --- Tables of movies ---------------------------------------------------------------------------

    def with_titles(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Add title and genres to a frame of movie codes, and turn the codes into MovieLens IDs."""
        out = frame.join(self._titles, on="movie_id")
        out["movie_id"] = self.encoders.decode("movie_id", out["movie_id"]).astype("int64")
        return out

    def top_frame(self, movies: np.ndarray, scores: np.ndarray, liked: np.ndarray | None = None) -> pd.DataFrame:
        """rank, movie_id (MovieLens ID), title, genres, score of movie codes in ranked order, and because: the
        liked movies (codes `liked`) that add most to each one's retrieval score (`because`); empty lists when
        liked is None (the reference models: retrieval did not propose their movies)."""
        return pd.DataFrame(
            {
                "rank": np.arange(1, len(movies) + 1),
                "movie_id": self._raw_movie_ids[movies],
                "title": self._title_of[movies],
                "genres": self._genres_of[movies],
                "score": np.asarray(scores, dtype=float),
                "because": [[] for _ in movies] if liked is None else self.because(liked, movies),
            }
        )

    def liked_codes(self, code: int) -> np.ndarray:
        """The movies (codes) the user with code `code` liked, oldest first: what retrieval reads of them."""
        mine = slice(self._bounds[code], self._bounds[code + 1])
        return self._rated_movies[mine][self._rated_labels[mine] == 1]

    def because(self, liked: np.ndarray, movies: np.ndarray) -> list[list[dict]]:
        """For each of `movies` (codes), the up to config.BECAUSE_N movies of `liked` (codes) that add most to
        its retrieval score, most first, as [{movie_id (MovieLens ID), title}]; fewer when fewer add to it."""
        named = self.retrieval().contributions(liked, movies, config.BECAUSE_N)
        # Python lists, sliced to each row's count: the -1 padding comes last (its lookups are cut off).
        ids, titles = self._raw_movie_ids[named].tolist(), self._title_of[named].tolist()
        counts = (named >= 0).sum(axis=1).tolist()
        return [
            [{"movie_id": movie_id, "title": title} for movie_id, title in zip(row_ids[:count], row_titles[:count])]
            for row_ids, row_titles, count in zip(ids, titles, counts)
        ]

    def profile(self, user_id: int) -> dict:
        """user_id, gender, age (group), occupation and zip, as readable labels."""
        code = self.user_code(user_id)
        row = self.users.loc[self.users["user_id"] == code].iloc[0]
        raw = {name: self.encoders.decode(name, [row[name]])[0] for name in ("gender", "age", "occupation", "zip")}
        return {
            "user_id": user_id,
            "gender": GENDER_LABELS.get(raw["gender"], str(raw["gender"])),
            "age": AGE_LABELS.get(int(raw["age"]), str(raw["age"])),
            "occupation": OCCUPATION_LABELS.get(int(raw["occupation"]), str(raw["occupation"])),
            "zip": str(raw["zip"]),
        }

    def liked_history(self, user_id: int) -> pd.DataFrame:
        """Movies the user rated 4 or 5, newest first: movie_id, title, genres, rating, date."""
        mine = self.user_ratings(self.user_code(user_id))
        liked = mine[mine["rating"] >= config.LIKE_THRESHOLD].sort_values(
            ["timestamp", "movie_id"], ascending=[False, True]
        )[["movie_id", "rating", "timestamp"]]
        out = self.with_titles(liked.reset_index(drop=True))
        out["date"] = pd.to_datetime(out["timestamp"], unit="s", utc=True).dt.strftime("%Y-%m-%d")
        return out[["movie_id", "title", "genres", "rating", "date"]]

    def liked_movies(self, liked_ids: list[int]) -> pd.DataFrame:
        """A new person's liked movies as given (duplicates dropped): movie_id, title, genres."""
        codes = self.movie_codes(liked_ids)
        return pd.DataFrame(
            {"movie_id": self._raw_movie_ids[codes], "title": self._title_of[codes], "genres": self._genres_of[codes]}
        )

    def movies_by_likes(self) -> pd.DataFrame:
        """The catalogue, most liked first: movie_id (MovieLens ID), title, genres, likes."""
        return self._by_likes

    def search_movies(self, text: str, limit: int = 20) -> pd.DataFrame:
        """Movies whose title contains `text` (any case), most liked first: movie_id, title, genres, likes."""
        needle = str(text).strip().lower()
        if not needle:
            raise RecommendError("the search text is empty")
        found = self._by_likes[self._by_likes["title"].str.lower().str.contains(needle, regex=False)]
        return found.head(limit).reset_index(drop=True)

    # --- Top-N -----------------------------------------------------------------------------------------

    def _candidate_lists(self, scorer, ratings: pd.DataFrame, shared: dict | None = None) -> candidates.CandidateLists:
        """The lists of every user with rows in `ratings`; with `shared` (by list shape, one per chunk of
        every_users_top), rankers of one shape share them."""
        if shared is None:
            return candidates.user_lists(scorer.retrieval, ratings, self.users, scorer.cfg)
        shape = (scorer.cfg.candidates, scorer.cfg.history, scorer.cfg.recent_liked)
        if shape not in shared:
            shared[shape] = candidates.user_lists(scorer.retrieval, ratings, self.users, scorer.cfg)
        return shared[shape]

    def _ranked(
        self, name: str, ratings: pd.DataFrame, when: dict | None, n: int, shared: dict | None = None
    ) -> pd.DataFrame:
        """user_id, rank, movie_id, score (codes): the Top-n of each user with rows in `ratings`, their rated
        movies excluded, in context `when` (codes) or, None, in that of their latest rating."""
        scorer = self.scorer(name)
        if config.MODELS[name].candidates:
            lists = self._candidate_lists(scorer, ratings, shared)
            if when is not None:
                lists = candidates.with_context(lists, [when[field] for field in config.CONTEXT_FIELDS])
            return ranked_frame(lists.owner, *scorer.top_n(lists, n))
        users = self.users.join(latest_context(ratings), on="user_id", how="inner").assign(**(when or {}))
        return top_n(scorer, users, self.movies, exclude=ratings[["user_id", "movie_id"]], n=n)

    def top_for_user(self, name: str, user_id: int, year=None, month=None, n: int = config.TOP_N) -> pd.DataFrame:
        """`recommend` with model file `name`. A two-stage model's answer in the user's default context comes
        from its precomputed table when there is a fresh one (the same lists, made by recommend_all)."""
        check_n(n)
        code = self.user_code(user_id)
        when = self.context_codes(*self.context(user_id, year, month))
        table = self.precomputed(name) if year is None and month is None else None
        # Named at answer time from the liked movies, so that a precomputed answer carries them too.
        liked = self.liked_codes(code) if config.MODELS[name].candidates else None
        if table is not None and n <= table.n and table.movies[code, n - 1] >= 0:
            return self.top_frame(table.movies[code, :n], table.scores[code, :n], liked)
        if config.MODELS[name].candidates:
            scorer = self.scorer(name)
            movies, scores = scorer.top_n(self.user_list(scorer, code, when), n)
            return self.top_frame(movies[0], scores[0], liked)
        top = self._ranked(name, self.user_ratings(code), when, n)
        return self.top_frame(top["movie_id"].to_numpy(), top["score"].to_numpy(), liked)

    def user_list(self, scorer, code: int, when: dict) -> candidates.CandidateLists:
        """The candidate list of the user with code `code` in context `when` (codes) from their slice of the
        ratings: the same list as user_lists makes from their rows, in a few array operations."""
        mine = slice(self._bounds[code], self._bounds[code + 1])
        movies, liked = self._rated_movies[mine], self._rated_labels[mine] == 1
        context = np.asarray([[when[field] + 1 for field in config.CONTEXT_FIELDS]])
        return candidates.person_lists(
            scorer.retrieval, [movies[liked]], self._profiles[[code]], context, scorer.cfg, [movies[~liked]], [code]
        )

    def recommend(
        self,
        user_id: int,
        architecture: str = config.DEFAULT_ARCHITECTURE,
        year: int | None = None,
        month: int | None = None,
        n: int = config.TOP_N,
        mode: str = config.DEFAULT_MODE,
    ) -> pd.DataFrame:
        """The n best movies the user has not rated: rank, movie_id, title, genres, score, because (top_frame;
        MovieLens IDs)."""
        return self.top_for_user(model_name(architecture, mode), user_id, year, month, n)

    def top_for_liked(
        self, name: str, liked_ids, gender=None, age=None, occupation=None, year=None, month=None, n=config.TOP_N
    ):
        """`recommend_for_liked` with the two-stage model file `name`."""
        check_n(n)
        if not liked_ids:
            raise RecommendError("the liked list is empty; name at least one movie")
        if len(liked_ids) > config.MAX_LIKED:
            raise RecommendError(f"the liked list holds {len(liked_ids)} movies; at most {config.MAX_LIKED}")
        codes = self.movie_codes(liked_ids)
        who = self.new_person_profile(gender, age, occupation)
        when = self.context_codes(*self.context(None, year, month))
        scorer = self.scorer(name)
        shifted = np.asarray([[when[field] + 1 for field in config.CONTEXT_FIELDS]])
        lists = candidates.person_lists(scorer.retrieval, [codes], who[None, :], shifted, scorer.cfg)
        movies, scores = scorer.top_n(lists, n)
        return self.top_frame(movies[0], scores[0], codes)

    def recommend_for_liked(
        self,
        liked_ids: list[int],
        architecture: str = config.DEFAULT_ARCHITECTURE,
        gender: str | None = None,
        age: int | None = None,
        occupation: int | None = None,
        year: int | None = None,
        month: int | None = None,
        n: int = config.TOP_N,
    ) -> pd.DataFrame:
        """Top-n for a new person from the movies they like (MovieLens IDs, oldest first; duplicates ignored),
        with the two-stage model: no retraining, the person's user_id and zip are the ranker's unknown code."""
        name = model_name(architecture, "two_stage")
        return self.top_for_liked(name, liked_ids, gender, age, occupation, year, month, n)

    def every_users_top(
        self, names, n: int = config.TOP_N, progress: bool = False, chunk_users: int | None = None
    ) -> Iterator[dict[str, pd.DataFrame]]:
        """Every user's n best unrated movies by each model file of `names`, each in the context of that
        user's latest rating, `chunk_users` (default config.SCORING_CHUNK_USERS) users at a time: only one
        chunk's lists and Top-n are held, and a user's do not depend on the others. Per chunk {name: user_id,
        rank, movie_id, title, genres, score (MovieLens IDs)}; rankers of one list shape share each chunk's lists."""
        check_n(n)
        check_trained(self.models_dir, names)  # all of them before the first long run
        chunk_users = chunk_users or config.SCORING_CHUNK_USERS
        bar = tqdm(total=len(self.users), unit="user", desc="recommending", disable=not progress)
        for start in range(0, len(self.users), chunk_users):
            stop = min(start + chunk_users, len(self.users))
            # self.ratings is sorted by user: a chunk of users is one slice of it.
            ratings = self.ratings.iloc[self._bounds[start] : self._bounds[stop]]
            shared = {}
            yield {name: self._with_ids(self._ranked(name, ratings, None, n, shared)) for name in names}
            bar.update(stop - start)
        bar.close()

    def _with_ids(self, top: pd.DataFrame) -> pd.DataFrame:
        """user_id, rank, movie_id, title, genres, score (MovieLens IDs) of a Top-n frame of codes."""
        top["user_id"] = self.encoders.decode("user_id", top["user_id"]).astype("int64")
        return self.with_titles(top)[["user_id", "rank", "movie_id", "title", "genres", "score"]]

    def recommend_all(
        self,
        architecture: str = config.DEFAULT_ARCHITECTURE,
        n: int = config.TOP_N,
        progress: bool = True,
        mode: str = config.DEFAULT_MODE,
    ) -> pd.DataFrame:
        """Every user's n best unrated movies, each in the context of that user's latest rating:
        user_id, rank, movie_id, title, genres, score (MovieLens IDs)."""
        name = model_name(architecture, mode)
        return pd.concat([chunk[name] for chunk in self.every_users_top([name], n, progress)], ignore_index=True)
