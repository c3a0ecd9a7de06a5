"""Annotated dependency aliases: a route's signature says what it needs and who may call it."""

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from anyio import CapacityLimiter
from fastapi import Depends, Query, Request
from fastapi.security import OAuth2PasswordBearer
from sqlmodel.ext.asyncio.session import AsyncSession

from app.config import Settings
from app.db import session_scope
from app.errors import Forbidden, Unauthorized
from app.log import note_caller
from app.models.auth import Principal, Role
from app.pagination import DEFAULT_LIMIT, MAX_LIMIT
from app.security import TokenService
from app.services.auth import RememberedPrincipals, resolve_token

_READ_METHODS = {"GET", "HEAD", "OPTIONS"}


# Dependencies are async: FastAPI runs plain functions (and classes) in a thread pool.
async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_tokens(request: Request) -> TokenService:
    tokens: TokenService = request.app.state.tokens
    return tokens


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    write = request.method not in _READ_METHODS
    async for session in session_scope(request.app.state.sessionmaker, write=write):
        yield session


UnitOfWork = Callable[[], AbstractAsyncContextManager[AsyncSession]]


async def get_units_of_work(request: Request) -> UnitOfWork:
    """For a route that needs more than one transaction (a login hashes between two): each
    call opens one unit of work, committed on success and rolled back on error."""
    sessionmaker = request.app.state.sessionmaker
    return lambda: asynccontextmanager(session_scope)(sessionmaker)


async def get_upload_work(request: Request) -> CapacityLimiter:
    """The threads that parse and check uploads (XLSForms, CSV imports), off the event loop."""
    limiter: CapacityLimiter = request.app.state.upload_work
    return limiter


async def get_read_units(request: Request) -> UnitOfWork:
    """Like get_units_of_work, for reads only (no write lock on SQLite), opened only if used:
    for a route that reads the database just on some paths (a cache miss)."""
    sessionmaker = request.app.state.sessionmaker
    return lambda: asynccontextmanager(session_scope)(sessionmaker, write=False)


async def get_remembered_principals(request: Request) -> RememberedPrincipals:
    remembered: RememberedPrincipals = request.app.state.remembered_principals
    return remembered


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
RememberedPrincipalsDep = Annotated[RememberedPrincipals, Depends(get_remembered_principals)]
UploadWork = Annotated[CapacityLimiter, Depends(get_upload_work)]
UnitsOfWorkDep = Annotated[UnitOfWork, Depends(get_units_of_work)]
ReadUnitsDep = Annotated[UnitOfWork, Depends(get_read_units)]
TokensDep = Annotated[TokenService, Depends(get_tokens)]
# scope="function": commit before the response is sent, so a 2xx means the write is durable.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]

# Declares the bearer scheme in OpenAPI (and the docs' Authorize button); we raise 401 ourselves.
_bearer = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)
BearerToken = Annotated[str | None, Depends(_bearer)]
# For routes that read the token themselves (bearer_token): the same entry in the OpenAPI document.
BEARER_SECURITY: dict[str, Any] = {"security": [{"OAuth2PasswordBearer": []}]}


async def bearer_token(request: Request) -> str | None:
    """The bearer token, read as the BearerToken dependency does, without solving one.

    `Authorization: Bearer` with no token is bad credentials (401), never "no token".
    """
    token = await _bearer(request)
    if token is not None and not token.strip():
        raise Unauthorized("The bearer token is empty")
    return token


async def get_optional_principal(
    request: Request, session: SessionDep, tokens: TokensDep, token: BearerToken
) -> Principal | None:
    """The caller, or None without credentials; bad credentials are 401, never anonymous."""
    if token is not None and not token.strip():
        raise Unauthorized("The bearer token is empty")
    if token is None:
        return None
    principal = await resolve_token(session, tokens, token)
    note_caller(request.scope.get("state"), principal.kind, principal.id)
    return principal


OptionalPrincipal = Annotated[Principal | None, Depends(get_optional_principal)]


async def get_principal(principal: OptionalPrincipal) -> Principal:
    if principal is None:
        raise Unauthorized()
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def get_user_principal(principal: CurrentPrincipal) -> Principal:
    if principal.kind != "user":
        raise Forbidden("Collector tokens may only read their questionnaires and submit responses")
    return principal


CurrentUser = Annotated[Principal, Depends(get_user_principal)]


class RequireRoles:
    """A user holding one of these roles (admins always pass); collectors are refused."""

    def __init__(self, *roles: Role) -> None:
        self.roles = roles

    async def __call__(self, user: CurrentUser) -> Principal:
        if not user.has_any(*self.roles):
            raise Forbidden("Your roles do not allow this")
        return user


AdminUser = Annotated[Principal, Depends(RequireRoles(Role.admin))]
CoordinatorUser = Annotated[Principal, Depends(RequireRoles(Role.coordinator))]
ResponseReader = Annotated[Principal, Depends(RequireRoles(Role.coordinator, Role.analyst))]


@dataclass(frozen=True)
class PageParams:
    limit: int
    cursor: str | None


async def get_page(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> PageParams:
    return PageParams(limit, cursor)


PageDep = Annotated[PageParams, Depends(get_page)]
