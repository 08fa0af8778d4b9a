"""The work one URL asks for, held to `[limits] max_cost` before any pixel is made.

    cost = frames × ( Σ over steps of  output megapixels × (1 + the weights of the step's operations
                                                            + LAYER_WEIGHT × its layers)
                                     + its trim's work (`_trim_cost`)        (when the step trims)
                                     + FACE_SEARCH                           (each time it looks for faces)
                                     + BLURRED_FRAME                         (a `bg-blurred` padding)
                                     + each layer's own work (its steps; a text's estimated pixels)
                      + Σ over the formats encoded of  the encode of a frame   (`encode_cost`) )
           + Σ over the originals decoded (each frame of the base, each layer's) of  its decode  (`decode_cost`)

The unit is a megapixel of plain resize-and-encode (about 20 ms of one core for a downscale); each
weight is what an operation costs on top of that per megapixel, measured on a 4 MP photo
(benchmarks/README.md). `bl-100` on an 8192×8192 output is 67 × (1 + 3.3) ≈ 290: over the default
budget of 200, which admits an 8192×8192 output with light effects, or ten chained steps of 2000 px.

The encode counts beyond the unit's JPEG (`encode_cost`). GIF and AVIF, whose libvips encoders never
look at the kill flag within an image, so the render deadline (`render_timeout`,
edge/transform/stopping.py) cannot stop them: GIF (libimagequant quantises each frame: `GIF_WEIGHT` ×
frame megapixels + `GIF_FRAME`, for every frame an animation keeps) and AVIF
(libaom: output megapixels × an `AVIF_*_WEIGHT` by quality, times a factor of `[defaults]
avif_effort`), and an indexed PNG (`PALETTE_PNG_WEIGHT`: libimagequant too). WebP and PNG (`WEBP_*_WEIGHT`,
`PNG_WEIGHT`): the deadline stops them, but a thread held until it does is the stall the budget refuses. The
weights are CPU medians of the encode alone on a 12 MP photo-like JPEG (tests/imagecorpus.py) and its
animated frames, rounded up (AVIF's: the most any content took, noise), so that an encode the default budget
admits takes at most ~5 s of one core, an animation's included: every frame is encoded,
and a deadline that stops one between two frames would let each new URL of a large animation hold a
render thread (and ~20 s of CPU) for the whole `render_timeout`. `f-auto` never answers 400 for its format alone:
over budget, it falls back to the format the browser would get without AVIF, then to JPEG/PNG
(`check_render_cost`). Nor does a URL that names no format (`falls_back`): the path's extension's format, or the
original's own, over budget is WebP for an AVIF, else JPEG/PNG/GIF (a 12 MP AVIF original's own URL had been a
400: its AVIF encode is ~600 units).

It is checked twice. At parse time (`check_cost`, before the original is fetched) the sizes the URL
alone implies are used, a side it leaves open counting as 1 px: what no original can make cheap is
refused without a fetch; the encode is counted there when the URL names the format (`f-gif`, `f-avif`; not
a path's extension, whose format `falls_back`). Once the original's header is read (`check_render_cost` with
its size, frames and format, before any pixel is decoded) the same sum is taken with every size and the
formats known, and the decodes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from ..config import Defaults, Limits
from ..errors import BadRequest
from .colours import Blurred
from .encode import avif_quality
from .formats import (AUTO_AVIF, AUTO_LEGACY, AUTO_MODERN, AUTO_WEBP, HEIC_LOADER, KEEP_SOURCE, SMALLEST,
                      chosen_by_accept, final_formats, max_side)
from .geometry import (DPR_MAX_SIDE, FITS, NEVER_ENLARGED, arc_of, capped_output, check_side, cuts_faces, fit_scale,
                       perspective_of, side_scale, target_box, times_dpr, trim_search_shrink, with_sizes)
from .layers import CANVAS, Layer, TextStyle, sized
from .options import DEFAULT_STEP, Step, Transformation

if TYPE_CHECKING:
    from .render import ImageHeader

#: per output megapixel, on top of 1
BLUR_PER_RADIUS = 1 / 30  # bl-N: a gaussian of sigma N/2, separable: cost grows with the radius
SHARPEN_WEIGHT = 4.0
USM_WEIGHT, USM_PER_SIGMA = 0.5, 0.1
CONTRAST_WEIGHT = 0.7  # a histogram of the step's output, then a stretch
AUTO_WEIGHT = 1.5  # e-autocolor (a histogram a band), e-autobrightness (the mean grey, then a gamma)
#: e-brightness, e-negate, e-blackwhite, e-red/green/blue, e-colorize, e-opacitythreshold and the tables
#: (e-sigmoidcontrast, e-linearcontrast, e-gamma): one pass, a value at a time
LINEAR_WEIGHT = 0.3
HSB_WEIGHT = 1.2  # e-brightnesshsb: each pixel's largest value, then a factor of its own, in floats
VIGNETTE_WEIGHT = 1.5  # e-vignette: a float factor the size of the image (a row plus a column), multiplied
REPLACE_WEIGHT = 6.5  # cr: to CIE Lab and back (each a power a value), a distance, a chroma and a blend, in floats
VIBRANCE_WEIGHT = 2.5  # e-vibrance: each pixel's spread and grey, then a matrix of its own, in floats
RECOMB_WEIGHT = 1.0  # e-saturation, e-sepia, e-hue: a 3×3 matrix a pixel, in floats
PIXELATE_WEIGHT = 0.3  # e-pixelate: a box shrink, then a zoom back
ROUNDED_WEIGHT = 3.0  # r-N: a float coverage mask the size of the image
OPACITY_WEIGHT = 0.6
GRADIENT_WEIGHT = 3.0  # a float layer the size of the image, composited
SHADOW_WEIGHT, SHADOW_PER_BLUR = 2.0, 0.1  # the alpha blurred (sigma up to 15), composited
ROTATE_WEIGHT = 1.5  # rt- other than a right angle: an affine with interpolation
DISTORT_WEIGHT = 4.5  # e-distort: a float map of the canvas computed, then sampled (bilinear) from memory
#: a trimming step (`t`): per input megapixel, its input decoded whole (no shrink on load) and reduced; per
#: megapixel of the reduced copy searched (1 to 4 MP, `geometry.trim_search_shrink`), libvips' median filter.
#: CPU, libvips 8.18, a photo in a white frame to 300 px, over the same without `t`: 0.75 MP 0.07 s, 3 MP (searched
#: whole) 0.44 s, 12 MP 0.30 s, 48 MP 0.50 s, 91 MP 0.92 s (3 a megapixel read had refused a 91 MP original's
#: thumbnail, admitted 0.75 MP for a third of its search)
TRIM_WEIGHT, TRIM_SEARCH_WEIGHT = 0.6, 7.5
#: a face search (`fo-face`, `e-blurfaces`, `e-pixelatefaces`), whatever the input's size (a reduced copy of
#: 0.5 MP: 7–13 times an attention search of 1 MP, benchmarks/bench_faces.py), per step and frame
FACE_SEARCH = 8.0
#: per output megapixel of a step, for each layer drawn on it (a composite over the whole result)
LAYER_WEIGHT = 0.5
#: the steps of an image with an alpha band, times: four bands for three, and premultiplied where pixels mix
#: (resizes, blurs, sharpening); 12 MP RGBA against RGB, the same URL: 1.3–1.8 × the CPU, upscales 1.4–1.7 ×
ALPHA_WEIGHT = 1.5
#: a text layer's estimated pixels per character, in units of its font size squared
TEXT_AREA_PER_CHARACTER = 0.8
#: a text's line after a line break, in units of its font size (DejaVu Sans: 1.08–1.17) unless `lh` says more
TEXT_LINE_HEIGHT = 1.2
#: what Pango breaks a line at (a text's other control characters are refused: `layers.read_input`)
_LINE_BREAKS = re.compile("[\n\u2028\u2029]")
#: a text's outline (`fol-<w>`): a rank filter 2w+1 px wide over its box, per megapixel of the box and
#: pixel of width (2.4 MP, one thread, libvips 8.18: 138 ms at 11 px, 534 at 51, 1040 at 101; a unit 25 ms)
OUTLINE_PER_SIDE = 0.18
#: `bg-blurred` padding, per output megapixel (the blurred copy, 1/16 of the box, scaled up over the
#: box: 12 ms/MP at 4000² and 8192², radius 10–100) and per step and frame (cutting the centre, the small
#: copy and its operations: 17 ms a frame of a 99-frame GIF)
BLURRED_WEIGHT = 1.0
BLURRED_FRAME = 1.0

# Encodes, per frame, in units; CPU medians of the encode alone, `concurrency_set(1)`, libvips 8.18:
#: GIF at the node's `effort=1` (encode.py), per output megapixel and per frame, above every measurement
#: (photo-like content, the quantiser's worst): frames of 32×32 1.9 ms, 100×100 7.0 ms, 250×250 29 ms,
#: 500×500 105 ms, 1000×750 277 ms; one of 2000×1500 1.17 s, of 4000×3000 4.42 s. The default budget
#: admits a still GIF of ~9 MP (~3.3 s) and as many megapixels of an animation's frames: 50 frames of
#: 480×270 cost ~164 units (1.9 s photo-like, 0.13 s of flat colours), 100 of them ~328 (4.2 s) are
#: refused; 99 frames of 100×100 (~0.7 s) cost ~52.
GIF_WEIGHT, GIF_FRAME = 22.0, 0.3
#: AVIF at `avif_effort = 2`, per output megapixel, priced for the content libaom takes longest over, since the
#: deadline cannot stop it (benchmarks/bench_avif_cost.py, the same per megapixel at 2 and 12 MP), by AVIF's own
#: quality (`encode.avif_quality` of the URL's: q-80 is 56, above 85 from q-94): up to 85, up to 46 (noise; grainy
#: photos 25-41, photos 9-20), 86-100 up to 71 (grainy photos 48-71, photos 15-44), lossless up to 98 (an
#: overexposed grainy photo; noise 51, photos 37-54). The default budget so admits an AVIF of ~4 MP (2560×1440:
#: ~181 units, 3.4 s of one core at most) and ~2.6 MP from q-94, where a 12 MP one of noise took 10 s at AVIF's
#: 80 and 17 s at its 90; `f-auto` serves WebP beyond.
AVIF_WEIGHT, AVIF_FINE_WEIGHT, AVIF_LOSSLESS_WEIGHT = 48.0, 75.0, 105.0
AVIF_FINE_QUALITY = 85
#: the AVIF weight's factor by `avif_effort` 0–9 (measured 0.4, 0.53, 1, 1.8, 11.5–13, 10.9, 22.7 at
#: 0.2–3 MP; 7–9 unmeasured, doubled at each level)
AVIF_EFFORT_FACTORS = (0.5, 0.6, 1.0, 2.0, 13.0, 13.0, 25.0, 50.0, 100.0, 200.0)
#: WebP and PNG, per output megapixel beyond the unit's JPEG encode (12 MP photo / 0.75 MP: WebP q-80
#: 5.3 / 3.8 units, q-100 7.1 / 6.1 and 14 on an 8192×8192 enlargement, lossless 35 / 24; PNG 2.8 /
#: 2.6; JPEG q-100 1.0 / 1.6). The deadline can stop these, but only after `render_timeout`: a thread
#: held 20 s by `w-8192,q-100,f-webp` (once ~50 units) is the stall the budget is there to refuse. Lossless is priced
#: for the content it takes longest over, as AVIF is: a photo decoded from lossy frames, 45 units a megapixel as
#: stills and 62 animated (libwebp's animation encoder tries each frame whole and as a change; priced 40, a 30-frame
#: 480×270 animation took 6-9 s of CPU for 164 units: animation probe).
WEBP_WEIGHT, WEBP_FINE_WEIGHT, WEBP_LOSSLESS_WEIGHT = 6.0, 14.0, 64.0
WEBP_FINE_QUALITY = 90
PNG_WEIGHT = 3.0
#: a palette PNG (of an indexed original: `render.ImageHeader.palette`), its quantisation at `effort=1` included,
#: which no deadline stops, priced for the content it takes longest over: 4 MP of RGB photo or noise 1.0-1.45 s of
#: one core, of RGBA with varied alpha 2.9 s, 12 MP of RGBA noise 7.0 s (a plain PNG 0.25 s for 4 MP). The default
#: budget admits ~6 MP; an output over budget is a plain PNG
PALETTE_PNG_WEIGHT = 30.0
#: Decoding an original, per source megapixel of each frame decoded (the base's, each layer's), on top of its
#: output's units: what a URL that shrinks a large original to nothing still costs (the base and ten layers of a
#: 100 MP JPEG at `w-1` had cost 0.001 units and taken 3.6 s). Noise's CPU, the slowest content, rounded up (a
#: photo's in brackets; `benchmarks/bench_decode_cost.py`): a JPEG shrunk on load 0.7 (0.2), a progressive one
#: 2.5 (0.75: every scan decoded whole before any row, whatever the shrink, which nothing stops), WebP 2.0
#: (0.6; lossless 1.25), HEIC and AVIF 4.0 (HEVC: 3.75), any other 1.0 (PNG, TIFF 0.7, GIF 0.55)
DECODE_WEIGHTS = {"jpegload_source": 0.7, "webpload_source": 2.0, "heifload_source": 4.0, HEIC_LOADER: 4.0}
DECODE_WEIGHT, PROGRESSIVE_DECODE_WEIGHT = 1.0, 2.5
#: the formats whose encode counts beyond the unit
ENCODE_COUNTED = frozenset({"gif", "avif", "webp", "png"})

Size = tuple[int | None, int | None]


def check_cost(transformation: Transformation, limits: Limits, source: Size = (None, None),
               frames: int = 1, overlays: dict[str, Size] | None = None, formats: Sequence[str] = (),
               defaults: Defaults | None = None) -> None:
    """400 naming the budget when the transformation is estimated to cost more than `max_cost`.
    `overlays`: the sizes of the layers' originals, by path, once known. `formats`: those the render
    encodes, once known (`encode_cost`), with `defaults`' quality and AVIF effort."""
    _hold_to_budget(estimated_cost(transformation, source, frames, overlays, formats, defaults), limits)


def _hold_to_budget(cost: float, limits: Limits) -> None:
    if cost > limits.max_cost:
        raise BadRequest(f"transformation too costly: about {math.ceil(cost)} megapixels of work exceed "
                         f"[limits] max_cost = {limits.max_cost:g}")


def estimated_cost(transformation: Transformation, source: Size = (None, None), frames: int = 1,
                   overlays: dict[str, Size] | None = None, formats: Sequence[str] = (),
                   defaults: Defaults | None = None) -> float:
    """The module docstring's sum."""
    cost, size = _steps_cost(transformation.steps, source, overlays or {})
    return frames * (cost + _encodes_cost(transformation, size, formats, defaults))


def _encodes_cost(transformation: Transformation, size: Size, formats: Sequence[str],
                  defaults: Defaults | None, palette: bool = False) -> float:
    """One frame's encode in each of `formats`."""
    if not formats:
        return 0.0
    defaults = defaults or Defaults()
    output = transformation.output
    quality = output.quality or defaults.quality
    return sum(encode_cost(fmt, size, quality, output.lossless, defaults.avif_effort, palette) for fmt in formats)


def encode_cost(fmt: str, size: Size, quality: int, lossless: bool, avif_effort: int, palette: bool = False) -> float:
    """The units of encoding one frame of `size` as `fmt` beyond the unit's JPEG encode (`palette`: a PNG's
    indexed)."""
    megapixels = _megapixels(size)
    if fmt == "gif":
        return GIF_WEIGHT * megapixels + GIF_FRAME
    if fmt == "avif":
        fine = avif_quality(quality) > AVIF_FINE_QUALITY
        weight = AVIF_LOSSLESS_WEIGHT if lossless else AVIF_FINE_WEIGHT if fine else AVIF_WEIGHT
        return megapixels * weight * AVIF_EFFORT_FACTORS[min(max(avif_effort, 0), len(AVIF_EFFORT_FACTORS) - 1)]
    if fmt == "webp":
        return megapixels * (WEBP_LOSSLESS_WEIGHT if lossless else WEBP_FINE_WEIGHT if quality > WEBP_FINE_QUALITY
                             else WEBP_WEIGHT)
    if fmt == "png":
        return megapixels * (PALETTE_PNG_WEIGHT if palette else PNG_WEIGHT)
    return 0.0


def check_render_cost(transformation: Transformation, planned: str, loader: str, has_alpha: bool, animated: bool,
                      limits: Limits, defaults: Defaults, source: Size, frames: int = 1,
                      overlays: Mapping[str, Size] | None = None, decodes: float = 0.0) -> str:
    """`check_cost` once the original's header is read, with the encode of the formats `planned` makes
    of it and `decodes`, the units of decoding the originals (`decode_cost`, as often as decoded); the plan
    to render: `planned`, or the first of its `fallback_plans` within budget; raises when the last is over too.
    The fallback depends on the original and the plan alone, so the output key (which holds the plan, with
    `Vary: Accept`) still names one output."""
    steps, (width, height) = _steps_cost(transformation.steps, source, dict(overlays or {}))
    if has_alpha:
        steps *= ALPHA_WEIGHT
    check_side(width or 0, height or 0, limits.max_output_side)  # what the render would refuse: say why
    side = max(width or 0, height or 0)
    plans = [planned, *fallback_plans(transformation, planned, loader, has_alpha, animated, defaults)]
    # a plan none of whose formats reaches the output's side gives way to the next (`f-auto`'s AVIF and WebP past
    # 16383 px, with a `max_output_side` above it); the last one is the render's to refuse
    plans = [plan for plan in plans[:-1] if _reaching(final_formats(plan, loader, has_alpha, animated), side,
                                                      limits.max_output_side)] + plans[-1:]

    def cost_of(plan: str) -> float:
        formats = final_formats(plan, loader, has_alpha, animated)
        return frames * (steps + _encodes_cost(transformation, (width, height), formats, defaults)) + decodes
    chosen = next((plan for plan in plans[:-1] if cost_of(plan) <= limits.max_cost), plans[-1])
    if chosen is plans[-1]:
        # a format the URL names past its own side (WebP's 16383 px): refused now as `output_formats` refuses it,
        # rather than once rendered
        formats = final_formats(chosen, loader, has_alpha, animated)
        if not _reaching(formats, side, limits.max_output_side):
            check_side(width or 0, height or 0, max_side(formats[0], limits.max_output_side))
        _hold_to_budget(cost_of(chosen), limits)
    return chosen


def output_formats(transformation: Transformation, planned: str, loader: str, has_alpha: bool, animated: bool,
                   size: tuple[int, int], frames: int, limits: Limits, defaults: Defaults) -> list[str]:
    """Before the encode, which no deadline stops (libaom's, cgif's), with the output's real size: the formats to
    encode, `planned`'s or those of the first of its `fallback_plans` whose pixels and encodes cost at most
    `max_cost`; 400 when the last is over too, or when the output is over its format's side. The estimate before
    the render took from bounds the sizes only the render knows, and could be far under them: `t-true,w-8192,f-gif`
    of a white 8192×250 banner round a 250 px square was priced 8192×250 and made 8192×8000 (33 s of GIF); `pg-2`
    of a TIFF was priced at its first page's size (cost probe). The candidates of `f-auto`'s smallest are those
    whose own limit the output fits (WebP: 16383 px)."""
    side = max(size)
    plans = [planned, *fallback_plans(transformation, planned, loader, has_alpha, animated, defaults)]
    for plan in plans:
        formats = final_formats(plan, loader, has_alpha, animated)
        reaching = _reaching(formats, side, limits.max_output_side)
        if not reaching and plan is not plans[-1]:
            continue  # as in `check_render_cost`
        formats = reaching or formats[:1]
        check_side(*size, max_side(formats[0], limits.max_output_side))
        cost = _output_cost(transformation, formats, size, frames, defaults)
        if cost <= limits.max_cost or plan is plans[-1]:
            break
    _hold_to_budget(cost, limits)
    return formats


def _reaching(formats: Sequence[str], side: int, max_output_side: int) -> list[str]:
    """Those of `formats` whose own limit (`formats.max_side`) the output's longer `side` is within."""
    return [fmt for fmt in formats if side <= max_side(fmt, max_output_side)]


def palette_affordable(transformation: Transformation, formats: Sequence[str], size: tuple[int, int],
                       limits: Limits, defaults: Defaults, decodes: float) -> bool:
    """Whether the PNG of an indexed original may be indexed too within `max_cost` with `decodes`, the units of
    decoding the originals (else it is a plain PNG): a 7000×7000 palette PNG's `w-2500` had been indexed for 245
    units with its decode, 4.4 s (attacker probe)."""
    return _output_cost(transformation, formats, size, 1, defaults, palette=True) + decodes <= limits.max_cost


def _output_cost(transformation: Transformation, formats: Sequence[str], size: tuple[int, int], frames: int,
                 defaults: Defaults, palette: bool = False) -> float:
    """The units of an output's pixels and their encodes, by its real size."""
    return frames * (_megapixels(size) + _encodes_cost(transformation, size, formats, defaults, palette))


def decode_cost(header: ImageHeader) -> float:
    """The units of decoding one frame of an original, by its header (`render.ImageHeader`)."""
    weight = PROGRESSIVE_DECODE_WEIGHT if header.progressive else DECODE_WEIGHTS.get(header.loader, DECODE_WEIGHT)
    return weight * header.width * header.height / 1e6


def fallback_plans(transformation: Transformation, planned: str, loader: str, has_alpha: bool, animated: bool,
                   defaults: Defaults) -> list[str]:
    """The plans tried in turn when `planned`'s encode is over budget, or its formats cannot reach the output's side,
    the last one raising when it is too: for `f-auto`, what the browser would get without AVIF (WebP; JPEG/PNG/GIF;
    the other candidates), then JPEG/PNG/GIF; for a format the URL does not name (`falls_back`), an AVIF as WebP,
    then JPEG/PNG/GIF; none for one it names. Both prices, the estimate's and the real output's before the encode,
    walk this one list."""
    if _follows_accept(transformation, defaults):
        candidates: tuple[str | None, ...] = (_without_avif(planned), AUTO_LEGACY)
    elif falls_back(transformation, planned):
        # an AVIF first as WebP: whoever asked for an AVIF reads WebP too (every browser showing AVIF shows WebP),
        # smaller than the JPEG (a 12 MP AVIF's own URL: 490 kB of JPEG for 273 kB of AVIF; bytes probe)
        own_avif = final_formats(planned, loader, has_alpha, animated)[0] == "avif"
        candidates = ((AUTO_WEBP,) if own_avif else ()) + (AUTO_LEGACY,)
    else:
        return []
    return list(dict.fromkeys(plan for plan in candidates if plan is not None and plan != planned))


def falls_back(transformation: Transformation, planned: str) -> bool:
    """Whether a format over budget is JPEG/PNG/GIF rather than a 400: `f-auto`'s, and one the URL does not name
    (the path's extension, the original's own format, `f-orig`), which every client that asked for the path decodes. The
    choice depends on the original and the key's plan alone (`max_cost` is in the key): one output a key."""
    return chosen_by_accept(planned) or transformation.output_format in (None, KEEP_SOURCE)


def _follows_accept(transformation: Transformation, defaults: Defaults) -> bool:
    """Whether the format is `f-auto`'s (as `plan_format` decides it), not one the URL names."""
    return transformation.output_format == "auto" or (transformation.output_format is None and defaults.auto_format)


def _without_avif(planned: str) -> str | None:
    """The plan `f-auto` makes for the same browser without AVIF."""
    if planned == AUTO_MODERN:
        return AUTO_WEBP
    if planned == AUTO_AVIF:
        return AUTO_LEGACY
    if planned.startswith(SMALLEST):
        return SMALLEST + "|".join(p for p in planned.removeprefix(SMALLEST).split("|") if p != "avif")
    return None


def transformation_cost(steps: tuple[Step, ...], source: Size, overlays: dict[str, Size] | None = None,
                        base: Size | None = None) -> float:
    """The estimate of the module docstring, one frame and no encode; `source` sides may be unknown
    (None). A step's layers add their own work (an image layer: its steps from its original's size)
    and a composite each. `base`: for a layer's steps, the size of the image it is drawn on."""
    return _steps_cost(steps, source, overlays or {}, base)[0]


def _steps_cost(steps: tuple[Step, ...], source: Size, overlays: dict[str, Size], base: Size | None = None,
                start: Size | None = None, exact: bool = True, first: int = 0,
                memo: dict | None = None) -> tuple[float, Size]:
    """`transformation_cost` and the last step's output size, from `steps[first]` on; `start`: the size that step
    reads, when it is not the source's (an if block's branch, the steps after one); `exact`: whether the sizes are
    the render's, or only bounds (`_bounds_only`); `memo`: the costs of the steps after an if block already priced
    from a size, in this estimate (branches that leave the same size price them once: nine empty if blocks had
    taken 19 ms)."""
    memo = {} if memo is None else memo
    cost, size = 0.0, start or source
    for number in range(first, len(steps)):
        step = steps[number]
        if step.branches is not None:
            # an if block: the branch the sizes choose; when they are not known exactly (before the original's
            # size is, or only as bounds) or it counts faces, whichever branch costs more with the steps after it
            layers = (replace(DEFAULT_STEP, layers=step.layers),) if step.layers else ()
            branches = [(*(branch or (DEFAULT_STEP,)), *layers)
                        for branch in (step.branches.then_steps, step.branches.else_steps)]
            if step.branches.counts_faces:
                cost += FACE_SEARCH
            elif exact and None not in size and None not in source:
                branches = [branches[0] if step.branches.holds(size, source) else branches[1]]
            # a branch chosen by a size only the render knows (a trimmed one) had been priced as the other: `t-true:
            # if-w_gt_100,w-10,if-else,w-cw_mul_130,…` a 10 px output, rendered at 8000 px (cost probe)
            ways = []
            for branch in branches:
                branch_cost, branch_size = _steps_cost(branch, source, overlays, base, size, exact, memo=memo)
                after = (id(steps), number + 1, branch_size, exact and not _sizes_bounded(branch))
                if after not in memo:
                    memo[after] = _steps_cost(steps, source, overlays, base, branch_size, after[3], number + 1, memo)
                rest_cost, rest_size = memo[after]
                ways.append((branch_cost + rest_cost, rest_size))
            way_cost, size = max(ways, key=lambda way: way[0])
            return cost + way_cost, size
        step = with_sizes(step, source, size, base)
        output = step_output(step, size, exact and step.trim is None)
        cost += _megapixels(output) * (1 + look_weight(step) + LAYER_WEIGHT * len(step.layers))
        cost += sum(_layer_cost(layer, output, overlays) for layer in step.layers)
        if step.trim is not None:
            cost += _trim_cost(size)
        exact = exact and not _bounds_only(step)
        cost += FACE_SEARCH * ((step.focus == "face") + (step.blur_faces is not None)
                               + (step.pixelate_faces is not None))
        if step.pads and isinstance(step.background, Blurred):
            cost += _megapixels(output) * BLURRED_WEIGHT + BLURRED_FRAME
        size = _cut_by_layers(step.layers, output, overlays)
    return cost, size


def _bounds_only(step: Step) -> bool:
    """Whether the size the step makes is known in the render only, the estimate's being a bound: a trim, a cut
    to the faces' box, a cut by a layer (`lm-cutter`: a text's box, or an image layer's that may trim)."""
    return (step.trim is not None or cuts_faces(step)
            or any(layer.placement.mode == "cutter" for layer in step.layers))


def _sizes_bounded(steps: tuple[Step, ...]) -> bool:
    """Whether a step of `steps` (or of an if block's branch among them) leaves sizes known as bounds only."""
    return any(_bounds_only(step) or (step.branches is not None and (
               _sizes_bounded(step.branches.then_steps) or _sizes_bounded(step.branches.else_steps)))
               for step in steps)


def _cut_by_layers(layers: tuple[Layer, ...], size: Size, overlays: dict[str, Size]) -> Size:
    """The step's result once `lm-cutter` layers have cut it to their box (as far as it lies on the
    base: at most the layer's size). A colour block 100 px wide cutting a 4000×2672 result leaves it
    100 px wide: a next `h-6000` makes 225×6000, not 8982×6000 (a 400, output too large)."""
    for layer in layers:
        if layer.placement.mode != "cutter" or layer.text is not None or None in size:
            continue
        if layer.input == CANVAS:  # its first step's w×h (of the base; the base's size by default)
            first = with_sizes(layer.steps[0], size, size, size)
            block = target_box(first, *size)
            block = step_output(replace(DEFAULT_STEP, rotation=first.rotation, distort=first.distort),
                                (block[0] or size[0], block[1] or size[1]))  # turned or bent as it says
            drawn = _steps_cost(layer.steps[1:], block, overlays, size)[1]
        else:
            drawn = _steps_cost(layer.steps or (DEFAULT_STEP,), overlays.get(layer.input, (None, None)), overlays,
                                size)[1]
        size = tuple(min(side, cut) if cut else side for side, cut in zip(size, drawn))
    return size


def _layer_cost(layer: Layer, base: Size, overlays: dict[str, Size]) -> float:
    if layer.text is not None:
        return _text_cost(layer.input, sized(layer.text, base), base)
    if layer.input == CANVAS:
        return transformation_cost(layer.steps, base, overlays, base=base)
    return transformation_cost(layer.steps or (DEFAULT_STEP,), overlays.get(layer.input, (None, None)), overlays,
                               base=base)


def _text_cost(text: str, style: TextStyle, base: Size) -> float:
    """A text layer: its glyphs drawn (`TEXT_AREA_PER_CHARACTER` × `fs`² each), then its box — the wrap
    width `w` (else its longest line's glyphs) by its lines (each line break one of `TEXT_LINE_HEIGHT`, or
    `lh`, and each line longer than `w` as many as it wraps to), grown by the outline and the shadow —
    inked once per ink (an outline is a rank filter as wide as it), padded, and composited, rounded, faded,
    turned and bent. (Line breaks had been priced as characters: 13 `W`s over 12 empty lines, a box 14 times
    as tall as priced, held a render thread for the whole `render_timeout` under an outline.) The turn and
    the bend are made only where they land on the base (libvips computes what is asked for): their canvas
    counts as far as the base's size (`fs-100,rt-90,e-distort-a-360` on a 1200 px base, a circle 5800 px
    across, renders in 0.16 s; on an 8000 px base two of them took 11 s)."""
    glyphs = len(text) * style.size ** 2 * TEXT_AREA_PER_CHARACTER
    box_w, box_h = text_box(text, style)
    grow, drop = (style.outline[0] if style.outline else 0), (style.shadow[1] if style.shadow else 0)
    mask = (box_w + 2 * grow + drop) * (box_h + 2 * grow + drop) / 1e6
    top, right, bottom, left = style.padding or (0, 0, 0, 0)
    sides = (box_w + 2 * grow + drop + left + right, box_h + 2 * grow + drop + top + bottom)
    box = sides[0] * sides[1] / 1e6
    inks = 1 + bool(style.outline) + bool(style.shadow) + (style.background is not None)
    cost = glyphs / 1e6 + box * LAYER_WEIGHT * inks + (mask * OUTLINE_PER_SIDE * (2 * grow + 1) if grow else 0.0)
    cost += box * ((ROUNDED_WEIGHT if style.radius is not None else 0) + (OPACITY_WEIGHT if style.alpha else 0))
    sides = tuple(map(math.ceil, sides))
    on_base = _megapixels(base)  # a side not yet known counts 1, as everywhere here: the header's check counts it

    def drawn(step: Step) -> float:  # megapixels: a long line at 45° is a square of its length over √2 a side
        return min(_megapixels(step_output(step, sides)), on_base)
    if style.rotation % 90:
        cost += drawn(replace(DEFAULT_STEP, rotation=style.rotation)) * ROTATE_WEIGHT
    if style.distort is not None:  # the turned box bent (`rt-90,e-distort-a-360`: a circle the line across)
        cost += drawn(replace(DEFAULT_STEP, rotation=style.rotation, distort=style.distort)) * (1 + DISTORT_WEIGHT)
    return cost


def text_box(text: str, style: TextStyle) -> tuple[float, float]:
    """The box of a text layer's glyphs as `_text_cost` prices it (before its outline, shadow and padding): the
    wrap width `w`, else its longest line, by its lines."""
    size = style.size
    line_widths = [len(line) * size * TEXT_AREA_PER_CHARACTER for line in _LINE_BREAKS.split(text)]
    box_w = style.width or max(size, *line_widths)
    lines = sum(max(1, math.ceil(width / box_w)) for width in line_widths)
    return box_w, size + (lines - 1) * max(size * TEXT_LINE_HEIGHT, style.line_height or 0)


def look_weight(step: Step) -> float:
    weight = 0.0
    if step.blur is not None:
        weight += step.blur * BLUR_PER_RADIUS
    if step.sharpen is not None:
        weight += SHARPEN_WEIGHT
    if step.unsharp_mask is not None:
        weight += USM_WEIGHT + step.unsharp_mask[1] * USM_PER_SIGMA
    if step.contrast is not None:
        weight += CONTRAST_WEIGHT
    weight += AUTO_WEIGHT * ((step.auto_colour is not None) + (step.auto_brightness is not None))
    weight += LINEAR_WEIGHT * sum(value is not None for value in (
        step.brightness, step.blackwhite, step.sigmoid_contrast, step.linear_contrast, step.gamma,
        step.colour_blend, step.opacity_threshold)) + LINEAR_WEIGHT * step.negate
    if step.brightness_hsb is not None:
        weight += HSB_WEIGHT
    if step.vignette is not None:
        weight += VIGNETTE_WEIGHT
    if step.vibrance is not None:
        weight += VIBRANCE_WEIGHT
    if step.colour_replacement is not None:
        weight += REPLACE_WEIGHT
    weight += RECOMB_WEIGHT * ((step.saturation is not None) + (step.sepia is not None) + (step.hue is not None))
    if (step.red, step.green, step.blue) != (None, None, None):
        weight += LINEAR_WEIGHT
    if step.pixelate is not None:
        weight += PIXELATE_WEIGHT
    if step.blur_faces is not None:  # at most the whole image, as `bl`
        weight += step.blur_faces * BLUR_PER_RADIUS
    if step.pixelate_faces is not None:
        weight += PIXELATE_WEIGHT
    if step.radius is not None:
        weight += ROUNDED_WEIGHT
    if step.opacity != 100:
        weight += OPACITY_WEIGHT
    if step.gradient is not None:
        weight += GRADIENT_WEIGHT
    if step.shadow is not None:
        weight += SHADOW_WEIGHT + step.shadow[0] * SHADOW_PER_BLUR
    if step.rotation % 90:
        weight += ROTATE_WEIGHT
    if step.distort is not None:
        weight += DISTORT_WEIGHT
    return weight


def step_output(step: Step, size: Size, exact: bool = True) -> Size:
    """The size a step makes from an input of `size`, as far as it is known (an upper bound where a
    step may make less: a trim, a fit inside a box); `exact`: whether the input resized is `size`, not smaller."""
    width, height = size
    box_w, box_h = _box(step, size, exact)
    if step.extracts or (step.width is None and step.height is None and step.aspect_ratio is None):
        if step.extracts and width and height:  # without w or h, the region runs from x or y to the far edge
            box_w, box_h = box_w or max(1, width - (step.x or 0)), box_h or max(1, height - (step.y or 0))
        width, height = box_w or width, box_h or height
        if step.crop_mode == "pad_extract_no_shrink":
            width, height = max(width or 0, size[0] or 0) or None, max(height or 0, size[1] or 0) or None
        elif step.crop_mode == "extract_within":  # no more than the image, which may be small: before the
            # fetch, not known (the region alone refused Cloudinary's `c_crop,w_16000,h_16000` of any image)
            width, height = (_at_most(width, size[0]), _at_most(height, size[1])) if size[0] and size[1] else size
    else:
        if (box_w is None) != (box_h is None) and width and height:  # one side: the other by the ratio
            scale = side_scale(step, width, height, box_w, box_h)
            box_w, box_h = max(1, round(width * scale)), max(1, round(height * scale))
        elif box_w is not None and box_h is not None and width and height and not step.pads \
                and step.crop in FITS and (step.trim is None or step.crop in ("at_least", "enlarge_to_fit")):
            # a fit inside the box keeps the input's aspect ratio, not the box's, and the next step resizes
            # that: `w-81,h-1971,c-at_max:w-1005` on a 4240×2832 photo makes 1005×670, not 1005×24454 (the
            # box, taken for the output, made it a 400 "output too large"). A trimmed input may be smaller
            # and of another shape: its `at_max` fit is only known to lie within the box. A padding is the box.
            scale = fit_scale(step, width, height, box_w, box_h)
            box_w, box_h = max(1, round(width * scale)), max(1, round(height * scale))
        elif box_w is not None and box_h is not None and width and height and not step.pads \
                and step.crop == "maintain_ratio_no_enlarge":  # the box, cut to the image where it is larger
            box_w, box_h = min(box_w, width), min(box_h, height)
        elif not (width and height) and not step.pads and step.crop in NEVER_ENLARGED:
            # the input not known (the check before the fetch): what never enlarges is no larger than the
            # original, which may be small; the box alone had refused `w-9000,h-9000,c-at_max` of a logo
            box_w = box_h = None
        width, height = box_w, box_h
    if step.rotation % 180 == 90:
        width, height = height, width
    elif step.rotation % 90 and width and height:
        radians = math.radians(step.rotation)
        width, height = (math.ceil(abs(width * math.cos(radians)) + abs(height * math.sin(radians))),
                         math.ceil(abs(width * math.sin(radians)) + abs(height * math.cos(radians))))
    if step.distort is not None and width and height:
        if step.distort.kind == "a":
            arc = arc_of(width, height, step.distort.values[0])
            width, height = arc.width, arc.height
        else:
            width, height, _ = perspective_of(width, height, step.distort.values)
    if step.border is not None:
        width, height = (side + 2 * step.border[0] if side else side for side in (width, height))
    return width, height


def _at_most(side: int | None, image_side: int | None) -> int | None:
    """A region's side cut to the image's, as far as either is known."""
    return min(side, image_side) if side and image_side else side or image_side


def _box(step: Step, size: Size, exact: bool = True) -> Size:
    """`target_box` where the input size is known; without it, only what is in pixels in the URL. Where `size`
    only bounds the input (`exact` false: a trim), a mode that never enlarges may apply the `dpr` to a smaller
    input where it would not to `size` (dpr's 5000 px rule is on its output): the box times `dpr`, within 5000 px."""
    width, height = size
    if width and height:
        if not exact and step.dpr != 1 and capped_output(step, width, height) is not None:
            plain = target_box(replace(step, dpr=1), width, height)
            return tuple(None if side is None else max(side, min(round(side * step.dpr), DPR_MAX_SIDE))
                         for side in plain)
        return target_box(step, width, height)
    def pixels(value: float | None) -> float | None:
        return None if value is None or value < 1 else value
    return times_dpr(pixels(step.width), pixels(step.height), step.dpr)


def _trim_cost(size: Size) -> float:
    width, height = (side or 1 for side in size)
    shrink = trim_search_shrink(width, height)
    if min(width // shrink, height // shrink) < 3:  # a long thin strip: searched whole (`geometry.trim_box`)
        shrink = 1
    return _megapixels(size) * TRIM_WEIGHT + width // shrink * (height // shrink) / 1e6 * TRIM_SEARCH_WEIGHT


def _megapixels(size: Size) -> float:
    width, height = size
    return (width or 1) * (height or 1) / 1e6
