"""Chained transformations on real-size inputs, generated: seeded random chains of `:`-separated steps
mixing resizes, crops, extracts, pads, rotations, flips, effects, borders and layers placed at the
bottom-right corner, on 12 MP and 24 MP photos stored in unusual ways (EXIF orientations 2–8, progressive,
CMYK, 16-bit PNG, palette PNG, PNG with alpha), encoded as JPEG, PNG, WebP or AVIF.

Each output is decoded and held to a model of the chain written here from the documentation, not from
the node's code: the output's size, and for each corner whether it shows the red marker of the upright
top-left corner (or a green block a layer drew at a step's bottom-right corner). The upright starting
point of every EXIF-rotated photo is Pillow's (`ImageOps.exif_transpose`), not libvips'. A render may
fail only with the node's typed errors, and only where the model says it must (none of the chains asks
for one); libvips may write no warning, and no render may take more than `MAX_CPU` seconds of CPU.

`python -m tests.test_combo_real_size 500` runs more chains than the suite does (seeds 0–499)."""

from __future__ import annotations

import io
import math
import random
import resource
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
import pyvips
from PIL import Image, ImageOps

from edge.config import Defaults, Limits
from edge.errors import EdgeError
from edge.transform.cost import _steps_cost
from edge.transform.formats import plan_format
from edge.transform.options import parse_transformation
from edge.transform.render import render_image
from tests.photos import MARKER, RED, upright_photo

W, H = 4240, 2832
BIG = 6000, 4000
ACCEPT = "image/avif,image/webp,*/*"
LOGO = Path(__file__).resolve().parent.parent / "edge" / "samples" / "logo-transparent.png"
#: seconds of CPU one render may take (the render deadline is 20 s of wall time, for any load)
MAX_CPU = 10.0
GREEN = (0, 255, 0)
Rect = tuple[float, float, float, float]  # left, top, right, bottom


@dataclass(frozen=True)
class Picture:
    """What the model knows of an image: its size, where the red marker and green blocks lie."""

    width: int
    height: int
    red: Rect
    #: what was drawn over the picture, in order: (`green` or None for a layer of unknown colours, its rect)
    drawn: tuple[tuple[str | None, Rect], ...] = ()
    #: pixels of doubt at every edge of a rect (resampling, shrink-on-load, JPEG)
    blur: float = 2.0
    #: the colours were stretched (`e-contrast`), or a transparent source filled by a pad's opaque `bg`: the
    #: photo's own may have become red or green
    stretched: bool = False
    #: some of it may be transparent (rounded corners, a source with transparency)
    clear: bool = False
    #: a step made an image over the output limit on its way (before a layer cut it down): a 400
    over: bool = False

    def mapped(self, f, width: int, height: int) -> Picture:
        def move(rect: Rect) -> Rect:
            (x0, y0), (x1, y1) = f(rect[0], rect[1]), f(rect[2], rect[3])
            return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)
        return replace(self, width=width, height=height, red=move(self.red),
                       drawn=tuple((colour, move(rect)) for colour, rect in self.drawn))


def scaled(p: Picture, width: int, height: int) -> Picture:
    sx, sy = width / p.width, height / p.height
    return replace(p.mapped(lambda x, y: (x * sx, y * sy), width, height), blur=p.blur * max(sx, sy, 1) + 1)


def moved(p: Picture, dx: float, dy: float, width: int, height: int) -> Picture:
    """The picture's pixels shifted by (dx, dy) on a `width`×`height` canvas (a crop: negative)."""
    return p.mapped(lambda x, y: (x + dx, y + dy), width, height)


def turned(p: Picture, degrees: int) -> Picture:
    w, h = p.width, p.height
    if degrees == 90:  # clockwise: the left column becomes the top row
        return p.mapped(lambda x, y: (h - y, x), h, w)
    if degrees == 180:
        return p.mapped(lambda x, y: (w - x, h - y), w, h)
    if degrees == 270:
        return p.mapped(lambda x, y: (y, w - x), h, w)
    return p


def flipped(p: Picture, how: str) -> Picture:
    w, h = p.width, p.height
    if "h" in how:
        p = p.mapped(lambda x, y: (w - x, y), w, h)
    if "v" in how:
        p = p.mapped(lambda x, y: (x, h - y), w, h)
    return p


def drawn(p: Picture, colour: str | None, *rects: Rect) -> Picture:
    """Blocks of `colour` (None: of colours the model does not know) drawn over `rects`."""
    return replace(p, drawn=(*p.drawn, *((colour, rect) for rect in rects)))


#: effects that change the photo's colours (the marker's pure red and the blocks' pure green stay so)
RECOLOURING = ("e-contrast", "e-saturation-50", "e-vibrance-60", "e-brightness-20", "e-sigmoidcontrast-50",
               "e-gamma-N20")  # a darker gamma: the marker stays red through a chain of them


def colour_at(p: Picture, x: float, y: float) -> str | None:
    """What the pixel (x, y) shows: `red`, `green`, `other`, or None where the model cannot tell (near an
    edge of a rect, or under a layer of unknown colours)."""
    margin = p.blur + 2
    x, y = x + 0.5, y + 0.5

    def inside(rect: Rect, grow: float) -> bool:
        return rect[0] - grow <= x <= rect[2] + grow and rect[1] - grow <= y <= rect[3] + grow

    for colour, rect in reversed(p.drawn):
        if inside(rect, -margin):
            return colour
        if inside(rect, margin):
            return None
    return "red" if inside(p.red, -margin) else None if inside(p.red, margin) or p.stretched else "other"


def probe_points(width: int, height: int) -> dict[str, tuple[int, int]]:
    """A point a little inside each corner (clear of the edge effects of resampling)."""
    inset = max(1, min(width, height) // 40)
    right, bottom = max(0, width - 1 - inset), max(0, height - 1 - inset)
    inset_x, inset_y = min(inset, width - 1), min(inset, height - 1)
    return {"top_left": (inset_x, inset_y), "top_right": (right, inset_y), "bottom_left": (inset_x, bottom),
            "bottom_right": (right, bottom)}


# -- the chains -----------------------------------------------------------------------------------------

@dataclass
class Chain:
    source: str
    steps: list[str] = field(default_factory=list)
    output: str = ""

    @property
    def url(self) -> str:
        steps = list(self.steps) or [""]
        # an if block is a step of its own; a step's own `bg` (padding) is not the flattening's
        if self.output and (steps[-1].startswith("if-") or "bg-" in steps[-1] and "bg-" in self.output):
            steps.append(self.output)
        elif self.output:
            steps[-1] = f"{steps[-1]},{self.output}".lstrip(",")
        return ":".join(steps)


def _geometry(rng: random.Random, p: Picture) -> tuple[str, Picture]:
    """A resize, crop, pad or extract of `p`, and what it makes."""
    w, h = p.width, p.height
    kind = rng.choice(["none", "none", "none", "w", "h", "at_max", "force", "cover", "at_least", "pad", "extract",
                       "dpr", "ar", "extract_corner", "extract_corner", "zoom", "no_enlarge", "pad_extract",
                       "extract_open"])
    big = lambda side: rng.randint(max(16, side // 8), max(16, min(side, 3000)))  # noqa: E731
    if kind == "w":
        n = big(w)
        return f"w-{n}", scaled(p, n, max(1, round(h * (n / w))))  # the other side times the scale
    if kind == "h":
        n = big(h)
        return f"h-{n}", scaled(p, max(1, round(w * (n / h))), n)
    if kind == "dpr":
        n, dpr = rng.randint(50, 1000), rng.choice([1.5, 2, 3])
        m = round(n * dpr)
        if m > 5000:  # ImageKit: a dpr that makes a side over 5000 px is not applied
            m = n
        return f"w-{n},dpr-{dpr}", scaled(p, m, max(1, round(h * (m / w))))
    if kind == "ar":
        n, (a, b) = big(w), rng.choice([(1, 1), (16, 9), (4, 3), (3, 4)])
        return f"w-{n},ar-{a}-{b}", _cover(p, n, max(1, round(n * b / a)), "center")
    bw, bh = rng.randint(16, 2000), rng.randint(16, 2000)
    if kind == "at_max":
        s = min(bw / w, bh / h, 1.0)
        return f"w-{bw},h-{bh},c-at_max", scaled(p, max(1, round(w * s)), max(1, round(h * s)))
    if kind == "at_least":
        s = max(bw / w, bh / h)
        if max(w * s, h * s) > 8000:
            return "", p
        return f"w-{bw},h-{bh},c-at_least", scaled(p, max(1, round(w * s)), max(1, round(h * s)))
    if kind == "force":
        return f"w-{bw},h-{bh},c-force", scaled(p, bw, bh)
    if kind == "no_enlarge":  # the cover crop, never enlarged: the box cut to the image where it is larger
        s = min(max(bw / w, bh / h), 1.0)
        return f"w-{bw},h-{bh},c-maintain_ratio_no_enlarge", _cover(p, min(bw, w), min(bh, h), "center", s=s)
    if kind == "pad_extract":  # a region at the image's scale, the bottom-right most often, padded where it leaves it
        x, y = rng.randint(w // 2, w + 100), rng.randint(h // 2, h + 100)
        region = moved(p, -x, -y, bw, bh)
        inside = (-x, -y, w - x, h - y)
        return f"cm-pad_extract,x-{x},y-{y},w-{bw},h-{bh},bg-00FF00", drawn(region, "green", *(
            rect for rect in ((-1, -1, inside[0], bh + 1), (inside[2], -1, bw + 1, bh + 1), (-1, -1, bw + 1, inside[1]),
                              (-1, inside[3], bw + 1, bh + 1)) if rect[2] > rect[0] + 1 and rect[3] > rect[1] + 1))
    if kind == "extract_open":  # no w or h: the region runs from x or y to the far edge
        x, y = rng.randint(0, w - 1), rng.randint(0, h - 1)
        return f"cm-extract,x-{x},y-{y}", moved(p, -x, -y, w - x, h - y)
    if kind == "zoom":  # z- zooms into the cover crop: the box holds 1/z of what it would
        z, focus = rng.choice([1.5, 2, 3]), rng.choice(["top_left", "bottom_right", "center"])
        return f"w-{bw},h-{bh},z-{z},fo-{focus}", _cover(p, bw, bh, focus, z)
    if kind == "cover":
        focus = rng.choice(["center", "top_left", "bottom_right", "top", "left"])
        return f"w-{bw},h-{bh},fo-{focus}", _cover(p, bw, bh, focus)
    if kind == "pad":
        s = min(bw / w, bh / h)
        iw, ih = max(1, round(w * s)), max(1, round(h * s))
        # centred: the padding split evenly, the odd pixel right/below
        x, y = (bw - iw) // 2, (bh - ih) // 2
        padded = moved(scaled(p, iw, ih), x, y, bw, bh)
        return (f"w-{bw},h-{bh},cm-pad_resize,bg-00FF00", drawn(padded, "green", *(
            rect for rect in ((-1, -1, x, bh + 1), (x + iw, -1, bw + 1, bh + 1), (-1, -1, bw + 1, y),
                              (-1, y + ih, bw + 1, bh + 1)) if rect[2] > rect[0] + 1 and rect[3] > rect[1] + 1)))
    if kind in ("extract", "extract_corner"):
        ew, eh = rng.randint(1, w), rng.randint(1, h)
        if kind == "extract_corner":  # flush with a corner, the bottom-right most often: read last
            x, y = rng.choice([(w - ew, h - eh), (w - ew, h - eh), (0, h - eh), (w - ew, 0), (0, 0)])
        else:
            x, y = rng.randint(0, w - ew), rng.randint(0, h - eh)
        return f"cm-extract,x-{x},y-{y},w-{ew},h-{eh}", moved(p, -x, -y, ew, eh)
    return "", p


def _cover(p: Picture, bw: int, bh: int, focus: str, zoom: float = 1.0, s: float | None = None) -> Picture:
    """Scaled to cover the box (times `zoom`; or by `s`), then the box cut at the focus."""
    s = (max(bw / p.width, bh / p.height) if s is None else s) * zoom
    cw, ch = max(bw, math.ceil(p.width * s)), max(bh, math.ceil(p.height * s))
    x = 0 if "left" in focus else cw - bw if "right" in focus else (cw - bw) // 2
    y = 0 if "top" in focus else ch - bh if "bottom" in focus else (ch - bh) // 2
    return moved(scaled(p, cw, ch), -x, -y, bw, bh)


def _step(rng: random.Random, p: Picture, last: bool) -> tuple[str, Picture]:
    """One step: geometry, rotation, flip (in that order, as documented), an effect, a layer."""
    parts = []
    margin = p.blur + 2
    if rng.random() < 0.15 and colour_at(p, 0, 0) == "red" and p.red[2] < p.width - margin \
            and p.red[3] < p.height - margin:
        # a trim of a picture whose top-left pixel is the marker's: nothing to cut, as no edge is all red (the
        # marker spans neither side)
        parts.append("t-true")
    text, p = _geometry(rng, p)
    parts.append(text)
    p = replace(p, over=p.over or max(p.width, p.height) > 8192)  # the resize's result, whatever follows
    degrees = rng.choice([0, 0, 90, 180, 270, -90])
    if degrees:
        parts.append(f"rt-{degrees}" if degrees > 0 else "rt-N90")
        p = turned(p, degrees % 360)
    how = rng.choice([None, None, "h", "v", "h_v"])
    if how:
        parts.append(f"fl-{how}")
        p = flipped(p, how)
    effect = rng.choice([None, None, "bl-2", "e-sharpen", "e-contrast", "border", "e-usm", "o-100", "shadow",
                         "gradient", "e-saturation-50", "e-vibrance-60", "e-brightness-20", "e-pixelate-3",
                         "e-sigmoidcontrast-50", "e-gamma-N20"])
    if effect == "shadow":  # rounded corners, and the shadow shows there: up or down, far or near
        r = rng.randint(5, 200)
        parts.append(f"r-{r},e-shadow-bl-{rng.randint(0, 15)}_x-{rng.choice(['N', ''])}{rng.randint(0, 30)}"
                     f"_y-{rng.choice(['N', ''])}{rng.randint(0, 60)}")
        w, h, r = p.width, p.height, r + 1
        p = drawn(replace(p, clear=True), None, (-1, -1, r, r), (w - r, -1, w + 1, r), (-1, h - r, r, h + 1),
                  (w - r, h - r, w + 1, h + 1))
    elif effect == "gradient":  # the default: from clear at the top to black at 66 % at the bottom
        parts.append("e-gradient")
        p = drawn(p, None, (-1, p.height * 0.2, p.width + 1, p.height + 1))
    elif effect == "border":
        b = rng.randint(1, 60)
        parts.append(f"b-{b}_00FF00")
        w, h = p.width + 2 * b, p.height + 2 * b
        p = drawn(moved(p, b, b, w, h), "green", (-1, -1, w + 1, b), (-1, h - b, w + 1, h + 1), (-1, -1, b, h + 1),
                  (w - b, -1, w + 1, h + 1))
    elif effect:
        parts.append(effect)
        # pure red and green stay so under these; the photo's own colours may become either
        p = replace(p, stretched=p.stretched or effect in RECOLOURING,
                    blur=p.blur + (3 if effect == "e-pixelate-3" else 0))
    layer = rng.choice([None, None, "block", "logo", "text", "cutter"])
    side = min(p.width, p.height, rng.randint(8, 400))
    if layer == "block":
        parts.append(f"l-image,i-ik_canvas,bg-00FF00,w-{side},h-{side},lx-N0,ly-N0,l-end")
        p = drawn(p, "green", (p.width - side, p.height - side, p.width + 1, p.height + 1))
    elif layer == "cutter":  # the result cut to a block in its bottom-right corner
        parts.append(f"l-image,i-ik_canvas,bg-00FF00,w-{side},h-{side},lx-N0,ly-N0,lm-cutter,l-end")
        p = moved(p, side - p.width, side - p.height, side, side)
    elif layer == "logo":  # the logo is square; turned or not, it lies in the corner's square
        parts.append(f"l-image,i-logo.png,w-{side},{rng.choice(['rt-90,', 'fl-v,', ''])}lx-N0,ly-N0,l-end")
        p = drawn(p, None, (p.width - side, p.height - side, p.width + 1, p.height + 1))
    elif layer == "text":  # six glyphs, each less than a font size wide, in the bottom-right corner
        size = min(200, max(8, side // 3))
        parts.append(f"l-text,i-Corner,fs-{size},co-0000FF,lfo-bottom_right,l-end")
        p = drawn(p, None, (p.width - 6 * size, p.height - 2 * size, p.width + 1, p.height + 1))
    return ",".join(part for part in parts if part), p


SOURCES = ["photo.jpg", "photo.jpg", "exif-2.jpg", "exif-3.jpg", "exif-4.jpg", "exif-5.jpg", "exif-6.jpg",
           "exif-7.jpg", "exif-8.jpg", "progressive.jpg", "cmyk.jpg", "big.jpg", "photo16.png", "palette.png",
           "alpha.png"]
FORMATS = ["", "f-jpg", "f-png", "f-webp", "f-avif"]


def _conditional(rng: random.Random, p: Picture) -> tuple[str, Picture]:
    """An if block on the size the image has here, which holds or not (by one pixel, or a ratio either side),
    with a step, or two chained, in the first branch, and a step or none in the other; the picture of the
    branch the size chooses."""
    then_text, then_p = _step(rng, p, last=False)
    if rng.random() < 0.3:
        more, then_p = _step(rng, then_p, last=False)
        then_text = f"{then_text}:{more}" if then_text and more else then_text or more
    else_text, else_p = _step(rng, p, last=False) if rng.random() < 0.5 else ("", p)
    if "l-" in then_text + else_text:  # layers are not allowed within an if block
        return _step(rng, p, last=False)
    holds = rng.random() < 0.5
    prop, value = rng.choice([("w", p.width), ("h", p.height)])
    condition = rng.choice([f"{prop}_gt_{value - 1 if holds else value}", f"{prop}_lte_{value if holds else value - 1}",
                            f"ar_{'gt' if holds else 'lte'}_{p.width}-{p.height + 1}"])
    branches = f"{then_text},if-else,{else_text}" if else_text else then_text
    return f"if-{condition},{branches},if-end", then_p if holds else else_p


def chain(seed: int) -> tuple[Chain, Picture]:
    """A chain of 1–4 steps on one source, and the picture the model expects of it."""
    rng = random.Random(seed)
    source = rng.choice(SOURCES)
    width, height = BIG if source == "big.jpg" else (W, H)
    side = round(height * MARKER)
    p = Picture(width, height, (0, 0, side, side), clear=source == "alpha.png")
    c = Chain(source)
    for index in range(rng.randint(1, 4)):
        text, p = _conditional(rng, p) if rng.random() < 0.2 else _step(rng, p, last=False)
        if p.clear and "bg-00FF00" in text.split(",l-")[0]:  # an opaque bg fills the step's transparent areas
            p = replace(p, stretched=True)
        c.steps.append(text)
        if p.over or max(p.width, p.height) > 8192:  # a step over the output limit: a 400, the model's only error
            return c, replace(p, width=0, height=0)
    if max(p.width, p.height) > 1200 or rng.random() < 0.5:  # most outputs end small: encodes stay quick
        n = rng.randint(100, 1200)
        n = min(n, max(1, 8192 * p.width // p.height))
        c.steps.append(f"w-{n}")
        p = scaled(p, n, max(1, round(p.height * (n / p.width))))
    c.output = rng.choice(FORMATS)
    if source == "alpha.png" and c.output in ("", "f-png", "f-webp", "f-avif"):
        c.output = "f-jpg,bg-FFFFFF" if rng.random() < 0.5 else c.output
    return c, p


# -- the inputs -----------------------------------------------------------------------------------------

#: stored pixels for each EXIF orientation (EXIF 2.3: the inverse of what the display does)
_TO_STORED = {2: lambda im: im.fliphor(), 3: lambda im: im.rot180(), 4: lambda im: im.flipver(),
              5: lambda im: im.rot90().fliphor(), 6: lambda im: im.rot270(), 7: lambda im: im.rot90().flipver(),
              8: lambda im: im.rot90()}


def make_inputs() -> dict[str, bytes]:
    upright = upright_photo(W, H)
    files = {"photo.jpg": upright.jpegsave_buffer(Q=88, keep="none"),
             "progressive.jpg": upright.jpegsave_buffer(Q=88, keep="none", interlace=True),
             "cmyk.jpg": upright.colourspace("cmyk").jpegsave_buffer(Q=88, keep="none"),
             "photo16.png": (upright.cast("ushort") * 257).copy(interpretation="rgb16").pngsave_buffer(
                 bitdepth=16, compression=1, keep="none"),
             "palette.png": upright.pngsave_buffer(palette=True, compression=1, keep="none", effort=1),
             "big.jpg": upright_photo(*BIG).jpegsave_buffer(Q=88, keep="none")}
    # transparent in the middle third, opaque at the corners
    x = pyvips.Image.xyz(W, H)[0]
    alpha = ((x > W // 3) & (x < 2 * W // 3)).ifthenelse(0, 255).cast("uchar")
    files["alpha.png"] = upright.bandjoin(alpha).copy(interpretation="srgb").pngsave_buffer(compression=1, keep="none")
    for orientation, to_stored in _TO_STORED.items():
        stored = to_stored(upright).copy()
        stored.set_type(pyvips.GValue.gint_type, "orientation", orientation)
        files[f"exif-{orientation}.jpg"] = stored.jpegsave_buffer(Q=88, keep="exif")
    return files


def pillow_upright(body: bytes) -> tuple[tuple[int, int], str]:
    """Pillow's upright size of a JPEG and the corner its red marker is in (decoded at 1/8)."""
    image = Image.open(io.BytesIO(body))
    full = image.size
    image.draft("RGB", (image.width // 8, image.height // 8))
    image = ImageOps.exif_transpose(image.convert("RGB"))
    scale = max(image.size) / max(full)
    size = (round(image.width / scale), round(image.height / scale))
    red = [name for name, point in probe_points(*image.size).items() if _colour(image.getpixel(point)) == "red"]
    assert len(red) == 1, red
    return size, red[0]


def _colour(pixel) -> str:
    r, g, b = pixel[:3]
    if r > 180 and g < 90 and b < 90:
        return "red"
    if g > 180 and r < 90 and b < 90:
        return "green"
    return "other"


# -- rendering and checking -----------------------------------------------------------------------------

LOADERS = {"jpg": "jpegload", "png": "pngload", "webp": "webpload", "avif": "heifload"}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def render(inputs: dict[str, bytes], c: Chain) -> tuple[object, pyvips.Image, float]:
    parsed = parse_transformation(c.url)
    planned, _ = plan_format(parsed.output_format, c.source, ACCEPT)
    started = _cpu()
    rendered = render_image(inputs[c.source], parsed, planned, Defaults(), Limits(),
                            {"logo.png": inputs["logo.png"]})
    spent = _cpu() - started
    image = pyvips.Image.new_from_buffer(rendered.body, "", fail_on="warning")
    image.avg()  # every pixel decoded: a truncated output fails here
    return rendered, image, spent


def problems(inputs: dict[str, bytes], c: Chain, expected: Picture) -> list[str]:
    """What is wrong with the chain's output (nothing: an empty list)."""
    try:
        rendered, image, spent = render(inputs, c)
    except EdgeError as error:
        if expected.width == 0 and error.status == 400 and error.message.startswith("output too large: ") \
                and error.message.endswith(", at most 8192 px a side"):
            return []
        return [f"{error.status} {error.message}"]
    if expected.width == 0:
        return [f"rendered {rendered.width}x{rendered.height}: expected a 400, output too large"]
    found = []
    if spent > MAX_CPU:
        found.append(f"{spent:.1f} s of CPU")
    fmt = rendered.format
    size = (expected.width, expected.height)
    parsed = parse_transformation(c.url)
    source = BIG if c.source == "big.jpg" else (W, H)
    estimate = _steps_cost(parsed.steps, source, {"logo.png": (500, 500)})[1]
    if estimate != (rendered.width, rendered.height) and "t-true" not in c.url:
        found.append(f"the budget's estimate of the size: {estimate}")
    if (rendered.width, rendered.height) != size or (image.width, image.height) != size:
        found.append(f"size {rendered.width}x{rendered.height} (decoded {image.width}x{image.height}), "
                     f"expected {size[0]}x{size[1]}")
        return found
    if image.get("vips-loader").removesuffix("_buffer") != LOADERS[fmt]:
        found.append(f"loader {image.get('vips-loader')} for {fmt}")
    srgb = image.colourspace("srgb") if image.bands < 3 else image
    if srgb.hasalpha() and srgb[srgb.bands - 1].min() < 255 and not expected.clear:
        found.append("transparent pixels in an opaque picture")
    flat = srgb.flatten(background=[255, 255, 255]) if srgb.hasalpha() else srgb
    for corner, (x, y) in probe_points(image.width, image.height).items():
        colour = colour_at(expected, x, y)
        if colour is None:
            continue
        pixel = flat.getpoint(x, y)
        if _colour(pixel) != colour:
            found.append(f"{corner} is {_colour(pixel)} ({[round(v) for v in pixel]}), expected {colour}")
    return found


@pytest.fixture(scope="module")
def inputs() -> dict[str, bytes]:
    files = make_inputs()
    files["logo.png"] = Path(LOGO).read_bytes()
    return files


@pytest.mark.parametrize("orientation", sorted(_TO_STORED))
def test_pillow_agrees_the_exif_rotated_photos_are_upright_with_the_marker_top_left(inputs, orientation):
    """The model's starting point, from an independent decoder."""
    assert pillow_upright(inputs[f"exif-{orientation}.jpg"]) == ((W, H), "top_left")


#: seeds of the suite's chains (a bounded sample; the module run as a script tries more)
SEEDS = range(24)


@pytest.mark.parametrize("seed", SEEDS)
def test_generated_chains_render_what_the_model_expects(inputs, seed, capfd):
    c, expected = chain(seed)
    found = problems(inputs, c, expected)
    warnings = capfd.readouterr().err
    assert not found and not warnings.strip(), (c.source, c.url, found, warnings[:500])


def main(count: int, start: int = 0) -> None:
    files = make_inputs()
    files["logo.png"] = Path(LOGO).read_bytes()
    for orientation in _TO_STORED:
        assert pillow_upright(files[f"exif-{orientation}.jpg"]) == ((W, H), "top_left"), orientation
    bad = 0
    for seed in range(start, start + count):
        c, expected = chain(seed)
        started = _cpu()
        try:
            found = problems(files, c, expected)
        except Exception as error:  # noqa: BLE001 - what the suite would report as a failure
            found = [f"EXCEPTION {error!r}"[:400]]
        bad += bool(found)
        print(f"{seed} {_cpu() - started:.2f}s {c.source} {c.url} {'OK' if not found else found}", flush=True)
    print(f"{bad} of {count} chains wrong")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100, int(sys.argv[2]) if len(sys.argv) > 2 else 0)
