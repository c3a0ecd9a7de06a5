"""Users, logins (with throttling), collectors and resolving a bearer token to a principal."""

import asyncio
import hashlib
import ipaddress
import json
import math
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio
import anyio.to_thread
import asyncpg
from anyio import CapacityLimiter
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
    return Principal(
        kind="user",
        id=user.id,
        roles=frozenset(user.roles),
        email=user.email,
        token_version=user.token_version,
    )


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
    user_id, _, version = _verified(tokens, token)
    user = await session.get(User, user_id)
    if user is None or not user.is_active or user.token_version != version:
        raise Unauthorized("Invalid or expired token")
    return user_principal(user)


class RememberedPrincipals:
    """Token hash -> (principal, expiry), for the submission hot path only; one per app
    (app.state.remembered_principals). A collector's binding never changes; whether it was
    revoked, or a user deactivated or given other roles, is checked again by the very statement
    that stores the response (services/responses/pg_store.py), so that holds at once."""

    def __init__(self, limit: int = 10_000) -> None:
        self._entries: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._limit = limit

    def get(self, token: str) -> Principal | None:
        """The principal resolve_token_raw found for this token earlier, while it is valid."""
        key = hash_token(token)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= time.time():
            del self._entries[key]
            return None
        return entry[0]

    def remember(self, token: str, principal: Principal, expires_at: float) -> None:
        self._entries[hash_token(token)] = (principal, expires_at)
        if len(self._entries) > self._limit:
            self._entries.popitem(last=False)

    def forget(self, principal_id: uuid.UUID) -> None:
        """When the principal changed (or the storing statement found it no longer as
        remembered): its tokens are resolved afresh."""
        for key, (principal, _) in list(self._entries.items()):
            if principal.id == principal_id:
                del self._entries[key]


async def resolve_token_raw(
    connection: asyncpg.Connection,
    tokens: TokenService,
    token: str,
    remembered: RememberedPrincipals,
) -> Principal:
    """resolve_token on a bare asyncpg connection (PostgreSQL), for the submission hot path.
    What it finds is remembered."""
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
        user_id, expires_at, version = _verified(tokens, token)
        row = await connection.fetchrow(
            "SELECT email, roles FROM user_account "
            "WHERE id = $1 AND is_active AND token_version = $2",
            user_id,
            version,
        )
        if row is None:
            raise Unauthorized("Invalid or expired token")
        roles = frozenset(json.loads(row["roles"]))
        principal = Principal(
            kind="user", id=user_id, roles=roles, email=row["email"], token_version=version
        )
    remembered.remember(token, principal, expires_at)
    return principal


def _verified(tokens: TokenService, token: str) -> tuple[uuid.UUID, int, int]:
    """(user id, expiry, token version) of a valid user token; 401 for anything else."""
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


@dataclass(frozen=True)
class LoginAttempt:
    """A login that passed the throttle; its failure is already counted."""

    email: str
    address: str | None
    user: User | None


def throttle_unit(address: str | None) -> str | None:
    """The throttling unit of a client address: an IPv4 address, or an IPv6 /64 (one host
    usually holds a whole /64, so single IPv6 addresses would give it endless fresh budgets)."""
    if not address:
        return None
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if parsed.version == 6:
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def _pair_key(email: str, address: str | None) -> str:
    # Hashed: the username field sometimes holds a password typed in the wrong box.
    digest = hashlib.sha256(email.encode()).hexdigest()[:32]
    return f"login:pair:{digest}:{throttle_unit(address) or '-'}"


def login_backoff(settings: Settings, failures: int) -> timedelta:
    """How long a (account, address) pair waits after `failures` failed logins in a row."""
    over = failures - settings.login_max_failures
    if over < 0:
        return timedelta(0)
    seconds = min(
        settings.login_window_seconds, settings.login_backoff_seconds * 2 ** min(over, 30)
    )
    return timedelta(seconds=seconds)


async def begin_login(
    session: AsyncSession, settings: Settings, *, email: str, address: str | None
) -> LoginAttempt:
    """Throttle, then count this attempt as a failure before any password is checked.

    Counting first, in the same short write transaction that checks the limits, makes the
    count atomic: concurrent wrong passwords cannot all pass a check made before any of them
    is counted (PostgreSQL: row lock; SQLite: the write lock, released before hashing).
    Two limits: per (account, address) with exponential backoff, so that nobody can lock an
    account's owner out from elsewhere; and password checks per address, which bounds the
    hashing work one address can cause, whichever accounts it tries.
    """
    email = email.strip().lower()
    window = settings.login_window_seconds
    address_key = throttle_unit(address)
    if address_key is not None:
        count, window_end = await ratelimit.hit(session, f"login:address:{address_key}", window)
        if count > settings.login_max_failures_per_address:
            retry = int((window_end - utcnow()).total_seconds()) + 1
            raise TooManyRequests(
                "Too many logins from this address; try again later", retry_after=retry
            )
    now = utcnow()
    bucket = await ratelimit.locked(session, _pair_key(email, address))
    failures = bucket.count if bucket.window_start > now - timedelta(seconds=window) else 0
    allowed_at = bucket.window_start + login_backoff(settings, failures)
    if failures >= settings.login_max_failures and allowed_at > now:
        retry = math.ceil((allowed_at - now).total_seconds())
        raise TooManyRequests("Too many failed logins; try again later", retry_after=retry)
    bucket.count = failures + 1
    bucket.window_start = now
    user = (await session.exec(select(User).where(col(User.email) == email))).first()
    await session.flush()
    return LoginAttempt(email=email, address=address, user=user)


async def check_password(attempt: LoginAttempt, password: str, limiter: CapacityLimiter) -> bool:
    """Argon2 off the event loop, at most `limiter` hashes at once (the CPU is bounded, and
    the default thread pool stays free for everything else). Outside any transaction."""
    stored = attempt.user.password_hash if attempt.user else None
    ok: bool = await anyio.to_thread.run_sync(verify_password, stored, password, limiter=limiter)
    return ok


async def finish_login(
    session: AsyncSession, settings: Settings, attempt: LoginAttempt, ok: bool
) -> User:
    """The user, or 401; the failure stays counted and is audited.

    The caller must commit also when this raises, so that the audit row is kept.
    """
    user = attempt.user
    if not ok or user is None or not user.is_active:
        audit.record(
            session,
            None,
            "auth.login_failed",
            "user",
            user.id if user else None,
            # Only an e-mail that is an account's: what was typed may be a password.
            email=user.email if user else None,
            address=attempt.address,
        )
        raise Unauthorized("Incorrect e-mail or password")
    await ratelimit.reset(session, _pair_key(attempt.email, attempt.address))
    address_key = throttle_unit(attempt.address)
    if address_key is not None:
        await ratelimit.give_back(session, f"login:address:{address_key}")
    audit.record(
        session, user_principal(user), "auth.login", "user", user.id, address=attempt.address
    )
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
