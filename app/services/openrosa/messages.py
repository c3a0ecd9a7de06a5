"""What OpenRosa answers say, in the form's default language (kk, ru or en).

OpenRosa clients show an answer's `<message>` to the person holding the phone, so it is worded
for them. Details the service gives in English (why a value does not fit) follow the phrase.
"""

from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape

FALLBACK = "en"

MESSAGES: dict[str, dict[str, str]] = {
    "stored": {"kk": "Жауап қабылданды", "ru": "Ответ принят", "en": "Response received"},
    "duplicate": {
        "kk": "Бұл жауап бұрын қабылданған",
        "ru": "Этот ответ уже был принят",
        "en": "This response was already received",
    },
    "conflict": {
        "kk": "Осы instanceID-мен басқа жауап бұрын қабылданған",
        "ru": "Под этим instanceID уже принят другой ответ",
        "en": "A different response was already received under this instanceID",
    },
    "closed": {
        "kk": "Сауалнама жабық, жауаптар қабылданбайды",
        "ru": "Анкета закрыта и больше не принимает ответов",
        "en": "The questionnaire is closed; it takes no responses",
    },
    "invalid": {
        "kk": "Жауап сауалнамаға сәйкес келмейді",
        "ru": "Ответ не соответствует анкете",
        "en": "The response does not fit the questionnaire",
    },
    "revoked": {
        "kk": "Бұл сервер мекенжайының кілті жарамсыз немесе кері қайтарылған",
        "ru": "Ключ этого адреса сервера неизвестен или отозван",
        "en": "This server URL's key is unknown or revoked",
    },
    "unknown_form": {
        "kk": "Мұндай форма жоқ",
        "ru": "Такой формы нет",
        "en": "No such form here",
    },
}
# The kinds of problem the answer checks report (services/answers.py), as phrases.
PROBLEMS: dict[str, dict[str, str]] = {
    "missing": {"kk": "жауап қажет", "ru": "нужен ответ", "en": "an answer is required"},
    "not_relevant": {
        "kk": "бұл сұрақ мұнда қойылмайды",
        "ru": "этот вопрос здесь не задаётся",
        "en": "this question does not apply here",
    },
    "invalid_answer": {"kk": "жарамсыз жауап", "ru": "недопустимый ответ", "en": "invalid answer"},
    "unknown": {"kk": "белгісіз", "ru": "неизвестно", "en": "unknown"},
    "too_many": {"kk": "тым көп", "ru": "слишком много", "en": "too many"},
    "too_few": {"kk": "тым аз", "ru": "слишком мало", "en": "too few"},
    # encrypted forms (services/openrosa/envelope.py)
    "encrypted_only": {
        "kk": "бұл форма тек шифрланған жауаптарды қабылдайды",
        "ru": "эта форма принимает только зашифрованные ответы",
        "en": "this form takes only encrypted submissions",
    },
    "encrypted": {
        "kk": "бұл форма шифрланған жауаптарды қабылдамайды",
        "ru": "эта форма не принимает зашифрованные ответы",
        "en": "this form takes no encrypted submissions",
    },
}


def say(name: str, language: str | None) -> str:
    texts = MESSAGES[name]
    return texts.get(language or FALLBACK, texts[FALLBACK])


def problems(
    errors: Sequence[Mapping[str, Any]], language: str | None, labels: Mapping[str, str]
) -> str:
    """Each problem as `label (key): phrase: detail`, joined; the label in the form's language."""
    parts = []
    for error in errors[:20]:
        loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "answers")]
        key = loc[-1] if loc else ""
        phrases = PROBLEMS.get(str(error.get("type")))
        phrase = phrases.get(language or FALLBACK, phrases[FALLBACK]) if phrases else ""
        where = "/".join(loc)
        label = labels.get(key)
        named = f"«{label}» ({where})" if label else where
        detail = str(error.get("msg", ""))
        said = f"{phrase}: {detail}" if phrase else detail
        parts.append(f"{named}: {said}" if named else said)  # the whole instance: no place
    if len(errors) > 20:
        parts.append(f"… +{len(errors) - 20}")
    return "; ".join(parts)


def response_xml(message: str, nature: str | None = None) -> bytes:
    """An OpenRosa response body (OpenRosa Form Submission API)."""
    attribute = f' nature="{nature}"' if nature else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<OpenRosaResponse xmlns="http://openrosa.org/http/response">'
        f"<message{attribute}>{escape(message)}</message></OpenRosaResponse>"
    ).encode()
