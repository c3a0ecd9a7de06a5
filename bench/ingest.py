"""Batch ingest: responses per second through POST .../responses/batch, 1000 per request.

    .venv/bin/python bench/ingest.py [--batches 40] [--concurrency 2]

Kenes under uvicorn (1 worker) on a throw-away PostgreSQL database; this process (separate from
the server) sends batches of 1000 distinct, valid Almaty-survey responses over loopback with a
collector token. Target: at least 20,000 responses/s.
"""

import argparse
import asyncio
import random
import time
import uuid

import httpx
from harness import kenes_server, prepare_kenes, scratch_database

GROUPS = ["student", "ngo", "sme", "lawyer", "political_scientist", "organisation_expert"]
PLACES = ["750000000", "192010001", "192210001", "710000000", None]


def item(rng: random.Random) -> dict[str, object]:
    participated = rng.random() < 0.3
    answers: dict[str, object] = {
        "aware": rng.choice(["yes", "partly", "no"]),
        "participated": participated,
        "trust_akimat": rng.randint(1, 5),
        "influence": rng.randint(1, 5),
        "information_access": rng.choice(["easy", "difficult", "very_difficult", "never_tried"]),
        "info_sources": rng.sample(["tv", "social", "akimat_site", "press", "people", "ngos"], 2),
    }
    if answers["aware"] != "no":
        answers["channels_known"] = rng.sample(["hearings", "reception", "petitions"], 2)
    if participated:
        answers["times_participated"] = rng.randint(1, 9)
    place = rng.choice(PLACES)
    return {
        "id": str(uuid.uuid4()),
        "respondent": {
            "group": rng.choice(GROUPS),
            "gender": rng.choice(["female", "male", "undisclosed"]),
            "age_band": rng.choice(["18-24", "25-34", "35-44", "45-54"]),
            **({"territory_code": place} if place else {}),
        },
        "answers": answers,
        "language": rng.choice(["kk", "ru", "en"]),
        "channel": rng.choice(["web", "mobile", "interview", "paper"]),
    }


async def ingest(base: str, survey_id: str, token: str, batches: int, concurrency: int) -> float:
    rng = random.Random(7)
    payloads = [{"responses": [item(rng) for _ in range(1000)]} for _ in range(batches)]
    url = f"{base}/api/v1/questionnaires/{survey_id}/responses/batch"
    queue: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    for payload in payloads:
        queue.put_nowait(payload)
    created = 0

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal created
        while not queue.empty():
            payload = queue.get_nowait()
            reply = await http.post(url, json=payload, headers={"Authorization": f"Bearer {token}"})
            reply.raise_for_status()
            created += sum(r["status"] == "created" for r in reply.json()["results"])

    async with httpx.AsyncClient(timeout=120) as http:
        started = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    assert created == batches * 1000, created
    return created / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    with scratch_database() as dsn:
        survey_id, token = prepare_kenes(dsn)
        with kenes_server(dsn) as base:
            rate = asyncio.run(ingest(base, survey_id, token, args.batches, args.concurrency))
    print(f"batch ingest: {rate:,.0f} responses/s ({args.batches} x 1000, "
          f"{args.concurrency} in flight) (target >= 20,000)")  # fmt: skip


if __name__ == "__main__":
    main()
