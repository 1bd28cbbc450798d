"""What the HTTP API does around every request: the body size limit (413), one JSON log line, and the
Prometheus figures (prometheus-client: http_requests_total and http_request_duration_seconds by route, method
and status, recommendations_total by model, recommender_calls_in_progress).

Both middlewares are plain ASGI, so that they also see what no route answers: a 413 from the body limit, an
unknown path, an error handler's answer or a crash.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

from pipeline import config_serving
from pipeline.serving.startup import json_line, log


def shared_metrics() -> bool:
    """Several workers (PROMETHEUS_MULTIPROC_DIR set): each writes its own files there and /metrics sums them."""
    return "PROMETHEUS_MULTIPROC_DIR" in os.environ


@dataclass
class Metrics:
    """The app's counters. One process: in the app's own registry, so that several apps (tests) never share or
    clash over them; several workers: in prometheus-client's multiprocess files (registry None)."""

    registry: CollectorRegistry | None = field(
        default_factory=lambda: None if shared_metrics() else CollectorRegistry()
    )

    def __post_init__(self):
        labels, registry = ("route", "method", "status"), self.registry
        self.requests = Counter("http_requests", "HTTP requests answered", labels, registry=registry)
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request",
            labels,
            buckets=config_serving.SERVE["latency_buckets_s"],
            registry=registry,
        )
        self.recommendations = Counter("recommendations", "Top-N lists served", ("model",), registry=registry)
        self.in_progress = Gauge(
            "recommender_calls_in_progress",
            "Recommender calls running or waiting for a thread",
            registry=registry,
            **({} if registry is not None else {"multiprocess_mode": "livesum"}),
        )

    def exposition(self) -> bytes:
        registry = self.registry
        if registry is None:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)

    def close(self) -> None:
        if self.registry is None:
            multiprocess.mark_process_dead(os.getpid())


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

    def __init__(self, app, metrics: Metrics):
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
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(seconds)
            log.info(
                json_line(
                    ts=datetime.now(UTC).isoformat(timespec="milliseconds"),
                    method=scope["method"],
                    path=scope["path"],
                    query=scope["query_string"].decode("latin-1"),
                    route=route,
                    status=status[0],
                    latency_ms=round(seconds * 1000, 2),
                    model=scope.get("state", {}).get("model"),
                    pid=os.getpid(),
                )
            )
