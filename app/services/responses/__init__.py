"""Responses: the rules of submitting (rules), the stores that keep them (stores, pg_store,
session_store), and reading them back (reads)."""

from app.services.responses.reads import (
    answer_tables,
    authorize_read,
    body_of,
    conditions,
    delete_response,
    filtered,
    get_response,
    list_responses,
    read_select,
)
from app.services.responses.rules import (
    Stored,
    authorize_submit,
    build_row,
    may_submit,
    record_keys,
    store,
    store_batch,
    store_row,
    submission_access,
)
from app.services.responses.stores import Inserted, ResponseStore, Row

__all__ = [
    "Inserted",
    "ResponseStore",
    "Row",
    "Stored",
    "answer_tables",
    "authorize_read",
    "authorize_submit",
    "body_of",
    "build_row",
    "conditions",
    "delete_response",
    "filtered",
    "get_response",
    "list_responses",
    "may_submit",
    "read_select",
    "record_keys",
    "store",
    "store_batch",
    "store_row",
    "submission_access",
]
