"""The compiled parts of a questionnaire version: questions, repeats, answer pages, and the
layout rules (LAYOUTS) their columns follow."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.services.answer_codecs import Canonical, Check, Decode
from app.services.expressions import Expression

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
    definition: Mapping[str, Any] = field(default_factory=dict)  # as stored (`choices` unresolved)
    # column values -> one spelling, for "same content" (None: they compare as values already)
    canonical: Canonical | None = None
    # keeps the options it holds for; evaluated for the chosen values only
    choice_filter: Expression | None = None
    option_properties: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # by value
    # No expression decides anything about it (relevant, required, constraint, choice_filter,
    # calculation): its answer alone is checked (Checking.scope's short way).
    plain: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        plain = not (
            self.relevant
            or self.required_when is not None
            or self.constraint is not None
            or self.choice_filter is not None
            or self.calculation is not None
        )
        object.__setattr__(self, "plain", plain)


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
