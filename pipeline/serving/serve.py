"""The recommending core behind HTTP: a FastAPI app whose every answer comes from pipeline.serving.recommend.

`make serve` (`python -m pipeline serve`) runs it under uvicorn on 127.0.0.1:8000. At start-up it loads the
processed data and the default models' precomputed Top-100 tables, and is then ready: default requests are
answered from those tables. A background thread then loads the default models (config.SERVE["preload_modes"])
and asks each for one Top-N, so that loading and tracing are done before most requests that must be scored
(one that comes earlier waits for its model); /v1/health says `"warm": true` when that is done. Requests
share that one Recommender, which nothing changes after start-up except loading a model on its first use
(under the Recommender's lock).

  GET  /v1/health                      readiness: models loaded, when they were trained, the data's checksum
  GET  /v1/users/{id}                   a user's profile
  GET  /v1/users/{id}/liked             the movies the user rated 4 or 5, newest first
  GET  /v1/users/{id}/recommendations   the user's Top-N (n, model, mode, year, month)
  POST /v1/recommendations              a new person's Top-N from the MovieLens IDs of movies they like
  GET  /v1/movies?q=                    movies whose title contains q, most liked first (to find IDs)
  GET  /metrics                         Prometheus: request counts and latency histograms by route and status
  GET  /docs, /openapi.json             FastAPI's description of all of the above

Movies and users are MovieLens IDs in and out. Errors are JSON {"error": kind, "message": what was wrong and
what is valid}: 404 for an unknown user or movie (recommend.NotFound), 422 for any other bad input, 413 for a
request body over config.SERVE["max_body_bytes"]; a bug answers 500 and logs its traceback.

Concurrency: a recommend() call is ~20 ms of CPU, nine tenths of it Python (pandas, TensorFlow's argument
handling) that holds the GIL, so threads of one process cannot use a second core. The service therefore runs
config.SERVE["workers"] uvicorn worker processes (one per core; each loads its own Recommender, ~1 GB), and in
each, core calls run on a bounded pool of config.SERVE["threads"] threads (anyio's thread pool behind a
CapacityLimiter) while the event loop parses, validates and writes JSON; more requests wait their turn in
order instead of oversubscribing the cores. uvicorn's supervisor restarts a worker that dies.

Monitoring: one JSON line per request on stderr (method, path, route, status, latency_ms, model, pid) and
/metrics (prometheus-client, summed over the workers: http_requests_total and http_request_duration_seconds
by route, method and status, recommendations_total by model, recommender_calls_in_progress).
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations, some of them local names.
import hashlib
import json
import logging
import os
import sys
import tempfile
import threading
import time
import traceback
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
import typer

from pipeline import config
from pipeline.retrieval import ease
from pipeline.serving import recommend

log = logging.getLogger("pipeline.serving.serve")
# How the uvicorn supervisor tells its worker processes what to serve (they import this module afresh).
WORKER_SETTINGS = "PIPELINE_SERVE_SETTINGS"

Architecture = config.choice("Architecture", config.ARCHITECTURES)
MAX_N = config.SERVE["max_n"]
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


def json_line(**fields) -> str:
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- Response and request bodies (what /docs shows) -----------------------------------------------------


def schemas():
    """The pydantic models, built on first use so that importing this module (the CLI) stays light."""
    from pydantic import BaseModel, ConfigDict, Field

    class Movie(BaseModel):
        movie_id: int = Field(description="MovieLens movie ID")
        title: str
        genres: str = Field(description="MovieLens genres, separated by |")

    class RankedMovie(BaseModel):
        rank: int = Field(description="1 = best")
        movie_id: int = Field(description="MovieLens movie ID")
        title: str
        genres: str = Field(description="MovieLens genres, separated by |")
        score: float = Field(description="The model's score; higher is better; compare within one list only")

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

    class Health(BaseModel):
        status: Literal["ready"]
        default_model: str
        models: dict[str, ModelStatus]
        data: dict[str, str | int] = Field(
            description="Where the data is and its checksum: sha256 of "
            "encoders.json, which changes with any re-preprocessing"
        )
        startup_seconds: float = Field(description="From start to ready: the data and precomputed tables loaded")
        warm: bool = Field(
            description="The default models are loaded and traced too (in the background after ready; until "
            "then a request that must be scored waits for its model)"
        )
        workers: int = Field(description="Worker processes, each with its own copy of the data and models")
        threads: int = Field(description="Threads per worker process that run the recommender")
        pid: int = Field(description="The worker process that answered")

    class Error(BaseModel):
        error: str = Field(description="not_found, invalid_request, payload_too_large, ...")
        message: str = Field(description="What was wrong and what is valid")
        detail: list[dict] | None = None

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
        gender: Literal[tuple(sorted(recommend.GENDER_LABELS))] | None = Field(None, description="M or F")
        age: Literal[tuple(sorted(recommend.AGE_LABELS))] | None = Field(
            None,
            description="Age group: " + ", ".join(f"{code} ({label})" for code, label in recommend.AGE_LABELS.items()),
        )
        occupation: int | None = Field(
            None,
            ge=min(recommend.OCCUPATION_LABELS),
            le=max(recommend.OCCUPATION_LABELS),
            description="Occupation code: "
            + ", ".join(f"{code} {label}" for code, label in recommend.OCCUPATION_LABELS.items()),
        )
        n: int = Field(config.TOP_N, ge=1, le=MAX_N, description=N_HELP)
        year: int | None = Field(None, description=YEAR_HELP)
        month: int | None = Field(None, ge=1, le=12, description=MONTH_HELP)
        model: Architecture = Field(config.DEFAULT_ARCHITECTURE, description=MODEL_HELP + " Two-stage mode only.")

    return {name: value for name, value in locals().items() if isinstance(value, type)}


# --- Middleware: body size limit, request log and metrics ---------------------------------------------


async def send_json(send, status: int, body: dict) -> None:
    payload = json_line(**body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class BodyLimit:
    """Refuses (413) a request body over `limit` bytes, by its Content-Length or, for a chunked body, by what
    arrives; the body is read here (it is small) and handed on whole."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = {"error": "payload_too_large", "message": f"the request body is over {self.limit} bytes"}
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await send_json(send, 413, too_large)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await send_json(send, 413, too_large)
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


class Observe:
    """One JSON log line and the Prometheus figures per request, whatever answered it (a route, the body
    limit, an error handler or a crash)."""

    def __init__(self, app, metrics: dict):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), [None]

        async def watch(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
            # No answer and no error: the client went away first (499, as nginx logs it).
            status[0] = status[0] or 499
        finally:
            status[0] = status[0] or 500  # an error escaped: the server's error handler answers 500
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            labels = (route, scope["method"], str(status[0]))
            self.metrics["requests"].labels(*labels).inc()
            self.metrics["latency"].labels(*labels).observe(seconds)
            model = scope.get("state", {}).get("model")
            log.info(
                json_line(
                    ts=datetime.now(UTC).isoformat(timespec="milliseconds"),
                    method=scope["method"],
                    path=scope["path"],
                    query=scope["query_string"].decode("latin-1"),
                    route=route,
                    status=status[0],
                    latency_ms=round(seconds * 1000, 2),
                    model=model,
                    pid=os.getpid(),
                )
            )


def make_metrics():
    """The app's counters. One process: in the app's own registry, so that several apps (tests) never share or
    clash over them. Several workers (PROMETHEUS_MULTIPROC_DIR set): each writes its own files there and
    /metrics sums them."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    shared = "PROMETHEUS_MULTIPROC_DIR" in os.environ
    registry = None if shared else CollectorRegistry()
    labels = ("route", "method", "status")
    return {
        "registry": registry,
        "requests": Counter("http_requests", "HTTP requests answered", labels, registry=registry),
        "latency": Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request",
            labels,
            buckets=config.SERVE["latency_buckets_s"],
            registry=registry,
        ),
        "recommendations": Counter("recommendations", "Top-N lists served", ("model",), registry=registry),
        "in_progress": Gauge(
            "recommender_calls_in_progress",
            "Recommender calls running or waiting for a thread",
            registry=registry,
            **({"multiprocess_mode": "livesum"} if shared else {}),
        ),
    }


def exposition(metrics: dict) -> bytes:
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    registry = metrics["registry"]
    if registry is None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)


# --- The app ---------------------------------------------------------------------------------------


def preload_names() -> list[str]:
    """The models loaded and warmed at start-up: those of config.SERVE["preload_modes"]."""
    return [
        config.model_name(architecture, mode)
        for mode in config.SERVE["preload_modes"]
        for architecture in config.ARCHITECTURES
    ]


def warm_up(rec: recommend.Recommender, names: list[str]) -> None:
    """Top-Ns per model (default and scored now, and one for a new person), so that loading, tracing and lazy
    indexes happen before the first request; the answers are thrown away and nothing in `rec` changes but its
    caches."""
    user = int(rec.encoders.classes["user_id"][0])
    for name in names:
        architecture, mode = next(
            (a, m) for m in config.SERVED_MODES for a in config.ARCHITECTURES if config.model_name(a, m) == name
        )
        recommend.recommend(rec, user, architecture, mode=mode)  # a default request: the precomputed table if fresh
        recommend.recommend(rec, user, architecture, month=1, mode=mode)  # scored now: loads and traces the model
        if mode == "two_stage":
            liked = recommend.liked_history(rec, user)["movie_id"].head(5).tolist()
            recommend.recommend_for_liked(rec, liked or [int(rec.encoders.classes["movie_id"][0])], architecture)
    recommend.search_movies(rec, "a")
    recommend.profile(rec, user)


def create_app(
    processed_dir: Path = config.PROCESSED_DIR,
    models_dir: Path = config.MODELS_DIR,
    threads: int = config.SERVE["threads"],
    preload: list[str] | None = None,
    workers: int = 1,
):
    """The FastAPI app over the data in processed_dir and the models in models_dir. Nothing is loaded until
    the app starts (uvicorn runs its lifespan before it accepts a connection, so ready means loaded).

    preload  model files to load and warm at start-up (default: preload_names); the others load on first use
    workers  how many worker processes serve this app (each builds its own; reported by /v1/health)
    """
    import anyio
    from fastapi import Body, Depends, FastAPI, Query, Request
    from fastapi import Path as PathParam
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException

    processed_dir, models_dir = Path(processed_dir), Path(models_dir)
    s = schemas()
    metrics = make_metrics()
    served = config.models_of(*config.SERVED_MODES)
    default_model = config.model_name(config.DEFAULT_ARCHITECTURE, config.DEFAULT_MODE)
    preload = preload_names() if preload is None else list(preload)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        started = time.perf_counter()
        app.state.rec = await anyio.to_thread.run_sync(partial(start_up, processed_dir, models_dir, preload))
        app.state.limiter = anyio.CapacityLimiter(threads)
        app.state.data = {
            "processed_dir": str(processed_dir),
            "models_dir": str(models_dir),
            "encoders_sha256": sha256(processed_dir / "encoders.json"),
            "users": len(app.state.rec.users),
            "movies": len(app.state.rec.movies),
            "ratings": len(app.state.rec.ratings),
        }
        app.state.startup_seconds = round(time.perf_counter() - started, 2)
        app.state.warm = threading.Event()
        threading.Thread(
            target=warm_in_background, args=(app.state.rec, preload, app.state.warm), name="warm-up", daemon=True
        ).start()
        log.info(
            json_line(
                event="ready",
                startup_seconds=app.state.startup_seconds,
                models=preload,
                threads=threads,
                pid=os.getpid(),
                **app.state.data,
            )
        )
        yield
        if metrics["registry"] is None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())

    app = FastAPI(
        title="MovieLens-1M AutoInt recommender",
        version="1",
        lifespan=lifespan,
        description="Top-N movies from DeepCTR's AutoInt (two-stage: EASE retrieval, AutoInt ranking). "
        "Users and movies are MovieLens IDs. Errors are JSON {error, message}: 404 unknown "
        "user or movie, 422 other bad input, 413 a body over "
        f"{config.SERVE['max_body_bytes']} bytes.",
        responses={
            404: {"model": s["Error"], "description": "Unknown user or movie"},
            422: {"model": s["Error"], "description": "Bad input; the message says what is valid"},
        },
    )

    def rec_of(request: Request) -> recommend.Recommender:
        return request.app.state.rec

    Rec = Annotated[recommend.Recommender, Depends(rec_of)]
    LikedRequest = s["LikedRequest"]
    UserId = Annotated[int, PathParam(description="MovieLens user ID (1-6040 in ML-1M)")]

    async def call(request: Request, function, *args, **kwargs):
        """Run a core function on a worker thread, at most `threads` at once; the others wait in order."""
        metrics["in_progress"].inc()
        try:
            return await anyio.to_thread.run_sync(partial(function, *args, **kwargs), limiter=request.app.state.limiter)
        finally:
            metrics["in_progress"].dec()

    @app.exception_handler(recommend.RecommendError)
    async def recommend_error(request: Request, error: recommend.RecommendError):
        if isinstance(error, recommend.NotFound):
            return JSONResponse({"error": "not_found", "message": str(error)}, status_code=404)
        return JSONResponse({"error": "invalid_request", "message": str(error)}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError):
        detail = [
            {
                "loc": list(item["loc"]),
                "msg": item["msg"],
                **(
                    {"input": item["input"]}
                    if isinstance(item.get("input"), (int, float, str, type(None)))
                    and len(str(item.get("input"))) <= 100
                    else {}
                ),
            }
            for item in error.errors()
        ]
        message = "; ".join(
            f"{'.'.join(map(str, item['loc']))}: {item['msg']}"
            + (f" (got {item['input']!r})" if "input" in item else "")
            for item in detail
        )
        return JSONResponse({"error": "invalid_request", "message": message, "detail": detail}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        messages = {
            404: ("not_found", f"no such endpoint: {request.url.path}; /docs lists them"),
            405: (
                "method_not_allowed",
                f"{request.method} is not allowed on {request.url.path}; /docs says which methods are",
            ),
        }
        kind, message = messages.get(error.status_code, ("http_error", str(error.detail)))
        return JSONResponse(
            {"error": kind, "message": message}, status_code=error.status_code, headers=getattr(error, "headers", None)
        )

    @app.exception_handler(Exception)
    async def crash(request: Request, error: Exception):
        log.error(
            json_line(
                event="error",
                path=request.url.path,
                error=repr(error),
                traceback="".join(traceback.format_exception(error)),
            )
        )
        return JSONResponse(
            {"error": "internal", "message": "internal error; the service log has the traceback"}, status_code=500
        )

    @app.get(
        "/v1/health",
        response_model=s["Health"],
        tags=["service"],
        summary="Readiness: the models loaded and when they were trained, and the data's checksum",
    )
    async def health(request: Request, rec: Rec):
        models = {
            name: {
                "trained_at": rec.trained_at(name),
                "loaded": name in rec.scorers,
                "precomputed": config.MODELS[name].candidates > 0 and rec.precomputed(name) is not None,
            }
            for name in served
        }
        return {
            "status": "ready",
            "default_model": default_model,
            "models": models,
            "data": request.app.state.data,
            "startup_seconds": request.app.state.startup_seconds,
            "warm": request.app.state.warm.is_set(),
            "workers": workers,
            "threads": threads,
            "pid": os.getpid(),
        }

    @app.get("/v1/users/{user_id}", response_model=s["Profile"], tags=["users"], summary="A user's profile")
    async def user_profile(request: Request, rec: Rec, user_id: UserId):
        return await call(request, recommend.profile, rec, user_id)

    @app.get(
        "/v1/users/{user_id}/liked",
        response_model=s["LikedHistory"],
        tags=["users"],
        summary="The movies a user rated 4 or 5, newest first",
    )
    async def user_liked(request: Request, rec: Rec, user_id: UserId):
        history = await call(request, recommend.liked_history, rec, user_id)
        return {"user_id": user_id, "count": len(history), "items": history.to_dict("records")}

    @app.get(
        "/v1/users/{user_id}/recommendations",
        response_model=s["Recommendations"],
        tags=["recommendations"],
        summary="A user's Top-N movies they have not rated",
    )
    async def user_recommendations(
        request: Request,
        rec: Rec,
        user_id: UserId,
        n: Annotated[int, Query(ge=1, le=MAX_N, description=N_HELP)] = config.TOP_N,
        model: Annotated[Architecture, Query(description=MODEL_HELP)] = config.DEFAULT_ARCHITECTURE,
        mode: Annotated[config.ServedMode, Query(description=MODE_HELP)] = config.DEFAULT_MODE,
        year: Annotated[int | None, Query(description=YEAR_HELP)] = None,
        month: Annotated[int | None, Query(ge=1, le=12, description=MONTH_HELP)] = None,
    ):
        architecture, mode = Architecture(model).value, config.ServedMode(mode).value
        name = recommend.model_name(architecture, mode)
        request.state.model = name
        when, top = await call(request, known_user, rec, user_id, architecture, mode, year, month, n)
        metrics["recommendations"].labels(name).inc()
        source = "given" if year is not None or month is not None else "the month of the user's latest rating"
        return {
            "user_id": user_id,
            "model": name,
            "architecture": architecture,
            "mode": mode,
            "context": {"year": when[0], "month": when[1], "source": source},
            "items": top.to_dict("records"),
        }

    @app.post(
        "/v1/recommendations",
        response_model=s["NewPersonRecommendations"],
        tags=["recommendations"],
        summary="A new person's Top-N from the movies they like (two-stage models)",
    )
    async def person_recommendations(request: Request, rec: Rec, person: Annotated[LikedRequest, Body()]):
        architecture = Architecture(person.model).value
        name = recommend.model_name(architecture, "two_stage")
        request.state.model = name
        when, given, top = await call(
            request,
            new_person,
            rec,
            person.liked,
            architecture,
            person.gender,
            person.age,
            person.occupation,
            person.year,
            person.month,
            person.n,
        )
        metrics["recommendations"].labels(name).inc()
        source = "given" if person.year is not None or person.month is not None else "the latest month in the ratings"
        return {
            "user_id": None,
            "model": name,
            "architecture": architecture,
            "mode": "two_stage",
            "context": {"year": when[0], "month": when[1], "source": source},
            "liked": given.to_dict("records"),
            "items": top.to_dict("records"),
        }

    @app.get(
        "/v1/movies",
        response_model=s["Search"],
        tags=["movies"],
        summary="Movies whose title contains a text, most liked first (to find MovieLens IDs)",
    )
    async def movies(
        request: Request,
        rec: Rec,
        q: Annotated[str, Query(description="Part of a title, any case, e.g. matrix")],
        limit: Annotated[
            int, Query(ge=1, le=config.SERVE["max_search"], description=f"How many, 1-{config.SERVE['max_search']}")
        ] = 20,
    ):
        found = await call(request, recommend.search_movies, rec, q, limit)
        return {"query": q, "items": found.to_dict("records")}

    @app.get("/metrics", tags=["service"], summary="Prometheus metrics", response_class=Response)
    async def prometheus():
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(exposition(metrics), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(BodyLimit, limit=config.SERVE["max_body_bytes"])
    app.add_middleware(Observe, metrics=metrics)
    return app


def start_up(processed_dir: Path, models_dir: Path, preload: list[str]) -> recommend.Recommender:
    from pipeline import quiet_imports

    tf = quiet_imports.tensorflow()
    try:
        # A request scores ~100 rows: TensorFlow's thread pools gain nothing there, and with a pool per worker
        # process they only oversubscribe the cores (and spin while they wait).
        tf.config.threading.set_intra_op_parallelism_threads(config.SERVE["tf_threads"])
        tf.config.threading.set_inter_op_parallelism_threads(config.SERVE["tf_threads"])
    except RuntimeError:
        pass  # TensorFlow already ran in this process (an app built in-process, e.g. by a test): keep its pools
    rec = recommend.load_recommender(processed_dir, models_dir)
    user = int(rec.encoders.classes["user_id"][0])
    for name in preload:
        if config.MODELS[name].candidates and rec.precomputed(name) is not None:
            architecture = next(a for a in config.ARCHITECTURES if config.model_name(a, "two_stage") == name)
            recommend.recommend(rec, user, architecture)  # answered from the table: no model needed
    recommend.search_movies(rec, "a")
    recommend.profile(rec, user)
    return rec


def warm_in_background(rec: recommend.Recommender, names: list[str], done) -> None:
    """Load and trace `names` (warm_up) after the service is ready, then set the event `done`. Default
    requests are answered from the precomputed tables meanwhile; one that must be scored waits for its model
    (Recommender.scorer loads it under the lock)."""
    started = time.perf_counter()
    try:
        warm_up(rec, names)
    except Exception:  # a model that fails to load is reported by the request that needs it
        log.error(json_line(event="warm_up_failed", error=traceback.format_exc(), pid=os.getpid()))
    finally:
        done.set()
        log.info(
            json_line(event="warm", seconds=round(time.perf_counter() - started, 2), models=names, pid=os.getpid())
        )


def known_user(rec, user_id, architecture, mode, year, month, n):
    """The context a user's Top-N is scored in, and the Top-N (one worker-thread call)."""
    return recommend.context(rec, user_id, year, month), recommend.recommend(
        rec, user_id, architecture, year, month, n, mode
    )


def new_person(rec, liked, architecture, gender, age, occupation, year, month, n):
    """The context, the liked movies given (with titles) and a new person's Top-N (one worker-thread call)."""
    top = recommend.recommend_for_liked(rec, liked, architecture, gender, age, occupation, year, month, n)
    given = recommend.with_titles(rec, pd.DataFrame({"movie_id": recommend.movie_codes(rec, liked)}))
    return recommend.context(rec, None, year, month), given[["movie_id", "title", "genres"]], top


def configure_logging() -> None:
    """Request lines go to stderr as they are (each one JSON object)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False


def app_from_environment():
    """The app of one worker process, from the settings serve_command left in the environment."""
    configure_logging()
    settings = json.loads(os.environ[WORKER_SETTINGS])
    return create_app(
        Path(settings["processed_dir"]), Path(settings["models_dir"]), settings["threads"], workers=settings["workers"]
    )


def serve_command(
    host: str = typer.Option(
        config.SERVE["host"],
        help="Address to listen on. The default answers this machine only; 0.0.0.0 (or a LAN address) lets others in.",
    ),
    port: int = typer.Option(config.SERVE["port"], min=0, max=65535),
    processed_dir: Path = typer.Option(config.PROCESSED_DIR),
    models_dir: Path = typer.Option(config.MODELS_DIR),
    workers: int = typer.Option(
        config.SERVE["workers"], min=1, help="Worker processes (each loads the data and models: about 1 GB each)."
    ),
    threads: int = typer.Option(config.SERVE["threads"], min=1, help="Threads per worker that run the recommender."),
) -> None:
    """Serve recommendations over HTTP (FastAPI under uvicorn); /docs describes the endpoints."""
    import uvicorn

    configure_logging()
    try:
        if not (processed_dir / "encoders.json").is_file():
            raise recommend.RecommendError(f"no processed data in {processed_dir}; run `make preprocess`")
        if not ease.path("random", models_dir).is_file():
            raise recommend.RecommendError(f"no retrieval stage in {models_dir}; run `make retrieval`")
        recommend.check_trained(models_dir, preload_names())
    except recommend.RecommendError as error:
        recommend.fail(error)
    # uvicorn's own lines (start-up, a worker that died) stay; its access log would repeat the JSON lines.
    options = dict(
        host=host,
        port=port,
        access_log=False,
        log_level="info",
        limit_concurrency=config.SERVE["max_connections"],
        timeout_graceful_shutdown=config.SERVE["graceful_shutdown_s"],
    )
    if workers == 1:
        uvicorn.run(create_app(processed_dir, models_dir, threads), **options)
        return
    with tempfile.TemporaryDirectory(prefix="serve-metrics-") as metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        os.environ[WORKER_SETTINGS] = json.dumps(
            {
                "processed_dir": str(processed_dir.resolve()),
                "workers": workers,
                "models_dir": str(models_dir.resolve()),
                "threads": threads,
            }
        )
        uvicorn.run(
            "pipeline.serving.serve:app_from_environment",
            factory=True,
            workers=workers,
            timeout_worker_healthcheck=config.SERVE["worker_healthcheck_s"],
            **options,
        )
