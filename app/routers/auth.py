"""Tokens, the caller, users, collectors and the audit log."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from app.deps import (
    AdminUser,
    CurrentUser,
    PageDep,
    RememberedPrincipalsDep,
    SessionDep,
    SettingsDep,
    TokensDep,
    UnitsOfWorkDep,
)
from app.errors import AppError
from app.models.auth import (
    AuditRead,
    Collector,
    CollectorCreate,
    CollectorCreated,
    CollectorRead,
    TokenRead,
    User,
    UserCreate,
    UserRead,
    UserUpdate,
)
from app.pagination import Page
from app.routers.problems import responses
from app.services import audit
from app.services import auth as service

router = APIRouter(prefix="/api/v1", tags=["auth"])


def _user(user: User) -> UserRead:
    return UserRead.model_validate(user, from_attributes=True)


def _collector(collector: Collector) -> CollectorRead:
    return CollectorRead.model_validate(collector, from_attributes=True)


@router.post("/auth/token", response_model=TokenRead, responses=responses(401, 422, 429))
async def issue_token(
    request: Request,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    units: UnitsOfWorkDep,
    settings: SettingsDep,
    tokens: TokensDep,
) -> TokenRead:
    """OAuth2 password grant: `username` is the e-mail."""
    address = request.client.host if request.client else None
    # Two short transactions with the hash between them: on SQLite a transaction holding the
    # write lock through argon2 stalled every other writer (28 failed logins: submissions
    # from 4 ms to 2 s).
    async with units() as session:
        attempt = await service.begin_login(session, settings, email=form.username, address=address)
    ok = await service.check_password(attempt, form.password, request.app.state.password_hashing)
    async with units() as session:
        try:
            user = await service.finish_login(session, settings, attempt, ok)
        except AppError:
            # The failure must be audited although the request fails.
            await session.commit()
            raise
    return TokenRead(access_token=tokens.issue(user.id, user.token_version), expires_in=tokens.ttl)


@router.get("/auth/me", response_model=UserRead, responses=responses(401, 403))
async def me(principal: CurrentUser, session: SessionDep) -> UserRead:
    """The caller's own user record."""
    return _user(await service.get_user(session, principal.id))


@router.post(
    "/users",
    response_model=UserRead,
    status_code=status.HTTP_201_CREATED,
    responses=responses(401, 403, 409, 422),
)
async def create_user(
    data: UserCreate, admin: AdminUser, session: SessionDep, response: Response
) -> UserRead:
    """A new user with roles; the password is at least 12 characters."""
    user = await service.create_user(session, admin, data)
    response.headers["Location"] = f"/api/v1/users/{user.id}"
    return _user(user)


@router.get("/users", response_model=Page[UserRead], responses=responses(400, 401, 403, 422))
async def list_users(_: AdminUser, session: SessionDep, page: PageDep) -> Page[UserRead]:
    """Every user, in creation order."""
    users, next_cursor = await service.list_users(session, limit=page.limit, cursor=page.cursor)
    return Page(items=[_user(user) for user in users], next_cursor=next_cursor)


@router.get("/users/{user_id}", response_model=UserRead, responses=responses(401, 403, 404))
async def get_user(user_id: uuid.UUID, _: AdminUser, session: SessionDep) -> UserRead:
    """One user."""
    return _user(await service.get_user(session, user_id))


@router.patch(
    "/users/{user_id}", response_model=UserRead, responses=responses(401, 403, 404, 409, 422)
)
async def update_user(
    user_id: uuid.UUID,
    data: UserUpdate,
    admin: AdminUser,
    session: SessionDep,
    remembered: RememberedPrincipalsDep,
) -> UserRead:
    """Changes name, roles, active state or password; a deactivation ends the user's tokens."""
    return _user(await service.update_user(session, admin, user_id, data, remembered))


@router.post(
    "/collectors",
    response_model=CollectorCreated,
    status_code=status.HTTP_201_CREATED,
    responses=responses(401, 403, 422),
)
async def create_collector(
    data: CollectorCreate, admin: AdminUser, session: SessionDep, response: Response
) -> CollectorCreated:
    """The token is in this answer only; Kenes keeps just its hash."""
    collector, token = await service.create_collector(session, admin, data)
    response.headers["Location"] = f"/api/v1/collectors/{collector.id}"
    return CollectorCreated(**_collector(collector).model_dump(), token=token)


@router.get(
    "/collectors", response_model=Page[CollectorRead], responses=responses(400, 401, 403, 422)
)
async def list_collectors(_: AdminUser, session: SessionDep, page: PageDep) -> Page[CollectorRead]:
    """Every collector (tokens are never shown again), in creation order."""
    rows, next_cursor = await service.list_collectors(session, limit=page.limit, cursor=page.cursor)
    return Page(items=[_collector(row) for row in rows], next_cursor=next_cursor)


@router.delete(
    "/collectors/{collector_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(401, 403, 404),
)
async def revoke_collector(collector_id: uuid.UUID, admin: AdminUser, session: SessionDep) -> None:
    """Revokes at once: the token answers 401 from the next request on."""
    await service.revoke_collector(session, admin, collector_id)


@router.get("/audit", response_model=Page[AuditRead], responses=responses(400, 401, 403, 422))
async def list_audit(_: AdminUser, session: SessionDep, page: PageDep) -> Page[AuditRead]:
    """Newest first."""
    events, next_cursor = await audit.list_events(session, limit=page.limit, cursor=page.cursor)
    items: list[Any] = [AuditRead.model_validate(e, from_attributes=True) for e in events]
    return Page(items=items, next_cursor=next_cursor)
