"""The expression language itself (app/services/expressions): parsing, bounds, ODK semantics.

Expected values are worked out by hand from the XPath 1.0 / ODK XForms rules (written beside
each case), not taken from the evaluator's output. The JSON condition forms are also checked
against the interpreter they had before expressions existed (direct_meaning), an
independent implementation of their meaning, on generated conditions and answers.
"""

import math
import time
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.services import conditions
from app.services.expressions import (
    MAX_DEPTH,
    Env,
    EvaluationError,
    ExpressionError,
    NodeSet,
    compile_expression,
    parse,
)
from app.services.expressions.evaluate import Resolved
from app.services.expressions.values import MAX_STEPS


def value_of(text: str, answers: dict[str, Any] | None = None, current: Any = None) -> Any:
    expression = compile_expression(parse(text), text, lambda key: Resolved())
    return expression.evaluate(Env(lookup=(answers or {}).get, current=current))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2 + 3 * 4", 14.0),  # * binds tighter than +
        ("(2 + 3) * 4", 20.0),
        ("10 - 2 - 3", 5.0),  # left-associative: (10 - 2) - 3
        ("7 div 2", 3.5),
        ("7 mod 3", 1.0),
        ("-7 mod 3", -1.0),  # XPath mod keeps the dividend's sign
        ("7 mod -3", 1.0),
        ("- 2 * 3", -6.0),
        ("1 = 1 and 2 > 1 or 1 = 2", True),  # and before or
        ("1 = 2 or 2 = 2 and 3 = 4", False),  # 1=2 or (2=2 and 3=4)
        ("'abc' = 'abc'", True),
        ("'10' = 10", True),  # a number on one side: both compared as numbers
        ("'10.0' = 10", True),
        ("'abc' < 1", False),  # NaN compares false
        ("true() = 'x'", True),  # a boolean on one side: boolean('x') is true
        ("false() = ''", True),
        ("int(-3.7)", -3.0),  # truncation toward zero
        ("int(3.7)", 3.0),
        ("round(2.5)", 3.0),
        ("round(-2.5)", -3.0),  # ODK rounds half away from zero
        ("round(3.14159, 2)", 3.14),
        ("round(1234.5, -2)", 1200.0),
        # infinite digits leave the value as a huge finite count does (int(inf) once raised)
        ("round(2.5, 1 div 0)", 2.5),
        ("round(2.5, 0 - 1 div 0)", 2.5),
        ("abs(-4)", 4.0),
        ("floor(-1.5)", -2.0),
        ("ceiling(1.2)", 2.0),
        ("pow(2, 10)", 1024.0),
        ("substr('kenes', 1, 3)", "en"),  # 0-based start, end exclusive
        ("substr('kenes', 2)", "nes"),
        # infinite bounds clamp like any out-of-range one (int(inf) once made a 500)
        ("substr('kenes', 1 div 0)", ""),
        ("substr('kenes', 0 - 1 div 0, 2)", "ke"),
        ("substr('kenes', 1, 1 div 0)", "enes"),
        ("concat('a', 1, true(), 2.5)", "a1true2.5"),
        ("string-length('қала')", 4.0),  # characters, not bytes
        ("normalize-space('  a   b ')", "a b"),
        ("contains('Алматы', 'лма')", True),
        ("starts-with('KZ-75', 'KZ')", True),
        ("ends-with('KZ-75', '76')", False),
        ("if(1 > 2, 'yes', 'no')", "no"),
        ("coalesce('', 'fallback')", "fallback"),
        ("coalesce('first', 'fallback')", "first"),
        ("boolean-from-string('1')", True),
        ("boolean-from-string('yes')", False),  # only 'true' and '1'
        ("boolean('0')", True),  # a non-empty string is true
        ("boolean(0)", False),
        ("number('12.5')", 12.5),
        ("number('1e3')", math.nan),  # XPath numbers have no exponent
        ("string(3)", "3"),  # integral numbers print without a decimal point
        ("string(0.5)", "0.5"),
        ("string(1 div 0)", "Infinity"),
        ("selected('a b c', 'b')", True),
        ("selected('a b c', 'd')", False),
        ("count-selected('a b c')", 3.0),
        ("selected-at('a b c', 1)", "b"),  # 0-based
        ("selected-at('a b c', 5)", ""),
        ("regex('KZ123', '^[A-Z]{2}[0-9]+$')", True),
        ("regex('kz123', '^[A-Z]{2}[0-9]+$')", False),
        ("date('2024-03-01') - date('2024-02-01')", 29.0),  # 2024 is a leap year
        ("decimal-date-time('1970-01-02')", 1.0),  # days since 1970-01-01
        ("format-date(date('2024-03-05'), '%Y/%n/%e %d.%m')", "2024/3/5 05.03"),
        ("string(date(19787))", "2024-03-05"),  # 54 years and 13 leap days after 1970
        # a day number past 9999-12-31 or before 0001-01-01 is no date (once OverflowError)
        ("string(date(2932897))", ""),
        ("string(date(0 - 719163))", ""),
        ("format-date(date('2024-03-05') + 2932000, '%Y')", ""),
        ("date('2024-03-05') > date('2024-03-04')", True),
        ("'2024-03-05' < '2024-12-01'", True),  # ISO dates count as dates in number context
        ("max(1, 5, 3)", 5.0),
        ("min(4, 2)", 2.0),
    ],
)
def test_values_follow_odk(text: str, expected: Any) -> None:
    got = value_of(text)
    if isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == expected
        assert type(got) is type(expected)


def test_unanswered_questions_are_empty_strings_and_nan() -> None:
    assert value_of("${a} = ''") is True
    assert value_of("string-length(${a})") == 0.0
    assert math.isnan(value_of("${n} + 1"))
    # NaN is neither more nor less than anything, nor equal to it
    assert value_of("${n} > 5") is False
    assert value_of("${n} < 5") is False
    assert value_of("${n} = 0") is False
    assert value_of("${n} != 0") is True
    assert value_of("not(${a})") is True
    assert value_of("count-selected(${m})") == 0.0


def test_answers_by_type() -> None:
    answers = {
        "n": 20,
        "x": 2.5,
        "m": ["water", "power"],
        "d": "2024-01-31",
        "t": "Иван",
        "b": True,
    }
    assert value_of("${n} >= 18 and ${n} <= 65", answers) is True
    assert value_of("${n} * ${x}", answers) == 50.0
    assert value_of("selected(${m}, 'power')", answers) is True
    assert value_of("count-selected(${m})", answers) == 2.0
    assert value_of("selected-at(${m}, 0)", answers) == "water"
    assert value_of("${d} < '2024-02-01'", answers) is True
    assert value_of("${d} + 1 = date('2024-02-01')", answers) is True
    assert value_of("concat(${t}, ' ', ${n})", answers) == "Иван 20"
    assert value_of("${b} = true()", answers) is True
    assert value_of(". > 5 and . < 10", answers, current=7) is True
    assert value_of("string-length(.) <= 3", answers, current="abcd") is False


def test_node_sets_from_repeats() -> None:
    ages = NodeSet([34, 31, 6])
    answers = {"age": ages, "roster": NodeSet([{}, {}, {}])}
    assert value_of("count(${roster})", answers) == 3.0
    assert value_of("sum(${age})", answers) == 71.0
    assert value_of("max(${age})", answers) == 34.0
    assert value_of("min(${age})", answers) == 6.0
    assert value_of("indexed-repeat(${age}, ${roster}, 2)", answers) == 31
    assert value_of("${age} < 18", answers) is True  # some node compares true (XPath)
    assert value_of("sum(${nothing})", answers) == 0.0


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "1 +",
        "(1 + 2",
        "1 + 2)",
        "${a",
        "${1a}",
        "${a b}",
        "foo(1)",
        "eval('1')",
        "__import__('os')",
        "age > 5",  # bare names are not references in XLSForm
        "selected(${a})",
        "if(1, 2)",
        "'unterminated",
        "1 2",
        "${a} ~ 1",
        "regex(${a}, ${b})",
        "regex(${a}, '(a+)+$')",
        "regex(${a}, '[')",
        "..",
        "jr:choice-name(${a}, 'b')",
    ],
)
def test_bad_expressions_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(ExpressionError) as refused:
        compile_expression(parse(text), text, lambda key: Resolved())
    assert refused.value.message


def test_depth_and_length_are_bounded_without_recursion_errors() -> None:
    deep = "(" * 330 + "1" + ")" * 330
    with pytest.raises(ExpressionError, match="64 deep"):
        parse(deep)
    with pytest.raises(ExpressionError, match="64 deep"):
        parse("not(" * 100 + "1" + ")" * 100)
    # left-deep chains are as deep as they are long: the evaluator recurses on the tree
    with pytest.raises(ExpressionError, match="64 deep"):
        parse(" + ".join(["1"] * 100))
    assert value_of(" + ".join(["1"] * 60)) == 60.0
    assert value_of("(" * (MAX_DEPTH - 1) + "1" + ")" * (MAX_DEPTH - 1)) == 1.0
    with pytest.raises(ExpressionError, match="4096"):
        parse("'" + "x" * 4100 + "'")
    # and/or chains are one n-ary node: a long list of alternatives is not deep
    assert value_of(" or ".join(f"{n} = 999" for n in range(300)) + " or 1 = 1") is True


def test_evaluation_is_bounded_per_response() -> None:
    text = "count(${many}) > 0"
    expression = compile_expression(parse(text), text, lambda key: Resolved())
    env = Env(lookup={"many": NodeSet(range(1000))}.get)
    with pytest.raises(EvaluationError):
        for _ in range(MAX_STEPS // 1000 + 1):
            expression.evaluate(env)
    doubling = "concat(${s}, ${s}, ${s}, ${s}, ${s}, ${s}, ${s}, ${s})"
    big = compile_expression(parse(doubling), doubling, lambda key: Resolved())
    with pytest.raises(EvaluationError):
        big.evaluate(Env(lookup={"s": "x" * 10_000}.get))


def test_references_are_checked_by_the_resolver() -> None:
    def resolve(key: str) -> Resolved | str:
        return Resolved() if key == "known" else f"'{key}' names no question"

    compile_expression(parse("${known} = 1"), None, resolve)
    with pytest.raises(ExpressionError, match="names no question"):
        compile_expression(parse("${known} = ${other}"), None, resolve)


# --- property tests ---------------------------------------------------------------------------

ATOMS = ["${a}", "${b}", ".", "1", "2.5", "'x'", "''", "true()", "today()"]
SYMBOLS = [" and ", " or ", " = ", " != ", " < ", " >= ", " + ", " - ", " * ", " div ", " mod "]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet="${}().,'\"<>=!+-*/ abcdefgimnorstvxyz0123456789:", max_size=300))
def test_any_text_parses_or_is_refused_quickly(text: str) -> None:
    started = time.perf_counter()
    try:
        node = parse(text)
    except ExpressionError:
        node = None
    if node is not None:
        try:
            expression = compile_expression(node, text, lambda key: Resolved())
            expression.evaluate(Env(lookup={"a": "1", "b": ["x", "y"]}.get, current="7"))
        except (ExpressionError, EvaluationError):
            pass
    assert time.perf_counter() - started < 0.5


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(ATOMS + SYMBOLS + ["(", ")", "not(", ","]), max_size=400))
def test_generated_expressions_never_escape_their_bounds(parts: list[str]) -> None:
    text = "".join(parts)
    try:
        expression = compile_expression(parse(text), text, lambda key: Resolved())
    except ExpressionError:
        return
    try:
        expression.evaluate(Env(lookup={"a": 3, "b": "2024-01-01"}.get, current=1))
    except EvaluationError:
        pass


QUESTIONS = {
    "n": st.integers(-5, 5),
    "t": st.sampled_from(["x", "y", "Алма"]),
    "c": st.sampled_from(["yes", "no"]),
    "m": st.lists(st.sampled_from(["p", "q", "r"]), unique=True, min_size=1),
    "b": st.booleans(),
    "d": st.sampled_from(["2024-01-31", "2024-02-01", "2023-12-31"]),
}
LITERALS = {
    "n": st.integers(-5, 5),
    "t": st.sampled_from(["x", "y", "Алма"]),
    "c": st.sampled_from(["yes", "no"]),
    "m": st.sampled_from(["p", "q", "r"]),
    "b": st.booleans(),
    "d": st.sampled_from(["2024-01-31", "2024-02-01"]),
}
OPS = {
    "n": ["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "answered"],
    "t": ["eq", "ne", "in", "not_in", "answered"],
    "c": ["eq", "ne", "in", "not_in", "answered"],
    "m": ["contains", "answered"],
    "b": ["eq", "ne", "answered"],
    "d": ["eq", "ne", "gt", "gte", "lt", "lte", "answered"],
}


@st.composite
def comparison(draw: st.DrawFn) -> dict[str, Any]:
    key = draw(st.sampled_from(sorted(QUESTIONS)))
    op = draw(st.sampled_from(OPS[key]))
    if op == "answered":
        return {"question": key, "op": op}
    if op in ("in", "not_in"):
        return {"question": key, "op": op, "value": draw(st.lists(LITERALS[key], min_size=1))}
    return {"question": key, "op": op, "value": draw(LITERALS[key])}


json_conditions = st.recursive(
    comparison(),
    lambda inner: st.one_of(
        st.builds(lambda parts: {"all": parts}, st.lists(inner, min_size=1, max_size=4)),
        st.builds(lambda parts: {"any": parts}, st.lists(inner, min_size=1, max_size=4)),
        st.builds(lambda part: {"not": part}, inner),
    ),
    max_leaves=8,
)
answer_sets = st.fixed_dictionaries({}, optional=QUESTIONS)


def direct_meaning(condition: Any, answers: Mapping[str, Any]) -> bool:
    """The interpreter the JSON conditions had before expressions existed (services/conditions.py
    until this change): an independent statement of what they mean."""
    if "all" in condition:
        return all(direct_meaning(part, answers) for part in condition["all"])
    if "any" in condition:
        return any(direct_meaning(part, answers) for part in condition["any"])
    if "not" in condition:
        return not direct_meaning(condition["not"], answers)
    op = condition["op"]
    answer = answers.get(condition["question"])
    if op == "answered":
        return answer is not None
    if answer is None:
        return op in ("ne", "not_in")
    value: Any = condition.get("value")
    if op == "eq":
        return bool(answer == value)
    if op == "ne":
        return bool(answer != value)
    if op == "in":
        return answer in value
    if op == "not_in":
        return answer not in value
    if op == "contains":
        return isinstance(answer, list) and value in answer
    try:
        if op == "gt":
            return bool(answer > value)
        if op == "gte":
            return bool(answer >= value)
        if op == "lt":
            return bool(answer < value)
        if op == "lte":
            return bool(answer <= value)
    except TypeError:
        return False
    raise ValueError(f"unknown operator {op}")


@settings(max_examples=400, deadline=None)
@given(json_conditions, answer_sets)
def test_json_conditions_mean_what_they_meant(condition: Any, answers: dict[str, Any]) -> None:
    assert conditions.evaluate(condition, answers) is direct_meaning(condition, answers)


def test_choice_names_come_from_the_named_question() -> None:
    labels = {"ala": "Almaty", "ast": "Astana"}

    def resolve(key: str) -> Resolved:
        return Resolved(choice_labels=labels if key == "city" else None)

    text = "jr:choice-name(${city}, '${city}')"
    expression = compile_expression(parse(text), text, resolve)
    assert expression.evaluate(Env(lookup={"city": "ast"}.get)) == "Astana"
    assert expression.evaluate(Env(lookup={}.get)) == ""


def test_answered_from_outside_a_repeat_means_some_instance_answered() -> None:
    condition = {"question": "age", "op": "answered"}
    assert conditions.evaluate(condition, {"age": NodeSet([None, None])}) is False
    assert conditions.evaluate(condition, {"age": NodeSet([None, 7])}) is True
    assert conditions.evaluate(condition, {"age": NodeSet([])}) is False


def test_bare_names_are_option_properties_only_in_a_choice_filter() -> None:
    node = parse("region = ${region} and name != 'x'", names=True)
    assert node[0] == "and"
    expression = compile_expression(node, None, lambda key: Resolved())
    answers = {"region": "south"}
    # the option's properties: its extra columns, and `name` (its value)
    south = Env(lookup=answers.get, option={"region": "south", "name": "a"})
    north = Env(lookup=answers.get, option={"region": "north", "name": "b"})
    named_x = Env(lookup=answers.get, option={"region": "south", "name": "x"})
    assert expression.holds(south) is True
    assert expression.holds(north) is False
    assert expression.holds(named_x) is False
    with pytest.raises(ExpressionError, match="unexpected name 'region'"):
        parse("region = ${region}")  # elsewhere, questions are ${name}


def test_geodata_reads_as_odk_writes_it() -> None:
    point = {"lat": 43.25, "lon": 76.9, "accuracy": 4.5}
    # "lat lon altitude accuracy", a missing altitude as 0
    assert value_of("string(${p})", {"p": point}) == "43.25 76.9 0 4.5"
    assert value_of("selected-at(${p}, 3)", {"p": point}) == "4.5"
    trace = [{"lat": 1, "lon": 2}, {"lat": 3.5, "lon": 4, "altitude": 10}]
    assert value_of("string(${t})", {"t": trace}) == "1 2 0 0;3.5 4 10 0"
    # a rank reads like a multiple choice: values separated by spaces
    assert value_of("selected-at(${r}, 1)", {"r": ["b", "a", "c"]}) == "a"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet="${}().,'\"<>=!+-*/ abcdegimnorstvxyz0123456789:", max_size=300))
def test_any_choice_filter_parses_or_is_refused_quickly(text: str) -> None:
    """With bare names allowed (a choice_filter), any text still parses within the bounds or
    is refused with a reason, and evaluates within the step budget for any option."""
    started = time.perf_counter()
    try:
        node = parse(text, names=True)
    except ExpressionError:
        node = None
    if node is not None:
        try:
            expression = compile_expression(node, text, lambda key: Resolved())
            option = {"region": "south", "name": "a1"}
            expression.evaluate(Env(lookup={"a": "1"}.get, option=option))
        except (ExpressionError, EvaluationError):
            pass
    assert time.perf_counter() - started < 0.5
