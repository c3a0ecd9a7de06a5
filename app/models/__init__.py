"""Every table module is imported here so SQLModel.metadata (and Alembic) sees all tables."""

from app.models.territories import Territory

__all__ = ["Territory"]
