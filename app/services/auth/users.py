"""Users: listing, creating, changing (a deactivation or new password ends their tokens), and
the bootstrap admin."""

import asyncio
import uuid
from typing import Any

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.config import Settings
from app.db import utcnow
from app.errors import Conflict, NotFound
from app.models.auth import (
    Principal,
    Role,
    User,
    UserCreate,
    UserUpdate,
)
from app.pagination import paginate
from app.security import (
    hash_password,
)
from app.services import audit
from app.services.auth.principals import RememberedPrincipals


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("No such user")
    return user


async def list_users(
    session: AsyncSession, *, limit: int, cursor: str | None
) -> tuple[list[User], str | None]:
    return await paginate(
        session,
        select(User),
        created=col(User.created_at),
        row_id=col(User.id),
        limit=limit,
        cursor=cursor,
    )


async def create_user(
    session: AsyncSession, actor: Principal | dict[str, Any], data: UserCreate
) -> User:
    email = data.email.strip().lower()
    if (await session.exec(select(User.id).where(col(User.email) == email))).first():
        raise Conflict(f"A user with e-mail {email} exists")
    user = User(
        email=email,
        full_name=data.full_name,
        password_hash=await asyncio.to_thread(hash_password, data.password),
        roles=sorted(role.value for role in data.roles),
    )
    session.add(user)
    audit.record(session, actor, "user.create", "user", user.id, email=email, roles=user.roles)
    try:
        await session.flush()
    except IntegrityError:
        # Lost a race with another request creating the same e-mail.
        raise Conflict(f"A user with e-mail {email} exists") from None
    return user


async def _active_admins(session: AsyncSession) -> list[User]:
    """The active admins, locked until the transaction ends (PostgreSQL; SQLite's writers are
    serial): two admins removing each other at once cannot both see the other still there."""
    users = await session.exec(
        select(User)
        .where(col(User.is_active).is_(True))
        .order_by(col(User.id))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return [user for user in users if Role.admin in user.roles]


async def update_user(
    session: AsyncSession,
    actor: Principal,
    user_id: uuid.UUID,
    data: UserUpdate,
    remembered: RememberedPrincipals,
) -> User:
    user = await get_user(session, user_id)
    changes = data.model_dump(exclude_unset=True)
    if changes.get("roles") is None:
        changes.pop("roles", None)
    for name in ("full_name", "is_active", "password"):
        if name in changes and changes[name] is None:
            changes.pop(name)

    loses_admin = Role.admin in user.roles and (
        changes.get("is_active") is False
        or ("roles" in changes and Role.admin not in changes["roles"])
    )
    if loses_admin and user.is_active:
        admins = await _active_admins(session)
        if [admin.id for admin in admins] == [user.id]:
            raise Conflict("The last active admin cannot be deactivated or lose the admin role")

    if "full_name" in changes:
        user.full_name = changes["full_name"]
    if "roles" in changes:
        user.roles = sorted(Role(role).value for role in changes["roles"])
    if "is_active" in changes:
        user.is_active = changes["is_active"]
    if "password" in changes:
        user.password_hash = await asyncio.to_thread(hash_password, changes["password"])
    if "password" in changes or changes.get("is_active") is False:
        # Every token issued before ends, and stays ended after a reactivation.
        user.token_version += 1
        remembered.forget(user.id)
    user.updated_at = utcnow()
    detail = {name: ("changed" if name == "password" else changes[name]) for name in changes}
    audit.record(session, actor, "user.update", "user", user.id, changes=detail)
    await session.flush()
    return user


async def count_users(session: AsyncSession) -> int:
    return (await session.exec(select(func.count()).select_from(User))).one()


async def ensure_bootstrap_admin(session: AsyncSession, settings: Settings) -> User | None:
    """Create the configured admin when no user exists yet (first start of a deployment)."""
    if not settings.bootstrap_admin_email or settings.bootstrap_admin_password is None:
        return None
    if await count_users(session) > 0:
        return None
    data = UserCreate(
        email=settings.bootstrap_admin_email,
        password=settings.bootstrap_admin_password.get_secret_value(),
        full_name="Administrator",
        roles=[Role.admin],
    )
    return await create_user(session, audit.SYSTEM, data)
