"""The transformation language: `w-300,h-200:rt-90` → a `Transformation`, and back to canonical text.

Every parameter is one row of `PARAMS`: its key, the `Step` field it sets, and how its value is
parsed and written back. To add a parameter, add a field to `Step` and a row here; the canonical
form (the cache key) and the 400 messages follow from the row.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

from ..errors import InvalidTransformation

CROPS = ("maintain_ratio", "force", "at_max", "at_max_enlarge", "at_least", "maintain_ratio_no_enlarge")
FOCUS = ("center", "top", "left", "bottom", "right", "top_left", "top_right", "bottom_left", "bottom_right")
FORMATS = ("auto", "jpg", "png", "webp", "avif", "gif", "orig")
FORMAT_SYNONYMS = {"jpeg": "jpg"}


@dataclass(frozen=True)
class Step:
    """One step of a chained transformation. Defaults are the values a missing parameter means."""

    width: float | None = None
    height: float | None = None
    crop: str = "maintain_ratio"
    focus: str = "center"
    quality: int | None = None
    format: str | None = None
    original: bool = False


DEFAULT_STEP = Step()


@dataclass(frozen=True)
class Transformation:
    steps: tuple[Step, ...] = ()

    @property
    def serves_original(self) -> bool:
        """`orig-true`: the original bytes, untouched; every other parameter is ignored."""
        return any(step.original for step in self.steps)

    def last(self, field_name: str) -> Any:
        """The value of an output parameter (`f`, `q`, ...): the last step that sets it wins."""
        default = getattr(DEFAULT_STEP, field_name)
        for step in reversed(self.steps):
            value = getattr(step, field_name)
            if value != default:
                return value
        return default

    @property
    def output_format(self) -> str | None:
        return self.last("format")

    def canonical(self) -> str:
        """The cache-key form: parameters sorted, defaults dropped, synonyms folded, empty steps gone."""
        if self.serves_original:
            return "orig-true"
        return ":".join(filter(None, (_canonical_step(step) for step in self.steps)))


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("expected a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("expected a number")
    return value


def _dimension(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise ValueError("must be a positive number")
    return value if value < 1 else float(round(value))


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not text.isdigit() or not low <= int(text) <= high:
            raise ValueError(f"must be an integer from {low} to {high}")
        return int(text)
    return parse


def _choice(choices: tuple[str, ...], synonyms: dict[str, str] | None = None) -> Callable[[str], str]:
    def parse(text: str) -> str:
        text = (synonyms or {}).get(text, text)
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return text
    return parse


def _true(text: str) -> bool:
    if text != "true":
        raise ValueError("must be true")
    return True


def _format_number(value: float) -> str:
    return f"{value:g}" if value < 1 else str(int(value))


@dataclass(frozen=True)
class Param:
    key: str
    field: str
    parse: Callable[[str], Any]
    write: Callable[[Any], str] = str


PARAMS: dict[str, Param] = {p.key: p for p in (
    Param("w", "width", _dimension, _format_number),
    Param("h", "height", _dimension, _format_number),
    Param("c", "crop", _choice(CROPS)),
    Param("fo", "focus", _choice(FOCUS)),
    Param("q", "quality", _int_range(1, 100)),
    Param("f", "format", _choice(FORMATS, FORMAT_SYNONYMS)),
    Param("orig", "original", _true, lambda _: "true"),
)}
_BY_FIELD = {p.field: p for p in PARAMS.values()}
_FIELD_ORDER = sorted((f.name for f in fields(Step)), key=lambda name: _BY_FIELD[name].key)


def _split(param: str) -> tuple[str, str]:
    """`w-300` → (`w`, `300`); `e-sharpen-10` → (`e-sharpen`, `10`); a flag has value ``."""
    head, _, rest = param.partition("-")
    if head == "e":
        name, _, value = rest.partition("-")
        return f"e-{name}", value
    return head, rest


def parse_step(text: str) -> Step:
    step = DEFAULT_STEP
    for param in text.split(","):
        if not param:
            continue
        key, value = _split(param)
        spec = PARAMS.get(key)
        if spec is None:
            raise InvalidTransformation(param, "unknown parameter")
        try:
            step = replace(step, **{spec.field: spec.parse(value)})
        except ValueError as exc:
            raise InvalidTransformation(param, str(exc)) from None
    return step


@functools.lru_cache(maxsize=4096)  # a site uses few distinct transformations; each parse is pure
def parse_transformation(*texts: str | None) -> Transformation:
    """Parse the path form and the query form (in that order) into one chained transformation."""
    steps = tuple(parse_step(step) for text in texts if text for step in text.split(":"))
    return Transformation(tuple(step for step in steps if step != DEFAULT_STEP))


@functools.lru_cache(maxsize=4096)
def _canonical_step(step: Step) -> str:
    parts = []
    for name in _FIELD_ORDER:
        value = getattr(step, name)
        if value != getattr(DEFAULT_STEP, name):
            spec = _BY_FIELD[name]
            parts.append(f"{spec.key}-{spec.write(value)}")
    return ",".join(parts)
