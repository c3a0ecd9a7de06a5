"""response instance_name

Revision ID: 8b2c4d6e8f10
Revises: 7a3e5c1d9f24
Create Date: 2026-12-08 01:30:00.000000

`response.instance_name`: the form's settings.instance_name evaluated when a response is
stored (at most 500 characters). Responses stored before keep NULL: their names are not made
up afterwards (a name using now() or uuid() could not be made again), and NULL is what a form
without an instance_name gives too.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8b2c4d6e8f10"
down_revision: str | None = "7a3e5c1d9f24"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable without a default: PostgreSQL and SQLite add it without rewriting the table.
    op.add_column("response", sa.Column("instance_name", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("response") as batch:
        batch.drop_column("instance_name")
