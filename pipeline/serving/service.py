"""`make serve` (`python -m pipeline serve`): the HTTP API (http_api.py) under uvicorn, on 127.0.0.1:8000.

Concurrency: a request is a few milliseconds of CPU, most of it Python that holds the GIL, so threads of one
process cannot use a second core. The service therefore runs config_serving.SERVE["workers"] worker processes (one per
core), each loading its own Recommender (the models as LiteRT files: no TensorFlow, ~250 MB each).

Connections are spread over the workers by the kernel: each worker opens its own listening socket on the same
port with SO_REUSEPORT, and Linux hashes every new connection to one of them. (With one socket shared by all
workers, as uvicorn's and gunicorn's supervisors do it, the worker that wakes first accepts a burst of new
connections at once; 16 keep-alive connections opened together then often land on one worker, which serves
them all while the other idles.) A worker's socket starts listening only once its app has started, so no
connection waits on a worker that is still loading. The supervisor here starts the workers, restarts one that
dies, and on SIGINT or SIGTERM stops them all (each finishes its requests in flight first).

Metrics are summed over the workers through PROMETHEUS_MULTIPROC_DIR. Monitoring: one JSON line per request on
stderr (method, path, route, status, latency_ms, model, pid; see middleware.py), plus the start-up, warm and
error lines of startup.py and the supervisor's own (worker started, died, restarted).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import tempfile
import time
from pathlib import Path

import typer

from pipeline import config, config_serving
from pipeline.retrieval import retriever
from pipeline.serving.errors import RecommendError
from pipeline.serving.served_models import check_trained
from pipeline.serving.startup import WORKER_OPTIONS, configure_logging, json_line, log, preload_names
from pipeline.serving.terminal import fail

APP = "pipeline.serving.http_api:app_from_environment"


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port with SO_REUSEPORT, not yet listening (asyncio's server listens on it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def run_worker(host: str, port: int, options: dict) -> None:
    """One worker process: uvicorn serving the app of the environment's options on its own socket."""
    import uvicorn

    sock = listening_socket(host, port)
    server = uvicorn.Server(uvicorn.Config(APP, factory=True, **options))
    server.run(sockets=[sock])


def free_port_for(host: str) -> int:
    with listening_socket(host, 0) as sock:
        return sock.getsockname()[1]


def supervise(host: str, port: int, workers: int, options: dict) -> None:
    """Run `workers` worker processes on host:port until SIGINT or SIGTERM; a worker that dies is restarted."""
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter each: nothing of this process is shared
    port = port or free_port_for(host)
    stopping = False

    def start() -> multiprocessing.Process:
        process = spawn.Process(target=run_worker, args=(host, port, options), name="serve-worker")
        process.start()
        log.info(json_line(event="worker_started", pid=process.pid, host=host, port=port))
        return process

    def stop(signum, _frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    running = [start() for _ in range(workers)]
    while not stopping:
        for index, process in enumerate(running):
            if not process.is_alive() and not stopping:
                log.error(json_line(event="worker_died", pid=process.pid, exit_code=process.exitcode))
                time.sleep(0.5)  # a worker that cannot start at all must not spin the supervisor
                running[index] = start()
        time.sleep(0.2)
    for process in running:
        if process.is_alive():
            os.kill(process.pid, signal.SIGTERM)  # uvicorn's graceful shutdown: requests in flight finish
    deadline = time.monotonic() + config_serving.SERVE["graceful_shutdown_s"] + 5
    for process in running:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()


def serve_command(
    host: str = typer.Option(
        config_serving.SERVE["host"],
        help="Address to listen on. The default answers this machine only; 0.0.0.0 (or a LAN address) lets others in.",
    ),
    port: int = typer.Option(config_serving.SERVE["port"], min=0, max=65535),
    processed_dir: Path = typer.Option(config.PROCESSED_DIR),
    models_dir: Path = typer.Option(config.MODELS_DIR),
    workers: int = typer.Option(
        config_serving.SERVE["workers"], min=1, help="Worker processes (each loads the data and models: ~250 MB each)."
    ),
    threads: int = typer.Option(
        config_serving.SERVE["threads"], min=1, help="Threads per worker that run the recommender."
    ),
    runtime: config.Runtime = typer.Option(config.Runtime.litert, help=config.RUNTIME_HELP),
) -> None:
    """Serve recommendations over HTTP (FastAPI under uvicorn); /docs describes the endpoints."""
    configure_logging()
    try:
        if not (processed_dir / "encoders.json").is_file():
            raise RecommendError(f"no processed data in {processed_dir}; run `make preprocess`")
        if not retriever.path("random", models_dir).is_file():
            raise RecommendError(f"no retrieval stage in {models_dir}; run `make retrieval`")
        check_trained(models_dir, preload_names())
    except RecommendError as error:
        fail(error)
    # uvicorn's own lines (start-up, errors) stay; its access log would repeat the JSON lines.
    options = dict(
        access_log=False,
        log_level="info",
        limit_concurrency=config_serving.SERVE["max_connections"],
        timeout_graceful_shutdown=config_serving.SERVE["graceful_shutdown_s"],
    )
    with tempfile.TemporaryDirectory(prefix="serve-metrics-") as metrics_dir:
        if workers > 1:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        os.environ[WORKER_OPTIONS] = json.dumps(
            {
                "processed_dir": str(processed_dir.resolve()),
                "workers": workers,
                "models_dir": str(models_dir.resolve()),
                "threads": threads,
                "runtime": runtime.value,
            }
        )
        if workers == 1:
            import uvicorn  # here, not at the top: 0.4-1 s that every other command of the CLI would pay

            uvicorn.run(APP, factory=True, host=host, port=port, **options)
        else:
            supervise(host, port, workers, options)
