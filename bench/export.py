"""Export memory: peak RSS of the server while streaming N responses as CSV.

    .venv/bin/python bench/export.py [--responses 1000000]

Kenes under uvicorn (1 worker) on a throw-away PostgreSQL database. The demo survey's 400
responses are cloned in SQL (new ids, later times) up to N; this process then streams
GET .../responses/export?format=csv over loopback and samples the server's VmRSS every 50 ms.
Target: peak RSS under 150 MB for 1,000,000 responses.
"""

import argparse
import asyncio
import time

import httpx
from harness import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    PIDS,
    clone,
    kenes_server,
    prepare_kenes,
    rss_mb,
    scratch_database,
)


async def stream(base: str, survey_id: str) -> tuple[int, int, float, float, float]:
    pid = PIDS[base]
    async with httpx.AsyncClient(timeout=600) as http:
        token = (
            await http.post(
                f"{base}/api/v1/auth/token",
                data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
            )
        ).json()["access_token"]
        before = rss_mb(pid)
        peak = before
        lines = size = 0
        started = time.perf_counter()
        last_sample = 0.0
        url = f"{base}/api/v1/questionnaires/{survey_id}/responses/export"
        async with http.stream(
            "GET", url, params={"format": "csv"}, headers={"Authorization": f"Bearer {token}"}
        ) as reply:
            reply.raise_for_status()
            async for chunk in reply.aiter_bytes():
                size += len(chunk)
                lines += chunk.count(b"\n")
                now = time.perf_counter()
                if now - last_sample > 0.05:
                    peak, last_sample = max(peak, rss_mb(pid)), now
        elapsed = time.perf_counter() - started
        peak = max(peak, rss_mb(pid))
    return lines - 1, size, before, peak, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=1_000_000)
    args = parser.parse_args()
    with scratch_database() as dsn:
        survey_id, _ = prepare_kenes(dsn)
        started = time.perf_counter()
        clone(dsn, survey_id, args.responses)
        print(f"loaded in {time.perf_counter() - started:.0f} s")
        with kenes_server(dsn) as base:
            rows, size, before, peak, elapsed = asyncio.run(stream(base, survey_id))
    print(
        f"exported {rows:,} responses ({size / 1e6:,.0f} MB of CSV) in {elapsed:.1f} s; "
        f"server RSS {before:.0f} MB before, peak {peak:.0f} MB (target < 150 MB)"
    )


if __name__ == "__main__":
    main()
