"""HEIF images coded with HEVC (`.heic`, what most phones save their photos as), decoded by libheif with
libde265 through pi-heif.

The libvips of `pyvips[binary]` reads HEIF coded with AV1 (AVIF) only: its libheif has no HEVC decoder
and loads no plugin, so libvips reads a HEIC's header but not its pixels. pi-heif (BSD; libheif and
libde265, LGPL, in its wheel; no encoder) decodes the whole image into memory, upright (libheif applies
the file's rotation and mirroring, as libvips does for the header), in 8 bits a sample, and the render
goes on from that image. It is imported on the first HEIC a process decodes (5.5 MB of memory): a node
whose originals hold none never loads it.

A decode runs in the render's thread and, unlike libvips', cannot be stopped once started: ~40-80 ms of
CPU a megapixel in one thread, as the file's bit rate goes (a 12 MP photo 0.5-1 s; benchmarks/README.md,
"HEIC originals"), so `render_timeout` stops a render only once it returns; `[limits] max_source_pixels`
bounds it (docs/security.md).
"""

from __future__ import annotations

import functools
from types import ModuleType

import pyvips

from ..errors import BadRequest
from . import stopping


@functools.cache
def _pi_heif() -> ModuleType:
    import pi_heif
    # one thread a decode, as libvips' renders (`concurrency_set(1)`): parallelism comes from rendering
    # several images at once; and none of the images a HEIF may hold besides the one shown
    pi_heif.options.DECODE_THREADS = 1
    pi_heif.options.THUMBNAILS = pi_heif.options.DEPTH_IMAGES = pi_heif.options.AUX_IMAGES = False
    return pi_heif


def decode(body: bytes, page: int | None, max_pixels: int) -> pyvips.Image:
    """The primary image of `body` (`page`: its top-level image `page`, from 1, as libvips' `page` + 1),
    decoded whole, 8-bit sRGB or sRGB with alpha, its ICC profile attached. Raises `pyvips.Error` when
    libheif cannot decode it, `BadRequest` for an image over `max_pixels`."""
    pi_heif = _pi_heif()
    try:
        heif = pi_heif.open_heif(body, convert_hdr_to_8bit=True)
        image = heif[heif.primary_index if page is None else page - 1]
        width, height = image.size
        if width * height > max_pixels:  # a page's own size: the probe checked the primary image's
            raise BadRequest("source too large")
        stopping.check()
        bands = len(image.mode)  # "RGB" or "RGBA" in 8 bits
        rows = pyvips.Image.new_from_memory(image.data, image.stride, height, 1, "uchar")
    except (ValueError, RuntimeError, EOFError) as error:  # libheif's errors, as pi-heif raises them
        raise pyvips.Error(f"heic: {error}") from None
    # copied into memory libvips owns: an image made on Python's memory keeps it alive, but the images made
    # from that one do not (a render read freed memory), and the render reads it through them
    decoded = rows.crop(0, 0, width * bands, height).bandfold(factor=bands).copy_memory()
    decoded = decoded.copy(interpretation=pyvips.enums.Interpretation.SRGB)
    profile = image.info.get("icc_profile")
    if profile:
        decoded.set_type(pyvips.GValue.blob_type, "icc-profile-data", profile)
    return stopping.watch(decoded)
