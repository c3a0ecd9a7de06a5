"""Subtree queries over 20,000 settlements: timings and query plans on SQLite and PostgreSQL.

    .venv/bin/python bench/territories_subtree.py                       # SQLite, temporary file
    .venv/bin/python bench/territories_subtree.py \\
        --postgres postgresql+asyncpg://postgres@127.0.0.1/postgres     # a throw-away database

2 regions x 10 districts x 20 rural districts x 50 settlements, one consultation per settlement.
Each query is `in_subtree(...)` from app.services.territories, timed as the median of many runs.
"""

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.config import load_settings  # noqa: E402
from app.db import create_engine  # noqa: E402
from app.migrate import upgrade_to_head  # noqa: E402
from app.models.consultations import Consultation  # noqa: E402
from app.models.territories import Territory  # noqa: E402
from app.services.territories import in_subtree  # noqa: E402

REGIONS, DISTRICTS, RURAL, SETTLEMENTS = 2, 10, 20, 50
RUNS = 30


def tree() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    now = datetime.now(UTC)

    def add(code: str, parent: dict[str, Any] | None, level: str) -> dict[str, Any]:
        row = {
            "code": code,
            "parent_code": parent["code"] if parent else None,
            "level": level,
            "name": {"en": code},
            "path": f"{parent['path'] if parent else '/'}{code}/",
            "created_at": now + timedelta(microseconds=len(rows)),
        }
        rows.append(row)
        return row

    for r in range(REGIONS):
        region = add(f"{r + 1}0000000", None, "region")
        for d in range(DISTRICTS):
            district = add(f"{r + 1}{d + 10:02d}00000", region, "district")
            for rd in range(RURAL):
                rural = add(f"{district['code'][:3]}{rd + 10:02d}000", district, "rural_district")
                for s in range(SETTLEMENTS):
                    add(f"{rural['code'][:5]}{s + 100:03d}", rural, "settlement")
    return rows


async def load(engine: AsyncEngine) -> list[dict[str, Any]]:
    rows = tree()
    settlements = [row for row in rows if row["level"] == "settlement"]
    now = datetime.now(UTC)
    consultations = [
        {
            "id": uuid.uuid4(),
            "territory_code": row["code"],
            "host": "akim",
            "starts_at": now,
            "location": "hall",
            "candidate_ids": [],
            "status": "scheduled",
            "history": [],
            "sequence": 0,
            "created_at": now,
            "updated_at": now,
        }
        for row in settlements
    ]
    async with engine.begin() as connection:
        for level in ("region", "district", "rural_district", "settlement"):
            batch = [row for row in rows if row["level"] == level]
            for start in range(0, len(batch), 2000):
                await connection.execute(insert(Territory), batch[start : start + 2000])
        for start in range(0, len(consultations), 2000):
            await connection.execute(insert(Consultation), consultations[start : start + 2000])
        await connection.execute(text("ANALYZE"))
    print(
        f"loaded {len(rows)} territories ({len(settlements)} settlements) and "
        f"{len(consultations)} consultations"
    )
    return rows


async def measure(engine: AsyncEngine, rows: list[dict[str, Any]]) -> None:
    by_level = {row["level"]: row["code"] for row in rows}  # the last of each level
    region = rows[0]["code"]
    cases = [
        ("territory", "region (depth 1)", region),
        ("territory", "district (depth 2)", by_level["district"]),
        ("territory", "rural district (depth 3)", by_level["rural_district"]),
        ("territory", "settlement (depth 4)", by_level["settlement"]),
        ("consultation", "region (depth 1)", region),
        ("consultation", "rural district (depth 3)", by_level["rural_district"]),
    ]
    dialect = engine.dialect
    async with engine.connect() as connection:
        for table, label, code in cases:
            model: Any = Territory if table == "territory" else Consultation
            column = Territory.code if table == "territory" else Consultation.territory_code
            row = (await connection.execute(select(Territory).where(Territory.code == code))).one()
            loaded = Territory(**row._mapping)
            for form, root in (("code", code), ("Territory", loaded)):
                statement = select(func.count()).select_from(model).where(in_subtree(column, root))
                timings = []
                for _ in range(RUNS):
                    started = time.perf_counter()
                    found = (await connection.execute(statement)).scalar_one()
                    timings.append((time.perf_counter() - started) * 1000)
                print(
                    f"\n{table:12} subtree of {label:24} given a {form:9}  rows={found:6}  "
                    f"median {statistics.median(timings):6.2f} ms  min {min(timings):6.2f} ms"
                )
                literal = {"literal_binds": True}
                sql = str(statement.compile(dialect=dialect, compile_kwargs=literal))
                explain = "EXPLAIN QUERY PLAN " if dialect.name == "sqlite" else "EXPLAIN ANALYZE "
                for line in (await connection.execute(text(explain + sql))).all():
                    print("   ", line[-1])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", help="a server URL; a throw-away database is made on it")
    args = parser.parse_args()
    admin = None
    name = f"kenes_bench_{uuid.uuid4().hex[:8]}"
    if args.postgres:
        admin = create_async_engine(make_url(args.postgres), isolation_level="AUTOCOMMIT")
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(args.postgres).set(database=name).render_as_string(hide_password=False)
    else:
        url = f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/bench.db"
    engine = create_engine(load_settings(database_url=url, secret_key="b" * 40), one_shot=True)
    try:
        await upgrade_to_head(engine)
        print(f"database: {engine.dialect.name} {engine.dialect.server_version_info}")
        await measure(engine, await load(engine))
    finally:
        await engine.dispose()
        if admin is not None:
            async with admin.connect() as connection:
                await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await admin.dispose()


if __name__ == "__main__":
    asyncio.run(main())
