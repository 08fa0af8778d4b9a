"""Drawing a step's layers on its result: an image (rendered with its own steps by the caller), a
solid colour block or a text; placed and blended. See `layers` for what the parameters mean."""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from dataclasses import replace

import pyvips

from ..errors import InvalidTransformation
from . import stopping
from .colours import RGBA
from .cost import text_box
from .effects import _with_alpha, apply_look, rounded_corners
from .fonts import Font
from .geometry import (TRANSPARENT, Source, apply_geometry, check_side, distort, flip, resolved, rotate, target_box,
                       with_sizes)
from .layers import CANVAS, Layer, Placement, TextStyle, from_far_edge, placed, sized
from .options import Step

#: `image_of(path, steps, base, page)`: an overlay original (its page `pg-N`, else the first) rendered with
#: its own steps for a base of this size, and its original's size
LayerImage = Callable[[str, tuple[Step, ...], tuple[int, int], int | None], tuple[pyvips.Image, tuple[int, int]]]
_TYPOGRAPHY_TAGS = {"b": "b", "i": "i", "strikethrough": "s"}
#: the largest side of a Cairo surface, on which Pango draws a text layer
_CAIRO_MAX_SIDE = 32767
_ALIGN = {"left": pyvips.enums.Align.LOW, "center": pyvips.enums.Align.CENTRE, "right": pyvips.enums.Align.HIGH}


def draw_layers(base: pyvips.Image, layers: tuple[Layer, ...], image_of: LayerImage,
                fonts: Mapping[str, Font], max_side: int,
                draw: Callable[[pyvips.Image, Step], pyvips.Image] | None = None) -> pyvips.Image:
    """`layers` drawn on `base`, in order; `draw(image, step)` draws the layers nested in a colour
    block's steps (an image layer's own are drawn by `image_of`)."""
    had_alpha = base.hasalpha()
    base = _srgba(base)
    size = base.width, base.height
    for layer in layers:
        stopping.check()
        if layer.kind == "text":
            drawn = _text(layer.input, sized(layer.text or TextStyle(), size), fonts, max_side)
            original = drawn.width, drawn.height
        elif layer.input == CANVAS:
            drawn = _canvas(layer, *size, max_side, draw)
            original = drawn.width, drawn.height
        else:
            drawn, original = image_of(layer.input, layer.steps, size, layer.page)
        placement = placed(layer.placement, size, (drawn.width, drawn.height), original)
        base = _blend(base, _srgba(drawn), *_origin(placement, base, drawn), placement.mode)
    if not had_alpha and not any(layer.placement.mode in ("cutter", "cutout") for layer in layers):
        base = base.extract_band(0, n=3)  # opaque stays opaque: the format choice must not change
    return base


def _srgba(image: pyvips.Image) -> pyvips.Image:
    """8-bit sRGB with alpha: what the blend modes and the alpha arithmetic below expect (a step's
    result may still be greyscale, 16-bit or CMYK until the output's colour is decided)."""
    if image.interpretation != pyvips.enums.Interpretation.SRGB or image.format != pyvips.enums.BandFormat.UCHAR:
        image = image.colourspace(pyvips.enums.Interpretation.SRGB).cast(pyvips.enums.BandFormat.UCHAR)
    return image if image.hasalpha() else image.bandjoin_const([255])


def _origin(placement: Placement, base: pyvips.Image, layer: pyvips.Image) -> tuple[int, int]:
    """Top-left of the layer on the base: lx/ly (negative: from the right/bottom edge), lxc/lyc
    (centre), else the lfo focus (centre by default). A position beyond the base's side is moved so
    that the layer fits within it (as ImageKit does); one within it may leave part of the layer out."""
    given = (placement.x, placement.y, placement.x_center, placement.y_center)
    if all(value is None for value in given):
        focus = placement.focus
        excess_x, excess_y = base.width - layer.width, base.height - layer.height
        return (0 if "left" in focus else excess_x if "right" in focus else excess_x // 2,
                0 if "top" in focus else excess_y if "bottom" in focus else excess_y // 2)

    def axis(corner: int | None, centre: int | None, whole: int, side: int) -> int:
        if corner is not None:
            far = from_far_edge(corner)
            given, position = (corner, corner) if far is None else (far, whole - side - far)
        elif centre is not None:
            far = from_far_edge(centre)
            given, position = (centre, centre - side // 2) if far is None else (far, whole - far - side // 2)
        else:
            return 0
        if given >= whole:  # beyond the image: moved to fit within it, as ImageKit does, rather than lost
            position = min(max(position, 0), max(whole - side, 0))
        return position
    return (axis(placement.x, placement.x_center, base.width, layer.width),
            axis(placement.y, placement.y_center, base.height, layer.height))


def _blend(base: pyvips.Image, layer: pyvips.Image, x: int, y: int, mode: str | None) -> pyvips.Image:
    if mode is None or mode == "multiply":
        blend = pyvips.enums.BlendMode.MULTIPLY if mode else pyvips.enums.BlendMode.OVER
        return base.composite2(layer, blend, x=x, y=y)
    # cutter keeps the base only under the layer's opaque parts; cutout removes it there
    mask = pyvips.Image.black(base.width, base.height).insert(layer[3], x, y)
    keep = mask if mode == "cutter" else 255 - mask
    alpha = (base[3] * keep / 255).cast(pyvips.enums.BandFormat.UCHAR)
    result = base.extract_band(0, n=3).bandjoin(alpha).copy(interpretation=pyvips.enums.Interpretation.SRGB)
    if mode == "cutter":  # trimmed to the layer's box, as far as it lies on the base
        left, top = max(0, x), max(0, y)
        right, bottom = min(base.width, x + layer.width), min(base.height, y + layer.height)
        if right <= left or bottom <= top:
            raise InvalidTransformation("lm-cutter", "the layer lies outside the image")
        result = result.crop(left, top, right - left, bottom - top)
    return result


def _canvas(layer: Layer, base_width: int, base_height: int, max_side: int,
            draw: Callable[[pyvips.Image, Step], pyvips.Image] | None = None) -> pyvips.Image:
    """A block of the first step's `bg` (transparent without one: a gradient block, whose `e-gradient` is
    all it shows), `w`×`h` (fractions of the base; the base's size by default), then that step's look
    and any further steps."""
    base = base_width, base_height
    first, *rest = layer.steps
    first = with_sizes(first, base, base, base)  # a block has no size of its own: iw… are the base's too
    width, height = target_box(first, base_width, base_height)
    width, height = width or base_width, height or base_height
    check_side(width, height, max_side)
    colour = first.background or TRANSPARENT
    block = (pyvips.Image.black(width, height, bands=4) + list(colour)).cast(pyvips.enums.BandFormat.UCHAR)
    image = block.copy(interpretation=pyvips.enums.Interpretation.SRGB)
    first = resolved(replace(first, background=None), Source.of_image(image), base, base)
    image = apply_look(image, first)  # its `bg` is the block: rounded corners stay clear
    # then the block as drawn turned, flipped and bent, on transparency (a crop or resize has nothing to act on)
    image = rotate(image, first.rotation, TRANSPARENT, max_side)
    image = distort(flip(image, first.flip, max_side), first.distort, TRANSPARENT, max_side)
    if first.layers and draw is not None:
        image = draw(image, first)
    for step in rest:
        source = Source.of_image(image)
        step = resolved(step, source, base, base)
        image = apply_look(apply_geometry(source, step, max_side), step)
        if step.layers and draw is not None:
            image = draw(image, step)
    if layer.alpha is not None and colour[3] == 255:  # a colour's own opacity wins over `al` (ImageKit)
        image = _with_alpha(image, layer.alpha / 10)
    return image


def _ink(mask: pyvips.Image, colour: RGBA) -> pyvips.Image:
    """A one-band coverage mask as `colour`, its alpha the coverage times the colour's."""
    r, g, b, a = colour
    alpha = (mask * (a / 255)).cast(pyvips.enums.BandFormat.UCHAR)
    return mask.new_from_image([r, g, b]).bandjoin(alpha).copy(interpretation=pyvips.enums.Interpretation.SRGB)


#: how much larger than its priced box a text's glyphs may draw (wide glyphs, CJK's, draw up to about twice)
TEXT_BOX_SLACK = 4


def _text(text: str, style: TextStyle, fonts: Mapping[str, Font], max_side: int) -> pyvips.Image:
    font = fonts.get(style.font)
    if font is None:
        raise InvalidTransformation(f"ff-{style.font}", "no such font (the fonts are listed in [fonts])")
    markup = html.escape(text, quote=False)
    for style_name in style.typography:
        tag = _TYPOGRAPHY_TAGS[style_name]
        markup = f"<{tag}>{markup}</{tag}>"
    # without `w` each line is drawn whole, the box its longest: one longer than the output limit is refused below,
    # not wrapped at it (it was: two lines, the second centred in an 8192 px box)
    options = {"width": min(style.width, max_side)} if style.width else {}
    if style.line_height is not None:
        options["spacing"] = max(0, style.line_height - style.size)
    too_large = f"the text is more than {min(max_side, _CAIRO_MAX_SIDE)} px a side: a smaller fs or less text"
    try:  # rendered here, at once: its failure is the layer's, whatever the base image
        mask = stopping.watch(pyvips.Image.text(markup, fontfile=font.file, font=font.description(style.size),
                                                dpi=72, align=_ALIGN[style.align],
                                                wrap=pyvips.enums.TextWrap.WORD_CHAR, **options))
    except pyvips.Error as error:
        # Cairo draws at most 32767 px a side: a taller text (fs-500 and 56 lines) fails inside libvips,
        # "invalid value (typically too big) for the size of the input"
        stopping.check()
        reason = too_large if "too big" in str(error) else \
            "no text to draw (no glyph of it leaves ink)" if "no text" in str(error) else "the text cannot be rendered"
        raise InvalidTransformation("l-text", reason) from None
    # priced by its characters (`cost.text_box`): glyphs that draw far more (a letter under 500 stacked combining
    # marks, 16 times its box, then outlined and turned: 17 s for 111 units; cost probe) are refused here, drawn
    # but not yet inked, outlined or turned
    priced_w, priced_h = text_box(text, style)
    box_w = max(mask.width, style.width or 0)  # the box: `w` wide, however narrow its lines
    if box_w * mask.height > TEXT_BOX_SLACK * priced_w * priced_h:
        raise InvalidTransformation("l-text", f"its glyphs draw a box of {box_w}x{mask.height} px, over "
                                              f"{TEXT_BOX_SLACK} times the one its characters are priced at")
    if style.width and mask.width < style.width:  # the box is `w` wide; the text aligned inside it
        offset = {"left": 0, "center": (style.width - mask.width) // 2, "right": style.width - mask.width}
        mask = mask.embed(offset[style.align], 0, style.width, mask.height)
    grow, drop = style.outline[0] if style.outline else 0, style.shadow[1] if style.shadow else 0
    mask = mask.embed(grow, grow, mask.width + 2 * grow + drop, mask.height + 2 * grow + drop)
    inks = []
    if style.shadow:  # the glyphs again, `drop` px down and right, under everything
        inks.append(_ink(mask.embed(drop, drop, mask.width, mask.height), style.shadow[0]))
    if style.outline:  # the glyphs grown by `grow` px (a square max filter), under the text
        side = 2 * grow + 1
        inks.append(_ink(mask.rank(side, side, side * side - 1), style.outline[1]))
    inks.append(_ink(mask, style.colour))
    ink = inks[0].composite(inks[1:], pyvips.enums.BlendMode.OVER) if len(inks) > 1 else inks[0]
    top, right, bottom, left = style.padding or (0, 0, 0, 0)
    ink = ink.embed(left, top, ink.width + left + right, ink.height + top + bottom)
    if max(ink.width, ink.height) > max_side:
        raise InvalidTransformation("l-text", too_large)
    if style.background is not None:
        paper = ink.new_from_image(list(style.background)).copy(interpretation=pyvips.enums.Interpretation.SRGB)
        ink = paper.composite2(ink, pyvips.enums.BlendMode.OVER)
    if style.alpha is not None:
        ink = _with_alpha(ink, style.alpha / 10)
    if style.radius is not None:
        ink = rounded_corners(ink, style.radius)
    ink = flip(ink, style.flip, max_side)
    if style.rotation:
        ink = rotate(ink, style.rotation, (0, 0, 0, 0), max_side)
    return distort(ink, style.distort, TRANSPARENT, max_side)
