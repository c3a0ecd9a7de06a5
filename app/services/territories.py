"""Territory rules and queries: the hierarchy, subtree conditions, CSV import."""

import csv
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from anyio import CapacityLimiter
from sqlalchemy import ColumnElement, String, and_, literal, or_, update
from sqlalchemy.orm import aliased
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.errors import Conflict, Invalid, NotFound
from app.models.auth import Principal
from app.models.territories import (
    CODE_PATTERN,
    LANGUAGES,
    LEVEL_RANK,
    ROOT_LEVELS,
    Territory,
    TerritoryCreate,
    TerritoryLevel,
    TerritoryUpdate,
    i18n,
)
from app.pagination import decode_cursor_key, encode_cursor
from app.services import audit
from app.services.csv_uploads import (
    file_error,
    flush_in_chunks,
    parse_csv_upload,
    refuse_file,
    run_off_loop,
)

TERRITORY_COLUMNS = ("code", "parent_code", "level", "name_kk", "name_ru", "name_en")
# Sorts after every character a code may hold: [path, path + "~") is exactly the subtree.
_SUBTREE_END = "~"
_CHUNK = 500  # bound parameters per IN (...) query
MAX_NAME_LENGTH = 1000  # as the API's I18nText

Loc = Sequence[str | int]

# --- the subtree, for every service ------------------------------------------------------------


def path_in_subtree(path: Any, ancestor_path: Any) -> ColumnElement[bool]:
    """`path` lies under `ancestor_path` (inclusive): an index range on both databases."""
    if isinstance(ancestor_path, str):
        # Rendered into the SQL text, not bound: PostgreSQL then plans each subtree for its
        # size, instead of reusing one cached generic plan made for a whole region.
        low = literal(ancestor_path, String, literal_execute=True)
        high = literal(ancestor_path + _SUBTREE_END, String, literal_execute=True)
        return and_(path >= low, path < high)
    return and_(path >= ancestor_path, path < ancestor_path + _SUBTREE_END)


def in_subtree(column: Any, root: str | Territory) -> ColumnElement[bool]:
    """The territory code in `column` is the root's or a descendant's, at any depth.

    `root` is a code, or a Territory already loaded. Either way this is one query whose
    descendants come from an index range scan on territory.path. Given a Territory, the range
    bounds are literal, so PostgreSQL estimates the subtree's size and picks a fitting join
    (index probes for a village, a hash join for a region); given a code, the root's path is
    a scalar subquery. False for every row when the code is unknown.
    """
    if isinstance(root, Territory):
        ancestor_path: Any = root.path
    else:
        ancestor = aliased(Territory, name="subtree_root")
        ancestor_path = select(ancestor.path).where(ancestor.code == root).scalar_subquery()
    members = select(Territory.code).where(path_in_subtree(col(Territory.path), ancestor_path))
    return col(column).in_(members)


def ancestor_codes(path: str) -> list[str]:
    """Codes from the root down to the territory itself, read off its path."""
    return [part for part in path.split("/") if part]


async def get_territory(session: AsyncSession, code: str) -> Territory:
    territory = await session.get(Territory, code)
    if territory is None:
        raise NotFound(f"No territory with code {code}")
    return territory


async def require_territory(
    session: AsyncSession, code: str, *, loc: Loc = ("body", "territory_code")
) -> Territory:
    """The territory a request refers to; 422 naming `loc` when there is none."""
    territory = await session.get(Territory, code)
    if territory is None:
        raise Invalid(
            f"Unknown territory {code}",
            errors=[{"loc": list(loc), "msg": f"unknown territory {code}", "type": "unknown"}],
        )
    return territory


def parent_error(level: str, parent_level: str | None) -> str | None:
    """Why a territory of `level` cannot sit under a parent of `parent_level`, or None."""
    if parent_level is None:
        if level not in ROOT_LEVELS:
            return f"a {level} needs a parent"
        return None
    if LEVEL_RANK[TerritoryLevel(parent_level)] >= LEVEL_RANK[TerritoryLevel(level)]:
        return f"a {level} cannot be placed under a {parent_level}"
    return None


def _child_path(parent: Territory | None, code: str) -> str:
    return f"{parent.path if parent else '/'}{code}/"


def new_territory(
    parent: Territory | None, code: str, level: str, name: dict[str, Any]
) -> Territory:
    """A territory placed under `parent`: its path and its region and district roll-up codes."""
    path = _child_path(parent, code)
    return Territory(
        code=code,
        parent_code=parent.code if parent else None,
        level=level,
        name=name,
        path=path,
        region_code=ancestor_codes(path)[0],
        district_code=code
        if level == TerritoryLevel.district
        else (parent.district_code if parent else None),
    )


# --- create, update, list ----------------------------------------------------------------------


async def create_territory(
    session: AsyncSession, actor: Principal, data: TerritoryCreate
) -> Territory:
    if await session.get(Territory, data.code) is not None:
        raise Conflict(f"Territory {data.code} exists")
    parent = None
    if data.parent_code is not None:
        parent = await require_territory(session, data.parent_code, loc=("body", "parent_code"))
    problem = parent_error(data.level, parent.level if parent else None)
    if problem:
        loc = ["body", "parent_code" if parent else "level"]
        raise Invalid(problem, errors=[{"loc": loc, "msg": problem, "type": "hierarchy"}])
    territory = new_territory(parent, data.code, data.level.value, i18n(data.name))
    session.add(territory)
    audit.record(session, actor, "territory.create", "territory", territory.code, level=data.level)
    await session.flush()
    return territory


async def update_territory(
    session: AsyncSession, actor: Principal, code: str, data: TerritoryUpdate
) -> Territory:
    territory = await get_territory(session, code)
    changes = data.model_dump(exclude_unset=True)
    if "name" in changes:
        territory.name = i18n(changes["name"])
    if "parent_code" in changes and changes["parent_code"] != territory.parent_code:
        await _move(session, territory, changes["parent_code"])
    audit.record(session, actor, "territory.update", "territory", code, changes=changes)
    await session.flush()
    return territory


async def _move(session: AsyncSession, territory: Territory, parent_code: str | None) -> None:
    """Re-parent a territory; its descendants' paths follow in one UPDATE."""
    parent = None
    if parent_code is not None:
        parent = await require_territory(session, parent_code, loc=("body", "parent_code"))
        if parent.path.startswith(territory.path):
            raise Invalid(
                "A territory cannot move under itself or its descendants",
                errors=[{"loc": ["body", "parent_code"], "msg": "cycle", "type": "hierarchy"}],
            )
    problem = parent_error(territory.level, parent.level if parent else None)
    if problem:
        raise Invalid(
            problem,
            errors=[{"loc": ["body", "parent_code"], "msg": problem, "type": "hierarchy"}],
        )
    old_path, new_path = territory.path, _child_path(parent, territory.code)
    path = col(Territory.path)
    await session.exec(
        update(Territory)
        .where(path > old_path, path < old_path + _SUBTREE_END)
        .values(path=literal(new_path, String).concat(func.substr(path, len(old_path) + 1)))
        .execution_options(synchronize_session=False)
    )
    territory.parent_code = parent.code if parent else None
    territory.path = new_path
    await _roll_up_subtree(session, territory, parent)


async def _roll_up_subtree(
    session: AsyncSession, territory: Territory, parent: Territory | None
) -> None:
    """Recompute region_code and district_code across a moved subtree (paths already moved).

    A descendant's district is the district-level territory between the moved one and itself,
    else the new parent's district. Codes of one district go in one chunked UPDATE.
    """
    await session.flush()  # the moved territory's own new path, so the range below finds it
    rows = (
        await session.exec(
            select(Territory.code, Territory.level, Territory.path).where(
                path_in_subtree(col(Territory.path), territory.path)
            )
        )
    ).all()
    levels = {code: level for code, level, _ in rows}
    region_code = ancestor_codes(territory.path)[0]
    outer_district = parent.district_code if parent else None
    depth = len(ancestor_codes(territory.path)) - 1
    by_district: dict[str | None, list[str]] = {}
    for code, _, member_path in rows:
        chain = ancestor_codes(member_path)[depth:]
        inner = [c for c in chain if levels.get(c) == TerritoryLevel.district]
        by_district.setdefault(inner[0] if inner else outer_district, []).append(code)
    for district_code, codes in by_district.items():
        for start in range(0, len(codes), _CHUNK):
            await session.exec(
                update(Territory)
                .where(col(Territory.code).in_(codes[start : start + _CHUNK]))
                .values(region_code=region_code, district_code=district_code)
                .execution_options(synchronize_session=False)
            )
        if territory.code in codes:
            territory.district_code = district_code
    territory.region_code = region_code


async def list_territories(
    session: AsyncSession,
    *,
    level: TerritoryLevel | None,
    parent_code: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Territory], str | None]:
    """Creation order, keyset-paginated on (created_at, code)."""
    statement = select(Territory)
    if level is not None:
        statement = statement.where(col(Territory.level) == level.value)
    if parent_code is not None:
        statement = statement.where(col(Territory.parent_code) == parent_code)
    created, code = col(Territory.created_at), col(Territory.code)
    if cursor is not None:
        after_created, after_code = decode_cursor_key(cursor)
        statement = statement.where(
            or_(created > after_created, and_(created == after_created, code > after_code))
        )
    statement = statement.order_by(created, code).limit(limit + 1)
    rows = list((await session.exec(statement)).all())
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(last.created_at, last.code)


# --- CSV import ---------------------------------------------------------------------------------


async def territories_by_code(session: AsyncSession, codes: Iterable[str]) -> dict[str, Territory]:
    """The existing territories among `codes`, in a few chunked queries."""
    found: dict[str, Territory] = {}
    wanted = sorted(set(codes))
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        rows = await session.exec(select(Territory).where(col(Territory.code).in_(chunk)))
        found.update({row.code: row for row in rows})
    return found


async def import_territories(
    session: AsyncSession, actor: Principal, content: bytes, limiter: CapacityLimiter
) -> int:
    """All lines or none: any bad line, or a code that exists, refuses the whole file."""
    rows = await run_off_loop(limiter, parse_csv_upload, content, TERRITORY_COLUMNS)
    existing = await territories_by_code(
        session, [row["code"] for _, row in rows] + [row["parent_code"] for _, row in rows]
    )
    added, errors = await run_off_loop(limiter, _territories_from_rows, rows, existing)
    if errors:
        raise refuse_file(errors)
    if not rows:
        raise Invalid("The file has no data lines", errors=[file_error(None, "no data lines")])
    await flush_in_chunks(session, list(added.values()))
    audit.record(session, actor, "territory.import", "territory", None, count=len(added))
    await session.flush()
    return len(added)


def _territories_from_rows(
    rows: Sequence[tuple[int, Mapping[str, str]]], existing: Mapping[str, Territory]
) -> tuple[dict[str, Territory], list[dict[str, Any]]]:
    """The new territories of an import, or the errors of its lines."""
    errors: list[dict[str, Any]] = []
    added: dict[str, Territory] = {}
    first_line: dict[str, int] = {}
    for line, row in rows:
        territory, problem = _territory_from_row(row, existing, added, first_line)
        if problem:
            errors.append(file_error(line, problem))
        elif territory is not None:
            added[territory.code] = territory
        first_line.setdefault(row["code"], line)
    return added, errors


def _territory_from_row(
    row: Mapping[str, str],
    existing: Mapping[str, Territory],
    added: Mapping[str, Territory],
    first_line: Mapping[str, int],
) -> tuple[Territory | None, str | None]:
    code, parent_code, level = row["code"], row["parent_code"] or None, row["level"]
    if not re.match(CODE_PATTERN, code):
        return None, f"code {code!r} is not a territory code"
    if code in existing:
        return None, f"territory {code} exists"
    if code in first_line:
        return None, f"code {code} repeats line {first_line[code]}"
    if level not in LEVEL_RANK:
        return None, f"level {level!r} is not one of {', '.join(LEVEL_RANK)}"
    name = {lang: row[f"name_{lang}"] for lang in LANGUAGES if row[f"name_{lang}"]}
    if not name:
        return None, "at least one of name_kk, name_ru, name_en is needed"
    for lang, text in name.items():
        if len(text) > MAX_NAME_LENGTH:
            return None, f"name_{lang} is longer than {MAX_NAME_LENGTH} characters"
    parent = None
    if parent_code is not None:
        parent = added.get(parent_code) or existing.get(parent_code)
        if parent is None:
            return None, f"parent {parent_code} is unknown (parents must come first)"
    problem = parent_error(level, parent.level if parent else None)
    if problem:
        return None, problem
    return new_territory(parent, code, level, name), None


# --- demo data ---------------------------------------------------------------------------------


def read_territory_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


async def upsert_territories(session: AsyncSession, rows: Iterable[Mapping[str, str]]) -> int:
    """Insert territories not yet present (parents first); existing codes are left as they are."""
    rows = list(rows)
    existing = await territories_by_code(
        session,
        {row["code"] for row in rows} | {row["parent_code"] for row in rows if row["parent_code"]},
    )
    added = 0
    for row in rows:
        if row["code"] in existing:
            continue
        parent_code = row["parent_code"] or None
        parent = existing.get(parent_code) if parent_code else None
        if parent_code and parent is None:
            raise Invalid(f"territory {row['code']}: parent {parent_code} is unknown")
        name = {lang: row[f"name_{lang}"] for lang in LANGUAGES if row.get(f"name_{lang}")}
        territory = new_territory(parent, row["code"], row["level"], name)
        session.add(territory)
        existing[territory.code] = territory
        added += 1
    await session.flush()
    return added
