"""A compiled questionnaire version: checking a submission's answers into the rows of its
answer pages, and decoding those rows back into the answers as the API shows them."""

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.models.responses import INSTANCE_NAME_TEXT
from app.services.answer_codecs import Canonical
from app.services.answers.checking import Checking
from app.services.answers.parts import (
    INSTANCE_PREFIX,
    AnswerPage,
    CompiledQuestion,
    CompiledRepeat,
    Instance,
    PageRows,
)
from app.services.expressions import EvaluationError, Expression, string


@dataclass(frozen=True)
class CompiledQuestionnaire:
    id: Any
    version: int
    status: str
    access: str
    groups: Mapping[str, tuple[int, str]]  # key -> (index, category)
    group_keys: tuple[str, ...]
    questions: tuple[CompiledQuestion, ...]  # every answerable question, in order
    pages: tuple[AnswerPage, ...] = ()
    members: tuple[CompiledQuestion | CompiledRepeat, ...] = ()  # the top level
    keys: frozenset[str] = frozenset()  # of the top-level members
    # key -> the questions of that key, in order: one, or one per repeat that shares the key
    by_key: Mapping[str, tuple[CompiledQuestion, ...]] = field(default_factory=dict)
    repeats: Mapping[str, CompiledRepeat] = field(default_factory=dict)
    # key -> the repeats it is asked in (None: at the top), for expressions' references: one,
    # or several repeats that share the key (none inside another: a reference means the one
    # in view, services/expressions/forms.KeyIndex)
    owners: Mapping[str, tuple[str | None, ...]] = field(default_factory=dict)
    repeat_path: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # outermost first
    # (page, first column in its rows, width, canonical) of answers stored as spelled
    canonical_columns: tuple[tuple[int, int, int, Canonical], ...] = ()
    choice_lists: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    instance_name: Expression | None = None  # settings.instance_name, compiled

    @functools.cached_property
    def top_pages(self) -> tuple[int, ...]:  # asked for every submission checked
        return tuple(n for n, page in enumerate(self.pages) if page.repeat is None)

    @property
    def encrypted(self) -> bool:
        """Takes only encrypted submissions (settings.public_key): stored as received."""
        return bool(self.settings.get("public_key"))

    def empty_pages(self) -> PageRows:
        """The answer pages of a response without answers (an encrypted one): a row of nulls
        per top-level page, no repeat instances."""
        return [
            [] if page.repeat is not None else [[None] * len(page.columns)] for page in self.pages
        ]

    def check_answers(self, answers: Mapping[str, Any]) -> tuple[list[dict[str, Any]], PageRows]:
        """(errors, the rows of each answer page) for a submission's answers."""
        errors, pages, _ = self.check(answers)
        return errors, pages

    def check(
        self, answers: Mapping[str, Any]
    ) -> tuple[list[dict[str, Any]], PageRows, str | None]:
        """check_answers, and the response's name: settings.instance_name evaluated on the
        checked answers (calculations included), within the same step budget; cut to
        INSTANCE_NAME_TEXT characters, None when empty or when the answers have errors."""
        errors: list[dict[str, Any]] = []
        pages: PageRows = [[] for _ in self.pages]
        rows: dict[int, list[Any]] = {}
        for number in self.top_pages:
            rows[number] = []
            pages[number].append(rows[number])
        # A copy (checking drops and adds answers) without the null ones; dict() copies in C.
        if None in answers.values():
            given = {key: value for key, value in answers.items() if value is not None}
        else:
            given = dict(answers)
        checking = Checking(errors, pages, {}, self, [(None, given)])
        name: str | None = None
        try:
            checking.scope(self.members, self.keys, given, rows, None, [], 0)
            if self.instance_name is not None and not errors:
                name = string(self.instance_name.evaluate(checking.env(0)))[:INSTANCE_NAME_TEXT]
        except EvaluationError as error:
            errors.append({"loc": ["body", "answers"], "msg": str(error), "type": "too_costly"})
        return errors, pages, name or None

    def canonical_pages(self, pages: PageRows) -> PageRows:
        """The rows with every answer in one spelling (for "same content"); the rows themselves
        when no question keeps its answers as spelled."""
        if not self.canonical_columns:
            return pages
        copied = [[list(row) for row in rows] for rows in pages]
        for page, start, width, canonical in self.canonical_columns:
            for row in copied[page]:
                row[start : start + width] = canonical(tuple(row[start : start + width]))
        return copied

    def answers_from(self, pages: Sequence[Sequence[Sequence[Any]]]) -> dict[str, Any]:
        """The answers as the API shows them, from the rows of each answer page (as
        check_answers gives them; a response's top-level pages have one row each)."""
        instances: dict[str, dict[Any, list[Instance]]] = {}
        by_number: dict[tuple[str, int], dict[int, Sequence[Any]]] = {}
        for number, page in enumerate(self.pages):
            if page.repeat is None:
                continue
            first = self.repeats[page.repeat].pages[0] == number
            for row in pages[number]:
                values = by_number.setdefault((page.repeat, row[0]), {})
                values[number] = row[INSTANCE_PREFIX:]
                if first:
                    siblings = instances.setdefault(page.repeat, {}).setdefault(row[1], [])
                    siblings.append((row[2], row[0], values))
        top = {number: pages[number][0] if pages[number] else () for number in self.top_pages}
        return _decode(self.members, top, instances, None)


def _decode(
    members: Sequence["CompiledQuestion | CompiledRepeat"],
    rows: Mapping[int, Sequence[Any]],
    instances: Mapping[str, Mapping[Any, list[Instance]]],
    parent: int | None,
) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for member in members:
        if isinstance(member, CompiledRepeat):
            found = sorted(instances.get(member.key, {}).get(parent, ()), key=lambda i: i[0])
            if found:
                answers[member.key] = [
                    _decode(member.members, values, instances, number)
                    for _, number, values in found
                ]
            continue
        row = rows.get(member.page)
        if not row:
            continue
        values = row[member.offset : member.offset + len(member.columns)]
        if values and values[0] is not None:
            answers[member.key] = member.decode(values)
    return answers
