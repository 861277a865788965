"""The model server's HTTP API (FastAPI): predictions, health, status, metrics, and the control API delivery drives.

Every answer that is not a prediction is JSON with an ``error`` sentence: a body that is not JSON is 400, one over the
size limit 413, rows the model cannot score 422 (each problem naming its row and field), no production version yet
503. An error nobody foresaw is a JSON 500 that tells nothing of the server's insides; its traceback goes to the log.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from conveyor.serving.metrics import NO_VERSION
from conveyor.serving.routing import SHADOW, CanaryMode, NotReadyError
from conveyor.serving.server import CanaryConflictError, InjectedFaultError, ModelServer
from conveyor.serving.signature import MAX_PROBLEMS, InvalidRowsError, Problem
from conveyor.serving.versions import LoadedVersion, UnknownVersionError, VersionUnavailableError

# Batches up to this many rows are scored on the event loop (a thread hop costs more than they do); larger ones in a
# worker thread, so that health checks and small requests are not held up behind them.
INLINE_ROWS = 64
_LOG = logging.getLogger("conveyor.serving")
Body = TypeVar("Body", bound=BaseModel)


class ApiError(Exception):
    """An answer other than success: its HTTP status, the sentence the caller reads, and any details."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None, **details: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.headers, self.details = status, message, headers, details


class PredictRequest(BaseModel):
    """The body of ``POST /v1/predict``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    rows: list[dict[str, Any]] = Field(min_length=1, description="Rows to score, each a JSON object: column → value.")
    key: str | None = Field(
        None, max_length=256, description="Who asks (a machine id): the same key always reaches the same version."
    )


class CanaryRequest(BaseModel):
    """The body of ``POST /control/canary``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    version: int = Field(ge=1, description="The version to serve beside production.")
    weight: float = Field(ge=0, le=100, allow_inf_nan=False, description="Share of requests in percent, 0 to 100.")
    mode: CanaryMode = Field("split", description="split: the canary answers its share; shadow: production answers.")


def _error(status: int, message: str, headers: Mapping[str, str] | None = None, **details: Any) -> JSONResponse:
    return JSONResponse({"error": message, **details}, status_code=status, headers=headers)


def _problem(error: Any) -> Problem:
    """A pydantic error as a problem naming its field (and its row, inside ``rows``)."""
    location = [str(part) for part in error["loc"]]
    row = int(location[1]) if location[:1] == ["rows"] and len(location) > 1 else None
    field = ".".join(location) or None
    return Problem(row=row, field=field, problem=f"{field}: {error['msg']}" if field else str(error["msg"]))


async def request_body(request: Request, limit: int) -> bytes:
    """The request's body; 413 when it is over ``limit`` bytes by its Content-Length or by the bytes that arrive."""
    too_large = ApiError(413, f"The request body is larger than the limit of {limit:,} bytes.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():  # a chunked body declares no length: count what arrives
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def parsed_body(body: bytes, model: type[Body]) -> Body:
    """The body as ``model``; 400 when it is not JSON, 422 naming the first field that is wrong."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as error:  # RecursionError: nested deeper than the parser goes
        raise ApiError(400, f"The request body is not JSON: {error}.") from None
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = [_problem(e) for e in error.errors()[:MAX_PROBLEMS]]
        raise ApiError(
            422, f"The request is not valid: {problems[0].problem}.", problems=[p.model_dump() for p in problems]
        ) from None


async def scored(server: ModelServer, version: LoadedVersion, alias: str, rows: list[dict[str, Any]]) -> list[float]:
    """A version's probabilities for rows; 422 naming each row and field that cannot be scored."""
    try:
        if len(rows) <= INLINE_ROWS:
            probabilities = server.score(version, alias, rows)
        else:
            probabilities = await run_in_threadpool(server.score, version, alias, rows)
    except InvalidRowsError as error:
        raise ApiError(422, str(error), problems=[p.model_dump() for p in error.problems]) from None
    except InjectedFaultError as error:
        raise ApiError(503, str(error)) from None
    predictions: list[float] = probabilities.tolist()  # Python floats holding the float32 values exactly
    return predictions


async def _shadow(server: ModelServer, version: LoadedVersion, rows: list[dict[str, Any]]) -> None:
    """Score rows with the shadowed canary after production answered: counted under alias shadow, answer dropped."""
    started, status = time.perf_counter(), 200
    try:
        await scored(server, version, SHADOW, rows)
    except ApiError as error:
        status = error.status
    except Exception:
        status = 500
        _LOG.exception("Shadow scoring by v%d failed.", version.number)
    finally:
        server.metrics.record(str(version.number), SHADOW, time.perf_counter() - started, status)


def serving_app(server: ModelServer) -> FastAPI:
    """The HTTP API of one model's server; its lifespan follows the production alias in the background."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        following = asyncio.create_task(server.follow_production())
        try:
            yield
        finally:
            following.cancel()
            with suppress(asyncio.CancelledError):
                await following

    app = FastAPI(
        title=f"Conveyor model server: {server.name}",
        lifespan=lifespan,
        docs_url=None,  # the documentation pages load scripts from a CDN; /openapi.json stays
        redoc_url=None,
    )
    limit = server.settings.serving_max_body_bytes

    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return _error(error.status, error.message, error.headers, **error.details)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        return _error(error.status_code, str(error.detail), error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = [_problem(e) for e in error.errors()[:MAX_PROBLEMS]]
        return _error(422, "The request is not valid.", problems=[p.model_dump() for p in problems])

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> JSONResponse:
        _LOG.error("%s %s failed", request.method, request.url.path, exc_info=error)
        return _error(500, "The server failed to answer this request; the error is in its log.")

    @app.post("/v1/predict", openapi_extra={"requestBody": _json_body(PredictRequest)})
    async def predict(request: Request) -> JSONResponse:
        """Probabilities for rows, from production or, for its share of keys, the canary."""
        started, version, alias, status = time.perf_counter(), NO_VERSION, NO_VERSION, 500
        try:
            asked = parsed_body(await request_body(request, limit), PredictRequest)
            try:
                route = server.routing.route(asked.key)
            except NotReadyError:
                raise ApiError(503, f"Not ready: {server.not_ready_reason()}.") from None
            version, alias = str(route.answer.number), route.alias
            predictions = await scored(server, route.answer, alias, asked.rows)
            status = 200
        except ApiError as error:
            status = error.status
            raise
        finally:
            server.metrics.record(version, alias, time.perf_counter() - started, status)
        answer = {"predictions": predictions, "model": server.name, "version": route.answer.number, "alias": alias}
        mirrored = BackgroundTask(_shadow, server, route.mirror, asked.rows) if route.mirror else None
        return JSONResponse(answer, headers={"X-Model-Version": version, "X-Model-Alias": alias}, background=mirrored)

    @app.get("/livez")
    async def livez() -> dict[str, bool]:
        """200 while the process runs."""
        return {"alive": True}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """200 once a production version is loaded and warmed; 503 with the reason before."""
        production = server.routing.production
        if production is None:
            return JSONResponse({"ready": False, "reason": server.not_ready_reason()}, status_code=503)
        return JSONResponse({"ready": True, "version": production.number})

    @app.get("/status")
    async def status() -> dict[str, Any]:
        """The versions served, the canary, the last version that could not be served, and the worker count."""
        return server.status().model_dump(mode="json")

    @app.get("/metrics")
    async def metrics() -> Response:
        """Every metric in Prometheus's text format."""
        return Response(server.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(control_router(server))
    return app


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    """An OpenAPI request body of a model (the handlers read their bodies themselves, to count and check them)."""
    return {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}


def control_router(server: ModelServer) -> APIRouter:
    """``/control``: open, re-weigh and close the canary; with a bearer token when one is configured."""
    token = server.settings.serving_control_token

    async def authorized(request: Request) -> None:
        if token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
            raise ApiError(401, "The control API needs the server's bearer token.", {"WWW-Authenticate": "Bearer"})

    control = APIRouter(prefix="/control", dependencies=[Depends(authorized)])
    limit = server.settings.serving_max_body_bytes

    @control.post("/canary", openapi_extra={"requestBody": _json_body(CanaryRequest)})
    async def open_canary(request: Request) -> dict[str, Any]:
        """Serve a version beside production (or re-weigh the open canary); the canary as /status shows it."""
        asked = parsed_body(await request_body(request, limit), CanaryRequest)
        try:
            await server.open_canary(asked.version, asked.weight, asked.mode)
        except NotReadyError as error:
            raise ApiError(503, f"No canary before production is served: {error}.") from None
        except UnknownVersionError as error:
            raise ApiError(404, str(error)) from None
        except (CanaryConflictError, VersionUnavailableError) as error:
            raise ApiError(409, str(error)) from None
        return await current_canary()

    @control.get("/canary")
    async def current_canary() -> dict[str, Any]:
        """The open canary as /status shows it (``canary`` is null when none is open)."""
        return {"canary": canary.model_dump(mode="json") if (canary := server.status().canary) else None}

    @control.delete("/canary")
    async def close_canary() -> dict[str, int | None]:
        """Stop serving the canary: production answers every request again. Closing no canary is no error."""
        closed = await server.close_canary()
        return {"closed": closed.version.number if closed else None}

    return control
