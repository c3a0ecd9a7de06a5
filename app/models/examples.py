"""Examples shown in the OpenAPI document, kept consistent with one another.

The response examples answer the questionnaire example; tests/test_openapi.py creates that
questionnaire and submits them, so the examples stay true as the rules change.
"""

from typing import Any

_QUESTIONNAIRE_ID = "5f0c2a3e-8d47-4c1b-9a6e-2f3d4b5c6d7e"
_RESPONSE_ID = "0b6f3c1e-2a4d-4e8f-9c7b-1a2b3c4d5e6f"


def _i18n(kk: str, ru: str, en: str) -> dict[str, str]:
    return {"kk": kk, "ru": ru, "en": en}


QUESTIONNAIRE_CREATE: dict[str, Any] = {
    "slug": "district-budget-2027",
    "title": _i18n("Аудан бюджеті 2027", "Бюджет района 2027", "District budget 2027"),
    "default_language": "ru",
    "access": "token",
    "respondent_groups": [
        {"key": "resident", "category": "citizen", "label": _i18n("Тұрғын", "Житель", "Resident")}
    ],
    "questions": [
        {
            "key": "heard_of_hearings",
            "type": "single_choice",
            "label": _i18n(
                "Бюджет тыңдаулары туралы естідіңіз бе?",
                "Слышали ли вы о бюджетных слушаниях?",
                "Have you heard of the budget hearings?",
            ),
            "required": True,
            "options": [
                {"value": "yes", "label": _i18n("Иә", "Да", "Yes")},
                {"value": "no", "label": _i18n("Жоқ", "Нет", "No")},
            ],
        },
        {
            "key": "priorities",
            "type": "multiple_choice",
            "label": _i18n("Басымдықтар", "Приоритеты", "Priorities"),
            "max_selected": 2,
            "options": [
                {"value": "roads", "label": _i18n("Жолдар", "Дороги", "Roads")},
                {"value": "schools", "label": _i18n("Мектептер", "Школы", "Schools")},
                {"value": "water", "label": _i18n("Су", "Вода", "Water")},
            ],
        },
        {
            "key": "trust",
            "type": "scale",
            "label": _i18n("Әкімдікке сенім", "Доверие акимату", "Trust in the akimat"),
            "min": 1,
            "max": 5,
        },
    ],
}

RESPONSE_IN: dict[str, Any] = {
    "id": _RESPONSE_ID,
    "respondent": {
        "group": "resident",
        "gender": "female",
        "age_band": "25-34",
        "territory_code": "751110000",
    },
    "answers": {"heard_of_hearings": "yes", "priorities": ["roads", "water"], "trust": 4},
    "language": "kk",
    "channel": "mobile",
    "started_at": "2026-12-01T09:58:12+05:00",
    "submitted_at": "2026-12-01T10:03:40+05:00",
}

RESPONSE_READ: dict[str, Any] = {
    **RESPONSE_IN,
    "questionnaire_id": _QUESTIONNAIRE_ID,
    "questionnaire_version": 1,
    "respondent": {**RESPONSE_IN["respondent"], "category": "citizen"},
    "started_at": "2026-12-01T04:58:12Z",
    "submitted_at": "2026-12-01T05:03:40Z",
    "received_at": "2026-12-01T05:03:41.207Z",
    "instance_name": None,
}

BATCH_IN: dict[str, Any] = {
    "responses": [
        RESPONSE_IN,
        {**RESPONSE_IN, "id": "7d9e8f10-1a2b-4c3d-8e5f-6a7b8c9d0e1f", "answers": {"trust": 9}},
    ]
}

BATCH_OUT: dict[str, Any] = {
    "results": [
        {"index": 0, "id": _RESPONSE_ID, "status": "created", "errors": None},
        {
            "index": 1,
            "id": "7d9e8f10-1a2b-4c3d-8e5f-6a7b8c9d0e1f",
            "status": "invalid",
            "errors": [
                {
                    "loc": ["body", "answers", "heard_of_hearings"],
                    "msg": "an answer is required",
                    "type": "missing",
                },
                {
                    "loc": ["body", "answers", "trust"],
                    "msg": "must be at most 5",
                    "type": "invalid_answer",
                },
            ],
        },
    ]
}

TOKEN_READ: dict[str, Any] = {
    "access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIuLi4ifQ.c2lnbmF0dXJl",
    "token_type": "bearer",
    "expires_in": 3600,
}

PROBLEM: dict[str, Any] = {
    "type": "urn:kenes:problem:validation-error",
    "title": "Unprocessable Entity",
    "status": 422,
    "detail": "The request does not match the expected schema",
    "errors": [
        {"loc": ["body", "answers", "trust"], "msg": "must be at most 5", "type": "invalid_answer"}
    ],
}

CONSULTATION_CREATE: dict[str, Any] = {
    "territory_code": "195620100",
    "host": "Akim of Talgar district",
    "starts_at": "2026-11-20T11:00:00+05:00",
    "ends_at": "2026-11-20T13:00:00+05:00",
    "location": "Talgar, House of Culture, Lenin st. 42",
    "agenda": _i18n("Кандидаттармен кездесу", "Встреча с кандидатами", "Meeting the candidates"),
    "candidate_ids": [],
    "announced_at": "2026-11-10T09:00:00+05:00",
}

OBSERVATION_CREATE: dict[str, Any] = {
    "id": "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f",
    "observed_at": "2026-11-20T13:10:00+05:00",
    "outcome": "held",
    "attendees_total": 64,
    "attendees_women": 29,
    "candidates_presented": True,
    "residents_spoke": True,
    "notes": "Two candidates presented; questions about the water supply.",
    "location": {"lat": 43.3041, "lon": 77.2397},
}


def examples(*values: dict[str, Any]) -> dict[str, Any]:
    """For `json_schema_extra`: the examples of a schema."""
    return {"examples": list(values)}
