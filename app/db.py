"""Database engine, sessions, column types and the constraint naming convention."""

import socket
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import asyncpg
from sqlalchemy import JSON, DateTime, event, exc, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeDecorator
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from app.config import Settings

# Set before any table is declared, so constraint names (and Alembic diffs) stay stable.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata.naming_convention = NAMING_CONVENTION

SQLITE_IMMEDIATE = "kenes_sqlite_immediate"
# Seconds a request waits for an ORM pool connection, and a submission statement may run,
# before the request answers 503.
POOL_TIMEOUT = 10

JSONType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on both databases."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; times must carry an offset")
        value = value.astimezone(UTC)
        # SQLite has no time zones: store naive UTC.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


def create_engine(
    settings: Settings, *, one_shot: bool = False, pool_size: int | None = None
) -> AsyncEngine:
    """The app's engine; `one_shot` (migrations, CLI) keeps no pool; `pool_size` gives one of
    exactly that many connections (the exports' own engine)."""
    url = make_url(settings.database_url)
    pooling: dict[str, Any] = {"poolclass": NullPool} if one_shot else {}
    if pool_size is not None:
        # A pool used only now and then (exports): check a connection before handing it out,
        # so one the server closed meanwhile (a restart) is replaced, not an error mid-stream.
        pooling = {
            "pool_size": pool_size,
            "max_overflow": 0,
            "pool_timeout": POOL_TIMEOUT,
            "pool_pre_ping": True,
        }
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            _private_database_file(Path(url.database))
        engine = create_async_engine(
            url, connect_args={"timeout": 30}, hide_parameters=True, **pooling
        )
        _configure_sqlite(engine)
        return engine
    if not one_shot and pool_size is None:
        pooling = {
            "pool_size": settings.db_pool_size,
            # No overflow: connections opened past the pool are closed again at once, and
            # under load that churn (a TCP and TLS handshake per request) costs more than waiting.
            "max_overflow": 0,
            "pool_timeout": POOL_TIMEOUT,
        }
    pooling.setdefault("pool_pre_ping", False)
    return create_async_engine(
        url,
        # Errors (and their logged tracebacks) name the statement, never the values bound to
        # it: those are answers, e-mails and password hashes.
        hide_parameters=True,
        # No JIT: compiling an aggregate's pivot of thousands of FILTER clauses took 4.3 s of
        # a 5.1 s query (10,000 responses of the 300-question bench form; 0.75 s without it).
        connect_args={"timeout": 5, "server_settings": {"jit": "off"}},
        **pooling,
    )


def _private_database_file(path: Path) -> None:
    """The SQLite file readable by its owner only (0600): it holds password hashes and every
    answer. SQLite creates its -wal and -shm files with the database file's permissions."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=True)
        for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if name.exists():
                name.chmod(0o600)
    except OSError:
        pass  # reported as "database unavailable" on first use


async def create_raw_pool(settings: Settings) -> asyncpg.Pool | None:
    """On PostgreSQL, a plain asyncpg pool for the submission hot path; None on SQLite.

    A submission through the ORM session costs about 1.5 ms of Python per request (measured
    with py-spy under bench/submit.py); the same statements on a bare asyncpg connection cost a
    fraction of that. min_size=0: the app starts (and /readyz says why) while PostgreSQL is down.
    """
    url = make_url(settings.database_url)
    if url.get_backend_name() != "postgresql":
        return None
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=0,
        max_size=settings.db_pool_size,
        timeout=5,
        reset=_keep_session,
        # No statement holds a connection for long (so no request waits long for one), checked
        # by the server: a deadline per acquire would cost a timer on every submission.
        server_settings={
            "statement_timeout": str(POOL_TIMEOUT * 1000),
            # The statements here are prepared once per connection and no plan of theirs
            # depends on the values: a generic plan from the start. Left to choose, PostgreSQL
            # plans the first five executions on each new connection afresh (custom plans);
            # for a batch of 1000 survey responses that was 33-54 ms of its CPU instead of 28.
            "plan_cache_mode": "force_generic_plan",
        },
    )
    return pool


class raw_connection:  # noqa: N801 - used as a function: `async with raw_connection(pool)`
    """A connection from the raw pool. One the server dropped mid-statement can come back to the
    pool before asyncpg notices (its protocol still busy, InternalClientError on next use); such
    a connection is closed here rather than handed out again, and the request answers 503.

    A class rather than an @asynccontextmanager generator: it runs twice per submission, and
    the generator's machinery cost as much as the pool's own acquire and release."""

    __slots__ = ("_acquiring", "_connection")

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._acquiring = pool.acquire()

    async def __aenter__(self) -> asyncpg.Connection:
        self._connection: asyncpg.Connection = await self._acquiring.__aenter__()
        return self._connection

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(exc, asyncpg.InternalClientError):
            self._connection.terminate()
        await self._acquiring.__aexit__(exc_type, exc, traceback)


async def _keep_session(_: asyncpg.Connection) -> None:
    """Skip asyncpg's reset query on release (a round trip per use): the hot path sets no
    session state, and asyncpg still rolls back a transaction left open."""


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide where transactions begin (SAVEPOINT support).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A write transaction takes SQLite's write lock up front: a deferred one that read
        # first would fail at once (SQLITE_BUSY) instead of waiting when another writer commits.
        immediate = connection.get_execution_options().get(SQLITE_IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_sessionmaker(
    engine: AsyncEngine, info: dict[str, Any] | None = None
) -> async_sessionmaker[AsyncSession]:
    """Sessions of `engine`; `info` (what the app keeps per database, e.g. its compiled
    questionnaires) reaches every session as Session.info."""
    return async_sessionmaker(
        engine, class_=AsyncSession, expire_on_commit=False, autoflush=False, info=info or {}
    )


async def session_scope(
    sessionmaker: async_sessionmaker[AsyncSession], *, write: bool = True
) -> AsyncIterator[AsyncSession]:
    """One unit of work: commit on success, roll back on any error."""
    async with sessionmaker() as session:
        try:
            if write and sessionmaker.kw["bind"].dialect.name == "sqlite":
                await session.connection(execution_options={SQLITE_IMMEDIATE: True})
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


_SQLITE_UNAVAILABLE = ("unable to open database", "database is locked", "disk i/o error")
# SQLSTATE classes that mean "the server is not there right now", not "your query is wrong",
# the transient conflicts (deadlock, serialization) a retry resolves, and statement timeouts.
_PG_UNAVAILABLE_PREFIXES = ("08", "57P", "57014", "53", "40P01", "40001")


def is_unavailable(error: BaseException) -> bool:
    """True when an exception means the database cannot be reached, not that a query is wrong."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(
            current, exc.TimeoutError | ConnectionError | TimeoutError | asyncpg.InternalClientError
        ):
            return True
        if isinstance(current, exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, sqlite3.OperationalError) or (
            isinstance(current, exc.OperationalError) and "sqlite" in type(current.orig).__module__
        ):
            message = str(current).lower()
            if any(marker in message for marker in _SQLITE_UNAVAILABLE):
                return True
        sqlstate = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_PG_UNAVAILABLE_PREFIXES):
            return True
        if isinstance(current, socket.gaierror):
            return True
        name = type(current).__name__
        if (
            name in {"ConnectionDoesNotExistError", "InterfaceError"}
            and "connection" in str(current).lower()
        ):
            return True
        orig = getattr(current, "orig", None)
        current = (
            orig if isinstance(orig, BaseException) else (current.__cause__ or current.__context__)
        )
    return False
