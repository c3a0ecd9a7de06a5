"""Issue #15 (hardening): regression tests for the findings of the attack review.

Each test reproduces one finding through the real app (httpx ASGITransport, or a real uvicorn on
loopback where the finding is about the server or the event loop) and fails without its fix.
"""

import asyncio
import base64
import contextlib
import io
import json
import os
import random
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from openpyxl import Workbook
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlmodel import col, select

from app.config import Settings, SettingsError, load_settings
from app.main import create_app
from app.migrate import upgrade_to_head
from app.models.auth import Role, User
from app.server import CoalescedWrites
from tests.conftest import ROOT, TEST_SECRET, free_port
from tests.factories import (
    DEFAULT_PASSWORD,
    almaty_answers,
    almaty_definition,
    bearer,
    create_questionnaire,
    create_user,
    headers_for,
)
from tests.test_consultations import create, observation, observations_url
from tests.test_elections import create_election
from tests.test_territories import TREE, csv_file, import_tree

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CONSULTATION_HEADER = (
    "election_id,territory_code,host,starts_at,ends_at,location,announced_at,"
    "agenda_kk,agenda_ru,agenda_en\n"
)


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


# Made-up cursors a client can send: each must be a 400 problem, never a 500.
TAMPERED = [
    _cursor(["2020-01-01T00:00:00+00:00", 5]),
    _cursor(["2020-01-01T00:00:00+00:00", None]),
    _cursor(["2020-01-01T00:00:00+00:00", [1]]),
    _cursor([5, str(uuid.uuid4())]),
    _cursor(["0001-01-01T00:00:00+14:00", str(uuid.uuid4())]),
    _cursor(["9999-12-31T23:59:59-14:00", str(uuid.uuid4())]),
    _cursor(["2020-01-01T00:00:00+00:00", str(uuid.uuid4()), 3]),
    _cursor({"a": 1}),
    _cursor([[[[[[[[]]]]]]]]),
    _cursor("2020"),
]


async def test_tampered_cursors_are_400_on_every_list(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Finding 13: a cursor holding a number for the id, or a time with no UTC equivalent, was
    a 500 on every paginated list."""
    admin = await headers_for(app, Role.admin)
    await import_tree(client, admin)
    questionnaire = await create_questionnaire(app, publish=True)
    consultation = await create(client, admin)
    posted = await client.post(observations_url(consultation), json=observation(), headers=admin)
    assert posted.status_code == 201, posted.text
    election = await create_election(client, admin)
    lists = [
        "/api/v1/users",
        "/api/v1/collectors",
        "/api/v1/audit",
        "/api/v1/questionnaires",
        f"/api/v1/questionnaires/{questionnaire.id}/responses",
        "/api/v1/territories",
        "/api/v1/elections",
        f"/api/v1/elections/{election['id']}/candidates",
        "/api/v1/consultations",
        observations_url(consultation),
    ]
    for url in lists:
        assert (await client.get(url, headers=admin)).status_code == 200, url
        for cursor in TAMPERED:
            answer = await client.get(url, params={"cursor": cursor}, headers=admin)
            assert answer.status_code == 400, (url, cursor, answer.status_code, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"


async def test_non_finite_numbers_in_a_definition_are_422(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Finding 13: a decimal `min` of NaN, Infinity or 1e400 was stored (SQLite; every later
    read of the questionnaire was a 500) or a 500 on create (PostgreSQL); so was a condition
    comparing with one."""
    coordinator = await headers_for(app, Role.coordinator)
    label = {"kk": "Үлес", "ru": "Доля", "en": "Share"}
    decimal = {"key": "share", "type": "decimal", "label": label}
    for number in ("NaN", "Infinity", "-Infinity", "1e400"):
        for question, field in (
            ({**decimal, "min": "__N__"}, "min"),
            ({**decimal, "max": "__N__"}, "max"),
            (
                {
                    **decimal,
                    "relevant": {"question": "times_participated", "op": "gt", "value": "__N__"},
                },
                "relevant",
            ),
        ):
            definition = almaty_definition(slug=f"nan-{uuid.uuid4().hex[:8]}")
            definition["questions"].append(question)
            text = json.dumps(definition).replace('"__N__"', number)
            answer = await client.post(
                "/api/v1/questionnaires",
                content=text,
                headers={**coordinator, "Content-Type": "application/json"},
            )
            assert answer.status_code == 422, (number, question, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
            assert field in json.dumps(answer.json()["errors"]), answer.text
    listed = await client.get("/api/v1/questionnaires", headers=coordinator)
    assert listed.status_code == 200 and listed.json()["items"] == []


# --- logins (findings 4, 5, 6, 7, 15 and the audit part of 16) ----------------------------------

ALMATY_ANSWERS: dict[str, Any] = almaty_answers()


def submission() -> dict[str, Any]:
    return {
        "respondent": {"group": "student", "gender": "female", "age_band": "18-24"},
        "answers": ALMATY_ANSWERS,
        "language": "ru",
        "channel": "mobile",
    }


@contextlib.asynccontextmanager
async def client_from(application: FastAPI, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the real app whose requests come from `address`."""
    transport = httpx.ASGITransport(app=application, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@contextlib.asynccontextmanager
async def app_from(settings: Settings, **changes: Any) -> AsyncIterator[FastAPI]:
    """The app with changed settings, on the suite's database."""
    application = create_app(settings.model_copy(update=changes))
    async with application.router.lifespan_context(application):
        yield application


async def try_login(http: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await http.post("/api/v1/auth/token", data={"username": email, "password": password})


async def test_logins_do_not_hold_the_write_lock_while_hashing(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Finding 4: on SQLite a login held the write lock through argon2, so 28 failed logins
    pushed submissions from 4 ms to about 2 s. Now the hash runs between two short
    transactions: submissions during a burst of failed logins stay fast (both databases)."""
    survey = await create_questionnaire(app, publish=True)
    observer = await headers_for(app, Role.observer)
    target = f"/api/v1/questionnaires/{survey.id}/responses"
    assert (await client.post(target, json=submission(), headers=observer)).status_code == 201

    async def failed_logins() -> list[int]:
        answers = await asyncio.gather(
            *(try_login(client, f"nobody{n}@example.org", "wrong password 1") for n in range(28))
        )
        return [answer.status_code for answer in answers]

    async def timed_submissions() -> list[float]:
        took = []
        for _ in range(10):
            started = time.perf_counter()
            answer = await client.post(target, json=submission(), headers=observer)
            took.append(time.perf_counter() - started)
            assert answer.status_code == 201, answer.text
            await asyncio.sleep(0.02)
        return took

    statuses, took = await asyncio.gather(failed_logins(), timed_submissions())
    assert statuses == [401] * 28
    assert max(took) < 1.0, [round(t, 3) for t in took]


async def test_concurrent_wrong_passwords_cannot_race_the_throttle(
    app: FastAPI, settings: Settings
) -> None:
    """Finding 5: on PostgreSQL 14 concurrent wrong passwords were checked against a limit of 5
    (the right one accepted after 13 failures), and 38 against a per-address limit of 30.
    Each attempt is now counted before its password is checked, in one locked step."""
    user = await create_user(app, Role.observer)
    async with (
        app_from(settings, login_max_failures=5, login_backoff_seconds=600) as application,
        client_from(application, "192.0.2.10") as http,
    ):
        answers = await asyncio.gather(
            *(try_login(http, user.email, f"wrong password {n}") for n in range(14))
        )
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [401] * 5 + [429] * 9, statuses
        assert (await try_login(http, user.email, DEFAULT_PASSWORD)).status_code == 429
    async with (
        app_from(settings, login_max_failures_per_address=30) as application,
        client_from(application, "192.0.2.11") as http,
    ):
        answers = await asyncio.gather(
            *(try_login(http, f"guess{n}@example.org", "wrong password 1") for n in range(38))
        )
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [401] * 30 + [429] * 8, statuses


async def test_nobody_can_lock_the_owner_out_and_hashing_per_address_is_bounded(
    app: FastAPI, settings: Settings
) -> None:
    """Finding 6: five wrong passwords from anywhere locked the admin for 900 s. Failures now
    count per (account, address), with a backoff that doubles; the owner, elsewhere, still
    logs in; an address (an IPv6 /64) gets one hashing budget for all the accounts it tries."""
    admin = await create_user(app, Role.admin)
    async with app_from(
        settings, login_max_failures=3, login_backoff_seconds=1, login_max_failures_per_address=8
    ) as application:
        async with client_from(application, "198.51.100.7") as attacker:
            for _ in range(3):
                assert (
                    await try_login(attacker, admin.email, "wrong password 1")
                ).status_code == 401
            refused = await try_login(attacker, admin.email, DEFAULT_PASSWORD)
            assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
            await asyncio.sleep(1.1)
            # The backoff doubles with each further failure.
            assert (await try_login(attacker, admin.email, "wrong password 1")).status_code == 401
            refused = await try_login(attacker, admin.email, "wrong password 1")
            assert refused.status_code == 429 and refused.headers["retry-after"] == "2"
        async with client_from(application, "203.0.113.9") as owner:
            assert (await try_login(owner, admin.email, DEFAULT_PASSWORD)).status_code == 200
        # One /64 is one budget (8 password checks), however many addresses it uses.
        statuses = []
        for n in range(10):
            async with client_from(application, f"2001:db8:1:2::{n + 1:x}") as rotating:
                answer = await try_login(rotating, f"guess{n}@example.org", "wrong password 1")
                statuses.append(answer.status_code)
        assert statuses == [401] * 8 + [429] * 2, statuses
        async with client_from(application, "2001:db8:1:3::1") as neighbour:
            assert (await try_login(neighbour, admin.email, DEFAULT_PASSWORD)).status_code == 200


async def test_a_password_typed_as_the_username_is_not_stored(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Finding 16: the username field of a failed login went into the audit log as typed,
    which is sometimes the password; nor does it go into the throttle's keys."""
    admin = await headers_for(app, Role.admin)
    typed = "Tr0ub4dor&3 horse"
    assert (await try_login(client, typed, "something")).status_code == 401
    log = await client.get("/api/v1/audit", headers=admin)
    assert log.status_code == 200
    assert "auth.login_failed" in log.text and typed not in log.text
    async with app.state.engine.connect() as connection:
        keys = (await connection.execute(text("SELECT key FROM rate_limit_bucket"))).scalars()
        assert not [key for key in keys if typed.lower() in key]


async def test_a_password_change_or_deactivation_ends_earlier_tokens(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Finding 7: a password change did not end old tokens; deactivate then reactivate
    revived them. Both end every token issued before, for good."""
    admin = await headers_for(app, Role.admin)
    user = await create_user(app, Role.observer)
    first = (await try_login(client, user.email, DEFAULT_PASSWORD)).json()["access_token"]
    old = {"Authorization": f"Bearer {first}"}
    assert (await client.get("/api/v1/auth/me", headers=old)).status_code == 200
    new_password = "a brand new passphrase"
    changed = await client.patch(
        f"/api/v1/users/{user.id}", json={"password": new_password}, headers=admin
    )
    assert changed.status_code == 200
    assert (await client.get("/api/v1/auth/me", headers=old)).status_code == 401
    second = (await try_login(client, user.email, new_password)).json()["access_token"]
    current = {"Authorization": f"Bearer {second}"}
    assert (await client.get("/api/v1/auth/me", headers=current)).status_code == 200
    for active in (False, True):
        patched = await client.patch(
            f"/api/v1/users/{user.id}", json={"is_active": active}, headers=admin
        )
        assert patched.status_code == 200
    assert (await client.get("/api/v1/auth/me", headers=current)).status_code == 401
    assert (await client.get("/api/v1/auth/me", headers=old)).status_code == 401
    third = (await try_login(client, user.email, new_password)).json()["access_token"]
    fresh = {"Authorization": f"Bearer {third}"}
    assert (await client.get("/api/v1/auth/me", headers=fresh)).status_code == 200


async def test_two_admins_removing_each_other_at_once_leave_one(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Finding 15: on PostgreSQL two admins deactivating each other at once left no admin in
    9 of 15 tries. The active admins are now locked while one is removed."""
    for _ in range(8):
        first = await create_user(app, Role.admin)
        second = await create_user(app, Role.admin)
        answers = await asyncio.gather(
            client.patch(
                f"/api/v1/users/{second.id}", json={"is_active": False}, headers=bearer(app, first)
            ),
            client.patch(
                f"/api/v1/users/{first.id}", json={"is_active": False}, headers=bearer(app, second)
            ),
        )
        statuses = sorted(answer.status_code for answer in answers)
        # The loser is refused as the last admin (409), or, if the winner's change landed
        # first, by its own deactivation (401).
        assert statuses in ([200, 401], [200, 409]), [a.text for a in answers]
        async with app.state.sessionmaker() as session:
            admins = [
                user
                for user in (await session.exec(select(User).where(col(User.is_active)))).all()
                if "admin" in user.roles
            ]
        assert len(admins) == 1
        # Start the next round with no admin left over.
        async with app.state.engine.begin() as connection:
            await connection.execute(text("UPDATE user_account SET is_active = false"))


# --- a real server on loopback (findings 3, 10, 11) -----------------------------------------------


@contextlib.contextmanager
def real_server(
    database_url: str, *args: str, **env_changes: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`kenes serve` on a free loopback port, until the block ends; yields (base URL, process)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KENES_")}
    env.update(
        KENES_DATABASE_URL=database_url,
        KENES_SECRET_KEY=TEST_SECRET,
        KENES_AUTO_MIGRATE="false",
        KENES_LOG_LEVEL="WARNING",
        **env_changes,
    )
    server = subprocess.Popen(  # noqa: S603 - our own command
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline, "the server did not start"
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield base, server
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)


def stalled_request(port: int, request: bytes) -> socket.socket:
    """A connection that sends `request` and then reads nothing (a tiny receive window)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.sendall(request)
    return sock


async def test_exports_the_client_stopped_reading_end_and_never_starve_others(
    app: FastAPI, client: httpx.AsyncClient, database_url: str
) -> None:
    """Finding 3: ten analyst exports that stopped reading held every database connection
    (/auth/me, /questionnaires, /readyz and logins answered 503), with no end. Exports now have
    connections of their own, one more than KENES_EXPORT_CONCURRENCY is 429, and one whose
    client reads nothing for KENES_EXPORT_IDLE_SECONDS ends and frees its place."""
    survey = await create_questionnaire(app, publish=True)
    observer = await headers_for(app, Role.observer)
    big = {**ALMATY_ANSWERS, "suggestions": "more public hearings online please " * 28}
    for _ in range(10):  # 6,000 responses of about 1.3 kB: more than the socket buffers hold
        batch = {"responses": [{**submission(), "answers": big} for _ in range(600)]}
        stored = await client.post(
            f"/api/v1/questionnaires/{survey.id}/responses/batch", json=batch, headers=observer
        )
        assert stored.status_code == 200, stored.text[:300]
        assert {r["status"] for r in stored.json()["results"]} == {"created"}, stored.text[:300]
    analyst = await create_user(app, Role.analyst)
    token = bearer(app, analyst)["Authorization"]
    export = f"/api/v1/questionnaires/{survey.id}/responses/export?format=csv"
    request = f"GET {export} HTTP/1.1\r\nHost: t\r\nAuthorization: {token}\r\n\r\n".encode()
    idle = 3.0
    with real_server(
        database_url,
        KENES_DB_POOL_SIZE="3",
        KENES_EXPORT_CONCURRENCY="2",
        KENES_EXPORT_IDLE_SECONDS=str(idle),
    ) as (base, _):
        port = int(base.rsplit(":", 1)[1])
        stalled = [stalled_request(port, request) for _ in range(6)]
        try:
            time.sleep(1.0)
            headers = {"Authorization": token}
            async with httpx.AsyncClient(base_url=base, timeout=8) as http:
                started = time.monotonic()
                for path in ("/api/v1/auth/me", "/api/v1/questionnaires", "/readyz"):
                    answer = await http.get(path, headers=headers)
                    assert answer.status_code == 200, (path, answer.status_code, answer.text)
                login = await try_login(http, analyst.email, DEFAULT_PASSWORD)
                assert login.status_code == 200, login.text
                assert time.monotonic() - started < 3.0
                busy = await http.get(export, headers=headers)
                assert busy.status_code == 429 and "retry-after" in busy.headers
                # The stalled exports end after the idle time, and their places are free.
                time.sleep(idle + 2.0)
                complete = await http.get(export, headers=headers, timeout=30)
                assert complete.status_code == 200
                assert complete.text.count("\n") == 6_000 + 1
        finally:
            for sock in stalled:
                sock.close()


def closed_within(sock: socket.socket, seconds: float, dribble: bytes = b"") -> float | None:
    """Seconds until the server closed `sock` (reading whatever it answered), sending one byte
    of `dribble` every 0.5 s meanwhile; None if it was still open after `seconds`."""
    started = time.monotonic()
    sock.settimeout(0.5)
    sent = 0
    while time.monotonic() - started < seconds:
        try:
            if not sock.recv(65536):
                return time.monotonic() - started
        except TimeoutError:
            pass
        except OSError:  # reset: closed too
            return time.monotonic() - started
        if sent < len(dribble):
            try:
                sock.sendall(dribble[sent : sent + 1])
            except OSError:
                return time.monotonic() - started
            sent += 1
    return None


def test_slow_and_idle_clients_are_dropped(database_url: str) -> None:
    """Finding 11: idle connections, and headers or bodies dribbled a byte at a time, stayed
    open; 4,000 idle connections were accepted. `kenes serve` now drops them (header and body
    deadlines, a connection cap) and keeps serving everyone else."""
    with real_server(
        database_url,
        KENES_HTTP_HEADER_TIMEOUT_SECONDS="2",
        KENES_HTTP_BODY_TIMEOUT_SECONDS="3",
        KENES_HTTP_KEEP_ALIVE_SECONDS="2",
        KENES_MAX_CONNECTIONS="40",
    ) as (base, _):
        port = int(base.rsplit(":", 1)[1])

        def connect() -> socket.socket:
            return socket.create_connection(("127.0.0.1", port), timeout=5)

        # Silent, and dribbling its headers a byte every half second: both closed in time.
        silent = closed_within(connect(), 8)
        headers = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 100
        dribbled = closed_within(connect(), 8, dribble=headers)
        # Headers complete, a body of 100 bytes dribbled: closed at the body deadline.
        body_request = connect()
        body_request.sendall(
            b"POST /api/v1/auth/token HTTP/1.1\r\nHost: t\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
        )
        slow_body = closed_within(body_request, 8, dribble=b"u" * 100)
        # A kept-alive connection that then goes quiet.
        kept = connect()
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        idle_after_response = closed_within(kept, 8)
        assert silent is not None and 1.5 < silent < 4, silent
        assert dribbled is not None and 1.5 < dribbled < 4, dribbled
        assert slow_body is not None and 2.5 < slow_body < 5, slow_body
        assert idle_after_response is not None and idle_after_response < 4

        # Headers past 64 KiB are refused, not buffered.
        huge = connect()
        huge.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        with contextlib.suppress(OSError):
            for _ in range(20):
                huge.sendall(b"X-Pad: " + b"p" * 8000 + b"\r\n")
        assert closed_within(huge, 3) is not None

        # A flood of idle connections: those past the cap are closed at once, and once the
        # idle ones are dropped the server answers again.
        flood = [connect() for _ in range(120)]
        try:
            time.sleep(0.5)
            shut = 0
            for sock in flood:
                sock.settimeout(0.05)
                try:
                    if not sock.recv(1):
                        shut += 1
                except TimeoutError:
                    pass
                except OSError:
                    shut += 1
            assert shut >= 120 - 40, shut
            time.sleep(3)
            assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        finally:
            for sock in flood:
                sock.close()


class _Transport:
    """What uvicorn's request cycle writes, write by write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 8000) if name == "sockname" else None


async def test_an_answer_goes_out_in_one_write_and_nothing_waits_long() -> None:
    """app/server.py: the status line and headers wait for the body and go out with it (one
    send instead of two); headers alone (a HEAD answer, a streamed body not ready yet) go out at
    the event loop's next step, on close, and before anything written after them."""
    loop = asyncio.get_running_loop()
    transport = _Transport()
    writes = CoalescedWrites(transport, loop)  # type: ignore[arg-type]
    writes.write(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n")
    assert transport.writes == []
    writes.write(b"{}")
    assert transport.writes == [b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}"]
    writes.write(b"more")  # a streamed body's later chunks go as they come
    assert transport.writes[-1] == b"more"
    await asyncio.sleep(0)
    assert len(transport.writes) == 2  # nothing was held, nothing is written twice

    head = _Transport()
    writes = CoalescedWrites(head, loop)  # type: ignore[arg-type]
    writes.write(b"HTTP/1.1 200 OK\r\n\r\n")
    await asyncio.sleep(0)
    assert head.writes == [b"HTTP/1.1 200 OK\r\n\r\n"]

    closing = _Transport()
    writes = CoalescedWrites(closing, loop)  # type: ignore[arg-type]
    writes.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    writes.close()
    assert closing.writes == [b"HTTP/1.1 204 No Content\r\n\r\n"] and closing.closed
    assert writes.get_extra_info("sockname") == ("127.0.0.1", 8000)
    await asyncio.sleep(0)  # the pending flush finds nothing held: no write after close


def big_xlsform(rows: int) -> bytes:
    """A workbook of `rows` text questions with labels that do not compress (about 55 bytes
    a row); the import refuses it, but only after reading all of it."""
    workbook = Workbook()
    survey = workbook.active
    survey.title = "survey"
    survey.append(["type", "name", "label::English (en)"])
    for n in range(rows):
        survey.append(["text", f"q{n}", uuid.uuid4().hex + uuid.uuid4().hex])
    choices = workbook.create_sheet("choices")
    choices.append(["list_name", "name", "label::English (en)", "category"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


async def longest_stall(base: str, upload: Awaitable[httpx.Response]) -> tuple[float, int]:
    """(the slowest /healthz answer while `upload` runs, the upload's status)."""
    done = asyncio.Event()
    worst = 0.0

    async def ticker() -> None:
        nonlocal worst
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            while not done.is_set():
                started = time.perf_counter()
                assert (await http.get("/healthz")).status_code == 200
                worst = max(worst, time.perf_counter() - started)
                await asyncio.sleep(0.05)

    async def run() -> httpx.Response:
        try:
            await asyncio.sleep(0.2)
            return await upload
        finally:
            done.set()

    _, answer = await asyncio.gather(ticker(), run())
    return worst, answer.status_code


async def test_uploads_are_parsed_off_the_event_loop(app: FastAPI, database_url: str) -> None:
    """Finding 10: a 2 MiB XLSForm froze the event loop for 7.3 s and a 100,000-line territory
    CSV for 11 s. Uploads are now parsed and checked in worker threads (two at a time), files
    past 20,000 lines are refused before parsing, and rows are flushed a chunk at a time:
    /healthz keeps answering within a fraction of a second meanwhile."""
    coordinator = await headers_for(app, Role.coordinator)
    workbook = big_xlsform(24_000)
    territories = "code,parent_code,level,name_kk,name_ru,name_en\n" + "".join(
        f"{100000000 + n},,region,А{n},А{n},A{n}\n" for n in range(100_000)
    )
    consultations = "".join(
        f",112010001,Host {n},2031-01-01T10:00:00+05:00,,Hall,,,,\n" for n in range(5_000)
    )
    with real_server(database_url) as (base, _):
        async with httpx.AsyncClient(base_url=base, timeout=60, headers=coordinator) as http:
            tree = await http.post("/api/v1/territories/import", files=csv_file(TREE))
            assert tree.status_code == 200, tree.text
            xlsform_stall, xlsform_status = await longest_stall(
                base,
                http.post(
                    "/api/v1/questionnaires/import",
                    files={"file": ("big.xlsx", workbook, XLSX)},
                ),
            )
            csv_stall, csv_status = await longest_stall(
                base,
                http.post("/api/v1/territories/import", files=csv_file(territories)),
            )
            import_stall, import_status = await longest_stall(
                base,
                http.post(
                    "/api/v1/consultations/import",
                    files=csv_file(CONSULTATION_HEADER + consultations, "c.csv"),
                ),
            )
    assert (xlsform_status, csv_status, import_status) == (422, 422, 200)
    assert xlsform_stall < 0.5, xlsform_stall
    assert csv_stall < 0.5, csv_stall
    assert import_stall < 0.5, import_stall


async def test_condition_cost_is_bounded_per_definition(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Finding 10: one anonymous batch against a condition-heavy public form held the event
    loop for 4 s. A definition's conditions now hold at most 1000 comparisons and listed values
    in all; a batch of 1000 against the heaviest allowed form stays well under a second."""
    coordinator = await headers_for(app, Role.coordinator)

    def definition(values: int) -> dict[str, Any]:
        data = almaty_definition(slug=f"heavy-{uuid.uuid4().hex[:8]}", access="public")
        listed = {"question": "times_participated", "op": "in", "value": list(range(values))}
        data["questions"][-1]["relevant"] = {"any": [listed, {"not": listed}]}
        return data

    heavy = await client.post("/api/v1/questionnaires", json=definition(5_000), headers=coordinator)
    assert heavy.status_code == 422, heavy.text[:300]
    assert "at most 1000" in heavy.text
    allowed = await client.post("/api/v1/questionnaires", json=definition(490), headers=coordinator)
    assert allowed.status_code == 201, allowed.text[:300]
    survey_id = allowed.json()["id"]
    published = await client.post(
        f"/api/v1/questionnaires/{survey_id}/publish", headers=coordinator
    )
    assert published.status_code == 200, published.text
    answers = {**ALMATY_ANSWERS, "times_participated": 10_000}
    batch = {"responses": [{**submission(), "answers": answers} for _ in range(1000)]}
    observer = await headers_for(app, Role.observer)
    started = time.perf_counter()
    stored = await client.post(
        f"/api/v1/questionnaires/{survey_id}/responses/batch", json=batch, headers=observer
    )
    took = time.perf_counter() - started
    assert stored.status_code == 200, stored.text[:300]
    assert took < 3.0, took


def wide_survey(questions: int) -> dict[str, Any]:
    """A form of `questions` multiple choices of 8 options (a long checklist questionnaire)."""
    label = {"ru": "Вопрос", "en": "Question"}
    options = [{"value": f"o{n}", "label": label} for n in range(8)]
    return almaty_definition(
        slug=f"wide-{uuid.uuid4().hex[:8]}",
        questions=[
            {"key": f"q{n}", "type": "multiple_choice", "label": label, "options": options}
            for n in range(questions)
        ],
    )


async def test_a_large_batch_is_decoded_and_stored_off_the_event_loop(
    app: FastAPI, database_url: str
) -> None:
    """Finding 10, batches: a batch of 1000 responses to a 500-question form (14 MB) held the
    event loop in one piece after another: FastAPI's `json.loads` of the body (0.44 s for
    8 MB), asyncpg encoding its arrays (0.27 s) or, on SQLite, SQLAlchemy converting its
    parameters (0.5-1.7 s). The body is now decoded a response at a time in a worker thread,
    arrays go to PostgreSQL as literals built there, SQLite's rows are converted there and
    written in the driver's thread: /healthz keeps answering meanwhile (best of two batches)."""
    questions = 500
    survey = await create_questionnaire(app, publish=True, definition=wide_survey(questions))
    observer = await headers_for(app, Role.observer)
    rng = random.Random(10)
    values = [f"o{n}" for n in range(8)]
    items = [
        {
            "respondent": {"group": "student"},
            "answers": {f"q{n}": rng.sample(values, 3) for n in range(questions)},
        }
        for _ in range(1000)
    ]
    url = f"/api/v1/questionnaires/{survey.id}/responses/batch"
    stalls = []
    with real_server(database_url) as (base, _):
        headers = {**observer, "content-type": "application/json"}
        async with httpx.AsyncClient(base_url=base, timeout=120, headers=headers) as http:
            for _ in range(2):
                body = json.dumps({"responses": items}).encode()
                assert len(body) > 12_000_000
                stall, status = await longest_stall(base, http.post(url, content=body))
                assert status == 200
                stalls.append(stall)
    assert min(stalls) < 0.35, stalls


# --- observations (findings 8 and 9) ----------------------------------------------------------


async def test_observers_see_only_their_own_and_cannot_report_ahead(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Finding 8: observers read each other's observations (notes, exact location, user id),
    and one timed minutes ahead decided the status over later reports. Observers now see only
    their own; observed_at may be at most 5 minutes ahead."""
    coordinator = await headers_for(app, Role.coordinator)
    await import_tree(client, coordinator)
    consultation = await create(client, coordinator)
    url = observations_url(consultation)
    first, second = await headers_for(app, Role.observer), await headers_for(app, Role.observer)
    analyst = await headers_for(app, Role.analyst)
    mine = await client.post(url, json=observation(notes="first's notes"), headers=first)
    theirs = await client.post(url, json=observation(notes="second's notes"), headers=second)
    assert mine.status_code == theirs.status_code == 201
    listed = await client.get(url, headers=first)
    assert [item["id"] for item in listed.json()["items"]] == [mine.json()["id"]]
    other = f"{url}/{theirs.json()['id']}"
    assert (await client.get(other, headers=first)).status_code == 404
    assert (await client.get(other, headers=second)).status_code == 200
    for reader in (coordinator, analyst):
        every = await client.get(url, headers=reader)
        assert len(every.json()["items"]) == 2
        assert (await client.get(other, headers=reader)).status_code == 200

    now = datetime.now(UTC)
    ahead = observation(outcome="cancelled", observed_at=(now + timedelta(minutes=10)).isoformat())
    refused = await client.post(url, json=ahead, headers=first)
    assert refused.status_code == 422 and "observed_at" in refused.text
    almost = observation(outcome="postponed", observed_at=(now + timedelta(minutes=4)).isoformat())
    assert (await client.post(url, json=almost, headers=first)).status_code == 201
    read = await client.get(f"/api/v1/consultations/{consultation['id']}", headers=coordinator)
    assert read.json()["status"] == "postponed"


async def test_observations_may_predate_the_consultation_record(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Finding 9: an observation dated before the consultation was recorded was refused, so
    paper logs entered later, and schedules imported after the fact, could not be observed."""
    coordinator = await headers_for(app, Role.coordinator)
    await import_tree(client, coordinator)
    consultation = await create(client, coordinator)
    recorded = datetime.fromisoformat(consultation["created_at"])
    paper = observation(observed_at=(recorded - timedelta(days=3)).isoformat(), outcome="held")
    stored = await client.post(observations_url(consultation), json=paper, headers=coordinator)
    assert stored.status_code == 201, stored.text
    read = await client.get(f"/api/v1/consultations/{consultation['id']}", headers=coordinator)
    assert read.json()["status"] == "held"


# --- production settings (finding 12) ---------------------------------------------------------


def _pem_pair(bits: int) -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def test_weak_production_settings_are_refused_with_one_line() -> None:
    """Finding 12: production accepted a secret of 32 identical characters, a 512-bit RSA key,
    a mismatched key pair (every token then 401 while /readyz was 200), KENES_MIN_CELL=1 and
    CORS `*`. Each now stops start-up with one line naming the variable."""
    good = secrets.token_urlsafe(48)
    private, public = _pem_pair(2048)
    other_private, other_public = _pem_pair(2048)
    small_private, small_public = _pem_pair(1024)  # the smallest cryptography makes
    production = {"env": "production", "secret_key": good}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"secret_key": "a" * 32}, "KENES_SECRET_KEY"),
        ({"secret_key": "abcd" * 12}, "KENES_SECRET_KEY"),
        ({"jwt_private_key": small_private, "jwt_public_key": small_public}, "at least 2048"),
        ({"jwt_private_key": private, "jwt_public_key": other_public}, "KENES_JWT_PUBLIC_KEY"),
        ({"jwt_private_key": "not a key", "jwt_public_key": public}, "PEM"),
        ({"min_cell": 1}, "KENES_MIN_CELL"),
        ({"cors_origins": "https://kenes.kz,*"}, "KENES_CORS_ORIGINS"),
    ]
    for changes, named in cases:
        with pytest.raises(SettingsError) as refused:
            load_settings(**(production | changes))
        line = str(refused.value)
        assert named in line and "\n" not in line, (changes, line)
        assert good not in line and "PRIVATE KEY-----" not in line
    accepted = load_settings(
        **production,
        jwt_private_key=other_private,
        jwt_public_key=other_public,
        min_cell=5,
        cors_origins="https://kenes.kz",
    )
    assert accepted.jwt_algorithm == "RS256"


async def test_docs_openapi_and_metrics_exposure_is_a_setting(settings: Settings) -> None:
    """Finding 12: /docs, /openapi.json and /metrics were always served; now each can be off."""
    for expose, status in ((True, 200), (False, 404)):
        async with (
            app_from(settings, expose_docs=expose, expose_metrics=expose) as application,
            client_from(application, "127.0.0.1") as http,
        ):
            for path in ("/docs", "/redoc", "/openapi.json", "/metrics"):
                assert (await http.get(path)).status_code == status, (expose, path)
            assert (await http.get("/healthz")).status_code == 200


# --- smaller findings (16) --------------------------------------------------------------------


async def test_dates_in_conditions_are_exactly_yyyy_mm_dd(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Finding 16: "20200101  " and "2020-W01-1" passed as dates (Python 3.11 reads both) and
    were stored as sent, where they compare wrongly. A condition on a date question takes
    only YYYY-MM-DD."""
    coordinator = await headers_for(app, Role.coordinator)
    for value, status in (("20200101  ", 422), ("2020-W01-1", 422), ("2020-01-01", 201)):
        data = almaty_definition(slug=f"dates-{uuid.uuid4().hex[:8]}")
        data["questions"][-1]["relevant"] = {"question": "last_hearing", "op": "gt", "value": value}
        answer = await client.post("/api/v1/questionnaires", json=data, headers=coordinator)
        assert answer.status_code == status, (value, answer.text[:300])


async def test_territory_names_over_1000_characters_are_refused_on_import(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Finding 16: a territory CSV stored names of 100 KB, where the API caps them at 1000."""
    coordinator = await headers_for(app, Role.coordinator)
    text_ = "code,parent_code,level,name_kk,name_ru,name_en\n" + f"77,,region,{'Ә' * 100_000},,\n"
    refused = await client.post(
        "/api/v1/territories/import", files=csv_file(text_), headers=coordinator
    )
    assert refused.status_code == 422, refused.text[:300]
    assert refused.json()["errors"][0]["loc"] == ["file", 2]
    assert (await client.get("/api/v1/territories/77", headers=coordinator)).status_code == 404


async def test_no_redirect_is_built_from_the_host_header(client: httpx.AsyncClient) -> None:
    """Finding 16: /path/ redirected to http://<Host header>/path, a redirect the client
    chose."""
    answer = await client.get("/api/v1/questionnaires/", headers={"Host": "evil.example"})
    assert answer.status_code == 404
    assert "evil.example" not in answer.headers.get("location", "")


async def test_tokens_responses_and_exports_are_not_cached(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Finding 16: answers carrying tokens, responses and exports had no Cache-Control."""
    analyst = await create_user(app, Role.analyst)
    survey = await create_questionnaire(app, publish=True)
    observer = await headers_for(app, Role.observer)
    base = f"/api/v1/questionnaires/{survey.id}/responses"
    stored = await client.post(base, json=submission(), headers=observer)
    assert stored.status_code == 201
    login = await try_login(client, analyst.email, DEFAULT_PASSWORD)
    headers = bearer(app, analyst)
    answers = [
        login,
        stored,
        await client.get(base, headers=headers),
        await client.get(f"/api/v1/responses/{stored.json()['id']}", headers=headers),
        await client.get(f"{base}/export", headers=headers),
        await client.get("/api/v1/auth/me", headers=headers),
    ]
    for answer in answers:
        assert answer.status_code in (200, 201), answer.text[:200]
        assert answer.headers.get("cache-control") == "no-store", answer.request.url


async def test_sqlite_database_files_are_private(tmp_path: Any, settings: Settings) -> None:
    """Finding 16: the SQLite database files were world-readable (they hold password hashes
    and every answer). They are 0600, also when they existed before."""
    path = tmp_path / "kenes.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    application = create_app(
        settings.model_copy(update={"database_url": f"sqlite+aiosqlite:///{path}"})
    )
    try:
        await upgrade_to_head(application.state.engine)
        async with application.state.engine.begin() as connection:
            await connection.execute(text("SELECT 1"))
            for name in (path, path.with_name("kenes.db-wal")):
                if name.exists():
                    assert name.stat().st_mode & 0o777 == 0o600, name
    finally:
        await application.state.engine.dispose()
        await application.state.export_engine.dispose()
    fresh = tmp_path / "sub" / "new.db"
    other = create_app(settings.model_copy(update={"database_url": f"sqlite+aiosqlite:///{fresh}"}))
    await other.state.engine.dispose()
    assert fresh.stat().st_mode & 0o777 == 0o600


async def test_statement_parameters_are_not_in_database_errors(app: FastAPI) -> None:
    """Finding 16: SQLAlchemy's errors (and so the logged tracebacks) quoted the statement's
    parameters: answers, e-mails, password hashes."""
    secret = "hash-that-must-not-be-logged"
    async with app.state.engine.connect() as connection:
        with pytest.raises(DBAPIError) as failed:
            await connection.execute(
                text("INSERT INTO no_such_table (x) VALUES (:x)"), {"x": secret}
            )
    assert secret not in str(failed.value)


async def test_a_bare_bearer_header_is_401(app: FastAPI, client: httpx.AsyncClient) -> None:
    """Finding 16: `Authorization: Bearer` with no token gave 201 on the first PostgreSQL
    submission. It is bad credentials: 401, and nothing stored."""
    survey = await create_questionnaire(app, publish=True, access="public")
    url = f"/api/v1/questionnaires/{survey.id}/responses"
    for header in ("Bearer", "Bearer ", "Bearer    "):
        answer = await client.post(url, json=submission(), headers={"Authorization": header})
        assert answer.status_code == 401, (header, answer.text)
        me = await client.get("/api/v1/auth/me", headers={"Authorization": header})
        assert me.status_code == 401
    async with app.state.engine.connect() as connection:
        stored = (await connection.execute(text("SELECT count(*) FROM response"))).scalar_one()
    assert stored == 0
