"""OpenAPI declarations of the problem+json answers routes may give."""

import json
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

_REF = "#/components/schemas/{model}"
_PROBLEM_CONTENT = {"application/problem+json": {"schema": {"$ref": _REF.format(model="Problem")}}}


class ProblemError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[ProblemError] | None = None


def _problem_answer(description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": _PROBLEM_CONTENT, **extra}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status documented as problem+json."""
    return {code: _problem_answer(HTTPStatus(code).phrase) for code in statuses}


MALFORMED = "Bad Request: a malformed request (NUL in the URL, a body that is not JSON)"
# Answers the body guard can give to any request with a body.
BODY_PROBLEMS = {413: "Content Too Large", 415: "Unsupported Media Type"}
# Also completes a 503 a route declares with a description only (/readyz).
UNAVAILABLE = _problem_answer(
    "Service Unavailable: the database cannot be reached",
    headers={"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
)


def document_problems(app: FastAPI) -> None:
    """Make the OpenAPI document say what the error handlers really send.

    FastAPI documents its own 422 as `application/json` `HTTPValidationError`; ours are
    problem+json. Any request may be malformed (400); every operation that takes a body may
    answer 413 and 415 (the body guard), and every API operation 503 when the database is down.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        problem = Problem.model_json_schema(ref_template=_REF)
        components.update(problem.pop("$defs", {}))
        components["Problem"] = problem
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                answers = operation.setdefault("responses", {})
                if "422" in answers:
                    answers["422"]["content"] = _PROBLEM_CONTENT
                answers.setdefault("400", _problem_answer(MALFORMED))
                if "requestBody" in operation:
                    for status, description in BODY_PROBLEMS.items():
                        answers.setdefault(str(status), _problem_answer(description))
                if path.startswith("/api/") or "503" in answers:
                    answers["503"] = {**UNAVAILABLE, **answers.get("503", {})}
        for unused in ("HTTPValidationError", "ValidationError"):
            if f'"{_REF.format(model=unused)}"' not in json.dumps(schema):
                components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
