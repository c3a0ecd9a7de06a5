"""Attachments: the files a response names in its answers (image, audio, video, file questions).

A file is kept in the database on both engines (PostgreSQL bytea, SQLite blob): one
`attachment` row with what the API lists (name, content type, size, SHA-256, when received),
and its bytes cut into `attachment_chunk` rows of CHUNK_BYTES each. Chunks, not one column,
because both directions then stream: an upload is written chunk by chunk from a spooled copy,
and a download reads a few chunks (1 MiB) per short query, so neither holds a 25 MiB file in
memory (one bytea/blob column would be bound whole on insert, and on SQLite read whole).
Measured in-process, 25 MiB: stored in 0.6 s, read back in 0.5 s (PostgreSQL) and 0.14 s
(SQLite), the process growing by no more than the test's own copy of the file.
"""

import uuid
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Table,
    UniqueConstraint,
    Uuid,
)
from sqlmodel import SQLModel

from app.db import UTCDateTime

# Bytes per chunk row: 100 rows for a 25 MiB file; small enough that a download holds little,
# large enough that a query per chunk costs little next to sending it.
CHUNK_BYTES = 256 * 1024
MAX_NAME = 255

attachment_table = Table(
    "attachment",
    SQLModel.metadata,
    Column("id", Uuid, primary_key=True),
    Column(
        "response_id",
        Uuid,
        ForeignKey("response.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("name", String(MAX_NAME), nullable=False),
    Column("content_type", String(127), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    # Each name once per response; also the lookup by (response, name).
    UniqueConstraint("response_id", "name", name="uq_attachment_response_id_name"),
)

attachment_chunk_table = Table(
    "attachment_chunk",
    SQLModel.metadata,
    Column(
        "attachment_id",
        Uuid,
        ForeignKey("attachment.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("data", LargeBinary, nullable=False),
)


class AttachmentRead(BaseModel):
    """An expected file of a response; `received` false while it has not arrived."""

    name: str
    content_type: str | None
    size: int | None
    sha256: str | None
    received: bool


class AttachmentStored(BaseModel):
    """One received file (the answer to a PUT)."""

    response_id: uuid.UUID
    name: str
    content_type: str
    size: int
    sha256: str
    received_at: datetime
