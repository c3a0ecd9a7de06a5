"""Questionnaires: versioned, trilingual survey definitions, and their schemas (the questions'
own schemas are in questions.py, re-exported here)."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from annotated_types import MaxLen, MinLen
from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy import Column, String, UniqueConstraint
from sqlmodel import Field as TableField
from sqlmodel import SQLModel

from app.db import JSONType, UTCDateTime, utcnow
from app.models import examples as ex
from app.models.examples import examples
from app.models.questions import (
    KEY_PATTERN,
    LANGUAGES,
    MAX_LANGUAGE_TAG,
    MAX_MULTIPLE_OPTIONS,
    MAX_NESTING,
    MAX_OPTIONS,
    MAX_QUESTIONS,
    MAX_REPEAT_INSTANCES,
    ChoiceItem,
    ChoiceLists,
    Condition,
    Expression,
    FiniteNumber,
    I18nText,
    Key,
    Label,
    Language,
    Media,
    Option,
    Question,
    Settings,
)

__all__ = [
    "KEY_PATTERN",
    "LANGUAGES",
    "MAX_LANGUAGE_TAG",
    "MAX_MULTIPLE_OPTIONS",
    "MAX_NESTING",
    "MAX_OPTIONS",
    "MAX_QUESTIONS",
    "MAX_REPEAT_INSTANCES",
    "SLUG_PATTERN",
    "Access",
    "ChoiceItem",
    "ChoiceLists",
    "Condition",
    "Expression",
    "FiniteNumber",
    "I18nText",
    "Key",
    "Label",
    "Language",
    "Media",
    "Option",
    "Question",
    "Questionnaire",
    "QuestionnaireCreate",
    "QuestionnaireRead",
    "QuestionnaireUpdate",
    "RespondentGroup",
    "Settings",
    "Status",
]

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"


class Status(StrEnum):
    draft = "draft"
    published = "published"
    closed = "closed"


class Access(StrEnum):
    public = "public"
    token = "token"  # noqa: S105 - an access level, not a secret
    staff = "staff"


Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN)]


class Questionnaire(SQLModel, table=True):
    __tablename__ = "questionnaire"
    __table_args__ = (UniqueConstraint("slug", "version"),)

    id: uuid.UUID = TableField(default_factory=uuid.uuid4, primary_key=True)
    slug: str = TableField(max_length=63, index=True)
    version: int
    status: str = TableField(default=Status.draft, max_length=16)
    access: str = TableField(default=Access.token, max_length=16)
    # A BCP 47 tag. SQLite never enforces a VARCHAR's length, and widening its column would
    # mean rebuilding the table under every response's foreign key: there it stays VARCHAR(2)
    # (as first made) and holds longer tags all the same.
    default_language: str = TableField(
        sa_type=String(MAX_LANGUAGE_TAG).with_variant(String(2), "sqlite"), nullable=False
    )
    # title, description, respondent_groups, questions: frozen once published (a trigger
    # in the migration enforces it).
    definition: dict[str, Any] = TableField(sa_column=Column(JSONType, nullable=False))
    created_by: uuid.UUID | None = TableField(default=None, foreign_key="user_account.id")
    created_at: datetime = TableField(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = TableField(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    published_at: datetime | None = TableField(default=None, sa_type=UTCDateTime)
    closed_at: datetime | None = TableField(default=None, sa_type=UTCDateTime)
    # The rules its answer tables were laid out by (services/answers/parts.py: LAYOUTS), fixed at
    # publish time: a later change of the rules never moves a published version's columns.
    answer_layout: int | None = TableField(default=None)


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
    choice_lists: ChoiceLists | None = None
    settings: Settings | None = None


class QuestionnaireUpdate(BaseModel):
    """PATCH of a draft: the fields given replace the stored ones; the whole is checked again."""

    model_config = ConfigDict(extra="forbid")

    title: I18nText | None = None
    description: I18nText | None = None
    default_language: Language | None = None
    access: Access | None = None
    respondent_groups: Groups | None = None
    questions: Questions | None = None
    choice_lists: ChoiceLists | None = None
    settings: Settings | None = None


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
    choice_lists: dict[str, list[ChoiceItem]] | None = None
    settings: Settings | None = None
    created_at: datetime
    published_at: datetime | None
    closed_at: datetime | None
