"""The HTTP API's request and response bodies (what /docs shows), and the help texts of its parameters."""

# No `from __future__ import annotations`: pydantic and FastAPI read these annotations at run time.
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from pipeline import config, config_serving
from pipeline.data.movielens import AGE_LABELS, GENDER_LABELS, OCCUPATION_LABELS

Architecture = config.choice("Architecture", config.ARCHITECTURES)
MAX_N = config_serving.SERVE["max_n"]
N_HELP = f"How many movies, 1-{MAX_N}."
YEAR_HELP = (
    "Rating-time context year (one the model saw, e.g. 2000); default: that of the user's latest rating "
    "(for a new person, of the latest rating in the data)."
)
MONTH_HELP = "Rating-time context month, 1-12; default: as the year."
MODEL_HELP = "Architecture: autoint (attention only) or autoint_mlp (attention plus a DNN branch)."
MODE_HELP = (
    "two_stage: EASE retrieval proposes, AutoInt ranks (the default recommender); "
    "reference: the original project's models over the whole catalogue."
)


class Movie(BaseModel):
    movie_id: int = Field(description="MovieLens movie ID")
    title: str
    genres: str = Field(description="MovieLens genres, separated by |")


class BecauseMovie(BaseModel):
    movie_id: int = Field(description="MovieLens movie ID of a movie the person liked")
    title: str


class RankedMovie(BaseModel):
    rank: int = Field(description="1 = best")
    movie_id: int = Field(description="MovieLens movie ID")
    title: str
    genres: str = Field(description="MovieLens genres, separated by |")
    score: float = Field(description="The model's score; higher is better; compare within one list only")
    because: list[BecauseMovie] = Field(
        description=f"Because you liked: up to {config.BECAUSE_N} of the person's liked movies (rated 4 or 5, or "
        "the list given) that add most to this movie's retrieval score, most first; fewer when fewer add to it, "
        "none in reference mode (retrieval did not propose its movies)"
    )


class LikedMovie(Movie):
    rating: int = Field(description="The user's rating, 4 or 5")
    date: str = Field(description="When it was rated, YYYY-MM-DD (UTC)")


class FoundMovie(Movie):
    likes: int = Field(description="How many ratings of 4 or 5 it has")


class Context(BaseModel):
    year: int
    month: int
    source: str = Field(description="given, or where the default came from")


class Recommendations(BaseModel):
    user_id: int | None = Field(description="MovieLens user ID; null for a new person")
    model: str = Field(description="The model file that ranked, e.g. autoint_mlp_two_stage")
    architecture: Architecture
    mode: config.ServedMode
    context: Context
    items: list[RankedMovie]


class NewPersonRecommendations(Recommendations):
    liked: list[Movie] = Field(description="The liked movies given, duplicates dropped")


class Profile(BaseModel):
    user_id: int
    gender: str
    age: str = Field(description="Age group")
    occupation: str
    zip: str


class LikedHistory(BaseModel):
    user_id: int
    count: int
    items: list[LikedMovie]


class Search(BaseModel):
    query: str
    items: list[FoundMovie]


class ModelStatus(BaseModel):
    trained_at: str | None = Field(description="When the model file was written (UTC); null: not trained")
    loaded: bool = Field(description="In memory now (the default models load right after start-up)")
    precomputed: bool = Field(
        description="Default requests (the user's own context, n within the table) are answered from the "
        "model's precomputed Top-N table (make precompute); others are scored when asked"
    )
    usable: bool = Field(description="The model can score: its files and the retrieval stage it needs are intact")
    problem: str | None = Field(
        description="Why it cannot (the file, what is wrong, the command that rebuilds it); requests that need "
        "it answer 503 with the same message"
    )
    precomputed_problem: str | None = Field(
        description="Why its precomputed table cannot be used (damaged); default requests for it then answer 503"
    )


class Health(BaseModel):
    status: Literal["ready", "degraded"] = Field(
        description="degraded: some model, table or the data cannot be used (see problems); the rest is served"
    )
    problems: list[str] = Field(
        description="One line per unusable file: the file, what is wrong and the command that rebuilds it"
    )
    default_model: str
    models: dict[str, ModelStatus] = Field(description="Every served model; empty when the data itself is unusable")
    data: dict[str, str | int] = Field(
        description="Where the data is and its checksum: sha256 of encoders.json, which changes with any "
        "re-preprocessing"
    )
    startup_seconds: float = Field(description="From start to ready: the data and precomputed tables loaded")
    warm: bool = Field(
        description="The default models are loaded and traced too (in the background after ready; until "
        "then a request that must be scored waits for its model)"
    )
    workers: int = Field(description="Worker processes, each with its own copy of the data and models")
    threads: int = Field(description="Threads per worker process that run the recommender")
    runtime: Literal["litert", "keras"] = Field(
        description="What scores: the models' LiteRT files (no TensorFlow in the worker) or their .keras files"
    )
    pid: int = Field(description="The worker process that answered")


class Error(BaseModel):
    error: str = Field(description="not_found, invalid_request, payload_too_large, unavailable, ...")
    message: str = Field(description="What was wrong and what is valid")
    detail: list[dict] | None = None
    file: str | None = Field(None, description="unavailable: the file that is missing, damaged or unreadable")
    rebuild: str | None = Field(None, description="unavailable: the command that rebuilds it")


class LikedRequest(BaseModel):
    """A new person: the movies they like and, optionally, who they are and when."""

    model_config = ConfigDict(extra="forbid")
    liked: list[int] = Field(
        min_length=1,
        max_length=config.MAX_LIKED,
        examples=[[2571, 1196, 260]],
        description=f"MovieLens IDs of movies they like, oldest first, 1-{config.MAX_LIKED} "
        "(duplicates ignored); /v1/movies?q= finds IDs",
    )
    gender: Literal[tuple(sorted(GENDER_LABELS))] | None = Field(None, description="M or F")
    age: Literal[tuple(sorted(AGE_LABELS))] | None = Field(
        None, description="Age group: " + ", ".join(f"{code} ({label})" for code, label in AGE_LABELS.items())
    )
    occupation: int | None = Field(
        None,
        ge=min(OCCUPATION_LABELS),
        le=max(OCCUPATION_LABELS),
        description="Occupation code: " + ", ".join(f"{code} {label}" for code, label in OCCUPATION_LABELS.items()),
    )
    n: int = Field(config.TOP_N, ge=1, le=MAX_N, description=N_HELP)
    year: int | None = Field(None, description=YEAR_HELP)
    month: int | None = Field(None, ge=1, le=12, description=MONTH_HELP)
    architecture: Architecture = Field(
        config.DEFAULT_ARCHITECTURE,
        validation_alias=AliasChoices("architecture", "model"),
        description=MODEL_HELP + " Two-stage mode only; `model` is its old name.",
    )
