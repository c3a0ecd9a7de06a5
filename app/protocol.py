"""HTTP details clients rely on: the full `Allow` of a 405, and RFC 6750's bearer challenge."""

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import Scope

from app.errors import Unauthorized, problem

_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route answers at this request's path.

    Starlette's own 405 names only the methods of the first route whose path matched, so
    `PUT /questionnaires/{id}` said `Allow: GET` although PATCH and DELETE exist there too.
    Each method is tried against the router as a request would be (included routers too).
    """
    allowed = []
    for method in _METHOD_ORDER:
        probe = {**scope, "method": method}
        if any(route.matches(probe)[0] == Match.FULL for route in app.router.routes):
            allowed.append(method)
    return allowed


async def _method_not_allowed(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)  # noqa: S101 - registered for 405 only
    allow = ", ".join(allowed_methods(request.app, request.scope))
    return problem(
        405,
        f"{request.method} is not allowed here; allowed: {allow}",
        headers={"Allow": allow},
    )


def bearer_challenge(request: Request) -> str:
    """WWW-Authenticate for a 401: RFC 6750 says `error="invalid_token"` when a bearer token
    was sent and refused (expired, revoked, malformed, not ours); plain `Bearer` when none was."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return 'Bearer error="invalid_token"'
    return "Bearer"


async def _unauthorized(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, Unauthorized)  # noqa: S101 - registered for Unauthorized only
    return problem(
        401,
        error.detail,
        headers={**error.headers, "WWW-Authenticate": bearer_challenge(request)},
        type_=f"urn:kenes:problem:{error.slug}",
    )


def install_protocol(app: FastAPI) -> None:
    """After install_error_handlers: these take precedence for 405 and for Unauthorized."""
    app.add_exception_handler(405, _method_not_allowed)
    app.add_exception_handler(Unauthorized, _unauthorized)
