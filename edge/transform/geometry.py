"""The geometry of one step: trim, resize / crop / pad / extract, rotate, flip, distort.

A step reads its input from a `Source`. The first step's source is the encoded original, so a resize
is a libvips thumbnail that shrinks on load; later steps (and animation frames) read a decoded image.
Every output size is checked against the limit before libvips is asked to make it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import pyvips

from ..errors import BadRequest
from . import faces, held, stopping
from .colours import RGBA, Blurred
from .expressions import MAX_PIXELS, Expression, evaluated, sizes
from .options import CUTTING, DOMINANT, MAX_BORDER, Distortion, Step

Size = pyvips.enums.Size
#: the size a step makes of a box (`capped_output`)
Output = Callable[[int | None, int | None], tuple[int, int]]
WHITE: RGBA = (255, 255, 255, 255)
#: the largest side a `dpr` may make: beyond it the `dpr` is not applied (ImageKit's rule, `times_dpr`)
DPR_MAX_SIDE = 5000
#: pixels of the reduced copy on which `trim` finds its box and `fo-auto` its most interesting point
_SEARCH_PIXELS = 1_000_000
TRANSPARENT: RGBA = (0, 0, 0, 0)
#: `fo-face` at `z-1` frames the faces with this much of the picture: the box of the faces, this many
#: times as wide and as high (head, hair and shoulders for one face)
FACE_MARGIN = 2.5
#: faces smaller than this share of the largest are left out of the frame (people in the background,
#: and most of the detector's false positives, are small)
FACE_MIN_SHARE = 0.25


@dataclass(frozen=True)
class Source:
    """What a step resizes from: its upright size, a thumbnailer (shrink-on-load where it can) and the
    whole decoded image."""

    width: int
    height: int
    thumbnail: Callable[..., pyvips.Image]  # thumbnail(width, height=, size=) → pyvips.Image
    decode: Callable[[], pyvips.Image]
    #: the source of the same size whose pixels decide where `fo-auto` and `fo-face` cut, if not this
    #: one's (an animation's frames: the first frame's)
    decided_by: Source | None = None

    @classmethod
    def of_image(cls, image: pyvips.Image) -> Source:
        return cls(image.width, image.height, image.thumbnail_image, lambda: image)


def check_side(width: int, height: int, max_side: int) -> None:
    """A 400 for an output over `max_side`, saying the size it would have had (the sides known: 0 is one not yet
    known): in a chain of steps, which step and side to change."""
    if max(width, height) > max_side:
        size = f"{width}x{height}" if width and height else f"{width} px wide" if width else f"{height} px high"
        raise BadRequest(f"output too large: {size}, at most {max_side} px a side")


#: an image's alpha band is looked at (does it hide anything?) up to this many pixels: the image is held in memory
#: for it (counted), 4 bytes a pixel, 8 at 16 bits (64 or 128 MB here); beyond, alpha counts as transparency
OPAQUE_CHECK_MAX_PIXELS = 16_000_000


def opaque(image: pyvips.Image) -> bool:
    """Whether the alpha band of an 8- or 16-bit image is opaque everywhere (read whole: pass one in memory)."""
    full = {"uchar": 255, "ushort": 65535}.get(image.format)
    return full is not None and image[image.bands - 1].min() >= full


def background(image: pyvips.Image, colour: RGBA | None, resident: bool = False) -> tuple[pyvips.Image, list[float]]:
    """`image`, made able to show `colour` (sRGB, alpha added when the colour is translucent), and
    `colour` as band values. Without a colour: transparent where the image has transparency, else white. An
    alpha band opaque everywhere is none, as for `f-auto`, and is dropped (then `image` is in memory): every GIF
    has one as libvips loads it, and so have RGBA PNGs of opaque pictures; their padding and turned corners had
    been transparent, dark bars on a dark page. `resident`: `image` is in memory already (not copied again)."""
    if colour is None and image.hasalpha() and image.width * image.height <= OPAQUE_CHECK_MAX_PIXELS:
        if not resident:
            image = in_memory(image)  # read twice, for the band then for the step
        if opaque(image):
            image = image.extract_band(0, n=image.bands - 1)
    colour = colour or (TRANSPARENT if image.hasalpha() else WHITE)
    if image.bands < 3:
        image = image.colourspace(pyvips.enums.Interpretation.SRGB)
    if colour[3] != 255 and not image.hasalpha():
        image = image.bandjoin_const([255])
    return image, list(colour[:image.bands])


def in_memory(image: pyvips.Image, kept: bool = False) -> pyvips.Image:
    """Decoded into memory, for operations that read the image more than once or out of order (the
    loaders stream sequentially). Callers hold `image` to the pixel budget: it is the original (checked
    on probe) or a step's output (checked against `max_output_side` before it is made); and its bytes are
    the render's memory (`held`), until its step is done with, or to the end of the render when `kept`."""
    held.charge(image, kept)
    return stopping.watch(stopping.watch(image).copy_memory())


def _pixels(value: float | None, whole: int) -> int | None:
    """A w/h value in pixels: fractions are of the step's input."""
    if value is None:
        return None
    return max(1, round(value * whole)) if value < 1 else int(value)


def target_box(step: Step, width: int, height: int) -> tuple[int | None, int | None]:
    """w and h in pixels: fractions resolved, the missing side from `ar`, times `dpr`."""
    box_w, box_h = _pixels(step.width, width), _pixels(step.height, height)
    if step.aspect_ratio is not None:
        ratio = step.aspect_ratio[0] / step.aspect_ratio[1]
        if box_w is None and box_h is None:  # the largest box of that ratio inside the image
            box_w, box_h = (round(height * ratio), height) if width / height > ratio else (width, round(width / ratio))
        elif box_h is None:
            box_h = round(box_w / ratio)
        elif box_w is None:
            box_w = round(box_h * ratio)
    return times_dpr(box_w, box_h, step.dpr, (width, height), capped_output(step, width, height))


def capped_output(step: Step, width: int, height: int) -> Output | None:
    """What a step that never enlarges (`NEVER_ENLARGED`, no pad or extract) makes of a `width`×`height` input and a
    box (as `resize` does): its output is capped by the image, and dpr's 5000 px rule is on the output. Else None."""
    if step.extracts or step.pads or step.crop not in NEVER_ENLARGED:
        return None

    def output(box_w: int | None, box_h: int | None) -> tuple[int, int]:
        if box_w is not None and box_h is not None and step.crop == "maintain_ratio_no_enlarge":
            return min(box_w, width), min(box_h, height)
        scale = (side_scale(step, width, height, box_w, box_h) if box_w is None or box_h is None
                 else fit_scale(step, width, height, box_w, box_h))
        return max(1, round(width * scale)), max(1, round(height * scale))
    return output


def times_dpr(box_w: float | None, box_h: float | None, dpr: float, image: tuple[int, int] | None = None,
              output: Output | None = None) -> tuple[int | None, int | None]:
    """The box times `dpr`, unless that makes a side of the output larger than `DPR_MAX_SIDE` or under 1 px:
    then the box as given, ImageKit's rule (`w-3000,dpr-2` is 3000 px wide there, not 6000). With the `image`'s
    size, a side the box leaves to its aspect counts too (`h-2000,dpr-2` of a 4:3 image would be 5333 px wide:
    2000 px high; checked on the box alone, it was served 5333×4000). With `output` (`capped_output`: a mode that
    never enlarges), the larger sides are the output's: `w-2600,c-at_max,dpr-2` of a 4000×3000 photo is the photo's
    size, as `w-2400,…` is (checked on the 5200 px box, it had been 2600×1950: asking for more gave less)."""
    scaled = [None if side is None else side * dpr for side in (box_w, box_h)]
    if image is not None and (box_w is None) != (box_h is None):
        aspect = image[0] / image[1]
        implied = [box_h * aspect, box_h] if box_w is None else [box_w, box_w / aspect]
    else:
        implied = [box_w, box_h]
    if dpr != 1:
        too_small = any(side is not None and side * dpr < 1 for side in implied)
        if output is not None and scaled != [None, None]:
            too_large = max(output(*(None if side is None else max(1, round(side)) for side in scaled))) > DPR_MAX_SIDE
        else:
            too_large = any(side is not None and side * dpr > DPR_MAX_SIDE for side in implied)
        if too_small or too_large:
            scaled = [box_w, box_h]
    return tuple(None if side is None else max(1, round(side)) for side in scaled)


def focus_offset(focus: str, excess_x: int, excess_y: int) -> tuple[int, int]:
    """Top-left of a box within (or, when the excess is negative, around) an image, by `fo`."""
    x = 0 if "left" in focus else excess_x if "right" in focus else excess_x // 2
    y = 0 if "top" in focus else excess_y if "bottom" in focus else excess_y // 2
    return x, y


def _scaled_to(source: Source, scale: float, max_side: int) -> pyvips.Image:
    """The whole image scaled, aspect ratio kept."""
    width, height = max(1, round(source.width * scale)), max(1, round(source.height * scale))
    check_side(width, height, max_side)
    return source.thumbnail(width, height=height, size=Size.FORCE)  # FORCE: exactly the size checked


def _cover_size(source: Source, box_w: int, box_h: int, scale: float) -> tuple[int, int]:
    """`source` scaled by `scale`, rounded up to whole pixels, and at least the box: the size that covers it. A
    product meant to be whole (the box's side over the image's, times the image's) can come out a hair above it,
    4240 × (200 / 4240) as 200.00000000000003, and its ceiling had scaled the image a pixel past the box, its last
    column cut off (one box in twenty of a photo). An excess under 1e-7 px is that noise, no part of a pixel worth
    covering."""
    return (max(box_w, math.ceil(source.width * scale - 1e-7)), max(box_h, math.ceil(source.height * scale - 1e-7)))


def _cover_crop(source: Source, box_w: int, box_h: int, scale: float, step: Step, max_side: int,
                frame_faces: bool = False) -> pyvips.Image:
    """Scale by `scale` (at least enough to cover the box, times `z`), then cut the box by `fo`. With
    `frame_faces` (a crop to both sides), `fo-face` frames the faces instead, `z` around them."""
    check_side(box_w, box_h, max_side)
    found = face_box(source) if step.focus == "face" else None
    if found is not None and frame_faces:
        return _face_frame(source, found, box_w, box_h, step.zoom)
    scale *= max(1.0, step.zoom)
    cover_w, cover_h = _cover_size(source, box_w, box_h, scale)
    if found is not None:
        left, top, width, height = found
        x, y = _centred(cover_w, cover_h, box_w, box_h, (left + width / 2) * cover_w / source.width,
                        (top + height / 2) * cover_h / source.height)
    elif without_face(step) == "auto":  # (no face found:) the most interesting point
        x, y = attention_offset(source, cover_w, cover_h, box_w, box_h)
    else:
        x, y = focus_offset(without_face(step), cover_w - box_w, cover_h - box_h)
    # lazy: only the box of the (possibly much larger) cover image is ever computed
    return source.thumbnail(cover_w, height=cover_h, size=Size.FORCE).crop(x, y, box_w, box_h)


def without_face(step: Step) -> str:
    """The focus of a step when no face is found: `fof` for `fo-face` (`auto` unless given)."""
    return step.focus_fallback if step.focus == "face" else step.focus


def _faces_of(source: Source) -> tuple[list[faces.Box], int, int]:
    """The faces of `source` (`decided_by`'s), found on a copy of it reduced to `faces.DETECT_PIXELS`, in
    that copy's pixels, and the copy's size."""
    source = source.decided_by or source
    shrink = max(1.0, math.sqrt(source.width * source.height / faces.DETECT_PIXELS))
    small_w, small_h = max(1, round(source.width / shrink)), max(1, round(source.height / shrink))
    stopping.check()
    found = faces.find_faces(in_memory(source.thumbnail(small_w, height=small_h, size=Size.FORCE)))
    stopping.check()
    return found, small_w, small_h


def face_count(source: Source) -> int:
    """How many faces `source` shows (an if block's `fc`)."""
    return len(_faces_of(source)[0])


def face_box(source: Source) -> tuple[int, int, int, int] | None:
    """The box (left, top, width, height) around the faces of `source` (`decided_by`'s), in its pixels, or
    None when it has none: the largest face and those at least `FACE_MIN_SHARE` of its size."""
    found, small_w, small_h = _faces_of(source)
    source = source.decided_by or source
    if not found:
        return None
    largest = found[0][2] * found[0][3]
    kept = [box for box in found if box[2] * box[3] >= largest * FACE_MIN_SHARE]
    left, top = min(b[0] for b in kept), min(b[1] for b in kept)
    right, bottom = max(b[0] + b[2] for b in kept), max(b[1] + b[3] for b in kept)
    to_x, to_y = source.width / small_w, source.height / small_h
    return (round(left * to_x), round(top * to_y), max(1, round((right - left) * to_x)),
            max(1, round((bottom - top) * to_y)))


def _face_frame(source: Source, found: tuple[int, int, int, int], box_w: int, box_h: int,
                zoom: float) -> pyvips.Image:
    """The box's aspect ratio framed on the faces: at `z-1` the faces' box times `FACE_MARGIN`, divided
    by `z` (below 1: more of the picture around them), never smaller than the box in the input's pixels
    (no enlarging of a face), never larger than the input."""
    left, top, width, height = found
    ratio = box_w / box_h
    frame_w = max(width * FACE_MARGIN / zoom, height * FACE_MARGIN / zoom * ratio, min(box_w, source.width))
    frame_h = frame_w / ratio
    fit = min(1.0, source.width / frame_w, source.height / frame_h)
    scale = box_w / (frame_w * fit)
    cover_w, cover_h = _cover_size(source, box_w, box_h, scale)
    x, y = _centred(cover_w, cover_h, box_w, box_h, (left + width / 2) * scale, (top + height / 2) * scale)
    return source.thumbnail(cover_w, height=cover_h, size=Size.FORCE).crop(x, y, box_w, box_h)


def cuts_faces(step: Step) -> bool:
    """Whether the step cuts out the faces' box: `cm-extract,fo-face` with no size nor position."""
    return (step.crop_mode in CUTTING and step.focus == "face" and step.width is None and step.height is None
            and (step.x, step.y, step.x_center, step.y_center) == (None,) * 4)


def _face_region(found: tuple[int, int, int, int], width: int, height: int, step: Step) -> tuple[int, int, int, int]:
    """`cm-extract,fo-face` with no w or h: the faces' box itself (Cloudinary's `c_crop,g_face`),
    divided by `z` (above 1 tighter, below 1 more around it), widened or heightened to `ar` if given,
    centred on the faces and kept inside the image: (left, top, width, height)."""
    face_w, face_h = found[2] / step.zoom, found[3] / step.zoom
    if isinstance(step.aspect_ratio, tuple):
        ratio = step.aspect_ratio[0] / step.aspect_ratio[1]
        face_w, face_h = max(face_w, face_h * ratio), max(face_h, face_w / ratio)
        fit = min(1.0, width / face_w, height / face_h)  # the whole ratio inside the image
        face_w, face_h = face_w * fit, face_h * fit
    region_w, region_h = max(1, min(width, round(face_w))), max(1, min(height, round(face_h)))
    left, top = _centred(width, height, region_w, region_h, found[0] + found[2] / 2, found[1] + found[3] / 2)
    return left, top, region_w, region_h


def _centred(width: int, height: int, box_w: int, box_h: int, centre_x: float, centre_y: float) -> tuple[int, int]:
    """The top-left of a box centred on a point, kept inside `width`×`height`."""
    return (min(max(0, round(centre_x - box_w / 2)), width - box_w),
            min(max(0, round(centre_y - box_h / 2)), height - box_h))


def attention_offset(source: Source, width: int, height: int, box_w: int, box_h: int) -> tuple[int, int]:
    """`fo-auto`: the top-left of the box centred on the most interesting point of `source` scaled to
    `width`×`height` (`decided_by`'s), as libvips' attention smartcrop places it. The point is found on a
    copy of at most `_SEARCH_PIXELS`: smartcrop decodes all it searches, and at z-2 on an 8000 px crop
    that was 1.5 GB and 40 s."""
    source = source.decided_by or source
    shrink = max(1.0, math.sqrt(width * height / _SEARCH_PIXELS))
    small_w, small_h = max(1, round(width / shrink)), max(1, round(height / shrink))
    small = in_memory(source.thumbnail(small_w, height=small_h, size=Size.FORCE))
    _, found = small.smartcrop(min(small_w, max(1, round(box_w / shrink))), min(small_h, max(1, round(box_h / shrink))),
                               interesting=pyvips.enums.Interesting.ATTENTION, attention_x=True, attention_y=True)
    return _centred(width, height, box_w, box_h, (found["attention_x"] + 0.5) * width / small_w,
                    (found["attention_y"] + 0.5) * height / small_h)


def _padded_region(image: pyvips.Image, left: int, top: int, width: int, height: int,
                   colour: RGBA | None) -> pyvips.Image:
    """The `width`×`height` region at (`left`, `top`), `colour` wherever it leaves the image."""
    image, values = background(image, colour)
    if left >= image.width or top >= image.height or left + width <= 0 or top + height <= 0:
        # nothing of the image in the region (libvips' embed refuses that): background only
        canvas = pyvips.Image.black(width, height).new_from_image(values)
        return canvas.cast(image.format).copy(interpretation=image.interpretation)
    return image.embed(-left, -top, width, height, extend=pyvips.enums.Extend.BACKGROUND, background=values)


def _extract(source: Source, step: Step, box_w: int | None, box_h: int | None, max_side: int) -> pyvips.Image:
    """`cm-extract` / `cm-pad_extract`: a region of the input at its own scale."""
    image = source.decode()
    width, height = image.width, image.height
    if cuts_faces(step) and (found := face_box(source)) is not None:
        return image.crop(*_face_region(found, width, height, step))
    left = step.x if step.x is not None else 0
    top = step.y if step.y is not None else 0
    w = box_w if box_w is not None else width - left
    h = box_h if box_h is not None else height - top
    if step.crop_mode == "pad_extract_no_shrink":  # pads where the box is larger, never cuts the image
        w, h = max(w, width), max(h, height)
    if w <= 0 or h <= 0:
        raise BadRequest(f"invalid transformation: cm-{step.crop_mode}: the region starts outside the "
                         f"{width}x{height} image")
    if step.x_center is not None or step.y_center is not None:
        left = (step.x_center if step.x_center is not None else width // 2) - w // 2
        top = (step.y_center if step.y_center is not None else height // 2) - h // 2
    elif step.x is None and step.y is None:
        found = face_box(source) if step.focus == "face" else None
        if found is not None:  # centred on the faces; inside the image where the region fits
            centre_x, centre_y = found[0] + found[2] / 2, found[1] + found[3] / 2
            left, top = (_centred(width, height, w, h, centre_x, centre_y) if w <= width and h <= height
                         else (round(centre_x - w / 2), round(centre_y - h / 2)))
        elif without_face(step) == "auto" and w <= width and h <= height:
            left, top = attention_offset(source, width, height, w, h)
        else:
            left, top = focus_offset(without_face(step), width - w, height - h)
    if step.crop_mode not in CUTTING:
        check_side(w, h, max_side)
        return _padded_region(image, left, top, w, h, step.colour)
    inside_left, inside_top = max(left, 0), max(top, 0)
    inside_w, inside_h = min(left + w, width) - inside_left, min(top + h, height) - inside_top
    if step.crop_mode == "extract_within" and inside_w > 0 and inside_h > 0:
        return image.crop(inside_left, inside_top, inside_w, inside_h)
    if left < 0 or top < 0 or left + w > width or top + h > height:
        raise BadRequest(f"invalid transformation: cm-{step.crop_mode}: the region {w}x{h} at ({left}, {top}) "
                         f"leaves the {width}x{height} image")
    return image.crop(left, top, w, h)


def _pad_resize(source: Source, step: Step, box_w: int, box_h: int, max_side: int) -> pyvips.Image:
    """Fit inside the box (`pad_resize_no_enlarge`: never upscaled), then pad to exactly the box with
    `bg`; `fo-left` etc. put the padding opposite."""
    check_side(box_w, box_h, max_side)
    scale = min(box_w / source.width, box_h / source.height)
    if step.crop_mode == "pad_resize_no_enlarge":
        scale = min(scale, 1.0)
    image = _scaled_to(source, scale, max_side)
    x, y = focus_offset(step.focus, box_w - image.width, box_h - image.height)
    if isinstance(step.background, Blurred):
        canvas = _blurred_canvas(source, box_w, box_h, step.background)
        if not image.hasalpha():
            return canvas.insert(image if image.bands >= 3 else _like(image), x, y)
        # what is transparent in the image shows the blurred backdrop behind it, not white
        image = image if image.bands >= 3 else image.colourspace(pyvips.enums.Interpretation.SRGB)
        return canvas.composite2(image, pyvips.enums.BlendMode.OVER, x=x, y=y).flatten()
    image, colour = background(image, step.colour)
    return image.embed(x, y, box_w, box_h, extend=pyvips.enums.Extend.BACKGROUND, background=colour)


def _like(image: pyvips.Image) -> pyvips.Image:
    """sRGB without alpha (flattened on white), as `_blurred_canvas` makes it."""
    if image.bands < 3:
        image = image.colourspace(pyvips.enums.Interpretation.SRGB)
    return image.flatten(background=list(WHITE[:3])) if image.hasalpha() else image


def _blurred_canvas(source: Source, width: int, height: int, blurred: Blurred) -> pyvips.Image:
    """`bg-blurred`: the image's centre at the box's aspect ratio, blurred, its brightness shifted.
    Blurred on a copy of at most 1/4 of the box's sides (a blur hides the detail lost) and scaled
    back up. The centre is cut before anything is enlarged: scaling the whole image to cover a box of
    another shape first (8192×1 from a 32 px frame: 2048×2048, for each of 99 frames) made images far
    larger than the box or the source, 20 s and 1.7 GB for a 5 KB GIF. Nothing larger than the
    source (shrunk on load where it can) or the small copy is made."""
    small_w, small_h = max(1, width // 4), max(1, height // 4)
    # the source's largest centre region of the box's aspect ratio, in its pixels
    region_w = min(source.width, source.height * width / height)
    region_h = min(source.height, source.width * height / width)
    shrink = min(1.0, max(small_w / region_w, small_h / region_h))  # never above 1: no enlarging here
    if shrink < 1:
        image = source.thumbnail(max(1, round(source.width * shrink)), height=max(1, round(source.height * shrink)),
                                 size=Size.FORCE)
    else:
        image = source.decode()
    cut_w = max(1, min(image.width, round(region_w * image.width / source.width)))
    cut_h = max(1, min(image.height, round(region_h * image.height / source.height)))
    region = image.crop((image.width - cut_w) // 2, (image.height - cut_h) // 2, cut_w, cut_h)
    small = _like(region.thumbnail_image(small_w, height=small_h, size=Size.FORCE))  # enlarged, if at all, from the cut
    small = small.gaussblur(max(0.5, blurred.radius / 8)) + blurred.brightness
    canvas = small.cast(pyvips.enums.BandFormat.UCHAR).copy(interpretation=pyvips.enums.Interpretation.SRGB)
    scaled = canvas.resize(width / canvas.width, vscale=height / canvas.height)
    return scaled.embed(0, 0, width, height, extend=pyvips.enums.Extend.COPY)  # exactly the box, whatever rounding


def dominant_colour(source: Source, border: bool = False) -> RGBA:
    """`bg-dominant`: the most common colour of the image, in bins of 32 levels a channel (the mean
    of the pixels of the fullest bin), found on a 32 px copy; `bg-dominant_border`: of that copy's
    outer ring only (a frame about 1/32 of the image's side deep, Cloudinary's `b_auto:border`)."""
    small = _like(source.thumbnail(32))
    pixels = bytes(small.cast("uchar").write_to_memory())
    width, height = small.width, small.height
    counts: dict[tuple[int, int, int], list[int]] = {}
    for i in range(0, len(pixels), 3):
        x, y = i // 3 % width, i // 3 // width
        if border and 0 < x < width - 1 and 0 < y < height - 1:
            continue
        r, g, b = pixels[i], pixels[i + 1], pixels[i + 2]
        total = counts.setdefault((r >> 5, g >> 5, b >> 5), [0, 0, 0, 0])
        total[0] += 1
        total[1] += r
        total[2] += g
        total[3] += b
    n, r, g, b = max(counts.values())
    return round(r / n), round(g / n), round(b / n), 255


#: crop modes that scale the image whole to the box (`fit_scale`), keeping its aspect ratio
FITS = ("at_max", "at_max_enlarge", "enlarge_to_fit", "at_least")
#: crop modes whose output is never larger than their input
NEVER_ENLARGED = ("at_max", "maintain_ratio_no_enlarge")


def side_scale(step: Step, width: int, height: int, box_w: int | None, box_h: int | None) -> float:
    """The scale of a `width`×`height` input when one side of the box is given (the other follows the
    aspect ratio): `c-at_max` never enlarges, `c-enlarge_to_fit` never shrinks."""
    scale = box_w / width if box_w is not None else box_h / height
    if step.crop in ("at_max", "maintain_ratio_no_enlarge"):
        return min(scale, 1.0)
    return max(scale, 1.0) if step.crop == "enlarge_to_fit" else scale


def fit_scale(step: Step, width: int, height: int, box_w: int, box_h: int) -> float:
    """The scale of a `FITS` crop mode to a whole box: inside it (`at_max` never enlarging, `enlarge_to_fit`,
    Cloudinary's `mfit`, changing only an image smaller than the box), or covering it (`at_least`)."""
    fit = min(box_w / width, box_h / height)
    return {"at_least": max(box_w / width, box_h / height), "enlarge_to_fit": max(fit, 1.0),
            "at_max": min(fit, 1.0)}.get(step.crop, fit)


def resize(source: Source, step: Step, max_side: int) -> pyvips.Image:
    """w, h, ar, dpr, c, cm, fo, x/y/xc/yc, z."""
    width, height = source.width, source.height
    box_w, box_h = target_box(step, width, height)
    if step.extracts:
        return _extract(source, step, box_w, box_h, max_side)
    if box_w is None and box_h is None:
        return _cover_crop(source, width, height, 1.0, step, max_side) if step.zoom > 1 else source.decode()
    if box_w is None or box_h is None:  # one side given: the other follows the aspect ratio
        scale = side_scale(step, width, height, box_w, box_h)
        if step.zoom > 1 and step.crop in ("maintain_ratio", "maintain_ratio_no_enlarge"):
            return _cover_crop(source, max(1, round(width * scale)), max(1, round(height * scale)),
                               scale, step, max_side)
        return _scaled_to(source, scale, max_side)
    if step.pads:
        return _pad_resize(source, step, box_w, box_h, max_side)
    if step.crop == "force":
        check_side(box_w, box_h, max_side)
        return source.thumbnail(box_w, height=box_h, size=Size.FORCE)
    if step.crop in FITS:
        return _scaled_to(source, fit_scale(step, width, height, box_w, box_h), max_side)
    scale = max(box_w / width, box_h / height)
    if step.crop == "maintain_ratio_no_enlarge":
        scale = min(scale, 1.0)
        box_w, box_h = min(box_w, width), min(box_h, height)
    return _cover_crop(source, box_w, box_h, scale, step, max_side, frame_faces=step.frames_faces)


def trim(image: pyvips.Image, threshold: int) -> pyvips.Image:
    """`t`: cut away borders of the top-left pixel's colour (within `threshold`), or, when that pixel
    is transparent, the transparent borders (`trim_box`)."""
    image = in_memory(image)
    box = trim_box(image, threshold)
    return image if box is None else image.crop(*box)


def trim_box(image: pyvips.Image, threshold: int) -> tuple[int, int, int, int] | None:
    """The box (left, top, width, height) that `t` keeps of `image` (in memory), None for the whole of
    it (a uniform image, or one too thin to search).

    libvips' trim smooths with a median filter that costs about 0.6 CPU-s per megapixel, so on a
    larger image the box is found on a copy shrunk to about `_SEARCH_PIXELS` and scaled back
    outwards: it keeps at most `shrink - 1` pixels of border, and never cuts into the content."""
    if min(image.width, image.height) < 3:  # libvips' trim filters with a 3×3 window
        return None
    shrink = trim_search_shrink(image.width, image.height)
    search = image.shrink(shrink, shrink) if shrink > 1 else image
    if min(search.width, search.height) < 3:  # a long thin strip: search the whole of it
        search, shrink = image, 1
    if search.hasalpha() and search[search.bands - 1].getpoint(0, 0)[0] <= threshold:
        # a transparent corner: the border is what is transparent, whatever colour its pixels hold
        # (flattened on black, a logo's black parts would be border too)
        corner = search[search.bands - 1]
    elif search.hasalpha():  # flattened before the shrink, which had averaged the colour under transparent pixels
        # into the ones that show (a dithered cut-out's edge over white hidden pixels came out grey: content)
        corner = image.flatten().shrink(shrink, shrink) if shrink > 1 else image.flatten()
    else:
        corner = search
    left, top, width, height = corner.find_trim(threshold=threshold, background=corner.getpoint(0, 0))
    if width == 0 or height == 0:  # a uniform image: nothing to keep but itself
        return None
    right = image.width if left + width == search.width else (left + width) * shrink
    bottom = image.height if top + height == search.height else (top + height) * shrink
    return left * shrink, top * shrink, right - left * shrink, bottom - top * shrink


def trim_search_shrink(width: int, height: int) -> int:
    """How much `trim_box` shrinks a `width`×`height` image to search it: to about `_SEARCH_PIXELS` (1 to 4 MP;
    a long thin strip that it would leave under 3 px a side is searched whole)."""
    return max(1, math.isqrt(width * height // _SEARCH_PIXELS))


def rotate(image: pyvips.Image, degrees: float, colour: RGBA | None, max_side: int) -> pyvips.Image:
    """`rt`, clockwise; other angles than right angles fill the corners with `colour` (`background`'s
    default without one)."""
    if degrees == 0:
        return image
    if degrees % 90 == 0:
        check_side(image.width, image.height, max_side)
        image = in_memory(image)  # read out of order: in memory, at the step's (shrunk) size
        return image.rot(f"d{int(degrees)}")  # one rotation (a dict of the three built all three)
    radians = math.radians(degrees)
    width = abs(image.width * math.cos(radians)) + abs(image.height * math.sin(radians))
    height = abs(image.width * math.sin(radians)) + abs(image.height * math.cos(radians))
    check_side(math.ceil(width), math.ceil(height), max_side)
    image, colour_values = background(in_memory(image), colour, resident=True)
    return image.rotate(degrees, background=colour_values)


def flip(image: pyvips.Image, how: str | None, max_side: int) -> pyvips.Image:
    if how in ("h", "h_v"):
        image = image.fliphor()
    if how in ("v", "h_v"):
        check_side(image.width, image.height, max_side)
        image = in_memory(image).flipver()  # bottom row first: out of order for a streamed image
    return image


def resolved(step: Step, source: Source, original: tuple[int, int], base: tuple[int, int] | None = None) -> Step:
    """The step with its expressions evaluated (`base`: the size of the image a layer's step is drawn
    on) and `bg-dominant`, `bg-dominant_border` and `cr` without a source colour turned into the colour they
    name: the image's as the step starts, before its crop, fill and effects (`cr-<to>` found its colour on
    the step's result: the padding or a turn's corners were the colour replaced)."""
    step = with_sizes(step, original, (source.width, source.height), base)
    if step.background in DOMINANT:
        step = replace(step, background=dominant_colour(source, border=step.background == "dominant_border"))
    if (replacement := step.colour_replacement) is not None and replacement.source is None:
        step = replace(step, colour_replacement=replacement._replace(source=dominant_colour(source)))
    return step


#: the step fields that may hold an expression: their parameter, and the range of their values
EXPRESSION_FIELDS = {"width": ("w", 1e-9, MAX_PIXELS), "height": ("h", 1e-9, MAX_PIXELS),
                     "aspect_ratio": ("ar", 1e-9, MAX_PIXELS), "x": ("x", 0, MAX_PIXELS),
                     "y": ("y", 0, MAX_PIXELS), "x_center": ("xc", 0, MAX_PIXELS),
                     "y_center": ("yc", 0, MAX_PIXELS), "border": ("b", 0, MAX_BORDER),
                     "gradient": ("sp", 0.01, MAX_PIXELS)}


def with_sizes(step: Step, original: tuple[int | None, int | None], current: tuple[int | None, int | None],
               base: tuple[int | None, int | None] | None = None) -> Step:
    """The step's expressions (`EXPRESSION_FIELDS`) evaluated for an original and a step input of
    these sizes (and, in a layer, the base it is drawn on). Where a size is unknown (None), so is a
    side that an expression gives (None), a position is taken as 0, a border as the widest and a
    gradient's stop as the farthest: the cost estimate of a URL before its original is read. Raises
    `BadRequest`."""
    expressions = {name: expression for name in EXPRESSION_FIELDS
                   if isinstance(expression := _expression_of(step, name), Expression)}
    if not expressions:
        return step
    known = {**sizes("i", *original), **sizes("c", *current)} if None not in (*original, *current) else None
    if known is not None and base is not None and None not in base:
        known.update(sizes("b", *base))
    values: dict[str, object] = {}
    for name, expression in expressions.items():
        key, low, high = EXPRESSION_FIELDS[name]
        if known is None or (expression.reads_base and "bw" not in known):
            result = None if name in ("width", "height", "aspect_ratio") else 0 if name not in ("border", "gradient") \
                else high
        else:
            result = evaluated(expression, key, known, low=low, high=high)
        if name == "aspect_ratio":
            values[name] = None if result is None else (result, 1.0)
        elif name in ("width", "height"):
            values[name] = None if result is None else float(max(1, round(result)))
        elif name == "border":  # an expression that comes to no width (`b-ch_mod_5_yellow`): no border
            values[name] = (round(result), step.border[1]) if round(result) else None
        elif name == "gradient":  # the stop point: a fraction up to 1, else pixels, as a number would be
            values[name] = (*step.gradient[:3], result)
        else:
            values[name] = round(result)
    return replace(step, **values)


@dataclass(frozen=True)
class Arc:
    """`e-distort-a-<degrees>`'s canvas: its size, its top-left corner seen from the circle's centre (y
    down), and the radius of the image's top edge (its bottom edge's is that less the image's height)."""
    degrees: int
    width: int
    height: int
    left: float
    top: float
    outer: float


def arc_of(width: int, height: int, degrees: int) -> Arc:
    """The arc an image of `width` × `height` bends into: its middle row keeps its length on a circle's
    `degrees`, the top edge outside (an arc too tight for the image's height takes the bottom edge to the
    centre instead); the canvas is the smallest that holds it."""
    sweep = abs(degrees)
    middle = max(width / math.radians(sweep), height / 2)
    radii = (middle - height / 2, middle + height / 2)
    # the extremes lie at the ends of the sweep or where it crosses an axis
    angles = [math.radians(a) for a in (-sweep / 2, sweep / 2, 0, -90, 90, -180, 180) if abs(a) <= sweep / 2]
    xs = [r * math.sin(a) for r in radii for a in angles]
    ys = [-r * math.cos(a) for r in radii for a in angles]
    left, top = min(xs), min(ys)
    return Arc(degrees, max(1, math.ceil(max(xs) - left)), max(1, math.ceil(max(ys) - top)), left, top, radii[1])


def perspective_of(width: int, height: int, corners: tuple[int, ...]) -> tuple[int, int, tuple[int, ...]]:
    """`e-distort-p`'s canvas and the corners on it: the image's rectangle, grown on each side a corner goes
    past (as imgix documents its `distort`), so that nothing of the image is cut off."""
    left, top = min(0, *corners[::2]), min(0, *corners[1::2])
    shifted = tuple(value - (top if i % 2 else left) for i, value in enumerate(corners))
    return max(width, *corners[::2]) - left, max(height, *corners[1::2]) - top, shifted


def distort(image: pyvips.Image, distortion: Distortion | None, colour: RGBA | None, max_side: int) -> pyvips.Image:
    """`e-distort`: each pixel of the result sampled (bilinear) where the distortion takes it from; what the
    image does not cover is `bg`, as `rt`'s corners."""
    if distortion is None:
        return image
    arc = arc_of(image.width, image.height, distortion.values[0]) if distortion.kind == "a" else None
    if arc:
        width, height = arc.width, arc.height
    else:
        width, height, corners = perspective_of(image.width, image.height, distortion.values)
    check_side(width, height, max_side)
    image, colour_values = background(image, colour)
    # read out of order: in memory, framed by a pixel of its own edge, so that a point in the image's outer
    # half pixel samples the image, not `bg` (the indexes count from the frame's corner)
    framed = in_memory(image.embed(1, 1, image.width + 2, image.height + 2, extend=pyvips.enums.Extend.COPY))
    canvas = pyvips.Image.xyz(width, height)  # each pixel's position (its centre: + 0.5, in the constants)
    index = (_arc_index(canvas, arc, image.width, image.height) if arc
             else _perspective_index(canvas, corners, image.width, image.height))
    return framed.mapim(index.cast(pyvips.enums.BandFormat.FLOAT), interpolate=pyvips.Interpolate.new("bilinear"),
                       background=colour_values, extend=pyvips.enums.Extend.BACKGROUND)


def _perspective_index(canvas: pyvips.Image, corners: tuple[int, ...], width: int, height: int) -> pyvips.Image:
    """Where in the framed image each pixel of the canvas comes from, the image's corners moved to `corners`:
    the inverse of the projective map that takes the unit square to them (Heckbert's closed form), scaled to
    the image. Few libvips operations a pixel (each costs about as much as the sampling): a matrix, a division."""
    x0, y0, x1, y1, x2, y2, x3, y3 = corners
    across, down = x0 - x1 + x2 - x3, y0 - y1 + y2 - y3  # both 0: a parallelogram, an affine map
    dx1, dx2, dy1, dy2 = x1 - x2, x3 - x2, y1 - y2, y3 - y2
    determinant = dx1 * dy2 - dx2 * dy1  # not 0: the corners make a convex shape (`options._distort`)
    g, h = (across * dy2 - dx2 * down) / determinant, (dx1 * down - across * dy1) / determinant
    a, b, c = x1 - x0 + g * x1, x3 - x0 + h * x3, x0
    d, e, f = y1 - y0 + g * y1, y3 - y0 + h * y3, y0
    # the adjugate of [[a b c] [d e f] [g h 1]] takes a canvas point (x, y, 1) back to the square (u, v) × w
    rows = [[e - f * h, c * h - b, b * f - c * e], [f * g - d, a - c * g, c * d - a * f],
            [d * h - e * g, b * g - a * h, a * e - b * d]]
    rows = [[p, q, p / 2 + q / 2 + r] for p, q, r in rows]  # from the pixel's centre
    weight = rows[2]
    # (u × width + 0.5, v × height + 0.5) × w: the source pixel's position in the frame, as `mapim` reads it
    matrix = [[scale * p + w / 2 for p, w in zip(row, weight)]
              for scale, row in ((width, rows[0]), (height, rows[1]))]
    mapped = canvas.bandjoin_const([1]).recomb(pyvips.Image.new_from_list([*matrix, weight]))
    index = mapped[0:2] / mapped[2]
    # beyond the map's horizon (w 0, or of the other sign than within the corners) a point would come back
    # into the square (a division by 0 gives 0 in libvips): put outside the image, where the horizon
    # crosses the canvas (seldom: the corners must shrink a side to a point beyond the canvas' edge)
    def weight_at(x: float, y: float) -> float:
        return weight[0] * x + weight[1] * y + weight[2]
    within = math.copysign(1, weight_at(sum(corners[::2]) / 4, sum(corners[1::2]) / 4))
    if all(weight_at(x, y) * within > 0 for x in (0, canvas.width) for y in (0, canvas.height)):
        return index
    return (mapped[2] * within > 1e-9).ifthenelse(index, -2)


def _arc_index(canvas: pyvips.Image, arc: Arc, width: int, height: int) -> pyvips.Image:
    """Where in the framed image each pixel of the arc's canvas comes from: across, its angle from straight
    up over the sweep; down, its distance in from the top edge's radius. Downwards: the upward arc of the
    image upside down, turned upside down."""
    downwards = arc.degrees < 0
    # (−x, y) from the circle's centre, of each pixel's centre (downwards: of the pixel mirrored top to bottom)
    from_top = arc.height - 0.5 + arc.top if downwards else 0.5 + arc.top
    position = canvas.linear([-1, -1 if downwards else 1], [-(0.5 + arc.left), from_top])
    # libvips' atan2 of (−x, y): 180 straight up, growing clockwise, in 0–360
    angle = position[0].math2(position[1], "atan2")
    across = angle.linear(width / abs(arc.degrees), width / 2 + 0.5 - 180 * width / abs(arc.degrees))
    radius = ((position * position).bandmean() * 2) ** 0.5
    down = radius.linear(1, height + 0.5 - arc.outer) if downwards else radius.linear(-1, arc.outer + 0.5)
    return across.bandjoin(down)


def _expression_of(step: Step, name: str) -> object:
    """The field's value, a border's width or a gradient's stop point."""
    value = getattr(step, name)
    if value is None or name not in ("border", "gradient"):
        return value
    return value[0] if name == "border" else value[3]


def apply_geometry(source: Source, step: Step, max_side: int, layer: bool = False) -> pyvips.Image:
    """`layer`: the image is drawn over another, so the corners a turn or a bend opens are transparent
    without a `bg`, as a block's and a text's (on a base image without alpha they are white)."""
    if step.trim is not None:
        source = Source.of_image(trim(source.decode(), step.trim))
    image = resize(source, step, max_side)
    corners = step.colour or (TRANSPARENT if layer else None)
    image = rotate(image, step.rotation, corners, max_side)
    return distort(flip(image, step.flip, max_side), step.distort, corners, max_side)
