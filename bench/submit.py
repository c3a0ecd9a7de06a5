"""Single-response submission: Kenes against a baseline app of a few lines, in one run.

    .venv/bin/python bench/submit.py [--seconds 10] [--rounds 2] [--connections 32]
                                     [--principal collector|user]

Both servers run under uvicorn with one worker on loopback, on the same throw-away PostgreSQL
database; wrk (a separate process, 1 thread) posts the same Almaty-survey response with a fresh
client id each time. Kenes validates it against the published questionnaire, authenticates a
collector token and stores it exactly once; the baseline (bench/baseline_app.py) validates it
with Pydantic and INSERTs the JSON with raw asyncpg. Rounds alternate the two servers so that
noise on this shared machine hits both. Target: Kenes >= 60% of the baseline's req/s, p99 <= 2x.
"""

import argparse
import statistics

from harness import (
    PYTHON,
    admin_token,
    dump,
    kenes_env,
    kenes_server,
    prepare_kenes,
    scratch_database,
    server,
    wrk,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--principal",
        choices=["collector", "user"],
        default="collector",
        help="submit with the collector token (field devices) or a user's JWT (the admin)",
    )
    args = parser.parse_args()

    with scratch_database() as dsn:
        survey_id, collector = prepare_kenes(dsn)
        baseline_cmd = [PYTHON, "-m", "uvicorn", "bench.baseline_app:app", "--port", "{port}",
                        "--no-access-log", "--log-level", "warning"]  # fmt: skip
        results: dict[str, list[dict[str, float]]] = {"baseline": [], "kenes": []}
        for round_number in range(args.rounds):
            with server(baseline_cmd, {**kenes_env(dsn), "BENCH_DSN": dsn}, "/docs") as base:
                wrk(base, path="/submit", auth="", seconds=2, connections=args.connections)
                figures = wrk(base, path="/submit", auth="", seconds=args.seconds,
                              connections=args.connections)  # fmt: skip
                results["baseline"].append(figures)
                dump(f"baseline#{round_number + 1}", figures)
            with kenes_server(dsn) as base:
                path = f"/api/v1/questionnaires/{survey_id}/responses"
                token = collector if args.principal == "collector" else admin_token(base)
                auth = f"Bearer {token}"
                wrk(base, path=path, auth=auth, seconds=2, connections=args.connections)
                figures = wrk(base, path=path, auth=auth, seconds=args.seconds,
                              connections=args.connections)  # fmt: skip
                results["kenes"].append(figures)
                dump(f"kenes#{round_number + 1}", figures)

    summary = {
        name: {
            "rps": statistics.median(r["rps"] for r in runs),
            "p99_ms": statistics.median(r["p99_ms"] for r in runs),
            "errors": sum(r["errors"] + r["non2xx"] for r in runs),
        }
        for name, runs in results.items()
    }
    for name, figures in summary.items():
        dump(name, figures)
    failed = {name: figures["errors"] for name, figures in summary.items() if figures["errors"]}
    if failed:
        # A server that answers errors fast is not fast: no ratio from such a run.
        raise SystemExit(f"errors or non-2xx answers, no ratio: {failed}")
    rps_ratio = summary["kenes"]["rps"] / summary["baseline"]["rps"]
    p99_ratio = summary["kenes"]["p99_ms"] / summary["baseline"]["p99_ms"]
    print(f"kenes/baseline req/s ratio: {rps_ratio:.2f} (target >= 0.60)")
    print(f"kenes/baseline p99 ratio:   {p99_ratio:.2f} (target <= 2.00)")


if __name__ == "__main__":
    main()
