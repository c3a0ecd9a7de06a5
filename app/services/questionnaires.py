"""Questionnaire definitions: versions, states and who may read them (the rules of a
definition: definitions.py)."""

import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db import utcnow
from app.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from app.models.auth import Principal, Role
from app.models.questionnaires import (
    Access,
    Questionnaire,
    QuestionnaireCreate,
    QuestionnaireRead,
    QuestionnaireUpdate,
    Status,
)
from app.models.responses import answer_table
from app.pagination import paginate
from app.services import audit
from app.services.answers import CURRENT_LAYOUT, CompiledQuestionnaire, compile_questionnaire
from app.services.definition_schema import Checked, check_schema, rule_problems
from app.services.definitions import check_definition, walk

__all__ = ["check_definition", "walk"]

DEFINITION_FIELDS = (
    "title",
    "description",
    "respondent_groups",
    "questions",
    "choice_lists",
    "settings",
)
# Fields a PATCH may clear with null.
CLEARABLE_FIELDS = ("description", "choice_lists", "settings")
READ_ALL_ROLES = (Role.coordinator, Role.analyst)
WRITE_ROLES = (Role.coordinator,)

# --- reading and access -----------------------------------------------------------------------


def to_read(questionnaire: Questionnaire) -> QuestionnaireRead:
    return QuestionnaireRead.model_validate(
        {
            **questionnaire.definition,
            "id": questionnaire.id,
            "slug": questionnaire.slug,
            "version": questionnaire.version,
            "status": questionnaire.status,
            "default_language": questionnaire.default_language,
            "access": questionnaire.access,
            "created_at": questionnaire.created_at,
            "published_at": questionnaire.published_at,
            "closed_at": questionnaire.closed_at,
        }
    )


def may_read(principal: Principal | None, questionnaire: Questionnaire) -> bool:
    published = questionnaire.status == Status.published
    if principal is None:
        return published and questionnaire.access == Access.public
    if principal.kind == "collector":
        return (
            questionnaire.id in principal.questionnaire_ids and questionnaire.status != Status.draft
        )
    if principal.has_any(*READ_ALL_ROLES):
        return True
    return questionnaire.status != Status.draft


async def get_readable(
    session: AsyncSession, principal: Principal | None, questionnaire_id: uuid.UUID
) -> Questionnaire:
    """The questionnaire if this caller may read it: 401 for anonymous, else 404 (no leaks)."""
    questionnaire = await session.get(Questionnaire, questionnaire_id)
    if questionnaire is None or not may_read(principal, questionnaire):
        if principal is None:
            raise Unauthorized()
        raise NotFound("No such questionnaire")
    return questionnaire


async def get_for_write(session: AsyncSession, questionnaire_id: uuid.UUID) -> Questionnaire:
    """The questionnaire, its row locked until the transaction ends (PostgreSQL; SQLite writes
    one transaction at a time): a PATCH, publish, close or delete that overlaps another then
    sees its outcome, where it would otherwise check a state about to change (a PATCH after a
    concurrent publish met the frozen-questionnaire trigger: a 500)."""
    questionnaire = await session.get(Questionnaire, questionnaire_id, with_for_update=True)
    if questionnaire is None:
        raise NotFound("No such questionnaire")
    return questionnaire


async def list_questionnaires(
    session: AsyncSession,
    principal: Principal,
    *,
    status: Status | None,
    slug: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Questionnaire], str | None]:
    if principal.kind == "collector":
        raise Forbidden("Collector tokens may only read their own questionnaires by id")
    statement = select(Questionnaire)
    if not principal.has_any(*READ_ALL_ROLES):
        statement = statement.where(col(Questionnaire.status) != Status.draft)
    if status is not None:
        statement = statement.where(col(Questionnaire.status) == status)
    if slug is not None:
        statement = statement.where(col(Questionnaire.slug) == slug)
    return await paginate(
        session,
        statement,
        created=col(Questionnaire.created_at),
        row_id=col(Questionnaire.id),
        limit=limit,
        cursor=cursor,
    )


# --- writing ----------------------------------------------------------------------------------


def _dumped(model: QuestionnaireCreate | QuestionnaireUpdate) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def _refuse_all(checked: Checked[Any], definition: Callable[[Any], Mapping[str, Any]]) -> None:
    """When the schema refused parts of a body: Invalid listing those and the problems the
    rules find in the rest (`definition`: the whole definition a checked model makes)."""
    if not checked.errors:
        return
    errors = [
        {"loc": ["body", *e["loc"]], "msg": str(e["msg"]), "type": str(e["type"])}
        for e in checked.errors
    ]
    if checked.model is not None:
        found = rule_problems(checked, definition(checked.model))
        errors += [{**e, "loc": ["body", *e["loc"]]} for e in found]
    raise Invalid("The questionnaire definition does not match the schema", errors=errors)


async def create_from(session: AsyncSession, actor: audit.Actor, body: Any) -> Questionnaire:
    """create() from a JSON body: every problem of its schema and its rules in one 422."""
    checked = check_schema(body, QuestionnaireCreate, "en")
    _refuse_all(checked, _dumped)
    assert checked.model is not None  # noqa: S101 - refused above otherwise
    return await create(session, actor, checked.model)


async def create(
    session: AsyncSession, actor: audit.Actor, data: QuestionnaireCreate
) -> Questionnaire:
    definition = data.model_dump(mode="json", by_alias=True, exclude_none=True)
    check_definition(definition)
    rows = (
        await session.exec(
            select(Questionnaire.version, Questionnaire.status).where(
                col(Questionnaire.slug) == data.slug
            )
        )
    ).all()
    if any(status == Status.draft for _, status in rows):
        raise Conflict(f"A draft of '{data.slug}' exists; edit or delete it first")
    # A deleted draft's number is free again, so the next version is one past the highest left.
    version = max((version for version, _ in rows), default=0) + 1
    questionnaire = Questionnaire(
        slug=data.slug,
        version=version,
        access=data.access,
        default_language=data.default_language,
        definition={k: definition.get(k) for k in DEFINITION_FIELDS},
        created_by=audit.user_id(actor),
    )
    session.add(questionnaire)
    audit.record(
        session,
        actor,
        "questionnaire.create",
        "questionnaire",
        questionnaire.id,
        slug=data.slug,
        version=version,
    )
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"Another version of '{data.slug}' was created at the same time") from None
    return questionnaire


async def update(
    session: AsyncSession,
    actor: Principal,
    questionnaire_id: uuid.UUID,
    body: QuestionnaireUpdate | Any,
) -> Questionnaire:
    """A draft's fields replaced by those of `body` (a JSON body, or a checked update); every
    problem of the body's schema and of the definition it makes in one 422."""
    questionnaire = await get_for_write(session, questionnaire_id)
    if questionnaire.status != Status.draft:
        raise Conflict(f"The questionnaire is {questionnaire.status}; only drafts change")

    def merge(data: QuestionnaireUpdate) -> dict[str, Any]:
        changes = data.model_dump(mode="json", by_alias=True, exclude_unset=True)
        return {
            **questionnaire.definition,
            "default_language": questionnaire.default_language,
            "access": questionnaire.access,
            **{k: v for k, v in changes.items() if v is not None or k in CLEARABLE_FIELDS},
        }

    if isinstance(body, QuestionnaireUpdate):
        data = body
    else:
        checked = check_schema(body, QuestionnaireUpdate, questionnaire.default_language)
        _refuse_all(checked, merge)
        assert checked.model is not None  # noqa: S101 - refused above otherwise
        data = checked.model
    changes = data.model_dump(mode="json", by_alias=True, exclude_unset=True)
    merged = merge(data)
    check_definition(merged)
    questionnaire.definition = {k: merged.get(k) for k in DEFINITION_FIELDS}
    questionnaire.default_language = merged["default_language"]
    questionnaire.access = merged["access"]
    questionnaire.updated_at = utcnow()
    audit.record(
        session,
        actor,
        "questionnaire.update",
        "questionnaire",
        questionnaire.id,
        fields=sorted(changes),
    )
    await session.flush()
    return questionnaire


async def delete(session: AsyncSession, actor: Principal, questionnaire_id: uuid.UUID) -> None:
    questionnaire = await get_for_write(session, questionnaire_id)
    if questionnaire.status != Status.draft:
        raise Conflict(f"The questionnaire is {questionnaire.status}; only drafts are deleted")
    await session.delete(questionnaire)
    audit.record(
        session,
        actor,
        "questionnaire.delete",
        "questionnaire",
        questionnaire.id,
        slug=questionnaire.slug,
        version=questionnaire.version,
    )
    await session.flush()


async def change_status(
    session: AsyncSession, actor: audit.Actor, questionnaire_id: uuid.UUID, target: Status
) -> Questionnaire:
    questionnaire = await get_for_write(session, questionnaire_id)
    allowed_from = {Status.published: Status.draft, Status.closed: Status.published}[target]
    if questionnaire.status != allowed_from:
        raise Conflict(
            f"Only a {allowed_from} questionnaire can be {target}; this one is "
            f"{questionnaire.status}"
        )
    now = utcnow()
    questionnaire.status = target
    questionnaire.updated_at = now
    if target == Status.published:
        questionnaire.published_at = now
        questionnaire.answer_layout = CURRENT_LAYOUT
        await create_answer_tables(session, _compile(questionnaire))
    else:
        questionnaire.closed_at = now
    action = "questionnaire.publish" if target == Status.published else "questionnaire.close"
    audit.record(session, actor, action, "questionnaire", questionnaire.id)
    await session.flush()
    return questionnaire


async def create_answer_tables(session: AsyncSession, questionnaire: CompiledQuestionnaire) -> None:
    """Make a version's answer tables (services/answers/: the layout), in the transaction
    that publishes it: both databases run DDL transactionally, so a failed publish leaves none."""
    tables = [
        answer_table(page.table, page.columns, page.repeat is not None)
        for page in questionnaire.pages
    ]
    connection = await session.connection()
    for table in tables:
        await connection.run_sync(table.create)


async def count_versions(session: AsyncSession, slug: str) -> int:
    statement = select(func.count()).where(col(Questionnaire.slug) == slug)
    return (await session.exec(statement)).one()


# --- compiled definitions for submissions -----------------------------------------------------


class CompiledQuestionnaires:
    """Published questionnaires compiled once, by id; one per app (app.state), reached by the
    sessions of its database through their `info` (db.create_sessionmaker). Published
    definitions never change, so a compiled one stays valid; status is re-checked when a
    response is stored, so a close is seen at once."""

    def __init__(self, limit: int = 512) -> None:
        self._entries: OrderedDict[uuid.UUID, CompiledQuestionnaire] = OrderedDict()
        self._limit = limit

    def get(self, questionnaire_id: uuid.UUID) -> CompiledQuestionnaire | None:
        """A published questionnaire compiled earlier, without touching the database."""
        cached = self._entries.get(questionnaire_id)
        if cached is not None:
            self._entries.move_to_end(questionnaire_id)
        return cached

    def put(self, questionnaire_id: uuid.UUID, compiled: CompiledQuestionnaire) -> None:
        self._entries[questionnaire_id] = compiled
        if len(self._entries) > self._limit:
            self._entries.popitem(last=False)


# The key of a session's CompiledQuestionnaires in Session.info.
COMPILED_INFO_KEY = "compiled_questionnaires"


async def compiled(session: AsyncSession, questionnaire_id: uuid.UUID) -> CompiledQuestionnaire:
    """The questionnaire compiled, from the session's cache when it has one (a session of the
    CLI or a migration has none and compiles afresh)."""
    cache: CompiledQuestionnaires | None = session.info.get(COMPILED_INFO_KEY)
    cached = cache.get(questionnaire_id) if cache is not None else None
    if cached is not None:
        return cached
    questionnaire = await session.get(Questionnaire, questionnaire_id)
    if questionnaire is None:
        raise NotFound("No such questionnaire")
    result = _compile(questionnaire)
    if cache is not None and questionnaire.status == Status.published:
        cache.put(questionnaire_id, result)
    return result


def _compile(questionnaire: Questionnaire) -> CompiledQuestionnaire:
    return compile_questionnaire(
        id=questionnaire.id,
        version=questionnaire.version,
        status=questionnaire.status,
        access=questionnaire.access,
        definition=questionnaire.definition,
        layout=questionnaire.answer_layout,
        language=questionnaire.default_language,
    )
