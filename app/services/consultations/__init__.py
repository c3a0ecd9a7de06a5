"""Consultations: schedules (schedules.py), observers' reports (observations.py) and the
calendar feeds' iCalendar (ical.py); the names routers use are gathered here."""

from app.services.consultations.ical import build_calendar, calendar, localized, pick_language
from app.services.consultations.observations import (
    FUTURE_TOLERANCE,
    get_observation,
    list_observations,
    observation_hash,
    submit_observation,
)
from app.services.consultations.schedules import (
    CONSULTATION_COLUMNS,
    ConsultationFilters,
    create_consultation,
    get_consultation,
    import_consultations,
    list_consultations,
    update_consultation,
)

__all__ = [
    "CONSULTATION_COLUMNS",
    "FUTURE_TOLERANCE",
    "ConsultationFilters",
    "build_calendar",
    "calendar",
    "create_consultation",
    "get_consultation",
    "get_observation",
    "import_consultations",
    "list_consultations",
    "list_observations",
    "localized",
    "observation_hash",
    "pick_language",
    "submit_observation",
    "update_consultation",
]
