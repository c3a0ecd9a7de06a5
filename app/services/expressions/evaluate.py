"""Evaluating a parsed expression with ODK's semantics (XPath 1.0 values, JavaRosa's dates).

An expression is compiled once into nested closures; evaluating it charges its size to the
response's step budget (`Env.steps`), and node-set functions charge one step per node, so the
work one response can cause is bounded (MAX_STEPS), whatever the form.
"""

import math
import random
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from app.services.expressions.parse import (
    ANSWERED,
    VOLATILE_FUNCTIONS,
    ExpressionError,
    Node,
    instances,
    node_count,
    references,
    uses,
    uses_current,
)
from app.services.expressions.values import (
    Env,
    NodeSet,
    arithmetic,
    boolean,
    bounded,
    compare,
    equal,
    format_date,
    members,
    number,
    round_half_away,
    selected_values,
    string,
    to_date,
)

# A quantified group that itself holds a quantifier ("(a+)+") can take exponential time in
# Python's backtracking engine: such patterns are refused at definition time.
_NESTED_QUANTIFIER = re.compile(r"\([^()]*[*+?}][^()]*\)\s*[*+?{]")


# --- compiling ---------------------------------------------------------------------------------

Evaluator = Callable[[Env], Any]


@dataclass(frozen=True)
class Resolved:
    """What a reference names, as the definition says (see compile_expression)."""

    choice_labels: Mapping[str, str] | None = None  # for jr:choice-name


Resolver = Callable[[str], Resolved | str]


@dataclass(frozen=True)
class Expression:
    source: str | None
    node: Node
    evaluator: Evaluator
    size: int
    volatile: bool  # uses now(), today(), uuid(), random() or once()
    current: bool  # uses `.`
    references: frozenset[str]

    def evaluate(self, env: Env) -> Any:
        env.charge(self.size)
        return self.evaluator(env)

    def holds(self, env: Env) -> bool:
        return boolean(self.evaluate(env))


def compile_expression(node: Node, source: str | None, resolve: Resolver) -> Expression:
    """The expression ready to evaluate; ExpressionError when a reference is refused by
    `resolve` (which answers a message, or a Resolved)."""
    resolved: dict[str, Resolved] = {}
    for key in sorted(references(node)):
        answer = resolve(key)
        if isinstance(answer, str):
            raise ExpressionError(answer)
        resolved[key] = answer
    return Expression(
        source=source,
        node=node,
        evaluator=_compile(node, resolved),
        size=node_count(node),
        # a secondary instance is the client's alone: what reads one keeps the client's value
        volatile=uses(node, VOLATILE_FUNCTIONS) or bool(instances(node)),
        current=uses_current(node),
        references=frozenset(resolved),
    )


def _compile(node: Node, resolved: Mapping[str, Resolved]) -> Evaluator:  # noqa: C901
    kind = node[0]
    if kind in ("num", "str"):
        constant = node[1]
        return lambda env: constant
    if kind == "ref":
        key = node[1]
        return lambda env: env.lookup(key)
    if kind == "cur":
        return lambda env: env.current
    if kind == "prop":
        name = node[1]
        return lambda env: env.option.get(name, "") if env.option is not None else ""
    if kind == "neg":
        inner = _compile(node[1], resolved)
        return lambda env: -number(inner(env))
    if kind == "and":
        parts = [_compile(part, resolved) for part in node[1]]
        return lambda env: all(boolean(part(env)) for part in parts)
    if kind == "or":
        parts = [_compile(part, resolved) for part in node[1]]
        return lambda env: any(boolean(part(env)) for part in parts)
    if kind == "op":
        operator = node[1]
        left, right = _compile(node[2], resolved), _compile(node[3], resolved)
        if operator in ("=", "!="):
            return lambda env: equal(operator, left(env), right(env))
        if operator in ("<", "<=", ">", ">="):
            return lambda env: compare(operator, left(env), right(env))
        return lambda env: arithmetic(operator, left(env), right(env))
    if kind == "call":
        return _function(node[1], node[2], resolved)
    if kind == "oneof":
        return _one_of(_compile(node[1], resolved), node[2])
    if kind == "instance":  # never evaluated: only a calculation (volatile) may hold one
        return lambda env: ""
    raise ExpressionError(f"cannot evaluate {kind}")


def _one_of(subject: Evaluator, literals: tuple[Node, ...]) -> Evaluator:
    """`subject = literal` for any of the literals, as equal decides it, with sets."""
    values = [
        True if n == ("call", "true", ()) else False if n[0] == "call" else n[1] for n in literals
    ]
    truths = {v for v in values if isinstance(v, bool)}
    numbers = {v for v in values if isinstance(v, float)}
    texts = {v for v in values if isinstance(v, str)}
    text_numbers = {number(v) for v in texts}
    other_truths = {boolean(v) for v in values if not isinstance(v, bool)}

    def evaluate(env: Env) -> bool:
        value = subject(env)
        if isinstance(value, NodeSet):
            return any(equal("=", item, literal) for item in value for literal in values)
        if isinstance(value, bool):
            return value in truths or value in other_truths
        if truths and boolean(value) in truths:
            return True
        if isinstance(value, int | float | date):
            return number(value) in numbers or number(value) in text_numbers
        return (bool(numbers) and number(value) in numbers) or string(value) in texts

    return evaluate


def _function(  # noqa: C901 - one branch per function, kept together
    name: str, arguments: tuple[Node, ...], resolved: Mapping[str, Resolved]
) -> Evaluator:
    args = [_compile(a, resolved) for a in arguments if a[0] != "parent"]
    first = args[0] if args else None

    def one(env: Env) -> Any:
        assert first is not None  # noqa: S101 - arity is checked by the parser
        return first(env)

    if name == "true":
        return lambda env: True
    if name == "false":
        return lambda env: False
    if name == ANSWERED:
        return lambda env: _answered(one(env))
    if name == "not":
        return lambda env: not boolean(one(env))
    if name == "boolean":
        return lambda env: boolean(one(env))
    if name == "boolean-from-string":
        return lambda env: string(one(env)).strip() in ("true", "1")
    if name == "number":
        return lambda env: number(one(env))
    if name == "string":
        return (lambda env: string(one(env))) if args else (lambda env: string(env.current))
    if name == "int":
        return lambda env: _int(number(one(env)))
    if name == "round":
        if len(args) == 2:
            return lambda env: round_half_away(number(one(env)), number(args[1](env)))
        return lambda env: round_half_away(number(one(env)))
    if name == "abs":
        return lambda env: abs(number(one(env)))
    if name == "floor":
        return lambda env: _whole(number(one(env)), math.floor)
    if name == "ceiling":
        return lambda env: _whole(number(one(env)), math.ceil)
    if name == "pow":
        return lambda env: _pow(number(one(env)), number(args[1](env)))
    if name == "string-length":
        if not args:
            return lambda env: float(len(string(env.current)))
        return lambda env: float(len(string(one(env))))
    if name == "normalize-space":
        if not args:
            return lambda env: " ".join(string(env.current).split())
        return lambda env: " ".join(string(one(env)).split())
    if name == "substr":
        return lambda env: _substr(env, args)
    if name == "concat":
        return lambda env: bounded("".join(string(v) for a in args for v in members(a(env))))
    if name == "join":
        return lambda env: bounded(
            string(args[0](env)).join(string(v) for a in args[1:] for v in members(a(env)))
        )
    if name == "contains":
        return lambda env: string(args[1](env)) in string(one(env))
    if name == "starts-with":
        return lambda env: string(one(env)).startswith(string(args[1](env)))
    if name == "ends-with":
        return lambda env: string(one(env)).endswith(string(args[1](env)))
    if name == "regex":
        pattern_text = arguments[1][1]
        if _NESTED_QUANTIFIER.search(pattern_text):
            raise ExpressionError("regex(): nested repetition like '(a+)+' is not allowed")
        try:
            pattern = re.compile(pattern_text)
        except re.error as error:
            raise ExpressionError(f"regex(): {error}") from None
        # search, not fullmatch: ODK's clients differ, and the server must not refuse what a
        # client accepted (anchor with ^...$ for a whole match).
        return lambda env: pattern.search(string(one(env))) is not None
    if name == "if":
        return lambda env: args[1](env) if boolean(one(env)) else args[2](env)
    if name == "coalesce":
        return lambda env: _coalesce(env, args)
    if name == "selected":
        return lambda env: string(args[1](env)).strip() in selected_values(one(env))
    if name == "count-selected":
        return lambda env: float(len(selected_values(one(env))))
    if name == "selected-at":
        return lambda env: _selected_at(selected_values(one(env)), number(args[1](env)))
    if name == "jr:choice-name":
        key = arguments[1][1].strip()[2:-1]
        labels = resolved[key].choice_labels or {}
        return lambda env: labels.get(string(one(env)), "")
    if name == "today":
        return lambda env: _now(env).date()
    if name == "now":
        return lambda env: _now(env)
    if name == "date":
        return lambda env: to_date(one(env)) or ""
    if name == "decimal-date-time":
        return lambda env: number(to_date(one(env)))
    if name == "format-date":
        return lambda env: format_date(one(env), string(args[1](env)))
    if name == "position":
        return lambda env: float(env.position)
    if name == "count":
        return lambda env: float(_count(env, one(env)))
    if name == "sum":
        return lambda env: math.fsum(number(v) for v in _visit(env, one(env)))
    if name in ("max", "min"):
        pick = max if name == "max" else min
        return lambda env: _extreme(env, args, pick)
    if name == "indexed-repeat":
        return lambda env: _indexed(env, one(env), number(args[2](env)))
    if name == "once":
        return lambda env: one(env)
    if name == "uuid":
        return lambda env: str(uuid.uuid4())
    if name == "random":
        return lambda env: random.random()  # noqa: S311 - a form's random(), not a secret
    raise ExpressionError(f"unknown function '{name}'")


def _answered(value: Any) -> bool:
    if isinstance(value, NodeSet):  # a question of a repeat, seen from outside it
        return any(_answered(item) for item in value)
    return value is not None


def _int(value: float) -> float:
    if math.isnan(value) or math.isinf(value):
        return value
    return float(math.trunc(value))


def _whole(value: float, how: Callable[[float], int]) -> float:
    return value if math.isnan(value) or math.isinf(value) else float(how(value))


def _pow(base: float, exponent: float) -> float:
    try:
        return math.pow(base, exponent)
    except (OverflowError, ValueError):
        return math.nan


def _substr(env: Env, args: list[Evaluator]) -> str:
    text = string(args[0](env))
    start = number(args[1](env))
    end = number(args[2](env)) if len(args) > 2 else float(len(text))
    if math.isnan(start) or math.isnan(end):
        return ""
    # clamped before int(): an infinite bound (1 div 0) has no integer
    begin = int(max(0.0, min(float(len(text)), start)))
    stop = int(max(0.0, min(float(len(text)), end)))
    return text[begin:stop]


def _coalesce(env: Env, args: list[Evaluator]) -> Any:
    value = args[0](env)
    return value if string(value) != "" else args[1](env)


def _selected_at(values: list[str], index: float) -> str:
    if math.isnan(index) or not 0 <= index < len(values):
        return ""
    return values[int(index)]


def _now(env: Env) -> datetime:
    if env.now is None:
        env.now = datetime.now(UTC)
    return env.now


def _visit(env: Env, value: Any) -> tuple[Any, ...]:
    found = members(value) if value is not None else ()
    env.charge(len(found))
    return found


def _count(env: Env, value: Any) -> int:
    if isinstance(value, NodeSet):
        env.charge(len(value))
        return len(value)
    return 0 if value is None else 1


def _extreme(env: Env, args: list[Evaluator], pick: Callable[..., float]) -> float:
    values: list[float] = []
    for argument in args:
        value = argument(env)
        # An unanswered question is an empty node, NaN as a number (JavaRosa, ODK's web engine):
        # min(${a}, ${b}) is NaN while ${a} is unanswered, as the clients compute it.
        values.extend(number(v) for v in _visit(env, value) or (None,))
    if not values or any(math.isnan(v) for v in values):
        return math.nan
    return float(pick(values))


def _indexed(env: Env, value: Any, index: float) -> Any:
    items = _visit(env, value)
    if math.isnan(index) or not 1 <= index <= len(items):
        return ""
    return items[int(index) - 1]
