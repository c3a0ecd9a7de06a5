"""The stage the storage benchmarks share: a scratch database with the demo data, one of the
bench forms published through the API, its responses generated to disk and posted through the
batch API (bench/loader.py, a process of its own), and the typed copy for hand-written SQL.

Nothing here knows how Kenes stores answers: the API is the only way in; the `territory` table
(demo reference data) and database sizes are the only things read from PostgreSQL directly.
"""

import asyncio
import contextlib
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import hand
import loader
from forms import BATCH, Form, build, describe, write_batches
from harness import (
    LARGE_BODIES,
    admin_headers,
    collector_token,
    kenes_server,
    loopback_only,
    phase,
    prepare_kenes,
    psql,
    publish_questionnaire,
    scratch_database,
)

SEED = 2026


@dataclass
class Stage:
    dsn: str
    form: Form
    directory: Path
    concurrency: int
    base: str = ""
    questionnaire_id: str = ""
    collector: str = ""
    territories: list[tuple[str, str]] = field(default_factory=list)
    manifest: dict[int, tuple[int, int]] = field(default_factory=dict)
    loaded: int = 0  # batches posted
    copied: dict[str, int] = field(default_factory=dict)  # layout -> batches in the typed copy

    @property
    def url(self) -> str:
        return f"{self.base}/api/v1/questionnaires/{self.questionnaire_id}"

    def answers(self, batches: int | None = None) -> int:
        return sum(self.manifest[i][1] for i in range(self.loaded if batches is None else batches))

    def generate(self, batches: int) -> None:
        """Writes the request bodies of batches [written, batches) to disk."""
        todo = range(len(self.manifest), batches)
        if not todo:
            return
        with phase(f"generate {len(todo)} batches of {self.form.name}", 60 + 3 * len(todo)):
            self.manifest.update(
                write_batches(
                    self.form.name,
                    scale_of(self.form),
                    self.territories,
                    SEED,
                    todo,
                    self.directory,
                )  # fmt: skip
            )
        (self.directory / "manifest.json").write_text(json.dumps(self.manifest))

    def load(self, batches: int, label: str) -> tuple[float, float] | None:
        """Posts batches [loaded, batches) through the API; prints and returns the rates."""
        self.generate(batches)
        count = batches - self.loaded
        per_batch = 10 if self.form.name == "survey" else 60
        result = loader.post(self.url, self.collector, self.directory, self.loaded, count,
                             self.concurrency, limit=120 + per_batch * count)  # fmt: skip
        self.loaded = batches
        rates = loader.report(label, result)
        if rates is None:
            raise SystemExit("the API refused part of the load; no figures from this run")
        return rates

    async def copy(self, layouts: tuple[str, ...], batches: int | None = None) -> None:
        """COPY batches [copied, batches) into hand.<form>_<layout>."""
        batches = self.loaded if batches is None else batches
        connection = await asyncpg.connect(self.dsn)
        try:
            for layout in layouts:
                first = self.copied.get(layout, 0)
                rows, seconds = await hand.load(
                    connection, self.form, layout, self.directory, range(first, batches)
                )
                self.copied[layout] = batches
                print(f"typed copy hand.{hand.table_name(self.form, layout)}: +{rows:,} rows by "
                      f"COPY in {seconds:.1f} s", flush=True)  # fmt: skip
        finally:
            await connection.close()


_SCALES: dict[int, float] = {}


def scale_of(form: Form) -> float:
    return _SCALES.get(id(form), 1.0)


async def _territories(dsn: str) -> list[tuple[str, str]]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT code, level FROM territory ORDER BY code")
    finally:
        await connection.close()
    return [(row["code"], row["level"]) for row in rows]


def vacuum(dsn: str) -> None:
    """VACUUM ANALYZE the whole database and CHECKPOINT (before sizes and timings)."""
    server, name = dsn.rsplit("/", 1)
    psql("VACUUM ANALYZE", server, name)
    psql("CHECKPOINT", server, name)


def database_size(dsn: str) -> int:
    async def size() -> int:
        connection = await asyncpg.connect(dsn)
        try:
            value: int = await connection.fetchval("SELECT pg_database_size(current_database())")
        finally:
            await connection.close()
        return value

    return asyncio.run(size())


@contextlib.contextmanager
def stage(form_name: str, scale: float = 1.0, concurrency: int = 3) -> Iterator[Stage]:
    """A scratch database with the demo data and the form published, a server on it
    (1 uvicorn worker, large bodies allowed) and a collector token; cleans everything up."""
    form = build(form_name, scale)
    _SCALES[id(form)] = scale
    print(f"form {form.name}: {describe(form)}", flush=True)
    with scratch_database() as dsn, tempfile.TemporaryDirectory(prefix="kenes-bench-") as tmp:
        loopback_only(dsn)
        with phase("prepare the database (migrate, demo data, admin)", 300):
            prepare_kenes(dsn)
        current = Stage(dsn, form, Path(tmp), concurrency)
        current.territories = asyncio.run(_territories(dsn))
        with kenes_server(dsn, **LARGE_BODIES) as base:
            with phase("create and publish the questionnaire", 120):
                headers = admin_headers(base)
                current.base = base
                current.questionnaire_id = publish_questionnaire(base, headers, form.definition)
                current.collector = collector_token(base, headers, current.questionnaire_id)
            yield current


def batches_for(responses: int) -> int:
    if responses % BATCH:
        raise SystemExit(f"--responses must be a multiple of {BATCH}")
    return responses // BATCH
