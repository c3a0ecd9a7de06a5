"""Every table module is imported here so SQLModel.metadata (and Alembic) sees all tables."""

from app.models.auth import AuditEvent, Collector, RateLimitBucket, User
from app.models.territories import Territory

__all__ = ["AuditEvent", "Collector", "RateLimitBucket", "Territory", "User"]
