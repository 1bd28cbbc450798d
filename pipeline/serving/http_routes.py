"""The HTTP API's endpoints (an APIRouter) and the answers they shape from the Recommender's frames.

  GET  /v1/health                      readiness: models loaded, when they were trained, the data's checksum, and
                                       what cannot be used ("degraded")
  GET  /v1/users/{id}                   a user's profile
  GET  /v1/users/{id}/liked             the movies the user rated 4 or 5, newest first
  GET  /v1/users/{id}/recommendations   the user's Top-N (n, model, mode, year, month)
  POST /v1/recommendations              a new person's Top-N from the MovieLens IDs of movies they like
  GET  /v1/movies?q=                    movies whose title contains q, most liked first (to find IDs)
  GET  /metrics                         Prometheus: request counts and latency histograms by route and status

Movies and users are MovieLens IDs in and out; the request and response bodies are schemas.py's. Every core
call runs through http_state.call; what it raises is answered by http_errors.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run time.
import os
from typing import Annotated

from fastapi import APIRouter, Body, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from pipeline import config, config_serving
from pipeline.serving import schemas
from pipeline.serving.errors import model_name
from pipeline.serving.http_state import SERVED, Meter, Rec, Served, call
from pipeline.serving.recommender import Recommender
from pipeline.serving.schemas import MAX_N, MODE_HELP, MODEL_HELP, MONTH_HELP, N_HELP, YEAR_HELP, Architecture
from pipeline.serving.served_data import context_source

DEFAULT_MODEL = config.model_name(config.DEFAULT_ARCHITECTURE, config.DEFAULT_MODE)
UserId = Annotated[int, PathParam(description="MovieLens user ID (1-6040 in ML-1M)")]

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
        int,
        Query(
            ge=1, le=config_serving.SERVE["max_search"], description=f"How many, 1-{config_serving.SERVE['max_search']}"
        ),
    ] = 20,
):
    found = await call(service, metrics, rec.search_movies, q, limit)
    return {"query": q, "items": records(found)}


# A route rather than prometheus_client.make_asgi_app mounted: a mount is missing from /openapi.json and has
# no route for the request metrics to be labelled with.
@router.get("/metrics", tags=["service"], summary="Prometheus metrics", response_class=Response)
async def prometheus(metrics: Meter):
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
