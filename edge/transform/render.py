"""Rendering: original bytes + transformation → encoded output, with libvips, off the IOLoop.

`Renderer.render` is the only entry point. It runs `render_image` in a bounded thread pool (libvips
releases the GIL) and answers 503 when the queue in front of the pool is full.
"""

from __future__ import annotations

import asyncio
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyvips

from ..config import Defaults, Limits
from ..errors import BadRequest, Overloaded, UnprocessableSource
from .formats import final_format
from .options import Step, Transformation

# Every request decodes a different original: the operation cache would only hold memory.
pyvips.cache_set_max(0)

_UNBOUNDED = 10_000_000  # "no constraint" for the other side of a thumbnail box
_SWAPS_SIDES = {5, 6, 7, 8}  # EXIF orientations that turn the image by 90°


@dataclass(frozen=True)
class Rendered:
    body: bytes
    format: str
    width: int
    height: int


@dataclass(frozen=True)
class SourceInfo:
    """What the header of an original says, read without decoding the pixels."""

    loader: str
    width: int  # after EXIF orientation
    height: int
    has_alpha: bool


def probe(body: bytes, limits: Limits) -> SourceInfo:
    """Read the header; refuse what is not an image (422) or too large to decode (400)."""
    try:
        image = pyvips.Image.new_from_buffer(body, "")
        loader = image.get("vips-loader")
    except pyvips.Error:
        raise UnprocessableSource() from None
    pages = image.get("n-pages") if image.get_typeof("n-pages") else 1
    if image.width * image.height > limits.max_source_pixels or pages > limits.max_frames:
        raise BadRequest("source too large")
    orientation = image.get("orientation") if image.get_typeof("orientation") else 1
    width, height = image.width, image.height
    if orientation in _SWAPS_SIDES:
        width, height = height, width
    return SourceInfo(loader, width, height, image.hasalpha())


def _target_box(step: Step, source_width: int, source_height: int) -> tuple[int | None, int | None]:
    """w and h in pixels: fractions resolved against the (oriented) original."""
    def pixels(value: float | None, whole: int) -> int | None:
        if value is None:
            return None
        return max(1, round(value * whole)) if value < 1 else int(value)
    return pixels(step.width, source_width), pixels(step.height, source_height)


def _check_output_side(width: int, height: int, limits: Limits) -> None:
    if max(width, height) > limits.max_output_side:
        raise BadRequest(f"output too large: at most {limits.max_output_side} px a side")


def _focus_offset(focus: str, excess_x: int, excess_y: int) -> tuple[int, int]:
    x = 0 if "left" in focus else excess_x if "right" in focus else excess_x // 2
    y = 0 if "top" in focus else excess_y if "bottom" in focus else excess_y // 2
    return x, y


def _resize(load, step: Step, width: int, height: int, limits: Limits) -> pyvips.Image:
    """Apply one step's geometry. `load(width, **options)` is a libvips thumbnail call, so the first
    step shrinks on load; `width`/`height` are the current image's size."""
    box_w, box_h = _target_box(step, width, height)
    if box_w is None and box_h is None:
        return load(width, height=height, size=pyvips.enums.Size.BOTH)
    if box_w is None or box_h is None:
        scale = box_w / width if box_w is not None else box_h / height
        if step.crop == "at_max" or step.crop == "maintain_ratio_no_enlarge":
            scale = min(scale, 1.0)
        out_w, out_h = max(1, round(width * scale)), max(1, round(height * scale))
        _check_output_side(out_w, out_h, limits)
        return load(out_w, height=out_h, size=pyvips.enums.Size.FORCE)

    if step.crop == "force":
        _check_output_side(box_w, box_h, limits)
        return load(box_w, height=box_h, size=pyvips.enums.Size.FORCE)
    if step.crop in ("at_max", "at_max_enlarge"):
        scale = min(box_w / width, box_h / height)
        if step.crop == "at_max":
            scale = min(scale, 1.0)
        out_w, out_h = max(1, round(width * scale)), max(1, round(height * scale))
        _check_output_side(out_w, out_h, limits)
        return load(out_w, height=out_h, size=pyvips.enums.Size.FORCE)

    # cover the box: at_least stops there, maintain_ratio crops to the box by `fo`
    scale = max(box_w / width, box_h / height)
    if step.crop == "maintain_ratio_no_enlarge":
        scale = min(scale, 1.0)
        box_w, box_h = min(box_w, width), min(box_h, height)
    cover_w, cover_h = max(box_w, math.ceil(width * scale)), max(box_h, math.ceil(height * scale))
    if step.crop == "at_least":
        _check_output_side(cover_w, cover_h, limits)
        return load(cover_w, height=cover_h, size=pyvips.enums.Size.FORCE)
    _check_output_side(box_w, box_h, limits)
    image = load(cover_w, height=cover_h, size=pyvips.enums.Size.FORCE)
    x, y = _focus_offset(step.focus, image.width - box_w, image.height - box_h)
    return image.crop(x, y, box_w, box_h)


def _encode(image: pyvips.Image, fmt: str, quality: int, avif_effort: int) -> bytes:
    keep = pyvips.enums.ForeignKeep.NONE
    if fmt == "jpg":
        if image.hasalpha():
            image = image.flatten(background=[255, 255, 255])
        return image.jpegsave_buffer(Q=quality, keep=keep, optimize_coding=True)
    if fmt == "png":
        return image.pngsave_buffer(keep=keep)
    if fmt == "webp":
        return image.webpsave_buffer(Q=quality, keep=keep)
    if fmt == "avif":
        return image.heifsave_buffer(Q=quality, keep=keep, compression="av1", effort=avif_effort)
    if fmt == "gif":
        return image.gifsave_buffer(keep=keep)
    raise AssertionError(f"unknown output format {fmt}")


def render_image(body: bytes, transformation: Transformation, planned_format: str,
                 defaults: Defaults, limits: Limits) -> Rendered:
    """Decode, transform and encode, in the calling thread. Raises `EdgeError`s only."""
    info = probe(body, limits)
    fmt = final_format(planned_format, info.loader, info.has_alpha)
    try:
        def first_load(width: int, **options) -> pyvips.Image:
            # thumbnail's own fail_on does not reach the loader in libvips 8.18; the option string does
            return pyvips.Image.thumbnail_buffer(body, width, option_string="fail_on=truncated", **options)

        load = first_load
        width, height = info.width, info.height
        image = None
        for step in transformation.steps or (Step(),):
            image = _resize(load, step, width, height, limits)
            width, height = image.width, image.height
            load = image.thumbnail_image
        assert image is not None
        if image.interpretation not in (pyvips.enums.Interpretation.SRGB, pyvips.enums.Interpretation.B_W):
            image = image.colourspace(pyvips.enums.Interpretation.SRGB)
        quality = transformation.last("quality") or defaults.quality
        encoded = _encode(image, fmt, quality, defaults.avif_effort)
    except pyvips.Error:
        # libvips reports some truncations only while writing, so the encode is inside this try too.
        raise UnprocessableSource() from None
    return Rendered(encoded, fmt, image.width, image.height)


class Renderer:
    """A bounded pool of libvips threads with a bounded queue in front of it."""

    def __init__(self, defaults: Defaults, limits: Limits, threads: int, queue: int):
        self.defaults = defaults
        self.limits = limits
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="vips")
        self._capacity = threads + queue
        self._pending = 0

    async def run(self, function, *args):
        """Run `function(*args)` on the libvips pool; 503 when the pool and its queue are full."""
        if self._pending >= self._capacity:
            raise Overloaded()
        self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)
        finally:
            self._pending -= 1

    async def render(self, body: bytes, transformation: Transformation, planned_format: str) -> Rendered:
        return await self.run(render_image, body, transformation, planned_format, self.defaults, self.limits)

    async def probe(self, body: bytes) -> SourceInfo:
        return await self.run(probe, body, self.limits)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
