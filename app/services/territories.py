"""Territory rules and queries."""

import csv
from collections.abc import Iterable, Mapping
from pathlib import Path

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.errors import Invalid
from app.models.territories import Territory


def read_territory_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


async def upsert_territories(session: AsyncSession, rows: Iterable[Mapping[str, str]]) -> int:
    """Insert territories not yet present (parents first); existing codes are left as they are."""
    rows = list(rows)
    codes = {row["code"] for row in rows} | {
        row["parent_code"] for row in rows if row["parent_code"]
    }
    existing = {
        territory.code: territory
        for territory in (
            await session.exec(select(Territory).where(col(Territory.code).in_(codes)))
        )
    }
    added = 0
    for row in rows:
        if row["code"] in existing:
            continue
        parent_code = row["parent_code"] or None
        parent = existing.get(parent_code) if parent_code else None
        if parent_code and parent is None:
            raise Invalid(f"territory {row['code']}: parent {parent_code} is unknown")
        territory = Territory(
            code=row["code"],
            parent_code=parent_code,
            level=row["level"],
            name={
                lang: row[f"name_{lang}"] for lang in ("kk", "ru", "en") if row.get(f"name_{lang}")
            },
            path=f"{parent.path if parent else '/'}{row['code']}/",
        )
        session.add(territory)
        existing[territory.code] = territory
        added += 1
    await session.flush()
    return added
