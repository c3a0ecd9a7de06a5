"""The respondent's dimensions as questions of the XForm: a group `_respondent` at the top with
`group` (a calculate when there is one group), `gender`, `age_band`, and the territory (its code
typed in, or a cascade over the form media territories.csv, services/openrosa/media.py)."""

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from app.models.responses import AGE_BANDS, GENDERS
from app.services.openrosa.question_types import Row
from app.services.openrosa.words import AGE_WORDS, GENDER_WORDS, WORDS, same

if TYPE_CHECKING:
    from app.services.openrosa.rows import Sheets

RESPONDENT = "_respondent"
# The territory cascade (when the server has territories): one optional select per depth of
# the tree (a root, then its child, ... at most a settlement: five levels), each listing the
# children of the one chosen before; the deepest answered is the respondent's territory.
TERRITORY_STEP = "territory_"
TERRITORY_DEPTH = 5
TERRITORY_LIST = "territories"  # instance('territories'), from territories.csv


def respondent(sheets: "Sheets", groups: Sequence[Mapping[str, Any]], territories: bool) -> None:
    sheets.survey.append(
        {
            "type": "begin_group",
            "name": sheets.names[RESPONDENT],
            **sheets.texts("label", sheets.ours(WORDS["respondent"])),
        }
    )
    if len(groups) == 1:
        # One group: nothing to ask.
        sheets.survey.append(
            {"type": "calculate", "name": "group", "calculation": f"'{groups[0]['key']}'"}
        )
    else:
        sheets.add_list("_group", [(group["key"], group["label"]) for group in groups])
        sheets.survey.append(
            {
                "type": "select_one _group",
                "name": "group",
                "required": "yes",
                **sheets.texts("label", sheets.ours(WORDS["group"])),
            }
        )
    sheets.add_list("_gender", [(value, sheets.ours(GENDER_WORDS[value])) for value in GENDERS])
    sheets.add_list(
        "_age_band",
        [(value, sheets.ours(AGE_WORDS.get(value, same(value)))) for value in AGE_BANDS],
    )
    for name, kind in (("gender", "select_one _gender"), ("age_band", "select_one _age_band")):
        sheets.survey.append(
            {"type": kind, "name": name, **sheets.texts("label", sheets.ours(WORDS[name]))}
        )
    if territories:
        territory_cascade(sheets)
    else:
        sheets.survey.append(
            {
                "type": "text",
                "name": "territory_code",
                **sheets.texts("label", sheets.ours(WORDS["territory_code"])),
            }
        )
    sheets.survey.append({"type": "end_group"})


def territory_cascade(sheets: "Sheets") -> None:
    """`territory_1` lists the roots (`parent` empty); each next one the children of the
    one before, asked only when it was answered and has children."""
    for depth in range(1, TERRITORY_DEPTH + 1):
        row: Row = {
            "type": f"select_one_from_file {TERRITORY_LIST}.csv",
            "name": f"{TERRITORY_STEP}{depth}",
        }
        if depth == 1:
            row["choice_filter"] = "parent=''"
            row |= sheets.texts("label", sheets.ours(WORDS["territory_root"]))
        else:
            before = "${" + f"{TERRITORY_STEP}{depth - 1}" + "}"
            row["choice_filter"] = f"parent={before}"
            row["relevant"] = (
                f"{before} != '' and "
                f"count(instance('{TERRITORY_LIST}')/root/item[parent={before}]) > 0"
            )
            row |= sheets.texts("label", sheets.ours(WORDS["territory_next"]))
        sheets.survey.append(row)
