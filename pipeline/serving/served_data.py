"""The processed data as a Recommender serves it: read once (checked against the manifests), then indexed by
user and movie so that one request costs a few array lookups.

Movies and users go in and out as MovieLens IDs; internal codes never leave the recommending core. Encoders are
only applied here, never fitted. This is where IDs become codes, a request's rating-time context is chosen and
checked, and the tables a person is shown (profile, liked history, movie search) are made.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import config, manifests
from pipeline.data.fields import Encoders
from pipeline.data.movielens import AGE_LABELS, GENDER_LABELS, OCCUPATION_LABELS
from pipeline.ranking import newcomer_lists
from pipeline.serving.errors import NotFound, RecommendError, Unusable

# The columns of train/test.parquet used here; reading all of them costs about a second at start-up.
RATING_COLUMNS = ["user_id", "movie_id", "rating", "label", "timestamp", *config.CONTEXT_FIELDS]
# The command that rebuilds what is read here.
PREPROCESS = "make preprocess"


def read_checked(path: Path, read, rebuild: str):
    """read(path) once path is checked against its manifest; manifests.ArtifactError if it is missing, damaged
    or cannot be read."""
    with manifests.checked(path, rebuild):
        return read(path)


def read_served_data(processed_dir: Path) -> tuple[Encoders, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """ServedData's encoders, movies, users and ratings from processed_dir: every rating of both random-split
    halves, sorted by user and time. RecommendError if the stage has not run, Unusable if a file is damaged."""
    if not (processed_dir / "encoders.json").is_file():
        raise RecommendError(f"no processed data in {processed_dir}; run `make preprocess` (or `make all`)")
    try:
        encoders = read_checked(processed_dir / "encoders.json", Encoders.load, PREPROCESS)
        splits = [
            read_checked(processed_dir / f"{s}.parquet", partial(pd.read_parquet, columns=RATING_COLUMNS), PREPROCESS)
            for s in ("train", "test")
        ]
        movies = read_checked(processed_dir / "movies.parquet", pd.read_parquet, PREPROCESS)
        users = read_checked(processed_dir / "users.parquet", pd.read_parquet, PREPROCESS)
    except manifests.ArtifactError as error:
        raise Unusable(error) from None
    # 32-bit codes and one copy at a time: at 25 M ratings these columns are 1 GB, not three copies of 1.6 GB.
    ratings = pd.concat(
        [split.astype({column: np.int32 for column in RATING_COLUMNS if column != "timestamp"}) for split in splits],
        ignore_index=True,
    )
    del splits
    order = np.lexsort((ratings["timestamp"].to_numpy(), ratings["user_id"].to_numpy()))  # stable, as sort_values
    return encoders, movies, users, ratings.take(order).reset_index(drop=True)


def context_source(year, month, new_person: bool = False) -> str:
    if year is not None or month is not None:
        return "given"
    return "the latest month in the ratings" if new_person else "the month of the user's latest rating"


@dataclass
class ServedData:
    """The encoders, the catalogue, the users and their ratings, with the indexes a request needs.

    ratings holds every rating of both random-split halves (codes), sorted by user and time.
    """

    encoders: Encoders
    movies: pd.DataFrame
    users: pd.DataFrame
    ratings: pd.DataFrame

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
        likes = self.ratings.loc[self.ratings["label"] == 1, "movie_id"].value_counts()
        by_likes = self.movies[["movie_id", "title", "genres"]].assign(
            likes=likes.reindex(self.movies["movie_id"]).fillna(0).astype("int64").to_numpy()
        )
        by_likes = by_likes.sort_values(["likes", "movie_id"], ascending=[False, True], ignore_index=True)
        by_likes["movie_id"] = self.encoders.decode("movie_id", by_likes["movie_id"]).astype("int64")
        self._by_likes = by_likes
        # By user code, for a scored request's candidate list (Recommender.user_list) without a pandas lookup.
        self._rated_movies = self.ratings["movie_id"].to_numpy(np.int64)
        self._rated_labels = self.ratings["label"].to_numpy()
        known = self.users.sort_values("user_id")
        self._rating_years = self.ratings["rating_year"].to_numpy()
        self._rating_months = self.ratings["rating_month"].to_numpy()
        self._latest_rating = int(np.argmax(self.ratings["timestamp"].to_numpy()))  # the first of the latest
        self._profiles = np.column_stack([known["user_id"], known[list(config.USER_FIELDS[1:])]]).astype(np.int64) + 1

    @cached_property
    def popularity(self) -> newcomer_lists.Popularity:
        """Liked ratings per movie by gender and age group, which a new person's list leans on (made on first use)."""
        liked = self.ratings.loc[self.ratings["label"] == 1, ["user_id", "movie_id"]]
        return newcomer_lists.Popularity.of(liked, self.users, len(self.movies))

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

    def liked_codes(self, code: int) -> np.ndarray:
        """The movies (codes) the user with code `code` liked, oldest first: what retrieval reads of them."""
        mine = slice(self._bounds[code], self._bounds[code + 1])
        return self._rated_movies[mine][self._rated_labels[mine] == 1]

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
