"""Questionnaire definitions: the rules of a definition, versions, states and who may read them."""

import re
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db import utcnow
from app.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from app.models.auth import Principal, Role
from app.models.questionnaires import (
    KEY_PATTERN,
    MAX_MULTIPLE_OPTIONS,
    MAX_NESTING,
    MAX_OPTIONS,
    MAX_QUESTIONS,
    Access,
    Questionnaire,
    QuestionnaireCreate,
    QuestionnaireRead,
    QuestionnaireUpdate,
    Status,
)
from app.models.responses import answer_table
from app.pagination import paginate
from app.services import audit, conditions
from app.services.answers import CURRENT_LAYOUT, CompiledQuestionnaire, compile_questionnaire
from app.services.expressions.forms import (
    compile_definition,
    instance_name_problem,
    option_properties,
    options_of,
)

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
CONTAINER_TYPES = ("group", "repeat")
CHOICE_TYPES = ("single_choice", "multiple_choice", "rank")
# Options a question may have, by type (a choice list may hold more, for other questions).
OPTION_LIMITS = {"single_choice": MAX_OPTIONS, "multiple_choice": MAX_MULTIPLE_OPTIONS}
OPTION_LIMITS["rank"] = MAX_MULTIPLE_OPTIONS
READ_ALL_ROLES = (Role.coordinator, Role.analyst)
WRITE_ROLES = (Role.coordinator,)

Loc = list[str | int]
KEY = re.compile(KEY_PATTERN)


# --- the rules of a definition ----------------------------------------------------------------


def check_definition(data: Mapping[str, Any], prefix: Loc | None = None) -> None:
    """Raise Invalid naming every place where a (schema-valid) definition breaks a rule."""
    errors = [
        # `prefix is None`, not falsy: an empty prefix ([], the XLSForm import's) is a prefix
        {"loc": [*(["body"] if prefix is None else prefix), *loc], "msg": msg, "type": "definition"}
        for loc, msg in _definition_problems(data)
    ]
    if errors:
        raise Invalid("The questionnaire definition breaks a rule", errors=errors)


def _definition_problems(data: Mapping[str, Any]) -> Iterator[tuple[Loc, str]]:
    default = data["default_language"]
    for place, text in _texts(data):
        if default not in text:
            yield place, f"must include the default language '{default}'"

    yield from _duplicates([g["key"] for g in data["respondent_groups"]], ["respondent_groups"])
    choice_lists = data.get("choice_lists") or {}
    for name, options in choice_lists.items():
        yield from _duplicates([o["value"] for o in options], ["choice_lists", name], key="value")
        for index, option in enumerate(options):
            for prop in option_properties(option):
                if not KEY.match(prop):
                    yield (
                        ["choice_lists", name, index, prop],
                        "a property's name is like a question key (letters, digits, _ . -)",
                    )
    yield from settings_problems(data)
    entries = list(walk(data["questions"]))
    yield from _duplicates(
        [q["key"] for _, q, _ in entries], [], located=[loc for loc, _, _ in entries]
    )
    if len(entries) > MAX_QUESTIONS:
        yield ["questions"], f"at most {MAX_QUESTIONS} questions, groups and repeats in all"

    earlier: dict[str, Mapping[str, Any]] = {}
    condition_cost = 0
    for loc, question, depth in entries:
        if depth > MAX_NESTING:
            yield loc, f"groups and repeats nest at most {MAX_NESTING} deep"
        yield from _question_problems(question, loc, choice_lists)
        if isinstance(question.get("relevant"), Mapping):
            condition_cost += conditions.cost(question["relevant"])
            if condition_cost > conditions.MAX_DEFINITION_COST:
                yield (
                    [*loc, "relevant"],
                    f"the conditions of one questionnaire may hold at most "
                    f"{conditions.MAX_DEFINITION_COST} comparisons and listed values in all",
                )
                break
            yield from conditions.problems(question["relevant"], earlier, [*loc, "relevant"])
        if question["type"] not in CONTAINER_TYPES:
            earlier[question["key"]] = question
    yield from compile_definition(data["questions"], default, choice_lists=choice_lists).problems


def walk(
    questions: list[Mapping[str, Any]], loc: Loc | None = None, depth: int = 0
) -> Iterator[tuple[Loc, Mapping[str, Any], int]]:
    """Every question, group and repeat in order, with its place and how deep it sits."""
    for index, question in enumerate(questions):
        place: Loc = [*(loc or ["questions"]), index]
        yield place, question, depth
        if question["type"] in CONTAINER_TYPES:
            yield from walk(question["questions"], [*place, "questions"], depth + 1)


def _question_problems(
    question: Mapping[str, Any], loc: Loc, choice_lists: Mapping[str, Any]
) -> Iterator[tuple[Loc, str]]:
    qtype = question["type"]
    options = options_of(question, choice_lists)
    yield from _duplicates(
        [o["value"] for o in question.get("options") or []], [*loc, "options"], key="value"
    )
    if qtype in CHOICE_TYPES:
        yield from _choice_problems(question, loc, choice_lists)
    low, high = question.get("min"), question.get("max")
    if qtype == "multiple_choice":
        least, most = question.get("min_selected"), question.get("max_selected")
        if least is not None and least > len(options):
            yield [*loc, "min_selected"], "more than there are options"
        if most is not None and most > len(options):
            yield [*loc, "max_selected"], "more than there are options"
        if least is not None and most is not None and least > most:
            yield [*loc, "min_selected"], "greater than max_selected"
    elif qtype in ("integer", "decimal") and low is not None and high is not None and low > high:
        yield [*loc, "min"], "greater than max"
    elif qtype == "scale" and low is not None and high is not None and not 0 < high - low <= 100:
        yield [*loc, "max"], "a scale runs from min to a larger max, at most 100 steps"
    elif qtype == "note" and question.get("required"):
        yield [*loc, "required"], "a note is never answered"
    elif qtype == "repeat":
        least, most = question.get("min_count"), question.get("max_count")
        if least is not None and most is not None and least > most:
            yield [*loc, "min_count"], "greater than max_count"


def _choice_problems(
    question: Mapping[str, Any], loc: Loc, choice_lists: Mapping[str, Any]
) -> Iterator[tuple[Loc, str]]:
    """Inline options or a known choice list, exactly one; at most the type's options."""
    name, inline = question.get("choices"), question.get("options")
    if name is not None and inline is not None:
        yield [*loc, "choices"], "either inline options or a choice list, not both"
    elif name is None and inline is None:
        yield [*loc, "options"], "a choice question needs options or a choice list (choices)"
    elif name is not None and name not in choice_lists:
        yield [*loc, "choices"], f"no choice list '{name}' in the questionnaire's choice_lists"
    elif name is not None:
        limit = OPTION_LIMITS[question["type"]]
        if len(choice_lists[name]) > limit:
            yield (
                [*loc, "choices"],
                f"a {question['type']} question has at most {limit} options; "
                f"'{name}' has {len(choice_lists[name])}",
            )


def settings_problems(data: Mapping[str, Any]) -> Iterator[tuple[Loc, str]]:
    settings = data.get("settings") or {}
    if settings.get("public_key") is not None:
        yield (
            ["settings", "public_key"],
            "encrypted forms (public_key) are not supported yet: remove it to collect plaintext",
        )
    if settings.get("instance_name") is not None:
        problem = instance_name_problem(settings["instance_name"], data["questions"])
        if problem:
            yield ["settings", "instance_name"], problem


def _duplicates(
    values: list[str], loc: Loc, key: str = "key", located: list[Loc] | None = None
) -> Iterator[tuple[Loc, str]]:
    seen: set[str] = set()
    for index, value in enumerate(values):
        if value in seen:
            place = located[index] if located is not None else [*loc, index]
            yield [*place, key], f"'{value}' is used twice"
        seen.add(value)


def _texts(data: Mapping[str, Any]) -> Iterator[tuple[Loc, Mapping[str, str]]]:
    yield ["title"], data["title"]
    if data.get("description"):
        yield ["description"], data["description"]
    for index, group in enumerate(data["respondent_groups"]):
        yield ["respondent_groups", index, "label"], group["label"]
    for loc, question, _ in walk(data["questions"]):
        if question.get("label"):
            yield [*loc, "label"], question["label"]
        for name in ("help", "constraint_message", "required_message", "guidance_hint"):
            if question.get(name):
                yield [*loc, name], question[name]
        for number, option in enumerate(question.get("options") or []):
            yield [*loc, "options", number, "label"], option["label"]
    for name, options in (data.get("choice_lists") or {}).items():
        for number, option in enumerate(options):
            yield ["choice_lists", name, number, "label"], option["label"]


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
    questionnaire = await session.get(Questionnaire, questionnaire_id)
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
    session: AsyncSession, actor: Principal, questionnaire_id: uuid.UUID, data: QuestionnaireUpdate
) -> Questionnaire:
    questionnaire = await get_for_write(session, questionnaire_id)
    if questionnaire.status != Status.draft:
        raise Conflict(f"The questionnaire is {questionnaire.status}; only drafts change")
    changes = data.model_dump(mode="json", by_alias=True, exclude_unset=True)
    merged = {
        **questionnaire.definition,
        "default_language": questionnaire.default_language,
        "access": questionnaire.access,
        **{k: v for k, v in changes.items() if v is not None or k in CLEARABLE_FIELDS},
    }
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
    """Make a version's answer tables (services/answers.py: the layout), in the transaction
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

_COMPILED_LIMIT = 512
# Published definitions never change, so a compiled one stays valid; status is re-checked when
# a response is stored, so a close is seen at once.
_compiled: OrderedDict[uuid.UUID, CompiledQuestionnaire] = OrderedDict()


def cached_compiled(questionnaire_id: uuid.UUID) -> CompiledQuestionnaire | None:
    """A published questionnaire compiled earlier, without touching the database."""
    cached = _compiled.get(questionnaire_id)
    if cached is not None:
        _compiled.move_to_end(questionnaire_id)
    return cached


async def compiled(session: AsyncSession, questionnaire_id: uuid.UUID) -> CompiledQuestionnaire:
    cached = cached_compiled(questionnaire_id)
    if cached is not None:
        return cached
    questionnaire = await session.get(Questionnaire, questionnaire_id)
    if questionnaire is None:
        raise NotFound("No such questionnaire")
    result = _compile(questionnaire)
    if questionnaire.status == Status.published:
        _compiled[questionnaire_id] = result
        if len(_compiled) > _COMPILED_LIMIT:
            _compiled.popitem(last=False)
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
