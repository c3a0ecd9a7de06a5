"""Migrations: empty database to head, no drift between models and schema, down and up again."""

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import ON_POSTGRES, ROOT, TEST_DATABASE_URL


def _run(args: list[str], database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KENES_DATABASE_URL": database_url}
    return subprocess.run(  # noqa: S603 - our own commands
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
async def empty_database_url(tmp_path: Path) -> AsyncIterator[str]:
    """A database with nothing in it, of the kind the suite runs on."""
    if not ON_POSTGRES:
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    assert TEST_DATABASE_URL
    name = f"kenes_migrations_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(
        make_url(TEST_DATABASE_URL).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    async with admin.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(TEST_DATABASE_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def _tables(database_url: str) -> set[str]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            names = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
        return set(names)
    finally:
        await engine.dispose()


async def test_empty_to_head_without_drift_and_back(empty_database_url: str) -> None:
    kenes = [sys.executable, "-m", "app.cli"]
    alembic = [sys.executable, "-m", "alembic"]

    upgraded = _run([*kenes, "migrate"], empty_database_url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert {"alembic_version", "territory"} <= await _tables(empty_database_url)

    check = _run([*alembic, "check"], empty_database_url)
    assert check.returncode == 0, check.stderr + check.stdout
    assert "No new upgrade operations detected" in check.stdout + check.stderr

    down = _run([*alembic, "downgrade", "base"], empty_database_url)
    assert down.returncode == 0, down.stderr
    assert await _tables(empty_database_url) <= {"alembic_version"}

    again = _run([*kenes, "migrate"], empty_database_url)
    assert again.returncode == 0, again.stderr
    assert "territory" in await _tables(empty_database_url)
