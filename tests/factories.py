"""Small async factories that write through the app's own services."""

import json
import uuid
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from app.db import session_scope
from app.models.auth import Role, User, UserCreate
from app.models.questionnaires import Questionnaire, QuestionnaireCreate, Status
from app.services import audit
from app.services import questionnaires as questionnaire_service
from app.services.auth import create_user as create_user_service
from app.services.auth import user_principal

ROOT_DIR = Path(__file__).resolve().parent.parent

DEFAULT_PASSWORD = "correct horse battery"


async def create_user(
    app: FastAPI,
    *roles: Role | str,
    email: str | None = None,
    password: str = DEFAULT_PASSWORD,
    full_name: str = "Test User",
) -> User:
    data = UserCreate(
        email=email or f"{uuid.uuid4().hex[:12]}@example.org",
        password=password,
        full_name=full_name,
        roles=[Role(role) for role in roles] or [Role.analyst],
    )
    async for session in session_scope(app.state.sessionmaker):
        user = await create_user_service(session, audit.SYSTEM, data)
    return user


def bearer(app: FastAPI, user: User) -> dict[str, str]:
    """Headers with a real token from the app's token service (no password round trip)."""
    return {"Authorization": f"Bearer {app.state.tokens.issue(user.id)}"}


async def headers_for(app: FastAPI, *roles: Role | str) -> dict[str, str]:
    return bearer(app, await create_user(app, *roles))


ALMATY = ROOT_DIR / "app" / "data" / "almaty_participation.json"


def almaty_definition(**overrides: Any) -> dict[str, Any]:
    """The Almaty participation survey (trilingual, 10 questions), as a fresh dict."""
    definition: dict[str, Any] = json.loads(ALMATY.read_text(encoding="utf-8"))
    definition.update(overrides)
    return definition


def almaty_answers(**changes: Any) -> dict[str, Any]:
    """A complete, valid set of answers to the Almaty survey, with `changes` applied."""
    return {
        "aware": "yes",
        "channels_known": ["hearings", "petitions"],
        "participated": True,
        "times_participated": 2,
        "info_sources": ["social", "ngos"],
        "trust_akimat": 3,
        "influence": 2,
        "information_access": "difficult",
        "last_hearing": "2025-05-14",
        "suggestions": "Больше онлайн-слушаний",
        **changes,
    }


async def create_questionnaire(
    app: FastAPI,
    *,
    publish: bool = False,
    definition: dict[str, Any] | None = None,
    **overrides: Any,
) -> Questionnaire:
    """A questionnaire made through the service (a fresh slug unless one is given)."""
    data = definition or almaty_definition(slug=f"survey-{uuid.uuid4().hex[:8]}")
    data = {**data, **overrides}
    coordinator = user_principal(await create_user(app, Role.coordinator))
    async for session in session_scope(app.state.sessionmaker):
        questionnaire = await questionnaire_service.create(
            session, coordinator, QuestionnaireCreate.model_validate(data)
        )
        if publish:
            questionnaire = await questionnaire_service.change_status(
                session, coordinator, questionnaire.id, Status.published
            )
    return questionnaire


def household_definition(**overrides: Any) -> dict[str, Any]:
    """A household visit whose repeats share keys, as real XLSForms do: `name` and `age` of
    each member (repeat `members`) and of each visitor (repeat `visitors`, nested in
    `visits`); `${name}` and `${age}` inside a repeat mean its own, `max(${age})` in a visit
    the ages of its visitors."""
    definition: dict[str, Any] = {
        "slug": f"household-{uuid.uuid4().hex[:8]}",
        "title": {"en": "Household visit", "ru": "Посещение домохозяйства"},
        "default_language": "en",
        "respondent_groups": [{"key": "all", "category": "citizen", "label": {"en": "All"}}],
        "questions": [
            {"key": "village", "type": "text", "label": {"en": "Village"}},
            {
                "key": "members",
                "type": "repeat",
                "label": {"en": "Household members"},
                "questions": [
                    {"key": "name", "type": "text", "label": {"en": "Name"}, "required": True},
                    {"key": "age", "type": "integer", "label": {"en": "Age of ${name}"},
                     "min": 0, "max": 120},
                    {"key": "votes", "type": "boolean", "label": {"en": "Does ${name} vote?"},
                     "relevant": "${age} >= 18"},
                ],
            },
            {
                "key": "visits",
                "type": "repeat",
                "label": {"en": "Visits"},
                "questions": [
                    {"key": "day", "type": "date", "label": {"en": "Day"}},
                    {
                        "key": "visitors",
                        "type": "repeat",
                        "label": {"en": "Visitors"},
                        "questions": [
                            {"key": "name", "type": "text", "label": {"en": "Visitor"}},
                            {"key": "age", "type": "integer", "label": {"en": "Age of ${name}"},
                             "constraint": ". < 130"},
                        ],
                    },
                    {"key": "oldest", "type": "calculate", "calculation": "max(${age})"},
                ],
            },
            {"key": "members_n", "type": "calculate", "calculation": "count(${members})"},
        ],
    }  # fmt: skip
    definition.update(overrides)
    return definition
