"""Export of the 10-question survey: rows/s and the server's peak memory while streaming.

    .venv/bin/python bench/export.py [--responses 1000000] [--concurrency 3]
        [--format csv|xlsx|zip|ndjson|geojson] (several: --format csv,xlsx,zip)

A throw-away PostgreSQL database on 127.0.0.1 gets the demo data and the bench survey
(bench/forms.py), created and published through the API; N seeded responses are loaded through
the batch API by bench/loader.py (a process of its own; its ingest rate is printed too). A fresh
Kenes server (uvicorn, 1 worker) is then started, so that its peak resident memory (VmHWM) covers
start-up and the export only, and this process streams GET .../responses/export?format=csv over
loopback, counting its bytes (and for CSV its rows), while a thread samples the server's RSS
every 50 ms. Targets (issue 11, CSV): at least 100,000 rows/s; server peak RSS under 150 MB.
XLSX and ZIP are compressed, so their rows are not counted: the rate is responses/s.
"""

import argparse
import asyncio
import time

import httpx
from harness import (
    LARGE_BODIES,
    PIDS,
    RssSampler,
    admin_token,
    kenes_server,
    phase,
    rss_mb,
    vm_hwm_mb,
)
from stage import Stage, batches_for, stage, vacuum


async def stream(
    base: str, current: Stage, token: str, fmt: str = "csv"
) -> tuple[int, int, int, float, float]:
    """(data rows, columns, bytes, seconds, this process's CPU seconds) of an export (rows
    and columns counted for CSV only)."""
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{base}/api/v1/questionnaires/{current.questionnaire_id}/responses/export"
    lines = size = 0
    header = b""
    async with httpx.AsyncClient(timeout=600) as http:
        started, cpu = time.perf_counter(), time.process_time()
        async with http.stream("GET", url, params={"format": fmt}, headers=headers) as reply:
            if reply.status_code != 200:
                raise RuntimeError(
                    f"export: HTTP {reply.status_code} {(await reply.aread())[:500]!r}"
                )
            async for chunk in reply.aiter_raw():
                if not lines and len(header) < 65536:
                    header += chunk[:65536]
                size += len(chunk)
                lines += chunk.count(b"\n")
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    if fmt != "csv":
        return 0, 0, size, seconds, cpu
    columns = header.split(b"\n", 1)[0].count(b",") + 1
    return lines - 1, columns, size, seconds, cpu


def report(fmt: str, responses: int, result: tuple[int, int, int, float, float]) -> None:
    rows, columns, size, seconds, cpu = result
    if fmt != "csv":
        print(
            f"{fmt}: {responses:,} responses, {size / 1e6:,.1f} MB in {seconds:.1f} s: "
            f"{responses / seconds:,.0f} responses/s (this client used {cpu:.1f} s of CPU)"
        )
        return
    rate = rows / seconds
    if rows != responses:
        print(f"!! the export has {rows:,} rows for {responses:,} responses loaded")
    print(
        f"exported {rows:,} responses x {columns} columns ({size / 1e6:,.0f} MB of CSV) in "
        f"{seconds:.1f} s: {rate:,.0f} rows/s (target >= 100,000) "
        f"{'MET' if rate >= 100_000 and rows == responses else 'MISSED'} (this client "
        f"used {cpu:.1f} s of CPU reading it)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=1_000_000)
    parser.add_argument("--concurrency", type=int, default=3, help="batches in flight")
    parser.add_argument("--format", default="csv", help="csv, xlsx, zip, ndjson, geojson; a,b")
    args = parser.parse_args()
    formats = args.format.split(",")
    with stage("survey", concurrency=args.concurrency) as current:
        current.load(batches_for(args.responses), f"load {args.responses:,} through the API")
        with phase("VACUUM ANALYZE, CHECKPOINT", 600):
            vacuum(current.dsn)
        for fmt in formats:
            # A fresh server per format: its peak memory is that export's alone.
            with kenes_server(current.dsn, **LARGE_BODIES) as base:
                pid = PIDS[base]
                # Logged in before the export is measured: the login's argon2 hash briefly
                # takes 64 MiB (its memory cost), which is the login's and not the export's.
                token = admin_token(base)
                before = rss_mb(pid)
                limit = 120 + args.responses / 2000 * (1 if fmt == "csv" else 20)
                with phase(f"{fmt} export", limit), RssSampler(pid) as sampler:
                    result = asyncio.run(stream(base, current, token, fmt))
                high_water = vm_hwm_mb(pid)
            report(fmt, args.responses, result)
            peak = sampler.peak
            print(
                f"{fmt}: server RSS {before:.0f} MB before the export, peak {peak:.0f} MB during"
                f" it (highest of {sampler.samples} samples every 50 ms) (target < 150 MB) "
                f"{'MET' if peak < 150 else 'MISSED'}; the process's high-water mark VmHWM "
                f"{high_water:.0f} MB includes start-up and the login's password hash"
            )


if __name__ == "__main__":
    main()
