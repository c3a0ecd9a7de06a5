"""Pure ASGI middleware: request ids, access logs and metrics; body size and media type guards."""

import json
import logging
import os
import re
import time
from email.utils import formatdate

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import problem
from app.json_pieces import has_encoded_surrogate, may_hold_unstorable_text, unstorable_text_at
from app.log import CALLER_KEY, request_id_var
from app.metrics import HttpMetrics

logger = logging.getLogger("kenes.access")
error_logger = logging.getLogger("kenes.errors")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_WRITE_METHODS = {"POST", "PUT", "PATCH"}
ANY_MEDIA_TYPE = "*/*"  # a raw body (a file): whatever its Content-Type says, or none


_DOCS_PATHS = ("/docs", "/redoc")
_BASE_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
_STRICT_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")


_NO_STORE = (b"cache-control", b"no-store")
# Answers no cache (a browser's, a proxy's) may keep: tokens (logins, new collectors), users,
# the audit log, and responses (single, listed, exported).
_PRIVATE_PREFIXES = (
    "/api/v1/auth/",
    "/api/v1/users",
    "/api/v1/collectors",
    "/api/v1/audit",
    "/api/v1/responses",
)


def _security_headers(path: str) -> list[tuple[bytes, bytes]]:
    # The interactive docs load Swagger UI's scripts and styles; every other answer is data.
    if path.startswith(_DOCS_PATHS):
        return _BASE_SECURITY_HEADERS
    if path.startswith(_PRIVATE_PREFIXES) or "/responses" in path:
        return [*_BASE_SECURITY_HEADERS, _STRICT_CSP, _NO_STORE]
    return [*_BASE_SECURITY_HEADERS, _STRICT_CSP]


# Paths that carry a secret (a collector's OpenRosa server URL, a calendar feed's URL): the
# access log shows them with the secret masked.
_SECRET_IN_PATH = (
    (re.compile(r"^/openrosa/key/[^/]+"), "/openrosa/key/***"),
    (re.compile(r"^/api/v1/calendar/[^/]+\.ics$"), "/api/v1/calendar/***.ics"),
)
_OPENROSA_PREFIX = "/openrosa/"
_OPENROSA_VERSION = (b"x-openrosa-version", b"1.0")


def logged_path(path: str) -> str:
    for pattern, masked in _SECRET_IN_PATH:
        if pattern.match(path):
            return pattern.sub(masked, path, count=1)
    return path


class _HttpDate:
    """The Date header (RFC 9110), formatted once a second. Sent by the app on every answer
    (`kenes serve` turns uvicorn's off), so answers carry it under any server and in tests:
    OpenRosa clients require it."""

    def __init__(self) -> None:
        self.second = -1
        self.value = b""

    def now(self) -> bytes:
        second = int(time.time())
        if second != self.second:
            self.second = second
            self.value = formatdate(second, usegmt=True).encode()
        return self.value


_http_date = _HttpDate()


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
        [incoming] = _raw_headers(scope, (b"x-request-id",))
        request_id = incoming if incoming and _REQUEST_ID.match(incoming) else os.urandom(16).hex()
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False
        exporting = False
        scope.setdefault("state", {})  # where the auth dependencies note the caller
        self.metrics.in_flight.inc()

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started, exporting
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                if status == 200 and self.metrics.is_export(_route_template(scope)):
                    exporting = True
                    self.metrics.export_streams.inc()
                headers = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                    (b"date", _http_date.now()),
                    *_security_headers(scope["path"]),
                ]
                if scope["path"].startswith(_OPENROSA_PREFIX):
                    headers.append(_OPENROSA_VERSION)
                message["headers"] = headers
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
            if exporting:
                self.metrics.export_streams.dec()
            self.metrics.in_flight.dec()
            self.metrics.finished(method, route, status, elapsed)
            if logger.isEnabledFor(logging.INFO):
                client = scope.get("client")
                logger.info(
                    "request",
                    extra={
                        "method": method,
                        "path": logged_path(scope["path"]),
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                        "client": client[0] if client else None,
                        # "user:<id>" or "collector:<id>"; never the token.
                        "caller": scope["state"].get(CALLER_KEY),
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
        max_batch_bytes: int,
        upload_suffixes: tuple[str, ...] = ("/import",),
        batch_suffixes: tuple[str, ...] = ("/responses/batch",),
        form_paths: tuple[str, ...] = ("/api/v1/auth/token",),
        multipart_limits: tuple[tuple[str, int], ...] = (),
        multipart_also: tuple[tuple[str, int], ...] = (),
        raw_limits: tuple[tuple[str, int], ...] = (),
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes
        self.max_batch_bytes = max_batch_bytes
        self.upload_suffixes = upload_suffixes
        self.batch_suffixes = batch_suffixes
        self.form_paths = form_paths
        # (path pattern, limit): multipart bodies with a limit of their own (OpenRosa).
        self.multipart_limits = [(re.compile(path), limit) for path, limit in multipart_limits]
        # (path pattern, limit): JSON routes that also take multipart/form-data (a response
        # with its files), with the limit for multipart bodies; the route may refuse sooner.
        self.multipart_also = [(re.compile(path), limit) for path, limit in multipart_also]
        # (path pattern, limit): raw bodies of any media type, streamed to the route (files).
        self.raw_limits = [(re.compile(path), limit) for path, limit in raw_limits]

    def _expected(self, path: str, content_type: str | None) -> tuple[int, tuple[str, ...]]:
        for pattern, limit in self.multipart_limits:
            if pattern.match(path):
                return limit, ("multipart/form-data",)
        for pattern, limit in self.raw_limits:
            if pattern.match(path):
                return limit, (ANY_MEDIA_TYPE,)
        if (
            _media_type_ok(content_type, ("multipart/form-data",))
            and "boundary=" in (content_type or "").lower()
        ):
            for pattern, limit in self.multipart_also:
                if pattern.match(path):
                    return limit, ("multipart/form-data",)
        if path.endswith(self.upload_suffixes):
            return self.max_upload_bytes, ("multipart/form-data",)
        if path.endswith(self.batch_suffixes):
            return self.max_batch_bytes, ("application/json",)
        if path in self.form_paths:
            return self.max_body_bytes, (
                "application/x-www-form-urlencoded",
                "multipart/form-data",
            )
        return self.max_body_bytes, ("application/json",)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _url_has_nul(scope):
            # PostgreSQL cannot store NUL in text; refused here, before any query sees it.
            await _send_problem(scope, receive, send, 400, "The URL may not contain NUL characters")
            return
        if scope["method"] not in _WRITE_METHODS:
            await self.app(scope, receive, send)
            return
        wanted = _raw_headers(scope, (b"content-length", b"transfer-encoding", b"content-type"))
        length_header, transfer_encoding, content_type = wanted
        limit, media_types = self._expected(scope["path"], content_type)
        has_body = transfer_encoding is not None or length_header not in (None, "0")

        if length_header is not None and length_header.isdigit() and int(length_header) > limit:
            await _send_problem(scope, receive, send, 413, f"Request body exceeds {limit} bytes")
            return
        if (
            has_body
            and ANY_MEDIA_TYPE not in media_types
            and not _media_type_ok(content_type, media_types)
        ):
            await _send_problem(
                scope,
                receive,
                send,
                415,
                f"Content-Type must be {' or '.join(media_types)}",
            )
            return
        if (
            has_body
            and (scope["path"] in self.form_paths or "multipart/form-data" not in media_types)
            and ANY_MEDIA_TYPE not in media_types
            and not scope["path"].endswith(self.batch_suffixes)
        ):
            # JSON and login bodies are small and read whole anyway: read them here, so text
            # the database cannot store is refused with a 422 on either database. Batches are
            # large: their route decodes and checks them in a worker thread.
            await self._guard_text(scope, receive, send, limit)
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

    async def _guard_text(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """Read the whole (small) body, refuse NUL and unpaired surrogates, then replay it."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _send_problem(
                    scope, receive, send, 413, f"Request body exceeds {limit} bytes"
                )
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if scope["path"] in self.form_paths:
            bad = _form_nul(body)
        elif has_encoded_surrogate(body):
            # Python's json reads these ("surrogatepass"); they are not UTF-8.
            await _send_problem(scope, receive, send, 400, "The body is not valid UTF-8")
            return
        else:
            bad = _json_bad_text(body)
        if bad is not None:
            await problem(
                422,
                "Text may not contain NUL characters or unpaired UTF-16 surrogates",
                errors=[{"loc": bad, "msg": "NUL or unpaired surrogate in text", "type": "text"}],
            )(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _raw_headers(scope: Scope, names: tuple[bytes, ...]) -> list[str | None]:
    """Several headers' first values in one pass over the request's headers."""
    found: list[str | None] = [None] * len(names)
    for key, value in scope["headers"]:
        if key in names:
            index = names.index(key)
            if found[index] is None:
                found[index] = value.decode("latin-1")
    return found


def _url_has_nul(scope: Scope) -> bool:
    query: bytes = scope.get("query_string", b"")
    return "\x00" in scope["path"] or b"\x00" in query or b"%00" in query


def _form_nul(body: bytes) -> list[str | int] | None:
    return ["body"] if b"\x00" in body or b"%00" in body else None


def _json_bad_text(body: bytes) -> list[str | int] | None:
    """The location of the first string (or key) holding NUL or a lone surrogate, if any.

    Cheap for ordinary bodies: only a body with a suspicious escape is parsed here. A body that
    does not parse is left to the route, which answers 400.
    """
    if not may_hold_unstorable_text(body):
        return None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return unstorable_text_at(document)


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
