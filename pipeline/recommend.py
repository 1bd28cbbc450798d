"""A user → profile, liked history and the Top-N movies they have not rated; and Top-N for every user.

Scoring goes through `scoring.top_n`, the same code as the full-catalog evaluation. Encoders are only
applied here, never fitted. User mistakes raise `RecommendError`; the commands print its message as
one line on stderr and exit with code 2, and they check everything before TensorFlow is imported.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import typer

from pipeline import config
from pipeline.files import write_parquet
from pipeline.preprocess import Encoders

AGE_LABELS = {1: "Under 18", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49", 50: "50-55", 56: "56+"}
OCCUPATION_LABELS = {
    0: "other or not specified", 1: "academic/educator", 2: "artist", 3: "clerical/admin",
    4: "college/grad student", 5: "customer service", 6: "doctor/health care", 7: "executive/managerial",
    8: "farmer", 9: "homemaker", 10: "K-12 student", 11: "lawyer", 12: "programmer", 13: "retired",
    14: "sales/marketing", 15: "scientist", 16: "self-employed", 17: "technician/engineer",
    18: "tradesman/craftsman", 19: "unemployed", 20: "writer",
}
GENDER_LABELS = {"M": "male", "F": "female"}

MODEL_CHOICES = (*config.MODEL_NAMES, "both")
DEFAULT_MODEL = "autoint_mlp"
# A model is an architecture (config.MODEL_NAMES) trained in one mode; the file name adds the suffix.
# "ranking" learns which unrated movies a user will like, the question asked here (config.py);
# "seed" is the seed's model of liked-given-rated, kept for comparison.
MODES = {"ranking": "_ranking", "seed": ""}
DEFAULT_MODE = "ranking"
HISTORY_ROWS = 15
# The columns of train/test.parquet used here; reading all of them costs about a second at start-up.
RATING_COLUMNS = ["user_id", "movie_id", "rating", "timestamp", *config.CONTEXT_FIELDS]


class RecommendError(ValueError):
    """A user mistake or a missing artifact; the message is the one line shown to the user."""


@dataclass
class Recommender:
    """Everything recommending needs, loaded once.

    ratings holds every rating of both splits (codes), sorted by user and time; `scorers` the score
    functions of the models loaded so far, by file name (e.g. "autoint_mlp_ranking").
    """

    encoders: Encoders
    movies: pd.DataFrame
    users: pd.DataFrame
    ratings: pd.DataFrame
    models_dir: Path
    scorers: dict = field(default_factory=dict)

    def __post_init__(self):
        # Built once: an interactive page asks for one user after another.
        self._bounds = np.searchsorted(self.ratings["user_id"].to_numpy(), np.arange(len(self.users) + 1))
        self._user_ids = self.encoders.index("user_id")
        self._titles = self.movies.set_index("movie_id")[["title", "genres"]]

    def user_ratings(self, code: int) -> pd.DataFrame:
        """The ratings of the user with code `code`, oldest first."""
        return self.ratings.iloc[self._bounds[code]:self._bounds[code + 1]]

    def scorer(self, name: str):
        """The score function of model file `name`, loaded on first use."""
        if name not in self.scorers:
            from pipeline.scoring import ModelScorer
            from pipeline.train import load_model

            check_trained(self.models_dir, [name])
            self.scorers[name] = ModelScorer(load_model(config.model_path(name, "random", self.models_dir)))
        return self.scorers[name]


def load_recommender(processed_dir: Path = config.PROCESSED_DIR, models_dir: Path = config.MODELS_DIR,
                     models=config.MODEL_NAMES, mode: str = DEFAULT_MODE) -> Recommender:
    """The processed data and the given models (architectures, trained in `mode`); `models=()`: data only."""
    names = [model_name(model, mode) for model in models]
    processed_dir, models_dir = Path(processed_dir), Path(models_dir)
    try:
        encoders = Encoders.load(processed_dir / "encoders.json")
        ratings = pd.concat([pd.read_parquet(processed_dir / f"{split}.parquet", columns=RATING_COLUMNS)
                             for split in ("train", "test")], ignore_index=True)
        movies = pd.read_parquet(processed_dir / "movies.parquet")
        users = pd.read_parquet(processed_dir / "users.parquet")
    except FileNotFoundError:
        raise RecommendError(f"no processed data in {processed_dir}; run `make preprocess` (or `make all`)") from None
    ratings = ratings.sort_values(["user_id", "timestamp"], kind="stable", ignore_index=True)
    rec = Recommender(encoders, movies, users, ratings, models_dir)
    check_trained(models_dir, names)
    for name in names:
        rec.scorer(name)
    return rec


def check_trained(models_dir: Path, names) -> None:
    for name in names:
        if not config.model_path(name, "random", models_dir).is_file():
            raise RecommendError(f"model {name} is not trained yet; run `make train MODEL={name}` (or `make all`)")


def model_name(model: str, mode: str = DEFAULT_MODE) -> str:
    """The file name of architecture `model` trained in `mode`, e.g. autoint_mlp → autoint_mlp_ranking."""
    if model not in config.MODEL_NAMES:
        raise RecommendError(f"unknown model {model!r}; choose one of {', '.join(MODEL_CHOICES)}")
    if mode not in MODES:
        raise RecommendError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    return model + MODES[mode]


def chosen_models(model: str) -> list[str]:
    """The architectures a --model choice stands for ("both": all of them)."""
    if model not in MODEL_CHOICES:
        raise RecommendError(f"unknown model {model!r}; choose one of {', '.join(MODEL_CHOICES)}")
    return list(config.MODEL_NAMES) if model == "both" else [model]


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


def check_n(n: int) -> None:
    if n < 1:
        raise RecommendError(f"N must be at least 1, not {n}")


def user_code(rec: Recommender, user_id: int) -> int:
    code = int(rec._user_ids.get_indexer([user_id])[0])
    if code < 0:
        raise RecommendError(f"unknown user {user_id}; user IDs run from {rec._user_ids.min()} to {rec._user_ids.max()}")
    return code


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
    """Movies the user rated 4 or 5 (train and test), newest first: movie_id, title, genres, rating, date."""
    mine = rec.user_ratings(user_code(rec, user_id))
    liked = mine[mine["rating"] >= config.LIKE_THRESHOLD].sort_values(
        ["timestamp", "movie_id"], ascending=[False, True])[["movie_id", "rating", "timestamp"]]
    out = with_titles(rec, liked.reset_index(drop=True))
    out["date"] = pd.to_datetime(out["timestamp"], unit="s", utc=True).dt.strftime("%Y-%m-%d")
    return out[["movie_id", "title", "genres", "rating", "date"]]


def context(rec: Recommender, user_id: int, year: int | None = None, month: int | None = None) -> tuple[int, int]:
    """The rating-time year and month to score in: those given, else those of the user's latest rating."""
    if month is not None and not 1 <= month <= 12:
        raise RecommendError(f"month must be between 1 and 12, not {month}")
    if year is not None and year not in valid_years(rec):
        raise RecommendError(f"year {year} is outside what the model knows; valid years: "
                             f"{', '.join(map(str, valid_years(rec)))}")
    # The user's ratings are sorted by time as latest_context sorts them, so the last is the latest.
    latest = rec.user_ratings(user_code(rec, user_id)).iloc[-1]
    if year is None:
        year = int(rec.encoders.decode("rating_year", [latest["rating_year"]])[0])
    if month is None:
        month = int(rec.encoders.decode("rating_month", [latest["rating_month"]])[0])
    if not rec.encoders.knows("rating_month", month):
        raise RecommendError(f"month {month} never occurs in the ratings; valid months: "
                             f"{', '.join(map(str, rec.encoders.classes['rating_month']))}")
    return year, month


def context_codes(rec: Recommender, year: int, month: int) -> dict[str, int]:
    encode = rec.encoders.encode
    return {"rating_year": int(encode("rating_year", [year])[0]), "rating_month": int(encode("rating_month", [month])[0]),
            "rating_decade": int(encode("rating_decade", [year // 10 * 10])[0])}


def recommend(rec: Recommender, user_id: int, model: str = DEFAULT_MODEL, year: int | None = None,
              month: int | None = None, n: int = config.TOP_N, mode: str = DEFAULT_MODE) -> pd.DataFrame:
    """The n best movies the user has not rated: rank, movie_id, title, genres, score (MovieLens IDs)."""
    from pipeline.scoring import top_n

    check_n(n)
    name = model_name(model, mode)
    code = user_code(rec, user_id)
    user = rec.users[rec.users["user_id"] == code].assign(**context_codes(rec, *context(rec, user_id, year, month)))
    rated = rec.user_ratings(code)[["user_id", "movie_id"]]
    top = top_n(rec.scorer(name), user, rec.movies, exclude=rated, n=n)
    return with_titles(rec, top)[["rank", "movie_id", "title", "genres", "score"]]


def recommend_all(rec: Recommender, model: str = DEFAULT_MODEL, n: int = config.TOP_N, progress: bool = True,
                  mode: str = DEFAULT_MODE) -> pd.DataFrame:
    """Every user's n best unrated movies, each in the context of that user's latest rating:
    user_id, rank, movie_id, title, score (MovieLens IDs)."""
    from pipeline.scoring import latest_context, top_n

    check_n(n)
    name = model_name(model, mode)
    users = rec.users.join(latest_context(rec.ratings), on="user_id", how="inner")
    top = top_n(rec.scorer(name), users, rec.movies, exclude=rec.ratings[["user_id", "movie_id"]], n=n,
                progress=progress)
    top["user_id"] = rec.encoders.decode("user_id", top["user_id"]).astype("int64")
    return with_titles(rec, top)[["user_id", "rank", "movie_id", "title", "score"]]


def fail(error: RecommendError):
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(2)


def format_table(frame: pd.DataFrame, columns: list[str]) -> str:
    shown = frame[columns].copy()
    if "score" in shown:
        shown["score"] = shown["score"].map(lambda s: f"{s:.4f}")
    if "title" in shown:
        shown["title"] = shown["title"].str.slice(0, 48)
    return shown.to_string(index=False)


def side_by_side(lists: dict[str, pd.DataFrame], n: int) -> str:
    columns, headers = [np.arange(1, n + 1)], ["rank"]
    for name, top in lists.items():
        pad = [""] * (n - len(top))
        columns += [top["title"].str.slice(0, 40).tolist() + pad, [f"{s:.4f}" for s in top["score"]] + pad]
        headers += [name, "score"]
    table = pd.DataFrame(dict(enumerate(columns)))
    table.columns = headers
    return table.to_string(index=False)


def recommend_command(
    user: str = typer.Option("3", "--user", help="MovieLens user ID."),
    model: str = typer.Option(DEFAULT_MODEL, help=f"One of {', '.join(MODEL_CHOICES)} (side by side)."),
    mode: str = typer.Option(DEFAULT_MODE, help="Training mode: ranking (trained on unrated movies) or seed."),
    year: str = typer.Option(None, metavar="INTEGER",
                             help="Rating-time context year; default: that of the user's latest rating."),
    month: str = typer.Option(None, metavar="INTEGER", help="Rating-time context month, 1-12; default: as year."),
    n: str = typer.Option(str(config.TOP_N), "--n", metavar="INTEGER", help="How many movies."),
    history: int = typer.Option(HISTORY_ROWS, help="Liked movies to print (0: all); --json has all."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    processed_dir: Path = typer.Option(config.PROCESSED_DIR),
    models_dir: Path = typer.Option(config.MODELS_DIR),
) -> None:
    """Print a user's profile, liked history and Top-N unrated movies."""
    try:
        names = {architecture: model_name(architecture, mode) for architecture in chosen_models(model)}
        user_id = parse_user(user)
        year, month, n = whole_number(year, "year"), whole_number(month, "month"), whole_number(n, "N")
        check_n(n)
        rec = load_recommender(processed_dir, models_dir, models=())
        who, liked = profile(rec, user_id), liked_history(rec, user_id)
        when = context(rec, user_id, year, month)
        check_trained(models_dir, names.values())
        lists = {name: recommend(rec, user_id, architecture, *when, n, mode) for architecture, name in names.items()}
    except RecommendError as error:
        fail(error)
    source = "given" if year is not None or month is not None else "the month of the user's latest rating"
    if as_json:
        typer.echo(json.dumps({
            "profile": who, "context": {"year": when[0], "month": when[1]}, "mode": mode,
            "liked_history": liked.to_dict("records"),
            "recommendations": {name: top.to_dict("records") for name, top in lists.items()},
        }, indent=2, ensure_ascii=False))
        return
    typer.echo(f"user {who['user_id']}: {who['gender']}, age {who['age']}, {who['occupation']}, zip {who['zip']}")
    shown = liked if history <= 0 else liked.head(history)
    typer.echo(f"\nliked history: {len(liked)} movies rated 4 or 5, newest first")
    typer.echo(format_table(shown, ["date", "rating", "movie_id", "title", "genres"]) if len(liked) else "(none)")
    if len(shown) < len(liked):
        typer.echo(f"... and {len(liked) - len(shown)} more (--history 0 shows all)")
    typer.echo(f"\nTop {n} unrated movies in {when[0]}-{when[1]:02d} ({source}), {mode} mode:")
    if len(lists) == 1:
        typer.echo(f"model {next(iter(lists))}")
        typer.echo(format_table(next(iter(lists.values())), ["rank", "movie_id", "title", "genres", "score"]))
    else:
        typer.echo(side_by_side(lists, n))


def recommend_all_command(
    model: str = typer.Option(DEFAULT_MODEL, help=f"One of {', '.join(MODEL_CHOICES)} (a file each)."),
    mode: str = typer.Option(DEFAULT_MODE, help="Training mode: ranking or seed."),
    n: int = typer.Option(config.TOP_N, "--n"),
    processed_dir: Path = typer.Option(config.PROCESSED_DIR),
    models_dir: Path = typer.Option(config.MODELS_DIR),
    out_dir: Path = typer.Option(config.ARTIFACTS_DIR, help="Writes recommendations_<model>.parquet here."),
) -> None:
    """Write every user's Top-N unrated movies to artifacts/recommendations_<model>.parquet."""
    try:
        names = {architecture: model_name(architecture, mode) for architecture in chosen_models(model)}
        check_n(n)
        rec = load_recommender(processed_dir, models_dir, models=())
        check_trained(models_dir, names.values())
        for architecture, name in names.items():
            top = recommend_all(rec, architecture, n, progress=True, mode=mode)
            out = out_dir / f"recommendations_{name}.parquet"
            write_parquet(out, top)
            typer.echo(f"wrote {len(top):,} rows ({top['user_id'].nunique():,} users × {n}) to {out}")
    except RecommendError as error:
        fail(error)


if __name__ == "__main__":
    typer.run(recommend_command)
