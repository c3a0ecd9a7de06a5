"""Survey aggregates over all questions: the API against hand-written SQL on a typed copy, one run.

    .venv/bin/python bench/aggregates.py [--responses 200000,1000000] [--repeat 5]
    .venv/bin/python bench/aggregates.py --form wide [--responses 100000] [--questions-scale 1.0]

A throw-away PostgreSQL database on 127.0.0.1 gets the demo data and a bench form (bench/forms.py;
`survey`: 10 questions, `wide`: 300), created and published through the API. Its responses are
generated (seeded) and loaded through the batch API by bench/loader.py (ingest rate printed), and
the same batch files are COPYed into a typed table per layout in schema `hand` (bench/hand.py).
After VACUUM ANALYZE, for each size (the survey grows from 200,000 to 1,000,000), each case:
  - every hand-written plan (bench/hand.py: per-row territory join, territory-first prefold or
    counts and numbers split; JIT on or off) runs after a warm-up (twice when under a second);
    the fastest is kept. Multiple choice is a bigint bit mask: smallint[] (--layouts mask,array)
    was slower in nearly every case measured (survey, 300-question form, 5,000-40,000 responses);
  - then `repeat` rounds of one GET .../aggregates over loopback (Kenes, 1 uvicorn worker) and
    one run of the kept hand SQL (asyncpg over loopback, all rows fetched); medians compared;
  - the API's figures are checked against the hand SQL's, cell by cell (a mismatch is printed).
Cases (issue 11): survey, all questions, by=gender,region / by=answer:aware / by=group,gender,
region: each at most 1.5x the hand SQL. Wide, 100,000 responses: all questions by=gender,region at
most 2x; one question alone (?questions=<key>, by=gender,region) at most 100 ms.
"""

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import hand
import httpx
import orjson
from harness import admin_token, phase
from stage import Stage, batches_for, stage, vacuum


@dataclass
class Case:
    label: str
    by: list[str]
    keys: list[str] | None
    ratio_target: float | None = None
    ms_target: float | None = None


def cases(form_name: str, single_keys: list[str]) -> list[Case]:
    if form_name == "survey":
        return [
            Case("all questions by=gender,region", ["gender", "region"], None, 1.5),
            Case("all questions by=answer:aware", ["answer:aware"], None, 1.5),
            Case("all questions by=group,gender,region", ["group", "gender", "region"], None, 1.5),
        ]
    out = [Case("all questions by=gender,region", ["gender", "region"], None, 2.0)]
    for key in single_keys:
        out.append(Case(f"one question ({key}) by=gender,region", ["gender", "region"], [key],
                        None, 100.0))  # fmt: skip
    return out


async def timed(action: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await action()
    return (time.perf_counter() - started) * 1000, result


async def measure(current: Stage, case: Case, args: argparse.Namespace) -> dict[str, Any]:
    repeat, layouts, jits = args.repeat, args.layouts.split(","), args.jit.split(",")
    form = current.form
    params = {"by": ",".join(case.by)}
    if case.keys:
        params["questions"] = ",".join(case.keys)
    connection = await asyncpg.connect(current.dsn)
    async with httpx.AsyncClient(timeout=600) as http:
        headers = {"Authorization": f"Bearer {admin_token(current.base)}"}

        async def api() -> bytes:
            reply = await http.get(f"{current.url}/aggregates", params=params, headers=headers)
            if reply.status_code != 200:
                raise RuntimeError(f"API {reply.status_code}: {reply.text[:1000]}")
            return reply.content

        # The hand-written candidates: each once after a warm-up; the fastest is kept.
        trials = []
        for query in hand.queries(form, case.by, case.keys, layouts):
            for jit in jits:
                await connection.execute(f"SET jit = {jit}")
                warm, _ = await timed(lambda q=query: hand.run(connection, q))
                runs = [(await timed(lambda q=query: hand.run(connection, q)))[0]
                        for _ in range(2 if warm < 1000 else 1)]  # fmt: skip
                trials.append((min(runs), jit, query))
        trials.sort(key=lambda trial: trial[0])
        _, best_jit, best = trials[0]
        tried = ", ".join(f"{q.plan}/{q.layout}/jit {j} {ms:.0f}" for ms, j, q in trials)
        await connection.execute(f"SET jit = {best_jit}")
        if args.show_sql:
            print("\n".join(best.statements))

        await api()  # warm-up
        api_ms, hand_ms = [], []
        body = b""
        rows: list[Any] = []
        for _ in range(repeat):
            ms, body = await timed(api)
            api_ms.append(ms)
            ms, rows = await timed(lambda: hand.run(connection, best))
            hand_ms.append(ms)
    await connection.close()

    answer = orjson.loads(body)
    asked = {q["key"] for q in answer["questions"]}
    if case.keys and asked != set(case.keys):
        print(f"!! the API answered {len(asked)} questions to ?questions={params['questions']}")
    compared, problems = hand.compare(answer, hand.figures(form, best, rows), case.by)
    if answer["n_responses"] != current.loaded * 1000:
        problems.insert(0, f"n_responses {answer['n_responses']} != {current.loaded * 1000}")
    return {
        "api": statistics.median(api_ms),
        "hand": statistics.median(hand_ms),
        "kept": f"{best.plan}/{best.layout}/jit {best_jit}",
        "tried": tried,
        "compared": compared,
        "problems": problems,
        "bytes": len(body),
    }


def verdict(case: Case, figures: dict[str, Any]) -> str:
    ratio = figures["api"] / figures["hand"]
    parts = [f"ratio {ratio:.2f}"]
    ok = True
    if case.ratio_target is not None:
        parts[0] += f" (target <= {case.ratio_target})"
        ok = ratio <= case.ratio_target
    if case.ms_target is not None:
        parts.append(f"API {figures['api']:.0f} ms (target <= {case.ms_target:.0f} ms)")
        ok = figures["api"] <= case.ms_target
    if figures["problems"]:
        ok = False
        parts.append("FIGURES DIFFER")
    return ", ".join(parts) + (" MET" if ok else " MISSED")


def one_question_keys(questions: list[dict[str, Any]]) -> list[str]:
    """The questions timed alone: a single choice, the widest multiple choice, an integer and a
    decimal."""
    widest = max(
        (q for q in questions if q["type"] == "multiple_choice"), key=lambda q: len(q["options"])
    )
    return [
        next(q["key"] for q in questions if q["type"] == "single_choice"),
        widest["key"],
        next(q["key"] for q in questions if q["type"] == "integer"),
        next(q["key"] for q in questions if q["type"] == "decimal"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--form", choices=["survey", "wide"], default="survey")
    parser.add_argument("--responses", help="sizes, comma-separated (survey 200000,1000000; "
                        "wide 100000)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=3, help="batches in flight")
    parser.add_argument("--questions-scale", type=float, default=1.0,
                        help="shrink the 300-question form (servers capped below 300)")  # fmt: skip
    parser.add_argument(
        "--layouts",
        default="mask",
        help="multiple choice in the typed copy: "
        "mask (bigint bits), array (smallint[]) or mask,array to time both",
    )
    parser.add_argument(
        "--jit",
        help="JIT settings tried for the hand SQL (survey: off,on; "
        "wide: off, since JIT on took 2.7x as long at 20,000 responses)",
    )
    parser.add_argument("--show-sql", action="store_true", help="print the kept hand SQL")
    args = parser.parse_args()
    args.jit = args.jit or ("off,on" if args.form == "survey" else "off")
    default = "200000,1000000" if args.form == "survey" else "100000"
    sizes = [int(size) for size in (args.responses or default).split(",")]
    summary = []
    with stage(args.form, args.questions_scale, args.concurrency) as current:
        questions = current.form.questions
        singles: list[str] = []
        if args.form == "wide":
            singles = one_question_keys(questions)
        for size in sizes:
            batches = batches_for(size)
            current.load(batches, f"load {size:,} through the API")
            with phase(f"typed copy up to {size:,}", 120 + batches * 2):
                asyncio.run(current.copy(tuple(args.layouts.split(","))))
            with phase("VACUUM ANALYZE, CHECKPOINT", 600):
                vacuum(current.dsn)
            for case in cases(args.form, singles):
                limit = 300 + (size / 1000) * (4 if args.form == "wide" else 0.5) * args.repeat
                with phase(f"{args.form} {size:,}: {case.label}", limit):
                    figures = asyncio.run(measure(current, case, args))
                line = (
                    f"{args.form} {size:>9,} | {case.label:42} | API {figures['api']:7.0f} ms "
                    f"({figures['bytes'] / 1e6:.1f} MB) | hand {figures['hand']:7.0f} ms "
                    f"[{figures['kept']}] | {verdict(case, figures)}"
                )
                print(line, flush=True)
                print(f"    hand plans tried (ms, best of two runs): {figures['tried']}")
                print(f"    figures checked: {figures['compared']:,} cells against the API, "
                      f"{len(figures['problems'])} mismatches")  # fmt: skip
                for problem in figures["problems"][:15]:
                    print(f"    !! MISMATCH {problem}")
                summary.append(line)
    print("\n".join(["", f"summary (median of {args.repeat}):", *summary]))


if __name__ == "__main__":
    main()
