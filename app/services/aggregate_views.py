"""Aggregate views: the published, protected aggregates of a questionnaire (for the public and
partners). A view fixes which questions, dimensions and filters may be asked for and its
`min_cell`; its figures go through the cell-key protection of services/aggregates."""

import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.errors import Conflict, Invalid, NotFound, Unauthorized
from app.models.aggregate_views import (
    FILTER_NAMES,
    VIEW_TOKEN_PREFIX,
    AggregateView,
    AggregateViewCreate,
)
from app.models.auth import Principal
from app.models.questionnaires import Status
from app.models.responses import ResponseFilters
from app.models.territories import Territory
from app.pagination import paginate
from app.security import hash_token
from app.services import aggregates, audit
from app.services.answers import CompiledQuestionnaire


@dataclass(frozen=True)
class Rules:
    """What a published query may ask for: None allows anything (the staff preview without a
    view applies the protection alone)."""

    questions: list[str] | None
    dimensions: list[str] | None
    filters: list[str] | None
    min_cell: int


def rules_of(view: AggregateView) -> Rules:
    return Rules(view.questions, view.dimensions, view.filters, view.min_cell)


def _invalid(loc: list[str], message: str, kind: str = "not_allowed") -> Invalid:
    return Invalid(message, errors=[{"loc": loc, "msg": message, "type": kind}])


def _check_definition(data: AggregateViewCreate, questionnaire: CompiledQuestionnaire) -> None:
    """The view's questions exist; its dimensions are `by` dimensions of this questionnaire,
    and an `answer:` dimension names one of the view's questions (else it would publish a
    question the view leaves out)."""
    if data.questions is not None:
        aggregates.parse_questions(",".join(data.questions), questionnaire)
    if len(set(data.dimensions)) != len(data.dimensions):
        raise _invalid(["body", "dimensions"], "a dimension is repeated")
    for name in data.dimensions:
        try:
            aggregates.parse_by(name, questionnaire)
        except Invalid as error:
            raise _invalid(["body", "dimensions"], error.detail, "by") from error
        key = name.removeprefix("answer:")
        if name != key and data.questions is not None and key not in data.questions:
            message = f"'{name}' names a question the view does not publish"
            raise _invalid(["body", "dimensions"], message)


async def create_view(
    session: AsyncSession,
    actor: Principal,
    questionnaire: CompiledQuestionnaire,
    data: AggregateViewCreate,
    floor: int,
) -> tuple[AggregateView, str | None]:
    """A new view and, for `token` access, its token (shown once, stored as its SHA-256)."""
    if questionnaire.status == Status.draft:
        raise Conflict("The questionnaire is a draft; publish it before publishing its figures")
    aggregates.refuse_encrypted(questionnaire)
    _check_definition(data, questionnaire)
    token = VIEW_TOKEN_PREFIX + secrets.token_urlsafe(32) if data.access == "token" else None
    view = AggregateView(
        questionnaire_id=questionnaire.id,
        name=data.name,
        questions=data.questions,
        dimensions=data.dimensions,
        filters=sorted(set(data.filters), key=FILTER_NAMES.index),
        access=data.access,
        token_hash=None if token is None else hash_token(token),
        min_cell=max(floor, data.min_cell or 0),
        created_by=actor.id,
    )
    session.add(view)
    audit.record(
        session,
        actor,
        "aggregate_view.create",
        "aggregate_view",
        view.id,
        name=view.name,
        questionnaire_id=str(questionnaire.id),
        access=view.access,
    )
    await session.flush()
    return view, token


async def list_views(
    session: AsyncSession,
    *,
    questionnaire_id: uuid.UUID | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[AggregateView], str | None]:
    statement = select(AggregateView)
    if questionnaire_id is not None:
        statement = statement.where(col(AggregateView.questionnaire_id) == questionnaire_id)
    return await paginate(
        session,
        statement,
        created=col(AggregateView.created_at),
        row_id=col(AggregateView.id),
        limit=limit,
        cursor=cursor,
    )


async def get_view(session: AsyncSession, view_id: uuid.UUID) -> AggregateView:
    view = await session.get(AggregateView, view_id)
    if view is None:
        raise NotFound("No such aggregate view")
    return view


async def withdraw_view(session: AsyncSession, actor: Principal, view_id: uuid.UUID) -> None:
    """Deleted, so its URL answers 404 from the next request on."""
    view = await get_view(session, view_id)
    await session.delete(view)
    audit.record(session, actor, "aggregate_view.delete", "aggregate_view", view.id, name=view.name)
    await session.flush()


async def open_view(session: AsyncSession, view_id: uuid.UUID, token: str | None) -> AggregateView:
    """The view a public request names; a `token` view needs its token (401 without it)."""
    view = await get_view(session, view_id)
    if view.access == "token":
        if token is None:
            raise Unauthorized("This aggregate view needs its key (?key= or a Bearer token)")
        if view.token_hash is None or not hmac.compare_digest(view.token_hash, hash_token(token)):
            raise Unauthorized("Wrong key for this aggregate view")
    return view


async def preview_rules(
    session: AsyncSession,
    questionnaire: CompiledQuestionnaire,
    view_id: uuid.UUID | None,
    min_cell: int,
) -> Rules:
    """The rules of the staff preview: a view of this questionnaire (its `min_cell` raised to
    `min_cell`), or without a view the protection alone at `min_cell`."""
    if view_id is None:
        return Rules(None, None, None, min_cell)
    view = await session.get(AggregateView, view_id)
    if view is None or view.questionnaire_id != questionnaire.id:
        raise _invalid(["query", "view"], "no such aggregate view of this questionnaire", "unknown")
    return Rules(view.questions, view.dimensions, view.filters, max(view.min_cell, min_cell))


# --- the query a view allows ------------------------------------------------------------------


def _whole_month(moment: datetime) -> bool:
    start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return moment == start


async def _check_territory(session: AsyncSession, code: str, dimensions: list[str] | None) -> None:
    """A territory filter only at a level the view breaks down by: a region's code when it
    allows `region`, a district's when it allows `district`, any when it allows `territory`."""
    territory = await session.get(Territory, code)
    loc = ["query", "territory_code"]
    if territory is None:
        raise _invalid(loc, "unknown territory", "unknown")
    if dimensions is None or "territory" in dimensions:
        return
    levels = [
        level
        for level, holder in (
            ("region", territory.region_code),
            ("district", territory.district_code),
        )
        if holder == code and level in dimensions
    ]
    if not levels:
        allowed = [name for name in ("region", "district") if name in dimensions]
        message = (
            f"territory filters are allowed only at the levels {', '.join(allowed)}"
            if allowed
            else "this view allows no territory filter"
        )
        raise _invalid(loc, message)


async def check_query(
    session: AsyncSession,
    rules: Rules,
    filters: ResponseFilters,
    by: list[str],
    keys: list[str] | None,
) -> list[str] | None:
    """Refuse (422) what the rules do not allow; the question keys to publish."""
    if rules.dimensions is not None:
        extra = [name for name in by if name not in rules.dimensions]
        if extra:
            raise _invalid(["query", "by"], f"not a dimension of this view: {', '.join(extra)}")
    if rules.questions is not None:
        if keys is None:
            keys = rules.questions
        extra = [key for key in keys if key not in rules.questions]
        if extra:
            message = f"not a question of this view: {', '.join(extra[:20])}"
            raise _invalid(["query", "questions"], message)
    given = {name: value for name, value in filters.model_dump().items() if value is not None}
    for name in given:
        if rules.filters is not None and name not in rules.filters:
            raise _invalid(["query", name], f"this view does not allow the filter '{name}'")
    for name in ("submitted_from", "submitted_to"):
        moment = getattr(filters, name)
        if moment is not None and not _whole_month(moment):
            message = "time filters are whole months: the first of a month, 00:00 UTC"
            raise _invalid(["query", name], message, "whole_month")
    if filters.territory_code is not None:
        await _check_territory(session, filters.territory_code, rules.dimensions)
    return keys


async def published_aggregates(
    session: AsyncSession,
    questionnaire: CompiledQuestionnaire,
    rules: Rules,
    filters: ResponseFilters,
    *,
    by: list[str],
    keys: list[str] | None,
) -> aggregates.Figures:
    """What the view publishes for this query: checked against its rules, then protected."""
    keys = await check_query(session, rules, filters, by, keys)
    return await aggregates.survey_aggregates(
        session, questionnaire, filters, by=by, min_cell=rules.min_cell, keys=keys, protected=True
    )
