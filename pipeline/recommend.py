"""A user → profile, liked history and the Top-N movies they have not rated; and Top-N for every user.

Scoring goes through `scoring.top_n`, the same code as the full-catalog evaluation. Encoders are only
applied here, never fitted. User mistakes raise `RecommendError`, which the command prints as one line.
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
from pipeline.preprocess import Processed, load_processed

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
DEFAULT_MODEL = "both"
# "ranking" learns which unrated movies a user will like (the question asked here); "seed" is the
# seed's model of liked-given-rated, kept for comparison.
MODES = {"ranking": "_ranking", "seed": ""}
DEFAULT_MODE = "ranking"


class RecommendError(ValueError):
    """A user mistake or a missing artifact; the message is the one line shown to the user."""


@dataclass
class Recommender:
    """Processed data, all ratings (both splits) and the scorers, loaded once."""

    data: Processed
    ratings: pd.DataFrame
    models_dir: Path
    scorers: dict = field(default_factory=dict)

    def scorer(self, name: str):
        """The model's score function, loaded on first use."""
        if name not in self.scorers:
            from pipeline.scoring import ModelScorer
            from pipeline.train import load_model

            path = config.model_path(name, "random", self.models_dir)
            if not path.is_file():
                raise RecommendError(f"model {name} is not trained yet; run `make train` (or `make all`)")
            self.scorers[name] = ModelScorer(load_model(path))
        return self.scorers[name]


def load_recommender(processed_dir: Path = config.PROCESSED_DIR, models_dir: Path = config.MODELS_DIR) -> Recommender:
    try:
        data = load_processed(processed_dir)
    except FileNotFoundError:
        raise RecommendError(f"no processed data in {processed_dir}; run `make preprocess` (or `make all`)") from None
    return Recommender(data, pd.concat([data.train, data.test], ignore_index=True), models_dir)


def model_name(model: str, mode: str = DEFAULT_MODE) -> str:
    if model not in config.MODEL_NAMES:
        raise RecommendError(f"unknown model {model!r}; choose one of {', '.join(MODEL_CHOICES)}")
    if mode not in MODES:
        raise RecommendError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    return model + MODES[mode]


def parse_user(text: str) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise RecommendError(f"user must be a MovieLens user ID (a whole number), not {text!r}") from None


def user_code(rec: Recommender, user_id: int) -> int:
    if not rec.data.encoders.knows("user_id", user_id):
        ids = rec.data.encoders.classes["user_id"]
        raise RecommendError(f"unknown user {user_id}; user IDs run from {min(ids)} to {max(ids)}")
    return int(rec.data.encoders.encode("user_id", [user_id])[0])


def valid_years(rec: Recommender) -> list[int]:
    return [int(year) for year in rec.data.encoders.classes["rating_year"]]


def profile(rec: Recommender, user_id: int) -> dict:
    code = user_code(rec, user_id)
    row = rec.data.users.loc[rec.data.users["user_id"] == code].iloc[0]
    raw = {name: rec.data.encoders.decode(name, [row[name]])[0] for name in ("gender", "age", "occupation", "zip")}
    return {
        "user_id": user_id,
        "gender": GENDER_LABELS.get(raw["gender"], str(raw["gender"])),
        "age": AGE_LABELS.get(int(raw["age"]), str(raw["age"])),
        "occupation": OCCUPATION_LABELS.get(int(raw["occupation"]), str(raw["occupation"])),
        "zip": str(raw["zip"]),
    }


def with_titles(rec: Recommender, frame: pd.DataFrame) -> pd.DataFrame:
    """Add title and genres to a frame of movie codes, and turn the codes into MovieLens IDs."""
    catalogue = rec.data.movies.set_index("movie_id")[["title", "genres"]]
    out = frame.join(catalogue, on="movie_id")
    out["movie_id"] = rec.data.encoders.decode("movie_id", out["movie_id"]).astype("int64")
    return out


def liked_history(rec: Recommender, user_id: int) -> pd.DataFrame:
    """Movies the user rated ≥ 4, newest first: movie_id, title, genres, rating, date."""
    code = user_code(rec, user_id)
    liked = rec.ratings[(rec.ratings["user_id"] == code) & (rec.ratings["label"] == 1)]
    liked = liked.sort_values("timestamp", ascending=False, kind="stable")[["movie_id", "rating", "timestamp"]]
    out = with_titles(rec, liked.reset_index(drop=True))
    out["date"] = pd.to_datetime(out["timestamp"], unit="s", utc=True).dt.strftime("%Y-%m-%d")
    return out[["movie_id", "title", "genres", "rating", "date"]]


def context_codes(rec: Recommender, code: int, year: int | None, month: int | None) -> dict[str, int]:
    """The rating-time fields: given year/month, else those of the user's most recent rating."""
    if month is not None and not 1 <= month <= 12:
        raise RecommendError(f"month must be between 1 and 12, not {month}")
    if year is not None and year not in valid_years(rec):
        raise RecommendError(f"year {year} is outside what the model knows; valid years: "
                             f"{', '.join(map(str, valid_years(rec)))}")
    mine = rec.ratings[rec.ratings["user_id"] == code]
    latest = mine.loc[mine["timestamp"].idxmax()]
    encoders = rec.data.encoders
    last_year = int(encoders.decode("rating_year", [latest["rating_year"]])[0])
    last_month = int(encoders.decode("rating_month", [latest["rating_month"]])[0])
    year, month = year or last_year, month or last_month
    return {"rating_year": int(encoders.encode("rating_year", [year])[0]),
            "rating_month": int(encoders.encode("rating_month", [month])[0]),
            "rating_decade": int(encoders.encode("rating_decade", [year // 10 * 10])[0])}


def recommend(rec: Recommender, user_id: int, model: str = "autoint", year: int | None = None,
              month: int | None = None, n: int = config.TOP_N, mode: str = DEFAULT_MODE) -> pd.DataFrame:
    """Top-n movies the user has not rated: rank, movie_id, title, genres, score."""
    from pipeline.scoring import top_n

    if n < 1:
        raise RecommendError(f"N must be at least 1, not {n}")
    name = model_name(model, mode)
    code = user_code(rec, user_id)
    user = rec.data.users[rec.data.users["user_id"] == code].assign(**context_codes(rec, code, year, month))
    rated = rec.ratings.loc[rec.ratings["user_id"] == code, ["user_id", "movie_id"]]
    top = top_n(rec.scorer(name), user, rec.data.movies, exclude=rated, n=n)
    return with_titles(rec, top)[["rank", "movie_id", "title", "genres", "score"]]


def recommend_all(rec: Recommender, model: str = "autoint", n: int = config.TOP_N, mode: str = DEFAULT_MODE,
                  progress: bool = True) -> pd.DataFrame:
    """Top-n unrated movies of every user, each in the context of that user's most recent rating."""
    from pipeline.scoring import latest_context, top_n

    users = rec.data.users.join(latest_context(rec.ratings), on="user_id", how="inner")
    top = top_n(rec.scorer(model_name(model, mode)), users, rec.data.movies,
                exclude=rec.ratings[["user_id", "movie_id"]], n=n, progress=progress)
    top["user_id"] = rec.data.encoders.decode("user_id", top["user_id"]).astype("int64")
    return with_titles(rec, top)[["user_id", "rank", "movie_id", "title", "score"]]


def format_table(frame: pd.DataFrame, columns: list[str]) -> str:
    shown = frame[columns].copy()
    if "score" in shown:
        shown["score"] = shown["score"].map(lambda s: f"{s:.4f}")
    if "title" in shown:
        shown["title"] = shown["title"].str.slice(0, 48)
    return shown.to_string(index=False)


def recommend_command(
    user: str = typer.Option("3", "--user", help="MovieLens user ID."),
    model: str = typer.Option(DEFAULT_MODEL, help=f"One of {', '.join(MODEL_CHOICES)}."),
    mode: str = typer.Option(DEFAULT_MODE, help="ranking (default: trained for unrated movies) or seed."),
    year: int = typer.Option(None, help="Rating-time context year; default: that of the user's latest rating."),
    month: int = typer.Option(None, help="Rating-time context month, 1-12."),
    n: int = typer.Option(config.TOP_N, "--n", help="How many movies."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    processed_dir: Path = typer.Option(config.PROCESSED_DIR),
    models_dir: Path = typer.Option(config.MODELS_DIR),
) -> None:
    """Print a user's profile, liked history and Top-N unrated movies."""
    try:
        if model not in MODEL_CHOICES:
            raise RecommendError(f"unknown model {model!r}; choose one of {', '.join(MODEL_CHOICES)}")
        models = list(config.MODEL_NAMES) if model == "both" else [model]
        user_id = parse_user(user)
        rec = load_recommender(processed_dir, models_dir)
        who, history = profile(rec, user_id), liked_history(rec, user_id)
        lists = {name: recommend(rec, user_id, name, year, month, n, mode) for name in models}
    except RecommendError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2)
    if as_json:
        typer.echo(json.dumps({"profile": who, "liked_history": history.to_dict("records"), "mode": mode,
                               "recommendations": {name: top.to_dict("records") for name, top in lists.items()}},
                              indent=2, ensure_ascii=False, default=str))
        return
    typer.echo(f"user {who['user_id']}: {who['gender']}, age {who['age']}, {who['occupation']}, zip {who['zip']}")
    typer.echo(f"\nliked history ({len(history)} movies rated 4 or 5, newest first):")
    typer.echo(format_table(history.head(15), ["date", "rating", "title", "genres"]))
    if len(history) > 15:
        typer.echo(f"... and {len(history) - 15} more")
    if len(lists) == 1:
        (name, top), = lists.items()
        typer.echo(f"\nTop {n} unrated movies, {name} ({mode} mode):")
        typer.echo(format_table(top, ["rank", "movie_id", "title", "genres", "score"]))
    else:
        side = pd.DataFrame({"rank": np.arange(1, n + 1)})
        for name, top in lists.items():
            side[name] = top["title"].str.slice(0, 40).tolist() + [""] * (n - len(top))
            side[f"{name} score"] = [f"{s:.3f}" for s in top["score"]] + [""] * (n - len(top))
        typer.echo(f"\nTop {n} unrated movies ({mode} mode), side by side:")
        typer.echo(side.to_string(index=False))


def recommend_all_command(
    model: str = typer.Option("autoint", help=f"One of {', '.join(config.MODEL_NAMES)}."),
    mode: str = typer.Option(DEFAULT_MODE, help="ranking or seed."),
    n: int = typer.Option(config.TOP_N, "--n"),
    processed_dir: Path = typer.Option(config.PROCESSED_DIR),
    models_dir: Path = typer.Option(config.MODELS_DIR),
    out: Path = typer.Option(None, help="Default: artifacts/recommendations_<model>.parquet"),
) -> None:
    """Write the Top-N unrated movies of every user to one parquet file."""
    try:
        if n < 1:
            raise RecommendError(f"N must be at least 1, not {n}")
        name = model_name(model, mode)
        rec = load_recommender(processed_dir, models_dir)
        top = recommend_all(rec, model, n, mode)
    except RecommendError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2)
    out = out or config.ARTIFACTS_DIR / f"recommendations_{name}.parquet"
    write_parquet(out, top)
    typer.echo(f"wrote {len(top):,} rows ({top['user_id'].nunique():,} users × {n}) to {out}")


if __name__ == "__main__":
    typer.run(recommend_command)
