"""response detail: answers and submitter move out of the row that aggregates scan

Revision ID: 02601938f2d3
Revises: fbc9c0b430cc
Create Date: 2026-11-25 21:19:25.481570
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "02601938f2d3"
down_revision: str | None = "fbc9c0b430cc"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


MOVED = "answers, content_hash, started_at, submitted_by_user, submitted_by_collector"
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    # The detail table gets its key to `response` only after `response` has been rebuilt:
    # SQLite rebuilds a table by dropping it, which a referencing row would forbid.
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
    op.execute(f"INSERT INTO response_detail (id, {MOVED}) SELECT id, {MOVED} FROM response")  # noqa: S608
    with op.batch_alter_table("response", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_response_submitted_by_user_user_account"), type_="foreignkey"
        )
        batch_op.drop_constraint(
            batch_op.f("fk_response_submitted_by_collector_collector"), type_="foreignkey"
        )
        for column in MOVED.split(", "):
            batch_op.drop_column(column)
    with op.batch_alter_table("response_detail", schema=None) as batch_op:
        batch_op.create_foreign_key(
            batch_op.f("fk_response_detail_id_response"),
            "response",
            ["id"],
            ["id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    with op.batch_alter_table("response_detail", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_response_detail_id_response"), type_="foreignkey")
    with op.batch_alter_table("response", schema=None) as batch_op:
        batch_op.add_column(sa.Column("answers", JSON, nullable=True))
        batch_op.add_column(sa.Column("content_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("submitted_by_user", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("submitted_by_collector", sa.Uuid(), nullable=True))
    for column in MOVED.split(", "):
        copy_back = f"UPDATE response SET {column} = (SELECT d.{column} FROM response_detail d"  # noqa: S608, E501
        op.execute(copy_back + " WHERE d.id = response.id)")
    with op.batch_alter_table("response", schema=None) as batch_op:
        batch_op.alter_column("answers", existing_type=JSON, nullable=False)
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
    op.drop_table("response_detail")
