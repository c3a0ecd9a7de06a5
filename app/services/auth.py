"""Users, logins (with throttling), collectors and resolving a bearer token to a principal."""

import asyncio
import json
import math
import time
import uuid
from collections import OrderedDict
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.config import Settings
from app.db import utcnow
from app.errors import Conflict, NotFound, TooManyRequests, Unauthorized
from app.models.auth import (
    Collector,
    CollectorCreate,
    Principal,
    Role,
    User,
    UserCreate,
    UserUpdate,
)
from app.pagination import paginate
from app.security import (
    TokenError,
    TokenService,
    hash_password,
    hash_token,
    is_collector_token,
    new_collector_token,
    verify_password,
)
from app.services import audit, ratelimit

# --- principals -------------------------------------------------------------------------------


def user_principal(user: User) -> Principal:
    return Principal(kind="user", id=user.id, roles=frozenset(user.roles), email=user.email)


async def resolve_token(session: AsyncSession, tokens: TokenService, token: str) -> Principal:
    """The active user or unrevoked collector behind a bearer token, checked on every request."""
    if is_collector_token(token):
        collector = (
            await session.exec(
                select(Collector).where(
                    col(Collector.token_hash) == hash_token(token),
                    col(Collector.revoked_at).is_(None),
                )
            )
        ).first()
        if collector is None:
            raise Unauthorized("Unknown or revoked collector token")
        return _collector_principal(collector.id, collector.questionnaire_ids)
    user = await session.get(User, _verified(tokens, token)[0])
    if user is None or not user.is_active:
        raise Unauthorized("Invalid or expired token")
    return user_principal(user)


# Token hash -> (principal, expiry), for the submission hot path only. A collector's binding never
# changes; whether it was revoked, or a user deactivated or given other roles, is checked again by
# the very statement that stores the response (services/responses_pg.py), so that holds at once.
_remembered: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
_REMEMBERED_LIMIT = 10_000


def remembered(token: str) -> Principal | None:
    """A principal resolve_token_raw found for this token earlier, while the token is valid."""
    key = hash_token(token)
    entry = _remembered.get(key)
    if entry is None:
        return None
    if entry[1] <= time.time():
        del _remembered[key]
        return None
    return entry[0]


def forget(principal_id: uuid.UUID) -> None:
    """Called when the storing statement found the principal no longer as remembered."""
    for key, (principal, _) in list(_remembered.items()):
        if principal.id == principal_id:
            del _remembered[key]


async def resolve_token_raw(
    connection: asyncpg.Connection, tokens: TokenService, token: str
) -> Principal:
    """resolve_token on a bare asyncpg connection (PostgreSQL), for the submission hot path.

    What it finds is remembered (see `remembered`).
    """
    if is_collector_token(token):
        row = await connection.fetchrow(
            "SELECT id, questionnaire_ids FROM collector "
            "WHERE token_hash = $1 AND revoked_at IS NULL",
            hash_token(token),
        )
        if row is None:
            raise Unauthorized("Unknown or revoked collector token")
        principal = _collector_principal(row["id"], json.loads(row["questionnaire_ids"]))
        expires_at = math.inf
    else:
        user_id, expires_at = _verified(tokens, token)
        row = await connection.fetchrow(
            "SELECT email, roles FROM user_account WHERE id = $1 AND is_active", user_id
        )
        if row is None:
            raise Unauthorized("Invalid or expired token")
        roles = frozenset(json.loads(row["roles"]))
        principal = Principal(kind="user", id=user_id, roles=roles, email=row["email"])
    _remembered[hash_token(token)] = (principal, expires_at)
    if len(_remembered) > _REMEMBERED_LIMIT:
        _remembered.popitem(last=False)
    return principal


def _verified(tokens: TokenService, token: str) -> tuple[uuid.UUID, int]:
    """(user id, expiry) of a valid user token; 401 for anything else."""
    try:
        return tokens.verify(token)
    except TokenError:
        raise Unauthorized("Invalid or expired token") from None


def _collector_principal(collector_id: uuid.UUID, questionnaire_ids: list[str]) -> Principal:
    return Principal(
        kind="collector",
        id=collector_id,
        questionnaire_ids=frozenset(uuid.UUID(q) for q in questionnaire_ids),
    )


# --- logins -----------------------------------------------------------------------------------


def _throttle_keys(email: str, address: str | None) -> list[tuple[str, str]]:
    keys = [("email", f"login:email:{email}")]
    if address:
        keys.append(("address", f"login:address:{address}"))
    return keys


async def login(
    session: AsyncSession,
    settings: Settings,
    *,
    email: str,
    password: str,
    address: str | None,
) -> User:
    """The user whose credentials these are; failures are counted and audited.

    The caller must commit also when this raises, so that failures are remembered.
    """
    email = email.strip().lower()
    window = settings.login_window_seconds
    limits = {
        "email": settings.login_max_failures,
        "address": settings.login_max_failures_per_address,
    }
    for kind, key in _throttle_keys(email, address):
        count, window_end = await ratelimit.current(session, key, window)
        if count >= limits[kind]:
            retry = int((window_end - utcnow()).total_seconds()) + 1
            raise TooManyRequests("Too many failed logins; try again later", retry_after=retry)

    user = (await session.exec(select(User).where(col(User.email) == email))).first()
    # Hashing is CPU-bound: keep it off the event loop.
    ok = await asyncio.to_thread(verify_password, user.password_hash if user else None, password)
    if not ok or user is None or not user.is_active:
        for _, key in _throttle_keys(email, address):
            await ratelimit.hit(session, key, window)
        audit.record(
            session,
            None,
            "auth.login_failed",
            "user",
            user.id if user else None,
            email=email,
            address=address,
        )
        raise Unauthorized("Incorrect e-mail or password")

    await ratelimit.reset(session, f"login:email:{email}")
    audit.record(session, user_principal(user), "auth.login", "user", user.id, address=address)
    return user


# --- users ------------------------------------------------------------------------------------


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
    users = await session.exec(select(User).where(col(User.is_active).is_(True)))
    return [user for user in users if Role.admin in user.roles]


async def update_user(
    session: AsyncSession, actor: Principal, user_id: uuid.UUID, data: UserUpdate
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


# --- collectors -------------------------------------------------------------------------------


async def create_collector(
    session: AsyncSession, actor: Principal, data: CollectorCreate
) -> tuple[Collector, str]:
    token, token_hash = new_collector_token()
    collector = Collector(
        name=data.name,
        token_hash=token_hash,
        questionnaire_ids=[str(q) for q in dict.fromkeys(data.questionnaire_ids)],
        created_by=actor.id if actor.kind == "user" else None,
    )
    session.add(collector)
    audit.record(
        session,
        actor,
        "collector.create",
        "collector",
        collector.id,
        name=data.name,
        questionnaire_ids=collector.questionnaire_ids,
    )
    await session.flush()
    return collector, token


async def list_collectors(
    session: AsyncSession, *, limit: int, cursor: str | None
) -> tuple[list[Collector], str | None]:
    return await paginate(
        session,
        select(Collector),
        created=col(Collector.created_at),
        row_id=col(Collector.id),
        limit=limit,
        cursor=cursor,
    )


async def revoke_collector(
    session: AsyncSession, actor: Principal, collector_id: uuid.UUID
) -> datetime:
    collector = await session.get(Collector, collector_id)
    if collector is None:
        raise NotFound("No such collector")
    if collector.revoked_at is None:
        collector.revoked_at = utcnow()
        audit.record(session, actor, "collector.revoke", "collector", collector.id)
        await session.flush()
    return collector.revoked_at
