"""The files a response's answers name (image, audio, video and file questions)."""

from collections.abc import Mapping, Sequence
from typing import Any

from app.services.answer_codecs import MEDIA_TYPES
from app.services.answers.compiled import CompiledQuestionnaire
from app.services.answers.parts import CompiledQuestion, CompiledRepeat

__all__ = ["MEDIA_TYPES", "media_names", "media_questions"]


def media_questions(compiled: CompiledQuestionnaire) -> dict[str, str]:
    """key -> type of every media question (repeats included)."""
    return {q.key: q.type for q in compiled.questions if q.type in MEDIA_TYPES}


def media_names(compiled: CompiledQuestionnaire, answers: Mapping[str, Any]) -> list[str]:
    """The attachment names a response's answers name, in the order of the questions (each
    once); answers as the API takes and gives them (checked ones: as answers_from gives them)."""
    names: dict[str, None] = {}
    _collect(compiled.members, answers, names)
    return list(names)


def _collect(
    members: Sequence[CompiledQuestion | CompiledRepeat],
    answers: Mapping[str, Any],
    names: dict[str, None],
) -> None:
    for member in members:
        value = answers.get(member.key)
        if value is None:
            continue
        if isinstance(member, CompiledRepeat):
            if isinstance(value, list):
                for instance in value:
                    if isinstance(instance, Mapping):
                        _collect(member.members, instance, names)
        elif member.type in MEDIA_TYPES and isinstance(value, str):
            names[value] = None
