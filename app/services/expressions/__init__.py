"""XLSForm expressions (an ODK XPath subset): parsed once when saved, evaluated per response.

- `parse` turns an expression's text into a small AST (tuples) with a hand-written Pratt parser:
  at most MAX_LENGTH characters and MAX_DEPTH levels deep, counted on the tree itself, so that
  neither the parser nor the evaluator (both recursive) ever comes near Python's recursion limit,
  and `1+1+...+1` is as deep as it is long.
- `from_condition` turns the JSON condition forms (`{"question", "op", "value"}`, `all`, `any`,
  `not`) into the same AST, so there is one evaluator.
- `compile_expression` checks the references against the definition (a `Resolver`) and makes an
  `Expression` whose `evaluate(env)` gives an XPath value.

Values follow ODK: an unanswered question is '' as a string and NaN as a number; a multiple
choice answer is its values separated by spaces (for `selected()`, `count-selected()`); dates
count as days since 1970-01-01 in number context, as in JavaRosa. Nothing is run with `eval`.
"""

from app.services.expressions.evaluate import Expression, compile_expression
from app.services.expressions.parse import (
    MAX_DEPTH,
    MAX_LENGTH,
    VOLATILE_FUNCTIONS,
    ExpressionError,
    Node,
    from_condition,
    node_count,
    parse,
    references,
)
from app.services.expressions.values import (
    MAX_STEPS,
    Env,
    EvaluationError,
    NodeSet,
    boolean,
    number,
    string,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_LENGTH",
    "MAX_STEPS",
    "VOLATILE_FUNCTIONS",
    "Env",
    "EvaluationError",
    "Expression",
    "ExpressionError",
    "Node",
    "NodeSet",
    "boolean",
    "compile_expression",
    "from_condition",
    "node_count",
    "number",
    "parse",
    "references",
    "string",
]
