"""Schemas of the operations endpoints."""

from pydantic import BaseModel


class Health(BaseModel):
    status: str
    database: str | None = None
