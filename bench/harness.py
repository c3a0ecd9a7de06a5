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
    # KENES_BENCH_DB_PREFIX: on a shared server, a prefix of your own.
    name = f"{os.environ.get('KENES_BENCH_DB_PREFIX', 'kenes_bench_')}{uuid.uuid4().hex[:8]}"
    psql(f'CREATE DATABASE "{name}"', server)
    try:
        yield f"{server}/{name}"
    finally:
        # A shared server may be restarting (other people's fault tests): retry for a minute.
        for attempt in range(12):
            try:
                psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', server)
                break
            except subprocess.CalledProcessError:
                if attempt == 11:
                    print(f"!! could not drop database {name}; drop it by hand", file=sys.stderr)
                    raise
                time.sleep(5)


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
    """A free loopback port; within KENES_BENCH_PORTS (`low-high`) when set (a shared machine)."""
    ports = os.environ.get("KENES_BENCH_PORTS")
    candidates = [0]
    if ports:
        low, high = (int(part) for part in ports.split("-"))
        candidates = list(range(low, high + 1))
    for candidate in candidates:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError(f"no free port in {ports}")


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
    base: str,
    *,
    path: str,
    auth: str,
    seconds: int,
    connections: int = 32,
    script: str = "submit.lua",
) -> dict[str, float]:
    """Run wrk with a bench/ script (submit.lua by default) against base+path; returns its
    RESULT line as numbers."""
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
            str(ROOT / "bench" / script),
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


# --- helpers for the storage benchmarks (ingest, aggregates, export, disk) ----------------------

# Wide forms' batches of 1000 responses are megabytes; the server is told to take them.
LARGE_BODIES = {"KENES_MAX_BODY_BYTES": str(64 * 1024 * 1024), "KENES_TOKEN_TTL": "86400"}


class PhaseOverrun(Exception):
    """A benchmark phase ran over its time limit."""


@contextlib.contextmanager
def phase(name: str, limit_seconds: float) -> Iterator[None]:
    """Bounds a phase in time: past the limit, prints so and raises PhaseOverrun in the main
    thread (SIGALRM), which unwinds the servers and the scratch database. Not nestable."""
    import signal

    def overrun(signum: int, frame: object) -> None:
        print(
            f"!! phase '{name}' ran over its limit of {limit_seconds:.0f} s: stopping", flush=True
        )
        raise PhaseOverrun(name)

    previous = signal.signal(signal.SIGALRM, overrun)
    signal.setitimer(signal.ITIMER_REAL, limit_seconds)
    started = time.perf_counter()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    print(f"[{name}: {time.perf_counter() - started:.1f} s]", flush=True)


def loopback_only(dsn: str) -> None:
    host = dsn.split("@", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    if host != "127.0.0.1":
        raise SystemExit(f"benchmarks run against PostgreSQL on 127.0.0.1 only, not {host}")


def admin_headers(base: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_token(base)}"}


def publish_questionnaire(base: str, headers: dict[str, str], definition: dict[str, object]) -> str:
    """POST the definition, publish it; returns its id."""
    created = httpx.post(
        f"{base}/api/v1/questionnaires", json=definition, headers=headers, timeout=120
    )
    if created.status_code != 201:
        raise RuntimeError(f"questionnaire refused: {created.status_code} {created.text[:2000]}")
    questionnaire_id: str = created.json()["id"]
    published = httpx.post(
        f"{base}/api/v1/questionnaires/{questionnaire_id}/publish", headers=headers, timeout=120
    )
    if published.status_code != 200:
        raise RuntimeError(f"publish refused: {published.status_code} {published.text[:2000]}")
    return questionnaire_id


def collector_token(base: str, headers: dict[str, str], questionnaire_id: str) -> str:
    reply = httpx.post(
        f"{base}/api/v1/collectors",
        json={"name": f"bench-{questionnaire_id[:8]}", "questionnaire_ids": [questionnaire_id]},
        headers=headers,
    )
    if reply.status_code != 201:
        raise RuntimeError(f"collector refused: {reply.status_code} {reply.text[:500]}")
    token: str = reply.json()["token"]
    return token


def vm_hwm_mb(pid: int) -> float:
    """Peak resident memory of a process since it started (VmHWM, from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class RssSampler:
    """Samples a process tree's resident memory in a thread (every `interval` seconds)."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        import threading

        self.pid, self.interval, self.peak, self.samples = pid, interval, 0.0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                self.peak = max(self.peak, rss_of_tree_mb(self.pid))
                self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
