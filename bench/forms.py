"""The benchmark forms and a seeded generator of realistic responses to them.

Two questionnaires, as the API contract's JSON (POST /api/v1/questionnaires, then /publish):
  survey: 10 questions: 4 single choice (3-6 options), 2 multiple choice (5-8 options), a 1..5
          scale, an integer 16..99 (age), a boolean and a text;
  wide:   300 questions: 200 single choice (2-12 options, keys s001..), 50 multiple choice of
          10-40 options (m001..), 40 numbers (n001..: half bounded integers such as ages and
          counts, half decimals without bounds such as incomes and areas) and 10 texts (t001..),
          interleaved as real forms are. `scale` shrinks every count (for servers that refuse 300).
No question has a `relevant` condition, so every question can be answered; each is left
unanswered at its own realistic rate (open texts mostly, incomes often, choices seldom).

Responses come in batches of 1000; batch i is drawn from its own seeded generator, so any process
makes the same batch i, and a batch written to disk is exactly what is posted and what the
hand-written typed copy (bench/hand.py) is loaded from. Respondents' territories are drawn from
the demo territories that `kenes demo-data` loads (cities weigh most, 3% give none).
"""

import random
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

BATCH = 1000
GENDERS = ("female", "male", "other", "undisclosed")
AGE_BANDS = ("under_18", "18-24", "25-34", "35-44", "45-54", "55-64", "65+")
GROUPS = (  # key, category, weight
    ("student", "citizen", 14),
    ("employee", "citizen", 34),
    ("pensioner", "citizen", 18),
    ("entrepreneur", "citizen", 12),
    ("ngo", "citizen", 9),
    ("civil_servant", "citizen", 7),
    ("lawyer", "expert", 3),
    ("political_scientist", "expert", 3),
)
FIELDWORK_START = datetime(2026, 9, 1, 6, 0, tzinfo=UTC)
FIELDWORK_SECONDS = 60 * 24 * 3600
TEXTS = (
    "Больше онлайн-слушаний",
    "Нужно чаще публиковать бюджет района",
    "Жолдарды жөндеу керек",
    "Аулда жасыл аймақ аз",
    "Ответов на обращения приходится ждать месяцами",
    "More public meetings in the evening, please",
    "Автобусы ходят редко, особенно по выходным",
    "Мектепте орын жетпейді",
    "-",
    "нет",
    "Всё устраивает",
    "Қоқыс уақытында шығарылмайды",
    "=SUM(A1) не формула, просто текст",
    "Освещение улиц, особенно зимой; тротуары; остановки",
)


def i18n(en: str, ru: str, kk: str) -> dict[str, str]:
    return {"ru": ru, "kk": kk, "en": en}


Sampler = Callable[[random.Random], Any]


@dataclass
class Form:
    name: str
    definition: dict[str, Any]
    samplers: list[tuple[str, float, Sampler]] = field(default_factory=list)  # key, missing, draw

    @property
    def questions(self) -> list[dict[str, Any]]:
        questions: list[dict[str, Any]] = self.definition["questions"]
        return questions

    @property
    def group_keys(self) -> tuple[str, ...]:
        return tuple(group["key"] for group in self.definition["respondent_groups"])


# --- samplers -----------------------------------------------------------------------------------


def _weights(rng: random.Random, count: int, skew: float = 1.0) -> list[float]:
    """Dirichlet-like weights: a few options popular, some rare."""
    raw = [rng.gammavariate(skew, 1.0) + 0.02 for _ in range(count)]
    total = sum(raw)
    return [value / total for value in raw]


def _cumulative(weights: Sequence[float]) -> list[float]:
    total, out = 0.0, []
    for weight in weights:
        total += weight
        out.append(total)
    return out


def single(values: Sequence[str], weights: Sequence[float]) -> Sampler:
    cum, values = _cumulative(weights), list(values)
    return lambda rng: rng.choices(values, cum_weights=cum)[0]


def multiple(values: Sequence[str], chances: Sequence[float]) -> Sampler:
    pairs = list(zip(values, chances, strict=True))
    fallback = single(values, chances)

    def draw(rng: random.Random) -> list[str]:
        chosen = [value for value, chance in pairs if rng.random() < chance]
        return chosen or [fallback(rng)]

    return draw


def bounded_integer(low: int, high: int, mode: float) -> Sampler:
    return lambda rng: min(high, max(low, round(rng.triangular(low, high, mode))))


def lognormal(mu: float, sigma: float, digits: int) -> Sampler:
    return lambda rng: round(rng.lognormvariate(mu, sigma), digits)


def normal(mu: float, sigma: float, digits: int) -> Sampler:
    return lambda rng: round(rng.gauss(mu, sigma), digits)


def text(rng: random.Random) -> str:
    phrase = rng.choice(TEXTS)
    return phrase if rng.random() < 0.7 else f"{phrase}. {rng.choice(TEXTS)}"


# --- the two forms ------------------------------------------------------------------------------


def _options(values: Sequence[str], labels: Sequence[str] | None = None) -> list[dict[str, Any]]:
    labels = labels or values
    return [
        {"value": value, "label": i18n(label, label, label)}
        for value, label in zip(values, labels, strict=True)
    ]


def _groups() -> list[dict[str, Any]]:
    return [
        {"key": key, "category": category, "label": i18n(key, key, key)}
        for key, category, _ in GROUPS
    ]


def survey() -> Form:
    """A 10-question civic survey."""
    questions: list[dict[str, Any]] = []
    samplers: list[tuple[str, float, Sampler]] = []

    def add(question: dict[str, Any], missing: float, draw: Sampler) -> None:
        questions.append(question)
        samplers.append((question["key"], missing, draw))

    def choice(key: str, kind: str, values: list[str], label: str) -> dict[str, Any]:
        return {
            "key": key,
            "type": kind,
            "label": i18n(label, label, label),
            "options": _options(values),
        }

    aware = ["yes", "partly", "no"]
    add(choice("aware", "single_choice", aware, "Do you know how to take part?"), 0.02,
        single(aware, [0.38, 0.41, 0.21]))  # fmt: skip
    access = ["easy", "difficult", "very_difficult", "never_tried"]
    add(choice("information_access", "single_choice", access, "Access to information"), 0.05,
        single(access, [0.22, 0.37, 0.14, 0.27]))  # fmt: skip
    problems = ["roads", "housing", "ecology", "transport", "health", "education"]
    add(choice("main_problem", "single_choice", problems, "Main problem of your area"), 0.04,
        single(problems, [0.27, 0.12, 0.21, 0.18, 0.13, 0.09]))  # fmt: skip
    satisfaction = ["very_satisfied", "satisfied", "neutral", "dissatisfied", "very_dissatisfied"]
    add(choice("satisfaction", "single_choice", satisfaction, "Satisfaction with the akimat"),
        0.06, single(satisfaction, [0.08, 0.29, 0.31, 0.22, 0.10]))  # fmt: skip
    sources = ["tv", "social", "akimat_site", "press", "people", "ngos"]
    add(choice("info_sources", "multiple_choice", sources, "Where do you learn about decisions?"),
        0.08, multiple(sources, [0.45, 0.62, 0.18, 0.12, 0.35, 0.06]))  # fmt: skip
    channels = ["hearings", "reception", "petitions", "eotinish", "councils", "budget",
                "media", "deputies"]  # fmt: skip
    add(choice("channels_known", "multiple_choice", channels, "Which channels do you know?"),
        0.12, multiple(channels, [0.41, 0.33, 0.22, 0.47, 0.15, 0.09, 0.28, 0.19]))  # fmt: skip
    add({"key": "trust_akimat", "type": "scale", "min": 1, "max": 5,
         "label": i18n("Trust in the akimat", "Доверие акимату", "Әкімдікке сенім")},
        0.05, single([1, 2, 3, 4, 5], [0.12, 0.19, 0.34, 0.24, 0.11]))  # fmt: skip
    add({"key": "age", "type": "integer", "min": 16, "max": 99,
         "label": i18n("Age", "Возраст", "Жасы")}, 0.03, bounded_integer(16, 99, 33))  # fmt: skip
    add({"key": "participated", "type": "boolean",
         "label": i18n("Took part in a hearing", "Участвовали", "Қатысты")},
        0.04, lambda rng: rng.random() < 0.31)  # fmt: skip
    add({"key": "suggestions", "type": "text", "max_length": 2000,
         "label": i18n("Suggestions", "Предложения", "Ұсыныстар")}, 0.62, text)  # fmt: skip
    definition = {
        "slug": "bench-survey",
        "title": i18n("Civic participation", "Гражданское участие", "Азаматтық қатысу"),
        "default_language": "ru",
        "access": "token",
        "respondent_groups": _groups(),
        "questions": questions,
    }
    return Form("survey", definition, samplers)


WIDE_INTEGERS = (  # label, min, max, mode
    ("Age of the respondent", 16, 110, 38),
    ("Household members", 1, 20, 4),
    ("Children under 18", 0, 15, 1),
    ("Rooms in the dwelling", 1, 15, 3),
    ("Year the house was built", 1900, 2026, 1985),
    ("Years at this address", 0, 90, 9),
    ("Livestock heads", 0, 500, 6),
    ("Visits to the akimat this year", 0, 50, 2),
)
WIDE_DECIMALS = (  # label, kind, parameters
    ("Monthly household income, tenge", "lognormal", (12.6, 0.7, 2)),
    ("Dwelling area, m2", "lognormal", (4.1, 0.45, 1)),
    ("Land plot, hectares", "lognormal", (-0.6, 1.3, 3)),
    ("Distance to the nearest clinic, km", "lognormal", (1.1, 1.0, 2)),
    ("Monthly utility bills, tenge", "lognormal", (10.1, 0.5, 2)),
    ("Change of savings this year, tenge", "normal", (15000.0, 90000.0, 2)),
)


def wide(scale: float = 1.0) -> Form:
    """A 300-question form (scaled counts when scale < 1), keys s001, m001, n001, t001."""
    rng = random.Random(20261207)

    def count(full: int) -> int:
        return max(1, round(full * scale))

    singles, multiples = count(200), count(50)
    integers, decimals, texts = count(20), count(20), count(10)
    entries: list[tuple[dict[str, Any], float, Sampler]] = []
    for number in range(1, singles + 1):
        size = rng.randint(2, 12)
        values = [f"o{i:02d}" for i in range(1, size + 1)]
        question = {
            "key": f"s{number:03d}",
            "type": "single_choice",
            "label": i18n(
                f"Question s{number:03d}", f"Вопрос s{number:03d}", f"Сұрақ s{number:03d}"
            ),
            "options": _options(values),
        }
        entries.append((question, rng.uniform(0.01, 0.15), single(values, _weights(rng, size))))
    for number in range(1, multiples + 1):
        size = rng.randint(10, 40)
        values = [f"o{i:02d}" for i in range(1, size + 1)]
        question = {
            "key": f"m{number:03d}",
            "type": "multiple_choice",
            "label": i18n(
                f"Question m{number:03d}", f"Вопрос m{number:03d}", f"Сұрақ m{number:03d}"
            ),
            "options": _options(values),
        }
        chances = [min(0.7, w * rng.uniform(1.5, 4.0)) for w in _weights(rng, size, 0.6)]
        entries.append((question, rng.uniform(0.05, 0.3), multiple(values, chances)))
    for number in range(1, integers + 1):
        label, low, high, mode = WIDE_INTEGERS[(number - 1) % len(WIDE_INTEGERS)]
        question = {
            "key": f"n{number:03d}",
            "type": "integer",
            "min": low,
            "max": high,
            "label": i18n(label, label, label),
        }
        entries.append((question, rng.uniform(0.02, 0.12), bounded_integer(low, high, mode)))
    for number in range(integers + 1, integers + decimals + 1):
        label, kind, (a, b, digits) = WIDE_DECIMALS[(number - integers - 1) % len(WIDE_DECIMALS)]
        draw = lognormal(a, b, int(digits)) if kind == "lognormal" else normal(a, b, int(digits))
        question = {"key": f"n{number:03d}", "type": "decimal", "label": i18n(label, label, label)}
        entries.append((question, rng.uniform(0.08, 0.3), draw))
    for number in range(1, texts + 1):
        question = {
            "key": f"t{number:03d}",
            "type": "text",
            "max_length": 2000,
            "label": i18n(
                f"Comment t{number:03d}", f"Комментарий t{number:03d}", f"Пікір t{number:03d}"
            ),
        }
        entries.append((question, rng.uniform(0.6, 0.9), text))
    rng.shuffle(entries)  # sections of a real form mix the types
    definition = {
        "slug": "bench-wide" if scale == 1.0 else f"bench-wide-{round(scale * 1000)}",
        "title": i18n("Household survey", "Обследование домохозяйств", "Үй шаруашылығын зерттеу"),
        "default_language": "ru",
        "access": "token",
        "respondent_groups": _groups(),
        "questions": [question for question, _, _ in entries],
    }
    samplers = [(question["key"], missing, draw) for question, missing, draw in entries]
    return Form("wide", definition, samplers)


def build(name: str, scale: float = 1.0) -> Form:
    return survey() if name == "survey" else wide(scale)


# --- responses ----------------------------------------------------------------------------------


def territory_weights(territories: Sequence[tuple[str, str]]) -> tuple[list[str], list[float]]:
    """Codes and cumulative weights: the three cities of republican significance most, then
    settlements, then every other level; 3% of respondents give no territory (None)."""
    big_cities = {"750000000": 22.0, "710000000": 17.0, "790000000": 9.0}
    per_level = {
        "settlement": 1.2,
        "rural_district": 0.6,
        "district": 0.6,
        "city": 2.0,
        "region": 1.0,
    }
    codes: list[str] = []
    weights: list[float] = []
    for code, level in territories:
        codes.append(code)
        weights.append(big_cities.get(code, per_level.get(level, 0.5)))
    if not codes:
        return [None], [1.0]  # type: ignore[list-item]
    total = sum(weights)
    weights = [w * 97 / total for w in weights]
    return [*codes, None], _cumulative([*weights, 3.0])  # type: ignore[list-item]


def _age_band(age: int) -> str:
    for limit, band in ((18, "under_18"), (25, "18-24"), (35, "25-34"), (45, "35-44"),
                        (55, "45-54"), (65, "55-64")):  # fmt: skip
        if age < limit:
            return band
    return "65+"


def generate_batch(
    form: Form, territories: Sequence[tuple[str, str]], seed: int, index: int, size: int = BATCH
) -> list[dict[str, Any]]:
    """Batch `index` of the form's responses: always the same for the same seed and index."""
    rng = random.Random(seed * 1_000_003 + index * 7 + (1 if form.name == "wide" else 0))
    codes, territory_cum = territory_weights(territories)
    group_keys = [key for key, _, _ in GROUPS]
    group_cum = _cumulative([weight for _, _, weight in GROUPS])
    gender_values = [*GENDERS, None]
    gender_cum = _cumulative([0.515, 0.445, 0.005, 0.02, 0.015])
    band_cum = _cumulative([0.03, 0.15, 0.22, 0.2, 0.17, 0.13, 0.1])
    language_cum = _cumulative([0.6, 0.35, 0.05])
    channel_cum = _cumulative([0.3, 0.4, 0.25, 0.05])
    age_key = "age" if form.name == "survey" else None
    items = []
    for _ in range(size):
        answers: dict[str, Any] = {}
        for key, missing, draw in form.samplers:
            if rng.random() >= missing:
                answers[key] = draw(rng)
        age = answers.get(age_key) if age_key else None
        band = (
            _age_band(age) if age is not None else rng.choices(AGE_BANDS, cum_weights=band_cum)[0]
        )
        respondent: dict[str, Any] = {"group": rng.choices(group_keys, cum_weights=group_cum)[0]}
        gender = rng.choices(gender_values, cum_weights=gender_cum)[0]
        if gender is not None:
            respondent["gender"] = gender
        if rng.random() > 0.01:
            respondent["age_band"] = band
        territory = rng.choices(codes, cum_weights=territory_cum)[0]
        if territory is not None:
            respondent["territory_code"] = territory
        submitted = FIELDWORK_START + timedelta(seconds=rng.random() * FIELDWORK_SECONDS)
        items.append(
            {
                "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "respondent": respondent,
                "answers": answers,
                "language": rng.choices(("ru", "kk", "en"), cum_weights=language_cum)[0],
                "channel": rng.choices(
                    ("web", "mobile", "interview", "paper"), cum_weights=channel_cum
                )[0],
                "submitted_at": submitted.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            }
        )
    return items


def batch_path(directory: Path, index: int) -> Path:
    return directory / f"batch-{index:05d}.json"


def _write(
    args: tuple[str, float, list[tuple[str, str]], int, list[int], str],
) -> dict[int, tuple[int, int]]:
    name, scale, territories, seed, indexes, directory = args
    form = build(name, scale)
    counts = {}
    for index in indexes:
        items = generate_batch(form, territories, seed, index)
        batch_path(Path(directory), index).write_bytes(orjson.dumps({"responses": items}))
        counts[index] = (len(items), sum(len(item["answers"]) for item in items))
    return counts


def write_batches(
    name: str,
    scale: float,
    territories: Sequence[tuple[str, str]],
    seed: int,
    indexes: range,
    directory: Path,
    processes: int = 2,
) -> dict[int, tuple[int, int]]:
    """Writes the batches' request bodies to directory (in `processes` processes); returns each
    batch's (responses, answers), an answer being one answered question."""
    chunks = [list(indexes[i::processes]) for i in range(processes)]
    jobs = [
        (name, scale, list(territories), seed, chunk, str(directory)) for chunk in chunks if chunk
    ]
    counts: dict[int, tuple[int, int]] = {}
    with ProcessPoolExecutor(max_workers=len(jobs)) as pool:
        for result in pool.map(_write, jobs):
            counts.update(result)
    return counts


def read_batch(directory: Path, index: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = orjson.loads(batch_path(directory, index).read_bytes())[
        "responses"
    ]
    return items


def describe(form: Form) -> str:
    kinds: dict[str, int] = {}
    for question in form.questions:
        kinds[question["type"]] = kinds.get(question["type"], 0) + 1
    options = [len(q["options"]) for q in form.questions if q["type"] == "multiple_choice"]
    parts = ", ".join(f"{count} {kind}" for kind, count in kinds.items())
    widest = f", multiple choice of {min(options)}-{max(options)} options" if options else ""
    expected = sum(1 - missing for _, missing, _ in form.samplers)
    return f"{len(form.questions)} questions ({parts}{widest}); ~{expected:.0f} answers/response"


if __name__ == "__main__":  # a look at the forms: python bench/forms.py
    for shown in (survey(), wide()):
        print(shown.name, describe(shown))
        sample = generate_batch(
            shown, [("750000000", "city"), ("192010001", "settlement")], 1, 0, 2
        )
        print(orjson.dumps(sample[0])[:600].decode(), "...")
        body = orjson.dumps({"responses": generate_batch(shown, [], 1, 0)})
        print(f"  batch of 1000: {len(body):,} bytes")
