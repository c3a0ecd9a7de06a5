"""aggregate views

Revision ID: 3c9d8e7f6a51
Revises: fe5a1b3768c3
Create Date: 2026-12-07 20:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "3c9d8e7f6a51"
down_revision: str | None = "fe5a1b3768c3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    # A new table only: no existing data to carry (record keys came with the answer tables).
    op.create_table(
        "aggregate_view",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("questionnaire_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("questions", JSON, nullable=True),
        sa.Column("dimensions", JSON, nullable=False),
        sa.Column("filters", JSON, nullable=False),
        sa.Column("access", sa.String(length=16), nullable=False),
        # SHA-256 of a `token` view's token; the token itself is shown once and never stored.
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("min_cell", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["user_account.id"],
            name=op.f("fk_aggregate_view_created_by_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["questionnaire_id"],
            ["questionnaire.id"],
            name=op.f("fk_aggregate_view_questionnaire_id_questionnaire"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_aggregate_view")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_aggregate_view_token_hash")),
    )
    with op.batch_alter_table("aggregate_view", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_aggregate_view_questionnaire_id"), ["questionnaire_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("aggregate_view", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_aggregate_view_questionnaire_id"))
    op.drop_table("aggregate_view")
