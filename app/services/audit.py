"""The audit log: written in the same transaction as the change it records."""

import uuid
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models.auth import AuditEvent, Principal
from app.pagination import paginate

ANONYMOUS: dict[str, Any] = {"type": "anonymous", "id": None, "email": None}
SYSTEM: dict[str, Any] = {"type": "system", "id": None, "email": None}
# Who does a write: a principal, or SYSTEM for the command line and demo data.
Actor = Principal | dict[str, Any]


def user_id(actor: Actor) -> uuid.UUID | None:
    """The acting user's id, for `created_by` columns."""
    return actor.id if isinstance(actor, Principal) and actor.kind == "user" else None


def record(
    session: AsyncSession,
    actor: Principal | dict[str, Any] | None,
    action: str,
    target_type: str | None = None,
    target_id: uuid.UUID | str | None = None,
    **detail: Any,
) -> AuditEvent:
    """Add an audit row to the session; it commits or rolls back with the write it describes."""
    if isinstance(actor, Principal):
        actor_value = actor.actor()
    else:
        actor_value = actor or ANONYMOUS
    event = AuditEvent(
        actor=actor_value,
        action=action,
        target_type=target_type,
        target_id=str(target_id) if target_id is not None else None,
        detail=detail,
    )
    session.add(event)
    return event


async def list_events(
    session: AsyncSession, *, limit: int, cursor: str | None
) -> tuple[list[AuditEvent], str | None]:
    return await paginate(
        session,
        select(AuditEvent),
        created=col(AuditEvent.at),
        row_id=col(AuditEvent.id),
        limit=limit,
        cursor=cursor,
        newest_first=True,
    )
