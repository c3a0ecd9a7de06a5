"""The basic types of definitions: keys, languages, trilingual texts, finite numbers."""

from typing import Annotated

from annotated_types import MinLen
from pydantic import Field, StrictFloat, StrictInt, StringConstraints

# XLSForm names (capitals, dots and hyphens too), as the contract allows.
KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"
LANGUAGES = ("kk", "ru", "en")
MAX_QUESTIONS = 2000
MAX_OPTIONS = 10_000
MAX_MULTIPLE_OPTIONS = 1000

# A BCP 47 language tag (well-formed: a 2-8 letter language, then subtags of 1-8 letters or
# digits: "kk", "ru", "en-GB", "uz-Cyrl", "es-419"); the service's own texts come in LANGUAGES.
LANGUAGE_TAG_PATTERN = r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$"
MAX_LANGUAGE_TAG = 35
Language = Annotated[
    str, StringConstraints(pattern=LANGUAGE_TAG_PATTERN, max_length=MAX_LANGUAGE_TAG)
]
Key = Annotated[str, StringConstraints(pattern=KEY_PATTERN)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
I18nText = Annotated[dict[Language, Label], MinLen(1)]
# NaN, Infinity and 1e400 parse as floats; stored, they broke every later read (SQLite) or the
# insert itself (PostgreSQL's JSONB has no NaN).
FiniteNumber = Annotated[StrictFloat, Field(allow_inf_nan=False)] | StrictInt
