"""The OpenAPI document as typed clients need it: stable operation ids, headers, every answer typed.

Generated clients name their methods after operation ids, so those are `<tag>.<function name>`
(`responses.submit_response`) rather than FastAPI's path-derived defaults; the rest completes what
routes would otherwise repeat by hand: the headers the contract promises and a schema for every
answer.
"""

import json
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel

from app.models.examples import PROBLEM
from app.models.questionnaires import QuestionnaireCreate, QuestionnaireUpdate
from app.models.responses import BatchIn, ResponseIn

# Bodies that a route reads itself (off the event loop, or as JSON or multipart) and documents
# with a reference.
SELF_READ_BODIES: tuple[type[BaseModel], ...] = (
    BatchIn,
    ResponseIn,
    QuestionnaireCreate,
    QuestionnaireUpdate,
)

_PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}

HEADERS: dict[str, dict[str, Any]] = {
    "Location": {
        "description": "Path of the created resource",
        "schema": {"type": "string", "format": "uri-reference"},
    },
    "ETag": {
        "description": "Entity tag of this representation; send it back in If-None-Match",
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "schema": {"type": "integer", "minimum": 1},
    },
    "WWW-Authenticate": {
        "description": 'Bearer; `Bearer error="invalid_token"` when a token was sent but is '
        "expired, revoked or not one of ours",
        "schema": {"type": "string"},
    },
    "Allow": {"description": "The methods the path answers", "schema": {"type": "string"}},
}
_HEADERS_BY_STATUS = {
    "201": ("Location",),
    "401": ("WWW-Authenticate",),
    "429": ("Retry-After",),
    "503": ("Retry-After",),
}
_BINARY = {"type": "string", "format": "binary"}
IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "description": "An ETag from an earlier answer: 304 (no body) while it still matches",
    "schema": {"type": "string"},
}
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {
        "description": "Not Modified: the ETag sent in If-None-Match still matches",
        "headers": {"ETag": HEADERS["ETag"]},
    }
}


def operation_id(route: APIRoute) -> str:
    """`<first tag>.<route function name>`: readable, and stable while names are."""
    tag = route.tags[0] if route.tags else "kenes"
    return f"{tag}.{route.name}"


def install_openapi(app: FastAPI) -> None:
    """Complete the (already problem-aware) OpenAPI document once, when it is first built."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                _complete_operation(operation)
        schemas = schema["components"]["schemas"]
        for model in SELF_READ_BODIES:
            _add_body(schemas, model)
        _optional_problem_errors(schemas)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_body(schemas: dict[str, Any], model: type[BaseModel]) -> None:
    """A self-read body's schema (input mode) among the components. A nested schema that
    differs from the component of its name (that one read in output mode, as a questionnaire's
    questions are given back) is added as `<name>-Input`, as FastAPI names such pairs, and so
    is every schema that refers to one so renamed."""
    body = model.model_json_schema(ref_template="#/components/schemas/{model}")
    nested: dict[str, Any] = body.pop("$defs", {})
    text = {name: json.dumps(part, sort_keys=True) for name, part in nested.items()}
    renamed = {
        n for n, part in nested.items() if n in schemas and _plain(schemas[n]) != _plain(part)
    }
    while True:  # those that refer to a renamed one, until none is left
        more = {n for n in nested if n not in renamed and any(f'/{r}"' in text[n] for r in renamed)}
        if not more:
            break
        renamed |= more

    def rename(part: Any) -> Any:
        found = json.dumps(part)
        for name in renamed:
            found = found.replace(
                f'"#/components/schemas/{name}"', f'"#/components/schemas/{name}-Input"'
            )
        return json.loads(found)

    for name, part in nested.items():
        schemas.setdefault(f"{name}-Input" if name in renamed else name, rename(part))
    schemas[model.__name__] = rename(body)


def _plain(schema: Any) -> Any:
    """A schema without `"default": null` (FastAPI leaves it out, pydantic writes it)."""
    if isinstance(schema, dict):
        return {k: _plain(v) for k, v in schema.items() if not (k == "default" and v is None)}
    if isinstance(schema, list):
        return [_plain(v) for v in schema]
    return schema


def _complete_operation(operation: dict[str, Any]) -> None:
    answers: dict[str, dict[str, Any]] = operation.setdefault("responses", {})
    created = answers.get("201", {}).get("content")
    if created and "200" in answers and "content" not in answers["200"]:
        # A replay answers 200 with what was stored: the same body as the 201.
        answers["200"]["content"] = created
    if "304" in answers:
        for status in ("200", "304"):
            answers[status].setdefault("headers", {})["ETag"] = HEADERS["ETag"]
        parameters = operation.setdefault("parameters", [])
        if not any(p.get("name", "").lower() == "if-none-match" for p in parameters):
            parameters.append(IF_NONE_MATCH)
    for status, answer in answers.items():
        for media, content in answer.get("content", {}).items():
            if "schema" not in content:
                # Calendars, CSV, spreadsheets: text or bytes, so generators type them at all.
                text = media.startswith("text/") or media.endswith(("+xml", "/xml"))
                content["schema"] = {"type": "string"} if text else _BINARY
        for name in _HEADERS_BY_STATUS.get(status, ()):
            answer.setdefault("headers", {}).setdefault(name, HEADERS[name])
        if status[0] in "45" and "content" not in answer:
            answer["content"] = _PROBLEM


def _optional_problem_errors(schemas: dict[str, Any]) -> None:
    """`errors` is left out of non-validation problems, never null: say exactly that.

    With a `default`, openapi-typescript would type it as always present.
    """
    errors = schemas["Problem"]["properties"]["errors"]
    schemas["Problem"]["properties"]["errors"] = {
        "type": "array",
        "items": {"$ref": "#/components/schemas/ProblemError"},
        "description": "Present for validation failures: one entry per problem found",
        "title": errors.get("title", "Errors"),
    }
    schemas["Problem"]["examples"] = [PROBLEM]


TAGS = [
    {"name": "auth", "description": "Tokens, users, collectors and the audit log"},
    {"name": "questionnaires", "description": "Survey definitions: drafts, versions, XLSForm"},
    {"name": "responses", "description": "Submissions (exactly once by id), reads and exports"},
    {"name": "aggregates", "description": "Figures computed by the database, small cells hidden"},
    {"name": "territories", "description": "The KATO hierarchy of regions, districts, villages"},
    {"name": "elections", "description": "Elections and their candidates"},
    {"name": "consultations", "description": "Akims' meetings with residents and observations"},
    {"name": "calendar", "description": "Consultation calendars a phone subscribes to by URL"},
    {"name": "operations", "description": "Liveness, readiness and Prometheus metrics"},
]


def main() -> None:
    """`python -m app.openapi [file]`: write the document (no server, no database needed)."""
    import json
    import os
    import sys
    from pathlib import Path

    # Nothing is signed or stored: a throwaway key keeps development's key file from being made.
    os.environ.setdefault("KENES_SECRET_KEY", "openapi-dump-" + "x" * 32)
    from app.main import create_app

    text = json.dumps(create_app().openapi(), ensure_ascii=False, indent=1)
    if len(sys.argv) > 1:
        target = Path(sys.argv[1])
        target.parent.mkdir(parents=True, exist_ok=True)  # clients/generated/ is not in git
        target.write_text(text + "\n", encoding="utf-8")
    else:
        sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
