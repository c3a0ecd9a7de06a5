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
"""

import argparse
import asyncio
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


def measure(name: str, responses: int, scale: float) -> str:
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
    args = parser.parse_args()
    forms = ["survey", "wide"] if args.form == "both" else [args.form]
    lines = []
    for name in forms:
        responses = args.survey_responses if name == "survey" else args.wide_responses
        lines.append(measure(name, responses, args.questions_scale))
    print("\n".join(["", "summary:", *lines]))


if __name__ == "__main__":
    main()
