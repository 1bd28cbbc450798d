"""`make serve` (`python -m pipeline serve`): the HTTP API (http_api.py) under uvicorn, on 127.0.0.1:8000.

Concurrency: a Top-N is ~20 ms of CPU, nine tenths of it Python (pandas, TensorFlow's argument handling)
that holds the GIL, so threads of one process cannot use a second core. The service therefore runs
config.SERVE["workers"] uvicorn worker processes (one per core; each loads its own Recommender, ~1 GB; their
start-up is startup.py); uvicorn's supervisor restarts a worker that dies. Metrics are then summed over the
workers through PROMETHEUS_MULTIPROC_DIR.

Monitoring: one JSON line per request on stderr (method, path, route, status, latency_ms, model, pid; see
middleware.py), plus the start-up, warm and error lines of startup.py.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import typer

from pipeline import config
from pipeline.retrieval import retriever
from pipeline.serving.recommender import RecommendError, check_trained
from pipeline.serving.startup import WORKER_OPTIONS, configure_logging, preload_names
from pipeline.serving.terminal import fail


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
        if not retriever.path("random", models_dir).is_file():
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
        os.environ[WORKER_OPTIONS] = json.dumps(
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
