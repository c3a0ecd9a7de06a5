"""Shared fixtures: one migrated database per run, a clean state per test, the real app over httpx.

The database is PostgreSQL when KENES_TEST_DATABASE_URL names one (as .ci/run does), else a
SQLite file in a temporary directory.
"""

import importlib.util
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlmodel import SQLModel

import app.models  # noqa: F401 - every table on the metadata
from app.config import Settings, load_settings
from app.main import create_app
from app.migrate import upgrade_to_head

ROOT = Path(__file__).resolve().parent.parent
TEST_DATABASE_URL = os.environ.get("KENES_TEST_DATABASE_URL")
ON_POSTGRES = bool(TEST_DATABASE_URL and TEST_DATABASE_URL.startswith("postgresql"))
TEST_SECRET = "test-secret-" + "x" * 40

postgres_only = pytest.mark.skipif(not ON_POSTGRES, reason="needs PostgreSQL")


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    if TEST_DATABASE_URL:
        return TEST_DATABASE_URL
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'kenes.db'}"


def make_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "env": "development",
        "secret_key": TEST_SECRET,
        "auto_migrate": False,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    # Building the schema through the migrations tests them on every run.
    await upgrade_to_head(application.state.engine)
    async with application.router.lifespan_context(application):
        yield application


def _sqlite_frozen_triggers() -> list[str]:
    """The triggers that keep published questionnaires frozen, as the migration creates them."""
    [path] = (ROOT / "migrations" / "versions").glob("*_questionnaires_responses.py")
    spec = importlib.util.spec_from_file_location("questionnaires_migration", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    statements: list[str] = module.SQLITE_FROZEN
    return statements


@pytest.fixture(autouse=True)
async def clean_database(app: FastAPI) -> None:
    """Every test starts from empty tables (the schema stays)."""
    tables = [table.name for table in reversed(SQLModel.metadata.sorted_tables)]
    async with app.state.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # TRUNCATE fires no row triggers, so frozen questionnaires go too.
            await connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
            return
        # SQLite cannot switch triggers off: drop the freezing ones around the wipe.
        await connection.execute(text("DROP TRIGGER IF EXISTS questionnaire_frozen"))
        await connection.execute(text("DROP TRIGGER IF EXISTS questionnaire_frozen_delete"))
        for table in tables:
            await connection.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - our names
        for statement in _sqlite_frozen_triggers():
            await connection.execute(text(statement))


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as http:
        yield http


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
