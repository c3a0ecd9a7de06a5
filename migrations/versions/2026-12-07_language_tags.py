"""language tags: a questionnaire's default_language is any BCP 47 tag (up to 35 characters)

Revision ID: 7b3e9f1c2d84
Revises: 3c9d8e7f6a51
Create Date: 2026-12-07 23:15:00

Real forms come in any language ("en-GB", "uz-Cyrl", "fr"), not only kk, ru and en: the column
grows from 2 to 35 characters on PostgreSQL; existing values are kept. SQLite never enforces a
VARCHAR's length (its column holds longer tags as it is), and widening it would rebuild the table
under the foreign keys of every response, so nothing changes there. Going down keeps each tag's
first two letters (the primary language).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7b3e9f1c2d84"
down_revision: str | None = "3c9d8e7f6a51"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _resize(old: int, new: int, using: str | None = None) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.alter_column(
        "questionnaire",
        "default_language",
        type_=sa.String(new),
        existing_type=sa.String(old),
        existing_nullable=False,
        postgresql_using=using,
    )


def upgrade() -> None:
    _resize(2, 35)


def downgrade() -> None:
    # substr: a published questionnaire's row is frozen by a trigger, but ALTER ... USING
    # rewrites the table without firing row triggers.
    _resize(35, 2, "substr(default_language, 1, 2)")
