"""A questionnaire's definition as an XLSForm workbook (.xlsx): survey, choices and settings.

The rows are those the XForm is built from (services/openrosa/rows.py, `author_rows`), in the
spelling an author uses and the import reads back: importing the workbook gives the same
definition, and pyxform makes of it the same form as of the workbook that was imported.
"""

import io
from collections.abc import Mapping, Sequence
from functools import partial

import anyio.to_thread
from anyio import CapacityLimiter
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, Cell, WriteOnlyCell
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from app.models.questionnaires import Questionnaire
from app.services.openrosa.rows import author_rows

# The columns of each sheet in the order authors are used to; any other column (a language
# suffix, an extra choice property, a kenes_* column) after its base column, or at the end.
ORDER = {
    "survey": (
        "type",
        "name",
        "label",
        "hint",
        "guidance_hint",
        "required",
        "required_message",
        "relevant",
        "constraint",
        "constraint_message",
        "calculation",
        "default",
        "appearance",
        "read_only",
        "parameters",
        "repeat_count",
        "choice_filter",
        "media",
        "image",
        "audio",
        "video",
    ),
    "choices": ("list_name", "name", "label", "media", "image", "audio", "video"),
    "settings": ("form_id", "version", "form_title", "default_language", "access"),
}
MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _columns(sheet: str, rows: Sequence[Mapping[str, str]]) -> list[str]:
    """Every column the rows use: known ones in ORDER, each language as first seen."""
    seen = list(dict.fromkeys(column for row in rows for column in row))
    order = ORDER[sheet]

    def rank(column: str) -> tuple[int, int]:
        base = column.split("::", 1)[0]
        known = order.index(base) if base in order else len(order)
        return known, seen.index(column)

    return sorted(seen, key=rank)


def _cell(sheet: WriteOnlyWorksheet, value: str | None) -> Cell | None:
    if value is None:
        return None
    # Characters XML cannot hold are dropped; a text starting with "=" stays text (never a
    # formula run by the author's spreadsheet program).
    cell = WriteOnlyCell(sheet, ILLEGAL_CHARACTERS_RE.sub("", value))
    cell.data_type = "s"
    return cell


def workbook_of(sheets: Mapping[str, Sequence[Mapping[str, str]]]) -> bytes:
    """XLSForm sheets (lists of rows of column -> text) as .xlsx bytes (CPU-bound)."""
    book = Workbook(write_only=True)
    for name in ("survey", "choices", "settings"):
        rows = sheets.get(name) or ()
        if name != "survey" and not rows:
            continue
        sheet = book.create_sheet(name)
        columns = _columns(name, rows)
        sheet.append([_cell(sheet, column) for column in columns])
        for row in rows:
            sheet.append([_cell(sheet, row.get(column)) for column in columns])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _build(questionnaire: Questionnaire) -> bytes:
    sheets = author_rows(
        questionnaire.definition,
        slug=questionnaire.slug,
        version=questionnaire.version,
        default=questionnaire.default_language,
        access=questionnaire.access,
    )
    return workbook_of(sheets)


async def xlsform_of(questionnaire: Questionnaire, limiter: CapacityLimiter) -> bytes:
    """The questionnaire as an XLSForm workbook, written in a worker thread (a 2,000-question
    form is CPU work)."""
    return await anyio.to_thread.run_sync(partial(_build, questionnaire), limiter=limiter)
