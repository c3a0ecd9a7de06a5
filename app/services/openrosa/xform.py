"""A stored definition as an ODK XForm: XLSForm rows built by services/openrosa/rows.py (each
question type in services/openrosa/question_types.py), the XML built by pyxform; cached per
published version.
"""

import hashlib
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio.to_thread
from anyio import CapacityLimiter
from pyxform.errors import PyXFormError
from pyxform.xls2xform import convert

from app.errors import Invalid
from app.models.questionnaires import Questionnaire, Status
from app.services.openrosa.question_types import QUESTION_TYPES, QuestionType, xpath
from app.services.openrosa.respondent import (
    RESPONDENT,
    TERRITORY_DEPTH,
    TERRITORY_LIST,
    TERRITORY_STEP,
)
from app.services.openrosa.rows import COUNT_PREFIX, END, ROOT, START, own_names, xlsform_rows
from app.services.openrosa.shared_keys import SharedNames

__all__ = [
    "COUNT_PREFIX",
    "END",
    "QUESTION_TYPES",
    "RESPONDENT",
    "ROOT",
    "START",
    "TERRITORY_DEPTH",
    "TERRITORY_LIST",
    "TERRITORY_STEP",
    "QuestionType",
    "XForm",
    "XFormCache",
    "build_xform",
    "own_names",
    "xform_of",
    "xpath",
]


@dataclass(frozen=True)
class XForm:
    xml: bytes
    md5: str  # of `xml`, as the form list's `hash` gives it ("md5:<hex>")


def build_xform(
    definition: Mapping[str, Any],
    *,
    slug: str,
    version: int,
    default: str,
    territories: bool = False,
) -> XForm:
    """The XForm pyxform makes of the definition (CPU-bound: call it off the event loop)."""
    shared = SharedNames.of(definition["questions"])
    sheets = xlsform_rows(
        definition,
        slug=slug,
        version=version,
        default=default,
        territories=territories,
        shared=shared,
    )
    try:
        xml = shared.restore(convert(sheets, form_name=ROOT).xform).encode("utf-8")
    except PyXFormError as error:
        # A definition Kenes accepts that pyxform does not (a key `meta`): said, never a 500.
        # Its row numbers are of the rows written here, not of anything the author has.
        reason = re.sub(r"^\[row : \d+\] ", "", str(error))
        raise Invalid(
            f"This questionnaire cannot be written as an XForm: {reason}",
            errors=[{"loc": ["questions"], "msg": reason, "type": "xform"}],
        ) from None
    return XForm(xml, hashlib.md5(xml, usedforsecurity=False).hexdigest())


class XFormCache:
    """XForms of published and closed versions (their definitions never change), most
    recently used kept; held on app.state."""

    def __init__(self, limit: int = 256) -> None:
        self.limit = limit
        self.entries: OrderedDict[Any, XForm] = OrderedDict()

    def get(self, key: Any) -> XForm | None:
        found = self.entries.get(key)
        if found is not None:
            self.entries.move_to_end(key)
        return found

    def put(self, key: Any, xform: XForm) -> None:
        self.entries[key] = xform
        if len(self.entries) > self.limit:
            self.entries.popitem(last=False)


async def xform_of(
    questionnaire: Questionnaire,
    cache: XFormCache,
    limiter: CapacityLimiter,
    territories: bool = False,
) -> XForm:
    """The questionnaire's XForm, built in a worker thread once per published version (and
    per whether territories are offered as a list: services/openrosa/media.py)."""
    frozen = questionnaire.status != Status.draft
    key = (questionnaire.id, territories)
    if frozen:
        cached = cache.get(key)
        if cached is not None:
            return cached
    work = partial(
        build_xform,
        questionnaire.definition,
        slug=questionnaire.slug,
        version=questionnaire.version,
        default=questionnaire.default_language,
        territories=territories,
    )
    xform = await anyio.to_thread.run_sync(work, limiter=limiter)
    if frozen:
        cache.put(key, xform)
    return xform
