"""The transformation language: `w-300,h-200:rt-90` → a `Transformation`, and back to canonical text.

Every parameter is one row of `PARAMS`: its key, the field it sets, and how its value is parsed and
written back. Geometry and look parameters set a field of the chained `Step` they appear in; output
parameters (`f q pr lo md cp di orig`) describe the one encoded result, so they set a field of
`Output` and the last step that names one wins. To add a parameter, add a field and a row; the
canonical form (the cache key) and the 400 messages follow from the row.

The canonical form sorts each step's parameters, drops defaults, folds synonyms (`jpeg`→`jpg`,
`rt-N90`→`rt-270`, colour names → hex), expands `n-<name>`, and writes the output parameters once,
in the last step (in a step of their own after an if block). `canonical(parse(canonical(t))) ==
canonical(t)`. `w-auto` and `dpr-auto` stay as
they are: their values come from the request's client hints (`edge/transform/hints.py`), which are
part of the output's key beside it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, NamedTuple

from ..errors import InvalidTransformation
from . import faces
from . import layers as layer_params
from .colours import CSS_NAMES, RGBA, Blurred, parse_colour, write_colour
from .expressions import MAX_PIXELS, Expression, is_expression, or_expression
from .expressions import decimal as _decimal
from .expressions import expression as _expression
from .expressions import write_number as _write_number
from .layers import Layer, Placement, TextStyle, dot_segment

CROPS = ("maintain_ratio", "force", "at_max", "at_max_enlarge", "at_least", "maintain_ratio_no_enlarge",
         "enlarge_to_fit")
CROP_MODES = ("pad_resize", "extract", "pad_extract", "pad_resize_no_enlarge", "pad_extract_no_shrink",
              "extract_within")
FOCUS = ("center", "top", "left", "bottom", "right", "top_left", "top_right", "bottom_left",
         "bottom_right", "auto", "face")
#: where `fo-face` crops when it finds no face (`fof-`; the node's own, for Cloudinary's `g_face`, which
#: "defaults to north", and `g_face:center`): any other focus
FACE_FALLBACKS = tuple(focus for focus in FOCUS if focus != "face")
FORMATS = ("auto", "jpg", "png", "webp", "avif", "gif", "orig")
FORMAT_SYNONYMS = {"jpeg": "jpg"}
#: output formats ImageKit has that the node does not write
UNSUPPORTED_FORMATS = {"mp4": "video", "webm": "video", "svg": "vector output"}
#: `bg-` values that name a colour the image decides: its most common one, or its border's (the node's own)
DOMINANT = ("dominant", "dominant_border")
FLIPS = ("h", "v", "h_v")
FLIP_SYNONYMS = {"v_h": "h_v"}
EXTRACTING = ("extract", "pad_extract", "pad_extract_no_shrink", "extract_within")
#: the modes that only cut (`extract_within`: the part of the region inside the image, Cloudinary's `c_crop`)
CUTTING = ("extract", "extract_within")
#: crop modes ImageKit wrote as `c-` values before `cm-` (its conditional-transformation docs still write
#: `c-pad_resize`, and SDKs such as unpic wrote both until 2025): read as `cm-`
LEGACY_CROP_MODES = ("pad_resize", "extract")
PADDING = ("pad_resize", "pad_resize_no_enlarge")
#: `e-sharpen` and `t-true` without a number
DEFAULT_SHARPEN = 10
DEFAULT_TRIM = 10
#: `e-usm` without values (ImageKit documents none of its own): radius, sigma, amount, threshold
DEFAULT_UNSHARP_MASK = (2.0, 1.0, 1.0, 0.05)
#: `e-shadow` parts and their defaults, as ImageKit documents them (effects-and-enhancements):
#: blur 0–15, saturation (how dark, %) 0–100, offsets in % of the image's width / height (N: negative)
SHADOW_DEFAULTS = {"bl": 10.0, "st": 30.0, "x": 2.0, "y": 2.0}
SHADOW_RANGES = {"bl": (0, 15), "st": (0, 100), "x": (-100, 100), "y": (-100, 100)}
#: `e-gradient` parts: direction (degrees or a side), the two colours, the stop point (0–1: a fraction
#: of the image, above 1: pixels); the defaults are ImageKit's documented ones
GRADIENT_DIRECTIONS = {"top": 0, "top_right": 45, "right": 90, "bottom_right": 135, "bottom": 180,
                       "bottom_left": 225, "left": 270, "top_left": 315, "topleft": 315}  # ImageKit's table: `topleft`
GRADIENT_DEFAULTS = ("180", "FFFFFF00", "00000066", "1")
#: `cr-<to>` without a tolerance: Cloudinary's default for its `e_replace_color`, which ImageKit's `cr` mirrors
DEFAULT_REPLACE_TOLERANCE = 50
#: `e-colorize` parts and their defaults, as ImageKit's SDK documents them: the colour, its intensity (0–100)
COLORIZE_DEFAULTS = {"co": "gray", "in": "100"}
#: `bg-blurred` without values: the blur radius and brightness change (−255–255)
DEFAULT_BLURRED = (10, 0)
#: `pg-N`: the page (frame) of a multi-page source; the node reads animations and multi-page TIFF
MAX_PAGE = 1000
#: widest border, in pixels
MAX_BORDER = 1000
#: chained steps in one transformation: each may cost a full-size resize, so a URL must not ask for
#: thousands (a 60 kB URL of `w-10` steps kept a libvips thread busy for minutes)
MAX_STEPS = 10
#: characters of transformation text (path and query form together): bounds parsing and the memo
MAX_TEXT = 2000

#: `w-auto`, `dpr-auto`: the value of a client hint of the request
AUTO = "auto"

_INTEGER = re.compile(r"[0-9]{1,9}")


#: `if-<property>_<operator>_<value>`: the image's size at this step (`w h ar`) or the original's (`iw ih iar`),
#: and the node's own `fc`, the faces the `[faces]` extra finds in the image at this step (Cloudinary's `if_fc_…`)
CONDITION_PROPERTIES = ("w", "h", "ar", "iw", "ih", "iar", "fc")
FACE_COUNT = "fc"
CONDITION_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b}
IF_ELSE, IF_END = "if-else", "if-end"


@dataclass(frozen=True)
class Conditional:
    """ImageKit's `if-<condition>,<steps>[,if-else,<steps>],if-end`: `condition` is alternatives (`or`) of
    comparisons that must all hold (`and`, which binds first), each (property, operator, value, the value
    as written: a ratio stays `4-3` in the canonical form, which a rounded decimal would not compare as)."""

    condition: tuple[tuple[tuple[str, str, float, str], ...], ...]
    then_steps: tuple[Step, ...]
    else_steps: tuple[Step, ...] = ()

    @property
    def counts_faces(self) -> bool:
        return any(prop == FACE_COUNT for clauses in self.condition for prop, *_ in clauses)

    def holds(self, size: tuple[int, int], original: tuple[int, int],
              face_count: Callable[[], int] | None = None) -> bool:
        """Whether the condition holds on an image of `size` (`face_count`: how many faces it shows, asked
        only when the condition reads `fc`, once)."""
        values = {"w": size[0], "h": size[1], "ar": size[0] / size[1],
                  "iw": original[0], "ih": original[1], "iar": original[0] / original[1]}
        if self.counts_faces:
            assert face_count is not None, "a condition on faces needs the image's face count"
            values[FACE_COUNT] = face_count()
        return any(all(CONDITION_OPERATORS[op](values[prop], value) for prop, op, value, _ in clauses)
                   for clauses in self.condition)

    def chosen(self, size: tuple[int, int], original: tuple[int, int], face_count: Callable[[], int],
               layers: tuple[Layer, ...] = ()) -> tuple[Step, ...]:
        """The steps the block stands for on an image of `size`, then the block's `layers` (an endpoint's
        watermark drawn on the last step) on their result; none for an empty branch, which leaves the image
        as it is."""
        steps = self.then_steps if self.holds(size, original, face_count) else self.else_steps
        return (*steps, replace(DEFAULT_STEP, layers=layers)) if layers else steps

    def write(self) -> str:
        condition = "_or_".join("_and_".join(f"{prop}_{op}_{text}" for prop, op, _, text in clauses)
                                for clauses in self.condition)
        then, otherwise = (":".join(_canonical(step, DEFAULT_STEP) for step in steps) or None
                           for steps in (self.then_steps, self.else_steps))
        return ",".join(filter(None, (f"if-{condition}", then, otherwise and IF_ELSE, otherwise, IF_END)))


class ColourReplacement(NamedTuple):
    """`cr-<to>[_<tolerance>[_<from>]]`: the colours near `source` (None: the image's dominant colour)
    made `target`'s, each keeping its shade (`effects.replace_colour`)."""
    target: RGBA
    tolerance: int
    source: RGBA | None


class Distortion(NamedTuple):
    """`e-distort`: `p` moves the image's corners (clockwise from the top left) to the eight coordinates, in
    pixels of the image as it is there; `a` bends it into an arc of that many degrees (below 0: downwards)."""
    kind: str
    values: tuple[int, ...]


@dataclass(frozen=True)
class Step:
    """One step of a chained transformation: geometry, then look. Defaults mean "not given"."""

    width: float | Expression | str | None = None  # or AUTO
    #: `wf-N`: with `w-auto`, the width in pixels when the request has no width hint (Cloudinary's
    #: `w_auto:<step>:<fallback width>`; ImageKit has none)
    width_fallback: int | None = None
    height: float | Expression | None = None
    aspect_ratio: tuple[float, float] | Expression | None = None
    dpr: float | str = 1.0  # or AUTO
    crop: str = "maintain_ratio"
    crop_mode: str | None = None
    focus: str = "center"
    focus_fallback: str = "auto"  # `fof-`: with `fo-face`, the focus when no face is found
    #: `ffr-`: with `fo-face` and both sides, frame the faces (else only centre the covering crop on them)
    frames_faces: bool = True
    x: int | Expression | None = None  # an expression until resolved (`geometry.with_sizes`), as `border`'s width
    y: int | Expression | None = None
    x_center: int | Expression | None = None
    y_center: int | Expression | None = None
    zoom: float = 1.0
    trim: int | None = None
    rotation: float = 0
    flip: str | None = None
    distort: Distortion | None = None
    blur: float | None = None
    grayscale: bool = False
    sharpen: int | None = None
    #: a blend with the original, in percent (`e-contrast` alone: 100)
    contrast: int | None = None
    unsharp_mask: tuple[float, float, float, float] | None = None
    #: the node's own colour adjustments, for Cloudinary's `e_brightness`, `e_saturation`, `e_sepia`,
    #: `e_negate`, `e_vibrance`, `e_hue`, `e_red`, `e_green`, `e_blue`, `e_blackwhite` and `e_pixelate`
    #: (docs/transformations.md): percentages, and a square's side in pixels
    brightness: int | None = None
    saturation: int | None = None
    sepia: int | None = None
    negate: bool = False
    vibrance: int | None = None
    hue: int | None = None
    #: each colour band's percentage change (`e-red`, `e-green`, `e-blue`)
    red: int | None = None
    green: int | None = None
    blue: int | None = None
    #: `e-autocolor`, `e-autobrightness` (Cloudinary's `e_auto_color`, `e_auto_brightness`, `e_improve`): a
    #: blend with the original, in percent, as `contrast`
    auto_colour: int | None = None
    auto_brightness: int | None = None
    blackwhite: int | None = None
    pixelate: int | None = None
    #: `e-sigmoidcontrast-N` (−100–100), `e-linearcontrast-N` (1–200), `e-gamma-N` (−50–150),
    #: `e-brightnesshsb-N` (−99–100), `e-vignette-N` (0–100), `e-opacitythreshold-N` (0–100), for Cloudinary's
    #: `e_contrast`, `e_gamma`, `e_brightness_hsb`, `e_vignette`, `e_opacity_threshold` (docs/transformations.md)
    sigmoid_contrast: int | None = None
    linear_contrast: int | None = None
    gamma: int | None = None
    brightness_hsb: int | None = None
    vignette: int | None = None
    opacity_threshold: int | None = None
    #: `e-colorize-co-<colour>_in-N`: N % of the colour over each pixel (Cloudinary's `e_colorize` with `co_`)
    colour_blend: tuple[int, RGBA] | None = None
    #: `cr-<to>_<tolerance>_<from>`: ImageKit's colour replacement (Cloudinary's `e_replace_color`)
    colour_replacement: ColourReplacement | None = None
    #: `e-region-x_y_w_h`: the rectangle `bl` and `e-pixelate` keep to (w, h None: to the far edges), for
    #: Cloudinary's `e_blur_region` and `e_pixelate_region`
    region: tuple[int, int, int | None, int | None] | None = None
    #: the faces alone blurred (`bl`'s radius) or pixelated (a square's side), for `e_blur_faces`, `e_pixelate_faces`
    blur_faces: float | None = None
    pixelate_faces: int | None = None
    radius: int | str | tuple[int, int, int, int] | None = None
    #: a colour, `dominant` (the image's dominant colour; `dominant_border`: of its border) or `Blurred` (padding:
    #: the image, blurred)
    background: RGBA | str | Blurred | None = None
    border: tuple[int | Expression, RGBA] | None = None
    opacity: int = 100
    #: (blur, saturation %, x %, y %)
    shadow: tuple[float, float, float, float] | None = None
    #: (direction in degrees, from colour, to colour, stop point: an expression until resolved, as `border`'s width)
    gradient: tuple[float, RGBA, RGBA, float | Expression] | None = None
    #: drawn on the step's result, in order (`l-…,l-end`); see `layers`
    layers: tuple[Layer, ...] = ()
    #: an `if-…,if-end` block, the step's only content: the steps it stands for depend on the image's size
    branches: Conditional | None = None

    @property
    def extracts(self) -> bool:
        return self.crop_mode in EXTRACTING

    @property
    def pads(self) -> bool:
        return self.crop_mode in PADDING

    @property
    def colour(self) -> RGBA | None:
        """`bg` when it is a colour (padding, rotation corners, borders, flattening)."""
        return self.background if isinstance(self.background, tuple) else None


@dataclass(frozen=True)
class Output:
    """How the one result is encoded and where it comes from; the last step that sets a field wins."""

    format: str | None = None
    quality: int | None = None
    progressive: bool = False
    lossless: bool = False
    #: True, False, or `COPYRIGHT_ONLY` (`md-copyright`)
    metadata: bool | str = False
    colour_profile: bool = False
    default_image: str | None = None
    original: bool = False
    #: `pg-N`, 1-based
    page: int | None = None


DEFAULT_STEP = Step()
DEFAULT_OUTPUT = Output()


@dataclass(frozen=True)
class Transformation:
    steps: tuple[Step, ...] = ()
    output: Output = DEFAULT_OUTPUT

    @property
    def serves_original(self) -> bool:
        """`orig-true`: the original bytes, untouched; every other parameter is ignored."""
        return self.output.original

    @property
    def output_format(self) -> str | None:
        return self.output.format

    @property
    def default_image(self) -> str | None:
        return self.output.default_image

    def canonical(self) -> str:
        """The cache-key form; see the module docstring."""
        return self._canonical_text

    @functools.cached_property
    def client_hints(self) -> bool:
        """Whether a step takes a value from a client hint (`w-auto`, `dpr-auto`)."""
        return any(AUTO in (step.width, step.dpr) for step in self.steps)

    @functools.cached_property  # parsed transformations are memoised, so this runs once per text
    def _canonical_text(self) -> str:
        if self.serves_original:
            return "orig-true"
        steps = [_canonical(step, DEFAULT_STEP) for step in self.steps] or [""]
        if self.steps and self.steps[-1].branches is not None:  # an if block is a step of its own
            steps.append("")
        steps[-1] = ",".join(filter(None, (steps[-1], _canonical(self.output, DEFAULT_OUTPUT))))
        return ":".join(filter(None, steps))


# --- value parsers: text → value, ValueError with the reason otherwise ---------------------------

def _dimension(text: str) -> float | Expression:
    if is_expression(text):
        return _expression(text)
    value = _decimal(text)
    if value <= 0 or value > MAX_PIXELS:
        raise ValueError(f"must be a positive number of pixels up to {MAX_PIXELS}, or a fraction below 1")
    return value if value < 1 else float(max(1, round(value)))


def _number_range(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = _decimal(text)
        if not low <= value <= high:
            raise ValueError(f"must be a number from {low:g} to {high:g}")
        return value
    return parse


def _or_auto(parse_value: Callable[[str], float]) -> Callable[[str], float | str]:
    return lambda text: AUTO if text == AUTO else parse_value(text)


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not _INTEGER.fullmatch(text) or not low <= int(text) <= high:
            raise ValueError(f"must be an integer from {low} to {high}")
        return int(text)
    return parse


def _choice(choices: tuple[str, ...], synonyms: Mapping[str, str] | None = None) -> Callable[[str], str]:
    def parse(text: str) -> str:
        text = (synonyms or {}).get(text, text)
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return text
    return parse


def _format(text: str) -> str:
    if text in UNSUPPORTED_FORMATS:
        raise ValueError(f"not supported ({UNSUPPORTED_FORMATS[text]})")
    return _choice(FORMATS, FORMAT_SYNONYMS)(text)


def _focus(text: str) -> str:
    if text == "custom":
        raise ValueError("not supported (the focus area ImageKit keeps with a file in its media library)")
    if text not in FOCUS and text.isalpha():
        raise ValueError(f"must be one of {', '.join(FOCUS)}: ImageKit's object names (fo-person, fo-car…) are "
                         "not supported (object-aware AI cropping)")
    focus = _choice(FOCUS)(text)
    if focus == "face":
        _needs_faces()
    return focus


class NeedsExtra(ValueError):
    """A value the node reads only with an extra installed."""


def _needs_faces() -> None:
    if (reason := faces.missing()) is not None:
        raise NeedsExtra(reason)


def _on_faces(parse_value: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = parse_value(text)
        _needs_faces()
        return value
    return parse


def _boolean(text: str) -> bool:
    # SDKs write Python's True as `True`
    if text.lower() not in ("true", "false"):
        raise ValueError("must be true or false")
    return text.lower() == "true"


#: `md-copyright`, not in ImageKit's grammar: only the copyright-related metadata is kept (what Cloudinary's
#: `fl_keep_attribution` keeps: "the copyright related fields when stripping meta-data")
COPYRIGHT_ONLY = "copyright"


def _metadata(text: str) -> bool | str:
    if text.lower() == COPYRIGHT_ONLY:
        return COPYRIGHT_ONLY
    try:
        return _boolean(text)
    except ValueError:
        raise ValueError(f"must be true, false or {COPYRIGHT_ONLY}") from None


def _write_metadata(value: bool | str) -> str:
    return value if isinstance(value, str) else _write_boolean(value)


def _flag(text: str) -> bool:
    if text not in ("", "true"):
        raise ValueError("takes no value")
    return True


def _optional(default: int, parse_value: Callable[[str], int]) -> Callable[[str], int]:
    """A parameter that may stand alone (`e-sharpen`, `t-true`) and then means `default`."""
    def parse(text: str) -> int:
        return default if text in ("", "true") else parse_value(text)
    return parse


def _trim(text: str) -> int | None:
    """`t-true` (the default threshold), `t-1`…`t-99`, or `t-false` (no trim, as without `t`: the
    SDK writes it for a layer, which ImageKit trims by default and the node does not)."""
    return None if text == "false" else _optional(DEFAULT_TRIM, _int_range(1, 99))(text)


def _aspect_ratio(text: str) -> tuple[float, float] | Expression:
    """`4-3`, `4_3` (and `4:3`, see `_split_steps`), one decimal ratio, `1.5` (= 1.5-1), or an
    expression (`iar_div_2`)."""
    if any(c.isalpha() for c in text):
        return _expression(text)
    width, separator, height = text.replace("_", "-").partition("-")
    try:
        ratio = _decimal(width), _decimal(height) if separator else 1.0
    except ValueError:
        raise ValueError("must be <width>-<height>, <width>_<height> or a ratio, e.g. ar-4-3 or ar-1.5") from None
    if min(ratio) <= 0 or max(ratio) > MAX_PIXELS:
        raise ValueError(f"both sides must be positive and at most {MAX_PIXELS}")
    return ratio


def _rotation(text: str) -> float:
    """Degrees clockwise, decimals allowed, any number of them as ImageKit takes (`rt-450` is a quarter
    turn): `N90` (counter-clockwise), or `-90` as the SDK writes `rotation: -90`, is 270; `auto` (EXIF) is
    always done."""
    if text == "auto":
        return 0
    counter_clockwise = text[:1] in ("N", "-")
    degrees = _decimal(text[1:] if counter_clockwise else text) % 360
    return (-degrees if counter_clockwise else degrees) % 360


def _radius(text: str) -> int | str | tuple[int, int, int, int]:
    """`N`, `max`, or per corner `top-left_top-right_bottom-right_bottom-left` (0 leaves one square)."""
    if text == "max":
        return "max"
    corners = text.split("_")
    if len(corners) == 4:
        radii = tuple(_int_range(0, MAX_PIXELS)(corner) for corner in corners)
        if not any(radii):
            raise ValueError("at least one corner needs a radius above 0")
        return radii if len(set(radii)) > 1 else radii[0]  # type: ignore[return-value]
    if len(corners) != 1:
        raise ValueError("must be N, max or four radii a_b_c_d (top-left, top-right, bottom-right, bottom-left)")
    return _int_range(1, MAX_PIXELS)(text)


def _write_radius(radius: int | str | tuple[int, ...]) -> str:
    return "_".join(map(str, radius)) if isinstance(radius, tuple) else str(radius)


def _background(text: str) -> RGBA | str | Blurred:
    """A colour, `dominant`, `dominant_border`, or `blurred[_<radius>[_<brightness>]]` (brightness N-prefixed
    below 0)."""
    if text in DOMINANT:
        return text
    if text == "blurred" or text.startswith("blurred_"):
        parts = text.split("_")[1:]
        if len(parts) > 2:
            raise ValueError("must be blurred[_<radius 0-100>[_<brightness, N for negative, up to 255>]]")
        # ImageKit's blur intensity is `auto` or 0–100 (0: the image scaled to cover, hardly blurred)
        radius = _int_range(0, 100)(parts[0]) if parts and parts[0] != "auto" else DEFAULT_BLURRED[0]
        brightness = _signed(parts[1], 255) if len(parts) > 1 else DEFAULT_BLURRED[1]
        return Blurred(radius, int(brightness))
    if text.startswith(("gradient_dominant", "genfill")):
        raise ValueError("not supported (gradient and generative-fill backgrounds)")
    return parse_colour(text)


def _write_background(background: RGBA | str | Blurred) -> str:
    if isinstance(background, Blurred):
        return "blurred" if (background.radius, background.brightness) == DEFAULT_BLURRED else \
            f"blurred_{background.radius}_{_write_signed(background.brightness)}"
    return background if isinstance(background, str) else write_colour(background)


def _signed(text: str, limit: float) -> float:
    """A number with `N` for minus (`N15` = −15), within ±`limit`."""
    value = _number_range(0, limit)(text.removeprefix("N"))
    return -value if text.startswith("N") else value


def _write_signed(value: float) -> str:
    return ("N" if value < 0 else "") + _write_number(abs(value))


def _signed_int(low: int, high: int) -> Callable[[str], int]:
    """An integer from `low` to `high`, `N` for minus (`N15` = −15)."""
    def parse(text: str) -> int:
        digits = text.removeprefix("N")
        value = (int(digits) if digits == text else -int(digits)) if _INTEGER.fullmatch(digits) else None
        if value is None or not low <= value <= high:
            raise ValueError(f"must be an integer from {_write_signed(low)} to {high} (N for minus)")
        return value
    return parse


def _parts(text: str, keys: tuple[str, ...], effect: str) -> dict[str, str]:
    """`bl-15_st-40` → {bl: 15, st: 40}: the `<key>-<value>` parts of an effect, `_`-separated. A piece
    that is no `<key>-` continues the value before it, which may hold a `_` itself: ImageKit's
    `ld-top_right` (a corner) and `sp-ih_div_2` (an expression)."""
    parts: dict[str, str] = {}
    last = None
    for part in filter(None, text.split("_")):
        key, dash, value = part.partition("-")
        if dash and key in keys and key not in parts:
            parts[key], last = value, key
        elif not dash and last is not None:
            parts[last] += f"_{part}"
        else:
            raise ValueError(f"{effect} takes {', '.join(f'{k}-<value>' for k in keys)}, joined by _")
    return parts


def _shadow(text: str) -> tuple[float, float, float, float]:
    parts = _parts("" if text == "true" else text, tuple(SHADOW_DEFAULTS), "e-shadow")
    values = []
    for key, default in SHADOW_DEFAULTS.items():
        low, high = SHADOW_RANGES[key]
        values.append(_signed(parts[key], high) if key in parts and low < 0 else
                      _number_range(low, high)(parts[key]) if key in parts else default)
    return tuple(values)  # type: ignore[return-value]


def _write_shadow(shadow: tuple[float, ...]) -> str:
    return "_".join(f"{key}-{_write_signed(value)}" for key, value in zip(SHADOW_DEFAULTS, shadow))


def _gradient(text: str) -> tuple[float, RGBA, RGBA, float | Expression]:
    parts = _parts("" if text == "true" else text, ("ld", "from", "to", "sp"), "e-gradient")
    direction, start, end, stop = (parts.get(key, default) for key, default in
                                   zip(("ld", "from", "to", "sp"), GRADIENT_DEFAULTS))
    try:
        degrees = GRADIENT_DIRECTIONS[direction] if direction in GRADIENT_DIRECTIONS else \
            _number_range(0, 359)(direction)
    except ValueError:
        raise ValueError(f"ld: expected degrees (0-359) or a side: {', '.join(GRADIENT_DIRECTIONS)}") from None
    # the stop may be an expression (`sp-ih_div_2`, as ImageKit's expression docs list it), like a border's width
    stop_point = or_expression(_number_range(0.01, MAX_PIXELS))(stop)
    return float(degrees), parse_colour(start), parse_colour(end), stop_point


def _write_gradient(gradient: tuple[float, RGBA, RGBA, float | Expression]) -> str:
    degrees, start, end, stop = gradient
    return f"ld-{_write_number(degrees)}_from-{write_colour(start)}_to-{write_colour(end)}_sp-{_write_dimension(stop)}"


def _border(text: str) -> tuple[int | Expression, RGBA]:
    """`<width>_<colour>`; the width may be an expression (`b-cw_mul_0.05_yellow`)."""
    width, _, colour = text.rpartition("_") if "_" in text else (text, "", "")
    return or_expression(_int_range(1, MAX_BORDER))(width), parse_colour(colour)


def _colorize(text: str) -> tuple[int, RGBA]:
    """`co-<colour>_in-<intensity>`, either part left out for its default."""
    parts = COLORIZE_DEFAULTS | _parts("" if text == "true" else text, tuple(COLORIZE_DEFAULTS), "e-colorize")
    return _int_range(0, 100)(parts["in"]), parse_colour(parts["co"])


def _unsharp_mask(text: str) -> tuple[float, float, float, float]:
    if text in ("", "true"):
        return DEFAULT_UNSHARP_MASK
    parts = text.split("-")
    if len(parts) != 4:
        raise ValueError("must be e-usm-<radius>-<sigma>-<amount>-<threshold>")
    radius, sigma, amount, threshold = (_decimal(part) for part in parts)
    if not (radius <= 100 and 0 < sigma <= 100 and amount <= 100 and threshold <= 1):
        raise ValueError("radius up to 100, sigma in (0, 100], amount up to 100, threshold up to 1")
    return radius, sigma, amount, threshold


def _region(text: str) -> tuple[int, int, int | None, int | None]:
    """`x_y`, `x_y_w_h`: a rectangle's top-left corner and size in pixels (without a size: to the edges)."""
    parts = text.split("_")
    if len(parts) not in (2, 4) or not all(_INTEGER.fullmatch(part) for part in parts):
        raise ValueError("must be <x>_<y> or <x>_<y>_<width>_<height>, in whole pixels")
    x, y, *size = (int(part) for part in parts)
    if max(x, y, *size) > MAX_PIXELS or 0 in size:
        raise ValueError(f"x and y up to {MAX_PIXELS}, width and height from 1 to {MAX_PIXELS}")
    width, height = size or (None, None)
    return x, y, width, height


def _colour_replacement(text: str) -> ColourReplacement:
    """`<to>`, `<to>_<tolerance>`, `<to>_<tolerance>_<from>`: opaque colours, a tolerance from 0 to 100."""
    parts = text.split("_")
    if not 1 <= len(parts) <= 3:
        raise ValueError("must be cr-<to colour>[_<tolerance>[_<from colour>]]")
    target, source = parse_colour(parts[0]), parse_colour(parts[2]) if len(parts) == 3 else None
    if target[3] != 255 or (source is not None and source[3] != 255):
        raise ValueError("the colours must be opaque (RRGGBB or a name)")
    tolerance = _int_range(0, 100)(parts[1]) if len(parts) > 1 else DEFAULT_REPLACE_TOLERANCE
    return ColourReplacement(target, tolerance, source)


def _write_colour_replacement(replacement: ColourReplacement) -> str:
    source = [write_colour(replacement.source)] if replacement.source is not None else []
    return "_".join([write_colour(replacement.target), str(replacement.tolerance), *source])


def _distort(text: str) -> Distortion | None:
    """`p-x1_y1_x2_y2_x3_y3_x4_y4` (integers, `N` for minus) or `a-<degrees>` (−360–360; 0 bends nothing)."""
    kind, _, values = text.partition("-")
    if kind == "a":
        degrees = _signed_int(-360, 360)(values)
        return Distortion("a", (degrees,)) if degrees else None
    corners = values.split("_")
    if kind != "p" or len(corners) != 8:
        raise ValueError("must be p-x1_y1_x2_y2_x3_y3_x4_y4 (the corners clockwise from the top left) or a-<degrees>")
    distortion = Distortion("p", tuple(_signed_int(-MAX_PIXELS, MAX_PIXELS)(value) for value in corners))
    if not _convex_clockwise(distortion.values):
        raise ValueError("the corners must make a convex shape, clockwise from the top left")
    return distortion


def _convex_clockwise(values: tuple[int, ...]) -> bool:
    """Whether the four points turn the same way at each corner, clockwise on the screen (y down), and start
    at the top left: each edge's cross product with the next is positive (three in a line: not a shape)."""
    points = list(zip(values[::2], values[1::2]))
    turns = [(b[0] - a[0]) * (c[1] - b[1]) - (b[1] - a[1]) * (c[0] - b[0])
             for a, b, c in zip(points, points[1:] + points[:1], points[2:] + points[:2])]
    (x1, y1), (x2, y2), (x3, y3), (x4, y4) = points
    # ImageKit's editor holds each corner to its side of the others the same way
    sides = x1 < x2 and x1 < x3 and y1 < y3 and y1 < y4 and x2 > x4 and y2 < y3 and y2 < y4 and x3 > x4
    return all(turn > 0 for turn in turns) and sides


def _write_distort(distortion: Distortion) -> str:
    return f"{distortion.kind}-" + "_".join(_write_signed(value) for value in distortion.values)


def write_region(region: tuple[int, int, int | None, int | None]) -> str:
    return "_".join(str(value) for value in region if value is not None)


def _image_path(text: str) -> str:
    """`folder@@default.jpg` → `folder/default.jpg`."""
    path = text.replace("@@", "/")
    segments = [segment for segment in path.split("/") if segment]
    if not segments or dot_segment(path) or any(ord(c) < 32 for c in text):
        raise ValueError("must be a path of the default image, with / written as @@")
    return "/".join(segments)


# --- value writers: value → canonical text ("" for a flag written as its key alone) ---------------

def _write_dimension(value: float | Expression | str) -> str:
    if value == AUTO or isinstance(value, Expression):
        return str(value)
    return _write_number(value)


def _write_pair(pair: tuple[float, ...]) -> str:
    return "-".join(_write_number(v) for v in pair)


def _write_boolean(value: bool) -> str:
    return "true" if value else "false"


def _write_default_as_flag(default: int, flag: str) -> Callable[[int], str]:
    return lambda value: flag if value == default else str(value)


@dataclass(frozen=True)
class Param:
    key: str
    field: str
    parse: Callable[[str], Any]
    write: Callable[[Any], str] = str
    #: sets a field of `Output` (one value for the whole result) rather than of the `Step`
    output: bool = False


PARAMS: dict[str, Param] = {p.key: p for p in (
    Param("w", "width", _or_auto(_dimension), _write_dimension),
    Param("wf", "width_fallback", _int_range(1, MAX_PIXELS)),
    Param("h", "height", _dimension, _write_dimension),
    Param("ar", "aspect_ratio", _aspect_ratio, lambda ratio: _write_dimension(ratio) if isinstance(
        ratio, Expression) else _write_pair(ratio)),
    Param("dpr", "dpr", _or_auto(_number_range(0.1, 5)), _write_dimension),
    Param("c", "crop", _choice(CROPS)),
    Param("cm", "crop_mode", _choice(CROP_MODES)),
    Param("fo", "focus", _focus),
    Param("fof", "focus_fallback", _choice(FACE_FALLBACKS)),
    Param("ffr", "frames_faces", _boolean, _write_boolean),
    Param("x", "x", or_expression(_int_range(0, MAX_PIXELS)), str),
    Param("y", "y", or_expression(_int_range(0, MAX_PIXELS)), str),
    Param("xc", "x_center", or_expression(_int_range(0, MAX_PIXELS)), str),
    Param("yc", "y_center", or_expression(_int_range(0, MAX_PIXELS)), str),
    Param("z", "zoom", _number_range(0.1, 10), _write_number),
    Param("t", "trim", _trim, _write_default_as_flag(DEFAULT_TRIM, "true")),
    Param("rt", "rotation", _rotation, _write_number),
    Param("fl", "flip", _choice(FLIPS, FLIP_SYNONYMS)),
    Param("e-distort", "distort", _distort, _write_distort),
    Param("bl", "blur", _number_range(0.1, 100), _write_number),
    Param("e-grayscale", "grayscale", _flag, lambda _: ""),
    Param("e-sharpen", "sharpen", _optional(DEFAULT_SHARPEN, _int_range(1, 100)),
          _write_default_as_flag(DEFAULT_SHARPEN, "")),
    Param("e-contrast", "contrast", _optional(100, _int_range(0, 100)), _write_default_as_flag(100, "")),
    Param("e-usm", "unsharp_mask", _unsharp_mask, _write_pair),
    Param("e-brightness", "brightness", _signed_int(-99, 100), _write_signed),
    Param("e-saturation", "saturation", _signed_int(-100, 100), _write_signed),
    Param("e-sepia", "sepia", _int_range(1, 100)),
    Param("e-negate", "negate", _flag, lambda _: ""),
    Param("e-vibrance", "vibrance", _signed_int(-100, 100), _write_signed),
    Param("e-hue", "hue", _signed_int(-100, 100), _write_signed),
    Param("e-red", "red", _signed_int(-100, 100), _write_signed),
    Param("e-green", "green", _signed_int(-100, 100), _write_signed),
    Param("e-blue", "blue", _signed_int(-100, 100), _write_signed),
    Param("e-blackwhite", "blackwhite", _int_range(0, 100)),
    Param("e-autocolor", "auto_colour", _optional(100, _int_range(0, 100)), _write_default_as_flag(100, "")),
    Param("e-autobrightness", "auto_brightness", _optional(100, _int_range(0, 100)), _write_default_as_flag(100, "")),
    Param("e-pixelate", "pixelate", _int_range(1, 200)),
    Param("e-sigmoidcontrast", "sigmoid_contrast", _signed_int(-100, 100), _write_signed),
    Param("e-linearcontrast", "linear_contrast", _int_range(1, 200)),
    Param("e-gamma", "gamma", _signed_int(-50, 150), _write_signed),
    Param("e-brightnesshsb", "brightness_hsb", _signed_int(-99, 100), _write_signed),
    Param("e-colorize", "colour_blend", _colorize, lambda blend: f"co-{write_colour(blend[1])}_in-{blend[0]}"),
    Param("e-vignette", "vignette", _int_range(0, 100)),
    Param("cr", "colour_replacement", _colour_replacement, _write_colour_replacement),
    Param("e-opacitythreshold", "opacity_threshold", _int_range(0, 100)),
    Param("e-region", "region", _region, write_region),
    Param("e-blurfaces", "blur_faces", _on_faces(_number_range(0.1, 100)), _write_number),
    Param("e-pixelatefaces", "pixelate_faces", _on_faces(_int_range(1, 200))),
    Param("r", "radius", _radius, _write_radius),
    Param("bg", "background", _background, _write_background),
    Param("b", "border", _border, lambda border: f"{border[0]}_{write_colour(border[1])}"),
    Param("o", "opacity", _int_range(0, 100)),
    Param("f", "format", _format, output=True),
    Param("q", "quality", _int_range(1, 100), output=True),
    Param("pr", "progressive", _boolean, _write_boolean, output=True),
    Param("lo", "lossless", _boolean, _write_boolean, output=True),
    Param("md", "metadata", _metadata, _write_metadata, output=True),
    Param("cp", "colour_profile", _boolean, _write_boolean, output=True),
    Param("di", "default_image", _image_path, lambda path: path.replace("/", "@@"), output=True),
    Param("orig", "original", _boolean, _write_boolean, output=True),
    Param("e-shadow", "shadow", _shadow, _write_shadow),
    Param("e-gradient", "gradient", _gradient, _write_gradient),
    Param("pg", "page", _int_range(1, MAX_PAGE), output=True),
)}
#: keys ImageKit (and its SDK) has that the node does not serve, and why: each is a 400 "not supported"
UNSUPPORTED: dict[str, str] = {
    **dict.fromkeys(("vc", "ac", "so", "eo", "du", "sr"), "video"),
    **dict.fromkeys(("e-bgremove", "e-removedotbg", "e-changebg", "e-edit", "e-dropshadow", "e-retouch",
                     "e-upscale", "e-genvar", "e-genfill"), "AI generation and removal"),
    "dn": "density (vector sources are not read)",
}
NAMED_KEY = "n"
_BY_FIELD = {p.field: p for p in PARAMS.values()}
assert {f.name for f in fields(Step)} | {f.name for f in fields(Output)} == set(_BY_FIELD) | {"layers", "branches"}


def _split(param: str) -> tuple[str, str]:
    """`w-300` → (`w`, `300`); `e-sharpen-10` → (`e-sharpen`, `10`); a flag has value ``."""
    head, _, rest = param.partition("-")
    if head == "e":
        name, _, value = rest.partition("-")
        return f"e-{name}", value
    return head, rest


@dataclass(frozen=True)
class _ParsedStep:
    steps: tuple[Step, ...]
    output: dict[str, Any]


LAYER_END = "l-end"
_DELIMITERS = re.compile(r"([,:])")


def _starts_layer(param: str) -> bool:
    return param.startswith("l-") and param != LAYER_END


def _nesting(param: str) -> int:
    """How a parameter changes the depth of layers: +1 opens one, -1 (`l-end`) closes one. Within a
    layer a `,`-separated piece may hold its chain's `:` (`w-100:l-image`, `l-end:rt-90`, as ImageKit's
    docs nest a layer in a later step of a layer): each part of it counts."""
    return sum(_starts_layer(part) - (part == LAYER_END) for part in param.split(":"))


#: `ar-4:3` (and `ar-16.5:9`), a parameter of its own: not followed by more of a number
_ASPECT_RATIO_WITH_COLON = re.compile(r"(^|[,:])ar-([0-9]+(?:\.[0-9]+)?):([0-9]+(?:\.[0-9]+)?)(?=[,:]|$)")


def _opens_if(param: str) -> bool:
    return param.startswith("if-") and param not in (IF_ELSE, IF_END)


def parse_condition(text: str) -> tuple[tuple[tuple[str, str, float, str], ...], ...]:
    """`ar_gt_1_and_w_lt_400_or_iar_lt_4-3` → (((ar, gt, 1, "1"), (w, lt, 400, "400")), ((iar, lt, 4/3, "4-3"),))."""
    tokens, alternatives, clauses = text.split("_"), [], []
    while True:
        prop, op, value = (tokens[:3] + ["", "", ""])[:3]
        if prop not in CONDITION_PROPERTIES or op not in CONDITION_OPERATORS or not value:
            raise ValueError(f"must be if-<{'|'.join(CONDITION_PROPERTIES)}>_<{'|'.join(CONDITION_OPERATORS)}>_"
                             "<number, or a ratio 4-3>, joined by _and_ or _or_")
        numerator, dash, denominator = value.partition("-")
        parts = (_decimal(numerator), _decimal(denominator) if dash else 1.0)
        if parts[1] <= 0:
            raise ValueError("a ratio's second number must be above 0")
        if prop == FACE_COUNT:
            _needs_faces()
        clauses.append((prop, op, parts[0] / parts[1], "-".join(map(_write_number, parts[:1 + bool(dash)]))))
        tokens = tokens[3:]
        if not tokens:
            return (*alternatives, tuple(clauses))
        joiner, tokens = tokens[0], tokens[1:]
        if joiner == "or":
            alternatives, clauses = [*alternatives, tuple(clauses)], []
        elif joiner != "and":
            raise ValueError(f"conditions are joined by _and_ or _or_, not _{joiner}_")


def _conditional(text: str) -> Step:
    """A step that is an if block: `if-<condition>,<steps>[,if-else,<steps>],if-end` (ImageKit: "A step
    containing an if block cannot contain any other comma-separated transform")."""
    params = text.split(",")
    first = params[0]
    if not _opens_if(first) or params[-1] != IF_END or params.count(IF_END) != 1:
        raise InvalidTransformation(first, "an if block is a step of its own: if-<condition>,…[,if-else,…],if-end")
    try:
        condition = parse_condition(first.removeprefix("if-"))
    except ValueError as exc:
        raise InvalidTransformation(first, str(exc)) from None
    body = params[1:-1]
    if body.count(IF_ELSE) > 1:
        raise InvalidTransformation(IF_ELSE, "one if-else per if block")
    split = body.index(IF_ELSE) if IF_ELSE in body else len(body)
    then_steps, else_steps = (_branch(",".join(part)) for part in (body[:split], body[split + 1:]))
    return replace(DEFAULT_STEP, branches=Conditional(condition, then_steps, else_steps))


def _branch(text: str) -> tuple[Step, ...]:
    steps = [step for step_text in _split_steps(text)
             for step in _parse_step(step_text, {}, False, in_branch=True).steps]
    return tuple(step for step in steps if step != DEFAULT_STEP)


def _split_steps(text: str) -> list[str]:
    """`a,b:c` → [`a,b`, `c`]; a layer's own transformation may chain steps with `:` (as the SDK
    writes it), so a `:` between `l-<type>` and `l-end` stays inside the step. `ar-4:3`, which the
    SDK writes for an `aspect_ratio` given as "4:3", is `ar-4-3`: a step cannot start with a number."""
    steps, current, depth, conditional = [], "", 0, 0
    for piece in _DELIMITERS.split(_ASPECT_RATIO_WITH_COLON.sub(r"\1ar-\2-\3", text)):
        if piece == ":" and not depth and not conditional:  # an if block's branches may chain steps too
            steps.append(current)
            current = ""
            continue
        current += piece
        depth += _nesting(piece)
        conditional += _opens_if(piece) - (piece == IF_END)
        if conditional > 1:
            raise InvalidTransformation(piece, "if blocks do not nest")
        if conditional < 0:
            raise InvalidTransformation(piece, "if-end without an if")
        if depth > layer_params.MAX_DEPTH:
            raise InvalidTransformation(piece, f"layers nest {layer_params.MAX_DEPTH} deep at most")
        if depth < 0:
            raise InvalidTransformation(piece, "l-end without a layer")
    return [*steps, current]


def _parse_step(text: str, named: Mapping[str, str], named_only: bool, in_layer: bool = False,
                in_branch: bool = False) -> _ParsedStep:
    if any(_opens_if(piece) or piece in (IF_ELSE, IF_END) for piece in _DELIMITERS.split(text)):
        if in_layer or in_branch or named_only:
            raise InvalidTransformation(text.partition(",")[0], "an if block is not allowed here (not within a "
                                        "layer or another if block, nor on an endpoint of named transformations)")
        return _ParsedStep((_conditional(text),), {})
    step_values: dict[str, Any] = {}
    output_values: dict[str, Any] = {}
    layers: list[Layer] = []
    base = _ParsedStep((DEFAULT_STEP,), {})
    params = iter(filter(None, text.split(",")))
    for param in params:
        key, value = _split(param)
        if key == "c" and value in LEGACY_CROP_MODES:
            key = "cm"
        if named_only and key != NAMED_KEY:
            raise InvalidTransformation(param, "this endpoint accepts only named transformations (n-<name>)")
        if _starts_layer(param) and in_branch:
            raise InvalidTransformation(param, "layers are not supported within an if block")
        if _starts_layer(param):
            body, depth = [], 0
            for inner in params:  # up to the l-end that closes this layer, past those of layers in it
                if inner == LAYER_END and not depth:
                    break
                depth += _nesting(inner)
                body.append(inner)
            else:
                raise InvalidTransformation(param, "no l-end closes this layer")
            layers.append(_parse_layer(param, ",".join(body)))
            continue
        if key == NAMED_KEY:
            if base.steps != (DEFAULT_STEP,) or base.output or in_layer or in_branch:
                raise InvalidTransformation(param, "one named transformation per step, none in a layer or an if block")
            base = _expand_named(param, value, named)
            continue
        spec = PARAMS.get(key)
        if spec is None:
            if key in UNSUPPORTED:
                raise InvalidTransformation(param, f"not supported ({UNSUPPORTED[key]})")
            if param == "tr":  # `?tr=tr:w-300`: the prefix of the path form, copied into the query
                raise InvalidTransformation(param, "unknown parameter: `tr:` starts the path form only "
                                                   "(/tr:w-300/a.jpg); ?tr= takes the parameters alone (?tr=w-300)")
            raise InvalidTransformation(param, "unknown parameter")
        try:
            parsed = spec.parse(value)
        except ValueError as exc:
            raise InvalidTransformation(param, str(exc)) from None
        if spec.output and in_branch:
            raise InvalidTransformation(param, "an output parameter cannot depend on a condition: put it outside "
                                               "the if block")
        if spec.output and in_layer:
            if key != "q":
                raise InvalidTransformation(param, "an output parameter has no effect in a layer")
            continue  # ImageKit lists `q` for image layers, whose pixels the base's encode makes: checked, dropped
        if parsed == AUTO and in_branch:
            raise InvalidTransformation(param, "client hints are not supported within an if block")
        if parsed == AUTO and in_layer and key in ("w", "dpr"):  # client hints size the image asked for
            raise InvalidTransformation(param, "a layer's size cannot come from client hints")
        if not in_layer and _reads_base(parsed):
            raise InvalidTransformation(param, "bw, bh and bar are the size of a layer's base: only within a layer")
        (output_values if spec.output else step_values)[spec.field] = parsed
    *earlier, last = base.steps
    step = _validated(replace(last, **step_values, layers=last.layers + tuple(layers)))
    return _ParsedStep((*earlier, step), {**base.output, **output_values})


def _parse_layer(start: str, body: str) -> Layer:
    """`l-image` / `l-text` and the parameters up to its `l-end` → a `Layer`."""
    kind = start.removeprefix("l-")
    if kind not in layer_params.KINDS:
        raise InvalidTransformation(start, "not supported: layers are l-image or l-text")
    source: str | None = None
    source_key = None  # `i` or `ie`: with both, ImageKit ignores `i`
    placement: dict[str, Any] = {}
    text: dict[str, Any] = {}
    alpha = None
    page = None
    named_colour = False  # the block's `bg` is a colour name (`bg-blue`): ImageKit then ignores `al`
    own_steps = []
    for step_text in _split_steps(body):  # a layer in it may chain steps of its own
        rest, depth = [], 0
        for param in filter(None, step_text.split(",")):
            if not depth and kind == "text" and _starts_layer(param):  # it had been parsed, counted and not drawn
                raise InvalidTransformation(param, "a text layer cannot hold layers (an image layer or a colour "
                                                   "block can)")
            if depth or _starts_layer(param):  # a layer in this one: its step's, parsed with it
                depth += _nesting(param)
                rest.append(param)
                continue
            key, value = _split(param)
            try:
                if key in layer_params.INPUT_KEYS:
                    if source_key == key:
                        raise ValueError("one i- or ie- per layer")
                    if source_key != "ie":  # "In case both i and ie are present, i is ignored" (ImageKit)
                        source, source_key = layer_params.read_input(key, value, kind), key
                elif param in layer_params.UNSUPPORTED or key in layer_params.UNSUPPORTED:
                    raise ValueError(layer_params.UNSUPPORTED.get(param) or layer_params.UNSUPPORTED[key])
                elif key in layer_params.PLACEMENT_PARAMS:
                    name, parse, _ = layer_params.PLACEMENT_PARAMS[key]
                    placement[name] = parse(value)
                elif kind == "text" and key in layer_params.TEXT_PARAMS:
                    name, parse, _ = layer_params.TEXT_PARAMS[key]
                    text[name] = parse(value)
                elif kind == "text" and key in layer_params.TEXT_SHARED:
                    text[layer_params.TEXT_SHARED[key]] = PARAMS[key].parse(value)
                elif kind == "text":
                    raise ValueError("not a parameter of a text layer")
                elif key == "al" and source == layer_params.CANVAS:
                    alpha = layer_params.TEXT_PARAMS["al"][1](value)
                elif key == "pg" and source not in (None, layer_params.CANVAS):
                    # an image layer's page or frame (ImageKit lists `pg` for layers), not the output's
                    page = PARAMS["pg"].parse(value)
                else:
                    if key == "bg" and not own_steps:  # the first step's: the block's colour
                        named_colour = value.lower() in CSS_NAMES
                    rest.append(param)
            except ValueError as exc:
                raise InvalidTransformation(param, str(exc)) from None
        if rest:
            own_steps.extend(_parse_step(",".join(rest), {}, False, in_layer=True).steps)
    if source is None:
        raise InvalidTransformation(start, "needs i-<input> or ie-<base64 input>")
    if source == layer_params.CANVAS and not (own_steps and (isinstance(own_steps[0].background, tuple) or (
            own_steps[0].background is None and own_steps[0].gradient is not None))):
        # a colour block, or ImageKit's gradient block (`i-ik_canvas,e-gradient`: the gradient alone)
        raise InvalidTransformation(start, "i-ik_canvas needs bg-<colour> (a colour, not dominant or blurred) "
                                           "or e-gradient")
    if source == layer_params.CANVAS and named_colour:
        # ImageKit: "If bg is set to a standard color name (e.g. blue), then the al value is ignored"
        alpha = None
    return Layer(kind, source, Placement(**placement), tuple(own_steps),
                 TextStyle(**text) if kind == "text" else None, alpha, page)


def _write_layer(layer: Layer) -> str:
    parts = [f"l-{layer.kind}", layer_params.write_input(layer),
             *layer_params.write_fields(layer.placement, layer_params.PLACEMENT_PARAMS)]
    if layer.text is not None:
        parts += layer_params.write_fields(layer.text, layer_params.TEXT_PARAMS)
        parts += [f"{key}-{PARAMS[key].write(getattr(layer.text, name))}"
                  for key, name in sorted(layer_params.TEXT_SHARED.items())
                  if getattr(layer.text, name) != getattr(layer_params.TextStyle(), name)]
    if layer.alpha is not None:
        parts.append(f"al-{layer.alpha}")
    if layer.page is not None:
        parts.append(f"pg-{layer.page}")
    parts += [":".join(_canonical(step, DEFAULT_STEP) for step in layer.steps)]
    return ",".join(filter(None, (*parts, LAYER_END)))


def _expand_named(param: str, name: str, named: Mapping[str, str]) -> _ParsedStep:
    if name not in named:
        raise InvalidTransformation(param, "unknown named transformation")
    # named definitions are validated at startup and cannot name other named transformations
    expanded = parse_transformation(named[name])
    changed = {f.name: getattr(expanded.output, f.name) for f in fields(Output)
               if getattr(expanded.output, f.name) != getattr(DEFAULT_OUTPUT, f.name)}
    return _ParsedStep(expanded.steps or (DEFAULT_STEP,), changed)


def _validated(step: Step) -> Step:
    """Rules between the parameters of one step; `ar` is ignored (dropped) when w and h are both given."""
    if step.dpr != 1 and step.width is None and step.height is None:
        raise InvalidTransformation(f"dpr-{_write_dimension(step.dpr)}", "needs w or h")
    if step.width_fallback is not None and step.width != AUTO:
        raise InvalidTransformation(f"wf-{step.width_fallback}", "needs w-auto")
    if step.focus_fallback != "auto" and step.focus != "face":
        raise InvalidTransformation(f"fof-{step.focus_fallback}", "needs fo-face")
    if not step.frames_faces and step.focus != "face":
        raise InvalidTransformation("ffr-false", "needs fo-face")
    if step.region is not None and step.blur is None and step.pixelate is None:
        raise InvalidTransformation(f"e-region-{write_region(step.region)}", "needs bl or e-pixelate")
    for name, key in (("x", "x"), ("y", "y"), ("x_center", "xc"), ("y_center", "yc")):
        value = getattr(step, name)
        if value is not None and not step.extracts:
            raise InvalidTransformation(f"{key}-{value}", "needs cm-extract or cm-pad_extract")
    if (step.x is not None or step.y is not None) and (step.x_center is not None or step.y_center is not None):
        raise InvalidTransformation("xc", "give the corner (x, y) or the centre (xc, yc), not both")
    if step.width is not None and step.height is not None and step.aspect_ratio is not None:
        step = replace(step, aspect_ratio=None)
    if step.zoom < 1 and step.focus != "face":  # a crop cannot show more than the whole image
        step = replace(step, zoom=1.0)
    return step


def parse_transformation(*texts: str | None, named: Mapping[str, str] | None = None,
                         named_only: bool = False) -> Transformation:
    """Parse the path form and the query form (in that order) into one chained transformation.

    `named` maps `n-<name>` names to their definitions; with `named_only`, nothing else is accepted.
    Raises `InvalidTransformation` (400) naming the offending parameter.
    """
    if sum(len(text) for text in texts if text) > MAX_TEXT:
        raise InvalidTransformation("tr", f"longer than {MAX_TEXT} characters")
    return _parse(texts, tuple(named.items()) if named else (), named_only)


@functools.lru_cache(maxsize=4096)  # a site uses few distinct transformations; each parse is pure
def _parse(texts: tuple[str | None, ...], named: tuple[tuple[str, str], ...], named_only: bool) -> Transformation:
    steps: list[Step] = []
    output: dict[str, Any] = {}
    step_texts = [step_text for text in filter(None, texts) for step_text in _split_steps(text) if step_text]
    if named_only and len(step_texts) > 1:  # each chain of the names a new output: 2 names, 2046 of them
        raise InvalidTransformation(step_texts[1].partition(",")[0], "this endpoint serves one named "
                                    "transformation at a time, not a chain of them")
    for step_text in step_texts:
        parsed = _parse_step(step_text, dict(named), named_only)
        steps.extend(step for step in parsed.steps if step != DEFAULT_STEP)
        output.update(parsed.output)
    if sum(1 + len(step.branches.then_steps) + len(step.branches.else_steps) if step.branches else 1
           for step in steps) > MAX_STEPS:  # an if block's steps count, both branches, as its own
        raise InvalidTransformation("tr", f"more than {MAX_STEPS} chained steps")
    if _count_layers(steps) > layer_params.MAX_LAYERS:
        raise InvalidTransformation("tr", f"more than {layer_params.MAX_LAYERS} layers")
    return Transformation(tuple(steps), Output(**output))


def _reads_base(value: object) -> bool:
    """Whether a parsed value is (or, a border, holds) an expression of a layer's base."""
    return any(isinstance(part, Expression) and part.reads_base
               for part in (value if isinstance(value, tuple) else (value,)))


def _count_layers(steps: tuple[Step, ...] | list[Step]) -> int:
    """The layers of these steps, those nested in them included."""
    return sum(1 + _count_layers(layer.steps) for step in steps for layer in step.layers)


@functools.lru_cache(maxsize=4096)
def _canonical(values: Step | Output, defaults: Step | Output) -> str:
    parts = []
    if getattr(values, "branches", None) is not None:
        parts.append(values.branches.write())
    for spec in sorted((_BY_FIELD[f.name] for f in fields(values) if f.name not in ("layers", "branches")),
                       key=lambda spec: spec.key):
        value = getattr(values, spec.field)
        if value != getattr(defaults, spec.field):
            written = spec.write(value)
            parts.append(f"{spec.key}-{written}" if written else spec.key)
    parts += [_write_layer(layer) for layer in getattr(values, "layers", ())]
    return ",".join(parts)


@functools.lru_cache(maxsize=4096)
def layered(transformation: Transformation, layers: tuple[Layer, ...]) -> Transformation:
    """`transformation` with `layers` drawn last (an endpoint's watermark), on its result."""
    *earlier, last = transformation.steps or (DEFAULT_STEP,)
    return replace(transformation, steps=(*earlier, replace(last, layers=last.layers + layers)))
