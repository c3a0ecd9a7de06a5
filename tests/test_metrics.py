"""/metrics: HTTP, in-flight, exports, rate limits, both pools, process and GC, and the totals
of two real workers; JSON logs without ANSI codes, access lines with address and caller."""

import asyncio
import gc
import json
from pathlib import Path

import httpx
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from app.models.auth import Role
from tests.conftest import ON_POSTGRES, postgres_only
from tests.factories import DEFAULT_PASSWORD, bearer, create_questionnaire, create_user
from tests.servers import running_server

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(client: httpx.AsyncClient) -> Samples:
    answer = await client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return parse(answer.text)


async def test_requests_refusals_exports_process_and_gc(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    before = await scrape(client)
    await client.get("/healthz")
    user = await create_user(app, Role.analyst, email="metrics@example.org")
    for _ in range(6):  # five failures are allowed, the sixth attempt is refused
        await client.post(
            "/api/v1/auth/token", data={"username": user.email, "password": "wrong password!"}
        )
    survey = await create_questionnaire(app, publish=True)
    export = await client.get(
        f"/api/v1/questionnaires/{survey.id}/responses/export",
        params={"format": "csv"},
        headers=bearer(app, user),
    )
    assert export.status_code == 200
    gc.collect()
    after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("kenes_http_requests_total", method="GET", route="/healthz", status="200") == 1
    token = "/api/v1/auth/token"
    assert delta("kenes_http_requests_total", method="POST", route=token, status="401") == 5
    assert delta("kenes_rate_limit_refusals_total", route=token) == 1
    export_route = "/api/v1/questionnaires/{questionnaire_id}/responses/export"
    assert delta("kenes_http_requests_total", method="GET", route=export_route, status="200") == 1
    assert value(after, "kenes_export_streams_open") == 0  # ended with its stream
    assert value(after, "kenes_http_requests_in_flight") == 1  # this scrape
    assert delta("python_gc_collections_total", generation="2") >= 1
    assert value(after, "process_resident_memory_bytes") > 10_000_000
    assert value(after, "process_open_fds") > 0
    assert value(after, "process_cpu_seconds_total") > 0
    assert value(after, "process_start_time_seconds") > 1.7e9


async def test_pool_gauges_follow_connections_held(app: FastAPI, client: httpx.AsyncClient) -> None:
    # dispose() puts a new pool in place (as the fault tests do after an outage): the gauges
    # must follow the engine's current pool, not the one it had at start-up.
    await app.state.engine.dispose()
    idle = await scrape(client)
    pools = ["sqlalchemy", "asyncpg"] if ON_POSTGRES else ["sqlalchemy"]
    for pool in pools:
        assert value(idle, "kenes_db_pool_size", pool=pool) >= 1
        assert value(idle, "kenes_db_pool_in_use", pool=pool) == 0
        assert value(idle, "kenes_db_pool_waiting", pool=pool) == 0
    async with app.state.engine.connect() as connection:
        await connection.exec_driver_sql("SELECT 1")
        held = await scrape(client)
    assert value(held, "kenes_db_pool_in_use", pool="sqlalchemy") == 1
    assert value(await scrape(client), "kenes_db_pool_in_use", pool="sqlalchemy") == 0


@postgres_only
async def test_asyncpg_pool_gauges_count_users_and_waiters(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    pool = app.state.raw_pool
    size = pool.get_max_size()

    async def take() -> object:
        return await pool.acquire()

    held = [await take() for _ in range(size)]
    waiter = asyncio.create_task(take())
    try:
        await asyncio.sleep(0.05)
        full = await scrape(client)
        assert value(full, "kenes_db_pool_size", pool="asyncpg") == size
        assert value(full, "kenes_db_pool_in_use", pool="asyncpg") == size
        assert value(full, "kenes_db_pool_waiting", pool="asyncpg") == 1
    finally:
        for connection in held:
            await pool.release(connection)
        await pool.release(await waiter)
    assert value(await scrape(client), "kenes_db_pool_waiting", pool="asyncpg") == 0


async def test_two_workers_report_the_same_totals_and_log_plain_json(
    app: FastAPI, database_url: str, tmp_path: Path
) -> None:
    """With --workers 2, whichever worker answers /metrics shows the sums of both."""
    user = await create_user(app, Role.analyst, email="worker-metrics@example.org")
    with running_server(
        database_url, tmp_path / "server.log", workers=2, log_level="INFO"
    ) as server:
        token = httpx.post(
            f"{server.base}/api/v1/auth/token",
            data={"username": user.email, "password": DEFAULT_PASSWORD},
            timeout=10,
        ).json()["access_token"]
        # A new connection each time, so the kernel spreads them over both workers.
        for _ in range(30):
            reply = httpx.get(f"{server.base}/healthz", headers={"Connection": "close"})
            assert reply.status_code == 200
        me = httpx.get(
            f"{server.base}/api/v1/auth/me",
            headers={"Authorization": f"Bearer {token}", "Connection": "close"},
        )
        assert me.status_code == 200
        scrapes = [
            parse(httpx.get(f"{server.base}/metrics", headers={"Connection": "close"}).text)
            for _ in range(6)
        ]
    counts = [
        value(s, "kenes_http_requests_total", method="GET", route="/healthz", status="200")
        for s in scrapes
    ]
    print("healthz totals seen by six scrapes:", counts)  # noqa: T201
    assert counts == [30.0] * 6
    # Gauges add up over the live workers: two pools of the size one worker has.
    sizes = {value(s, "kenes_db_pool_size", pool="sqlalchemy") for s in scrapes}
    assert sizes == {2 * app.state.engine.pool.size()}
    for samples in scrapes:
        assert value(samples, "kenes_http_requests_in_flight") == 1  # only the scrape itself
        assert value(samples, "process_resident_memory_bytes") > 20_000_000
        assert value(samples, "process_cpu_seconds_total") > 0

    lines = server.log_lines()
    assert lines
    assert all("\x1b" not in line for line in lines)  # no ANSI colour codes
    records = [json.loads(line) for line in lines]
    assert all("color_message" not in record for record in records)
    access = [r for r in records if r["logger"] == "kenes.access"]
    mine = [r for r in access if r["route"] == "/api/v1/auth/me"]
    assert len(mine) == 1
    assert mine[0]["client"] == "127.0.0.1"
    assert mine[0]["caller"] == f"user:{user.id}"
    assert mine[0]["status"] == 200
    assert mine[0]["duration_ms"] > 0
    assert all(r["caller"] is None for r in access if r["route"] == "/healthz")
    assert token not in "\n".join(lines)
    assert DEFAULT_PASSWORD not in "\n".join(lines)
