"""Questionnaires: versioned, trilingual survey definitions, and their schemas."""

import math
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from annotated_types import MaxLen, MinLen
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
    Tag,
)
from sqlalchemy import Column, UniqueConstraint
from sqlmodel import Field as TableField
from sqlmodel import SQLModel

from app.db import JSONType, UTCDateTime, utcnow
from app.models import examples as ex
from app.models.examples import examples

# XLSForm names (capitals, dots and hyphens too), as the contract allows.
KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"
SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
LANGUAGES = ("kk", "ru", "en")
MAX_QUESTIONS = 2000
MAX_OPTIONS = 10_000
MAX_MULTIPLE_OPTIONS = 1000


class Status(StrEnum):
    draft = "draft"
    published = "published"
    closed = "closed"


class Access(StrEnum):
    public = "public"
    token = "token"  # noqa: S105 - an access level, not a secret
    staff = "staff"


Language = Literal["kk", "ru", "en"]
Key = Annotated[str, StringConstraints(pattern=KEY_PATTERN)]
Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
I18nText = Annotated[dict[Language, Label], MinLen(1)]
# NaN, Infinity and 1e400 parse as floats; stored, they broke every later read (SQLite) or the
# insert itself (PostgreSQL's JSONB has no NaN).
FiniteNumber = Annotated[StrictFloat, Field(allow_inf_nan=False)] | StrictInt


class Questionnaire(SQLModel, table=True):
    __tablename__ = "questionnaire"
    __table_args__ = (UniqueConstraint("slug", "version"),)

    id: uuid.UUID = TableField(default_factory=uuid.uuid4, primary_key=True)
    slug: str = TableField(max_length=63, index=True)
    version: int
    status: str = TableField(default=Status.draft, max_length=16)
    access: str = TableField(default=Access.token, max_length=16)
    default_language: str = TableField(max_length=2)
    # title, description, respondent_groups, questions: frozen once published (a trigger
    # in the migration enforces it).
    definition: dict[str, Any] = TableField(sa_column=Column(JSONType, nullable=False))
    created_by: uuid.UUID | None = TableField(default=None, foreign_key="user_account.id")
    created_at: datetime = TableField(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = TableField(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    published_at: datetime | None = TableField(default=None, sa_type=UTCDateTime)
    closed_at: datetime | None = TableField(default=None, sa_type=UTCDateTime)
    # The rules its answer tables were laid out by (services/answers.py: LAYOUTS), fixed at
    # publish time: a later change of the rules never moves a published version's columns.
    answer_layout: int | None = TableField(default=None)


# --- conditions ("relevant") ------------------------------------------------------------------

Operator = Literal["eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "answered", "contains"]


def _finite(value: Any) -> Any:
    """No NaN or infinity anywhere in a value (JSON has neither; PostgreSQL refuses them)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("numbers must be finite (no NaN or Infinity)")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return value


class Comparison(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: Key
    op: Operator
    value: Annotated[JsonValue, AfterValidator(_finite)] = None


class AllOf(BaseModel):
    model_config = ConfigDict(extra="forbid")

    all: Annotated[list["Condition"], MinLen(1), MaxLen(50)]


class AnyOf(BaseModel):
    model_config = ConfigDict(extra="forbid")

    any: Annotated[list["Condition"], MinLen(1), MaxLen(50)]


class NotOf(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    not_: "Condition" = Field(alias="not")


def _condition_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        for kind in ("question", "all", "any", "not"):
            if kind in value:
                return kind
        return None
    if isinstance(value, BaseModel):
        return {Comparison: "question", AllOf: "all", AnyOf: "any", NotOf: "not"}.get(type(value))
    return None


Condition = Annotated[
    Annotated[Comparison, Tag("question")]
    | Annotated[AllOf, Tag("all")]
    | Annotated[AnyOf, Tag("any")]
    | Annotated[NotOf, Tag("not")],
    Discriminator(
        _condition_kind,
        custom_error_type="condition",
        custom_error_message="a condition has 'question', 'all', 'any' or 'not'",
    ),
]


# --- questions --------------------------------------------------------------------------------


# An XLSForm expression (services/expressions): parsed and checked when the definition is saved.
Expression = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
ShortText = Annotated[str, StringConstraints(max_length=2000)]


class Option(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    label: I18nText


class QuestionBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: Key
    label: I18nText
    help: I18nText | None = None
    # true/false, or an expression deciding it per response
    required: StrictBool | Expression = False
    required_message: I18nText | None = None
    relevant: Condition | Expression | None = None
    # an expression over `.` (this answer) and earlier answers; a response breaking it is 422
    constraint: Expression | None = None
    constraint_message: I18nText | None = None
    # kept and given back (for clients that draw the form); the server does not apply them
    default: ShortText | FiniteNumber | StrictBool | None = None
    appearance: ShortText | None = None
    read_only: StrictBool | None = None
    guidance_hint: I18nText | None = None


class SingleChoice(QuestionBase):
    type: Literal["single_choice"]
    options: Annotated[list[Option], MinLen(1), MaxLen(MAX_OPTIONS)]


class MultipleChoice(QuestionBase):
    type: Literal["multiple_choice"]
    options: Annotated[list[Option], MinLen(1), MaxLen(MAX_MULTIPLE_OPTIONS)]
    min_selected: Annotated[StrictInt, Field(ge=1)] | None = None
    max_selected: Annotated[StrictInt, Field(ge=1)] | None = None


class Text(QuestionBase):
    type: Literal["text"]
    max_length: Annotated[StrictInt, Field(ge=1, le=10_000)] = 2000


class Integer(QuestionBase):
    type: Literal["integer"]
    min: StrictInt | None = None
    max: StrictInt | None = None


class Decimal(QuestionBase):
    type: Literal["decimal"]
    min: FiniteNumber | None = None
    max: FiniteNumber | None = None


class Scale(QuestionBase):
    type: Literal["scale"]
    min: StrictInt
    max: StrictInt
    step: Annotated[StrictInt, Field(ge=1)] | None = None  # answers are min + k * step


class Boolean(QuestionBase):
    type: Literal["boolean"]


class Date(QuestionBase):
    type: Literal["date"]


class Note(QuestionBase):
    """Display text: never answered (no column)."""

    type: Literal["note"]


class Calculate(BaseModel):
    """A value the server computes from the answers (`calculation`) and stores as text; one
    using now(), today(), uuid(), random() or once() keeps the client's value instead."""

    model_config = ConfigDict(extra="forbid")

    key: Key
    type: Literal["calculate"]
    calculation: Expression
    label: I18nText | None = None
    help: I18nText | None = None
    relevant: Condition | Expression | None = None
    default: ShortText | FiniteNumber | StrictBool | None = None
    appearance: ShortText | None = None
    read_only: StrictBool | None = None


MAX_REPEAT_INSTANCES = 1000
MAX_NESTING = 8


class Group(BaseModel):
    """Questions shown together; its `relevant` applies to all of them. Their answers are keyed
    by their own keys (no nesting in the answers)."""

    model_config = ConfigDict(extra="forbid")

    key: Key
    type: Literal["group"]
    label: I18nText | None = None
    relevant: Condition | Expression | None = None
    appearance: ShortText | None = None
    questions: Annotated[list["Question"], MinLen(1), MaxLen(MAX_QUESTIONS)]


class Repeat(BaseModel):
    """Questions asked once per instance (a household roster); the answer is a list of
    objects, one per instance."""

    model_config = ConfigDict(extra="forbid")

    key: Key
    type: Literal["repeat"]
    label: I18nText
    help: I18nText | None = None
    relevant: Condition | Expression | None = None
    appearance: ShortText | None = None
    questions: Annotated[list["Question"], MinLen(1), MaxLen(MAX_QUESTIONS)]
    min_count: Annotated[StrictInt, Field(ge=0, le=MAX_REPEAT_INSTANCES)] | None = None
    max_count: Annotated[StrictInt, Field(ge=1, le=MAX_REPEAT_INSTANCES)] | None = None
    # an expression fixing the number of instances (XLSForm's repeat_count)
    count: Expression | None = None


Question = Annotated[
    SingleChoice
    | MultipleChoice
    | Text
    | Integer
    | Decimal
    | Scale
    | Boolean
    | Date
    | Note
    | Calculate
    | Group
    | Repeat,
    Field(discriminator="type"),
]
Group.model_rebuild()
Repeat.model_rebuild()


class RespondentGroup(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: Key
    category: Literal["citizen", "expert"]
    label: I18nText


Groups = Annotated[list[RespondentGroup], MinLen(1), MaxLen(50)]
Questions = Annotated[list[Question], MinLen(1), MaxLen(MAX_QUESTIONS)]


class QuestionnaireCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=examples(ex.QUESTIONNAIRE_CREATE))

    slug: Slug
    title: I18nText
    description: I18nText | None = None
    default_language: Language
    access: Access = Access.token
    respondent_groups: Groups
    questions: Questions


class QuestionnaireUpdate(BaseModel):
    """PATCH of a draft: the fields given replace the stored ones; the whole is checked again."""

    model_config = ConfigDict(extra="forbid")

    title: I18nText | None = None
    description: I18nText | None = None
    default_language: Language | None = None
    access: Access | None = None
    respondent_groups: Groups | None = None
    questions: Questions | None = None


class QuestionnaireRead(BaseModel):
    id: uuid.UUID
    slug: str
    version: int
    status: Status
    title: dict[str, str]
    description: dict[str, str] | None
    default_language: Language
    access: Access
    respondent_groups: list[RespondentGroup]
    questions: list[Question]
    created_at: datetime
    published_at: datetime | None
    closed_at: datetime | None
