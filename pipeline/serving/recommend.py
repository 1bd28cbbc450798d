"""A user, or a new person's liked movies → profile, liked history and the Top-N movies they have not seen.

The one recommending core: the terminal commands below, the web page (app.py) and the HTTP service
(serve.py) all call `recommend`, `recommend_for_liked`, `profile`, `liked_history` and `search_movies`.
The default mode is the two-stage recommender (retrieval proposes, AutoInt ranks: pipeline.ranking.ranker);
`mode="reference"` scores the whole catalogue with the reference project's models instead.
Movies and users go in and out as MovieLens IDs; internal codes never leave this module. Encoders are
only applied here, never fitted. User mistakes raise `RecommendError`; the commands print its message as
one line on stderr and exit with code 2, and they check everything before TensorFlow is imported.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import typer

from pipeline import config
from pipeline.data.preprocess import Encoders
from pipeline.files import record_timing, write_parquet

AGE_LABELS = {1: "Under 18", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49", 50: "50-55", 56: "56+"}
OCCUPATION_LABELS = {
    0: "other or not specified",
    1: "academic/educator",
    2: "artist",
    3: "clerical/admin",
    4: "college/grad student",
    5: "customer service",
    6: "doctor/health care",
    7: "executive/managerial",
    8: "farmer",
    9: "homemaker",
    10: "K-12 student",
    11: "lawyer",
    12: "programmer",
    13: "retired",
    14: "sales/marketing",
    15: "scientist",
    16: "self-employed",
    17: "technician/engineer",
    18: "tradesman/craftsman",
    19: "unemployed",
    20: "writer",
}
GENDER_LABELS = {"M": "male", "F": "female"}
HISTORY_ROWS = 15
# The columns of train/test.parquet used here; reading all of them costs about a second at start-up.
RATING_COLUMNS = ["user_id", "movie_id", "rating", "label", "timestamp", *config.CONTEXT_FIELDS]


class RecommendError(ValueError):
    """A user mistake or a missing artifact; the message is the one line shown to the user."""


class NotFound(RecommendError):
    """A user or movie ID that the data does not have (the service answers 404)."""


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
        self._precomputed = {}
        likes = self.ratings.loc[self.ratings["label"] == 1, "movie_id"].value_counts()
        by_likes = self.movies[["movie_id", "title", "genres"]].assign(
            likes=likes.reindex(self.movies["movie_id"]).fillna(0).astype("int64").to_numpy()
        )
        by_likes = by_likes.sort_values(["likes", "movie_id"], ascending=[False, True], ignore_index=True)
        by_likes["movie_id"] = self.encoders.decode("movie_id", by_likes["movie_id"]).astype("int64")
        self._by_likes = by_likes

    def user_ratings(self, code: int) -> pd.DataFrame:
        """The ratings of the user with code `code`, oldest first."""
        return self.ratings.iloc[self._bounds[code] : self._bounds[code + 1]]

    def retrieval(self):
        from pipeline.retrieval import ease

        with self._lock:
            if self._retrieval is None:
                source = ease.path("random", self.models_dir)
                if not source.is_file():
                    raise RecommendError("the retrieval stage is not fitted yet; run `make all`")
                self._retrieval = ease.load(source)
        return self._retrieval

    def scorer(self, name: str):
        """The scorer of model file `name` (a ModelScorer or a scorers.TwoStage), loaded on first use."""
        check_trained(self.models_dir, [name])
        fitted = self.retrieval() if config.MODELS[name].candidates else None
        with self._lock:
            if name not in self.scorers:
                from pipeline.ranking.scorers import load_scorer

                self.scorers[name] = load_scorer(name, "random", self.models_dir, fitted, self.movies)
            return self.scorers[name]

    def precomputed(self, name: str) -> Precomputed | None:
        """Model `name`'s precomputed Top-N table (`python -m pipeline precompute`), if one exists and is newer
        than the model, the retrieval stage and the processed data it was made from; else None."""
        if name in self._precomputed:  # no lock once read: a model loading under the lock must not hold it up
            return self._precomputed[name]
        with self._lock:
            if name not in self._precomputed:
                self._precomputed[name] = load_precomputed(self, name)
            return self._precomputed[name]

    def trained_at(self, name: str) -> str | None:
        path = config.model_path(name, "random", self.models_dir)
        return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(path.stat().st_mtime)) if path.is_file() else None


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


def load_precomputed(rec: Recommender, name: str) -> Precomputed | None:
    from pipeline.retrieval import ease

    path = precomputed_path(name, rec.models_dir)
    made_from = [config.model_path(name, "random", rec.models_dir), ease.path("random", rec.models_dir)]
    if not path.is_file() or any(
        not source.is_file() or source.stat().st_mtime > path.stat().st_mtime for source in made_from
    ):
        return None
    table = pd.read_parquet(path)
    n = int(table["rank"].max())
    movies = np.full((len(rec.users), n), -1, dtype=np.int64)
    scores = np.zeros((len(rec.users), n), dtype=np.float64)
    users = rec._user_ids.get_indexer(table["user_id"])
    ranks = table["rank"].to_numpy() - 1
    movies[users, ranks] = rec._movie_ids.get_indexer(table["movie_id"])
    scores[users, ranks] = table["score"].to_numpy()
    return Precomputed(movies, scores)


def load_recommender(
    processed_dir: Path = config.PROCESSED_DIR, models_dir: Path = config.MODELS_DIR, models=()
) -> Recommender:
    """The processed data, and the model files `models` loaded right away (others load on first use)."""
    processed_dir, models_dir = Path(processed_dir), Path(models_dir)
    try:
        encoders = Encoders.load(processed_dir / "encoders.json")
        ratings = pd.concat(
            [
                pd.read_parquet(processed_dir / f"{split}.parquet", columns=RATING_COLUMNS)
                for split in ("train", "test")
            ],
            ignore_index=True,
        )
        movies = pd.read_parquet(processed_dir / "movies.parquet")
        users = pd.read_parquet(processed_dir / "users.parquet")
    except FileNotFoundError:
        raise RecommendError(f"no processed data in {processed_dir}; run `make preprocess` (or `make all`)") from None
    ratings = ratings.sort_values(["user_id", "timestamp"], kind="stable", ignore_index=True)
    rec = Recommender(encoders, movies, users, ratings, models_dir)
    check_trained(models_dir, models)
    for name in models:
        rec.scorer(name)
    return rec


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


def architectures(choice: str) -> list[str]:
    """The architectures a --model choice stands for ("both": all of them)."""
    return list(config.ARCHITECTURES) if choice == "both" else [choice]


def whole_number(text, what: str) -> int | None:
    if text is None:
        return None
    try:
        return int(str(text).strip())
    except ValueError:
        raise RecommendError(f"{what} must be a whole number, not {text!r}") from None


def parse_user(text: str) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise RecommendError(f"user must be a MovieLens user ID (a whole number), not {text!r}") from None


def parse_liked(text: str) -> list[int]:
    """ "2571,1196,260" → [2571, 1196, 260]; commas or spaces separate, duplicates are dropped later."""
    parts = [part for part in str(text).replace(",", " ").split() if part]
    if not parts:
        raise RecommendError('the liked list is empty; give MovieLens movie IDs, e.g. LIKED="2571,1196,260"')
    bad = [part for part in parts if not part.isdigit()]
    if bad:
        raise RecommendError(f"the liked list takes MovieLens movie IDs (whole numbers), not {', '.join(bad[:5])}")
    return [int(part) for part in parts]


def check_n(n: int) -> None:
    if n < 1:
        raise RecommendError(f"N must be at least 1, not {n}")


def user_code(rec: Recommender, user_id: int) -> int:
    code = int(rec._user_ids.get_indexer([user_id])[0])
    if code < 0:
        raise NotFound(f"unknown user {user_id}; user IDs run from {rec._user_ids.min()} to {rec._user_ids.max()}")
    return code


def movie_codes(rec: Recommender, movie_ids: list[int]) -> np.ndarray:
    """Codes of MovieLens movie IDs, duplicates dropped (first kept); unknown IDs raise NotFound."""
    unique = list(dict.fromkeys(movie_ids))
    codes = rec._movie_ids.get_indexer(unique)
    if (codes < 0).any():
        unknown = [str(movie) for movie, code in zip(unique, codes) if code < 0]
        raise NotFound(
            f"movie ID(s) not in the catalogue: {', '.join(unknown[:10])}; "
            "search titles with the web page or the service's /movies?q="
        )
    return codes.astype(np.int64)


def valid_years(rec: Recommender) -> list[int]:
    return [int(year) for year in rec.encoders.classes["rating_year"]]


def profile(rec: Recommender, user_id: int) -> dict:
    """user_id, gender, age (group), occupation and zip, as readable labels."""
    code = user_code(rec, user_id)
    row = rec.users.loc[rec.users["user_id"] == code].iloc[0]
    raw = {name: rec.encoders.decode(name, [row[name]])[0] for name in ("gender", "age", "occupation", "zip")}
    return {
        "user_id": user_id,
        "gender": GENDER_LABELS.get(raw["gender"], str(raw["gender"])),
        "age": AGE_LABELS.get(int(raw["age"]), str(raw["age"])),
        "occupation": OCCUPATION_LABELS.get(int(raw["occupation"]), str(raw["occupation"])),
        "zip": str(raw["zip"]),
    }


def with_titles(rec: Recommender, frame: pd.DataFrame) -> pd.DataFrame:
    """Add title and genres to a frame of movie codes, and turn the codes into MovieLens IDs."""
    out = frame.join(rec._titles, on="movie_id")
    out["movie_id"] = rec.encoders.decode("movie_id", out["movie_id"]).astype("int64")
    return out


def liked_history(rec: Recommender, user_id: int) -> pd.DataFrame:
    """Movies the user rated 4 or 5, newest first: movie_id, title, genres, rating, date."""
    mine = rec.user_ratings(user_code(rec, user_id))
    liked = mine[mine["rating"] >= config.LIKE_THRESHOLD].sort_values(
        ["timestamp", "movie_id"], ascending=[False, True]
    )[["movie_id", "rating", "timestamp"]]
    out = with_titles(rec, liked.reset_index(drop=True))
    out["date"] = pd.to_datetime(out["timestamp"], unit="s", utc=True).dt.strftime("%Y-%m-%d")
    return out[["movie_id", "title", "genres", "rating", "date"]]


def check_context(rec: Recommender, year: int | None, month: int | None) -> None:
    if month is not None and not 1 <= month <= 12:
        raise RecommendError(f"month must be between 1 and 12, not {month}")
    if year is not None and year not in valid_years(rec):
        raise RecommendError(
            f"year {year} is outside what the model knows; valid years: {', '.join(map(str, valid_years(rec)))}"
        )


def context(
    rec: Recommender, user_id: int | None, year: int | None = None, month: int | None = None
) -> tuple[int, int]:
    """The rating-time year and month to score in: those given, else those of the user's latest rating
    (for a new person, user_id None: the latest month in the data)."""
    check_context(rec, year, month)
    ratings = rec.ratings if user_id is None else rec.user_ratings(user_code(rec, user_id))
    latest = ratings.loc[ratings["timestamp"].idxmax()] if user_id is None else ratings.iloc[-1]
    if year is None:
        year = int(rec.encoders.decode("rating_year", [latest["rating_year"]])[0])
    if month is None:
        month = int(rec.encoders.decode("rating_month", [latest["rating_month"]])[0])
    if not rec.encoders.knows("rating_month", month):
        raise RecommendError(
            f"month {month} never occurs in the ratings; valid months: "
            f"{', '.join(map(str, rec.encoders.classes['rating_month']))}"
        )
    return year, month


def context_codes(rec: Recommender, year: int, month: int) -> dict[str, int]:
    encode = rec.encoders.encode
    return {
        "rating_year": int(encode("rating_year", [year])[0]),
        "rating_month": int(encode("rating_month", [month])[0]),
        "rating_decade": int(encode("rating_decade", [year // 10 * 10])[0]),
    }


def top_frame(rec: Recommender, movies: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    """rank, movie_id (MovieLens ID), title, genres, score of movie codes in ranked order."""
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(movies) + 1),
            "movie_id": rec._raw_movie_ids[movies],
            "title": rec._title_of[movies],
            "genres": rec._genres_of[movies],
            "score": np.asarray(scores, dtype=float),
        }
    )


def recommend(
    rec: Recommender,
    user_id: int,
    architecture: str = config.DEFAULT_ARCHITECTURE,
    year: int | None = None,
    month: int | None = None,
    n: int = config.TOP_N,
    mode: str = config.DEFAULT_MODE,
) -> pd.DataFrame:
    """The n best movies the user has not rated: rank, movie_id, title, genres, score (MovieLens IDs).

    A two-stage model's answer in the user's default context comes from its precomputed table when there is
    a fresh one (the same lists, made by recommend_all); anything else is scored now."""
    check_n(n)
    name = model_name(architecture, mode)
    code = user_code(rec, user_id)
    when = context_codes(rec, *context(rec, user_id, year, month))
    if year is None and month is None and config.MODELS[name].candidates:
        table = rec.precomputed(name)
        if table is not None and n <= table.n and table.movies[code, n - 1] >= 0:
            return top_frame(rec, table.movies[code, :n], table.scores[code, :n])
    mine = rec.user_ratings(code)
    scorer = rec.scorer(name)
    if config.MODELS[name].candidates:
        from pipeline.ranking import candidates

        lists = candidates.user_lists(scorer.retrieval, mine, rec.users, scorer.cfg)
        lists = candidates.with_context(lists, [when[field] for field in config.CONTEXT_FIELDS])
        movies, scores = scorer.top_n(lists, n)
        return top_frame(rec, movies[0], scores[0])
    from pipeline.ranking.scorers import top_n

    user = rec.users[rec.users["user_id"] == code].assign(**when)
    top = top_n(scorer, user, rec.movies, exclude=mine[["user_id", "movie_id"]], n=n)
    return top_frame(rec, top["movie_id"].to_numpy(), top["score"].to_numpy())


def new_person_profile(
    rec: Recommender, gender: str | None = None, age: int | None = None, occupation: int | None = None
) -> np.ndarray:
    """The ranker's user fields of a new person: user_id and zip unknown (0), the rest as given or unknown."""
    given = {"gender": gender, "age": age, "occupation": occupation}
    allowed = {"gender": sorted(GENDER_LABELS), "age": sorted(AGE_LABELS), "occupation": sorted(OCCUPATION_LABELS)}
    codes = []
    for name in config.USER_FIELDS:
        value = given.get(name)
        if value is None:
            codes.append(0)
            continue
        if value not in allowed[name] or not rec.encoders.knows(name, value):
            raise RecommendError(f"{name} must be one of {', '.join(map(str, allowed[name]))}, not {value!r}")
        codes.append(int(rec.encoders.encode(name, [value])[0]) + 1)
    return np.asarray(codes, dtype=np.int64)


def recommend_for_liked(
    rec: Recommender,
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
    from pipeline.ranking import candidates

    check_n(n)
    if not liked_ids:
        raise RecommendError("the liked list is empty; name at least one movie")
    if len(liked_ids) > config.MAX_LIKED:
        raise RecommendError(f"the liked list holds {len(liked_ids)} movies; at most {config.MAX_LIKED}")
    codes = movie_codes(rec, liked_ids)
    name = model_name(architecture, "two_stage")
    who = new_person_profile(rec, gender, age, occupation)
    when = context_codes(rec, *context(rec, None, year, month))
    scorer = rec.scorer(name)
    lists = candidates.person_lists(
        scorer.retrieval,
        [codes],
        who[None, :],
        np.asarray([[when[field] + 1 for field in config.CONTEXT_FIELDS]]),
        scorer.cfg,
    )
    movies, scores = scorer.top_n(lists, n)
    return top_frame(rec, movies[0], scores[0])


def movies_by_likes(rec: Recommender) -> pd.DataFrame:
    """The catalogue, most liked first: movie_id (MovieLens ID), title, genres, likes."""
    return rec._by_likes


def search_movies(rec: Recommender, text: str, limit: int = 20) -> pd.DataFrame:
    """Movies whose title contains `text` (any case), most liked first: movie_id, title, genres, likes."""
    needle = str(text).strip().lower()
    if not needle:
        raise RecommendError("the search text is empty")
    found = rec._by_likes[rec._by_likes["title"].str.lower().str.contains(needle, regex=False)]
    return found.head(limit).reset_index(drop=True)


def recommend_all(
    rec: Recommender,
    architecture: str = config.DEFAULT_ARCHITECTURE,
    n: int = config.TOP_N,
    progress: bool = True,
    mode: str = config.DEFAULT_MODE,
) -> pd.DataFrame:
    """Every user's n best unrated movies, each in the context of that user's latest rating:
    user_id, rank, movie_id, title, genres, score (MovieLens IDs)."""
    check_n(n)
    name = model_name(architecture, mode)
    scorer = rec.scorer(name)
    if config.MODELS[name].candidates:
        from pipeline.ranking import candidates
        from pipeline.ranking.scorers import ranked_frame

        lists = candidates.user_lists(scorer.retrieval, rec.ratings, rec.users, scorer.cfg)
        top = ranked_frame(lists.owner, *scorer.top_n(lists, n, progress=progress))
    else:
        from pipeline.data.history import latest_context
        from pipeline.ranking.scorers import top_n

        users = rec.users.join(latest_context(rec.ratings), on="user_id", how="inner")
        top = top_n(scorer, users, rec.movies, exclude=rec.ratings[["user_id", "movie_id"]], n=n, progress=progress)
    top["user_id"] = rec.encoders.decode("user_id", top["user_id"]).astype("int64")
    return with_titles(rec, top)[["user_id", "rank", "movie_id", "title", "genres", "score"]]


def fail(error: RecommendError):
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(2)


def clip(text: str, width: int) -> str:
    """`text` cut to `width` characters, with "…" as the last one when it was longer."""
    return text if len(text) <= width else text[: width - 1] + "…"


def format_table(frame: pd.DataFrame, columns: list[str]) -> str:
    shown = frame[columns].copy()
    if "score" in shown:
        shown["score"] = shown["score"].map(lambda s: f"{s:.4f}")
    if "title" in shown:
        shown["title"] = shown["title"].map(lambda title: clip(title, 48))
    return shown.to_string(index=False)


def side_by_side(lists: dict[str, pd.DataFrame], n: int) -> str:
    columns, headers = [np.arange(1, n + 1)], ["rank"]
    for name, top in lists.items():
        pad = [""] * (n - len(top))
        columns += [[clip(title, 40) for title in top["title"]] + pad, [f"{s:.4f}" for s in top["score"]] + pad]
        headers += [name, "score"]
    table = pd.DataFrame(dict(enumerate(columns)))
    table.columns = headers
    return table.to_string(index=False)


def print_lists(lists: dict[str, pd.DataFrame], n: int) -> None:
    if len(lists) == 1:
        typer.echo(f"model {next(iter(lists))}")
        typer.echo(format_table(next(iter(lists.values())), ["rank", "movie_id", "title", "genres", "score"]))
    else:
        typer.echo(side_by_side(lists, n))


def recommend_command(
    user: str = typer.Option(None, "--user", help="MovieLens user ID (default 3 unless --liked is given)."),
    liked: str = typer.Option(
        None,
        "--liked",
        help='A new person: the MovieLens IDs of movies they like, e.g. "2571,1196,260" (instead of --user).',
    ),
    gender: str = typer.Option(None, help="A new person's gender, M or F (optional)."),
    age: int = typer.Option(None, help="A new person's age group: 1, 18, 25, 35, 45, 50 or 56 (optional)."),
    occupation: int = typer.Option(None, help="A new person's occupation code, 0-20 (optional)."),
    model: config.Architecture = typer.Option(config.DEFAULT_ARCHITECTURE, help="Architecture ('both': side by side)."),
    mode: config.ServedMode = typer.Option(
        config.DEFAULT_MODE,
        help="two_stage: retrieval + AutoInt ranking (default); reference: the original project's models.",
    ),
    year: str = typer.Option(
        None, metavar="INTEGER", help="Rating-time context year; default: that of the user's latest rating."
    ),
    month: str = typer.Option(None, metavar="INTEGER", help="Rating-time context month, 1-12; default: as year."),
    n: str = typer.Option(str(config.TOP_N), "--n", metavar="INTEGER", help="How many movies."),
    history: int = typer.Option(HISTORY_ROWS, help="Liked movies to print (0: all); --json has all."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    processed_dir: Path = typer.Option(config.PROCESSED_DIR),
    models_dir: Path = typer.Option(config.MODELS_DIR),
) -> None:
    """Print a user's (or a new person's) profile, liked history and Top-N unseen movies."""
    started = time.perf_counter()
    try:
        if user is not None and liked is not None:
            raise RecommendError("give --user or --liked, not both")
        year, month, n = whole_number(year, "year"), whole_number(month, "month"), whole_number(n, "N")
        check_n(n)
        rec = load_recommender(processed_dir, models_dir)
        check_context(rec, year, month)
        if liked is not None:
            output = new_person_output(
                rec, parse_liked(liked), model.value, mode.value, gender, age, occupation, year, month, n
            )
        else:
            output = known_user_output(rec, parse_user(user or "3"), model.value, mode.value, year, month, n)
    except RecommendError as error:
        fail(error)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    key: value.to_dict("records")
                    if isinstance(value, pd.DataFrame)
                    else {name: top.to_dict("records") for name, top in value.items()}
                    if key == "recommendations"
                    else value
                    for key, value in output.items()
                },
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    print_output(output, history, n)
    record_timing(config.ARTIFACTS_DIR, "recommend", time.perf_counter() - started)


def known_user_output(rec: Recommender, user_id: int, architecture: str, mode: str, year, month, n) -> dict:
    names = {choice: model_name(choice, mode) for choice in architectures(architecture)}
    who, liked = profile(rec, user_id), liked_history(rec, user_id)
    when = context(rec, user_id, year, month)
    check_trained(rec.models_dir, names.values())
    source = "given" if year is not None or month is not None else "the month of the user's latest rating"
    return {
        "profile": who,
        "context": {"year": when[0], "month": when[1], "source": source},
        "mode": mode,
        "liked_history": liked,
        # year/month as given (None: the user's own context), so that a default request is answered from the
        # precomputed table, as recommend() decides.
        "recommendations": {
            name: recommend(rec, user_id, choice, year, month, n, mode) for choice, name in names.items()
        },
    }


def new_person_output(
    rec: Recommender, liked_ids: list[int], architecture: str, mode: str, gender, age, occupation, year, month, n
) -> dict:
    if mode != "two_stage":
        raise RecommendError(
            "a new person is served by the two-stage models only (the reference models need a "
            "known user_id); drop --mode"
        )
    names = {choice: model_name(choice, "two_stage") for choice in architectures(architecture)}
    codes = movie_codes(rec, liked_ids)
    given = with_titles(rec, pd.DataFrame({"movie_id": codes}))[["movie_id", "title", "genres"]]
    when = context(rec, None, year, month)
    check_trained(rec.models_dir, names.values())
    who = {
        "user_id": None,
        "gender": GENDER_LABELS.get(gender, "not given") if gender else "not given",
        "age": AGE_LABELS.get(age, "not given") if age is not None else "not given",
        "occupation": OCCUPATION_LABELS.get(occupation, "not given") if occupation is not None else "not given",
    }
    source = "given" if year is not None or month is not None else "the latest month in the ratings"
    return {
        "profile": who,
        "context": {"year": when[0], "month": when[1], "source": source},
        "mode": "two_stage",
        "liked_history": given,
        "recommendations": {
            name: recommend_for_liked(rec, liked_ids, choice, gender, age, occupation, *when, n)
            for choice, name in names.items()
        },
    }


def print_output(output: dict, history: int, n: int) -> None:
    who, liked, when = output["profile"], output["liked_history"], output["context"]
    if who["user_id"] is None:
        typer.echo(f"a new person: {who['gender']}, age {who['age']}, {who['occupation']}")
        typer.echo(f"\nliked movies given: {len(liked)}")
        typer.echo(format_table(liked, ["movie_id", "title", "genres"]))
    else:
        typer.echo(f"user {who['user_id']}: {who['gender']}, age {who['age']}, {who['occupation']}, zip {who['zip']}")
        shown = liked if history <= 0 else liked.head(history)
        typer.echo(f"\nliked history: {len(liked)} movies rated 4 or 5, newest first")
        typer.echo(format_table(shown, ["date", "rating", "movie_id", "title", "genres"]) if len(liked) else "(none)")
        if len(shown) < len(liked):
            typer.echo(f"... and {len(liked) - len(shown)} more (--history 0 shows all)")
    typer.echo(
        f"\nTop {n} unseen movies in {when['year']}-{when['month']:02d} ({when['source']}), {output['mode']} mode:"
    )
    print_lists(output["recommendations"], n)


def recommend_all_command(
    model: config.Architecture = typer.Option(config.DEFAULT_ARCHITECTURE, help="Architecture ('both': a file each)."),
    mode: config.ServedMode = typer.Option(config.DEFAULT_MODE),
    n: int = typer.Option(config.TOP_N, "--n", min=1),
    processed_dir: Path = typer.Option(config.PROCESSED_DIR),
    models_dir: Path = typer.Option(config.MODELS_DIR),
    out_dir: Path = typer.Option(config.ARTIFACTS_DIR, help="Writes recommendations_<model>.parquet here."),
) -> None:
    """Write every user's Top-N unseen movies to artifacts/recommendations_<model>.parquet."""
    try:
        names = {choice: model_name(choice, mode.value) for choice in architectures(model.value)}
        rec = load_recommender(processed_dir, models_dir)
        check_trained(models_dir, names.values())
        for choice, name in names.items():
            top = recommend_all(rec, choice, n, progress=True, mode=mode.value)
            out = out_dir / f"recommendations_{name}.parquet"
            write_parquet(out, top)
            typer.echo(f"wrote {len(top):,} rows ({top['user_id'].nunique():,} users × {n}) to {out}")
    except RecommendError as error:
        fail(error)


def precompute_command(
    n: int = typer.Option(config.PRECOMPUTED_N, "--n", min=1, help="Movies kept per user."),
    processed_dir: Path = typer.Option(config.PROCESSED_DIR),
    models_dir: Path = typer.Option(config.MODELS_DIR),
) -> None:
    """Every user's default Top-N of both two-stage models → artifacts/precomputed/<model>.parquet, which
    recommend, the web page and the service answer default requests from."""
    started = time.perf_counter()
    try:
        rec = load_recommender(processed_dir, models_dir)
        check_trained(models_dir, config.TWO_STAGE_MODELS)
        for architecture in config.ARCHITECTURES:
            name = model_name(architecture, "two_stage")
            top = recommend_all(rec, architecture, n, progress=True, mode="two_stage")
            out = precomputed_path(name, models_dir)
            write_parquet(out, top[["user_id", "rank", "movie_id", "score"]])
            typer.echo(f"precomputed {name}: {top['user_id'].nunique():,} users × {n} → {out}")
    except RecommendError as error:
        fail(error)
    record_timing(models_dir.parent, "precompute", time.perf_counter() - started)
