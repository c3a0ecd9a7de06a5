"""Attachments: the files a response names in its answers, received once each, kept in the
database (app/models/attachments.py) and streamed back in chunks.

A file arrives as a stream (a PUT body, a multipart part): it is spooled (in memory up to
SPOOL_MEMORY, then a temporary file) while its size is counted against the limit and its
SHA-256 taken, so a refused file never reaches the database and a stored one is written chunk
by chunk from the spool. Its type is read from its first bytes (puremagic), never from its name
or header, and must suit the question that names it. Exactly once per (response, name): the
same bytes again is a replay (200), other bytes a conflict (409).
"""

from app.services.attachments.expected import (
    Checked,
    ResponseFiles,
    answers_of,
    authorize_put,
    check_files,
    expected_files,
    question_type_of,
    response_files,
)
from app.services.attachments.received import (
    MEDIA_PREFIXES,
    Received,
    content_type,
    from_upload,
    receive,
)
from app.services.attachments.storage import (
    export_files,
    list_files,
    open_chunks,
    store,
    store_checked,
    stored_file,
)

__all__ = [
    "MEDIA_PREFIXES",
    "Checked",
    "Received",
    "ResponseFiles",
    "answers_of",
    "authorize_put",
    "check_files",
    "content_type",
    "expected_files",
    "export_files",
    "from_upload",
    "list_files",
    "open_chunks",
    "question_type_of",
    "receive",
    "response_files",
    "store",
    "store_checked",
    "stored_file",
]
