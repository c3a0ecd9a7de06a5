"""Choice lists from the CSV files of `select_one_from_file` / `select_multiple_from_file`,
uploaded with the form as `media` parts of the import.

A file is read as ODK reads it: a header line, one choice per line; the value in the `name`
column and the label in `label` (a select's `parameters` may name others: `value=code
label=title`), labels per language in `label::English (en)` columns; every other column is an
extra property of the choice (what a `choice_filter` reads). Every problem is named by file, line
and column: `["media", <file>, <line>, <column>]`.
"""

import csv
import io
from collections.abc import Callable
from typing import Any

from app.models.questionnaires import MAX_OPTIONS

Loc = list[str | int]
MAX_VALUE = 100  # characters of a choice's value (models: Option)
Problem = tuple[Loc, str]


def choices_from_csv(
    content: bytes,
    file_name: str,
    *,
    value_column: str,
    label_column: str,
    language_of: Callable[[str], str | None],
) -> tuple[list[tuple[int, dict[str, Any]]], list[Problem]]:
    """The choices of a CSV file with their line numbers, and its problems (all of them; no
    choices when any). `language_of` gives the language code of a label column's suffix (None:
    unknown)."""
    place: Loc = ["media", file_name]
    if content.count(b"\n") > MAX_OPTIONS + 1:
        return [], [(place, f"at most {MAX_OPTIONS} choices in a list")]
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return [], [(place, "not UTF-8 text")]
    try:
        lines = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as error:
        return [], [(place, f"not a readable CSV file ({error})")]
    if not lines:
        return [], [(place, "an empty file")]
    header = [column.strip() for column in lines[0]]
    problems: list[Problem] = []
    if value_column not in header:
        problems.append(([*place, 1, value_column], f"no '{value_column}' column"))
    labels: dict[int, str] = {}  # column index -> language code ("" for the default)
    for index, column in enumerate(header):
        base, _, language = column.partition("::") if "::" in column else column.partition(":")
        if base.strip() != label_column:
            continue
        code = language_of(language.strip()) if language.strip() else ""
        if code is None:
            problems.append(([*place, 1, column], f"no language code in '{language.strip()}'"))
        else:
            labels[index] = code
    if len(set(header)) != len(header) or "" in header:
        problems.append(([*place, 1], "every column needs a name, each once"))
    if problems:
        return [], problems
    choices: list[tuple[int, dict[str, Any]]] = []
    seen: set[str] = set()
    value_index = header.index(value_column)
    for number, record in enumerate(lines[1:], start=2):
        if not any(cell.strip() for cell in record):
            continue
        if len(record) != len(header):
            problems.append(
                ([*place, number], f"{len(record)} cells, the header has {len(header)}")
            )
            continue
        value = record[value_index].strip()
        if len(value) > MAX_VALUE:
            problems.append(([*place, number, value_column], f"at most {MAX_VALUE} characters"))
            continue
        if not value or value in seen:
            problems.append(
                ([*place, number, value_column], "a value, each once" if value else "no value")
            )
            continue
        seen.add(value)
        choice: dict[str, Any] = {"value": value, "label": {}}
        for index, cell in enumerate(record):
            if index in labels:
                if cell.strip():
                    choice["label"][labels[index]] = cell.strip()
            elif index != value_index:
                choice[header[index]] = cell.strip()
        choices.append((number, choice))
    return ([] if problems else choices), problems
