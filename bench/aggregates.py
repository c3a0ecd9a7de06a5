"""Survey aggregates over 1,000,000 responses: the API against hand-written SQL, in one run.

    .venv/bin/python bench/aggregates.py [--responses 1000000] [--repeat 5]

Kenes under uvicorn (1 worker) on a throw-away PostgreSQL database holding the demo survey (10
questions) whose responses are cloned in SQL up to N. This process times, over loopback, the
median of `repeat` requests of GET .../aggregates for
  A: by=gender,region over 3 questions (aware, trust_akimat, information_access)
  B: by=answer:aware for one question (trust_akimat)
and, on the same data, the best hand-written SQL for the same grouped counts (asyncpg).
Targets: A at most 300 ms, and each at most 2x its hand-written SQL.
"""

import argparse
import asyncio
import statistics
import time

import asyncpg
import httpx
from harness import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    clone,
    kenes_server,
    prepare_kenes,
    scratch_database,
)

CASE_A = {"by": "gender,region", "questions": "aware,trust_akimat,information_access"}
CASE_B = {"by": "answer:aware", "questions": "trust_akimat"}
# Slots of the demo survey (app/services/answers.py): aware k1, information_access k5,
# trust_akimat x2 (integer times_participated is x1).
# The best hand-written form found: one scan grouped by the dimensions and the three answers
# (three separate GROUP BY queries took about twice as long), grouped by territory first and
# joined to the territory table per group rather than per response (joining 1M rows cost ~30 ms).
HAND_A = [
    """SELECT g.gender, t.region_code, g.k1, g.x2, g.k5, sum(g.n) FROM (
         SELECT r.gender, r.territory_code, r.k1, r.x2, r.k5, count(*) AS n FROM response r
         WHERE r.questionnaire_id = $1 GROUP BY 1, 2, 3, 4, 5) g
       LEFT JOIN territory t ON t.code = g.territory_code GROUP BY 1, 2, 3, 4, 5"""
]
HAND_B = [
    """SELECT r.k1, r.x2, count(*) FROM response r
       WHERE r.questionnaire_id = $1 AND r.x2 IS NOT NULL GROUP BY 1, 2"""
]


async def median_ms(action: object, repeat: int) -> float:
    await action()  # type: ignore[operator]
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        await action()  # type: ignore[operator]
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


async def measure(base: str, dsn: str, survey_id: str, repeat: int) -> None:
    async with httpx.AsyncClient(timeout=300) as http:
        token = (
            await http.post(
                f"{base}/api/v1/auth/token",
                data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
            )
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        url = f"{base}/api/v1/questionnaires/{survey_id}/aggregates"

        def api(params: dict[str, str]) -> object:
            async def call() -> None:
                reply = await http.get(url, params={**params, "min_cell": "5"}, headers=headers)
                reply.raise_for_status()

            return call

        connection = await asyncpg.connect(dsn)

        def sql(queries: list[str]) -> object:
            async def call() -> None:
                for query in queries:
                    await connection.fetch(query, survey_id)

            return call

        for name, params, hand in (("A", CASE_A, HAND_A), ("B", CASE_B, HAND_B)):
            through_api = await median_ms(api(params), repeat)
            by_hand = await median_ms(sql(hand), repeat)
            print(
                f"case {name} {params}: API median {through_api:.0f} ms, hand-written SQL "
                f"median {by_hand:.0f} ms, ratio {through_api / by_hand:.2f}"
            )
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with scratch_database() as dsn:
        survey_id, _ = prepare_kenes(dsn)
        started = time.perf_counter()
        clone(dsn, survey_id, args.responses)
        print(f"{args.responses:,} responses loaded in {time.perf_counter() - started:.0f} s")
        with kenes_server(dsn) as base:
            asyncio.run(measure(base, dsn, survey_id, args.repeat))


if __name__ == "__main__":
    main()
