"""Choice lists from the files of `select_one_from_file` / `select_multiple_from_file`,
uploaded with the form as `media` parts of the import: CSV, XML and GeoJSON, read as ODK reads
them (pyxform makes the same itemset of each; Collect and Enketo read the file so).

- CSV: a header line, one choice per line; the value in the `name` column and the label in
  `label`, labels per language in `label::English (en)` columns.
- XML: `<root><item><name>..</name><label>..</label>..</item>..</root>`, each child of an item
  one property (text); parsed by defusedxml with DTDs refused.
- GeoJSON: a FeatureCollection; the value is the feature's `id` (or `properties.id`), the label
  `properties.title`, the other properties extra ones, and the geometry the property
  `geometry` in ODK's notation (`lat lon altitude accuracy`, points of a line or polygon's outer
  ring joined by `;`), as ODK's engines expose it to `select_one_from_file ... map`.

A select's `parameters` may name other value and label columns (`value=code label=title`).
Every column or property besides value and labels is an extra property of the choice (what a
`choice_filter` reads). Every problem is named by file, line (CSV, header = 1) or item/feature
number (XML, GeoJSON, from 1) and column: `["media", <file>, <line>, <column>]`.
"""

import csv
import io
import json
import math
from collections.abc import Callable, Mapping
from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from app.models.questionnaires import MAX_OPTIONS

Loc = list[str | int]
MAX_VALUE = 100  # characters of a choice's value (models: Option)
MAX_LIST_BYTES = 16 * 1024 * 1024  # a list file; 10,000 choices with polygons fit
Problem = tuple[Loc, str]
Choices = list[tuple[int, dict[str, Any]]]
# The value and label columns of each kind of file, unless the select's parameters name others
# (pyxform: DEFAULT_ITEMSET_*_REF, EXTERNAL_CHOICES_ITEMSET_REF_*_GEOJSON).
DEFAULT_COLUMNS = {
    ".csv": ("name", "label"),
    ".xml": ("name", "label"),
    ".geojson": ("id", "title"),
}
LIST_SUFFIXES = tuple(DEFAULT_COLUMNS)
GEOMETRY = "geometry"


def list_suffix(file_name: str) -> str | None:
    """The kind of list file a name says (".csv", ".xml", ".geojson"), None for others."""
    return next((s for s in LIST_SUFFIXES if file_name.lower().endswith(s)), None)


def choices_from_file(
    content: bytes,
    file_name: str,
    *,
    value_column: str | None,
    label_column: str | None,
    language_of: Callable[[str], str | None],
) -> tuple[Choices, list[Problem]]:
    """The choices of a list file with their line (or item) numbers, and its problems (all of
    them; no choices when any). `language_of` gives the language code of a label column's
    suffix (None: unknown); labels without one are under "" (the form's default language)."""
    suffix = list_suffix(file_name) or ".csv"
    value_column = value_column or DEFAULT_COLUMNS[suffix][0]
    label_column = label_column or DEFAULT_COLUMNS[suffix][1]
    if len(content) > MAX_LIST_BYTES:
        return [], [(["media", file_name], f"a list file is at most {MAX_LIST_BYTES} bytes")]
    if suffix == ".xml":
        records, problems = _xml_records(content, file_name)
    elif suffix == ".geojson":
        records, problems = _geojson_records(content, file_name, value_column)
    else:
        return _choices_from_csv(content, file_name, value_column, label_column, language_of)
    if problems:
        return [], problems
    return _choices(records, file_name, value_column, {label_column: ""})


def _choices(
    records: list[tuple[int, dict[str, str]]],
    file_name: str,
    value_column: str,
    labels: Mapping[str, str],
) -> tuple[Choices, list[Problem]]:
    """Records (number, {column: text}) as choices: the value (each once, at most MAX_VALUE
    characters), the labels by language ({column: language code}), the rest extra properties."""
    choices: Choices = []
    problems: list[Problem] = []
    seen: set[str] = set()
    for number, record in records:
        place: Loc = ["media", file_name, number, value_column]
        value = record.get(value_column, "").strip()
        if len(value) > MAX_VALUE:
            problems.append((place, f"at most {MAX_VALUE} characters"))
            continue
        if not value or value in seen:
            problems.append((place, "a value, each once" if value else "no value"))
            continue
        seen.add(value)
        choice: dict[str, Any] = {"value": value, "label": {}}
        for column, text in record.items():
            if column in labels:
                if text.strip():
                    choice["label"][labels[column]] = text.strip()
            elif column != value_column:
                choice[column] = text.strip()
        choices.append((number, choice))
    return ([] if problems else choices), problems


# --- CSV --------------------------------------------------------------------------------------


def _choices_from_csv(
    content: bytes,
    file_name: str,
    value_column: str,
    label_column: str,
    language_of: Callable[[str], str | None],
) -> tuple[Choices, list[Problem]]:
    place: Loc = ["media", file_name]
    if content.count(b"\n") > MAX_OPTIONS + 1:
        return [], [(place, f"at most {MAX_OPTIONS} choices in a list")]
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return [], [(place, "not UTF-8 text")]
    try:
        lines = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as error:
        return [], [(place, f"not a readable CSV file ({error})")]
    if not lines:
        return [], [(place, "an empty file")]
    header = [column.strip() for column in lines[0]]
    problems: list[Problem] = []
    if value_column not in header:
        problems.append(([*place, 1, value_column], f"no '{value_column}' column"))
    labels: dict[str, str] = {}  # column -> language code ("" for the default)
    for column in header:
        base, _, language = column.partition("::") if "::" in column else column.partition(":")
        if base.strip() != label_column:
            continue
        code = language_of(language.strip()) if language.strip() else ""
        if code is None:
            problems.append(([*place, 1, column], f"no language code in '{language.strip()}'"))
        else:
            labels[column] = code
    if len(set(header)) != len(header) or "" in header:
        problems.append(([*place, 1], "every column needs a name, each once"))
    if problems:
        return [], problems
    records: list[tuple[int, dict[str, str]]] = []
    for number, record in enumerate(lines[1:], start=2):
        if not any(cell.strip() for cell in record):
            continue
        if len(record) != len(header):
            problems.append(
                ([*place, number], f"{len(record)} cells, the header has {len(header)}")
            )
            continue
        records.append((number, dict(zip(header, record, strict=True))))
    choices, more = _choices(records, file_name, value_column, labels)
    problems += more
    return ([] if problems else choices), problems


# --- XML --------------------------------------------------------------------------------------


def _xml_records(
    content: bytes, file_name: str
) -> tuple[list[tuple[int, dict[str, str]]], list[Problem]]:
    """`<root><item>...</item></root>`: each item's children as {tag: text}, numbered from 1."""
    place: Loc = ["media", file_name]
    try:
        root: Element = fromstring(content, forbid_dtd=True)
    except DefusedXmlException:
        return [], [(place, "an XML list may not declare a DTD or entities")]
    except ParseError as error:
        return [], [(place, f"not well-formed XML ({error})")]
    if root.tag != "root":
        return [], [(place, f"the document element is <root>, not <{root.tag}>")]
    items = list(root)
    if len(items) > MAX_OPTIONS:
        return [], [(place, f"at most {MAX_OPTIONS} choices in a list")]
    if not items:
        return [], [(place, "no <item> in <root>")]
    records: list[tuple[int, dict[str, str]]] = []
    problems: list[Problem] = []
    for number, item in enumerate(items, start=1):
        if item.tag != "item":
            problems.append(([*place, number], f"<root> holds <item> elements, not <{item.tag}>"))
            continue
        record: dict[str, str] = {}
        for child in item:
            if len(child):
                problems.append(([*place, number, child.tag], "a property holds text only"))
            elif child.tag in record:
                problems.append(([*place, number, child.tag], "each property once per item"))
            else:
                record[child.tag] = child.text or ""
        records.append((number, record))
    return records, problems


# --- GeoJSON ----------------------------------------------------------------------------------


def _geojson_records(
    content: bytes, file_name: str, value_column: str
) -> tuple[list[tuple[int, dict[str, str]]], list[Problem]]:
    """A FeatureCollection's features as {property: text} with `geometry`, numbered from 1."""
    place: Loc = ["media", file_name]
    try:
        data = json.loads(content.decode("utf-8-sig"))
    except UnicodeDecodeError:
        return [], [(place, "not UTF-8 text")]
    except (ValueError, RecursionError) as error:
        return [], [(place, f"not readable JSON ({str(error)[:200]})")]
    features = data.get("features") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        return [], [(place, "a GeoJSON list is a FeatureCollection")]
    if not isinstance(features, list) or not features:
        return [], [(place, "a FeatureCollection with features")]
    if len(features) > MAX_OPTIONS:
        return [], [(place, f"at most {MAX_OPTIONS} choices in a list")]
    records: list[tuple[int, dict[str, str]]] = []
    problems: list[Problem] = []
    for number, feature in enumerate(features, start=1):
        found = _feature(feature, [*place, number], value_column, problems)
        if found is not None:
            records.append((number, found))
    return records, problems


def _feature(
    feature: Any, place: Loc, value_column: str, problems: list[Problem]
) -> dict[str, str] | None:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        problems.append((place, "a Feature"))
        return None
    properties = feature.get("properties") or {}
    if not isinstance(properties, dict):
        problems.append(([*place, "properties"], "an object"))
        return None
    record: dict[str, str] = {}
    for name, value in properties.items():
        text = _property_text(value)
        if text is None:
            problems.append(([*place, str(name)], "a property is text, a number or a boolean"))
        elif name == GEOMETRY:
            problems.append(([*place, GEOMETRY], "'geometry' is the feature's own, not a property"))
        else:
            record[str(name)] = text
    if value_column == "id" and feature.get("id") is not None:
        # the feature's own id comes first, as ODK reads it; properties.id is the fallback
        identifier = _property_text(feature["id"])
        if identifier is None:
            problems.append(([*place, "id"], "an id is text or a number"))
        else:
            record["id"] = identifier
    geometry = _odk_geometry(feature.get("geometry"))
    if geometry is None:
        problems.append(([*place, GEOMETRY], "a Point, LineString or Polygon of finite numbers"))
        return None
    record[GEOMETRY] = geometry
    return record


def _property_text(value: Any) -> str | None:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    return value if isinstance(value, str) else None


def _odk_geometry(geometry: Any) -> str | None:
    """A GeoJSON geometry in ODK's notation: `lat lon altitude 0` per point (GeoJSON gives
    longitude first), the points of a LineString or of a Polygon's outer ring joined by '; '."""
    if not isinstance(geometry, dict):
        return None
    kind, coordinates = geometry.get("type"), geometry.get("coordinates")
    if kind == "Point":
        points = [coordinates]
    elif kind == "LineString":
        points = coordinates if isinstance(coordinates, list) else []
    elif kind == "Polygon" and isinstance(coordinates, list) and coordinates:
        points = coordinates[0] if isinstance(coordinates[0], list) else []
    else:
        return None
    written = [_odk_point(point) for point in points]
    if not written or any(point is None for point in written):
        return None
    return "; ".join(point for point in written if point is not None)


def _odk_point(point: Any) -> str | None:
    if not isinstance(point, list) or not 2 <= len(point) <= 3:
        return None
    if not all(isinstance(n, int | float) and not isinstance(n, bool) for n in point):
        return None
    try:
        if not all(math.isfinite(n) for n in point):
            return None
    except OverflowError:  # an integer past a float's range (JSON holds any length)
        return None
    lon, lat = point[0], point[1]
    altitude = point[2] if len(point) == 3 else 0
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return f"{_number(lat)} {_number(lon)} {_number(altitude)} 0"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
