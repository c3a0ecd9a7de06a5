"""Logins, with throttling per (account, address) pair."""

import hashlib
import ipaddress
import math
from dataclasses import dataclass
from datetime import timedelta

import anyio
import anyio.to_thread
from anyio import CapacityLimiter
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.config import Settings
from app.db import utcnow
from app.errors import TooManyRequests, Unauthorized
from app.models.auth import (
    User,
)
from app.security import (
    verify_password,
)
from app.services import audit, ratelimit
from app.services.auth.principals import user_principal


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
