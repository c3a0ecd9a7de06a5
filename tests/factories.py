"""Small async factories that write through the app's own services."""

import uuid

from fastapi import FastAPI

from app.db import session_scope
from app.models.auth import Role, User, UserCreate
from app.services import audit
from app.services.auth import create_user as create_user_service

DEFAULT_PASSWORD = "correct horse battery"


async def create_user(
    app: FastAPI,
    *roles: Role | str,
    email: str | None = None,
    password: str = DEFAULT_PASSWORD,
    full_name: str = "Test User",
) -> User:
    data = UserCreate(
        email=email or f"{uuid.uuid4().hex[:12]}@example.org",
        password=password,
        full_name=full_name,
        roles=[Role(role) for role in roles] or [Role.analyst],
    )
    async for session in session_scope(app.state.sessionmaker):
        user = await create_user_service(session, audit.SYSTEM, data)
    return user


def bearer(app: FastAPI, user: User) -> dict[str, str]:
    """Headers with a real token from the app's token service (no password round trip)."""
    return {"Authorization": f"Bearer {app.state.tokens.issue(user.id)}"}


async def headers_for(app: FastAPI, *roles: Role | str) -> dict[str, str]:
    return bearer(app, await create_user(app, *roles))
