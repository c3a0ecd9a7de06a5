"""Form media: `territories.csv`, the territory table as an external choice list.

The XForm asks the respondent's territory as a cascade of `select_one_from_file
territories.csv` questions (services/openrosa/xform.py): the roots first (regions and cities of
republican significance, `parent` empty), then each next question the children of the one
chosen (`choice_filter` on `parent`). The XForm never names a territory, so it stays the same
when territories change (its cache per version stays right); this file and its md5 in the
manifest change, which is how Collect knows to download it again.

Columns: `name` (the KATO code), `label` (in the form's default language, falling back to
another one the territory has), `level`, `parent`. The file is built in a worker thread and
kept per (fingerprint, language); the fingerprint is the table's row count and newest
`created_at` (cheap: one aggregate over the primary key and a column). Renames and moves keep
both, so an entry is also rebuilt once it is older than REBUILD_SECONDS.
"""

import csv
import hashlib
import io
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import anyio.to_thread
from anyio import CapacityLimiter
from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models.territories import LANGUAGES, Territory

TERRITORIES_FILE = "territories.csv"
# Kazakhstan has ~20 regions, ~200 districts, ~2,500 rural districts and ~7,000 settlements
# (~1 MB of CSV). A table past this bound is not offered as a list: the code is typed in.
MAX_TERRITORIES = 20_000
# Renames and moves leave the fingerprint as it was: an entry is rebuilt after this long.
REBUILD_SECONDS = 60.0
COLUMNS = ("name", "label", "level", "parent")


@dataclass(frozen=True)
class MediaFile:
    name: str
    content: bytes
    md5: str  # hex, as the manifest's `hash` gives it ("md5:<hex>")


def _label(name: Mapping[str, str], language: str) -> str:
    if name.get(language):
        return name[language]
    for code in LANGUAGES:
        if name.get(code):
            return name[code]
    return next(iter(name.values()), "")


def build_territories_csv(
    rows: Sequence[tuple[str, str | None, str, Mapping[str, str]]], language: str
) -> MediaFile:
    """The CSV of (code, parent_code, level, name) rows (CPU-bound for a large table)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for code, parent, level, name in rows:
        writer.writerow((code, _label(name, language), level, parent or ""))
    content = out.getvalue().encode("utf-8")
    return MediaFile(
        TERRITORIES_FILE, content, hashlib.md5(content, usedforsecurity=False).hexdigest()
    )


Fingerprint = tuple[int, datetime | None]


async def fingerprint(session: AsyncSession) -> Fingerprint:
    count, newest = (
        await session.exec(select(func.count(), func.max(col(Territory.created_at))))
    ).one()
    return int(count), newest


def offers_territories(found: Fingerprint) -> bool:
    """Whether forms ask the territory as a cascade (else the code is typed in)."""
    return 0 < found[0] <= MAX_TERRITORIES


class MediaCache:
    """territories.csv per (fingerprint, language), most recently used kept; on app.state."""

    def __init__(self, limit: int = 8) -> None:
        self.limit = limit
        self.entries: OrderedDict[Any, tuple[float, MediaFile]] = OrderedDict()

    def get(self, key: Any) -> MediaFile | None:
        found = self.entries.get(key)
        if found is None or time.monotonic() - found[0] > REBUILD_SECONDS:
            return None
        self.entries.move_to_end(key)
        return found[1]

    def put(self, key: Any, media: MediaFile) -> None:
        self.entries[key] = (time.monotonic(), media)
        self.entries.move_to_end(key)
        while len(self.entries) > self.limit:
            self.entries.popitem(last=False)


async def territories_csv(
    session: AsyncSession,
    cache: MediaCache,
    limiter: CapacityLimiter,
    language: str,
    found: Fingerprint | None = None,
) -> MediaFile | None:
    """The form's territories.csv in its default language; None when forms offer no list."""
    found = found if found is not None else await fingerprint(session)
    if not offers_territories(found):
        return None
    key = (found, language)
    cached = cache.get(key)
    if cached is not None:
        return cached
    result = await session.exec(
        select(
            col(Territory.code),
            col(Territory.parent_code),
            col(Territory.level),
            col(Territory.name),
        ).order_by(col(Territory.path))
    )
    rows = [(code, parent, level, name) for code, parent, level, name in result]
    media = await anyio.to_thread.run_sync(
        partial(build_territories_csv, rows, language), limiter=limiter
    )
    cache.put(key, media)
    return media
