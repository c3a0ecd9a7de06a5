"""PostgreSQL stopped and started again under load: nothing acknowledged is lost or doubled.

A real `kenes serve --workers 2` on loopback, on a scratch database of the suite's PostgreSQL
server; a load generator submits responses with client ids and retries each (same id, same
content) on errors and timeouts; mid-load the cluster is stopped with pg_ctlcluster and started
again a few seconds later. Afterwards every id that ever got a 2xx is stored exactly once, no id
twice, /readyz is 200 again from the same server processes, and during the outage the API
answered 503 with Retry-After, never 500.

This stops the whole local cluster, so other users of it notice: deselect with `-m "not fault"`.
"""

import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url

from app.main import create_app
from app.migrate import upgrade_to_head
from app.models.auth import Role
from tests.conftest import (
    ON_POSTGRES,
    ROOT,
    TEST_DATABASE_URL,
    TEST_SECRET,
    free_port,
    make_settings,
)
from tests.factories import bearer, create_questionnaire, create_user

pytestmark = [pytest.mark.fault]

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
IDS = 360  # responses the load generator means to store
RATE = 30  # new ids per second (steady), so the load spans the outage
CONCURRENCY = 12
OUTAGE_AFTER = 3.0  # seconds of load before PostgreSQL is stopped
OUTAGE = 4.0  # seconds it stays down
DEADLINE = 45.0  # the whole load, retries included
REQUEST_TIMEOUT = 3.0


def _cluster() -> tuple[str, str] | None:
    """(version, name) of the local cluster serving the test database's port, if any."""
    if not (ON_POSTGRES and shutil.which("pg_ctlcluster") and shutil.which("pg_lsclusters")):
        return None
    url = make_url(TEST_DATABASE_URL or "")
    if (url.host or "localhost") not in LOOPBACK:
        return None
    listed = subprocess.run(
        ["pg_lsclusters", "--no-header"],  # noqa: S607 - found on PATH above
        capture_output=True,
        text=True,
        check=False,
    )
    for line in listed.stdout.splitlines():
        version, name, port, *_ = line.split()
        if int(port) == (url.port or 5432):
            return version, name
    return None


CLUSTER = _cluster()
if not ON_POSTGRES:
    pytestmark.append(pytest.mark.skip(reason="needs PostgreSQL (it stops and restarts it)"))
elif CLUSTER is None:
    pytestmark.append(
        pytest.mark.skip(reason="no local pg_ctlcluster cluster serves the test database")
    )


def pg_ctl(action: str) -> None:
    assert CLUSTER is not None
    version, name = CLUSTER
    command = ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, action]
    if action == "stop":
        command += ["-m", "fast"]  # disconnect clients now, as a crash or failover would
    # A start is also the clean-up after a failed stop, so it may find the cluster running.
    subprocess.run(command, check=action == "stop", capture_output=True, timeout=60)  # noqa: S603


def wait_until_accepting(timeout: float = 60) -> None:
    url = make_url(TEST_DATABASE_URL or "")
    deadline = time.monotonic() + timeout
    command = ["pg_isready", "-q", "-h", url.host or "127.0.0.1", "-p", str(url.port or 5432)]
    while subprocess.run(command, check=False).returncode != 0:  # noqa: S603
        assert time.monotonic() < deadline, "PostgreSQL did not come back"
        time.sleep(0.2)


def psql(sql: str) -> None:
    url = make_url(TEST_DATABASE_URL or "")
    command = ["psql", "-h", url.host or "127.0.0.1", "-p", str(url.port or 5432)]
    command += ["-U", url.username or "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1"]
    subprocess.run([*command, "-qc", sql], check=True, capture_output=True)  # noqa: S603


@pytest.fixture
def scratch_url() -> Iterator[str]:
    name = f"kenes_fault_{uuid.uuid4().hex[:8]}"
    psql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(TEST_DATABASE_URL or "").set(database=name).render_as_string(False)
    finally:
        wait_until_accepting()
        psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Setup:
    survey_id: str
    headers: dict[str, str]


async def prepare(url: str) -> Setup:
    application = create_app(make_settings(url))
    try:
        await upgrade_to_head(application.state.engine)
        survey = await create_questionnaire(application, publish=True)
        observer = await create_user(application, Role.observer)
        return Setup(str(survey.id), bearer(application, observer))
    finally:
        await application.state.engine.dispose()


@pytest.fixture
async def setup(scratch_url: str) -> Setup:
    return await prepare(scratch_url)


@pytest.fixture
async def server(
    scratch_url: str, setup: Setup, tmp_path: Path
) -> AsyncIterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KENES_")}
    env.update(
        KENES_DATABASE_URL=scratch_url,
        KENES_SECRET_KEY=TEST_SECRET,
        KENES_LOG_LEVEL="ERROR",
        KENES_DB_POOL_SIZE="4",
    )
    command = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "2"]
    # The server's errors (with tracebacks) go to a file the test quotes when it fails.
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(  # noqa: S603
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=2) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None and time.monotonic() < deadline, "no server"
                await asyncio.sleep(0.1)
        yield base, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@dataclass
class Load:
    """What the load generator saw."""

    acknowledged: set[str] = field(default_factory=set)
    statuses: Counter[str] = field(default_factory=Counter)
    outage_statuses: Counter[str] = field(default_factory=Counter)
    missing_retry_after: int = 0
    attempts: int = 0
    server_errors: list[str] = field(default_factory=list)


def body_for(response_id: str, n: int) -> dict[str, Any]:
    return {
        "id": response_id,
        "respondent": {"group": "student", "gender": ("female", "male")[n % 2]},
        "answers": {"aware": "no", "participated": False, "trust_akimat": n % 5 + 1},
        "channel": "mobile",
    }


async def submit_until_acknowledged(
    client: httpx.AsyncClient,
    url: str,
    response_id: str,
    n: int,
    load: Load,
    outage: asyncio.Event,
    deadline: float,
) -> None:
    """One client's submission: the same id and content again until a 2xx (or the deadline)."""
    body = body_for(response_id, n)
    while time.monotonic() < deadline:
        load.attempts += 1
        try:
            reply = await client.post(url, json=body)
        except httpx.TransportError as error:  # timeouts and refused connections
            load.statuses[type(error).__name__] += 1
            await asyncio.sleep(0.3)
            continue
        status = str(reply.status_code)
        load.statuses[status] += 1
        if outage.is_set():
            load.outage_statuses[status] += 1
        if reply.status_code in (200, 201):
            assert reply.json()["id"] == response_id
            load.acknowledged.add(response_id)
            return
        if reply.status_code >= 500 and reply.status_code != 503:
            load.server_errors.append(f"{reply.status_code} {reply.text[:200]}")
        if reply.status_code == 503 and not reply.headers.get("retry-after", "").isdigit():
            load.missing_retry_after += 1
        # Retry-After says 5 s; a test cannot wait that long per try, so back off briefly.
        await asyncio.sleep(0.3 if reply.status_code >= 500 else 0.1)


async def generate_load(
    base: str, setup: Setup, ids: list[str], outage: asyncio.Event, load: Load
) -> None:
    url = f"/api/v1/questionnaires/{setup.survey_id}/responses"
    deadline = time.monotonic() + DEADLINE
    gate = asyncio.Semaphore(CONCURRENCY)
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(
        base_url=base, headers=setup.headers, timeout=REQUEST_TIMEOUT, limits=limits
    ) as client:

        async def one(n: int, response_id: str) -> None:
            async with gate:
                await submit_until_acknowledged(client, url, response_id, n, load, outage, deadline)

        tasks = []
        for n, response_id in enumerate(ids):
            tasks.append(asyncio.create_task(one(n, response_id)))
            await asyncio.sleep(1 / RATE)  # a steady arrival rate, not one burst
        await asyncio.gather(*tasks)


async def stored_ids(url: str) -> Counter[str]:
    application = create_app(make_settings(url))
    try:
        async with application.state.engine.connect() as connection:
            rows = await connection.execute(text("SELECT id FROM response"))
            return Counter(str(row.id) for row in rows)
    finally:
        await application.state.engine.dispose()


async def readyz(base: str) -> int:
    async with httpx.AsyncClient(base_url=base, timeout=2) as client:
        try:
            return (await client.get("/readyz")).status_code
        except httpx.TransportError:
            return 0


async def test_postgresql_restart_mid_load_loses_and_doubles_nothing(
    app: FastAPI,
    scratch_url: str,
    setup: Setup,
    server: tuple[str, "subprocess.Popen[bytes]"],
    tmp_path: Path,
) -> None:
    base, process = server
    ids = [str(uuid.uuid4()) for _ in range(IDS)]
    load = Load()
    outage = asyncio.Event()
    readyz_during: list[int] = []
    started = time.monotonic()
    generator = asyncio.create_task(generate_load(base, setup, ids, outage, load))
    try:
        await asyncio.sleep(OUTAGE_AFTER)
        await asyncio.to_thread(pg_ctl, "stop")
        outage.set()
        await asyncio.sleep(OUTAGE / 2)
        readyz_during.append(await readyz(base))
        await asyncio.sleep(OUTAGE / 2)
    finally:
        # Whatever happened above, the cluster comes back before anything else.
        await asyncio.to_thread(pg_ctl, "start")
        await asyncio.to_thread(wait_until_accepting)
        outage.clear()
        # The suite's own pool still holds connections to the stopped server.
        await app.state.engine.dispose()
    try:
        await generator
    finally:
        generator.cancel()
    elapsed = time.monotonic() - started

    deadline = time.monotonic() + 20
    while (status := await readyz(base)) != 200 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    stored = await stored_ids(scratch_url)
    print(  # noqa: T201 - the figures the issue asks for
        f"\nfault: {len(ids)} ids, {load.attempts} attempts in {elapsed:.1f}s, "
        f"acknowledged {len(load.acknowledged)}, stored {len(stored)}, "
        f"statuses {dict(load.statuses)}, from the stop until PostgreSQL accepted "
        f"connections again {dict(load.outage_statuses)}, "
        f"/readyz during the outage {readyz_during}"
    )

    assert process.poll() is None, "the server died"
    assert status == 200, "/readyz did not recover without a restart"
    assert readyz_during == [503]
    server_log = (tmp_path / "server.log").read_text(errors="replace")
    assert not load.server_errors, (load.server_errors[:5], server_log[-6000:])
    assert load.outage_statuses["503"] > 0, load.outage_statuses
    assert load.missing_retry_after == 0
    assert all(count == 1 for count in stored.values()), "an id is stored twice"
    assert load.acknowledged <= stored.keys(), "an acknowledged id was lost"
    assert stored.keys() <= set(ids)
    # Every submission got through in the end (the deadline leaves room for the outage).
    assert load.acknowledged == set(ids), f"{len(set(ids) - load.acknowledged)} never acknowledged"
