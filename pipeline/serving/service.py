"""`make serve` (`python -m pipeline serve`): the HTTP API (http_api.py) under uvicorn, on 127.0.0.1:8000.

At start-up each worker loads the processed data and the default models' precomputed Top-100 tables, and is
then ready: default requests are answered from those tables. A background thread then loads the default
models (config.SERVE["preload_modes"]) and asks each for one Top-N, so that loading and tracing are done
before most requests that must be scored (one that comes earlier waits for its model); /v1/health says
`"warm": true` when that is done. Requests share that one Recommender, which nothing changes after start-up
except loading a model on its first use (under the Recommender's lock).

Concurrency: a Top-N is ~20 ms of CPU, nine tenths of it Python (pandas, TensorFlow's argument handling)
that holds the GIL, so threads of one process cannot use a second core. The service therefore runs
config.SERVE["workers"] uvicorn worker processes (one per core; each loads its own Recommender, ~1 GB);
uvicorn's supervisor restarts a worker that dies. Metrics are then summed over the workers through
PROMETHEUS_MULTIPROC_DIR.

Monitoring: one JSON line per request on stderr (method, path, route, status, latency_ms, model, pid; see
middleware.py), plus the start-up, warm and error lines written here.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import typer

from pipeline import config, quiet_imports
from pipeline.retrieval import ease
from pipeline.serving.recommender import Recommender, RecommendError, check_trained
from pipeline.serving.terminal import fail

log = logging.getLogger("pipeline.serving.service")
# How the uvicorn supervisor tells its worker processes what to serve (they import http_api afresh).
WORKER_SETTINGS = "PIPELINE_SERVE_SETTINGS"


def json_line(**fields) -> str:
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def configure_logging() -> None:
    """Request lines go to stderr as they are (each one JSON object)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False


def preload_names() -> list[str]:
    """The models loaded and warmed at start-up: those of config.SERVE["preload_modes"]."""
    return [
        config.model_name(architecture, mode)
        for mode in config.SERVE["preload_modes"]
        for architecture in config.ARCHITECTURES
    ]


def start_up(processed_dir: Path, models_dir: Path, preload: list[str]) -> Recommender:
    """The Recommender, with the precomputed tables of `preload` read and the lazy indexes built."""
    tf = quiet_imports.tensorflow()
    try:
        # A request scores ~100 rows: TensorFlow's thread pools gain nothing there, and with a pool per worker
        # process they only oversubscribe the cores (and spin while they wait).
        tf.config.threading.set_intra_op_parallelism_threads(config.SERVE["tf_threads"])
        tf.config.threading.set_inter_op_parallelism_threads(config.SERVE["tf_threads"])
    except RuntimeError:
        pass  # TensorFlow already ran in this process (an app built in-process, e.g. by a test): keep its pools
    rec = Recommender.load(processed_dir, models_dir)
    user = int(rec.encoders.classes["user_id"][0])
    for name in preload:
        if rec.precomputed(name) is not None:
            rec.top_for_user(name, user)  # answered from the table: no model needed
    rec.search_movies("a")
    rec.profile(user)
    return rec


def warm_up(rec: Recommender, names: list[str]) -> None:
    """Top-Ns per model (default and scored now, and one for a new person), so that loading, tracing and lazy
    indexes happen before the first request; the answers are thrown away and nothing in `rec` changes but its
    caches."""
    user = int(rec.encoders.classes["user_id"][0])
    for name in names:
        rec.top_for_user(name, user)  # a default request: the precomputed table if fresh
        rec.top_for_user(name, user, month=1)  # scored now: loads and traces the model
        if name in config.TWO_STAGE_MODELS:
            liked = rec.liked_history(user)["movie_id"].head(5).tolist()
            rec.top_for_liked(name, liked or [int(rec.encoders.classes["movie_id"][0])])
    rec.search_movies("a")
    rec.profile(user)


def warm_in_background(rec: Recommender, names: list[str], done: threading.Event) -> None:
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
    # Here, not at the top: FastAPI, pydantic, prometheus-client and uvicorn take 0.4-1 s to import (python -X
    # importtime), which every other command of the CLI (e.g. `recommend --user 3`) would pay.
    import uvicorn

    from pipeline.serving import http_api

    configure_logging()
    try:
        if not (processed_dir / "encoders.json").is_file():
            raise RecommendError(f"no processed data in {processed_dir}; run `make preprocess`")
        if not ease.path("random", models_dir).is_file():
            raise RecommendError(f"no retrieval stage in {models_dir}; run `make retrieval`")
        check_trained(models_dir, preload_names())
    except RecommendError as error:
        fail(error)
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
        uvicorn.run(http_api.create_app(processed_dir, models_dir, threads), **options)
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
            "pipeline.serving.http_api:app_from_environment",
            factory=True,
            workers=workers,
            timeout_worker_healthcheck=config.SERVE["worker_healthcheck_s"],
            **options,
        )
