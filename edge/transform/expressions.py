"""ImageKit's arithmetic expressions (`w-iw_div_2`, `h-ih_mul_0.8_add_iw_mul_0.1`, `ar-iar`,
`lx-bw_mul_0.9`, `fs-bh_div_20`): values (numbers or variables) and operators alternating, evaluated
once the sizes they name are known. https://imagekit.io/docs/arithmetic-expressions-in-transformations

Variables: `iw`, `ih`, `iar`, the original's size (in a layer: the layer's own original); `cw`, `ch`,
`car`, the step's input (in a layer's position: the layer as drawn); `bw`, `bh`, `bar`, in a layer
only, the base it is drawn on.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import BadRequest

#: largest pixel value a parameter may name (libvips' limit on an image side)
MAX_PIXELS = 65500
#: the size of the base a layer is drawn on: only within a layer
BASE_VARIABLES = ("bw", "bh", "bar")
EXPRESSION_VARIABLES = ("iw", "ih", "iar", "cw", "ch", "car", *BASE_VARIABLES)
EXPRESSION_OPERATORS = ("add", "sub", "mul", "div", "mod", "pow")
#: values and operators in one expression
MAX_EXPRESSION_TERMS = 15

#: digits of a number before its point, and after it
_DIGITS = 9
_DECIMAL = re.compile(rf"[0-9]{{1,{_DIGITS}}}(?:\.[0-9]{{1,{_DIGITS}}})?|\.[0-9]{{1,{_DIGITS}}}")
_ANY_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?|\.[0-9]+")
_OPERATIONS = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv,
               "mod": operator.mod, "pow": operator.pow}


@dataclass(frozen=True)
class Expression:
    """Values and operators alternate; pow binds first, then mul/div/mod, then add/sub."""

    terms: tuple[str, ...]

    def evaluate(self, variables: Mapping[str, float]) -> float:
        """The value, with `variables` holding every variable it names."""
        values = [_value(term, variables) for term in self.terms[::2]]
        operators = list(self.terms[1::2])
        for group in (("pow",), ("mul", "div", "mod"), ("add", "sub")):
            i = 0
            while i < len(operators):
                if operators[i] in group:
                    values[i:i + 2] = [_apply(operators.pop(i), values[i], values[i + 1])]
                else:
                    i += 1
        return values[0]

    @property
    def reads_base(self) -> bool:
        """Whether it names the base of a layer (`bw`, `bh`, `bar`)."""
        return any(term in BASE_VARIABLES for term in self.terms[::2])

    def __str__(self) -> str:
        return "_".join(self.terms)


def _value(term: str, variables: Mapping[str, float]) -> float:
    if term not in EXPRESSION_VARIABLES:
        return float(term)
    if term not in variables:  # `bw` outside a layer
        raise ValueError(f"{term} is not known here")
    return variables[term]


def _apply(name: str, left: float, right: float) -> float:
    if name in ("div", "mod") and right == 0:
        raise ValueError("division by zero")
    if name == "pow" and not (0 <= left <= MAX_PIXELS and abs(right) <= 10):
        raise ValueError("pow takes a base from 0 to 65500 and an exponent up to 10")
    return _OPERATIONS[name](left, right)


def expression(text: str) -> Expression:
    """Parse one; ValueError with the reason otherwise."""
    terms = text.split("_")
    if len(terms) % 2 == 0 or len(terms) > MAX_EXPRESSION_TERMS:
        raise ValueError(f"an expression alternates values and operators, at most {MAX_EXPRESSION_TERMS} terms")
    for index, term in enumerate(terms):
        if index % 2 and term not in EXPRESSION_OPERATORS:
            raise ValueError(f"operators are {', '.join(EXPRESSION_OPERATORS)}")
        if not index % 2 and term not in EXPRESSION_VARIABLES:
            terms[index] = write_number(decimal(term))
    return Expression(tuple(terms))


def or_expression(parse_value: Callable[[str], Any]) -> Callable[[str], Any]:
    """`parse_value`, or an expression when the text is written as one; a bad expression's reason
    says what the value may be too."""
    def parse(text: str) -> Any:
        if not is_expression(text):
            return parse_value(text)
        try:
            return expression(text)
        except ValueError as exc:
            try:
                parse_value(text)
            except ValueError as plain:
                raise ValueError(f"{plain}, or an expression ({exc})") from None
            raise
    return parse


def is_expression(text: str) -> bool:
    """Whether a parameter's value is written as an expression (`_` or a variable), not a number."""
    return "_" in text or text[:1].isalpha()


def decimal(text: str) -> float:
    if not _DECIMAL.fullmatch(text):
        too_long = _ANY_DECIMAL.fullmatch(text) is not None
        raise ValueError("expected a number" + f" of at most {_DIGITS} digits before and after the point" * too_long)
    return float(text)


def write_number(value: float) -> str:
    return f"{value:.9f}".rstrip("0").rstrip(".")  # never an exponent: the parser takes none


def sizes(prefix: str, width: int, height: int) -> dict[str, float]:
    """An image's size as the variables of `prefix`: `i` → iw, ih, iar; `c` → cw…; `b` → bw…"""
    return {f"{prefix}w": width, f"{prefix}h": height, f"{prefix}ar": width / height}


def evaluated(value: float | Expression, key: str, variables: Mapping[str, float], low: float = 1,
              high: float = MAX_PIXELS) -> float:
    """`value`, or the expression's value with `variables`, which must lie within [low, high]. Raises
    `BadRequest` naming the parameter `key`."""
    if not isinstance(value, Expression):
        return value
    try:
        result = value.evaluate(variables)
    except (ValueError, OverflowError, ZeroDivisionError) as exc:
        raise BadRequest(f"invalid transformation: {key}-{value}: {exc}") from None
    if not low <= result <= high:
        why = f"above {high:g}" if result > high else "not above 0" if 0 < low < 1 else f"below {low:g}"
        raise BadRequest(f"invalid transformation: {key}-{value}: evaluates to {result:g}, {why}")
    return result
