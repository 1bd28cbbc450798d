"""The HTTP API's error answers: HTTP status + JSON {"error": kind, "message": what was wrong and what is valid}.

404 for an unknown user or movie (NotFound), 422 for any other bad input (a RecommendError, or what FastAPI's
validation refuses), 503 for a request that needs a missing, damaged or unreadable file (Unusable: "file" and
"rebuild" name it and the command that rebuilds it), 404/405 for an unknown endpoint or method; a bug answers
500 and logs its traceback. (413, a body over config_serving.SERVE["max_body_bytes"], is middleware.BodyLimit's.)
"""

from __future__ import annotations

import traceback

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from pipeline import manifests
from pipeline.serving.errors import NotFound, RecommendError, Unusable
from pipeline.serving.startup import json_line, log


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
