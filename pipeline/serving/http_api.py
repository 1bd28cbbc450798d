"""The recommending core behind HTTP: a FastAPI app whose every answer comes from a Recommender.

  GET  /v1/health                      readiness: models loaded, when they were trained, the data's checksum, and
                                       what cannot be used ("degraded")
  GET  /v1/users/{id}                   a user's profile
  GET  /v1/users/{id}/liked             the movies the user rated 4 or 5, newest first
  GET  /v1/users/{id}/recommendations   the user's Top-N (n, model, mode, year, month)
  POST /v1/recommendations              a new person's Top-N from the MovieLens IDs of movies they like
  GET  /v1/movies?q=                    movies whose title contains q, most liked first (to find IDs)
  GET  /metrics                         Prometheus: request counts and latency histograms by route and status
  GET  /docs, /openapi.json             FastAPI's description of all of the above

Movies and users are MovieLens IDs in and out. Errors are JSON {"error": kind, "message": what was wrong and
what is valid}: 404 for an unknown user or movie (NotFound), 422 for any other bad input, 413 for a request
body over config.SERVE["max_body_bytes"] (middleware.BodyLimit), 503 for a request that needs a missing,
damaged or unreadable file (Unusable: "file" and "rebuild" name it and the command that rebuilds it); a bug
answers 500 and logs its traceback. A worker whose model, table or even data is damaged still starts
(degraded): /v1/health lists the problems and everything that does not need those files is served.

The Recommender is loaded once, by the app's lifespan (uvicorn runs it before it accepts a connection, so
ready means loaded), and handed to the routes by `Depends`. Core calls run on a bounded pool of
config.SERVE["threads"] threads (anyio's thread pool behind a CapacityLimiter) while the event loop parses,
validates and writes JSON; more requests wait their turn in order instead of oversubscribing the cores.
`python -m pipeline serve` (service.py) runs it under uvicorn.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run time.
import hashlib
import json
import os
import threading
import time
import traceback
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated

import anyio
from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException

from pipeline import config, manifests
from pipeline.serving import schemas
from pipeline.serving.middleware import BodyLimit, Metrics, Observe
from pipeline.serving.recommender import (
    NotFound,
    Recommender,
    RecommendError,
    Unusable,
    context_source,
    model_name,
)
from pipeline.serving.schemas import MAX_N, MODE_HELP, MODEL_HELP, MONTH_HELP, N_HELP, YEAR_HELP, Architecture
from pipeline.serving.startup import (
    WORKER_OPTIONS,
    configure_logging,
    json_line,
    log,
    preload_names,
    start_up,
    warm_in_background,
)

SERVED = config.models_of(*config.SERVED_MODES)
DEFAULT_MODEL = config.model_name(config.DEFAULT_ARCHITECTURE, config.DEFAULT_MODE)


@dataclass
class ServiceOptions:
    """What create_app was asked to serve (read by the lifespan and /v1/health)."""

    processed_dir: Path
    models_dir: Path
    threads: int
    preload: list[str]
    workers: int
    runtime: str = "litert"


@dataclass
class Service:
    """What the lifespan loaded, shared by every request of one worker process; rec is None (and `problem`
    says why) when the processed data itself cannot be used."""

    rec: Recommender | None
    limiter: anyio.CapacityLimiter
    data: dict
    startup_seconds: float
    warm: threading.Event
    problem: Unusable | None = None


async def service_of(request: Request) -> Service:
    return request.app.state.service


async def recommender_of(request: Request) -> Recommender:
    service = request.app.state.service
    if service.rec is None:
        raise Unusable(service.problem.artifact)
    return service.rec


async def metrics_of(request: Request) -> Metrics:
    return request.app.state.metrics


Rec = Annotated[Recommender, Depends(recommender_of)]
Served = Annotated[Service, Depends(service_of)]
Meter = Annotated[Metrics, Depends(metrics_of)]
UserId = Annotated[int, PathParam(description="MovieLens user ID (1-6040 in ML-1M)")]


async def call(service: Service, metrics: Metrics, function, *args, **kwargs):
    """Run a core function on a worker thread, at most `threads` at once; the others wait in order."""
    metrics.in_progress.inc()
    try:
        return await anyio.to_thread.run_sync(partial(function, *args, **kwargs), limiter=service.limiter)
    finally:
        metrics.in_progress.dec()


# --- Errors: HTTP status + {"error", "message"} -------------------------------------------------------


async def recommend_error(request: Request, error: RecommendError):
    if isinstance(error, NotFound):
        return JSONResponse({"error": "not_found", "message": str(error)}, status_code=404)
    if isinstance(error, Unusable):
        where = {"file": manifests.shown(error.artifact.path), "rebuild": error.artifact.rebuild}
        return JSONResponse({"error": "unavailable", "message": str(error), **where}, status_code=503)
    return JSONResponse({"error": "invalid_request", "message": str(error)}, status_code=422)


async def validation_error(request: Request, error: RequestValidationError):
    detail = [
        {
            "loc": list(item["loc"]),
            "msg": item["msg"],
            **(
                {"input": item["input"]}
                if isinstance(item.get("input"), (int, float, str, type(None))) and len(str(item.get("input"))) <= 100
                else {}
            ),
        }
        for item in error.errors()
    ]
    message = "; ".join(
        f"{'.'.join(map(str, item['loc']))}: {item['msg']}" + (f" (got {item['input']!r})" if "input" in item else "")
        for item in detail
    )
    return JSONResponse({"error": "invalid_request", "message": message, "detail": detail}, status_code=422)


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


# --- Routes -------------------------------------------------------------------------------------------

router = APIRouter()


@router.get(
    "/v1/health",
    response_model=schemas.Health,
    tags=["service"],
    summary="Readiness: the models loaded and when they were trained, and the data's checksum",
)
async def health(request: Request, service: Served):
    rec, options = service.rec, request.app.state.options
    models = {name: model_status(rec, name) for name in SERVED} if rec is not None else {}
    problems = [str(service.problem)] if rec is None else []
    for status in models.values():
        problems += [problem for problem in (status["problem"], status["precomputed_problem"]) if problem]
    problems = list(dict.fromkeys(problems))  # the retrieval stage's problem is every two-stage model's
    return {
        "status": "degraded" if problems else "ready",
        "problems": problems,
        "default_model": DEFAULT_MODEL,
        "models": models,
        "data": service.data,
        "startup_seconds": service.startup_seconds,
        "warm": service.warm.is_set(),
        "workers": options.workers,
        "threads": options.threads,
        "runtime": options.runtime,
        "pid": os.getpid(),
    }


def model_status(rec: Recommender, name: str) -> dict:
    """What /v1/health says of model file `name`. The checks are manifests' (size and mtime, a hash only when
    the mtime moved, once per file state) and a damaged file is remembered, so that health stays cheap."""
    problem, table_problem = rec.problems(name)
    return {
        "trained_at": rec.trained_at(name),
        "loaded": name in rec.scorers,
        "precomputed": table_problem is None and rec.precomputed(name) is not None,
        "usable": problem is None,
        "problem": problem,
        "precomputed_problem": table_problem,
    }


@router.get("/v1/users/{user_id}", response_model=schemas.Profile, tags=["users"], summary="A user's profile")
async def user_profile(service: Served, metrics: Meter, rec: Rec, user_id: UserId):
    return await call(service, metrics, rec.profile, user_id)


@router.get(
    "/v1/users/{user_id}/liked",
    response_model=schemas.LikedHistory,
    tags=["users"],
    summary="The movies a user rated 4 or 5, newest first",
)
async def user_liked(service: Served, metrics: Meter, rec: Rec, user_id: UserId):
    history = await call(service, metrics, rec.liked_history, user_id)
    return {"user_id": user_id, "count": len(history), "items": records(history)}


def records(frame) -> list[dict]:
    """A frame's rows as dicts, as DataFrame.to_dict("records") gives them but ~10× faster for a Top-10 (~0.1
    ms instead of ~1 ms, in every answer)."""
    columns = list(frame.columns)
    return [dict(zip(columns, row)) for row in zip(*(frame[column].tolist() for column in columns))]


def known_user(rec: Recommender, name: str, user_id: int, year, month, n):
    """The context a user's Top-N is scored in, and the Top-N (one worker-thread call)."""
    return rec.context(user_id, year, month), rec.top_for_user(name, user_id, year, month, n)


@router.get(
    "/v1/users/{user_id}/recommendations",
    response_model=schemas.Recommendations,
    tags=["recommendations"],
    summary="A user's Top-N movies they have not rated",
)
async def user_recommendations(
    request: Request,
    service: Served,
    metrics: Meter,
    rec: Rec,
    user_id: UserId,
    n: Annotated[int, Query(ge=1, le=MAX_N, description=N_HELP)] = config.TOP_N,
    architecture: Annotated[Architecture | None, Query(description=MODEL_HELP)] = None,
    model: Annotated[Architecture | None, Query(description="The old name of `architecture`.")] = None,
    mode: Annotated[config.ServedMode, Query(description=MODE_HELP)] = config.DEFAULT_MODE,
    year: Annotated[int | None, Query(description=YEAR_HELP)] = None,
    month: Annotated[int | None, Query(ge=1, le=12, description=MONTH_HELP)] = None,
):
    architecture = Architecture(architecture or model or config.DEFAULT_ARCHITECTURE).value
    mode = config.ServedMode(mode).value
    request.state.model = name = model_name(architecture, mode)
    when, top = await call(service, metrics, known_user, rec, name, user_id, year, month, n)
    metrics.recommendations.labels(name).inc()
    return {
        "user_id": user_id,
        "model": name,
        "architecture": architecture,
        "mode": mode,
        "context": {"year": when[0], "month": when[1], "source": context_source(year, month)},
        "items": records(top),
    }


def new_person(rec: Recommender, name: str, person: schemas.LikedRequest):
    """The context, the liked movies given (with titles) and a new person's Top-N (one worker-thread call)."""
    who = (person.gender, person.age, person.occupation)
    top = rec.top_for_liked(name, person.liked, *who, person.year, person.month, person.n)
    return rec.context(None, person.year, person.month), rec.liked_movies(person.liked), top


@router.post(
    "/v1/recommendations",
    response_model=schemas.NewPersonRecommendations,
    tags=["recommendations"],
    summary="A new person's Top-N from the movies they like (two-stage models)",
)
async def person_recommendations(
    request: Request, service: Served, metrics: Meter, rec: Rec, person: Annotated[schemas.LikedRequest, Body()]
):
    architecture = Architecture(person.architecture).value
    request.state.model = name = model_name(architecture, "two_stage")
    when, given, top = await call(service, metrics, new_person, rec, name, person)
    metrics.recommendations.labels(name).inc()
    return {
        "user_id": None,
        "model": name,
        "architecture": architecture,
        "mode": "two_stage",
        "context": {"year": when[0], "month": when[1], "source": context_source(person.year, person.month, True)},
        "liked": records(given),
        "items": records(top),
    }


@router.get(
    "/v1/movies",
    response_model=schemas.Search,
    tags=["movies"],
    summary="Movies whose title contains a text, most liked first (to find MovieLens IDs)",
)
async def movies(
    service: Served,
    metrics: Meter,
    rec: Rec,
    q: Annotated[str, Query(description="Part of a title, any case, e.g. matrix")],
    limit: Annotated[
        int, Query(ge=1, le=config.SERVE["max_search"], description=f"How many, 1-{config.SERVE['max_search']}")
    ] = 20,
):
    found = await call(service, metrics, rec.search_movies, q, limit)
    return {"query": q, "items": records(found)}


# A route rather than prometheus_client.make_asgi_app mounted: a mount is missing from /openapi.json and has
# no route for the request metrics to be labelled with.
@router.get("/metrics", tags=["service"], summary="Prometheus metrics", response_class=Response)
async def prometheus(metrics: Meter):
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


# --- The app --------------------------------------------------------------------------------------------


@asynccontextmanager
async def lifespan(app: FastAPI):
    options, started = app.state.options, time.perf_counter()
    load = partial(start_up, options.processed_dir, options.models_dir, options.preload, SERVED, options.runtime)
    rec, problem = None, None
    try:
        rec = await anyio.to_thread.run_sync(load)
    except Unusable as error:  # the data itself: nothing can be recommended, but the worker says why
        problem = error
        log.error(json_line(event="unusable", problem=str(error), pid=os.getpid()))
    data = {
        "processed_dir": str(options.processed_dir),
        "models_dir": str(options.models_dir),
        "encoders_sha256": hashlib.sha256((options.processed_dir / "encoders.json").read_bytes()).hexdigest(),
        **({"users": len(rec.users), "movies": len(rec.movies), "ratings": len(rec.ratings)} if rec else {}),
    }
    service = Service(rec, anyio.CapacityLimiter(options.threads), data, 0.0, threading.Event(), problem)
    service.startup_seconds = round(time.perf_counter() - started, 2)
    app.state.service = service
    if rec is None:
        service.warm.set()  # nothing to warm
    else:
        threading.Thread(
            target=warm_in_background, args=(rec, options.preload, service.warm), name="warm-up", daemon=True
        ).start()
    log.info(
        json_line(
            event="ready" if problem is None else "degraded",
            startup_seconds=service.startup_seconds,
            models=options.preload,
            threads=options.threads,
            pid=os.getpid(),
            **data,
        )
    )
    yield
    app.state.metrics.close()


def create_app(
    processed_dir: Path = config.PROCESSED_DIR,
    models_dir: Path = config.MODELS_DIR,
    threads: int = config.SERVE["threads"],
    preload: list[str] | None = None,
    workers: int = 1,
    runtime: str = "litert",
) -> FastAPI:
    """The FastAPI app over the data in processed_dir and the models in models_dir. Nothing is loaded until
    the app starts.

    preload  model files to load and warm at start-up (default: service.preload_names); the others load on first use
    workers  how many worker processes serve this app (each builds its own; reported by /v1/health)
    runtime  what scores: the models' LiteRT files ("litert", no TensorFlow) or their .keras files ("keras")
    """
    app = FastAPI(
        title="MovieLens-1M AutoInt recommender",
        version="1",
        lifespan=lifespan,
        description="Top-N movies from DeepCTR's AutoInt (two-stage: EASE retrieval, AutoInt ranking). "
        "Users and movies are MovieLens IDs. Errors are JSON {error, message}: 404 unknown "
        "user or movie, 422 other bad input, 413 a body over "
        f"{config.SERVE['max_body_bytes']} bytes, 503 a model, table or data file the request needs is "
        "damaged or missing (the message names it and the command that rebuilds it; /v1/health lists them).",
        responses={
            404: {"model": schemas.Error, "description": "Unknown user or movie"},
            422: {"model": schemas.Error, "description": "Bad input; the message says what is valid"},
            503: {"model": schemas.Error, "description": "A file the request needs is damaged; rebuild it"},
        },
        exception_handlers={
            RecommendError: recommend_error,
            RequestValidationError: validation_error,
            HTTPException: http_error,
            Exception: crash,
        },
    )
    preload = preload_names() if preload is None else list(preload)
    app.state.options = ServiceOptions(Path(processed_dir), Path(models_dir), threads, preload, workers, runtime)
    app.state.metrics = metrics = Metrics()
    app.include_router(router)
    app.add_middleware(BodyLimit, limit=config.SERVE["max_body_bytes"])
    app.add_middleware(Observe, metrics=metrics)
    return app


def app_from_environment() -> FastAPI:
    """The app of one worker process, from the options serve_command left in the environment."""
    configure_logging()
    options = json.loads(os.environ[WORKER_OPTIONS])
    return create_app(
        Path(options["processed_dir"]),
        Path(options["models_dir"]),
        options["threads"],
        workers=options["workers"],
        runtime=options.get("runtime", "litert"),
    )
