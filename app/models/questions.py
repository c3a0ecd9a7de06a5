"""Questions of a questionnaire (every type, choice lists, settings); the basic types of
definitions are in basics.py, conditions in conditions.py (both re-exported here)."""

from typing import Annotated, Literal

from annotated_types import MaxLen, MinLen
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
)

from app.models.basics import (
    KEY_PATTERN,
    LANGUAGE_TAG_PATTERN,
    LANGUAGES,
    MAX_LANGUAGE_TAG,
    MAX_MULTIPLE_OPTIONS,
    MAX_OPTIONS,
    MAX_QUESTIONS,
    FiniteNumber,
    I18nText,
    Key,
    Label,
    Language,
)
from app.models.conditions import Condition

__all__ = [
    "KEY_PATTERN",
    "LANGUAGES",
    "LANGUAGE_TAG_PATTERN",
    "MAX_LANGUAGE_TAG",
    "MAX_MULTIPLE_OPTIONS",
    "MAX_OPTIONS",
    "MAX_QUESTIONS",
    "Condition",
    "FiniteNumber",
    "I18nText",
    "Key",
    "Label",
    "Language",
]

# --- questions --------------------------------------------------------------------------------


# An XLSForm expression (services/expressions): parsed and checked when the definition is saved.
Expression = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
ShortText = Annotated[str, StringConstraints(max_length=2000)]


# A file of the form's media (uploaded with the form), by its name.
MediaName = Annotated[str, StringConstraints(min_length=1, max_length=255)]


class Media(BaseModel):
    """Image, audio or video shown with a question or option, per language (kept, given back)."""

    model_config = ConfigDict(extra="forbid")

    image: Annotated[dict[Language, MediaName], MinLen(1)] | None = None
    audio: Annotated[dict[Language, MediaName], MinLen(1)] | None = None
    video: Annotated[dict[Language, MediaName], MinLen(1)] | None = None


OptionValue = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class Option(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: OptionValue
    label: I18nText
    # left out when absent: options are many, and were given back without it before
    media: Media | None = Field(default=None, exclude_if=lambda value: value is None)


# An option's extra property (a column of XLSForm's choices sheet), for choice_filter.
PropertyValue = Annotated[str, StringConstraints(max_length=2000)]


class ChoiceItem(BaseModel):
    """An option of a questionnaire's choice list: value, label and any extra properties
    (strings), which a question's `choice_filter` reads by their bare names."""

    model_config = ConfigDict(extra="allow")

    value: OptionValue
    label: I18nText
    # left out when absent: options are many, and were given back without it before
    media: Media | None = Field(default=None, exclude_if=lambda value: value is None)
    __pydantic_extra__: dict[str, PropertyValue] = Field(init=False)


ListName = Annotated[str, StringConstraints(pattern=KEY_PATTERN)]
ChoiceList = Annotated[list[ChoiceItem], MinLen(1), MaxLen(MAX_OPTIONS)]
ChoiceLists = Annotated[dict[ListName, ChoiceList], MaxLen(500)]


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # names each response (an expression over the answers), checked when saved
    instance_name: Expression | None = None
    # base64 DER RSA public key: the form takes encrypted submissions only (services/openrosa)
    public_key: Annotated[str, StringConstraints(min_length=1, max_length=10_000)] | None = None
    # XLSForm's xml-external: secondary instances, each read by clients from the form media
    # file `<name>.xml` (listed in the manifest); no answer of their own
    external_instances: Annotated[list[Key], MinLen(1), MaxLen(100)] | None = None


class QuestionBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: Key
    label: I18nText
    help: I18nText | None = None
    # true/false, or an expression deciding it per response
    required: StrictBool | Expression = False
    required_message: I18nText | None = None
    relevant: Condition | Expression | None = None
    # an expression over `.` (this answer) and earlier answers; a response breaking it is 422
    constraint: Expression | None = None
    constraint_message: I18nText | None = None
    # kept and given back (for clients that draw the form); the server does not apply them
    default: ShortText | FiniteNumber | StrictBool | None = None
    appearance: ShortText | None = None
    read_only: StrictBool | Expression | None = None
    guidance_hint: I18nText | None = None
    media: Media | None = None


class ChoiceBase(QuestionBase):
    """Options inline (`options`) or from a choice list (`choices`: its name), exactly one;
    `choice_filter` keeps the options it holds for (bare names: the option's properties)."""

    choices: ListName | None = None
    choice_filter: Expression | None = None


class SingleChoice(ChoiceBase):
    type: Literal["single_choice"]
    options: Annotated[list[Option], MinLen(1), MaxLen(MAX_OPTIONS)] | None = None


class MultipleChoice(ChoiceBase):
    type: Literal["multiple_choice"]
    options: Annotated[list[Option], MinLen(1), MaxLen(MAX_MULTIPLE_OPTIONS)] | None = None
    min_selected: Annotated[StrictInt, Field(ge=1)] | None = None
    max_selected: Annotated[StrictInt, Field(ge=1)] | None = None


class Rank(ChoiceBase):
    """An ordered list of option values, each at most once."""

    type: Literal["rank"]
    options: Annotated[list[Option], MinLen(1), MaxLen(MAX_MULTIPLE_OPTIONS)] | None = None


# A flag of an XLSForm type that is a Kenes type asked another way (hidden, start-geopoint,
# background-audio): left out of the stored definition when not set.
Flag = Annotated[StrictBool | None, Field(default=None, exclude_if=lambda value: value is None)]


class Text(QuestionBase):
    """`hidden`: no widget (XLSForm's hidden); the value is the default, or empty."""

    type: Literal["text"]
    max_length: Annotated[StrictInt, Field(ge=1, le=10_000)] = 2000
    hidden: Flag = None


class Integer(QuestionBase):
    type: Literal["integer"]
    min: StrictInt | None = None
    max: StrictInt | None = None


class Decimal(QuestionBase):
    type: Literal["decimal"]
    min: FiniteNumber | None = None
    max: FiniteNumber | None = None


class Scale(QuestionBase):
    type: Literal["scale"]
    min: StrictInt
    max: StrictInt
    step: Annotated[StrictInt, Field(ge=1)] | None = None  # answers are min + k * step


class Boolean(QuestionBase):
    type: Literal["boolean"]


class Date(QuestionBase):
    type: Literal["date"]


class Time(QuestionBase):
    """ "HH:MM" or "HH:MM:SS[.fff]", optionally with a UTC offset; kept as sent."""

    type: Literal["time"]


class DateTime(QuestionBase):
    """An ISO 8601 date-time with its UTC offset; kept as sent."""

    type: Literal["datetime"]


class Geopoint(QuestionBase):
    """{"lat", "lon", "altitude"?, "accuracy"?}; `at_start`: no widget, the device records
    the point once, when the form is opened (XLSForm's start-geopoint)."""

    type: Literal["geopoint"]
    at_start: Flag = None


class Geotrace(QuestionBase):
    """A line: at least 2 points."""

    type: Literal["geotrace"]


class Geoshape(QuestionBase):
    """A closed shape: at least 4 points, the last the same as the first."""

    type: Literal["geoshape"]


class Barcode(QuestionBase):
    type: Literal["barcode"]


class Acknowledge(QuestionBase):
    """Answered only with true."""

    type: Literal["acknowledge"]


class Image(QuestionBase):
    """The answer names a file attached to the response (so for audio, video, file)."""

    type: Literal["image"]


# ODK's recording qualities (`external`: another app records; not in the background)
AudioQuality = Literal["voice-only", "low", "normal", "external"]


class Audio(QuestionBase):
    """`background`: no widget, the device records while the form is filled (XLSForm's
    background-audio), at `quality` (XLSForm's parameters; ODK's default voice-only)."""

    type: Literal["audio"]
    background: Flag = None
    quality: Annotated[AudioQuality | None, Field(exclude_if=lambda value: value is None)] = None


class Video(QuestionBase):
    type: Literal["video"]


class File(QuestionBase):
    type: Literal["file"]


MetaKind = Literal[
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
]


class Meta(BaseModel):
    """A value the device records (start, end, deviceid, ...), stored as sent (text)."""

    model_config = ConfigDict(extra="forbid")

    key: Key
    type: Literal["meta"]
    meta: MetaKind
    label: I18nText | None = None
    help: I18nText | None = None
    relevant: Condition | Expression | None = None
    appearance: ShortText | None = None


class Note(QuestionBase):
    """Display text: never answered (no column)."""

    type: Literal["note"]


class Calculate(BaseModel):
    """A value the server computes from the answers (`calculation`) and stores as text; one
    using now(), today(), uuid(), random() or once() keeps the client's value instead."""

    model_config = ConfigDict(extra="forbid")

    key: Key
    type: Literal["calculate"]
    calculation: Expression
    label: I18nText | None = None
    help: I18nText | None = None
    relevant: Condition | Expression | None = None
    default: ShortText | FiniteNumber | StrictBool | None = None
    appearance: ShortText | None = None
    read_only: StrictBool | Expression | None = None
    media: Media | None = None


MAX_REPEAT_INSTANCES = 1000
MAX_NESTING = 8


class Group(BaseModel):
    """Questions shown together; its `relevant` applies to all of them. Their answers are keyed
    by their own keys (no nesting in the answers)."""

    model_config = ConfigDict(extra="forbid")

    key: Key
    type: Literal["group"]
    label: I18nText | None = None
    relevant: Condition | Expression | None = None
    appearance: ShortText | None = None
    media: Media | None = None
    questions: Annotated[list["Question"], MinLen(1), MaxLen(MAX_QUESTIONS)]


class Repeat(BaseModel):
    """Questions asked once per instance (a household roster); the answer is a list of
    objects, one per instance."""

    model_config = ConfigDict(extra="forbid")

    key: Key
    type: Literal["repeat"]
    label: I18nText
    help: I18nText | None = None
    relevant: Condition | Expression | None = None
    appearance: ShortText | None = None
    media: Media | None = None
    questions: Annotated[list["Question"], MinLen(1), MaxLen(MAX_QUESTIONS)]
    min_count: Annotated[StrictInt, Field(ge=0, le=MAX_REPEAT_INSTANCES)] | None = None
    max_count: Annotated[StrictInt, Field(ge=1, le=MAX_REPEAT_INSTANCES)] | None = None
    # an expression fixing the number of instances (XLSForm's repeat_count)
    count: Expression | None = None


Question = Annotated[
    SingleChoice
    | MultipleChoice
    | Text
    | Integer
    | Decimal
    | Scale
    | Boolean
    | Date
    | Time
    | DateTime
    | Geopoint
    | Geotrace
    | Geoshape
    | Barcode
    | Acknowledge
    | Rank
    | Image
    | Audio
    | Video
    | File
    | Meta
    | Note
    | Calculate
    | Group
    | Repeat,
    Field(discriminator="type"),
]
Group.model_rebuild()
Repeat.model_rebuild()
