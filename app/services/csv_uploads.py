"""Uploaded CSV files (territories, consultations): parsed and checked whole in a worker thread,
refused whole with every bad line named, stored a chunk at a time."""

import csv
import io
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import anyio
from anyio import CapacityLimiter
from sqlmodel.ext.asyncio.session import AsyncSession

from app.errors import Invalid

T = TypeVar("T")

MAX_IMPORT_ERRORS = 100
# Data lines per imported CSV (the whole KATO holds about 17,000 territories). Larger files are
# refused before they are parsed: a 100,000-line file held the event loop for 11 s.
MAX_IMPORT_LINES = 20_000


def file_error(line: int | None, message: str, kind: str = "value_error") -> dict[str, Any]:
    loc: list[str | int] = ["file"] if line is None else ["file", line]
    return {"loc": loc, "msg": message, "type": kind}


def parse_csv_upload(content: bytes, columns: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) for each data line of an uploaded CSV; the header is line 1.

    The header must hold exactly `columns` (any order); values are stripped. CPU-bound for a
    large file: call it through run_off_loop.
    """
    if content.count(b"\n") > MAX_IMPORT_LINES + 1:
        raise Invalid(
            f"The file has more than {MAX_IMPORT_LINES} lines; split it",
            errors=[file_error(None, f"at most {MAX_IMPORT_LINES} data lines", "size")],
        )
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Invalid(
            "The file is not UTF-8 text", errors=[file_error(None, "not UTF-8", "encoding")]
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None or sorted(h.strip() for h in header) != sorted(columns):
            expected = ",".join(columns)
            raise Invalid(
                f"The header must be {expected}",
                errors=[file_error(1, f"expected header {expected}", "header")],
            )
        names = [h.strip() for h in header]
        rows: list[tuple[int, dict[str, str]]] = []
        line = reader.line_num + 1
        for record in reader:
            if any(value.strip() for value in record):
                if len(record) != len(names):
                    raise Invalid(
                        f"Line {line} has {len(record)} fields, not {len(names)}",
                        errors=[file_error(line, f"expected {len(names)} fields", "fields")],
                    )
                if any("\x00" in value for value in record):
                    raise Invalid(
                        f"Line {line} holds a NUL character",
                        errors=[file_error(line, "NUL characters are not allowed", "nul")],
                    )
                rows.append((line, {n: v.strip() for n, v in zip(names, record, strict=True)}))
            line = reader.line_num + 1
    except csv.Error as error:
        raise Invalid(
            "The file is not valid CSV", errors=[file_error(reader.line_num, str(error), "csv")]
        ) from None
    return rows


def refuse_file(errors: list[dict[str, Any]]) -> Invalid:
    lines = {error["loc"][1] for error in errors if len(error["loc"]) > 1}
    return Invalid(
        f"{len(lines)} line(s) of the file are invalid; nothing was imported",
        errors=errors[:MAX_IMPORT_ERRORS],
    )


async def run_off_loop(limiter: CapacityLimiter, function: Callable[..., T], *args: Any) -> T:
    """CPU-bound work (parsing and checking an upload) in a worker thread, at most `limiter`
    at once, so the event loop keeps answering other requests meanwhile."""
    return await anyio.to_thread.run_sync(function, *args, limiter=limiter)


async def flush_in_chunks(session: AsyncSession, rows: Sequence[Any], size: int = 1000) -> None:
    """Add and flush rows a chunk at a time: the ORM's bookkeeping for one flush runs on the
    event loop, and a chunk bounds how long it holds it."""
    for start in range(0, len(rows), size):
        session.add_all(rows[start : start + size])
        await session.flush()
