"""Writes examples/almaty_participation.xlsx, an XLSForm of the Almaty participation survey.

The survey itself is app/data/almaty_participation.json; run this after changing it:
    .venv/bin/python examples/make_almaty_xlsform.py
"""

import json
from pathlib import Path
from typing import Any

from openpyxl import Workbook

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent / "app" / "data" / "almaty_participation.json"
TARGET = HERE / "almaty_participation.xlsx"
LANGUAGES = {"kk": "Kazakh (kk)", "ru": "Russian (ru)", "en": "English (en)"}
TYPES = {
    "single_choice": "select_one",
    "multiple_choice": "select_multiple",
    "text": "text",
    "integer": "integer",
    "decimal": "decimal",
    "date": "date",
}


def relevant(condition: dict[str, Any]) -> str:
    """Our condition objects written back as XLSForm expressions."""
    if "all" in condition:
        return " and ".join(f"({relevant(part)})" for part in condition["all"])
    if "any" in condition:
        return " or ".join(f"({relevant(part)})" for part in condition["any"])
    if "not" in condition:
        return f"not({relevant(condition['not'])})"
    key, op, value = condition["question"], condition["op"], condition.get("value")
    if isinstance(value, bool):  # XLSForm has no boolean type: a yes/no list of 'true'/'false'
        value = str(value).lower()
    literal = f"'{value}'" if isinstance(value, str) else str(value)
    if op == "contains":
        return f"selected(${{{key}}}, {literal})"
    symbol = {"eq": "=", "ne": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}[op]
    return f"${{{key}}} {symbol} {literal}"


def constraint(question: dict[str, Any]) -> str | None:
    bounds = [
        (subject, op, question.get(name))
        for subject, op, name in (
            ("count-selected(.)", ">=", "min_selected"),
            ("count-selected(.)", "<=", "max_selected"),
            (".", ">=", "min"),
            (".", "<=", "max"),
        )
    ]
    if question["type"] == "scale":
        return None  # a range's start and end say it
    parts = [f"{subject} {op} {value}" for subject, op, value in bounds if value is not None]
    return " and ".join(parts) or None


def main() -> None:
    survey = json.loads(SOURCE.read_text(encoding="utf-8"))
    book = Workbook()
    sheet = book.active
    sheet.title = "survey"
    labels = [f"label::{name}" for name in LANGUAGES.values()]
    hints = [f"hint::{name}" for name in LANGUAGES.values()]
    sheet.append(
        ["type", "name", *labels, *hints, "required", "relevant", "parameters", "constraint"]
    )
    choices = book.create_sheet("choices")
    choices.append(["list_name", "name", *labels, "category"])
    for group in survey["respondent_groups"]:
        texts = [group["label"].get(code) for code in LANGUAGES]
        choices.append(["respondent_group", group["key"], *texts, group["category"]])
    for question in survey["questions"]:
        qtype, parameters = question["type"], None
        if qtype in ("single_choice", "multiple_choice"):
            kind = f"{TYPES[qtype]} {question['key']}_options"
            for option in question["options"]:
                texts = [option["label"].get(code) for code in LANGUAGES]
                choices.append([f"{question['key']}_options", option["value"], *texts, None])
        elif qtype == "scale":
            kind, parameters = "range", f"start={question['min']} end={question['max']} step=1"
        elif qtype == "boolean":
            kind = f"select_one {question['key']}_options"
            for value, words in (("true", ("Иә", "Да", "Yes")), ("false", ("Жоқ", "Нет", "No"))):
                choices.append([f"{question['key']}_options", value, *words, None])
        else:
            kind = TYPES[qtype]
        sheet.append(
            [
                kind,
                question["key"],
                *[question["label"].get(code) for code in LANGUAGES],
                *[(question.get("help") or {}).get(code) for code in LANGUAGES],
                "yes" if question.get("required") else None,
                relevant(question["relevant"]) if question.get("relevant") else None,
                parameters,
                constraint(question),
            ]
        )
    settings = book.create_sheet("settings")
    settings.append(
        [
            "form_id",
            "form_title",
            *[f"title::{n}" for n in LANGUAGES.values()],
            "default_language",
            "access",
        ]
    )
    settings.append(
        [
            survey["slug"],
            survey["title"][survey["default_language"]],
            *[survey["title"].get(code) for code in LANGUAGES],
            LANGUAGES[survey["default_language"]],
            survey["access"],
        ]
    )
    book.save(TARGET)
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
