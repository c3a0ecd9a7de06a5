"""Keys that questions of different repeats share, in the XForm.

pyxform refuses a `${key}` reference (in an expression or a label) when two elements have that
name, even where ODK would know which is meant (XLSForm's rule: reference names are unique in
the survey). So each question of a shared key gets a name of its own for pyxform, every
reference to the key is written with the name of the question in view (the one Kenes means,
services/expressions/forms.KeyIndex), and in the XML pyxform makes the names are put back.
The XForm is then what pyxform writes for unique names, with the element names of the
definition: relative paths (`../name`) where a reference stays inside a repeat, and every
element named by its key, as submissions come back.
"""

import re
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.services.expressions.forms import KeyIndex, Scope, encloses, scoped

# pyxform's reference syntax, `${name}` (`${last-saved#name}` left as it is)
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.-]*)\}")


@dataclass
class SharedNames:
    index: KeyIndex
    names: dict[int, str] = field(default_factory=dict)  # id(question) -> its name for pyxform
    back: dict[str, str] = field(default_factory=dict)  # name given -> the key
    pattern: re.Pattern[str] | None = None  # the names given, to put the keys back

    @classmethod
    def of(cls, questions: Sequence[Mapping[str, Any]]) -> "SharedNames":
        return cls.named_apart(KeyIndex.of(scoped(questions, ["questions"])))

    @classmethod
    def named_apart(cls, index: KeyIndex) -> "SharedNames":
        """Names for the questions of each key that repeats share as Kenes allows it (none a
        repeat, none in view of another): others are left for the rules to refuse."""
        shared = cls(index)
        taken = set(index.places)
        number = 0
        for key, places in index.places.items():
            if not _apart(places):
                continue
            for _, question in places:
                number += 1
                name = f"{key}__kenes{number}__"
                while name in taken:
                    number += 1
                    name = f"{key}__kenes{number}__"
                taken.add(name)
                shared.names[id(question)] = name
                shared.back[name] = key
        if shared.back:
            # longest first: no name given is then read as a part of another
            names = sorted(shared.back, key=len, reverse=True)
            shared.pattern = re.compile("|".join(re.escape(name) for name in names))
        return shared

    def name_of(self, question: Mapping[str, Any]) -> str:
        return self.names.get(id(question), str(question["key"]))

    def rewrite(self, row: MutableMapping[Any, Any], scope: Scope) -> None:
        """A row's references to shared keys, by the names of the questions in view from
        `scope` (the repeats the row's question is asked in)."""
        if not self.names:
            return
        for column, value in row.items():
            if column not in ("name", "type") and isinstance(value, str) and "${" in value:
                row[column] = _REFERENCE.sub(lambda match: self._named(match, scope), value)

    def _named(self, match: re.Match[str], scope: Scope) -> str:
        found = self.index.find(match.group(1), scope)
        if found is None or isinstance(found, str) or id(found[1]) not in self.names:
            return match.group(0)
        return "${" + self.names[id(found[1])] + "}"

    def restore(self, text: str) -> str:
        """The text (the XForm) with each question named by its key again."""
        if self.pattern is None:
            return text
        return self.pattern.sub(lambda match: self.back[match.group(0)], text)

    def restore_all(self, value: Any) -> Any:
        """A definition (nested dicts and lists) with its keys and references given back."""
        if self.pattern is None:
            return value
        if isinstance(value, str):
            return self.restore(value)
        if isinstance(value, Mapping):
            return {self.restore_all(k): self.restore_all(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.restore_all(item) for item in value]
        return value


def _apart(places: Sequence[tuple[Scope, Mapping[str, Any]]]) -> bool:
    if len(places) < 2 or any(question.get("type") == "repeat" for _, question in places):
        return False
    return not any(
        encloses(one, other) or encloses(other, one)
        for number, (one, _) in enumerate(places)
        for other, _ in places[number + 1 :]
    )
