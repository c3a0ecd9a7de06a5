"""The words of XLSForm as pyxform gives them, and what they are in Kenes: question types,
language names, the columns definition fields come from, yes/no, bounds written as constraints."""

import re
from typing import Any

from pyxform import aliases

from app.models.questionnaires import MAX_LANGUAGE_TAG

GROUP_LIST = "respondent_group"
# pyxform's type (after its aliases: `int`, `gps`, `image`, `trigger`, ...) -> Kenes's.
TYPES = {
    "text": "text",
    "string": "text",
    "int": "integer",
    "integer": "integer",
    "decimal": "decimal",
    "date": "date",
    "note": "note",
    "calculate": "calculate",
    "time": "time",
    "datetime": "datetime",
    "dateTime": "datetime",
    "geopoint": "geopoint",
    "gps": "geopoint",
    "geotrace": "geotrace",
    "geoshape": "geoshape",
    "barcode": "barcode",
    "acknowledge": "acknowledge",
    "trigger": "acknowledge",
    "photo": "image",
    "image": "image",
    "q picture": "image",
    "audio": "audio",
    "video": "video",
    "file": "file",
    # Kenes types asked another way (no widget): the flag that says so (FLAGS)
    "hidden": "text",
    "start-geopoint": "geopoint",
    "background-audio": "audio",
}
# XLSForm types that are a Kenes type with a flag: hidden (the value is the default, or empty;
# with a calculation it is a calculate, which pyxform writes the same), start-geopoint (recorded
# when the form opens: odk:setgeopoint), background-audio (odk:recordaudio).
FLAGS = {"hidden": "hidden", "start-geopoint": "at_start", "background-audio": "background"}
# A secondary instance from the form media file `<name>.xml` (settings.external_instances).
XML_EXTERNAL = "xml-external"
# Answered by the device: {"type": "meta", "meta": <kind>} (pyxform reads `imei` as deviceid).
META_KINDS = {
    "start",
    "end",
    "today",
    "deviceid",
    "phonenumber",
    "username",
    "email",
    "simserial",
    "subscriberid",
    "audit",
}
SELECTS = {
    "select one": "single_choice",
    "select all that apply": "multiple_choice",
    "rank": "rank",
}
# Types without `required` and `constraint` (never answered, or answered by the device/server).
UNCHECKED = {"calculate", "note", "meta"}

LANGUAGE_NAMES = {
    "english": "en",
    "английский": "en",
    "ағылшын": "en",
    "ағылшынша": "en",
    "russian": "ru",
    "русский": "ru",
    "орыс": "ru",
    "орысша": "ru",
    "kazakh": "kk",
    "қазақ": "kk",
    "қазақша": "kk",
    "қазақ тілі": "kk",
    "казахский": "kk",
    "french": "fr",
    "français": "fr",
    "german": "de",
    "deutsch": "de",
    "spanish": "es",
    "español": "es",
    "portuguese": "pt",
    "arabic": "ar",
    "العربية": "ar",
    "chinese": "zh",
    "turkish": "tr",
    "uzbek": "uz",
    "kyrgyz": "ky",
    "tajik": "tg",
    "ukrainian": "uk",
    "swahili": "sw",
    "hindi": "hi",
}
# Where a definition field came from on the survey sheet.
COLUMNS = {
    "key": "name",
    "label": "label",
    "help": "hint",
    "options": "type",
    "relevant": "relevant",
    "required": "required",
    "required_message": "required_message",
    "constraint": "constraint",
    "constraint_message": "constraint_message",
    "calculation": "calculation",
    "min": "parameters",
    "max": "parameters",
    "step": "parameters",
    "count": "repeat_count",
    "default": "default",
    "appearance": "appearance",
    "read_only": "read_only",
    "guidance_hint": "guidance_hint",
}
CODE = re.compile(r"\(\s*([A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*)\s*\)\s*$")
# a column suffix that is a language tag itself (`label::fr`, `label::zh-Hans`)
TAG = re.compile(r"[a-z]{2,3}(?:-[A-Za-z0-9]{1,8})*")
RELATIVE = re.compile(r"\.\./([A-Za-z_][A-Za-z0-9_.\-]*)")
BOUND = re.compile(r"^(count-selected\(\.\)|string-length\(\.\)|\.)\s*(<=|>=)\s*(-?\d+(?:\.\d+)?)$")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:63].strip("-")


def language_code(name: str) -> str | None:
    match = CODE.search(name)
    if match and len(match.group(1)) <= MAX_LANGUAGE_TAG:
        return match.group(1)
    plain = name.strip()
    if plain.lower() in LANGUAGE_NAMES:
        return LANGUAGE_NAMES[plain.lower()]
    return plain if TAG.fullmatch(plain) and len(plain) <= MAX_LANGUAGE_TAG else None


def yes_no(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    return aliases.yes_no.get(str(value).strip()) if value is not None else None


def bounds_in(text: str, qtype: str) -> dict[str, Any] | None:
    """The bounds a constraint states (`. >= 1 and . <= 10`), or None if it says more."""
    bounds: dict[str, Any] = {}
    for part in re.split(r"\s+and\s+", text.strip()):
        match = BOUND.match(part.strip())
        if not match:
            return None
        subject, op, number = match.groups()
        whole = re.fullmatch(r"-?\d+", number) is not None
        if subject == "." and qtype in ("integer", "decimal"):
            if qtype == "integer" and not whole:
                return None
            bounds["min" if op == ">=" else "max"] = int(number) if whole else float(number)
        elif subject == "count-selected(.)" and qtype == "multiple_choice" and whole:
            if int(number) < 1:
                return None
            bounds["min_selected" if op == ">=" else "max_selected"] = int(number)
        elif subject == "string-length(.)" and qtype == "text" and whole and op == "<=":
            bounds["max_length"] = int(number)
        else:
            return None
    return bounds
