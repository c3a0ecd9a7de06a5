"""Shared pieces of the HTTP benchmarks: a throw-away PostgreSQL database, servers on loopback,
wrk as the load generator (a separate process), and a user, a survey and a collector token."""

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432"
SECRET = "bench-secret-" + "k" * 40
ADMIN_EMAIL, ADMIN_PASSWORD = "bench@example.org", "bench password 1"


def psql(sql: str, server: str = DEFAULT_SERVER, database: str = "postgres") -> None:
    subprocess.run(
        ["psql", f"{server}/{database}", "-v", "ON_ERROR_STOP=1", "-qc", sql], check=True
    )


@contextlib.contextmanager
def scratch_database(server: str = DEFAULT_SERVER) -> Iterator[str]:
    """A fresh database; yields its plain postgresql:// DSN and drops it afterwards."""
    name = f"kenes_bench_{uuid.uuid4().hex[:8]}"
    psql(f'CREATE DATABASE "{name}"', server)
    try:
        yield f"{server}/{name}"
    finally:
        psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', server)


def kenes_env(dsn: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KENES_")}
    env.update(
        KENES_DATABASE_URL=dsn.replace("postgresql://", "postgresql+asyncpg://", 1),
        KENES_SECRET_KEY=SECRET,
        KENES_DB_POOL_SIZE="10",
        **extra,
    )
    return env


def kenes(dsn: str, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(  # noqa: S603
        [PYTHON, "-m", "app.cli", *args],
        cwd=ROOT,
        env=kenes_env(dsn),
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def server(command: list[str], env: dict[str, str], ready_path: str) -> Iterator[str]:
    """A server process on a free loopback port; yields its base URL (its pid in PIDS)."""
    port = free_port()
    process = subprocess.Popen(  # noqa: S603
        [part.replace("{port}", str(port)) for part in command],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    PIDS[base] = process.pid
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + ready_path, timeout=2).status_code < 500:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"server {command} did not start")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def kenes_server(dsn: str, **extra: str) -> contextlib.AbstractContextManager[str]:
    command = [PYTHON, "-m", "app.cli", "serve", "--port", "{port}", "--workers", "1"]
    return server(command, kenes_env(dsn, **extra), "/readyz")


def prepare_kenes(dsn: str) -> tuple[str, str]:
    """Migrate, load the demo data, create an admin; returns (survey id, collector token)."""
    kenes(dsn, "migrate")
    kenes(dsn, "demo-data")
    kenes(dsn, "create-user", "--email", ADMIN_EMAIL, "--password-stdin", stdin=ADMIN_PASSWORD)
    with kenes_server(dsn) as base:
        token = httpx.post(
            f"{base}/api/v1/auth/token",
            data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
        ).json()["access_token"]
        admin = {"Authorization": f"Bearer {token}"}
        surveys = httpx.get(
            f"{base}/api/v1/questionnaires", params={"slug": "almaty-participation"}, headers=admin
        ).json()["items"]
        survey_id = surveys[0]["id"]
        collector = httpx.post(
            f"{base}/api/v1/collectors",
            json={"name": "bench", "questionnaire_ids": [survey_id]},
            headers=admin,
        ).json()["token"]
    return survey_id, collector


PIDS: dict[str, int] = {}


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


_RESULT = re.compile(r"RESULT (.*)")


def wrk(
    base: str, *, path: str, auth: str, seconds: int, connections: int = 32
) -> dict[str, float]:
    """Run wrk with bench/submit.lua against base+path; returns its RESULT line as numbers."""
    env = {**os.environ, "BENCH_PATH": path, "BENCH_AUTH": auth}
    result = subprocess.run(  # noqa: S603
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",  # noqa: S607
            "-s",
            str(ROOT / "bench" / "submit.lua"),
            base,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    )
    match = _RESULT.search(result.stdout)
    if match is None:
        raise RuntimeError(result.stdout + result.stderr)
    return {key: float(value) for key, value in (p.split("=") for p in match.group(1).split())}


def dump(label: str, figures: dict[str, float]) -> None:
    print(f"{label:10} " + json.dumps(figures))


def clone(dsn: str, survey_id: str, total: int) -> None:
    """Grow the survey's responses (and their details) to `total` by copying them, new ids."""
    server, name = dsn.rsplit("/", 1)
    columns_sql = (
        "SELECT string_agg(quote_ident(column_name), ', ' ORDER BY ordinal_position) "
        "FROM information_schema.columns WHERE table_name = 'response' "
        "AND column_name NOT IN ('id', 'received_at')"
    )
    detail = "answers, content_hash, started_at, submitted_by_user, submitted_by_collector"
    sql = f"""
DO $$
DECLARE cols text;
BEGIN
  {columns_sql} INTO cols;
  EXECUTE format(
    'CREATE TEMP TABLE clone_map AS
     SELECT r.id AS old_id, gen_random_uuid() AS new_id, g
     FROM response r, generate_series(1, %s) g WHERE r.questionnaire_id = %L',
    ceil(({total}::numeric - 400) / 400)::int, '{survey_id}');
  EXECUTE format(
    'INSERT INTO response (id, received_at, %s)
     SELECT m.new_id, r.received_at + make_interval(secs => m.g), %s
     FROM clone_map m JOIN response r ON r.id = m.old_id', cols, cols);
  INSERT INTO response_detail (id, {detail})
  SELECT m.new_id, {", ".join("d." + c for c in detail.split(", "))}
  FROM clone_map m JOIN response_detail d ON d.id = m.old_id;
END $$;
"""
    psql(sql, server, name)
    psql("VACUUM ANALYZE response", server, name)


# --- helpers for bench/soak.py ------------------------------------------------------------------


def admin_token(base: str) -> str:
    """A bearer token for the admin prepare_kenes created."""
    reply = httpx.post(
        f"{base}/api/v1/auth/token", data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    )
    reply.raise_for_status()
    token: str = reply.json()["access_token"]
    return token


def rss_of_tree_mb(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn workers), from /proc (Linux)."""
    total = rss_mb(pid)
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        for child in children.read_text().split():
            total += rss_of_tree_mb(int(child))
    return total


def kenes_server_with_workers(
    dsn: str, workers: int, **extra: str
) -> contextlib.AbstractContextManager[str]:
    """kenes_server with a chosen number of uvicorn workers (PIDS holds the supervisor's pid)."""
    command = [PYTHON, "-m", "app.cli", "serve", "--port", "{port}", "--workers", str(workers)]
    return server(command, kenes_env(dsn, **extra), "/readyz")
