"""Batch ingest: responses/s and answers/s through POST .../responses/batch, one uvicorn worker.

    .venv/bin/python bench/ingest.py [--form survey|wide|both] [--survey-responses 100000]
        [--wide-responses 20000] [--concurrency 3] [--questions-scale 1.0]

For each form (bench/forms.py: the 10-question survey, the 300-question form), a throw-away
PostgreSQL database on 127.0.0.1 gets the demo data and the form, created and published through
the API, and a collector token. The responses are generated beforehand (seeded, realistic,
written to disk as request bodies of 1000), then bench/loader.py, a process of its own, posts them
with `concurrency` batches in flight and times the whole load. An answer is one answered
question. A run in which any item is not `created` (or any request fails) prints the errors and no
rate. Targets (issue 11): at least 25,000 responses/s for the survey and 300,000 answers/s for the
300-question form.
"""

import argparse

from stage import batches_for, stage

TARGETS = {"survey": ("responses/s", 25_000), "wide": ("answers/s", 300_000)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--form", choices=["survey", "wide", "both"], default="both")
    parser.add_argument("--survey-responses", type=int, default=100_000)
    parser.add_argument("--wide-responses", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=3, help="batches in flight (2-4)")
    parser.add_argument("--questions-scale", type=float, default=1.0,
                        help="shrink the 300-question form (servers capped below 300)")  # fmt: skip
    args = parser.parse_args()
    forms = ["survey", "wide"] if args.form == "both" else [args.form]
    summary = []
    for name in forms:
        responses = args.survey_responses if name == "survey" else args.wide_responses
        with stage(name, args.questions_scale, args.concurrency) as current:
            current.generate(batches_for(responses))
            rates = current.load(batches_for(responses), f"ingest {name}")
        unit, target = TARGETS[name]
        value = rates[0] if unit == "responses/s" else rates[1]
        verdict = "MET" if value >= target else "MISSED"
        summary.append(f"ingest {name:6} {value:>12,.0f} {unit} (target >= {target:,}) {verdict}")
    print("\n".join(["", "summary:", *summary]))


if __name__ == "__main__":
    main()
