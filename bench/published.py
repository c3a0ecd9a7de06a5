"""Published aggregates against the staff aggregates of the same query (issue 14).

    .venv/bin/python bench/published.py [--responses 1000000] [--repeat 5]

The survey form (bench/forms.py) is loaded through the batch API into a throw-away PostgreSQL
database (bench/stage.py), then for each case the staff endpoint and its protected preview
(`?protected=true`: the public path's computation, the record-key sums, the perturbation and the
query-set-size check) are timed in turns over loopback against one `kenes serve` worker; medians
compared. Target: the published aggregate at most 1.5x the staff one.
"""

import argparse
import statistics
import time

import httpx
from harness import admin_token, phase
from stage import batches_for, stage, vacuum

CASES = [
    ("all questions, no breakdown", {}),
    ("all questions by=gender,region", {"by": "gender,region"}),
    ("all questions by=answer:aware", {"by": "answer:aware"}),
    ("all questions by=group,gender,region", {"by": "group,gender,region"}),
    ("by=region, filtered gender=female", {"by": "region", "gender": "female"}),
]


def timed(http: httpx.Client, url: str, params: dict[str, str]) -> float:
    started = time.perf_counter()
    reply = http.get(url, params=params)
    if reply.status_code != 200:
        raise RuntimeError(f"{reply.status_code}: {reply.text[:500]}")
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=3, help="batches in flight")
    args = parser.parse_args()
    lines = []
    with stage("survey", 1.0, args.concurrency) as current:
        current.load(batches_for(args.responses), f"load {args.responses:,} through the API")
        with phase("VACUUM ANALYZE, CHECKPOINT", 600):
            vacuum(current.dsn)
        headers = {"Authorization": f"Bearer {admin_token(current.base)}"}
        with httpx.Client(timeout=600, headers=headers) as http:
            url = f"{current.url}/aggregates"
            for label, params in CASES:
                protected = {**params, "protected": "true"}
                with phase(f"{label}", 60 + args.responses / 1000 * args.repeat):
                    timed(http, url, params), timed(http, url, protected)  # warm-up
                    staff, published = [], []
                    for _ in range(args.repeat):
                        staff.append(timed(http, url, params))
                        published.append(timed(http, url, protected))
                s, p = statistics.median(staff), statistics.median(published)
                ok = "MET" if p <= 1.5 * s else "MISSED"
                line = (
                    f"{args.responses:>9,} | {label:40} | staff {s:7.0f} ms | published "
                    f"{p:7.0f} ms | ratio {p / s:.2f} (target <= 1.5) {ok}"
                )
                print(line, flush=True)
                lines.append(line)
    print("\n".join(["", f"summary (median of {args.repeat}):", *lines]))


if __name__ == "__main__":
    main()
