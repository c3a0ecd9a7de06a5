"""`kenes demo-data`: a realistic data set to explore; loading it twice changes nothing."""

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import col
from sqlmodel import select as model_select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db import utcnow
from app.models.questionnaires import Questionnaire, QuestionnaireCreate, Status
from app.models.responses import ResponseIn
from app.services import audit, consultations
from app.services import questionnaires as questionnaire_service
from app.services.responses import build_row
from app.services.responses.session_store import insert_rows
from app.services.territories import read_territory_csv, upsert_territories

DATA_DIR = Path(__file__).resolve().parent / "data"


async def load_demo_data(session: AsyncSession) -> dict[str, int]:
    """Add what is missing of the demo data set; returns how many rows of each kind were added."""
    territories = await upsert_territories(
        session, read_territory_csv(DATA_DIR / "territories.csv")
    )
    elections = await consultations.load_demo(session, DATA_DIR / "demo_election.json")
    survey = await load_demo_survey(session, DATA_DIR / "almaty_participation.json")
    return {"territories": territories, **elections, **survey}


DEMO_RESPONSES = 400
_DEMO_NAMESPACE = uuid.UUID("6a0d3c5e-4f1b-4c7e-9a55-2d1e0f7b8c01")


async def load_demo_survey(session: AsyncSession, definition_path: Path) -> dict[str, int]:
    """The Almaty survey, published, with synthetic responses; ids are derived, so reruns add
    nothing. The answers are random (seeded), not real survey results."""
    definition = json.loads(definition_path.read_text(encoding="utf-8"))
    existing = (
        await session.exec(
            model_select(Questionnaire).where(col(Questionnaire.slug) == definition["slug"])
        )
    ).first()
    added_questionnaires = 0
    if existing is None:
        actor = audit.SYSTEM
        created = await questionnaire_service.create(
            session, actor, QuestionnaireCreate.model_validate(definition)
        )
        existing = await questionnaire_service.change_status(
            session, actor, created.id, Status.published
        )
        added_questionnaires = 1
    questionnaire = await questionnaire_service.compiled(session, existing.id)
    rows = [
        build_row(questionnaire, None, item, item.submitted_at or utcnow())
        for item in _demo_items(existing.id)
    ]
    added = len(await insert_rows(session, questionnaire, rows))
    return {"questionnaires": added_questionnaires, "responses": added}


SOURCES = ["tv", "social", "akimat_site", "press", "people", "ngos"]


def _demo_items(questionnaire_id: uuid.UUID) -> list[ResponseIn]:
    rng = random.Random(2013)  # noqa: S311 - demo data, not security
    places = ["750000000"] * 6 + ["192010001", "192210001", "192020001", "710000000"]
    groups = ["student"] * 4 + ["ngo"] * 3 + ["sme"] * 3 + [
        "lawyer", "political_scientist", "organisation_expert",
    ]  # fmt: skip
    start = datetime(2013, 11, 1, 9, tzinfo=UTC)
    items = []
    for n in range(DEMO_RESPONSES):
        group = rng.choice(groups)
        expert = group in ("lawyer", "political_scientist", "organisation_expert")
        aware = rng.choices(["yes", "partly", "no"], [5, 3, 2] if expert else [2, 4, 4])[0]
        participated = rng.random() < (0.45 if expert else 0.2)
        answers: dict[str, Any] = {
            "aware": aware,
            "participated": participated,
            "trust_akimat": rng.choices([1, 2, 3, 4, 5], [3, 4, 3, 2, 1])[0],
            "info_sources": rng.sample(SOURCES, rng.randint(1, 3)),
        }
        if aware != "no":
            answers["channels_known"] = rng.sample(
                ["hearings", "reception", "maslikhat", "petitions", "public_councils"],
                rng.randint(1, 3),
            )
        if participated:
            answers["times_participated"] = rng.randint(1, 6)
            if "hearings" in answers.get("channels_known", []):
                day = start - timedelta(days=rng.randint(30, 700))
                answers["last_hearing"] = day.date().isoformat()
        if rng.random() < 0.8:
            answers["influence"] = rng.randint(1, 5)
        if rng.random() < 0.9:
            answers["information_access"] = rng.choice(
                ["easy", "difficult", "very_difficult", "never_tried"]
            )
        if rng.random() < 0.15:
            answers["suggestions"] = rng.choice(
                [
                    "Публиковать проекты решений заранее",
                    "Шешімдерді алдын ала жариялау керек",
                    "Hold hearings in the evening",
                    "Больше онлайн-обсуждений",
                ]
            )
        items.append(
            ResponseIn(
                id=uuid.uuid5(_DEMO_NAMESPACE, f"{questionnaire_id}/{n}"),
                respondent={
                    "group": group,
                    "gender": rng.choices(["female", "male", "undisclosed"], [52, 45, 3])[0],
                    "age_band": rng.choice(["18-24", "25-34", "35-44", "45-54", "55-64"])
                    if group != "student"
                    else rng.choice(["under_18", "18-24", "18-24", "25-34"]),
                    "territory_code": rng.choice(places),
                },
                answers=answers,
                language=rng.choices(["ru", "kk", "en"], [6, 4, 1])[0],
                channel=rng.choices(["interview", "paper", "web", "mobile"], [4, 3, 2, 1])[0],
                submitted_at=start + timedelta(minutes=rng.randint(0, 60 * 24 * 45)),
            )
        )
    return items
