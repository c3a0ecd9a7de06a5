"""OpenRosa submissions against JSON submissions of the same response, in one run.

    .venv/bin/python bench/openrosa.py [--seconds 10] [--rounds 2] [--connections 32]

One Kenes server (uvicorn, one worker, loopback) on a throw-away PostgreSQL database with the
demo data; wrk (a separate process, 1 thread) posts the 10-question Almaty survey response with
a fresh id each time, alternately as JSON to `POST /api/v1/questionnaires/{id}/responses`
(bench/submit.lua) and as an OpenRosa submission to `/openrosa/key/<token>/submission`
(bench/openrosa.lua: multipart, the instance a client makes from the served XForm, no
attachments), both with the same collector. Target: OpenRosa >= 0.5 of JSON's submissions/s.
"""

import argparse
import statistics

import httpx
from harness import dump, kenes_server, prepare_kenes, scratch_database, wrk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()

    with scratch_database() as dsn:
        survey_id, collector = prepare_kenes(dsn)
        paths = {
            "json": (f"/api/v1/questionnaires/{survey_id}/responses", "submit.lua"),
            "openrosa": (f"/openrosa/key/{collector}/submission", "openrosa.lua"),
        }
        results: dict[str, list[dict[str, float]]] = {"json": [], "openrosa": []}
        with kenes_server(dsn) as base:
            # The instance in openrosa.lua is the served form's: check it is stored as such.
            listed = httpx.get(f"{base}/openrosa/key/{collector}/formList")
            assert b"<formID>almaty-participation</formID>" in listed.content, listed.text
            for round_number in range(args.rounds):
                for kind, (path, script) in paths.items():
                    auth = f"Bearer {collector}" if kind == "json" else ""
                    wrk(base, path=path, auth=auth, seconds=2,
                        connections=args.connections, script=script)  # fmt: skip
                    figures = wrk(base, path=path, auth=auth, seconds=args.seconds,
                                  connections=args.connections, script=script)  # fmt: skip
                    if figures["non2xx"] or figures["errors"]:
                        raise SystemExit(f"{kind}: refused or failed requests: {figures}")
                    results[kind].append(figures)
                    dump(f"{kind}#{round_number + 1}", figures)
    json_rps = statistics.median(r["rps"] for r in results["json"])
    openrosa_rps = statistics.median(r["rps"] for r in results["openrosa"])
    print(
        f"median submissions/s: json {json_rps:.0f}, openrosa {openrosa_rps:.0f}; "
        f"openrosa/json = {openrosa_rps / json_rps:.2f} (target >= 0.5)"
    )


if __name__ == "__main__":
    main()
