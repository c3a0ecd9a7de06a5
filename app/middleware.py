"""Pure ASGI middleware: request ids, access logs and metrics; body size and media type guards."""

import logging
import re
import time
import uuid

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import problem
from app.log import request_id_var

logger = logging.getLogger("kenes.access")
error_logger = logging.getLogger("kenes.errors")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_WRITE_METHODS = {"POST", "PUT", "PATCH"}


class HttpMetrics:
    """Request counts and latencies by route template and status, in an app-owned registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "kenes_http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "kenes_http_request_duration_seconds",
            "HTTP request latency by method and route template",
            ["method", "route"],
            registry=self.registry,
        )


_DOCS_PATHS = ("/docs", "/redoc")
_BASE_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
_STRICT_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")


def _security_headers(path: str) -> list[tuple[bytes, bytes]]:
    # The interactive docs load Swagger UI's scripts and styles; every other answer is data.
    if path.startswith(_DOCS_PATHS):
        return _BASE_SECURITY_HEADERS
    return [*_BASE_SECURITY_HEADERS, _STRICT_CSP]


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    # Unmatched paths share one label so scanners cannot blow up the label set.
    return getattr(route, "path", None) or "unmatched"


class RequestContextMiddleware:
    """Request id in and out, one JSON access line, metrics, and the last-resort 500."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = Headers(scope=scope).get("x-request-id", "")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                    *_security_headers(scope["path"]),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            error_logger.exception("unhandled error")
            if not response_started:
                response = problem(500, "Internal error; quote the request id when reporting it")
                await response(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(elapsed)
            logger.info(
                "request",
                extra={
                    "method": method,
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
            request_id_var.reset(token)


class BodyTooLarge(StarletteHTTPException):
    """Raised from receive(); an HTTPException so FastAPI passes it on instead of answering 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request body exceeds {limit} bytes")


class BodyGuardMiddleware:
    """Refuse bodies over the limit while reading them (413) and unexpected media types (415).

    Written here rather than using Starlette's body limit so that every refusal is problem+json,
    also when the route never reads the body.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_upload_bytes: int,
        upload_suffixes: tuple[str, ...] = ("/import",),
        form_paths: tuple[str, ...] = ("/api/v1/auth/token",),
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes
        self.upload_suffixes = upload_suffixes
        self.form_paths = form_paths

    def _expected(self, path: str) -> tuple[int, tuple[str, ...]]:
        if path.endswith(self.upload_suffixes):
            return self.max_upload_bytes, ("multipart/form-data",)
        if path in self.form_paths:
            return self.max_body_bytes, (
                "application/x-www-form-urlencoded",
                "multipart/form-data",
            )
        return self.max_body_bytes, ("application/json",)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WRITE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        limit, media_types = self._expected(scope["path"])
        length_header = headers.get("content-length")
        has_body = headers.get("transfer-encoding") is not None or length_header not in (None, "0")

        if length_header is not None and length_header.isdigit() and int(length_header) > limit:
            await _send_problem(scope, receive, send, 413, f"Request body exceeds {limit} bytes")
            return
        if has_body and not _media_type_ok(headers.get("content-type"), media_types):
            await _send_problem(
                scope,
                receive,
                send,
                415,
                f"Content-Type must be {' or '.join(media_types)}",
            )
            return

        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        response_started = False

        async def send_tracked(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive_limited, send_tracked)
        except BodyTooLarge as error:
            if response_started:
                raise
            await problem(413, str(error.detail))(scope, receive, send)


def _media_type_ok(content_type: str | None, allowed: tuple[str, ...]) -> bool:
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type in allowed:
        return True
    return (
        "application/json" in allowed
        and media_type.startswith("application/")
        and (media_type.endswith("+json"))
    )


async def _send_problem(
    scope: Scope, receive: Receive, send: Send, status: int, detail: str
) -> None:
    await problem(status, detail)(scope, receive, send)
