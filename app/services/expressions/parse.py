"""The expression parser: text -> AST, bounded in length and depth.

Nodes are tuples: ("num", float), ("str", str), ("ref", key), ("cur",) for `.`, ("parent",) for
`..` (only as position()'s argument), ("prop", name) for a bare name (only in a choice_filter:
the option's property), ("neg", node), ("op", operator, left, right),
("and", nodes), ("or", nodes), ("call", name, arguments); from JSON conditions only,
("oneof", node, literals): node = one of the literals (an `in` of 10,000 values is one step);
("instance", id, steps) for `instance('id')/root/item[predicate]/label`, a path into a
secondary instance, each step (element name, predicate or None), bare names in a predicate
the properties (child elements) of the item. The server has no secondary instances: only a
calculation may read one, and it keeps the client's value (services/expressions/forms.py).
"""

import re
from collections.abc import Iterator, Mapping
from typing import Any

MAX_LENGTH = 4096
MAX_DEPTH = 64

Node = tuple[Any, ...]

# name -> (least, most) arguments (most None: any number)
FUNCTIONS: dict[str, tuple[int, int | None]] = {
    "true": (0, 0),
    "false": (0, 0),
    "not": (1, 1),
    "boolean": (1, 1),
    "boolean-from-string": (1, 1),
    "number": (1, 1),
    "string": (0, 1),
    "int": (1, 1),
    "round": (1, 2),
    "abs": (1, 1),
    "floor": (1, 1),
    "ceiling": (1, 1),
    "pow": (2, 2),
    "string-length": (0, 1),
    "normalize-space": (0, 1),
    "substr": (2, 3),
    "concat": (0, None),
    "join": (1, None),
    "contains": (2, 2),
    "starts-with": (2, 2),
    "ends-with": (2, 2),
    "regex": (2, 2),
    "if": (3, 3),
    "coalesce": (2, 2),
    "selected": (2, 2),
    "count-selected": (1, 1),
    "selected-at": (2, 2),
    "jr:choice-name": (2, 2),
    "today": (0, 0),
    "now": (0, 0),
    "date": (1, 1),
    "decimal-date-time": (1, 1),
    "format-date": (2, 2),
    "position": (0, 1),
    "count": (1, 1),
    "sum": (1, 1),
    "max": (1, None),
    "min": (1, None),
    "indexed-repeat": (3, 3),
    "once": (1, 1),
    "uuid": (0, 1),
    "random": (0, 0),
}
# Their value depends on when or where they run: a calculation using one takes the client's value.
VOLATILE_FUNCTIONS = frozenset({"now", "today", "uuid", "random", "once"})
# A path into a secondary instance that is not element steps with predicates
INSTANCE_PROBLEM = (
    "instance('name') is read as a path of element steps, each with an optional "
    "[predicate] (instance('name')/root/item[name = ${key}]/label)"
)
# Only made from JSON conditions, never parsed: whether a question has an answer.
ANSWERED = "answered"

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<ref>\$\{(?P<key>[^}]*)\})
    | (?P<num>\d+(?:\.\d*)?|\.\d+)
    | (?P<str>'[^']*'|"[^"]*")
    | (?P<op>!=|<=|>=|=|<|>|\+|-|\*|\(|\)|,|\.\.|\.|/|\[|\])
    | (?P<name>[A-Za-z_][A-Za-z0-9_.\-]*(?::[A-Za-z_][A-Za-z0-9_.\-]*)?)
    )""",
    re.VERBOSE,
)
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")
# Operators after an operand: (left binding power, node operator)
_INFIX = {
    "or": 1,
    "and": 2,
    "=": 3,
    "!=": 3,
    "<": 4,
    "<=": 4,
    ">": 4,
    ">=": 4,
    "+": 5,
    "-": 5,
    "*": 6,
    "div": 6,
    "mod": 6,
}
_UNARY = 7


class ExpressionError(ValueError):
    """The expression cannot be used; `message` says why and where (character offset)."""

    def __init__(self, message: str, position: int | None = None) -> None:
        where = f" (at character {position + 1})" if position is not None else ""
        super().__init__(message + where)
        self.message = message + where


def _tokens(text: str) -> list[tuple[str, str, int]]:
    tokens: list[tuple[str, str, int]] = []
    position, end = 0, len(text)
    while position < end:
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            if text[position:].strip() == "":
                break
            start = len(text) - len(text[position:].lstrip())
            # instance('x')/root/item[...]: a path, which is not read
            at = next((t[2] for t in tokens if t[:2] == ("name", "instance")), None)
            if at is not None:
                raise ExpressionError(INSTANCE_PROBLEM, at)
            raise ExpressionError(f"cannot read {text[start : start + 12]!r}", start)
        kind = match.lastgroup
        if kind == "key":  # the group inside ref
            kind = "ref"
        assert kind is not None  # noqa: S101 - every alternative is a named group
        value = match.group("key") if kind == "ref" else match.group(kind)
        if kind == "ref" and not _KEY.match(value):
            raise ExpressionError(f"'${{{value}}}' is not a question name", match.start(kind))
        tokens.append((kind, value, match.start(kind)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str, names: bool = False) -> None:
        self.tokens = _tokens(text)
        self.at = 0
        self.level = 0
        self.names = names

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def where(self) -> int | None:
        token = self.peek()
        return token[2] if token else None

    def expect(self, value: str) -> None:
        token = self.peek()
        if token is None or token[0] != "op" or token[1] != value:
            found = "the end" if token is None else repr(token[1])
            raise ExpressionError(f"expected '{value}', found {found}", self.where())
        self.at += 1

    def expression(self, power: int = 0) -> Node:
        # Every nested call is one level: 330 nested parentheses stop here, far from
        # Python's recursion limit.
        self.level += 1
        if self.level > MAX_DEPTH:
            raise ExpressionError(f"nested more than {MAX_DEPTH} deep", self.where())
        left = self.prefix()
        while True:
            token = self.peek()
            if token is None or token[0] not in ("op", "name") or token[1] not in _INFIX:
                break
            bind = _INFIX[token[1]]
            if bind <= power:
                break
            self.at += 1
            right = self.expression(bind)
            operator = token[1]
            if operator in ("and", "or"):
                parts = left[1] if left[0] == operator else (left,)
                left = (operator, (*parts, right))
            else:
                left = ("op", operator, left, right)
        self.level -= 1
        return left

    def prefix(self) -> Node:
        token = self.peek()
        if token is None:
            raise ExpressionError("the expression ends too early")
        kind, value, position = token
        self.at += 1
        if kind == "num":
            return ("num", float(value))
        if kind == "str":
            return ("str", value[1:-1])
        if kind == "ref":
            return ("ref", value)
        if kind == "op":
            if value == "(":
                inner = self.expression()
                self.expect(")")
                return inner
            if value == "-":
                return ("neg", self.expression(_UNARY))
            if value == ".":
                return ("cur",)
            if value == "..":
                return ("parent",)
            raise ExpressionError(f"unexpected {value!r}", position)
        # a name: only functions (XLSForm refers to questions as ${name})
        following = self.peek()
        if (following is None or following[:2] != ("op", "(")) and self.names:
            return ("prop", value)
        if following is None or following[:2] != ("op", "("):
            raise ExpressionError(
                f"unexpected name '{value}' (refer to questions as ${{name}})", position
            )
        if value == "instance":
            return self.instance(position)
        if value not in FUNCTIONS:
            raise ExpressionError(f"unknown function '{value}'", position)
        self.at += 1
        arguments: list[Node] = []
        if self.peek() is not None and self.peek()[:2] != ("op", ")"):  # type: ignore[index]
            arguments.append(self.expression())
            while self.peek() is not None and self.peek()[:2] == ("op", ","):  # type: ignore[index]
                self.at += 1
                arguments.append(self.expression())
        self.expect(")")
        least, most = FUNCTIONS[value]
        if len(arguments) < least or (most is not None and len(arguments) > most):
            takes = str(least) if least == most else f"{least} to {most if most else 'any'}"
            raise ExpressionError(f"{value}() takes {takes} arguments", position)
        return ("call", value, tuple(arguments))

    def instance(self, position: int) -> Node:
        """`instance('id')` and its steps (at least one), `(` next."""
        self.expect("(")
        token = self.peek()
        if token is None or token[0] != "str":
            raise ExpressionError("instance() names its instance as a quoted string", position)
        self.at += 1
        self.expect(")")
        steps: list[tuple[str, Node | None]] = []
        while self.peek() is not None and self.peek()[:2] == ("op", "/"):  # type: ignore[index]
            self.at += 1
            step = self.peek()
            if step is None or step[0] != "name":
                raise ExpressionError(INSTANCE_PROBLEM, position)
            self.at += 1
            predicate = None
            if self.peek() is not None and self.peek()[:2] == ("op", "["):  # type: ignore[index]
                self.at += 1
                outer, self.names = self.names, True  # bare names: the item's properties
                predicate = self.expression()
                self.names = outer
                self.expect("]")
            steps.append((step[1], predicate))
        if not steps:
            raise ExpressionError(INSTANCE_PROBLEM, position)
        return ("instance", token[1][1:-1], tuple(steps))


def parse(text: str, names: bool = False) -> Node:
    """The AST of an expression, or ExpressionError naming the problem. With `names` (a
    choice_filter), a bare name is the option's property of that name."""
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("the expression is empty")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"at most {MAX_LENGTH} characters")
    parser = _Parser(text, names)
    node = parser.expression()
    if parser.at != len(parser.tokens):
        token = parser.tokens[parser.at]
        raise ExpressionError(f"unexpected {token[1]!r}", token[2])
    _check_tree(node)
    return node


def children(node: Node) -> tuple[Node, ...]:
    kind = node[0]
    if kind in ("neg", "oneof"):
        return (node[1],)
    if kind == "op":
        return (node[2], node[3])
    if kind in ("and", "or"):
        return tuple(node[1])
    if kind == "call":
        return tuple(node[2])
    if kind == "instance":
        return tuple(predicate for _, predicate in node[2] if predicate is not None)
    return ()


def _walk(node: Node) -> Iterator[tuple[Node, int]]:
    """Every node with its depth, without recursion."""
    stack = [(node, 1)]
    while stack:
        current, depth = stack.pop()
        yield current, depth
        stack.extend((child, depth + 1) for child in children(current))


def _check_tree(node: Node) -> None:
    parents = 0  # `..` nodes, each allowed only as position(..)
    for current, depth in _walk(node):
        if depth > MAX_DEPTH:
            raise ExpressionError(f"nested more than {MAX_DEPTH} deep")
        if current[0] == "parent":
            parents += 1
        if current[0] == "call" and current[1] == "position" and current[2]:
            if current[2][0][0] != "parent":
                raise ExpressionError("position() takes no argument or '..'")
            parents -= 1
    if parents:
        raise ExpressionError("'..' is only understood as position(..)")
    for current, _ in _walk(node):
        if current[0] == "call" and current[1] == "regex" and current[2][1][0] != "str":
            raise ExpressionError("regex() needs its pattern as a quoted string")
        if current[0] == "call" and current[1] == "jr:choice-name":
            second = current[2][1]
            if second[0] != "str" or not re.fullmatch(r"\s*\$\{[^}]+\}\s*", second[1]):
                raise ExpressionError("jr:choice-name() names its question as '${name}'")


def node_count(node: Node) -> int:
    return sum(1 for _ in _walk(node))


def references(node: Node) -> set[str]:
    """Keys referred to (also those inside jr:choice-name's quoted second argument)."""
    keys: set[str] = set()
    for current, _ in _walk(node):
        if current[0] == "ref":
            keys.add(current[1])
        elif current[0] == "call" and current[1] == "jr:choice-name":
            keys.add(current[2][1][1].strip()[2:-1])
    return keys


def properties(node: Node) -> set[str]:
    """The bare names (option properties) a choice_filter reads (not those of an instance's
    items)."""
    found: set[str] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if current[0] == "prop":
            found.add(current[1])
        elif current[0] != "instance":
            stack.extend(children(current))
    return found


def instances(node: Node) -> set[str]:
    """The secondary instances the expression reads, by id."""
    return {current[1] for current, _ in _walk(node) if current[0] == "instance"}


def uses(node: Node, names: frozenset[str]) -> bool:
    return any(c[0] == "call" and c[1] in names for c, _ in _walk(node))


def uses_current(node: Node) -> bool:
    return any(c[0] == "cur" for c, _ in _walk(node))


# --- the JSON condition forms -----------------------------------------------------------------


def _literal(value: Any) -> Node:
    if isinstance(value, bool):
        return ("call", "true" if value else "false", ())
    if isinstance(value, int | float):
        return ("num", float(value))
    return ("str", str(value))


def from_condition(condition: Mapping[str, Any]) -> Node:
    """A JSON condition as an AST with the meaning it always had: an unanswered question makes
    every comparison false except `ne` and `not_in`, which hold."""
    if "all" in condition:
        return ("and", tuple(from_condition(part) for part in condition["all"]))
    if "any" in condition:
        return ("or", tuple(from_condition(part) for part in condition["any"]))
    if "not" in condition:
        return ("call", "not", (from_condition(condition["not"]),))
    ref: Node = ("ref", condition["question"])
    answered: Node = ("call", ANSWERED, (ref,))
    op, value = condition["op"], condition.get("value")
    if op == "answered":
        return answered
    if op == "contains":
        return ("and", (answered, ("call", "selected", (ref, _literal(value)))))
    if op in ("in", "not_in"):
        found: Node = ("oneof", ref, tuple(_literal(item) for item in value or ()))
        held: Node = ("and", (answered, found))
        return held if op == "in" else ("call", "not", (held,))
    symbol = {"eq": "=", "ne": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
    compared: Node = ("and", (answered, ("op", symbol, ref, _literal(value))))
    return ("call", "not", (compared,)) if op == "ne" else compared
