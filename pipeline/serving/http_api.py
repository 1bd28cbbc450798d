"""The recommending core behind HTTP: the FastAPI app of one worker process, whose every answer comes from a
Recommender. The app is assembled here from its parts: the endpoints (http_routes.py), the error answers
(http_errors.py), the worker's shared state (http_state.py) and the middleware (middleware.py: the body limit,
the request log, Prometheus metrics); GET /docs and /openapi.json are FastAPI's description of all of it.

A worker whose model, table or even data is damaged still starts (degraded): /v1/health lists the problems and
everything that does not need those files is served. The Recommender is loaded once, by the app's lifespan
(uvicorn runs it before it accepts a connection, so ready means loaded), and handed to the routes by `Depends`.
`python -m pipeline serve` (service.py) runs the app under uvicorn.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import anyio
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from pipeline import config, config_serving
from pipeline.serving import schemas
from pipeline.serving.errors import RecommendError, Unusable
from pipeline.serving.http_errors import crash, http_error, recommend_error, validation_error
from pipeline.serving.http_routes import router
from pipeline.serving.http_state import SERVED, Service, ServiceOptions
from pipeline.serving.middleware import BodyLimit, Metrics, Observe
from pipeline.serving.startup import (
    WORKER_OPTIONS,
    configure_logging,
    json_line,
    log,
    preload_names,
    start_up,
    warm_in_background,
)


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
    warming = None
    if rec is None:
        service.warm.set()  # nothing to warm
    else:
        warming = threading.Thread(
            target=warm_in_background, args=(rec, options.preload, service.warm), name="warm-up", daemon=True
        )
        warming.start()
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
    if warming is not None:
        # A worker that stops while warming waits for it: ALS's fold-in (implicit's OpenMP loop; the retrieval of
        # a catalogue above config.RETRIEVAL["ease_max_movies"]) takes the GIL inside its parallel region, and a
        # thread still in there when the interpreter finalizes aborts the process ("terminate called without an
        # active exception"; 3 of 36 runs of a two-request service on ALS, 0 of 24 with this join).
        await anyio.to_thread.run_sync(warming.join)
    app.state.metrics.close()


def create_app(
    processed_dir: Path = config.PROCESSED_DIR,
    models_dir: Path = config.MODELS_DIR,
    threads: int = config_serving.SERVE["threads"],
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
        f"{config_serving.SERVE['max_body_bytes']} bytes, 503 a model, table or data file the request needs is "
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
    app.add_middleware(BodyLimit, limit=config_serving.SERVE["max_body_bytes"])
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
