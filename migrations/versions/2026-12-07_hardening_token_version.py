"""hardening token version: a user's tokens end when the password changes or they are deactivated

Revision ID: 5d1c2e7a9b40
Revises: 5d2c7a91e0b4
Create Date: 2026-12-07 17:00:00

Tokens carry the user's token_version ("ver"); changing the password or deactivating the user
raises it, so every token issued before stops at once, also after a reactivation. Existing
users start at 0, which is what tokens issued before this migration (without "ver") count as.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5d1c2e7a9b40"
down_revision: str | None = "5d2c7a91e0b4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("token_version", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.drop_column("token_version")
