"""Reading a single submission's body: JSON (as FastAPI reads a body parameter), or
multipart/form-data with the JSON in part `response` and one part per file; and the answer to
an exactly-once write."""

import json
import uuid
from collections.abc import AsyncGenerator
from typing import Any

import orjson
from fastapi import Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from pydantic_core import from_json
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from app.config import Settings
from app.errors import BadRequest, Invalid, TooLarge
from app.json_pieces import has_encoded_surrogate, may_hold_unstorable_text, unstorable_text_at
from app.models.responses import ResponseIn, ResponseRead

# For the body guard (app/middleware.py): this route also takes multipart/form-data (a
# response with its files), up to multipart_limit bytes; anonymous callers far less.
SUBMIT_PATH = r"^/api/v1/questionnaires/[^/]+/responses$"
# A single submission's body: JSON, or multipart/form-data with the JSON in part `response`
# and one part per file, named as in the answers.
SUBMIT_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/ResponseIn"}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["response"],
                "properties": {"response": {"$ref": "#/components/schemas/ResponseIn"}},
                "additionalProperties": {"type": "string", "format": "binary"},
            },
            "encoding": {"response": {"contentType": "application/json"}},
        },
    },
}
RESPONSE_PART = "response"


def multipart_limit(settings: Settings) -> int:
    """The largest multipart submission: the response and KENES_MAX_SUBMISSION_FILES files."""
    return settings.max_body_bytes + settings.max_submission_files * (
        settings.max_attachment_bytes + 16 * 1024  # a part's headers and boundary
    )


def _body_error(error: ValidationError) -> RequestValidationError:
    return RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in error.errors()])


def response_in(document: Any) -> ResponseIn:
    """The response in a decoded body, refused as FastAPI refuses a body parameter."""
    try:
        return ResponseIn.model_validate(document)
    except ValidationError as error:
        raise _body_error(error) from None


def decode(body: bytes) -> Any:
    if not body:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    try:
        # pydantic's parser reads what the json module reads, to the same values (integers of
        # any size, NaN and Infinity included), in half the time; whatever it refuses, the json
        # module reads again, so that what is accepted and every refusal stay as they were.
        return from_json(body)
    except ValueError:
        pass
    try:
        return json.loads(body)
    except json.JSONDecodeError as error:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", error.pos),
                    "msg": "JSON decode error",
                    "ctx": {"error": error.msg},
                }
            ]
        ) from None
    except (RecursionError, ValueError) as error:
        # As FastAPI answers a body it cannot parse (too deep, not UTF-8, a 5,000-digit number).
        raise BadRequest("There was an error parsing the body") from error


def is_multipart(request: Request) -> bool:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media_type == "multipart/form-data"


async def _limited(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"Request body exceeds {limit} bytes")
        yield chunk


async def read_multipart(
    request: Request, anonymous: bool
) -> tuple[ResponseIn, FormData, list[tuple[str, Any]]]:
    """The response part and the file parts, read as they arrive (files spooled to disk past
    1 MiB). Callers without a token stay under KENES_MAX_PUBLIC_SUBMISSION_BYTES in all."""
    settings = request.app.state.settings
    limit = settings.max_public_submission_bytes if anonymous else multipart_limit(settings)
    parser = MultiPartParser(
        request.headers,
        _limited(request, limit),
        max_files=settings.max_submission_files + 1,
        max_fields=1,
        max_part_size=settings.max_body_bytes,
    )
    try:
        form = await parser.parse()
    except MultiPartException as error:
        raise BadRequest(f"The body is not a readable multipart body ({error.message})") from None
    try:
        part = form.get(RESPONSE_PART)
        if part is None:
            raise BadRequest(f"The multipart body has no '{RESPONSE_PART}' part")
        if isinstance(part, UploadFile):
            if (part.size or 0) > settings.max_body_bytes:
                limit = settings.max_body_bytes
                raise TooLarge(f"The {RESPONSE_PART!r} part exceeds {limit} bytes")
            raw = await part.read()
        else:
            raw = part.encode()
        if has_encoded_surrogate(raw):
            raise BadRequest("The response part is not valid UTF-8")
        document = decode(raw)
        if may_hold_unstorable_text(raw) and (place := unstorable_text_at(document)) is not None:
            raise Invalid(
                "Text may not contain NUL characters or unpaired UTF-16 surrogates",
                errors=[{"loc": place, "msg": "NUL or unpaired surrogate in text", "type": "text"}],
            )
        item = response_in(document)
        files: list[tuple[str, Any]] = []
        for name, value in form.multi_items():
            if name == RESPONSE_PART:
                continue
            if not isinstance(value, UploadFile):
                raise Invalid(
                    f"The part {name!r} is not a file",
                    errors=[{"loc": ["body", name], "msg": "expected a file", "type": "file"}],
                )
            files.append((name, value))
    except BaseException:
        await form.close()
        raise
    return item, form, files


def response_read_json(body: dict[str, Any]) -> bytes:
    """A stored response (rules.to_body) as ResponseRead writes it.

    orjson writes the same bytes as ResponseRead.model_validate(body).model_dump_json(): the
    fields in the model's order, UUIDs as strings, times in UTC with `Z`, answers as JSON
    values; in an eighth of the time (8 us of a submission; tests/test_responses.py compares
    the two). Whatever orjson will not write (an integer past 64 bits) goes through the model.
    """
    try:
        return orjson.dumps(body, default=_uuid_text, option=orjson.OPT_UTC_Z)
    except TypeError:
        return ResponseRead.model_validate(body).model_dump_json().encode()


def _uuid_text(value: Any) -> str:
    # asyncpg's UUIDs (a replay's stored row) subclass uuid.UUID; orjson writes only the class.
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError


def stored_answer(body: str | bytes, created: bool, location: str) -> Response:
    """The answer to an exactly-once write: 201 with `Location` when it stored something new,
    200 when the same was stored before."""
    if not created:
        return Response(body, status_code=status.HTTP_200_OK, media_type="application/json")
    return Response(
        body,
        status_code=status.HTTP_201_CREATED,
        media_type="application/json",
        headers={"Location": location},
    )
