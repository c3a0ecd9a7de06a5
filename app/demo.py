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
from app.models.consultations import (
    Consultation,
    ConsultationCreate,
    Observation,
    ObservationCreate,
)
from app.models.elections import Candidate, CandidateCreate, Election, ElectionCreate
from app.models.questionnaires import Questionnaire, QuestionnaireCreate, Status
from app.models.responses import ResponseIn
from app.models.territories import i18n
from app.services import audit
from app.services import questionnaires as questionnaire_service
from app.services.consultations import observation_hash
from app.services.responses import build_row
from app.services.responses.session_store import insert_rows
from app.services.territories import read_territory_csv, upsert_territories

DATA_DIR = Path(__file__).resolve().parent / "data"


async def load_demo_data(session: AsyncSession) -> dict[str, int]:
    """Add what is missing of the demo data set; returns how many rows of each kind were added."""
    territories = await upsert_territories(
        session, read_territory_csv(DATA_DIR / "territories.csv")
    )
    elections = await load_demo_elections(session, DATA_DIR / "demo_election.json")
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


# --- elections, candidates, consultations and observations -----------------------------------

# Demo rows get ids derived from their keys, so loading the file again finds them all present.
ELECTIONS_NAMESPACE = uuid.UUID("3b9c5a52-8f0e-4d6b-9a57-1e2f3c4d5e6f")


def _demo_id(kind: str, key: str) -> uuid.UUID:
    return uuid.uuid5(ELECTIONS_NAMESPACE, f"{kind}:{key}")


async def load_demo_elections(session: AsyncSession, path: Path) -> dict[str, int]:
    """Add the elections, candidates, consultations and observations of `path` not yet present.

    Rows are validated with the API's own schemas; consultations are dated as announced, so
    their observations are not older than they are.
    """
    added = {"elections": 0, "candidates": 0, "consultations": 0, "observations": 0}
    for item in json.loads(path.read_text(encoding="utf-8"))["elections"]:
        election = ElectionCreate.model_validate(
            {k: item[k] for k in ("title", "kind", "election_date", "territory_code")}
        )
        election_id = _demo_id("election", item["key"])
        if await session.get(Election, election_id) is None:
            session.add(
                Election(
                    id=election_id,
                    title=i18n(election.title),
                    kind=election.kind.value,
                    election_date=election.election_date,
                    territory_code=election.territory_code,
                )
            )
            added["elections"] += 1
        await session.flush()
        for raw in item["candidates"]:
            added["candidates"] += await _demo_candidate(session, election_id, raw)
        await session.flush()
        for raw in item["consultations"]:
            consultation = await _demo_consultation(session, election_id, raw)
            added["consultations"] += int(consultation is not None)
            for observation in raw["observations"]:
                added["observations"] += await _demo_observation(
                    session, _demo_id("consultation", raw["key"]), observation
                )
    await session.flush()
    return added


async def _demo_candidate(session: AsyncSession, election_id: uuid.UUID, raw: Any) -> int:
    candidate_id = _demo_id("candidate", raw["key"])
    if await session.get(Candidate, candidate_id) is not None:
        return 0
    data = CandidateCreate.model_validate({k: v for k, v in raw.items() if k != "key"})
    session.add(
        Candidate(
            id=candidate_id,
            election_id=election_id,
            full_name=data.full_name,
            gender=data.gender.value,
            party=data.party,
            social_status=data.social_status,
            territory_code=data.territory_code,
            status=data.status.value,
        )
    )
    return 1


async def _demo_consultation(
    session: AsyncSession, election_id: uuid.UUID, raw: Any
) -> Consultation | None:
    consultation_id = _demo_id("consultation", raw["key"])
    if await session.get(Consultation, consultation_id) is not None:
        return None
    fields = ("territory_code", "host", "starts_at", "ends_at", "location", "announced_at")
    data = ConsultationCreate.model_validate(
        {name: raw[name] for name in fields}
        | {
            "agenda": raw["agenda"],
            "election_id": election_id,
            "candidate_ids": [_demo_id("candidate", key) for key in raw["candidates"]],
        }
    )
    observed = sorted(raw["observations"], key=lambda o: datetime.fromisoformat(o["observed_at"]))
    history = [
        {key: datetime.fromisoformat(value).astimezone(UTC).isoformat() for key, value in e.items()}
        for e in raw.get("history", [])
    ]
    created = data.announced_at or data.starts_at
    changes = [datetime.fromisoformat(e["changed_at"]) for e in history]
    changes += [datetime.fromisoformat(o["observed_at"]) for o in observed]
    consultation = Consultation(
        id=consultation_id,
        election_id=election_id,
        territory_code=data.territory_code,
        host=data.host,
        starts_at=data.starts_at,
        ends_at=data.ends_at,
        location=data.location,
        agenda=i18n(data.agenda) if data.agenda else None,
        candidate_ids=[str(candidate_id) for candidate_id in data.candidate_ids],
        announced_at=data.announced_at,
        status=observed[-1]["outcome"] if observed else raw.get("status", "scheduled"),
        history=history,
        sequence=len(history),
        created_at=created,
        updated_at=max([created, *changes]),
    )
    session.add(consultation)
    await session.flush()
    return consultation


async def _demo_observation(session: AsyncSession, consultation_id: uuid.UUID, raw: Any) -> int:
    observation_id = _demo_id("observation", raw["key"])
    if await session.get(Observation, observation_id) is not None:
        return 0
    data = ObservationCreate.model_validate({k: v for k, v in raw.items() if k != "key"})
    session.add(
        Observation(
            id=observation_id,
            consultation_id=consultation_id,
            observed_at=data.observed_at,
            outcome=data.outcome.value,
            attendees_total=data.attendees_total,
            attendees_women=data.attendees_women,
            candidates_presented=data.candidates_presented,
            residents_spoke=data.residents_spoke,
            notes=data.notes,
            location=data.location.model_dump() if data.location else None,
            content_hash=observation_hash(consultation_id, data),
            received_at=data.observed_at,
        )
    )
    return 1
