"""Selects and their choices for the mapping (mapping.py): inline options, the questionnaire's
named choice lists (with their extra columns, for choice_filter), lists from uploaded CSV files,
media; and where each choice was written, so that a problem of it names that row or line."""

from collections.abc import Mapping
from typing import Any

from app.services.xlsform.files import choices_from_file, list_suffix
from app.services.xlsform.vocabulary import SELECTS, language_code, slug

Loc = list[str | int]


class ChoicesMixin:
    """The choice-related half of FormMapping (its fields are declared there)."""

    default: str
    problems: list[tuple[Loc, str]]
    lists: Mapping[str, Any]
    choice_lists: dict[str, list[dict[str, Any]]]
    files: Mapping[str, bytes]
    file_lists: dict[str, str]
    files_refused: set[str]
    choice_rows: Mapping[tuple[str, str], int]
    item_places: dict[tuple[str, int], Loc]
    option_places: dict[tuple[str | int, ...], Loc]
    externals: list[str]

    def text(self, value: Any, name: Any, column: str) -> dict[str, str] | None:
        raise NotImplementedError

    def problem(self, name: Any, column: str, message: str) -> None:
        raise NotImplementedError

    def expression(self, text: Any) -> str:
        raise NotImplementedError

    def choice_loc(self, loc: Loc) -> Loc | None:
        """A choice's problem where the choice was written: its row of the choices sheet or its
        line of a CSV file (None when not known)."""
        source: Loc | None = None
        rest: Loc = []
        if len(loc) > 2 and loc[0] == "choice_lists" and isinstance(loc[2], int):
            source, rest = self.item_places.get((str(loc[1]), loc[2])), loc[3:]
        else:  # an inline option: [..., "options", <index>, <field>?]
            for end in range(len(loc), 0, -1):
                if tuple(loc[:end]) in self.option_places:
                    source, rest = self.option_places[tuple(loc[:end])], loc[end:]
                    break
        if source is None:
            return None
        return [*source, *({"value": "name"}.get(str(part), str(part)) for part in rest[:1])]

    def select(self, question: dict[str, Any], element: Mapping[str, Any], kind: str) -> bool:
        """A select_one / select_multiple / rank: its options inline, or, with a choice_filter
        or from a file, its list by name (the list's extra columns are what the filter reads)."""
        name = question["key"]
        question["type"] = SELECTS[kind]
        listed = str(element.get("itemset") or element.get("list_name") or "")
        if "." in listed:
            found = self.file_list(listed, name, element.get("parameters") or {})
            if found is None:
                return False
            listed = found
        elif self.boolean(element):
            question["type"] = "boolean"
            return True
        if element.get("choice_filter"):
            question["choice_filter"] = self.expression(element["choice_filter"])
        if "choice_filter" in question or listed in self.choice_lists:
            question["choices"] = self.choice_list(listed, element.get("choices") or [], name)
            return True
        question["options"] = [
            self.option(choice, name, extra=False) for choice in element.get("choices") or []
        ]
        return True

    def option(self, choice: Mapping[str, Any], name: Any, *, extra: bool) -> dict[str, Any]:
        option: dict[str, Any] = {
            "value": str(choice.get("name")),
            "label": self.text(choice.get("label"), name, "label")
            or {self.default: str(choice.get("name"))},
        }
        media = self.media(choice.get("media"), name)
        if media:
            option["media"] = media
        if extra:
            option |= {
                str(column): str(value)
                for column, value in choice.items()
                if column not in ("name", "label", "media", "__row") and value not in (None, "")
            }
        return option

    def choice_list(self, listed: str, choices: list[Mapping[str, Any]], name: Any) -> str:
        """The questionnaire's choice list `listed` (made once, from the choices sheet)."""
        if listed not in self.choice_lists:
            self.choice_lists[listed] = [self.option(c, name, extra=True) for c in choices]
            for index, choice in enumerate(choices):
                row = self.choice_rows.get((listed, str(choice.get("name"))))
                if row is not None:
                    self.item_places[(listed, index)] = ["file", "choices", row]
        return listed

    def file_list(self, file_name: str, name: Any, parameters: Mapping[str, Any]) -> str | None:
        """The choice list of a select_one_from_file: its CSV, XML or GeoJSON file, uploaded
        with the form as a `media` part, read once (services/xlsform/files.py); named by the
        file's stem."""
        if file_name in self.file_lists:
            return self.file_lists[file_name]
        if file_name in self.files_refused:  # its problems are named once
            return None
        if list_suffix(file_name) is None:
            self.problem(name, "type", f"{file_name}: lists come from .csv, .xml or .geojson")
            return None
        content = self.files.get(file_name)
        if content is None:
            self.problem(name, "type", f"{file_name} was not uploaded (a `media` part)")
            return None
        choices, problems = choices_from_file(
            content,
            file_name,
            value_column=str(parameters.get("value") or "") or None,
            label_column=str(parameters.get("label") or "") or None,
            language_of=language_code,
        )
        self.problems += problems
        if problems:
            self.files_refused.add(file_name)
            return None
        listed = slug(file_name.rsplit(".", 1)[0]).replace("-", "_") or "file"
        if not listed[0].isalpha():
            listed = f"file_{listed}"
        # (an xml-external of the same file is an instance of that name in the XForm)
        while listed in self.lists or listed in self.choice_lists or listed in self.externals:
            listed += "_file"
        for index, (line, choice) in enumerate(choices):
            self.item_places[(listed, index)] = ["media", file_name, line]
            label = {
                self.default if code == "" else code: text for code, text in choice["label"].items()
            }
            choice["label"] = label or {self.default: choice["value"]}
        self.choice_lists[listed] = [choice for _, choice in choices]
        self.file_lists[file_name] = listed
        return listed

    def media(self, value: Any, name: Any) -> dict[str, dict[str, str]] | None:
        """`media::image::<language>` / `image::<language>` columns as {kind: I18nText}."""
        if not isinstance(value, Mapping) or not value:
            return None
        media: dict[str, dict[str, str]] = {}
        for kind, files in value.items():
            if kind not in ("image", "audio", "video"):
                self.problem(name, f"media::{kind}", "media are image, audio or video")
                continue
            texts = self.text(files, name, f"media::{kind}")
            if texts:
                media[kind] = texts
        return media or None

    def boolean(self, element: Mapping[str, Any]) -> bool:
        """A yes/no select that Kenes's own workbook marks as a boolean (`kenes_type`)."""
        values = [choice.get("name") for choice in element.get("choices") or []]
        marked = str(element.get("kenes_type") or "").strip() == "boolean"
        return marked and element.get("type") == "select one" and values == ["true", "false"]
