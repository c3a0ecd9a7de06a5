"""answer tables: answers move from slot columns into typed tables per questionnaire version

The `response` row takes back its detail (fingerprint, start time, submitter) and gains a random
record key; the answers of each published or closed questionnaire version move into its answer
tables (services/answers.py), and the slot columns k1..k64, x1..x32 and `response_detail` go.
Fingerprints are computed afresh over the typed values ("same content compares values").

This migration uses the application's compiler of definitions (the layout of answer tables and
the answer checks): the layout it makes is the one the application reads, by construction.

Revision ID: 5d2c7a91e0b4
Revises: 02601938f2d3
Create Date: 2026-12-07 17:30:00
"""

import hashlib
import json
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from app.models.responses import (
    AGE_BANDS,
    CHANNELS,
    DIMENSIONS,
    GENDERS,
    LANGUAGE_CODES,
    answer_table,
)
from app.services.answers import MASK_BITS, NUMBER_TYPES, compile_questionnaire

revision: str = "5d2c7a91e0b4"
down_revision: str | None = "02601938f2d3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
DETAIL = ("content_hash", "started_at", "submitted_by_user", "submitted_by_collector")
CHOICE_SLOTS, NUMBER_SLOTS = 64, 32
SLOTS = [f"k{n}" for n in range(1, CHOICE_SLOTS + 1)] + [
    f"x{n}" for n in range(1, NUMBER_SLOTS + 1)
]

meta = sa.MetaData()
questionnaire = sa.Table(
    "questionnaire",
    meta,
    sa.Column("id", sa.Uuid()),
    sa.Column("version", sa.Integer()),
    sa.Column("status", sa.String()),
    sa.Column("access", sa.String()),
    sa.Column("definition", JSON),
    sa.Column("answer_layout", sa.Integer()),
)


def _response(*extra: sa.Column[Any]) -> sa.Table:
    return sa.Table(
        "response",
        sa.MetaData(),
        sa.Column("id", sa.Uuid()),
        sa.Column("questionnaire_id", sa.Uuid()),
        sa.Column("group_index", sa.SmallInteger()),
        sa.Column("category", sa.SmallInteger()),
        sa.Column("gender", sa.SmallInteger()),
        sa.Column("age_band", sa.SmallInteger()),
        sa.Column("language", sa.SmallInteger()),
        sa.Column("channel", sa.SmallInteger()),
        sa.Column("territory_code", sa.String(16)),
        sa.Column("submitted_at", sa.DateTime(timezone=True)),
        sa.Column("received_at", sa.DateTime(timezone=True)),
        *extra,
    )


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _code(values: Sequence[str], code: int | None) -> str | None:
    return None if code is None else values[code]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _compiled(connection: sa.Connection) -> list[Any]:
    rows = connection.execute(
        sa.select(questionnaire).where(questionnaire.c.status.in_(("published", "closed")))
    )
    return [
        compile_questionnaire(
            id=row.id,
            version=row.version,
            status=row.status,
            access=row.access,
            definition=row.definition
            if isinstance(row.definition, dict)
            else json.loads(row.definition),
        )
        for row in rows
    ]


def upgrade() -> None:
    # Plain ALTERs (no batch copy on SQLite, which would drop the table's freezing triggers).
    op.add_column("questionnaire", sa.Column("answer_layout", sa.Integer(), nullable=True))
    op.execute("UPDATE questionnaire SET answer_layout = 1 WHERE status IN ('published', 'closed')")
    with op.batch_alter_table("response", schema=None) as batch_op:
        batch_op.add_column(sa.Column("record_key", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("content_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("submitted_by_user", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("submitted_by_collector", sa.Uuid(), nullable=True))
    connection = op.get_bind()
    detail = sa.Table(
        "response_detail",
        sa.MetaData(),
        sa.Column("id", sa.Uuid()),
        sa.Column("answers", JSON),
        *(sa.Column(name, sa.String()) for name in ("content_hash",)),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("submitted_by_user", sa.Uuid()),
        sa.Column("submitted_by_collector", sa.Uuid()),
    )
    response = _response(
        sa.Column("record_key", sa.Integer()),
        sa.Column("content_hash", sa.String(64)),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("submitted_by_user", sa.Uuid()),
        sa.Column("submitted_by_collector", sa.Uuid()),
    )
    for compiled in _compiled(connection):
        tables = [
            answer_table(page.table, page.columns, page.repeat is not None)
            for page in compiled.pages
        ]
        for table in tables:
            table.create(connection)
        source = sa.select(response, detail.c.answers, *(detail.c[n] for n in DETAIL[1:]))
        source = source.select_from(response.join(detail, detail.c.id == response.c.id))
        for row in connection.execute(
            source.where(response.c.questionnaire_id == compiled.id)
        ).all():
            _move(connection, compiled, tables, response, row)
    # Responses of drafts cannot exist (they are refused); any left are dropped with the slots.
    with op.batch_alter_table("response", schema=None) as batch_op:
        batch_op.drop_index("ix_response_questionnaire_submitted")
        for slot in SLOTS:
            batch_op.drop_column(slot)
    op.drop_table("response_detail")
    with op.batch_alter_table("response", schema=None) as batch_op:
        batch_op.alter_column("record_key", existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column("content_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_response_submitted_by_user_user_account"),
            "user_account",
            ["submitted_by_user"],
            ["id"],
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_response_submitted_by_collector_collector"),
            "collector",
            ["submitted_by_collector"],
            ["id"],
        )


def _move(
    connection: sa.Connection, compiled: Any, tables: list[sa.Table], response: sa.Table, row: Any
) -> None:
    answers = _json(row.answers)
    errors, pages = compiled.check_answers(answers)
    if errors:  # stored under older rules: leave them unanswered rather than lose the response
        pages = [[[None] * len(page.columns)] for page in compiled.pages]
    submitted_at, received_at = _aware(row.submitted_at), _aware(row.received_at)
    started_at = _aware(row.started_at)
    # The fingerprint as services/responses/rules.py takes it; a submission time equal to the
    # receipt time was the default, not sent.
    content = [
        compiled.group_keys[row.group_index],
        _code(GENDERS, row.gender),
        _code(AGE_BANDS, row.age_band),
        row.territory_code,
        _code(LANGUAGE_CODES, row.language),
        _code(CHANNELS, row.channel),
        started_at,
        None if submitted_at == received_at else submitted_at,
        pages,
    ]
    record_key = secrets.randbits(31)
    connection.execute(
        response.update()
        .where(response.c.id == row.id)
        .values(
            record_key=record_key,
            content_hash=hashlib.sha256(orjson.dumps(content)).hexdigest(),
            started_at=started_at,
            submitted_by_user=row.submitted_by_user,
            submitted_by_collector=row.submitted_by_collector,
        )
    )
    dimensions = {name: getattr(row, name) for name in DIMENSIONS if name != "record_key"}
    dimensions["submitted_at"] = submitted_at
    for table, page, values in zip(tables, compiled.pages, pages, strict=True):
        names = [name for name, _ in page.columns]
        connection.execute(
            table.insert().values(
                response_id=row.id,
                record_key=record_key,
                **dimensions,
                **dict(zip(names, values[0], strict=True)),
            )
        )


def downgrade() -> None:
    connection = op.get_bind()
    op.create_table(
        "response_detail",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("answers", JSON, nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("submitted_by_user", sa.Uuid(), nullable=True),
        sa.Column("submitted_by_collector", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["submitted_by_collector"],
            ["collector.id"],
            name=op.f("fk_response_detail_submitted_by_collector_collector"),
        ),
        sa.ForeignKeyConstraint(
            ["submitted_by_user"],
            ["user_account.id"],
            name=op.f("fk_response_detail_submitted_by_user_user_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_response_detail")),
    )
    with op.batch_alter_table("response", schema=None) as batch_op:
        batch_op.create_index(
            "ix_response_questionnaire_submitted", ["questionnaire_id", "submitted_at"]
        )
        for slot in SLOTS:
            kind = sa.BigInteger() if slot.startswith("k") else sa.Float(precision=53)
            batch_op.add_column(sa.Column(slot, kind, nullable=True))
    response = _response(
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("submitted_by_user", sa.Uuid()),
        sa.Column("submitted_by_collector", sa.Uuid()),
        *(sa.Column(slot, sa.BigInteger() if slot[0] == "k" else sa.Float()) for slot in SLOTS),
    )
    detail = sa.Table(
        "response_detail",
        sa.MetaData(),
        sa.Column("id", sa.Uuid()),
        sa.Column("answers", JSON),
        sa.Column("content_hash", sa.String(64)),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("submitted_by_user", sa.Uuid()),
        sa.Column("submitted_by_collector", sa.Uuid()),
    )
    for compiled in _compiled(connection):
        tables = [
            answer_table(page.table, page.columns, page.repeat is not None)
            for page in compiled.pages
        ]
        for row in connection.execute(
            sa.select(response).where(response.c.questionnaire_id == compiled.id)
        ).all():
            pages = []
            for table, page in zip(tables, compiled.pages, strict=True):
                names = [name for name, _ in page.columns]
                found = connection.execute(
                    sa.select(*(table.c[n] for n in names)).where(table.c.response_id == row.id)
                ).first()
                pages.append([list(found) if found is not None else [None] * len(names)])
            answers = compiled.answers_from(pages)
            connection.execute(
                response.update().where(response.c.id == row.id).values(**_slots(compiled, pages))
            )
            connection.execute(
                sa.insert(detail).values(
                    id=row.id,
                    answers=answers
                    if connection.dialect.name == "postgresql"
                    else json.dumps(answers),
                    content_hash=_old_hash(compiled, row, answers),
                    started_at=row.started_at,
                    submitted_by_user=row.submitted_by_user,
                    submitted_by_collector=row.submitted_by_collector,
                )
            )
        for table in tables:
            table.drop(connection)
    with op.batch_alter_table("response", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_response_submitted_by_user_user_account"), type_="foreignkey"
        )
        batch_op.drop_constraint(
            batch_op.f("fk_response_submitted_by_collector_collector"), type_="foreignkey"
        )
        for column in ("record_key", *DETAIL):
            batch_op.drop_column(column)
    op.drop_column("questionnaire", "answer_layout")
    with op.batch_alter_table("response_detail", schema=None) as batch_op:
        batch_op.create_foreign_key(
            batch_op.f("fk_response_detail_id_response"),
            "response",
            ["id"],
            ["id"],
            ondelete="CASCADE",
        )


def _slots(compiled: Any, pages: list[list[Any]]) -> dict[str, Any]:
    """The slot values of the layout before this revision (a frozen copy of its rules)."""
    values: dict[str, Any] = {}
    choice, number = 0, 0
    for question in compiled.questions:
        start = question.offset
        stored = pages[question.page][0][start : start + len(question.columns)]
        if question.type in NUMBER_TYPES:
            number += 1
            values[f"x{number}"] = stored[0]
            continue
        choice += 1
        if stored[0] is None:
            value = None
        elif question.type in ("text", "date"):
            value = 1
        elif question.type == "multiple_choice":
            value = sum((mask or 0) << (MASK_BITS * n) for n, mask in enumerate(stored))
        else:
            value = stored[0]
        if choice <= CHOICE_SLOTS and number <= NUMBER_SLOTS:
            values[f"k{choice}"] = value
    return {k: v for k, v in values.items() if k in SLOTS}


def _old_hash(compiled: Any, row: Any, answers: dict[str, Any]) -> str:
    def iso(value: datetime | None) -> str | None:
        return _aware(value).astimezone(UTC).isoformat() if value else None  # type: ignore[union-attr]

    submitted_at, received_at = _aware(row.submitted_at), _aware(row.received_at)
    content = {
        "respondent": {
            "group": compiled.group_keys[row.group_index],
            "gender": _code(GENDERS, row.gender),
            "age_band": _code(AGE_BANDS, row.age_band),
            "territory_code": row.territory_code,
        },
        "answers": answers,
        "language": _code(LANGUAGE_CODES, row.language),
        "channel": _code(CHANNELS, row.channel),
        "started_at": iso(row.started_at),
        "submitted_at": None if submitted_at == received_at else iso(submitted_at),
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
