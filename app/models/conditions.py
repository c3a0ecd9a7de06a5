"""Conditions (a question's `relevant` as JSON): comparisons and their combinations."""

import math
from typing import Annotated, Any, Literal

from annotated_types import MaxLen, MinLen
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    Tag,
)

from app.models.basics import Key

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
