"""attachments

Revision ID: 7a3e5c1d9f24
Revises: 7b3e9f1c2d84
Create Date: 2026-12-07 23:00:00.000000

The files responses name in their answers, in the database on both engines: `attachment`
(one row per file) and `attachment_chunk` (its bytes, CHUNK_BYTES per row; see
app/models/attachments.py).
New tables only: no existing data to carry (no question type took a file before).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7a3e5c1d9f24"
down_revision: str | None = "7b3e9f1c2d84"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "attachment",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("response_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=127), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["response_id"],
            ["response.id"],
            name=op.f("fk_attachment_response_id_response"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attachment")),
        sa.UniqueConstraint("response_id", "name", name="uq_attachment_response_id_name"),
    )
    op.create_table(
        "attachment_chunk",
        sa.Column("attachment_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["attachment_id"],
            ["attachment.id"],
            name=op.f("fk_attachment_chunk_attachment_id_attachment"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("attachment_id", "seq", name=op.f("pk_attachment_chunk")),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Photos, audio and video are compressed already: TOAST's compression would spend CPU
        # on every chunk to save nothing. EXTERNAL keeps them out of line, uncompressed.
        op.execute("ALTER TABLE attachment_chunk ALTER COLUMN data SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.drop_table("attachment_chunk")
    op.drop_table("attachment")
