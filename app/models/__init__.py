"""Every table module is imported here so SQLModel.metadata (and Alembic) sees all tables."""

from app.models.aggregate_views import AggregateView
from app.models.attachments import attachment_chunk_table, attachment_table
from app.models.auth import AuditEvent, Collector, RateLimitBucket, User
from app.models.calendar_feeds import CalendarFeed
from app.models.consultations import Consultation, Observation
from app.models.elections import Candidate, Election
from app.models.form_media import questionnaire_media_chunk_table, questionnaire_media_table
from app.models.questionnaires import Questionnaire
from app.models.responses import response_table
from app.models.territories import Territory

__all__ = [
    "AggregateView",
    "AuditEvent",
    "CalendarFeed",
    "Candidate",
    "Collector",
    "Consultation",
    "Election",
    "Observation",
    "Questionnaire",
    "RateLimitBucket",
    "Territory",
    "User",
    "attachment_chunk_table",
    "attachment_table",
    "questionnaire_media_chunk_table",
    "questionnaire_media_table",
    "response_table",
]
