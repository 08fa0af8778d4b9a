"""The work one URL asks for, held to `[limits] max_cost` before any pixel is made.

    cost = frames × Σ over steps of  output megapixels × (1 + the weights of the step's operations)
                                   + input megapixels × TRIM_WEIGHT        (when the step trims)

The unit is a megapixel of plain resize-and-encode (about 20 ms of one core for a downscale); each
weight is what an operation costs on top of that per megapixel, measured on a 4 MP photo
(benchmarks/README.md). `bl-100` on an 8192×8192 output is 67 × (1 + 3.3) ≈ 290: over the default
budget of 200, which admits an 8192×8192 output with light effects, or ten chained steps of 2000 px.

It is checked twice. At parse time (`check_cost`, before the original is fetched) the sizes the URL
alone implies are used, a side it leaves open counting as 1 px: what no original can make cheap is
refused without a fetch. Once the original's header is read (`check_cost` with its size, before any
pixel is decoded) the same sum is taken with every size known. Encoding is not counted (the format
may follow `Accept`): `max_output_side` and the render deadline bound it.
"""

from __future__ import annotations

import math

from ..config import Limits
from ..errors import BadRequest
from .geometry import target_box, with_sizes
from .options import Step, Transformation

#: per output megapixel, on top of 1
BLUR_PER_RADIUS = 1 / 30  # bl-N: a gaussian of sigma N/2, separable: cost grows with the radius
SHARPEN_WEIGHT = 4.0
USM_WEIGHT, USM_PER_SIGMA = 0.5, 0.1
CONTRAST_WEIGHT = 0.7  # a histogram of the step's output, then a stretch
ROUNDED_WEIGHT = 3.0  # r-N: a float coverage mask the size of the image
OPACITY_WEIGHT = 0.6
GRADIENT_WEIGHT = 3.0  # a float layer the size of the image, composited
SHADOW_WEIGHT, SHADOW_PER_BLUR = 2.0, 0.1  # the alpha blurred (sigma up to 15), composited
ROTATE_WEIGHT = 1.5  # rt- other than a right angle: an affine with interpolation
#: per input megapixel of a trimming step (decoded to memory, searched on a reduced copy)
TRIM_WEIGHT = 3.0

Size = tuple[int | None, int | None]


def check_cost(transformation: Transformation, limits: Limits, source: Size = (None, None),
               frames: int = 1) -> None:
    """400 naming the budget when the transformation is estimated to cost more than `max_cost`."""
    cost = frames * transformation_cost(transformation.steps, source)
    if cost > limits.max_cost:
        raise BadRequest(f"transformation too costly: about {math.ceil(cost)} megapixels of work exceed "
                         f"[limits] max_cost = {limits.max_cost:g}")


def transformation_cost(steps: tuple[Step, ...], source: Size) -> float:
    """The estimate of the module docstring; `source` sides may be unknown (None)."""
    cost, size = 0.0, source
    for step in steps:
        step = with_sizes(step, source, size)
        output = step_output(step, size)
        cost += _megapixels(output) * (1 + look_weight(step))
        if step.trim is not None:
            cost += _megapixels(size) * TRIM_WEIGHT
        size = output
    return cost


def look_weight(step: Step) -> float:
    weight = 0.0
    if step.blur is not None:
        weight += step.blur * BLUR_PER_RADIUS
    if step.sharpen is not None:
        weight += SHARPEN_WEIGHT
    if step.unsharp_mask is not None:
        weight += USM_WEIGHT + step.unsharp_mask[1] * USM_PER_SIGMA
    if step.contrast:
        weight += CONTRAST_WEIGHT
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
    return weight


def step_output(step: Step, size: Size) -> Size:
    """The size a step makes from an input of `size`, as far as it is known (an upper bound where a
    step may make less: a trim, a fit inside a box)."""
    width, height = size
    box_w, box_h = _box(step, size)
    if step.extracts or (step.width is None and step.height is None and step.aspect_ratio is None):
        width, height = box_w or width, box_h or height
        if step.crop_mode == "pad_extract_no_shrink":
            width, height = max(width or 0, size[0] or 0) or None, max(height or 0, size[1] or 0) or None
    else:
        if (box_w is None) != (box_h is None) and width and height:  # one side: the other by the ratio
            scale = box_w / width if box_w is not None else box_h / height
            if step.crop in ("at_max", "maintain_ratio_no_enlarge"):
                scale = min(scale, 1.0)
            box_w, box_h = max(1, round(width * scale)), max(1, round(height * scale))
        elif box_w is not None and box_h is not None and width and height and step.crop == "at_least":
            scale = max(box_w / width, box_h / height)
            box_w, box_h = max(1, round(width * scale)), max(1, round(height * scale))
        width, height = box_w, box_h
    if step.rotation % 180 == 90:
        width, height = height, width
    elif step.rotation % 90 and width and height:
        radians = math.radians(step.rotation)
        width, height = (math.ceil(abs(width * math.cos(radians)) + abs(height * math.sin(radians))),
                         math.ceil(abs(width * math.sin(radians)) + abs(height * math.cos(radians))))
    if step.border is not None:
        width, height = (side + 2 * step.border[0] if side else side for side in (width, height))
    return width, height


def _box(step: Step, size: Size) -> Size:
    """`target_box` where the input size is known; without it, only what is in pixels in the URL."""
    width, height = size
    if width and height:
        return target_box(step, width, height)
    def pixels(value: float | None) -> int | None:
        return None if value is None or value < 1 else max(1, round(value * step.dpr))
    return pixels(step.width), pixels(step.height)


def _megapixels(size: Size) -> float:
    width, height = size
    return (width or 1) * (height or 1) / 1e6
