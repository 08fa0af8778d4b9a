"""Layers (overlays), ImageKit's `l-image,i-logo.png,w-100,lx-10,l-end` and `l-text,i-Hello,fs-40,l-end`:
what a layer is and how its own parameters are read and written back. `options` splits a step's text
into its parameters and its layers; `compose` draws them.

A layer is an image from the same endpoint's origins (`i-ik_canvas`: a solid colour block instead),
with the steps of its own transformation, or a text; placed on the step's result at `lx`/`ly` (`N20`
or `-20`: 20 px from the right or bottom edge), centred on `lxc`/`lyc`, or at the `lfo` focus (centre
by default), and blended with `lm` (normal when not given).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from .colours import RGBA, parse_colour, write_colour
from .expressions import Expression, evaluated, is_expression, or_expression, sizes

if TYPE_CHECKING:  # options imports this module
    from .options import Distortion

#: `i-ik_canvas`: no image, a block of the `bg` colour, `w`×`h` (the base's size when not given)
CANVAS = "ik_canvas"
KINDS = ("image", "text")
#: ImageKit's layer modes that the node draws; `displace` (a displacement map) is not drawn
MODES = ("multiply", "cutter", "cutout")
#: parameters (or whole `key-value`s) of ImageKit's layers that the node refuses, with why
UNSUPPORTED = {
    "lm-displace": "a displacement map is not supported",
    "lap": "lap (anchor point) is not supported; use lx/ly, lxc/lyc or lfo",
    "lso": "video timing is not supported", "leo": "video timing is not supported",
    "ldu": "video timing is not supported",
}
LAYER_FOCUS = ("center", "top", "left", "bottom", "right", "top_left", "top_right", "bottom_left", "bottom_right")
ALIGNMENTS = ("left", "right", "center")
TYPOGRAPHY = ("b", "i", "strikethrough")
#: the font a text layer uses when it names none (shipped in edge/fonts/, DejaVu licence)
DEFAULT_FONT = "DejaVuSans"
#: layers in one transformation (every step's, nested ones included); each may fetch and decode an image
MAX_LAYERS = 10
#: layers inside layers: ImageKit's three levels (a badge, its text)
MAX_DEPTH = 3
#: characters of one text layer
MAX_TEXT = 500
MAX_FONT_SIZE = 500
DEFAULT_FONT_SIZE = 14  # ImageKit's default `fs`
MAX_POSITION = 65500
MAX_OUTLINE = 50
BLACK: RGBA = (0, 0, 0, 255)

_POSITION = re.compile(r"(N|-)?([0-9]{1,5})(?:\.[0-9]{1,9})?")
FONT_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,100}")


def _position(text: str) -> int | Expression:
    """`20` → 20; `N20` or `-20` (as the SDK writes a negative number) → ~20 (-21): 20 px from the far
    edge (`~`, so that `N0`, flush with the far edge, differs from `0`); or an expression
    (`bw_mul_0.9`), from the near edge."""
    if is_expression(text) and text[:1] != "N":
        return or_expression(_pixels)(text)
    return _pixels(text)


def _pixels(text: str) -> int:
    match = _POSITION.fullmatch(text)
    if not match or int(match.group(2)) > MAX_POSITION:
        raise ValueError(f"must be an integer of pixels up to {MAX_POSITION}, N-prefixed to count from the far edge")
    pixels = min(math.floor(float(text.lstrip("N-")) + 0.5), MAX_POSITION)  # `10.5`, as the SDK writes a float: 11
    return ~pixels if match.group(1) else pixels


def from_far_edge(value: int) -> int | None:
    """The distance from the far edge of an N-prefixed position, None for a plain one."""
    return ~value if value < 0 else None


def _write_position(value: int | Expression) -> str:
    return f"N{~value}" if isinstance(value, int) and value < 0 else str(value)


def _int(low: int, high: int):
    def parse(text: str) -> int:
        if not re.fullmatch(r"[0-9]{1,6}", text) or not low <= int(text) <= high:
            raise ValueError(f"must be an integer from {low} to {high}")
        return int(text)
    return parse


def _choice(choices: tuple[str, ...]):
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return text
    return parse


def _padding(text: str) -> tuple[int, int, int, int] | Expression:
    """CSS shorthand, `_`-separated: 1 to 4 values → (top, right, bottom, left); or an expression
    (`pa-bw_mul_0.01`: a variable or an operator in it), the same on every side."""
    if any(c.isalpha() for c in text):
        return or_expression(_int(0, 1000))(text)
    parts = [_int(0, 1000)(part) for part in text.split("_")]
    if not 1 <= len(parts) <= 4:
        raise ValueError("must be 1 to 4 integers separated by _ (top_right_bottom_left)")
    top, right, bottom, left = (parts * 4)[:4] if len(parts) == 1 else (
        (parts[0], parts[1], parts[0], parts[1]) if len(parts) == 2 else
        (parts[0], parts[1], parts[2], parts[1]) if len(parts) == 3 else parts)
    return top, right, bottom, left


def _typography(text: str) -> tuple[str, ...]:
    styles = tuple(sorted(set(text.split("_"))))
    if not all(style in TYPOGRAPHY for style in styles):
        raise ValueError("must be b, i, strikethrough or a combination joined by _ (b_i)")
    return styles


def _outline(text: str) -> tuple[int, RGBA]:
    """`fol-<width>_<colour>`: `fol-2_blue`."""
    width, _, colour = text.partition("_")
    return _int(1, MAX_OUTLINE)(width), parse_colour(colour)


def _shadow(text: str) -> tuple[RGBA, int]:
    """`fsh-<colour>_<indent>`: `fsh-blue_2`."""
    colour, _, indent = text.rpartition("_")
    return parse_colour(colour), _int(1, MAX_OUTLINE * 2)(indent)


def _font(text: str) -> str:
    if not FONT_NAME.fullmatch(text):
        raise ValueError("must be the name of a font listed in [fonts]")
    return text.replace("@@", "/")


@dataclass(frozen=True)
class Placement:
    """Where a layer goes on its base, and how it blends. A position is an `int` (`_position`) or an
    expression until the layer is drawn (`placed`)."""

    x: int | Expression | None = None
    y: int | Expression | None = None
    x_center: int | Expression | None = None
    y_center: int | Expression | None = None
    focus: str = "center"
    mode: str | None = None


@dataclass(frozen=True)
class TextStyle:
    size: int | Expression = DEFAULT_FONT_SIZE  # an expression until the layer is drawn (`sized`)
    font: str = DEFAULT_FONT
    colour: RGBA = BLACK
    background: RGBA | None = None
    padding: tuple[int, int, int, int] | Expression | None = None
    alpha: int | None = None  # 1–9: tenths of opacity
    align: str = "center"
    typography: tuple[str, ...] = ()
    line_height: int | Expression | None = None
    width: int | Expression | None = None  # wrap at this many pixels
    rotation: int = 0
    flip: str | None = None
    radius: int | str | None = None
    distort: Distortion | None = None  # after the turn: Cloudinary's curved text is `e_distort:arc:-120`
    outline: tuple[int, RGBA] | None = None  # width, colour
    shadow: tuple[RGBA, int] | None = None  # colour, indent


#: key → (field, parser, writer) for each object a layer parameter sets
PLACEMENT_PARAMS: dict[str, tuple[str, Any, Any]] = {
    "lx": ("x", _position, _write_position),
    "ly": ("y", _position, _write_position),
    "lxc": ("x_center", _position, _write_position),
    "lyc": ("y_center", _position, _write_position),
    "lfo": ("focus", _choice(LAYER_FOCUS), str),
    "lm": ("mode", _choice(MODES), str),
}
TEXT_PARAMS: dict[str, tuple[str, Any, Any]] = {
    "fs": ("size", or_expression(_int(1, MAX_FONT_SIZE)), str),
    "ff": ("font", _font, lambda name: name.replace("/", "@@")),
    "co": ("colour", parse_colour, write_colour),
    "bg": ("background", parse_colour, write_colour),
    "pa": ("padding", _padding, lambda p: str(p) if isinstance(p, Expression) else "_".join(map(str, p))),
    "al": ("alpha", _int(1, 9), str),
    "ia": ("align", _choice(ALIGNMENTS), str),
    "tg": ("typography", _typography, "_".join),
    "lh": ("line_height", or_expression(_int(1, 2 * MAX_FONT_SIZE)), str),
    "w": ("width", or_expression(_int(1, MAX_POSITION)), str),
    "fol": ("outline", _outline, lambda o: f"{o[0]}_{write_colour(o[1])}"),
    "fsh": ("shadow", _shadow, lambda s: f"{write_colour(s[0])}_{s[1]}"),
}
#: read by the step parser's own value parsers (`rt`, `r`), passed in by `options`
TEXT_SHARED = {"rt": "rotation", "r": "radius", "fl": "flip", "e-distort": "distort"}
INPUT_KEYS = ("i", "ie")


@dataclass(frozen=True)
class Layer:
    kind: str  # "image" or "text"
    #: the image's path (`ik_canvas` for a colour block), or the text
    input: str
    placement: Placement = Placement()
    #: an image layer's own transformation (`options.Step`s); a canvas's first step gives w, h, bg
    steps: tuple = ()
    text: TextStyle | None = None
    #: `al-1`…`al-9` on a canvas
    alpha: int | None = None
    #: `pg-N` on an image layer: that page (frame) of a multi-page original, 1-based; the first without it
    page: int | None = None

    @property
    def fetches(self) -> bool:
        """Whether drawing it needs an original from the endpoint's origins."""
        return self.kind == "image" and self.input != CANVAS


def fetched(steps: tuple) -> set[str]:
    """The paths of the originals the layers of these steps draw, those of nested layers included."""
    return {path for path, _ in pages_drawn(steps)}


def pages_drawn(steps: tuple) -> list[tuple[str, int | None]]:
    """The originals the image layers of these steps draw, each with its `pg` (None: the first page), those of
    nested layers included: as often as they are drawn (each layer decodes its original)."""
    return [pair for step in steps for layer in step.layers
            for pair in ([(layer.input, layer.page)] if layer.fetches else []) + pages_drawn(layer.steps)]


def drawn_fonts(steps: tuple) -> set[str]:
    """The fonts the text layers of these steps draw with, those of nested layers included."""
    return {font for step in steps for layer in step.layers
            for font in ({(layer.text or TextStyle()).font} if layer.kind == "text" else set())
            | drawn_fonts(layer.steps)}


def placed(placement: Placement, base: tuple[int, int], drawn: tuple[int, int],
           original: tuple[int, int]) -> Placement:
    """`placement` with its expressions evaluated: `bw`… the base's size, `cw`… the layer's as drawn,
    `iw`… its original's. A value beyond the base is moved in when the layer is drawn; below 0, it is 0."""
    variables = {**sizes("b", *base), **sizes("c", *drawn), **sizes("i", *original)}
    values = {name: round(evaluated(getattr(placement, name), key, variables, low=float("-inf")))
              for key, (name, _, _) in PLACEMENT_PARAMS.items()
              if isinstance(getattr(placement, name), Expression)}
    return replace(placement, **{name: max(0, value) for name, value in values.items()})


#: a text layer's fields that may hold an expression: their parameter, least and largest value
_TEXT_EXPRESSIONS = {"size": ("fs", 1, float("inf")), "width": ("w", 1, MAX_POSITION),
                     "line_height": ("lh", 1, 2 * MAX_FONT_SIZE), "padding": ("pa", 0, 1000)}


def sized(style: TextStyle, base: tuple[int | None, int | None]) -> TextStyle:
    """`style` with `fs`, `w`, `lh` and `pa` evaluated for a base of this size (raises `BadRequest`);
    an `fs` over `MAX_FONT_SIZE` is drawn at it (an expression of a large base may give more). An unknown
    base (the cost of a URL before its original is read) gives the default `fs` and no `w`, `lh`, `pa`:
    the cost is checked again, with every size known, before the render."""
    names = [name for name in _TEXT_EXPRESSIONS if isinstance(getattr(style, name), Expression)]
    if not names:
        return style
    if None in base:
        return replace(style, **{name: DEFAULT_FONT_SIZE if name == "size" else None for name in names})
    variables = sizes("b", *base)
    values = {name: max(low, round(evaluated(getattr(style, name), key, variables, low=0, high=high)))
              for name, (key, low, high) in _TEXT_EXPRESSIONS.items() if name in names}
    if "size" in values:
        values["size"] = min(values["size"], MAX_FONT_SIZE)
    if "padding" in values:
        values["padding"] = (values["padding"],) * 4
    return replace(style, **values)


def dot_segment(path: str) -> bool:
    """Whether `path` has a `.` or `..` segment, which would climb out of an origin's root, folder or base
    URL (a web server normalises `/images/../admin`). A backslash delimits one too: a server on Windows
    reads `/images/..%5Cadmin` so. No image an origin serves is named like that."""
    return any(segment in (".", "..") for segment in re.split(r"[/\\]", path))


def read_input(key: str, value: str, kind: str) -> str:
    """`i-` (paths: `/` as `@@`) or `ie-` (base64 of UTF-8; the router has already percent-decoded it)."""
    if key == "ie":
        try:
            value = base64.b64decode(value.replace(" ", "+"), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError("must be base64 of UTF-8 text") from None
    elif kind == "image":
        value = value.replace("@@", "/")
    if not value:
        raise ValueError("must not be empty")
    if kind == "text":
        if len(value) > MAX_TEXT:
            raise ValueError(f"at most {MAX_TEXT} characters")
        if any(ord(c) < 32 and c != "\n" for c in value):
            raise ValueError("control characters are not allowed")
        if value.isspace():  # Pango draws no ink for it: libvips' text refuses it
            raise ValueError("only spaces and line breaks: no text to draw")
        return value
    segments = [segment for segment in value.split("/") if segment]
    if not segments or dot_segment(value) or any(ord(c) < 32 for c in value):
        raise ValueError("must be the path of an image of this endpoint, with / written as @@")
    return "/".join(segments)


def write_input(layer: Layer) -> str:
    """The canonical `i-`/`ie-`: plain for simple paths, base64 for any text (never holds `,` or `:`)."""
    if layer.kind == "image" and re.fullmatch(r"[A-Za-z0-9._/ -]+", layer.input):
        return f"i-{layer.input.replace('/', '@@')}"
    return "ie-" + base64.b64encode(layer.input.encode()).decode()


def write_fields(values: Any, table: dict[str, tuple[str, Any, Any]]) -> list[str]:
    default = type(values)()
    return [f"{key}-{write(getattr(values, name))}" for key, (name, _, write) in sorted(table.items())
            if getattr(values, name) != getattr(default, name)]


assert {f.name for f in fields(TextStyle)} == {n for n, _, _ in TEXT_PARAMS.values()} | set(TEXT_SHARED.values())
