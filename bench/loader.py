"""Loading through the API: a process of its own that posts prepared batch files.

    .venv/bin/python bench/loader.py --url URL --token TOKEN --dir DIR --first 0 --count 100 \\
        [--concurrency 3]

Posts DIR/batch-NNNNN.json (request bodies of 1000 responses each, written by bench/forms.py)
to POST {URL}/responses/batch with a collector token, `concurrency` requests in flight, and
prints one JSON line: responses and answers sent, seconds, statuses of the items, and the first
errors (HTTP errors and items that were not `created`). The bodies are read from disk before the
clock starts, so this process spends its time waiting for the server, not making JSON.
`post()` runs it from the other benchmarks.
"""

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson

HERE = Path(__file__).resolve().parent


async def _post(args: argparse.Namespace) -> dict[str, Any]:
    directory = Path(args.dir)
    manifest = json.loads((directory / "manifest.json").read_text())
    indexes = list(range(args.first, args.first + args.count))
    bodies = {i: (directory / f"batch-{i:05d}.json").read_bytes() for i in indexes}
    responses = sum(manifest[str(i)][0] for i in indexes)
    answers = sum(manifest[str(i)][1] for i in indexes)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in indexes:
        queue.put_nowait(index)
    statuses: Counter[str] = Counter()
    errors: list[str] = []
    headers = {"Authorization": f"Bearer {args.token}", "Content-Type": "application/json"}
    url = f"{args.url}/responses/batch"

    async def worker(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            index = queue.get_nowait()
            try:
                reply = await http.post(url, content=bodies[index], headers=headers)
            except httpx.HTTPError as error:
                statuses["transport_error"] += 1000
                errors.append(f"batch {index}: {type(error).__name__} {error}")
                continue
            if reply.status_code != 200:
                statuses[f"http_{reply.status_code}"] += 1000
                errors.append(f"batch {index}: HTTP {reply.status_code} {reply.text[:500]}")
                continue
            for result in orjson.loads(reply.content)["results"]:
                statuses[result["status"]] += 1
                if result["status"] != "created" and len(errors) < 20:
                    errors.append(f"batch {index} item {result['index']}: {result}"[:800])

    limits = httpx.Limits(max_connections=args.concurrency)
    async with httpx.AsyncClient(timeout=args.timeout, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(args.concurrency)))
        seconds = time.perf_counter() - started
    return {
        "responses": responses,
        "answers": answers,
        "seconds": seconds,
        "statuses": dict(statuses),
        "errors": errors[:20],
        "concurrency": args.concurrency,
    }


def post(
    url: str, token: str, directory: Path, first: int, count: int, concurrency: int, limit: float
) -> dict[str, Any]:
    """Runs the loader in a process of its own (killed after `limit` seconds); its JSON line."""
    command = [
        sys.executable, str(HERE / "loader.py"), "--url", url, "--token", token,
        "--dir", str(directory), "--first", str(first), "--count", str(count),
        "--concurrency", str(concurrency),
    ]  # fmt: skip
    try:
        done = subprocess.run(  # noqa: S603
            command, capture_output=True, text=True, timeout=limit, check=False
        )
    except subprocess.TimeoutExpired as expired:
        raise SystemExit(f"!! loading ran over its limit of {limit:.0f} s: stopping") from expired
    if done.returncode != 0:
        raise RuntimeError(f"loader failed: {done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def report(label: str, result: dict[str, Any]) -> tuple[float, float] | None:
    """Prints the load's rates, or its errors and no rate; returns (responses/s, answers/s)."""
    created = result["statuses"].get("created", 0)
    failed = sum(count for status, count in result["statuses"].items() if status != "created")
    if failed or created != result["responses"]:
        print(
            f"!! {label}: {failed} items not created ({result['statuses']}); no rate from this run:"
        )
        for error in result["errors"]:
            print("   ", error)
        return None
    rates = result["responses"] / result["seconds"], result["answers"] / result["seconds"]
    print(
        f"{label}: {result['responses']:,} responses ({result['answers']:,} answers) in "
        f"{result['seconds']:.1f} s, {result['concurrency']} batches in flight: "
        f"{rates[0]:,.0f} responses/s, {rates[1]:,.0f} answers/s",
        flush=True,
    )
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="…/api/v1/questionnaires/{id}")
    parser.add_argument("--token", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300)
    print(json.dumps(asyncio.run(_post(parser.parse_args()))))


if __name__ == "__main__":
    main()
