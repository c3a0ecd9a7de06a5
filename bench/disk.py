"""Disk: bytes per stored answer, Kenes (through the API) against the hand-written typed table.

    .venv/bin/python bench/disk.py [--form survey|wide|both] [--survey-responses 200000]
        [--wide-responses 20000] [--questions-scale 1.0]

How it is measured, per form (bench/forms.py), on a throw-away PostgreSQL database on 127.0.0.1:
  1. demo data, the form published and a collector made through the API; the responses are
     generated to disk; then VACUUM ANALYZE and CHECKPOINT, and pg_database_size() is read;
  2. the responses are loaded through the batch API (bench/loader.py); VACUUM ANALYZE,
     CHECKPOINT, pg_database_size() again: the growth is everything the load added (tables,
     indexes, TOAST, free-space and visibility maps; not WAL), whatever the layout;
  3. the same batch files are COPYed into hand.<form>_mask (multiple choice as a bigint mask) and
     hand.<form>_array (smallint[]) (bench/hand.py: no indexes, no response id); VACUUM ANALYZE,
     CHECKPOINT; pg_total_relation_size() of each.
Bytes per answer = size / answers, an answer being one answered question (a multiple-choice
answer is one). Target (issue 11): Kenes at most 2x the hand-written table (the smaller layout).
The relations that grew most in step 2 are listed (read from the catalog, for the record).
For the record too, `--folded` sizes one table per answer page that also holds the head row
(id, times, fingerprint as 32 bytes, submitter, name), with the primary key and the listing's
index and nothing else: the least a per-response layout with exactly-once and a listing costs.
"""

import argparse
import asyncio
import uuid
from typing import Any

import asyncpg
import hand
from harness import phase
from stage import batches_for, database_size, stage, vacuum

RELATIONS = """
SELECT n.nspname || '.' || c.relname AS name, pg_total_relation_size(c.oid) AS bytes
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'hand')
  AND n.nspname NOT LIKE 'pg_toast%'
"""


async def fetch(dsn: str, sql: str) -> list[Any]:
    connection = await asyncpg.connect(dsn)
    try:
        return list(await connection.fetch(sql))
    finally:
        await connection.close()


async def folded(dsn: str, questionnaire_id: str) -> tuple[int, list[str]]:
    """Bytes of the questionnaire's answer pages with the head row folded into the first page
    (CREATE TABLE AS, then the primary key and the listing's index; the other pages and the
    repeats' tables as they are), and the tables counted."""
    connection = await asyncpg.connect(dsn)
    try:
        literal = f"'{uuid.UUID(questionnaire_id)}'"  # a UUID: safe to inline in DDL
        tables = [
            r["relname"]
            for r in await connection.fetch(
                "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname LIKE 'answers%'"
            )
        ]
        ours = []
        for table in tables:
            if await connection.fetchval(
                f"SELECT EXISTS (SELECT FROM {table} a JOIN response r ON r.id = a.response_id"
                f" WHERE r.questionnaire_id = {literal})"
            ):
                ours.append(table)
        first = min(
            (t for t in ours if t.rsplit("_p", 1)[-1].isdigit()),
            key=lambda t: int(t.rsplit("_p", 1)[-1]),
        )
        await connection.execute("CREATE SCHEMA IF NOT EXISTS folded")
        await connection.execute(
            f"CREATE TABLE folded.{first} AS SELECT r.id, r.received_at, r.started_at,"
            " decode(r.content_hash, 'hex') AS content_hash, r.submitted_by_user,"
            " r.submitted_by_collector, r.instance_name, a.* FROM response r"
            f" JOIN {first} a ON a.response_id = r.id WHERE r.questionnaire_id = {literal}"
        )
        await connection.execute(f"ALTER TABLE folded.{first} DROP COLUMN response_id")
        await connection.execute(f"ALTER TABLE folded.{first} ADD PRIMARY KEY (id)")
        await connection.execute(f"CREATE INDEX ON folded.{first} (received_at, id)")
        await connection.execute(f"VACUUM ANALYZE folded.{first}")
        total = 0
        for table in ours:
            name = f"folded.{first}" if table == first else table
            total += await connection.fetchval(f"SELECT pg_total_relation_size('{name}')")
        return total, ours
    finally:
        await connection.close()


def measure(name: str, responses: int, scale: float, fold: bool = False) -> str:
    with stage(name, scale) as current:
        batches = batches_for(responses)
        current.generate(batches)
        with phase("VACUUM ANALYZE, CHECKPOINT", 600):
            vacuum(current.dsn)
        before = database_size(current.dsn)
        relations_before = {
            r["name"]: r["bytes"] for r in asyncio.run(fetch(current.dsn, RELATIONS))
        }
        current.load(batches, f"load {responses:,} through the API")
        with phase("VACUUM ANALYZE, CHECKPOINT", 600):
            vacuum(current.dsn)
        after = database_size(current.dsn)
        relations_after = {
            r["name"]: r["bytes"] for r in asyncio.run(fetch(current.dsn, RELATIONS))
        }
        with phase("typed copies", 120 + batches * 4):
            asyncio.run(current.copy(("mask", "array")))
        with phase("VACUUM ANALYZE, CHECKPOINT", 600):
            vacuum(current.dsn)
        sizes = {
            layout: asyncio.run(fetch(current.dsn, "SELECT pg_total_relation_size("
                                      f"'hand.{hand.table_name(current.form, layout)}')"))[0][0]
            for layout in ("mask", "array")
        }  # fmt: skip
        answers = current.answers()
        if fold:
            size, pages = asyncio.run(folded(current.dsn, str(current.questionnaire_id)))
            print(f"    folded (head row in the first answer page; {len(pages)} tables): "
                  f"{size / 1e6:,.1f} MB, {size / answers:.1f} bytes/answer")  # fmt: skip
    growth = after - before
    print(f"{name}: {responses:,} responses, {answers:,} answers; pg_database_size "
          f"{before / 1e6:,.1f} MB -> {after / 1e6:,.1f} MB")  # fmt: skip
    grown = sorted(
        ((relations_after.get(k, 0) - relations_before.get(k, 0), k) for k in relations_after),
        reverse=True,
    )
    for delta, relation in grown[:8]:
        if delta > 0:
            print(f"    grew {delta / 1e6:9,.1f} MB  {relation}")
    kenes = growth / answers
    for layout, size in sizes.items():
        print(f"    hand.{hand.table_name(current.form, layout)}: {size / 1e6:,.1f} MB, "
              f"{size / answers:.1f} bytes/answer")  # fmt: skip
    best = min(sizes.values()) / answers
    ratio = kenes / best
    return (
        f"disk {name:6} Kenes {kenes:6.1f} bytes/answer, hand {best:5.1f} bytes/answer: "
        f"ratio {ratio:.2f} (target <= 2.0) {'MET' if ratio <= 2 else 'MISSED'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--form", choices=["survey", "wide", "both"], default="both")
    parser.add_argument("--survey-responses", type=int, default=200_000)
    parser.add_argument("--wide-responses", type=int, default=20_000)
    parser.add_argument("--questions-scale", type=float, default=1.0,
                        help="shrink the 300-question form (servers capped below 300)")  # fmt: skip
    parser.add_argument("--folded", action="store_true",
                        help="also size the answer pages folded with their head rows")  # fmt: skip
    args = parser.parse_args()
    forms = ["survey", "wide"] if args.form == "both" else [args.form]
    lines = []
    for name in forms:
        responses = args.survey_responses if name == "survey" else args.wide_responses
        lines.append(measure(name, responses, args.questions_scale, args.folded))
    print("\n".join(["", "summary:", *lines]))


if __name__ == "__main__":
    main()
