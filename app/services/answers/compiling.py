"""Compiling a stored definition once: every question's check and decoding, its expressions,
and where its answers are stored (the layout: pages of typed columns)."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from app.services.answer_codecs import Canonical, canonical, checker, column_kinds, decoder
from app.services.answers.compiled import CompiledQuestionnaire
from app.services.answers.parts import (
    CURRENT_LAYOUT,
    INSTANCE_PREFIX,
    KIND_BYTES,
    LAYOUTS,
    MAX_INSTANCES,
    AnswerPage,
    CompiledQuestion,
    CompiledRepeat,
    Relevance,
)
from app.services.expressions.forms import (
    FormExpressions,
    compile_definition,
    instance_name_expression,
    option_properties,
)


def table_prefix(questionnaire_id: UUID) -> str:
    """Answer tables of a questionnaire version are named <prefix><page>."""
    return f"answers_{questionnaire_id.hex}_p"


@dataclass
class _Layout:
    """Pages being filled while a definition is compiled: each scope has its own."""

    page_columns: int
    page_bytes: int
    pages: list[list[tuple[str, str]]] = field(default_factory=list)
    scopes: list[str | None] = field(default_factory=list)
    widths: list[int] = field(default_factory=list)
    number: int = 0  # questions numbered across the whole form: a1, a2, ...

    def new_page(self, scope: str | None) -> int:
        self.pages.append([])
        self.scopes.append(scope)
        self.widths.append(0)
        return len(self.pages) - 1

    def place(self, page: int, kinds: list[str], scope: str | None) -> tuple[int, int, list[str]]:
        """(page, offset, column names) for a question's columns, on a new page if needed."""
        self.number += 1
        width = sum(KIND_BYTES[kind] for kind in kinds)
        if self.pages[page] and (
            len(self.pages[page]) + len(kinds) > self.page_columns
            or self.widths[page] + width > self.page_bytes
        ):
            page = self.new_page(scope)
        n = self.number
        names = [f"a{n}"] if len(kinds) == 1 else [f"a{n}_{i}" for i in range(len(kinds))]
        offset = len(self.pages[page])
        self.pages[page].extend(zip(names, kinds, strict=True))
        self.widths[page] += width
        return page, offset, names


def _text(value: Mapping[str, str] | None, language: str) -> str | None:
    if not value:
        return None
    return value.get(language) or next(iter(value.values()))


@dataclass
class _Compiling:
    layout: _Layout
    expressions: FormExpressions
    language: str
    out: list[CompiledQuestion] = field(default_factory=list)
    repeats: dict[str, CompiledRepeat] = field(default_factory=dict)
    owners: dict[str, list[str | None]] = field(default_factory=dict)
    repeat_path: dict[str, tuple[str, ...]] = field(default_factory=dict)
    choice_lists: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)
    properties: dict[str, Mapping[str, Mapping[str, str]]] = field(default_factory=dict)
    canonical: list[tuple[int, int, int, Canonical]] = field(default_factory=list)

    def options(self, question: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
        name = question.get("choices")
        return self.choice_lists.get(name, ()) if name else question.get("options") or ()

    def option_properties(self, question: Mapping[str, Any]) -> Mapping[str, Mapping[str, str]]:
        """What a choice_filter's bare names read, per option value (once per choice list)."""
        name = question.get("choices") or f"#inline:{question['key']}"
        found = self.properties.get(name)
        if found is None:
            found = {
                option["value"]: {**option_properties(option), "name": option["value"]}
                for option in self.options(question)
            }
            self.properties[name] = found
        return found

    def scope(
        self,
        questions: Sequence[Mapping[str, Any]],
        scope: str | None,
        pages: list[int],
        inherited: Relevance,
    ) -> tuple[CompiledQuestion | CompiledRepeat, ...]:
        """A scope's members, groups flattened (a group's `relevant` joins its members')."""
        members: list[CompiledQuestion | CompiledRepeat] = []
        expressions = self.expressions
        for question in questions:
            qtype = question["type"]
            own = expressions.of(question, "relevant")
            relevant = (*inherited, own) if own is not None else inherited
            key = question["key"]
            if qtype == "group":
                members += self.scope(question["questions"], scope, pages, relevant)
                continue
            self.owners.setdefault(key, []).append(scope)
            if qtype == "note":  # never answered: no column, no check
                continue
            if qtype == "repeat":
                outer = self.repeat_path.get(scope or "", ())
                self.repeat_path[key] = (*outer, key)
                own_pages = [self.layout.new_page(key)]
                inner = self.scope(question["questions"], key, own_pages, ())
                repeat = CompiledRepeat(
                    key=key,
                    relevant=relevant,
                    min_count=question.get("min_count"),
                    max_count=question.get("max_count") or MAX_INSTANCES,
                    pages=tuple(own_pages),
                    count=expressions.of(question, "count"),
                    members=inner,
                    keys=frozenset(member.key for member in inner),
                    parent=scope,
                )
                self.repeats[key] = repeat
                members.append(repeat)
                continue
            definition = question
            if question.get("choices"):  # the options of its choice list
                question = {**question, "options": self.options(question)}
            page, offset, names = self.layout.place(pages[-1], column_kinds(question), scope)
            if page != pages[-1]:
                pages.append(page)
            required = question.get("required", False)
            spelling = canonical(question)
            if spelling is not None:
                start = offset + (INSTANCE_PREFIX if scope is not None else 0)
                self.canonical.append((page, start, len(names), spelling))
            choice_filter = expressions.of(definition, "choice_filter")
            compiled = CompiledQuestion(
                key=key,
                type=qtype,
                required=required is True,
                relevant=relevant,
                page=page,
                offset=offset,
                columns=tuple(names),
                empty=(None,) * len(names),
                check=checker(question),
                decode=decoder(question),
                repeat=scope,
                option_values=tuple(o["value"] for o in question.get("options", ())),
                low=question.get("min"),
                high=question.get("max"),
                required_when=expressions.of(definition, "required"),
                required_message=_text(question.get("required_message"), self.language),
                constraint=expressions.of(definition, "constraint"),
                constraint_message=_text(question.get("constraint_message"), self.language),
                calculation=expressions.of(definition, "calculation"),
                definition=definition,
                canonical=spelling,
                choice_filter=choice_filter,
                option_properties=(
                    self.option_properties(definition) if choice_filter is not None else {}
                ),
            )
            self.out.append(compiled)
            members.append(compiled)
        return tuple(members)


def compile_questionnaire(
    *,
    id: Any,
    version: int,
    status: str,
    access: str,
    definition: Mapping[str, Any],
    layout: int | None = None,
    language: str | None = None,
) -> CompiledQuestionnaire:
    """The compiled version; its answer tables laid out by rules `layout` (the current rules
    for a draft, which has no tables yet)."""
    groups = {
        group["key"]: (index, group["category"])
        for index, group in enumerate(definition["respondent_groups"])
    }
    pages = _Layout(*LAYOUTS[layout or CURRENT_LAYOUT])
    top = [pages.new_page(None)]
    language = language or next(iter(definition.get("title") or {"en": ""}))
    choice_lists = definition.get("choice_lists") or {}
    expressions = compile_definition(definition["questions"], language, choice_lists=choice_lists)
    compiling = _Compiling(pages, expressions, language, choice_lists=choice_lists)
    members = compiling.scope(definition["questions"], None, top, ())
    compiled, repeats = compiling.out, compiling.repeats
    settings = definition.get("settings") or {}
    name = settings.get("instance_name")
    if name:  # checked when saved: it compiles
        name = instance_name_expression(name, definition["questions"], language, choice_lists)
    prefix = table_prefix(id) if isinstance(id, UUID) else "answers_unsaved_p"
    return CompiledQuestionnaire(
        id=id,
        version=version,
        status=status,
        access=access,
        groups=groups,
        group_keys=tuple(groups),
        questions=tuple(compiled),
        pages=tuple(
            AnswerPage(f"{prefix}{n}", tuple(columns), pages.scopes[n])
            for n, columns in enumerate(pages.pages)
        ),
        members=members,
        keys=frozenset(member.key for member in members),
        by_key=_by_key(compiled),
        repeats=repeats,
        owners={key: tuple(scopes) for key, scopes in compiling.owners.items()},
        repeat_path=compiling.repeat_path,
        canonical_columns=tuple(compiling.canonical),
        choice_lists=choice_lists,
        settings=settings,
        instance_name=name or None,
    )


def _by_key(questions: Sequence[CompiledQuestion]) -> dict[str, tuple[CompiledQuestion, ...]]:
    found: dict[str, list[CompiledQuestion]] = {}
    for question in questions:
        found.setdefault(question.key, []).append(question)
    return {key: tuple(same) for key, same in found.items()}
