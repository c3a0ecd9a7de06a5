"""Keys that questions of different repeats share, in an author's workbook.

pyxform refuses a `${name}` reference when two rows are named `name` (XLSForm's rule: reference
names are unique in the survey), though Kenes knows which one is meant: the one in view, or the
nearest (services/expressions/forms.KeyIndex). So before pyxform reads the workbook, each row
of a shared name is named apart and every reference is written with the name of the row it
means (services/openrosa/shared_keys, as for the XForm); the definition made of pyxform's form
is given the names back. Names used twice where Kenes does not allow it (in one repeat, at the
top level and in a repeat, a repeat's name) are left as they are, for pyxform's and the
definition's rules to refuse with their rows.
"""

from collections.abc import MutableMapping
from typing import Any

from pyxform import aliases, constants
from pyxform.xls2json import RE_BEGIN_CONTROL, RE_END_CONTROL

from app.services.expressions.forms import KeyIndex, Loc, Scope
from app.services.openrosa.shared_keys import SharedNames

NAME_HEADERS = ("name", "value", "tag")  # pyxform's spellings of the survey's name column


def _cell(row: MutableMapping[Any, Any], names: tuple[str, ...]) -> Any:
    """The header of the row's cell in one of these columns (as the author spelled it)."""
    return next(
        (h for h in row if isinstance(h, str) and h.strip().lower() in names and row[h]), None
    )


def name_apart(survey: list[Any]) -> SharedNames:
    """Name apart, in place, the survey rows of names that repeats share; what was done."""
    entries: list[tuple[Loc, dict[str, Any], Scope]] = []
    rows: list[tuple[MutableMapping[Any, Any], Scope, dict[str, Any] | None]] = []
    scope: Scope = ()
    opened: list[str | None] = []  # per open group or repeat: the repeat's name (else None)
    for row in survey:
        if not isinstance(row, MutableMapping):
            continue
        header = _cell(row, ("type",))
        kind = str(row[header]).strip() if header is not None else ""
        name_header = _cell(row, NAME_HEADERS)
        name = str(row[name_header]).strip() if name_header is not None else None
        if RE_END_CONTROL.search(kind):
            if opened and opened.pop() is not None:
                scope = scope[:-1]
            rows.append((row, scope, None))
            continue
        begin = RE_BEGIN_CONTROL.search(kind)
        control = aliases.control.get(begin.group("type")) if begin else None
        question = None
        if name:
            qtype = "repeat" if control == constants.REPEAT else "group" if begin else kind
            question = {"key": name, "type": qtype}
            entries.append(([], question, scope))
        rows.append((row, scope, question))
        if begin:
            repeat = name if control == constants.REPEAT and name else None
            opened.append(repeat)
            if repeat is not None:
                scope = (*scope, repeat)
    shared = SharedNames.named_apart(KeyIndex.of(entries))
    if not shared.names:
        return shared
    for row, place, question in rows:
        shared.rewrite(row, place)  # a repeat's own row: in the enclosing scope
        if question is not None and id(question) in shared.names:
            header = _cell(row, NAME_HEADERS)
            row[header] = shared.names[id(question)]
    return shared
