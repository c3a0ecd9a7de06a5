"""Words an XForm adds to a definition (the definition has its own labels for the rest)."""

from collections.abc import Mapping

LANGUAGE_NAMES = {"kk": "Қазақша (kk)", "ru": "Русский (ru)", "en": "English (en)"}
# Other languages' names in XLSForm column suffixes (any other tag: "<tag> (<tag>)").
OTHER_NAMES = {
    "fr": "Français",
    "de": "Deutsch",
    "es": "Español",
    "pt": "Português",
    "ar": "العربية",
    "zh": "中文",
    "zh-Hans": "简体中文",
    "zh-Hant": "繁體中文",
    "tr": "Türkçe",
    "uz": "Oʻzbekcha",
    "ky": "Кыргызча",
    "tg": "Тоҷикӣ",
    "uk": "Українська",
}


def language_name(code: str) -> str:
    """The XLSForm column suffix of a language: `Name (code)`, as pyxform reads it."""
    return LANGUAGE_NAMES.get(code) or f"{OTHER_NAMES.get(code, code)} ({code})"


WORDS: dict[str, dict[str, str]] = {
    "respondent": {"kk": "Респондент", "ru": "Респондент", "en": "Respondent"},
    "group": {"kk": "Респонденттер тобы", "ru": "Группа респондентов", "en": "Respondent group"},
    "gender": {"kk": "Жынысы", "ru": "Пол", "en": "Gender"},
    "age_band": {"kk": "Жас тобы", "ru": "Возрастная группа", "en": "Age band"},
    "territory_code": {
        "kk": "Аумақ коды (ҚАТО)",
        "ru": "Код территории (КАТО)",
        "en": "Territory code (KATO)",
    },
    "territory_root": {
        "kk": "Облыс немесе республикалық маңызы бар қала",
        "ru": "Область или город республиканского значения",
        "en": "Region or city of republican significance",
    },
    "territory_next": {
        "kk": "Оның ішінде (міндетті емес)",
        "ru": "В том числе (необязательно)",
        "en": "Within it (optional)",
    },
    "how_many": {"kk": "{label}: саны", "ru": "{label}: сколько?", "en": "{label}: how many?"},
    "allowed": {
        "kk": "Рұқсат етілген: {range}",
        "ru": "Допустимо: {range}",
        "en": "Allowed: {range}",
    },
    "selected": {
        "kk": "Таңдалғандар саны: {range}",
        "ru": "Выбрано должно быть: {range}",
        "en": "Number selected: {range}",
    },
    "characters": {
        "kk": "Ең көбі {n} таңба",
        "ru": "Не более {n} символов",
        "en": "At most {n} characters",
    },
    "true": {"kk": "Иә", "ru": "Да", "en": "Yes"},
    "false": {"kk": "Жоқ", "ru": "Нет", "en": "No"},
}
GENDER_WORDS = {
    "female": {"kk": "Әйел", "ru": "Женский", "en": "Female"},
    "male": {"kk": "Ер", "ru": "Мужской", "en": "Male"},
    "other": {"kk": "Басқа", "ru": "Другой", "en": "Other"},
    "undisclosed": {"kk": "Айтқым келмейді", "ru": "Предпочитаю не говорить", "en": "Undisclosed"},
}
AGE_WORDS = {
    "under_18": {"kk": "18-ге дейін", "ru": "До 18", "en": "Under 18"},
    "65+": {"kk": "65 және одан жоғары", "ru": "65 и старше", "en": "65 and over"},
}


def same(value: str) -> dict[str, str]:
    """One text in every language."""
    return {code: value for code in LANGUAGE_NAMES}


def how_many(label: Mapping[str, str]) -> dict[str, str]:
    template = WORDS["how_many"]
    return {
        code: template.get(code, template["en"]).format(label=text) for code, text in label.items()
    }
