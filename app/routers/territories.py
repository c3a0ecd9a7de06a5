"""Territories: the hierarchy, read by every staff role, written by coordinators and admins."""

from typing import Annotated

from fastapi import APIRouter, Depends, File, Path, Response, UploadFile, status
from pydantic import BaseModel

from app.deps import PageDep, RequireRoles, SessionDep, UploadWork
from app.models.auth import Principal, Role
from app.models.territories import (
    Territory,
    TerritoryCreate,
    TerritoryLevel,
    TerritoryRead,
    TerritoryUpdate,
)
from app.pagination import Page
from app.routers.problems import responses
from app.services import territories as service

router = APIRouter(prefix="/api/v1", tags=["territories"])

Writer = Annotated[Principal, Depends(RequireRoles(Role.coordinator))]
Reader = Annotated[Principal, Depends(RequireRoles(Role.coordinator, Role.observer, Role.analyst))]
Code = Annotated[str, Path(max_length=16)]


class ImportResult(BaseModel):
    imported: int


def _read(territory: Territory) -> TerritoryRead:
    return TerritoryRead.model_validate(territory, from_attributes=True)


@router.post(
    "/territories",
    response_model=TerritoryRead,
    status_code=status.HTTP_201_CREATED,
    responses=responses(401, 403, 409, 422),
)
async def create_territory(
    data: TerritoryCreate, actor: Writer, session: SessionDep, response: Response
) -> TerritoryRead:
    """The parent must exist and be of a higher level; regions and cities may have none."""
    territory = await service.create_territory(session, actor, data)
    response.headers["Location"] = f"/api/v1/territories/{territory.code}"
    return _read(territory)


@router.get(
    "/territories", response_model=Page[TerritoryRead], responses=responses(400, 401, 403, 422)
)
async def list_territories(
    _: Reader,
    session: SessionDep,
    page: PageDep,
    level: TerritoryLevel | None = None,
    parent_code: str | None = None,
) -> Page[TerritoryRead]:
    """Territories in creation order; filter by `level` and `parent_code`."""
    rows, next_cursor = await service.list_territories(
        session, level=level, parent_code=parent_code, limit=page.limit, cursor=page.cursor
    )
    return Page(items=[_read(row) for row in rows], next_cursor=next_cursor)


@router.post(
    "/territories/import",
    response_model=ImportResult,
    responses=responses(401, 403, 413, 415, 422),
)
async def import_territories(
    actor: Writer, session: SessionDep, file: Annotated[UploadFile, File()], uploads: UploadWork
) -> ImportResult:
    """CSV `code,parent_code,level,name_kk,name_ru,name_en`; all lines or none."""
    return ImportResult(
        imported=await service.import_territories(session, actor, await file.read(), uploads)
    )


@router.get("/territories/{code}", response_model=TerritoryRead, responses=responses(401, 403, 404))
async def get_territory(code: Code, _: Reader, session: SessionDep) -> TerritoryRead:
    """One territory by its KATO code."""
    return _read(await service.get_territory(session, code))


@router.patch(
    "/territories/{code}", response_model=TerritoryRead, responses=responses(401, 403, 404, 422)
)
async def update_territory(
    code: Code, data: TerritoryUpdate, actor: Writer, session: SessionDep
) -> TerritoryRead:
    """Rename, or move under another parent (descendants move along)."""
    return _read(await service.update_territory(session, actor, code, data))
