"""Each question type's answer check (a value in, a problem or its column values out), its
decoding (column values in, the answer as the API shows it out) and, where one value has
several spellings, its canonical form for "same content": answers/ compiles them once per
questionnaire version.

basic.py holds the first types (choices, numbers, text, boolean, date); more.py the types of
real field forms (time, datetime, geodata, barcode, acknowledge, rank, media files, meta).
"""

from collections.abc import Mapping
from typing import Any

from app.services.answer_codecs import basic, more
from app.services.answer_codecs.basic import (
    MASK_BITS,
    MAX_SAFE_INTEGER,
    NUMBER_TYPES,
    Check,
    Decode,
    Encoded,
)
from app.services.answer_codecs.more import GEO_TYPES, MEDIA_TYPES, Canonical

__all__ = [
    "GEO_TYPES",
    "MASK_BITS",
    "MAX_SAFE_INTEGER",
    "MEDIA_TYPES",
    "NUMBER_TYPES",
    "Canonical",
    "Check",
    "Decode",
    "Encoded",
    "canonical",
    "checker",
    "column_kinds",
    "decoder",
]

# The answer columns' kinds of each type (see answers/: the layout). A type's kinds never
# change once a version using it is published (its tables are made from them).
COLUMN_KIND = {**basic.COLUMN_KIND, **more.COLUMN_KIND}


def column_kinds(question: Mapping[str, Any]) -> list[str]:
    """`question` with its options resolved (a `choices:` list's options in `options`)."""
    qtype = question["type"]
    if qtype in more.COLUMN_KIND:
        return list(more.COLUMN_KIND[qtype])
    return basic.column_kinds(question)


def checker(question: Mapping[str, Any]) -> Check:
    if question["type"] in more.COLUMN_KIND:
        return more.checker(question)
    return basic.checker(question)


def decoder(question: Mapping[str, Any]) -> Decode:
    if question["type"] in more.COLUMN_KIND:
        return more.decoder(question)
    return basic.decoder(question)


def canonical(question: Mapping[str, Any]) -> Canonical | None:
    """Column values -> the same values in one spelling, for types whose stored values keep the
    client's spelling (time, datetime); None when the stored values already compare as values."""
    return more.CANONICAL.get(question["type"])
