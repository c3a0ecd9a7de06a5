"""XLSForm workbooks to questionnaire definitions, read as pyxform reads them.

pyxform does the reading and the normalising (`get_xlsform`, then `workbook_to_json`): header
and type aliases (`list name`, `Label`, `select one x`, `select all that apply x`, `int`, `gps`,
`photo`, ...), `label::English (en)`, `label::English`, `label:English`, `or_other`, comment
rows, `repeat_count`, names with capitals or dots, `.xls`, a missing `form_id` (taken from the
file name). Its form JSON is then mapped to a definition (mapping.py: every question type,
groups and repeats, choice lists and choice_filter, media, metadata, settings); the CSVs of
select_one_from_file come as uploaded media (files.py). Rows are found again by name in the
sheet pyxform read, so that every problem is reported as `["file", "survey", row, column]`
(a file's as `["media", file, line, column]`), all of them in one answer.

Respondent groups come from the choice list `respondent_group` (its `category` column says
citizen or expert); without one the form gets one group `respondent` (citizen).

Kenes's own workbook (services/xlsform/export.py) adds `kenes_*` columns for what XLSForm cannot
say (a boolean, bounds next to an author's constraint, a repeat's min/max count, the title in
other languages, the description); read here, so that its import gives the definition back.
"""

import io
import re
import zipfile
from collections.abc import Mapping
from functools import partial
from pathlib import PurePath
from typing import Any

import anyio
import anyio.to_thread
from anyio import CapacityLimiter
from pyxform.errors import PyXFormError
from pyxform.xls2json import workbook_to_json
from pyxform.xls2json_backends import DefinitionData, get_xlsform

from app.errors import Invalid
from app.models.questionnaires import QuestionnaireCreate
from app.services.definition_schema import check_schema, rule_problems, without_tags
from app.services.xlsform.mapping import FormMapping, Loc
from app.services.xlsform.shared import name_apart
from app.services.xlsform.vocabulary import slug

MAX_UNCOMPRESSED_BYTES = 50 * 1024 * 1024
MAX_ZIP_ENTRIES = 200
EXTENSIONS = {".xlsx": ".xlsx", ".xlsm": ".xlsx", ".xls": ".xls"}
_PYXFORM_ROW = re.compile(r"\[row\s*:\s*(\d+)\]")


async def read_definition(
    content: bytes,
    *,
    filename: str,
    limiter: CapacityLimiter,
    media: Mapping[str, bytes] | None = None,
    used: set[str] | None = None,
    mapped: dict[str, Any] | None = None,
) -> QuestionnaireCreate:
    """to_definition in a worker thread: reading a workbook is CPU-bound (a 2 MiB one held
    the event loop for 7.3 s), and at most `limiter` are read at once."""
    work = partial(to_definition, content, filename=filename, media=media, used=used, mapped=mapped)
    return await anyio.to_thread.run_sync(work, limiter=limiter)


def to_definition(
    content: bytes,
    *,
    filename: str,
    media: Mapping[str, bytes] | None = None,
    used: set[str] | None = None,
    mapped: dict[str, Any] | None = None,
) -> QuestionnaireCreate:
    """The draft definition in an XLSForm, or Invalid listing everything that cannot be mapped.
    `media`: the files uploaded with it, by name (the lists of select_one_from_file); the names
    of those it made lists of are added to `used`. `mapped` receives the definition as the
    workbook maps it, also when refused (its media names: the caller checks the files too)."""
    suffix = PurePath(filename).suffix.lower()
    if suffix not in EXTENSIONS:
        _refuse(["file"], "expected an XLSForm workbook (.xlsx or .xls)")
    if EXTENSIONS[suffix] == ".xlsx":
        _check_archive(content)
    book = _read(content, EXTENSIONS[suffix], PurePath(filename).stem)
    shared = name_apart(book.survey or [])  # names that repeats share: pyxform sees them apart
    try:
        form = workbook_to_json(
            book, fallback_form_name=book.fallback_form_name, default_language="default"
        )
    except PyXFormError as error:
        _refuse(_pyxform_loc(str(error)), shared.restore(f"pyxform: {error}"))
    except Exception as error:  # noqa: BLE001 - pyxform's own bugs on odd cells: 422, not 500
        _refuse(["file"], f"pyxform cannot read this workbook ({type(error).__name__}: {error})")
    mapping = FormMapping(
        rows=_rows_by_name(book.survey or []),
        files=media or {},
        choice_rows=_choice_rows(book.choices or []),
    )
    data = shared.restore_all(mapping.form(form, (book.settings or [{}])[0] or {}))
    if used is not None:
        used.update(mapping.file_lists, mapping.files_refused)
    if mapped is not None and isinstance(data, dict):
        mapped.update(data)
    errors = [
        {"loc": loc, "msg": shared.restore(msg), "type": "xlsform"} for loc, msg in mapping.problems
    ]
    # the schema and the rules in one answer (services/definition_schema.py)
    checked = check_schema(data, QuestionnaireCreate, mapping.default)
    errors += [
        {"loc": mapping.row_loc(without_tags(e["loc"])), "msg": e["msg"], "type": e["type"]}
        for e in checked.errors
    ]
    definition = checked.model
    if definition is not None:
        dumped = definition.model_dump(mode="json", by_alias=True, exclude_none=True)
        errors += [{**e, "loc": mapping.row_loc(e["loc"])} for e in rule_problems(checked, dumped)]
    if errors or definition is None:
        raise Invalid("The XLSForm does not make a valid questionnaire", errors=errors)
    return definition


def _refuse(loc: Loc, message: str) -> Any:
    raise Invalid(message, errors=[{"loc": loc, "msg": message, "type": "xlsform"}])


def _pyxform_loc(message: str) -> Loc:
    """pyxform names a row as '[row : 5]' and a sheet by name in its messages."""
    row = _PYXFORM_ROW.search(message)
    sheet = next((s for s in ("choices", "settings", "survey") if f"'{s}'" in message), None)
    if row:
        return ["file", sheet or "survey", int(row.group(1))]
    return ["file", sheet] if sheet else ["file"]


def _check_archive(content: bytes) -> None:
    """Refuse zip bombs before any XML is parsed."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            entries = archive.infolist()
    except zipfile.BadZipFile:
        _refuse(["file"], "not a readable .xlsx workbook")
    if len(entries) > MAX_ZIP_ENTRIES:
        _refuse(["file"], "the workbook has too many parts")
    if sum(entry.file_size for entry in entries) > MAX_UNCOMPRESSED_BYTES:
        _refuse(["file"], "the workbook unpacks to more than 50 MB")


def _read(content: bytes, file_type: str, stem: str) -> DefinitionData:
    try:
        book = get_xlsform(io.BytesIO(content), file_type=file_type)
    except PyXFormError as error:
        _refuse(["file"], f"not a readable {file_type} workbook ({error})")
    except (AttributeError, TypeError) as error:
        # pyxform strips header cells as text: a number, boolean or date there breaks it
        _refuse(_odd_header(content, file_type) or ["file"], f"a header cell is not text ({error})")
    except Exception as error:  # noqa: BLE001 - bad XML, bad OLE: the file, not the server
        _refuse(["file"], f"not a readable {file_type} workbook ({type(error).__name__})")
    # pyxform takes the form id from the file name only when it reads a path; we read bytes
    book.fallback_form_name = slug(stem) or "form"
    return book


def _odd_header(content: bytes, file_type: str) -> Loc | None:
    """Where a header cell holds something other than text (None if it cannot be found)."""
    if file_type != ".xlsx":
        return None
    from openpyxl import load_workbook  # noqa: PLC0415 - only on this error path

    try:
        book = load_workbook(io.BytesIO(content), read_only=True)
    except Exception:  # noqa: BLE001
        return None
    for sheet in book.worksheets:
        for row in sheet.iter_rows(min_row=1, max_row=1):
            for cell in row:
                if cell.value is not None and not isinstance(cell.value, str):
                    return ["file", sheet.title, 1, getattr(cell, "column_letter", "?")]
    return None


def _rows_by_name(survey: Any) -> dict[str, int]:
    """Survey sheet rows by the name given in them (pyxform's rows are numbered from 2)."""
    rows: dict[str, int] = {}
    for number, row in enumerate(survey, start=2):
        for header, value in (row or {}).items():
            if isinstance(header, str) and header.strip().lower() in ("name", "value", "tag"):
                if isinstance(value, str) and value.strip():
                    rows.setdefault(value.strip(), number)
    return rows


def _choice_rows(choices: Any) -> dict[tuple[str, str], int]:
    """Choices sheet rows by (list name, name), as the author spelled the headers."""
    rows: dict[tuple[str, str], int] = {}
    for number, row in enumerate(choices, start=2):
        cells = {
            "_".join(str(header).split()).lower(): value
            for header, value in (row or {}).items()
            if isinstance(header, str)
        }
        listed, name = cells.get("list_name"), cells.get("name", cells.get("value"))
        if listed is not None and name is not None:
            rows.setdefault((str(listed).strip(), str(name).strip()), number)
    return rows
