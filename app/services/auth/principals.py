"""Resolving a bearer token to a principal: on a session, or on a bare asyncpg connection for
the submission hot path (whose finds are remembered)."""

import json
import math
import time
import uuid
from collections import OrderedDict

import asyncpg
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.errors import Unauthorized
from app.models.auth import (
    Collector,
    Principal,
    User,
)
from app.security import (
    TokenError,
    TokenService,
    hash_token,
    is_collector_token,
)


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
