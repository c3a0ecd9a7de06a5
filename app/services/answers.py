"""A questionnaire version compiled once: answer checks, and the typed columns that hold them.

Compiling parses the stored definition a single time; submissions then run plain Python checks
(no per-request model building), which keeps the submission hot path fast.

Where answers are stored (the layout) follows from the definition alone: each question gets
one column in the best plain type (a multiple choice one BIGINT bit mask per 63 options), and
the columns are cut into pages, one table each, small enough for any row to fit a database page
(PostgreSQL: 1,600 columns and about 8 KB of fixed-width data at most). Every page row carries
the respondent's dimensions, so an aggregate reads one table in one pass. The layout of a
published version never changes: its tables are made from it at publish time.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from app.services import expressions
from app.services.answer_codecs import (
    MASK_BITS,
    NUMBER_TYPES,
    Check,
    Decode,
    Encoded,
    checker,
    column_kinds,
    decoder,
)
from app.services.expressions import Env, EvaluationError, Expression, NodeSet, string
from app.services.expressions.forms import FormExpressions, compile_definition

__all__ = ["MASK_BITS", "NUMBER_TYPES", "Encoded"]

# Layout rules by number: (answer columns, fixed-width bytes) at most per page. A version keeps
# the rules it was published with (questionnaire.answer_layout); new rules get a new number.
LAYOUTS = {1: (1000, 6000)}
CURRENT_LAYOUT = 1
MAX_INSTANCES = 1000  # of a repeat in one response

# Column kinds' fixed width in a PostgreSQL row (text: a TOAST pointer at most).
KIND_BYTES = {"smallint": 2, "bigint": 8, "float": 8, "date": 4, "text": 18}


# Conditions that must all hold (a question's own `relevant` and its groups'); () when none.
Relevance = tuple[Expression, ...]
CALCULATED_TEXT = 10_000  # characters of a calculation's value kept


@dataclass(frozen=True)
class CompiledQuestion:
    key: str
    type: str
    required: bool
    relevant: Relevance
    page: int  # which answer table
    offset: int  # where its columns start among the page's answer columns
    columns: tuple[str, ...]  # its columns there
    check: Check  # (problem, column values)
    decode: Decode  # column values -> the answer as the API shows it
    repeat: str | None = None  # the repeat it is asked in (None: once per response)
    empty: tuple[None, ...] = (None,)  # its column values when unanswered
    option_values: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    required_when: Expression | None = None  # `required` as an expression
    required_message: str | None = None
    constraint: Expression | None = None
    constraint_message: str | None = None
    calculation: Expression | None = None  # a calculate question's


@dataclass(frozen=True)
class CompiledRepeat:
    key: str
    relevant: Relevance
    min_count: int | None
    max_count: int
    pages: tuple[int, ...]  # its answer tables: a row per instance
    count: Expression | None  # fixes the number of instances when it gives a number
    members: tuple["CompiledQuestion | CompiledRepeat", ...]  # groups flattened
    keys: frozenset[str] = frozenset()  # of the members
    parent: str | None = None


@dataclass(frozen=True)
class AnswerPage:
    table: str
    columns: tuple[tuple[str, str], ...]  # (name, kind)
    repeat: str | None = None  # rows are instances of this repeat (None: one per response)


# A repeat page's rows start with the instance's number in the response, its enclosing
# instance's number (None at the top) and its position among its siblings.
INSTANCE_PREFIX = 3
# Values per page: one row (top-level pages) or one row per instance (repeat pages).
PageRows = list[list[list[Any]]]
# (position among siblings, instance number, the instance's values per page)
Instance = tuple[int, int, dict[int, Sequence[Any]]]


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
    by_key: Mapping[str, CompiledQuestion] = field(default_factory=dict)
    repeats: Mapping[str, CompiledRepeat] = field(default_factory=dict)
    # key -> the repeat it is asked in (None: at the top), for expressions' references
    owner: Mapping[str, str | None] = field(default_factory=dict)
    repeat_path: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # outermost first

    @property
    def top_pages(self) -> tuple[int, ...]:
        return tuple(n for n, page in enumerate(self.pages) if page.repeat is None)

    def check_answers(self, answers: Mapping[str, Any]) -> tuple[list[dict[str, Any]], PageRows]:
        """(errors, the rows of each answer page) for a submission's answers."""
        errors: list[dict[str, Any]] = []
        pages: PageRows = [[] for _ in self.pages]
        rows: dict[int, list[Any]] = {}
        for number in self.top_pages:
            rows[number] = []
            pages[number].append(rows[number])
        given = {key: value for key, value in answers.items() if value is not None}
        checking = _Checking(errors, pages, {}, self, [(None, given)])
        try:
            checking.scope(self.members, self.keys, given, rows, None, [], 0)
        except EvaluationError as error:
            errors.append({"loc": ["body", "answers"], "msg": str(error), "type": "too_costly"})
        return errors, pages

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


@dataclass
class _Checking:
    errors: list[dict[str, Any]]
    pages: PageRows
    counters: dict[str, int]
    form: "CompiledQuestionnaire | None" = None
    # the answers in view: the top level, then each enclosing repeat instance (repeat, answers)
    chain: list[tuple[str | None, dict[str, Any]]] = field(default_factory=list)
    steps: list[int] = field(default_factory=lambda: [0])

    def env(self, position: int) -> Env:
        return Env(lookup=self.lookup, position=position, steps=self.steps)

    def lookup(self, key: str) -> Any:
        """An answer as expressions see it: this instance's or an enclosing one's; all the
        instances' values (a node-set) for a question inside another repeat."""
        form = self.form
        assert form is not None  # noqa: S101 - set whenever expressions run
        owner = form.owner.get(key)
        for scope, values in reversed(self.chain):
            if scope == owner:
                value = values.get(key)
                break
        else:
            value = NodeSet(self.collect(key, owner))
        if type(value) is list and key in form.repeats:
            return NodeSet(value)
        return value

    def collect(self, key: str, owner: str | None) -> list[Any]:
        """`key`'s values in every instance of its repeat under the nearest common scope."""
        assert self.form is not None  # noqa: S101
        path = self.form.repeat_path.get(owner or "", ())
        scopes = [scope for scope, _ in self.chain]
        start = 0
        current: list[Any] = [self.chain[0][1]]
        for index, repeat in enumerate(path):
            if repeat in scopes:
                start, current = index + 1, [self.chain[scopes.index(repeat)][1]]
        for repeat in path[start:]:
            current = [
                instance
                for values in current
                for instance in (values.get(repeat) or ())
                if isinstance(instance, dict)
            ]
            self.steps[0] += len(current)
        found = [values.get(key) for values in current]
        if key in self.form.repeats:  # a nested repeat's instances, seen from outside
            return [item for value in found if isinstance(value, list) for item in value]
        return found

    def scope(
        self,
        members: Sequence[CompiledQuestion | CompiledRepeat],
        keys: frozenset[str],
        given: dict[str, Any],
        rows: Mapping[int, list[Any]],
        parent: int | None,
        loc: list[str | int],
        position: int,
    ) -> None:
        """Check one scope's answers (the top level, or one instance of a repeat).

        Runs for every answer of every submission: the loop keeps to local names and
        precomputed fields (a 300-question response is checked in about 0.3 ms); expressions
        are evaluated only for questions that have them."""
        extra = given.keys() - keys
        if extra:
            for key in given:
                if key in extra:
                    self.fail(loc, key, "no such question here", "unknown")
        env: Env | None = None
        for member in members:
            relevant = member.relevant
            shown = True
            if relevant:
                env = env or self.env(position)
                shown = all(condition.holds(env) for condition in relevant)
            if type(member) is CompiledRepeat:
                self.repeat(member, given, shown, parent, loc)
                continue
            assert type(member) is CompiledQuestion  # noqa: S101 - for the type checker
            value = given.get(member.key)
            if member.calculation is not None:
                env = env or self.env(position)
                self.calculate(member, value, shown, given, rows, env)
                continue
            if value is None:
                required = member.required
                if shown and not required and member.required_when is not None:
                    env = env or self.env(position)
                    env.current = None  # `.` is this (missing) answer
                    required = member.required_when.holds(env)
                if required and shown:
                    message = member.required_message or "an answer is required"
                    self.fail(loc, member.key, message, "missing")
                rows[member.page].extend(member.empty)
                continue
            if not shown:
                self.fail(loc, member.key, "this question is not relevant here", "not_relevant")
                del given[member.key]  # later expressions see it unanswered, as ODK does
                continue
            problem, encoded = member.check(value)
            if problem is None and member.constraint is not None:
                env = env or self.env(position)
                env.current = value
                if not member.constraint.holds(env):
                    broken = member.constraint_message or "the answer breaks the question's rule"
                    self.fail(loc, member.key, broken, "constraint")
                    continue
            if problem is None:
                rows[member.page].extend(encoded)
            else:
                self.fail(loc, member.key, problem, "invalid_answer")

    def calculate(
        self,
        member: CompiledQuestion,
        value: Any,
        shown: bool,
        given: dict[str, Any],
        rows: Mapping[int, list[Any]],
        env: Env,
    ) -> None:
        """The server's value of a calculation, stored as text. A deterministic one replaces
        whatever the client sent (the client computed it from the same answers; refusing
        differences would lose submissions over number formatting); one using now(), today(),
        uuid(), random() or once() keeps the client's value, and without one stays empty (a
        value made here would differ on a replay, which must store nothing new)."""
        assert member.calculation is not None  # noqa: S101
        result: str | None = None
        if shown:
            if member.calculation.volatile:
                ok = value is not None and not isinstance(value, dict | list)
                result = string(value) if ok else None
            else:
                result = string(member.calculation.evaluate(env))
        result = result[:CALCULATED_TEXT] if result else None
        if result is None:
            given.pop(member.key, None)
        else:
            given[member.key] = result
        rows[member.page].append(result)

    def repeat(
        self,
        repeat: CompiledRepeat,
        given: dict[str, Any],
        shown: bool,
        parent: int | None,
        loc: list[str | int],
    ) -> None:
        value = given.get(repeat.key)
        if shown and repeat.count is not None:
            env = self.env(0)
            wanted = expressions.number(repeat.count.evaluate(env))
            got = len(value) if isinstance(value, list) else 0
            if math.isfinite(wanted) and got != max(0, int(wanted)):
                message = f"expected {max(0, int(wanted))} instances (its count)"
                self.fail(loc, repeat.key, message, "count")
                return
        if value is None:
            if shown and repeat.min_count:
                self.fail(loc, repeat.key, f"at least {repeat.min_count} instances", "missing")
            return
        if not shown:
            self.fail(loc, repeat.key, "this question is not relevant here", "not_relevant")
            del given[repeat.key]
            return
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            self.fail(loc, repeat.key, "expected a list of objects, one per instance", "type")
            return
        if len(value) > repeat.max_count:
            self.fail(loc, repeat.key, f"at most {repeat.max_count} instances", "too_many")
            return
        if repeat.min_count and len(value) < repeat.min_count:
            self.fail(loc, repeat.key, f"at least {repeat.min_count} instances", "too_few")
            return
        # The instances as expressions see them (calculations included), filled in order.
        seen: list[dict[str, Any]] = []
        given[repeat.key] = seen
        for position, instance in enumerate(value):
            number = self.counters.get(repeat.key, 0)
            self.counters[repeat.key] = number + 1
            rows = {}
            for page in repeat.pages:
                rows[page] = [number, parent, position]
                self.pages[page].append(rows[page])
            answers = {key: answer for key, answer in instance.items() if answer is not None}
            seen.append(answers)
            self.chain.append((repeat.key, answers))
            try:
                self.scope(
                    repeat.members,
                    repeat.keys,
                    answers,
                    rows,
                    number,
                    [*loc, repeat.key, position],
                    position + 1,
                )
            finally:
                self.chain.pop()

    def fail(self, loc: list[str | int], key: str, message: str, kind: str) -> None:
        self.errors.append({"loc": ["body", "answers", *loc, key], "msg": message, "type": kind})


def table_prefix(questionnaire_id: UUID) -> str:
    """Answer tables of a questionnaire version are named <prefix><page>."""
    return f"answers_{questionnaire_id.hex}_p"


@dataclass
class _Layout:
    """Pages being filled while a definition is compiled: each scope has its own."""

    page_columns: int
    page_bytes: int
    pages: list[list[tuple[str, str]]] = field(default_factory=list)
    scopes: list[str | None] = field(default_factory=list)
    widths: list[int] = field(default_factory=list)
    number: int = 0  # questions numbered across the whole form: a1, a2, ...

    def new_page(self, scope: str | None) -> int:
        self.pages.append([])
        self.scopes.append(scope)
        self.widths.append(0)
        return len(self.pages) - 1

    def place(self, page: int, kinds: list[str], scope: str | None) -> tuple[int, int, list[str]]:
        """(page, offset, column names) for a question's columns, on a new page if needed."""
        self.number += 1
        width = sum(KIND_BYTES[kind] for kind in kinds)
        if self.pages[page] and (
            len(self.pages[page]) + len(kinds) > self.page_columns
            or self.widths[page] + width > self.page_bytes
        ):
            page = self.new_page(scope)
        n = self.number
        names = [f"a{n}"] if len(kinds) == 1 else [f"a{n}_{i}" for i in range(len(kinds))]
        offset = len(self.pages[page])
        self.pages[page].extend(zip(names, kinds, strict=True))
        self.widths[page] += width
        return page, offset, names


def _text(value: Mapping[str, str] | None, language: str) -> str | None:
    if not value:
        return None
    return value.get(language) or next(iter(value.values()))


@dataclass
class _Compiling:
    layout: _Layout
    expressions: FormExpressions
    language: str
    out: list[CompiledQuestion] = field(default_factory=list)
    repeats: dict[str, CompiledRepeat] = field(default_factory=dict)
    owner: dict[str, str | None] = field(default_factory=dict)
    repeat_path: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def scope(
        self,
        questions: Sequence[Mapping[str, Any]],
        scope: str | None,
        pages: list[int],
        inherited: Relevance,
    ) -> tuple[CompiledQuestion | CompiledRepeat, ...]:
        """A scope's members, groups flattened (a group's `relevant` joins its members')."""
        members: list[CompiledQuestion | CompiledRepeat] = []
        expressions = self.expressions
        for question in questions:
            qtype = question["type"]
            own = expressions.of(question, "relevant")
            relevant = (*inherited, own) if own is not None else inherited
            key = question["key"]
            if qtype == "group":
                members += self.scope(question["questions"], scope, pages, relevant)
                continue
            self.owner[key] = scope
            if qtype == "note":  # never answered: no column, no check
                continue
            if qtype == "repeat":
                outer = self.repeat_path.get(scope or "", ())
                self.repeat_path[key] = (*outer, key)
                own_pages = [self.layout.new_page(key)]
                inner = self.scope(question["questions"], key, own_pages, ())
                repeat = CompiledRepeat(
                    key=key,
                    relevant=relevant,
                    min_count=question.get("min_count"),
                    max_count=question.get("max_count") or MAX_INSTANCES,
                    pages=tuple(own_pages),
                    count=expressions.of(question, "count"),
                    members=inner,
                    keys=frozenset(member.key for member in inner),
                    parent=scope,
                )
                self.repeats[key] = repeat
                members.append(repeat)
                continue
            page, offset, names = self.layout.place(pages[-1], column_kinds(question), scope)
            if page != pages[-1]:
                pages.append(page)
            required = question.get("required", False)
            compiled = CompiledQuestion(
                key=key,
                type=qtype,
                required=required is True,
                relevant=relevant,
                page=page,
                offset=offset,
                columns=tuple(names),
                empty=(None,) * len(names),
                check=checker(question),
                decode=decoder(question),
                repeat=scope,
                option_values=tuple(o["value"] for o in question.get("options", ())),
                low=question.get("min"),
                high=question.get("max"),
                required_when=expressions.of(question, "required"),
                required_message=_text(question.get("required_message"), self.language),
                constraint=expressions.of(question, "constraint"),
                constraint_message=_text(question.get("constraint_message"), self.language),
                calculation=expressions.of(question, "calculation"),
            )
            self.out.append(compiled)
            members.append(compiled)
        return tuple(members)


def compile_questionnaire(
    *,
    id: Any,
    version: int,
    status: str,
    access: str,
    definition: Mapping[str, Any],
    layout: int | None = None,
    language: str | None = None,
) -> CompiledQuestionnaire:
    """The compiled version; its answer tables laid out by rules `layout` (the current rules
    for a draft, which has no tables yet)."""
    groups = {
        group["key"]: (index, group["category"])
        for index, group in enumerate(definition["respondent_groups"])
    }
    pages = _Layout(*LAYOUTS[layout or CURRENT_LAYOUT])
    top = [pages.new_page(None)]
    language = language or next(iter(definition.get("title") or {"en": ""}))
    compiling = _Compiling(pages, compile_definition(definition["questions"], language), language)
    members = compiling.scope(definition["questions"], None, top, ())
    compiled, repeats = compiling.out, compiling.repeats
    prefix = table_prefix(id) if isinstance(id, UUID) else "answers_unsaved_p"
    return CompiledQuestionnaire(
        id=id,
        version=version,
        status=status,
        access=access,
        groups=groups,
        group_keys=tuple(groups),
        questions=tuple(compiled),
        pages=tuple(
            AnswerPage(f"{prefix}{n}", tuple(columns), pages.scopes[n])
            for n, columns in enumerate(pages.pages)
        ),
        members=members,
        keys=frozenset(member.key for member in members),
        by_key={question.key: question for question in compiled},
        repeats=repeats,
        owner=compiling.owner,
        repeat_path=compiling.repeat_path,
    )
