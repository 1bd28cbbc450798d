"""A service worker's start-up: load the processed data and the precomputed tables (then it is ready), warm
the default models in a background thread (then it is warm), and the JSON log lines it writes on the way.

At start-up each worker loads the processed data and the default models' precomputed Top-100 tables, and is
then ready: default requests are answered from those tables. A background thread then loads the default
models (config_serving.SERVE["preload_modes"]) and asks each for one Top-N, so that loading and tracing are done
before most requests that must be scored (one that comes earlier waits for its model); /v1/health says
`"warm": true` when that is done. Requests share that one Recommender, which nothing changes after start-up
except loading a model on its first use (under the Recommender's lock).

A damaged model, table or retrieval stage does not stop a worker: start-up checks every served model's files
against their manifests (no model is loaded for that), logs one "unusable" line per problem, and the worker
serves the rest (degraded); what needs the damaged file answers 503 (http_errors.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
import traceback
from functools import partial
from pathlib import Path

from pipeline import config, config_serving
from pipeline.serving.errors import Unusable
from pipeline.serving.recommender import Recommender

log = logging.getLogger("pipeline.serving.startup")
# How the uvicorn supervisor tells its worker processes what to serve (they import http_api afresh).
WORKER_OPTIONS = "PIPELINE_SERVE_OPTIONS"


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
    """The models loaded and warmed at start-up: those of config_serving.SERVE["preload_modes"]."""
    return [
        config.model_name(architecture, mode)
        for mode in config_serving.SERVE["preload_modes"]
        for architecture in config.ARCHITECTURES
    ]


def start_up(processed_dir: Path, models_dir: Path, preload: list[str], served=(), runtime="litert") -> Recommender:
    """The Recommender, with the precomputed tables of `preload` read, the lazy indexes built, and the files of
    the `served` models checked (one "unusable" log line per problem). Unusable if the data itself is."""
    rec = Recommender.load(processed_dir, models_dir, runtime=runtime)  # litert: no TensorFlow in the worker
    user = int(rec.encoders.classes["user_id"][0])
    for name in preload:
        with contextlib.suppress(Unusable):  # a damaged table: /v1/health and its requests say so
            if rec.precomputed(name) is not None:
                rec.top_for_user(name, user)  # answered from the table: no model needed
    rec.search_movies("a")
    rec.profile(user)
    for name in served:
        for problem in filter(None, rec.problems(name)):
            log.error(json_line(event="unusable", model=name, problem=problem, pid=os.getpid()))
    return rec


def warm_up(rec: Recommender, names: list[str]) -> None:
    """Top-Ns per model (default and scored now, and one for a new person), so that loading, tracing and lazy
    indexes happen before the first request; the answers are thrown away and nothing in `rec` changes but its
    caches."""
    user = int(rec.encoders.classes["user_id"][0])
    for name in names:
        steps = [
            partial(rec.top_for_user, name, user),  # a default request: the precomputed table if fresh
            partial(rec.top_for_user, name, user, month=1),  # scored now: loads and traces the model
        ]
        if name in config.TWO_STAGE_MODELS:
            liked = rec.liked_history(user)["movie_id"].head(5).tolist()
            steps.append(partial(rec.top_for_liked, name, liked or [int(rec.encoders.classes["movie_id"][0])]))
        for step in steps:
            with contextlib.suppress(Unusable):  # a damaged file: /v1/health and the requests that need it say so
                step()
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
