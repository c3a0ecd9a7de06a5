"""Domain errors and the one place that turns every error into RFC 9457 problem+json."""

import json
import logging
from http import HTTPStatus
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.db import is_unavailable
from app.routers.problems import document_problems

logger = logging.getLogger("kenes.errors")

PROBLEM_MEDIA_TYPE = "application/problem+json"
RETRY_AFTER_UNAVAILABLE = "5"


class AppError(Exception):
    """Base of the errors services raise; status and slug say how they reach the client."""

    status: int = 400
    slug: str = "bad-request"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}


class BadRequest(AppError):
    status, slug = 400, "bad-request"


class Unauthorized(AppError):
    status, slug = 401, "unauthorized"

    def __init__(self, detail: str = "Not authenticated") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(AppError):
    status, slug = 403, "forbidden"


class NotFound(AppError):
    status, slug = 404, "not-found"


class Conflict(AppError):
    status, slug = 409, "conflict"


class TooLarge(AppError):
    status, slug = 413, "payload-too-large"


class Invalid(AppError):
    status, slug = 422, "validation-error"


class TooManyRequests(AppError):
    status, slug = 429, "rate-limited"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})


class Unavailable(AppError):
    status, slug = 503, "service-unavailable"

    def __init__(self, detail: str = "The database cannot be reached; retry shortly") -> None:
        super().__init__(detail, headers={"Retry-After": RETRY_AFTER_UNAVAILABLE})


_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    429: "rate-limited",
    500: "internal-error",
    503: "service-unavailable",
}


def problem_type(status: int) -> str:
    return f"urn:kenes:problem:{_SLUGS.get(status, HTTPStatus(status).phrase.lower())}"


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        # An error may echo what the client sent (a key in `loc`); a lone surrogate in it must
        # not turn the refusal into a 500.
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return text.encode("utf-8", "replace")


def problem(
    status: int,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    type_: str | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": type_ or problem_type(status),
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    return ProblemResponse(body, status_code=status, headers=headers)


def _clean_errors(raw: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "loc": [part if isinstance(part, int | str) else str(part) for part in err["loc"]],
            "msg": str(err["msg"]),
            "type": str(err["type"]),
        }
        for err in raw
    ]


async def _app_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, AppError)  # noqa: S101 - registered for AppError only
    return problem(
        error.status,
        error.detail,
        errors=error.errors,
        headers=error.headers,
        type_=f"urn:kenes:problem:{error.slug}",
    )


async def _validation_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)  # noqa: S101
    raw = list(error.errors())
    errors = _clean_errors(raw)
    if any(err["type"] == "json_invalid" for err in raw):
        return problem(400, "The request body is not valid JSON", errors=errors)
    return problem(422, "The request does not match the expected schema", errors=errors)


async def _http_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)  # noqa: S101
    return problem(error.status_code, str(error.detail), headers=dict(error.headers or {}))


# SQLSTATEs that mean "this text cannot be stored" (NUL, characters outside UTF-8): the client's
# input, not our bug. The request middleware refuses such JSON and form text up front; this
# covers what it cannot see (text inside uploaded files).
_UNSTORABLE_TEXT = {"22021", "22P05"}


def _sqlstate(error: BaseException) -> str | None:
    current: BaseException | None = error
    for _ in range(5):
        if current is None:
            return None
        state = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(state, str):
            return state
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return None


async def _database_error(_: Request, error: Exception) -> JSONResponse:
    if is_unavailable(error):
        logger.warning("database unavailable: %s", type(error).__name__)
        return problem(
            503,
            "The database cannot be reached; retry shortly",
            headers={"Retry-After": RETRY_AFTER_UNAVAILABLE},
        )
    if _sqlstate(error) in _UNSTORABLE_TEXT:
        logger.warning("unstorable text refused: %s", _sqlstate(error))
        message = "text that cannot be stored (NUL characters?)"
        return problem(
            422,
            f"The request holds {message}",
            errors=[{"loc": ["body"], "msg": message, "type": "unstorable_text"}],
        )
    raise error  # a real bug: the request middleware logs it and answers 500


def install_error_handlers(app: FastAPI) -> None:
    """The handlers, and an OpenAPI document that describes what they send."""
    document_problems(app)
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(SQLAlchemyError, _database_error)
    app.add_exception_handler(ConnectionError, _database_error)
    app.add_exception_handler(TimeoutError, _database_error)
    # The submission hot path talks to PostgreSQL through asyncpg directly.
    app.add_exception_handler(asyncpg.PostgresError, _database_error)
    app.add_exception_handler(asyncpg.InterfaceError, _database_error)
    app.add_exception_handler(asyncpg.InternalClientError, _database_error)
