"""form media

Revision ID: 9c3d5e7f9a21
Revises: 8b2c4d6e8f10
Create Date: 2026-12-08 01:30:00.000000

The images, audio and video a questionnaire version shows, uploaded with its XLSForm:
`questionnaire_media` (one row per file) and `questionnaire_media_chunk` (its bytes, CHUNK_BYTES
per row), as attachments are kept (app/models/form_media.py).
New tables only: no existing data to carry (media sent with a form were not kept before); the
questionnaires and their definitions are untouched.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9c3d5e7f9a21"
down_revision: str | None = "8b2c4d6e8f10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "questionnaire_media",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("questionnaire_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("content_type", sa.String(length=127), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("md5", sa.String(length=32), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["questionnaire_id"],
            ["questionnaire.id"],
            name=op.f("fk_questionnaire_media_questionnaire_id_questionnaire"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_questionnaire_media")),
        sa.UniqueConstraint(
            "questionnaire_id", "name", name="uq_questionnaire_media_questionnaire_id_name"
        ),
    )
    op.create_table(
        "questionnaire_media_chunk",
        sa.Column("media_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["media_id"],
            ["questionnaire_media.id"],
            name=op.f("fk_questionnaire_media_chunk_media_id_questionnaire_media"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("media_id", "seq", name=op.f("pk_questionnaire_media_chunk")),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Images, audio and video are compressed already (see the attachments revision).
        op.execute("ALTER TABLE questionnaire_media_chunk ALTER COLUMN data SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.drop_table("questionnaire_media_chunk")
    op.drop_table("questionnaire_media")
