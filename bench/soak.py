"""Soak: mixed traffic at a steady rate for minutes; throughput, errors and server RSS per minute.

    .venv/bin/python bench/soak.py [--minutes 10] [--rate 40] [--workers 1]

A real `kenes serve` on loopback on a throw-away PostgreSQL database (demo data loaded); this
process is the load generator (asyncio + httpx, open loop: requests start on a fixed schedule
whether or not earlier ones have finished, so a slow server shows up as latency and lateness,
not as a lower offered rate). The mix: 70% submissions (a collector token, a fresh client id
each), 20% listings (a filtered page of responses), 10% aggregates (a cross-tab). Every minute it
prints the requests done, throughput, errors (non-2xx or transport), p50/p95 latency and the
server's RSS; at the end, the RSS trend: it must not grow steadily.
"""

import argparse
import asyncio
import json
import random
import statistics
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
from harness import (
    PIDS,
    admin_token,
    kenes_server_with_workers,
    prepare_kenes,
    rss_of_tree_mb,
    scratch_database,
)

MIX = (("submit", 0.7), ("list", 0.2), ("aggregate", 0.1))
IN_FLIGHT = 64  # beyond this many unfinished requests, new ones wait (counted as late)


@dataclass
class Minute:
    done: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    late: int = 0


def submission() -> dict[str, Any]:
    rng = random.Random()
    return {
        "id": str(uuid.uuid4()),
        "respondent": {
            "group": rng.choice(["student", "ngo", "sme", "lawyer"]),
            "gender": rng.choice(["female", "male", "undisclosed"]),
            "age_band": rng.choice(["18-24", "25-34", "35-44"]),
            "territory_code": rng.choice(["750000000", "710000000", "192010001"]),
        },
        "answers": {
            "aware": "yes",
            "channels_known": ["hearings", "petitions"],
            "participated": True,
            "times_participated": rng.randint(1, 6),
            "info_sources": rng.sample(["tv", "social", "press", "ngos"], 2),
            "trust_akimat": rng.randint(1, 5),
            "influence": rng.randint(1, 5),
            "information_access": "difficult",
            "suggestions": "Больше онлайн-слушаний",
        },
        "language": rng.choice(["ru", "kk"]),
        "channel": "mobile",
    }


async def one(
    client: httpx.AsyncClient, kind: str, survey: str, auth: dict[str, dict[str, str]]
) -> httpx.Response:
    base = f"/api/v1/questionnaires/{survey}"
    if kind == "submit":
        return await client.post(f"{base}/responses", json=submission(), headers=auth["collector"])
    if kind == "list":
        params = random.choice(
            [{"gender": "female"}, {"territory_code": "75"}, {"group": "student"}, {}]
        )
        return await client.get(
            f"{base}/responses", params={**params, "limit": 50}, headers=auth["admin"]
        )
    by = random.choice(["gender", "region", "group,gender", "answer:aware"])
    return await client.get(f"{base}/aggregates", params={"by": by}, headers=auth["admin"])


async def soak(base: str, survey: str, auth: dict[str, dict[str, str]], args: Any) -> None:
    pid = PIDS[base]
    kinds = [kind for kind, _ in MIX]
    weights = [weight for _, weight in MIX]
    rng = random.Random(2024)
    gate = asyncio.Semaphore(IN_FLIGHT)
    minutes: list[Minute] = []
    rss: list[float] = []
    pending: set[asyncio.Task[None]] = set()
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    print(f"soak: {args.minutes} min at {args.rate} req/s, mix {dict(MIX)}, server pid {pid}")
    print(f"minute 0: server RSS {rss_of_tree_mb(pid):.1f} MB")
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:

        async def request(kind: str, minute: Minute) -> None:
            started = time.perf_counter()
            try:
                reply = await one(client, kind, survey, auth)
                ok = 200 <= reply.status_code < 300
                outcome = str(reply.status_code)
            except httpx.HTTPError as error:
                ok, outcome = False, type(error).__name__
            finally:
                gate.release()
            minute.latency[kind].append(time.perf_counter() - started)
            minute.done[kind] += 1
            if not ok:
                minute.errors[f"{kind}:{outcome}"] += 1

        start = time.monotonic()
        interval = 1 / args.rate
        sent = 0
        for index in range(args.minutes):
            minute = Minute()
            minutes.append(minute)
            end = start + (index + 1) * 60
            while (due := start + sent * interval) < end:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                if gate.locked():
                    minute.late += 1
                await gate.acquire()
                task = asyncio.create_task(request(rng.choices(kinds, weights)[0], minute))
                pending.add(task)
                task.add_done_callback(pending.discard)
                sent += 1
            rss.append(rss_of_tree_mb(pid))
            report(index + 1, minute, rss[-1])
        await asyncio.gather(*pending)

    total = sum(sum(m.done.values()) for m in minutes)
    errors = sum(sum(m.errors.values()) for m in minutes)
    print(f"total: {total} requests, {errors} errors, {total / (60 * args.minutes):.1f} req/s")
    if len(rss) >= 2:
        half = len(rss) // 2
        first, second = statistics.mean(rss[:half]), statistics.mean(rss[half:])
        growth = (rss[-1] - rss[0]) / max(1, len(rss) - 1)
        print(
            f"RSS: first {rss[0]:.1f} MB, last {rss[-1]:.1f} MB, mean of first half "
            f"{first:.1f} MB, second half {second:.1f} MB, {growth:+.2f} MB/min"
        )


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def report(number: int, minute: Minute, rss: float) -> None:
    done = sum(minute.done.values())
    figures = {
        kind: f"{minute.done[kind]} p50 {_percentile(minute.latency[kind], 0.5):.0f}ms "
        f"p95 {_percentile(minute.latency[kind], 0.95):.0f}ms"
        for kind, _ in MIX
    }
    print(
        f"minute {number}: {done} done, {done / 60:.1f} req/s, "
        f"errors {sum(minute.errors.values())} {dict(minute.errors) or ''}, late {minute.late}, "
        f"RSS {rss:.1f} MB | " + json.dumps(figures, ensure_ascii=False),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--rate", type=float, default=40, help="requests per second, all kinds")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    with scratch_database() as dsn:
        survey, collector = prepare_kenes(dsn)
        with kenes_server_with_workers(dsn, args.workers) as base:
            auth = {
                "collector": {"Authorization": f"Bearer {collector}"},
                "admin": {"Authorization": f"Bearer {admin_token(base)}"},
            }
            asyncio.run(soak(base, survey, auth, args))


if __name__ == "__main__":
    main()
