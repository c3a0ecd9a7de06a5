"""Storing responses on PostgreSQL over a bare asyncpg connection: the submission hot path.

Each statement here runs outside an explicit transaction, so it commits on its own and is
atomic as one statement. It re-reads the questionnaire's status under a share lock (a close
waits for submissions in flight), re-checks the caller, and inserts the responses whose id is
new with their answer rows, only while it is published: one round trip per submission or batch.
"""

import functools
import operator
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import asyncpg
import orjson
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db import raw_connection
from app.models.auth import Principal
from app.models.questionnaires import Status
from app.models.responses import DIMENSIONS, INSTANCE_COLUMNS
from app.security import TokenService
from app.services import auth as auth_service
from app.services import questionnaires as questionnaire_service
from app.services.answers import AnswerPage, CompiledQuestionnaire, PageRows
from app.services.auth import RememberedPrincipals
from app.services.questionnaires import CompiledQuestionnaires
from app.services.responses.stores import Accept, Inserted, Row

# (column, PostgreSQL type) of the `response` row.
HEAD = (
    ("id", "uuid"),
    ("questionnaire_id", "uuid"),
    ("questionnaire_version", "int"),
    ("group_index", "smallint"),
    ("category", "smallint"),
    ("gender", "smallint"),
    ("age_band", "smallint"),
    ("language", "smallint"),
    ("channel", "smallint"),
    ("territory_code", "varchar"),
    ("submitted_at", "timestamptz"),
    ("received_at", "timestamptz"),
    ("record_key", "int"),
    ("content_hash", "varchar"),
    ("started_at", "timestamptz"),
    ("submitted_by_user", "uuid"),
    ("submitted_by_collector", "uuid"),
    ("instance_name", "varchar"),
)
KIND_TYPES = {"smallint": "smallint", "bigint": "bigint", "float": "float8", "text": "text",
              "date": "date"}  # fmt: skip


def _still_allowed(first: int) -> str:
    """True when the principal in parameters $first.. is as it was when resolved: a collector
    ($first) not revoked, a user ($first+1) active with the same roles ($first+2, as a JSON
    array; containment both ways ignores order) and token version ($first+3: a password change
    or a deactivation since ends the token). True with no principal (public)."""
    collector, user, roles = f"${first}::uuid", f"${first + 1}::uuid", f"${first + 2}::jsonb"
    version = f"${first + 3}::int"
    return f"""CASE
  WHEN {collector} IS NOT NULL THEN EXISTS (
    SELECT 1 FROM collector WHERE id = {collector} AND revoked_at IS NULL)
  WHEN {user} IS NOT NULL THEN EXISTS (
    SELECT 1 FROM user_account WHERE id = {user} AND is_active
    AND roles @> {roles} AND roles <@ {roles} AND token_version = {version})
  ELSE true END"""  # noqa: S608 - parameter numbers only


# What every storing statement checks first ($1 the questionnaire, $2..$5 the principal), and
# what it answers (see _insert_sql).
_GUARDS = f"""WITH q AS (SELECT status FROM questionnaire WHERE id = $1 FOR SHARE),
a AS (SELECT {_still_allowed(2)} AS ok)"""  # noqa: S608 - our names
_ALLOWED = f"(SELECT status FROM q) = '{Status.published.value}' AND (SELECT ok FROM a)"  # noqa: S608
_RESULT = """SELECT (SELECT status FROM q) AS status, (SELECT ok FROM a) AS authorized,
  array(SELECT id FROM head) AS inserted"""
_FIRST_COLUMN = 6  # the parameter number of the first column's value


def _principal_args(principal: Principal | None) -> tuple[Any, Any, Any, Any]:
    if principal is None:
        return None, None, None, None
    if principal.kind == "collector":
        return principal.id, None, None, None
    roles = orjson.dumps(sorted(principal.roles)).decode()
    return None, principal.id, roles, principal.token_version or 0


def _page_names(page: AnswerPage) -> str:
    placement = INSTANCE_COLUMNS if page.repeat is not None else ()
    names = ["response_id", *placement, *DIMENSIONS, *(name for name, _ in page.columns)]
    return ", ".join(names)


def _typed(page: AnswerPage, number: int) -> list[tuple[str, str]]:
    return [(f"p{number}_{name}", KIND_TYPES[kind]) for name, kind in page.columns]


@functools.lru_cache(maxsize=256)
def _insert_sql(pages: tuple[AnswerPage, ...], many: bool) -> str:
    """One INSERT of `response` rows and their answer pages, guarded by the questionnaire's
    status and the principal (_still_allowed: one remembered in memory is still refused at
    once after a revocation, a deactivation or a change of roles).

    One response: plain parameters. Many: one array parameter per column, unnested; the
    statement text stays the same for every batch size (prepared once per connection).
    Repeat instances come as arrays in both cases (a response has any number of them).
    """
    top = [n for n, page in enumerate(pages) if page.repeat is None]
    columns = [*HEAD, *(column for n in top for column in _typed(pages[n], n))]
    head_names = ", ".join(name for name, _ in HEAD)
    if many:
        arrays = ", ".join(
            f"${n}::text::{kind}[]" for n, (_, kind) in enumerate(columns, _FIRST_COLUMN)
        )
        names = ", ".join(name for name, _ in columns)
        sources = [f"v AS (SELECT * FROM unnest({arrays}) AS v({names}))"]  # noqa: S608
        head_values = ", ".join(f"v.{name}" for name, _ in HEAD)
        head = (
            f"INSERT INTO response ({head_names}) SELECT {head_values} FROM v WHERE {_ALLOWED}"  # noqa: S608
            " ORDER BY v.id ON CONFLICT (id) DO NOTHING RETURNING id"
        )
        value = {name: f"v.{name}" for name, _ in columns}
    else:
        value = {name: f"${n}::{kind}" for n, (name, kind) in enumerate(columns, _FIRST_COLUMN)}
        sources = []
        head_values = ", ".join(value[name] for name, _ in HEAD)
        head = (
            f"INSERT INTO response ({head_names}) SELECT {head_values} WHERE {_ALLOWED}"
            " ON CONFLICT (id) DO NOTHING RETURNING id"
        )
    parameter = _FIRST_COLUMN + len(columns)
    inserts = []
    for number, page in enumerate(pages):
        answers = [f"p{number}_{name}" for name, _ in page.columns]
        if page.repeat is None:
            joined = "FROM v JOIN head USING (id)" if many else "FROM head"
            values = [
                "head.id",
                *(value[name] for name in DIMENSIONS),
                *(value[a] for a in answers),
            ]
        else:
            # Instances: arrays of (response, placement, answers), joined to the new heads.
            instance = [("response_id", "uuid"), ("instance", "int"), ("parent_instance", "int"),
                        ("position", "int"), *_typed(page, number)]  # fmt: skip
            arrays = ", ".join(
                f"${n}::text::{kind}[]" for n, (_, kind) in enumerate(instance, parameter)
            )
            parameter += len(instance)
            names = ", ".join(name for name, _ in instance)
            alias = f"i{number}"
            sources.append(f"{alias} AS (SELECT * FROM unnest({arrays}) AS x({names}))")  # noqa: S608
            joined = f"FROM {alias} JOIN head ON head.id = {alias}.response_id"
            if many:
                joined += f" JOIN v ON v.id = {alias}.response_id"
            values = [
                "head.id",
                *(f"{alias}.{name}" for name in INSTANCE_COLUMNS),
                *(value[name] for name in DIMENSIONS),
                *(f"{alias}.{a}" for a in answers),
            ]
        inserts.append(
            f"page{number} AS (INSERT INTO {page.table} ({_page_names(page)})"
            f" SELECT {', '.join(values)} {joined})"
        )
    ctes = ",\n".join([*sources, f"head AS ({head})", *inserts])
    return f"{_GUARDS},\n{ctes}\n{_RESULT}"  # noqa: S608 - our names


def _arguments(pages: tuple[AnswerPage, ...], rows: Sequence[Row], many: bool) -> list[Any]:
    """The statement's parameters after the guard's, in _insert_sql's order.

    Arrays go as PostgreSQL array literals (text), built here in a worker thread for a batch:
    asyncpg encodes arrays element by element on the event loop while holding the GIL, 0.27 s
    for a batch of 1000 responses to a 300-question form, during which nothing else ran.
    """
    top = [n for n, page in enumerate(pages) if page.repeat is None]
    if many:
        kinds = [kind for _, kind in HEAD] + [k for n in top for _, k in pages[n].columns]
        lines = [_line(row, top) for row in rows]
        columns = zip(*lines, strict=True) if lines else ([] for _ in kinds)
        arguments: list[Any] = [_literal(kind, c) for kind, c in zip(kinds, columns, strict=True)]
    else:
        arguments = _line(rows[0], top)
    for number, page in enumerate(pages):
        if page.repeat is None:
            continue
        kinds = ["uuid", "int", "int", "int", *(KIND_TYPES[kind] for _, kind in page.columns)]
        lines = [[row.id, *line] for row in rows for line in row.pages[number]]
        columns = zip(*lines, strict=True) if lines else ([] for _ in kinds)
        arguments += [_literal(kind, c) for kind, c in zip(kinds, columns, strict=True)]
    return arguments


_HEAD_VALUES = operator.itemgetter(*(name for name, _ in HEAD))


def _line(row: Row, top: Sequence[int]) -> list[Any]:
    """A row's head values and top-level answers, in _insert_sql's column order (by C calls:
    a Python loop over a 300-question response's values cost a tenth of a batch's arguments)."""
    line = list(_HEAD_VALUES(row.head))
    for number in top:
        line += row.pages[number][0]
    return line


_TEXT = {"text", "varchar"}
_NUMBERS = {"smallint", "int", "bigint", "float", "float8"}


def _literal(kind: str, values: Sequence[Any]) -> str:
    """A PostgreSQL array literal of `values` (None is NULL); text is always quoted, so an
    empty string or the word NULL stays text.

    A value every row shares (the questionnaire, the caller, the time received: one object)
    is written once and repeated. Numbers (int and float only: bool never reaches a column)
    are the repr of the whole list, one C call, with None as NULL; text is escaped only when
    some value needs it. UUIDs go as their 32 hex digits and times as ISO 8601 (both read by
    PostgreSQL as they are, nothing to quote): a quarter and two thirds of str()'s cost."""
    if not values:
        return "{}"
    if kind in _NUMBERS:
        return "{" + repr(list(values))[1:-1].replace("None", "NULL") + "}"
    first = values[0]
    if len(values) > 1 and values[-1] is first and values.count(first) == len(values):
        # count() compares by identity first: one C pass when every value is the same object
        # (equal values of these kinds, if not the same object, are the same to PostgreSQL).
        single = "NULL" if first is None else _literal(kind, (first,))[1:-1]
        return "{" + ",".join([single] * len(values)) + "}"
    if kind in _TEXT:
        texts: list[str | None] = [v if type(v) is str or v is None else str(v) for v in values]
        present = [t for t in texts if t is not None]
        joined = "".join(present)
        if '"' in joined or "\\" in joined:
            texts = [_escaped(t) if t is not None else None for t in texts]
            present = [t for t in texts if t is not None]
        if len(present) == len(texts):
            return '{"' + '","'.join(present) + '"}'
        items = ["NULL" if t is None else f'"{t}"' for t in texts]
    elif kind == "uuid":
        items = ["NULL" if v is None else v.hex for v in values]
    elif kind == "timestamptz":
        items = ["NULL" if v is None else v.isoformat() for v in values]
    else:
        items = ["NULL" if v is None else f'"{v}"' for v in values]  # date
    return "{" + ",".join(items) + "}"


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


class PgResponseStore:
    """The ResponseStore of PostgreSQL: a bare asyncpg pool on the hot path."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        pool: asyncpg.Pool,
        compiled: CompiledQuestionnaires,
        remembered: RememberedPrincipals,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.pool = pool
        self.compiled = compiled
        self.remembered = remembered

    async def submitter(
        self,
        tokens: TokenService,
        token: str | None,
        questionnaire_id: uuid.UUID,
        accept: Accept,
    ) -> tuple[Principal | None, CompiledQuestionnaire]:
        """With the questionnaire compiled in memory, resolving the token is the only query,
        and a bare asyncpg connection runs it for a fraction of a session's cost. A remembered
        principal that `accept` refuses is looked up afresh (it may have gained a role)."""
        questionnaire = self.compiled.get(questionnaire_id)
        if questionnaire is None:
            async with self.sessionmaker() as session:
                questionnaire = await questionnaire_service.compiled(session, questionnaire_id)
        if token is None:
            return None, questionnaire
        principal = self.remembered.get(token)
        if principal is not None and accept(principal, questionnaire):
            return principal, questionnaire
        if principal is not None:
            self.remembered.forget(principal.id)
        async with raw_connection(self.pool) as connection:
            resolved = await auth_service.resolve_token_raw(
                connection, tokens, token, self.remembered
            )
        return resolved, questionnaire

    async def insert(
        self,
        questionnaire: CompiledQuestionnaire,
        principal: Principal | None,
        rows: Sequence[Row],
        *,
        many: bool = False,
    ) -> Inserted:
        guard = (questionnaire.id, *_principal_args(principal))
        many = many or len(rows) != 1
        statement = _insert_sql(questionnaire.pages, many)
        if many:
            arguments = await anyio.to_thread.run_sync(_arguments, questionnaire.pages, rows, many)
        else:
            arguments = _arguments(questionnaire.pages, rows, many)
        async with raw_connection(self.pool) as connection:
            try:
                record = await connection.fetchrow(statement, *guard, *arguments)
            except asyncpg.ForeignKeyViolationError:
                # The only reference a valid row can break is its territory.
                return Inserted(Status.published.value, True, set(), territory_refused=True)
        assert record is not None  # noqa: S101 - the statement always returns one row
        if not record["authorized"]:
            self._forget(principal)
        return Inserted(record["status"], record["authorized"], set(record["inserted"]))

    async def heads(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Mapping[str, Any]]:
        async with raw_connection(self.pool) as connection:
            records = await connection.fetch(
                "SELECT * FROM response WHERE id = ANY($1::uuid[])", list(ids)
            )
        return {record["id"]: dict(record) for record in records}

    async def answer_pages(
        self, questionnaire: CompiledQuestionnaire, response_id: uuid.UUID
    ) -> PageRows:
        pages: PageRows = []
        async with raw_connection(self.pool) as connection:
            for page in questionnaire.pages:
                names = [name for name, _ in page.columns]
                if page.repeat is not None:
                    names = [*INSTANCE_COLUMNS, *names]
                # our own table and column names (answers_<hex>_p<n>, a<n>), never input
                query = f'SELECT {", ".join(names)} FROM "{page.table}" WHERE response_id = $1'  # noqa: S608
                records = await connection.fetch(query, response_id)
                pages.append([list(record) for record in records])
        return pages

    async def unknown_territories(self, codes: set[str]) -> set[str]:
        async with raw_connection(self.pool) as connection:
            known = await connection.fetch(
                "SELECT code FROM territory WHERE code = ANY($1::varchar[])", list(codes)
            )
        return codes - {record["code"] for record in known}

    async def still_allowed(self, principal: Principal | None) -> bool:
        async with raw_connection(self.pool) as connection:
            allowed: bool = await connection.fetchval(
                f"SELECT {_still_allowed(1)}", *_principal_args(principal)
            )
        if not allowed:
            self._forget(principal)
        return allowed

    def _forget(self, principal: Principal | None) -> None:
        """The principal was revoked, deactivated or given other roles since it was remembered:
        the next request with its token resolves it afresh."""
        if principal is not None:
            self.remembered.forget(principal.id)
