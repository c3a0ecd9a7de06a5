"""Alembic, driven from code: `kenes migrate`, auto-migration at start-up and the tests."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("file_template", "%%(year)d-%%(month).2d-%%(day).2d_%%(slug)s")
    if database_url is not None:
        # Escaped because Alembic's config interpolates "%".
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


# Any constant: PostgreSQL advisory lock key that serialises concurrent upgrades.
_MIGRATION_LOCK_KEY = 4_652_311


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Several processes starting at once must not run the same DDL twice.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def upgrade_to_head(engine: AsyncEngine) -> None:
    """Upgrade the database behind the engine to the newest revision."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)
