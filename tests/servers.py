"""A real `kenes serve` on loopback, for what only a real server shows (browsers, workers, logs)."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import ROOT, TEST_SECRET, free_port


@dataclass
class Server:
    base: str
    log: Path
    pid: int = 0  # the server's process (one worker: uvicorn serves in it)

    def log_lines(self) -> list[str]:
        return self.log.read_text(encoding="utf-8", errors="replace").splitlines()


@contextmanager
def running_server(
    database_url: str, log: Path, *, workers: int = 1, **settings: str
) -> Iterator[Server]:
    """Serve the test database (already migrated) until the block ends; stderr goes to `log`."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KENES_")}
    env.update(
        KENES_DATABASE_URL=database_url,
        KENES_SECRET_KEY=TEST_SECRET,
        KENES_AUTO_MIGRATE="false",
        KENES_LOG_LEVEL="WARNING",
    )
    env.update({f"KENES_{name.upper()}": value for name, value in settings.items()})
    command = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
    with log.open("w") as stderr:
        server = subprocess.Popen(  # noqa: S603 - our own command
            [*command, "--workers", str(workers)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield Server(base, log, server.pid)
    finally:
        server.terminate()
        server.wait(timeout=15)
