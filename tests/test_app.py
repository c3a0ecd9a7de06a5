"""The app factory, error shapes, body limits, request ids, health, readiness and metrics."""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, Field
from sqlalchemy import func
from sqlmodel import select

from app.config import Settings
from app.deps import SessionDep
from app.errors import Conflict
from app.main import create_app
from app.models.territories import Territory
from tests.conftest import ON_POSTGRES, make_settings

PROBLEM = "application/problem+json"


class Probe(BaseModel):
    name: str = Field(min_length=1)
    count: int


def add_probe_routes(application: FastAPI) -> None:
    """Routes that exercise the shared machinery before real endpoints exist."""

    @application.post("/probe")
    async def probe(body: Probe) -> dict[str, object]:
        return {"name": body.name, "count": body.count}

    @application.get("/probe/boom")
    async def boom() -> None:
        raise RuntimeError("internal secret detail")

    @application.post("/probe/write-then-fail")
    async def write_then_fail(session: SessionDep) -> None:
        session.add(Territory(code="1", level="region", name={"en": "x"}, path="/1/"))
        await session.flush()
        raise Conflict("refused after a write")


@pytest.fixture
async def probe_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    application = create_app(settings.model_copy(update={"max_body_bytes": 4096}))
    add_probe_routes(application)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=application), base_url="http://testserver"
    ) as http:
        yield http
    await application.state.engine.dispose()


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert isinstance(body["type"], str) and body["type"]
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str)
    return dict(body)


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok", "database": None}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["database"] == "ok"


async def test_readiness_is_503_when_the_database_is_gone(tmp_path: Path) -> None:
    if ON_POSTGRES:
        url = "postgresql+asyncpg://postgres@127.0.0.1:1/nowhere"  # nothing listens on port 1
    else:
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("")
        url = f"sqlite+aiosqlite:///{blocker / 'kenes.db'}"
    application = create_app(make_settings(url))
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        assert (await http.get("/healthz")).status_code == 200
        response = await http.get("/readyz")
    await application.state.engine.dispose()
    assert_problem(response, 503)
    assert int(response.headers["retry-after"]) > 0


async def test_request_id_is_echoed_or_generated(client: httpx.AsyncClient) -> None:
    echoed = await client.get("/healthz", headers={"X-Request-ID": "phone-42.retry:1"})
    assert echoed.headers["x-request-id"] == "phone-42.retry:1"
    generated = await client.get("/healthz")
    other = await client.get("/healthz")
    assert len(generated.headers["x-request-id"]) >= 16
    assert generated.headers["x-request-id"] != other.headers["x-request-id"]
    # A header that could forge log lines is replaced, not echoed.
    forged = await client.get("/healthz", headers={"X-Request-ID": "a b\tc"})
    assert forged.headers["x-request-id"] != "a b\tc"


async def test_unknown_path_is_404_problem(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/api/v1/nothing-here"), 404)


async def test_wrong_method_is_405_problem_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.delete("/healthz")
    assert_problem(response, 405)
    assert "GET" in response.headers["allow"]


async def test_wrong_media_type_is_415(probe_client: httpx.AsyncClient) -> None:
    body = b'{"name": "a", "count": 1}'
    for headers in ({"content-type": "text/plain"}, {}, {"content-type": "application/xml"}):
        assert_problem(await probe_client.post("/probe", content=body, headers=headers), 415)
    accepted = await probe_client.post(
        "/probe", content=body, headers={"content-type": "application/json; charset=utf-8"}
    )
    assert accepted.json() == {"name": "a", "count": 1}


async def test_invalid_content_is_422_with_errors(probe_client: httpx.AsyncClient) -> None:
    response = await probe_client.post("/probe", json={"name": "", "count": "many"})
    body = assert_problem(response, 422)
    errors = body["errors"]
    assert isinstance(errors, list)
    locations = {tuple(error["loc"]) for error in errors}
    assert locations == {("body", "name"), ("body", "count")}
    assert all(error["msg"] and error["type"] for error in errors)


async def test_malformed_json_is_400(probe_client: httpx.AsyncClient) -> None:
    response = await probe_client.post(
        "/probe", content=b'{"name": "a",', headers={"content-type": "application/json"}
    )
    assert_problem(response, 400)


async def test_oversized_body_with_length_is_413(probe_client: httpx.AsyncClient) -> None:
    big = {"name": "x" * 5000, "count": 1}
    assert_problem(await probe_client.post("/probe", json=big), 413)


async def test_oversized_chunked_body_is_413_before_it_is_all_read(
    probe_client: httpx.AsyncClient,
) -> None:
    chunk = b" " * 1024
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        yield b'{"name": "'
        for _ in range(1000):  # ~1 MB offered, 4 KiB allowed
            pulled += 1
            yield chunk

    response = await probe_client.post(
        "/probe", content=body(), headers={"content-type": "application/json"}
    )
    assert_problem(response, 413)
    assert "content-length" not in response.request.headers
    assert pulled <= 6, f"{pulled} chunks were read before refusing"


async def test_unexpected_error_is_500_without_internals(
    probe_client: httpx.AsyncClient,
) -> None:
    response = await probe_client.get("/probe/boom", headers={"X-Request-ID": "trace-me"})
    assert_problem(response, 500)
    assert "secret" not in response.text
    assert "Traceback" not in response.text
    assert response.headers["x-request-id"] == "trace-me"


async def test_a_failed_request_leaves_no_partial_write(
    probe_client: httpx.AsyncClient, app: FastAPI
) -> None:
    assert_problem(await probe_client.post("/probe/write-then-fail"), 409)
    async with app.state.sessionmaker() as session:
        assert (await session.exec(select(func.count()).select_from(Territory))).one() == 0


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    await client.get("/no/such/path/123")
    text = (await client.get("/metrics")).text
    assert 'kenes_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert 'route="unmatched",status="404"' in text
    assert "/no/such/path/123" not in text
    assert "kenes_http_request_duration_seconds_bucket" in text


async def test_openapi_and_docs_are_served(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    assert "/readyz" in spec["paths"]
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
