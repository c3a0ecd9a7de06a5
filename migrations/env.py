"""Alembic environment: async engines for both databases, or a connection handed in by the app."""

import asyncio
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import JSON, Connection
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString

import app.models  # noqa: F401 - registers every table on the metadata
from app.config import load_settings
from app.db import UTCDateTime, create_engine
from app.models.responses import ANSWER_TABLE_PREFIX

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = SQLModel.metadata


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Render our column types as plain SQLAlchemy ones, so revisions don't import app code."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if type_ == "type" and isinstance(obj, JSON):
        autogen_context.imports.add("from sqlalchemy.dialects import postgresql")
        return "sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')"
    if type_ == "type" and isinstance(obj, AutoString):
        return f"sa.String(length={obj.length})" if obj.length else "sa.String()"
    return False


def _include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Answer tables are made at publish time from each questionnaire's layout, not by
    migrations: autogenerate and `alembic check` leave them alone."""
    return not (type_ == "table" and name is not None and name.startswith(ANSWER_TABLE_PREFIX))


def _configure(connection: Connection | None = None, url: str | None = None) -> None:
    context.configure(
        connection=connection,
        url=url,
        target_metadata=target_metadata,
        render_item=_render_item,
        render_as_batch=True,
        include_name=_include_name,  # SQLite can only ALTER through table copies
        compare_type=True,
        literal_binds=connection is None,
    )


def _database_url() -> str:
    return config.get_main_option("sqlalchemy.url") or load_settings().database_url


def _run(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    settings = load_settings(database_url=_database_url())
    engine = create_engine(settings, one_shot=True)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    _configure(url=_database_url())
    with context.begin_transaction():
        context.run_migrations()
elif (handed_in := config.attributes.get("connection")) is not None:
    _run(handed_in)
else:
    asyncio.run(_run_async())
