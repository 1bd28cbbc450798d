"""One HTTP worker's shared state and how a route is handed it: what create_app was asked to serve
(ServiceOptions), what the app's lifespan loaded (Service: the Recommender, loaded once), FastAPI dependencies
(`Depends`) that give a route the Service, the Recommender and the metrics, and `call`, which runs a core call
off the event loop.

Core calls run on a bounded pool of config_serving.SERVE["threads"] threads (anyio's thread pool behind a
CapacityLimiter) while the event loop parses, validates and writes JSON; more requests wait their turn in order
instead of oversubscribing the cores.
"""

# No `from __future__ import annotations`: FastAPI reads the dependencies' annotations at run time.
import threading
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated

import anyio
from fastapi import Depends, Request

from pipeline import config
from pipeline.serving.errors import Unusable
from pipeline.serving.middleware import Metrics
from pipeline.serving.recommender import Recommender

# Every model a worker serves: checked at start-up and reported by /v1/health.
SERVED = config.models_of(*config.SERVED_MODES)


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


async def call(service: Service, metrics: Metrics, function, *args, **kwargs):
    """Run a core function on a worker thread, at most `threads` at once; the others wait in order."""
    metrics.in_progress.inc()
    try:
        return await anyio.to_thread.run_sync(partial(function, *args, **kwargs), limiter=service.limiter)
    finally:
        metrics.in_progress.dec()
