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


async def test_stored_answers_move_into_answer_tables_and_back(empty_database_url: str) -> None:
    """The answer-tables revision carries responses stored in the slot layout, both ways."""
    import json
    from datetime import UTC, datetime

    import httpx

    from app.main import create_app
    from app.models.auth import Role
    from tests.conftest import make_settings
    from tests.factories import almaty_definition, headers_for

    alembic = [sys.executable, "-m", "alembic"]
    before = _run([*alembic, "upgrade", "02601938f2d3"], empty_database_url)
    assert before.returncode == 0, before.stderr
    definition = almaty_definition(slug="moved")
    survey_id, response_id = uuid.uuid4(), uuid.uuid4()
    answers = {
        "aware": "partly",
        "channels_known": ["petitions", "hearings"],
        "participated": True,
        "times_participated": 3,
        "trust_akimat": 4,
        "info_sources": ["tv"],
        "suggestions": "Больше слушаний",
    }
    at = datetime(2026, 11, 1, 9, tzinfo=UTC)
    import sqlalchemy as sa

    questionnaire = sa.table(
        "questionnaire",
        *(sa.column(n, sa.Uuid()) for n in ("id",)),
        *(sa.column(n, sa.String()) for n in ("slug", "status", "access", "default_language")),
        sa.column("version", sa.Integer()),
        sa.column("definition", sa.JSON()),
        *(sa.column(n, sa.DateTime(timezone=True)) for n in ("created_at", "updated_at")),
        sa.column("published_at", sa.DateTime(timezone=True)),
    )
    response = sa.table(
        "response",
        *(sa.column(n, sa.Uuid()) for n in ("id", "questionnaire_id")),
        *(sa.column(n, sa.Integer()) for n in ("questionnaire_version", "group_index")),
        *(sa.column(n, sa.Integer()) for n in ("category", "gender", "language", "k1")),
        sa.column("x2", sa.Float()),
        *(sa.column(n, sa.DateTime(timezone=True)) for n in ("submitted_at", "received_at")),
    )
    detail = sa.table(
        "response_detail",
        sa.column("id", sa.Uuid()),
        sa.column("answers", sa.JSON()),
        sa.column("content_hash", sa.String()),
    )
    engine = create_async_engine(empty_database_url)
    async with engine.begin() as connection:
        await connection.execute(
            questionnaire.insert().values(
                id=survey_id,
                slug="moved",
                version=1,
                status="published",
                access="token",
                default_language="ru",
                definition={
                    k: definition.get(k) for k in ("title", "respondent_groups", "questions")
                },
                created_at=at,
                updated_at=at,
                published_at=at,
            )
        )
        await connection.execute(
            response.insert().values(
                id=response_id,
                questionnaire_id=survey_id,
                questionnaire_version=1,
                group_index=0,
                category=0,
                gender=0,
                language=1,
                k1=1,
                x2=4,
                submitted_at=at,
                received_at=at,
            )
        )
        await connection.execute(
            detail.insert().values(id=response_id, answers=answers, content_hash="old")
        )
    await engine.dispose()

    upgraded = _run([*alembic, "upgrade", "head"], empty_database_url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"answers_{survey_id.hex}_p0" in await _tables(empty_database_url)
    application = create_app(make_settings(empty_database_url))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=application), base_url="http://t"
    ) as http:
        analyst = await headers_for(application, Role.analyst)
        stored = (await http.get(f"/api/v1/responses/{response_id}", headers=analyst)).json()
        assert stored["answers"]["aware"] == "partly"
        assert sorted(stored["answers"]["channels_known"]) == ["hearings", "petitions"]
        assert stored["answers"]["times_participated"] == 3
        assert stored["answers"]["suggestions"] == "Больше слушаний"
        assert set(stored["answers"]) == set(answers)
        figures = await http.get(
            f"/api/v1/questionnaires/{survey_id}/aggregates",
            params={"min_cell": "1", "questions": "aware,trust_akimat"},
            headers=analyst,
        )
        assert figures.json()["n_responses"] == 1
    await application.state.engine.dispose()

    down = _run([*alembic, "downgrade", "02601938f2d3"], empty_database_url)
    assert down.returncode == 0, down.stderr
    assert f"answers_{survey_id.hex}_p0" not in await _tables(empty_database_url)
    engine = create_async_engine(empty_database_url)
    async with engine.connect() as connection:
        restored = (
            await connection.execute(
                text(
                    "SELECT d.answers, r.k1, r.x2 FROM response r JOIN response_detail d"
                    " ON d.id = r.id"
                )
            )
        ).one()
    await engine.dispose()
    back = restored[0]
    while isinstance(back, str):  # the driver may hand back JSON text
        back = json.loads(back)
    assert back["aware"] == "partly" and sorted(back["channels_known"]) == ["hearings", "petitions"]
    assert (restored[1], restored[2]) == (1, 4)


async def test_responses_stored_before_names_keep_null_and_back(empty_database_url: str) -> None:
    """The instance_name revision adds the column to stored responses (NULL) and takes it
    away again, the responses themselves untouched."""
    from datetime import UTC, datetime

    alembic = [sys.executable, "-m", "alembic"]
    before = _run([*alembic, "upgrade", "7a3e5c1d9f24"], empty_database_url)
    assert before.returncode == 0, before.stderr
    survey_id, response_id = uuid.uuid4(), uuid.uuid4()
    if not ON_POSTGRES:  # SQLite keeps a Uuid as its 32 hex digits
        survey_id, response_id = survey_id.hex, response_id.hex  # type: ignore[assignment]
    at = datetime(2026, 12, 1, 9, tzinfo=UTC)
    engine = create_async_engine(empty_database_url)
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO questionnaire (id, slug, version, status, access, default_language,"
                " definition, created_at, updated_at) VALUES (:id, 'named', 1, 'closed', 'token',"
                " 'en', :definition, :at, :at)"
            ),
            {"id": survey_id, "definition": '{"questions": []}', "at": at},
        )
        await connection.execute(
            text(
                "INSERT INTO response (id, questionnaire_id, questionnaire_version, group_index,"
                " category, submitted_at, received_at, record_key, content_hash) VALUES"
                " (:id, :q, 1, 0, 0, :at, :at, 7, 'hash')"
            ),
            {"id": response_id, "q": survey_id, "at": at},
        )
    await engine.dispose()

    async def stored() -> dict[str, object]:
        engine = create_async_engine(empty_database_url)
        async with engine.connect() as connection:
            row = (await connection.execute(text("SELECT * FROM response"))).mappings().one()
        await engine.dispose()
        return dict(row)

    upgraded = _run([*alembic, "upgrade", "8b2c4d6e8f10"], empty_database_url)
    assert upgraded.returncode == 0, upgraded.stderr
    row = await stored()
    assert row["instance_name"] is None
    assert (row["record_key"], row["content_hash"]) == (7, "hash")
    down = _run([*alembic, "downgrade", "7a3e5c1d9f24"], empty_database_url)
    assert down.returncode == 0, down.stderr
    row = await stored()
    assert "instance_name" not in row and (row["record_key"], row["content_hash"]) == (7, "hash")


async def test_the_migration_keeps_questionnaires_and_adds_media_tables(
    empty_database_url: str,
) -> None:
    """The form media revision adds its tables next to the questionnaires, which it leaves as
    they were, and takes them away again on downgrade."""
    import hashlib
    from datetime import UTC, datetime

    import sqlalchemy as sa

    alembic = [sys.executable, "-m", "alembic"]
    before = _run([*alembic, "upgrade", "7a3e5c1d9f24"], empty_database_url)
    assert before.returncode == 0, before.stderr
    engine = create_async_engine(empty_database_url)
    form_id, media_id = uuid.uuid4(), uuid.uuid4()
    at = datetime(2026, 12, 1, tzinfo=UTC)
    questionnaire = sa.table(
        "questionnaire",
        sa.column("id", sa.Uuid()),
        *(sa.column(n, sa.String()) for n in ("slug", "status", "access", "default_language")),
        sa.column("version", sa.Integer()),
        sa.column("definition", sa.JSON()),
        *(sa.column(n, sa.DateTime(timezone=True)) for n in ("created_at", "updated_at")),
    )
    media = sa.table(
        "questionnaire_media",
        *(sa.column(n, sa.Uuid()) for n in ("id", "questionnaire_id")),
        *(sa.column(n, sa.String()) for n in ("name", "kind", "content_type", "md5", "sha256")),
        sa.column("size", sa.BigInteger()),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    chunk = sa.table(
        "questionnaire_media_chunk",
        sa.column("media_id", sa.Uuid()),
        sa.column("seq", sa.Integer()),
        sa.column("data", sa.LargeBinary()),
    )
    definition = {"title": {"en": "Kept"}, "questions": [], "respondent_groups": []}
    digests = (
        hashlib.md5(b"abc", usedforsecurity=False).hexdigest(),
        hashlib.sha256(b"abc").hexdigest(),
    )
    try:
        async with engine.begin() as connection:
            await connection.execute(
                questionnaire.insert().values(
                    id=form_id, slug="kept", version=1, status="draft", access="token",
                    default_language="en", definition=definition, created_at=at, updated_at=at,
                )
            )  # fmt: skip
        up = _run([*alembic, "upgrade", "9c3d5e7f9a21"], empty_database_url)
        assert up.returncode == 0, up.stderr
        async with engine.begin() as connection:
            kept = await connection.execute(sa.text("SELECT slug FROM questionnaire"))
            assert kept.scalars().all() == ["kept"]
            await connection.execute(
                media.insert().values(
                    id=media_id, questionnaire_id=form_id, name="a.png", kind="image",
                    content_type="image/png", size=3, md5=digests[0], sha256=digests[1],
                    created_at=at,
                )
            )  # fmt: skip
            await connection.execute(chunk.insert().values(media_id=media_id, seq=0, data=b"abc"))
            stored = await connection.execute(sa.select(chunk.c.data))
            assert stored.scalars().all() == [b"abc"]
        down = _run([*alembic, "downgrade", "7a3e5c1d9f24"], empty_database_url)
        assert down.returncode == 0, down.stderr
        async with engine.connect() as connection:
            names = await connection.run_sync(lambda sync: sa.inspect(sync).get_table_names())
            kept = await connection.execute(sa.text("SELECT slug FROM questionnaire"))
            assert kept.scalars().all() == ["kept"]
        assert "questionnaire_media" not in names and "questionnaire_media_chunk" not in names
    finally:
        await engine.dispose()
