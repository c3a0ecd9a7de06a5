"""A questionnaire version compiled once: answer checks, and the typed columns that hold them.

Compiling parses the stored definition a single time; submissions then run plain Python checks
(no per-request model building), which keeps the submission hot path fast.

Where answers are stored (the layout) follows from the definition alone: each question gets
one column in the best plain type (a multiple choice one BIGINT bit mask per 63 options), and
the columns are cut into pages, one table each, small enough for any row to fit a database page
(PostgreSQL: 1,600 columns and about 8 KB of fixed-width data at most). Every page row carries
the respondent's dimensions, so an aggregate reads one table in one pass. The layout of a
published version never changes: its tables are made from it at publish time.
"""

from app.services.answer_codecs import MASK_BITS, NUMBER_TYPES, Encoded
from app.services.answers.compiled import CompiledQuestionnaire
from app.services.answers.compiling import compile_questionnaire, table_prefix
from app.services.answers.media import MEDIA_TYPES, media_names, media_questions
from app.services.answers.parts import (
    CURRENT_LAYOUT,
    INSTANCE_PREFIX,
    LAYOUTS,
    MAX_INSTANCES,
    AnswerPage,
    CompiledQuestion,
    CompiledRepeat,
    Instance,
    PageRows,
    Relevance,
)

__all__ = [
    "CURRENT_LAYOUT",
    "INSTANCE_PREFIX",
    "LAYOUTS",
    "MASK_BITS",
    "MAX_INSTANCES",
    "MEDIA_TYPES",
    "NUMBER_TYPES",
    "AnswerPage",
    "CompiledQuestion",
    "CompiledQuestionnaire",
    "CompiledRepeat",
    "Encoded",
    "Instance",
    "PageRows",
    "Relevance",
    "compile_questionnaire",
    "media_names",
    "media_questions",
    "table_prefix",
]
