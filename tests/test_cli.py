"""The `kenes` command: demo data (idempotent) and a real server on loopback."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from fastapi import FastAPI
from sqlalchemy import func
from sqlmodel import select

from app.models.territories import Territory
from app.services.territories import read_territory_csv
from tests.conftest import ON_POSTGRES, ROOT, TEST_SECRET, free_port

DATA = ROOT / "app" / "data"


def _env(database_url: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KENES_")}
    return {**clean, "KENES_DATABASE_URL": database_url, "KENES_SECRET_KEY": TEST_SECRET}


async def test_demo_data_loads_regions_once(database_url: str, app: FastAPI) -> None:
    expected = read_territory_csv(DATA / "territories.csv")
    outputs = []
    for _ in range(2):
        result = subprocess.run(  # noqa: S603 - our own command
            [sys.executable, "-m", "app.cli", "demo-data"],
            cwd=ROOT,
            env=_env(database_url),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        outputs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    assert outputs[0]["added"]["territories"] == len(expected)
    assert outputs[1]["added"]["territories"] == 0

    async with app.state.sessionmaker() as session:
        rows = (await session.exec(select(Territory))).all()
        count = (await session.exec(select(func.count()).select_from(Territory))).one()
    assert count == len(expected)
    by_code = {row.code: row for row in rows}
    almaty = next(row for row in expected if row["name_en"] == "Almaty")
    assert by_code[almaty["code"]].name == {
        "kk": almaty["name_kk"],
        "ru": almaty["name_ru"],
        "en": "Almaty",
    }
    assert {row.level for row in rows} == {row["level"] for row in expected}


def test_serve_answers_ready_and_docs_on_loopback(tmp_path: Path, database_url: str) -> None:
    # SQLite: the server migrates its own fresh file. PostgreSQL: the suite migrated it already.
    url = database_url if ON_POSTGRES else f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}"
    port = free_port()
    server = subprocess.Popen(  # noqa: S603 - our own command
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env=_env(url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        ready = None
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert ready is not None and ready.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/docs", timeout=5).status_code == 200
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=15)
    # Logs are JSON lines.
    for line in stderr.strip().splitlines():
        assert isinstance(json.loads(line), dict), line
