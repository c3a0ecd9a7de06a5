"""Consultations as an RFC 5545 calendar (the `.ics` feeds), in the reader's language."""

from collections.abc import Sequence
from typing import Any

from icalendar import Calendar, Event
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models.consultations import Consultation, ConsultationStatus
from app.models.territories import LANGUAGES
from app.services.consultations.schedules import ConsultationFilters
from app.services.territories import territories_by_code


async def calendar(session: AsyncSession, filters: ConsultationFilters, lang: str) -> bytes:
    """Every matching consultation, by start time, as iCalendar (a calendar is not paginated)."""
    statement = select(Consultation).where(*await filters.where(session))
    order = (col(Consultation.starts_at), col(Consultation.id))
    consultations = list((await session.exec(statement.order_by(*order))).all())
    places = await territories_by_code(session, {c.territory_code for c in consultations})
    names = {code: territory.name for code, territory in places.items()}
    return build_calendar(consultations, names, lang)


DEFAULT_LANGUAGE = "kk"
_SUMMARY = {
    "kk": "Тұрғындармен кездесу: {place}",
    "ru": "Встреча с жителями: {place}",
    "en": "Consultation with residents: {place}",
}
_HOST = {"kk": "Өткізуші", "ru": "Проводит", "en": "Host"}
_ICAL_STATUS = {
    ConsultationStatus.scheduled: "CONFIRMED",
    ConsultationStatus.held: "CONFIRMED",
    ConsultationStatus.postponed: "TENTATIVE",
    ConsultationStatus.not_held: "CANCELLED",
    ConsultationStatus.cancelled: "CANCELLED",
}


def pick_language(requested: str | None, accept_language: str | None) -> str:
    """`?lang=` if given, else the best supported language of Accept-Language, else Kazakh."""
    if requested:
        return requested
    ranked: list[tuple[float, int, str]] = []
    # Only the first few entries matter; a huge header costs no more than a short one.
    for position, part in enumerate((accept_language or "")[:1000].split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        primary = tag.split("-")[0].strip().lower()
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, position, primary))
    return min(ranked)[2] if ranked else DEFAULT_LANGUAGE


def localized(text: dict[str, Any] | None, lang: str) -> str | None:
    """The text in `lang`, else in the first language it has (kk, ru, en)."""
    if not text:
        return None
    for candidate in (lang, *LANGUAGES):
        if text.get(candidate):
            return str(text[candidate])
    return None


def build_calendar(
    consultations: Sequence[Consultation], places: dict[str, Any], lang: str
) -> bytes:
    """An RFC 5545 calendar with one VEVENT per consultation; `places` maps codes to names."""
    calendar = Calendar()
    calendar.add("prodid", "-//Kenes//Consultations//EN")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", "Kenes")
    for consultation in consultations:
        place = localized(places.get(consultation.territory_code), lang)
        place = place or consultation.territory_code
        event = Event()
        event.add("uid", f"{consultation.id}@kenes")
        event.add("sequence", consultation.sequence)
        event.add("dtstamp", consultation.updated_at)
        event.add("created", consultation.created_at)
        event.add("last-modified", consultation.updated_at)
        event.add("dtstart", consultation.starts_at)
        if consultation.ends_at is not None:
            event.add("dtend", consultation.ends_at)
        event.add("summary", _SUMMARY[lang].format(place=place))
        event.add("location", f"{consultation.location}, {place}")
        agenda = localized(consultation.agenda, lang)
        host = f"{_HOST[lang]}: {consultation.host}"
        event.add("description", f"{agenda}\n\n{host}" if agenda else host)
        event.add("status", _ICAL_STATUS[ConsultationStatus(consultation.status)])
        calendar.add_component(event)
    return bytes(calendar.to_ical())
