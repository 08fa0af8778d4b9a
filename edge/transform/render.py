"""Rendering: original bytes + transformation → encoded output, with libvips, off the IOLoop.

`Renderer.render` (and `Renderer.probe`, for `orig-true`, which serves the original as it is) runs the
work in a bounded thread pool (libvips releases the GIL) and answers 503 when the queue in front of the
pool is full, or when the work waited `[server] transform_queue_timeout` in it (then it leaves the queue
and never runs). A render still running `[limits] render_timeout` after it started, or whose awaiting
task is cancelled, is stopped inside libvips (`stopping`) and its thread freed.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path

import pyvips

from ..cache.entries import strong_etag
from .. import render_notes
from ..config import Defaults, Limits, ServerSettings
from ..errors import (BadRequest, DecodeMemoryExhausted, InvalidTransformation, OutOfMemory, RenderTimedOut,
                      TransformQueueFull, TransformQueueTimeout, UnprocessableSource, drop_tracebacks)
from ..threads import BlockingPool, NotStarted
from . import heic, held, stopping, svgraster
from .as_is import without_metadata
from .compose import draw_layers
from .cost import check_render_cost, decode_cost, output_formats, palette_affordable
from .cut_short import jpeg_segments, served_cut_short
from .effects import apply_look
from .encode import EncodeOptions, encode, encoder_memory
from .fonts import Font, shipped_fonts
from .formats import (ANIMATED_LOADERS, HEIC_LOADER, INPUT_LOADERS, LOADER_CLASSES, LOADER_FORMATS, READ_FORMATS,
                      SVG_LOADER, animates, as_vector, chosen_by_accept, final_formats, picks_by_alpha)
from .geometry import (OPAQUE_CHECK_MAX_PIXELS, WHITE, Source, apply_geometry, check_side, face_count, in_memory,
                       opaque, resolved, trim_box)
from .held import SAMPLE_BYTES, DecodeBudget, NeedsDecodeMemory
from .layers import drawn_fonts, pages_drawn
from .options import DEFAULT_OUTPUT, DEFAULT_STEP, Step, Transformation
from .png_chunks import without_bulky_chunks

# Every request decodes a different original: the operation cache would only hold memory.
pyvips.cache_set_max(0)
# One libvips worker thread per render: image work then keeps at most `[server] transform_threads`
# cores busy (libvips' default, one thread per core for every render, let `transform_threads = 1` burn
# every core). Parallelism comes from rendering several images at once.
pyvips.concurrency_set(1)
# pyvips routes libvips' log messages (every render logs "threadpool completed" at DEBUG) to a Python
# callback, which runs in libvips' threads: a garbage collection starting there aborted the
# interpreter in a test run. Without it GLib's own handler prints warnings to stderr and drops
# debug and info messages, all in C.
pyvips._remove_log_handler()


def allow_only_input_loaders(allow_svg: bool) -> None:
    """Let libvips, in this process, run only the loaders of the formats the node reads (SVG's when
    `allow_svg`). libvips sniffs any bytes for a loader, and this build has more than the node reads (its
    own `.v` format, matrix, CSV, raw, librsvg's XML parser): blocked, they refuse an origin's answer
    before parsing it, where `probe` could only refuse it after. Process-wide, every loader set again at
    each call: the last config applied decides (`probe` still checks the loader, as a second line)."""
    pyvips.block_untrusted_set(True)  # the operations libvips itself marks as unsafe on untrusted input
    pyvips.operation_block_set("VipsForeignLoad", True)
    for loader, class_name in LOADER_CLASSES.items():
        if loader != SVG_LOADER or allow_svg:
            pyvips.operation_block_set(class_name, False)


_SWAPS_SIDES = {5, 6, 7, 8}  # EXIF orientations that turn the image by 90°
_FAIL_ON = pyvips.enums.FailOn.TRUNCATED
#: libjpeg does not fail a JPEG whose coded data ends before its last row (cut short and closed again with
#: an end marker, or a frame header taller than its data): it warns and fills the rows it lacks with grey,
#: which would be cached as the image. Strict renders of a JPEG fail on its warnings; those warnings that
#: lose no pixel (extraneous bytes between segments, a sequential JPEG's odd scan parameters, common
#: from some cameras) are rendered again, warnings let through.
_JPEG_LOST_PIXELS = ("premature end of data segment", "bad Huffman code", "bad arithmetic code", "instead of RST")


class _HarmlessJpegWarning(Exception):
    """A strict render failed on a JPEG warning that loses no pixel: to render again, not strictly."""


def _fail_on(header: ImageHeader, strict: bool) -> str:
    return pyvips.enums.FailOn.WARNING if strict and header.loader == _JPEG_LOADER else _FAIL_ON


def _harmless_warning(error: pyvips.Error, header: ImageHeader, strict: bool) -> bool:
    """Whether `error` is a JPEG warning of a strict render that loses no pixel (see `_JPEG_LOST_PIXELS`)."""
    return (_fail_on(header, strict) == pyvips.enums.FailOn.WARNING and "VipsJpeg: " in (error.detail or "")
            and not any(lost in error.detail for lost in _JPEG_LOST_PIXELS))


_JPEG_LOADER = "jpegload_source"
_GIF_LOADER = "gifload_source"
_JPEG_SHRINKS = (8, 4, 2)
#: the Ultra HDR JPEG's loader: libjpeg too, for the image and its gain map
_UHDR_LOADER = "uhdrload_source"
#: scans a progressive JPEG may have. libjpeg reads every scan, each a pass over the whole image, before
#: it gives the first row: out of the render deadline's reach (a 125 KB JPEG of 3000 scans at 16 MP held
#: a render thread 5.7 s past a 1 s deadline; at 100 MP and 30 000 scans, minutes). Encoders write at
#: most a few dozen (libjpeg's default progression 10, for colour).
MAX_JPEG_SCANS = 100
#: how often a running render's clock is read: its time is the sum of the readings' steps, each counted
#: for `RENDER_STEP_MAX_SECONDS` at most, so that `CLOCK_MONOTONIC` jumping forward (a virtual machine
#: resumed or migrated) does not stop it (its URL was then answered 503 for `TIMED_OUT_SECONDS`)
RENDER_CLOCK_SECONDS = 1.0
RENDER_STEP_MAX_SECONDS = 5.0
#: a render stopped at its deadline is `contended` when the renders of its process had less CPU time than
#: this share of a core each, for as long as it ran: slowed by the others, or by other processes, rather than
#: slow by itself (its URL is not refused for `pipeline.TIMED_OUT_SECONDS` afterwards)
CONTENDED_SHARE = 0.8
#: a scan's header: SOS (FF DA), its length and component count, as libjpeg requires them (6 + 2 × Ns, Ns 1-4).
#: Not FF DA alone: it occurs once in 65 536 bytes of any compressed data, as in the video a motion photo appends
_JPEG_SCAN_HEADER = re.compile(rb"\xff\xda\x00(?:\x08\x01|\x0a\x02|\x0c\x03|\x0e\x04)")
#: the frame markers (SOF) of progressive JPEGs: only their scans can be many (a sequential JPEG holds each
#: component in one scan, and its scans cannot cover blocks with end-of-band runs: no amplification)
_PROGRESSIVE_FRAMES = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
#: segments read before a JPEG's frame header (APPn, DQT, DHT… a few in practice); past them, its scans are counted
_JPEG_HEADER_SEGMENTS = 64
#: a JPEG shrunk on load to at most this many pixels is decoded whole into memory at its first use
#: (random access: 3-4 MB at most) rather than streamed in strips: 4-9 % less CPU and 7-8 % more misses
#: a second at 2000×1333 → 300 px, nothing either way at 12 MP (benchmarks/README.md, "Random access
#: for small decodes"). Larger decodes stream, which holds only a few strips of them.
RANDOM_ACCESS_MAX_PIXELS = 2**20
#: the loaders that hold a whole image while they decode it, whatever the output's size, and the bytes a pixel
#: takes there beyond its output samples (peak resident memory of a 100 px thumbnail, docs/security.md):
#: libheif's AV1 decoder and its conversion ~12 (an 8-bit RGB AVIF 15 bytes a pixel, a 10-bit one 18), a
#: HEIC's decode by pi-heif and its copy ~5 (6.7-7.0 bytes a pixel of an 8-bit RGB one, `heic.decode`),
#: libnsgif's canvas ~0.5 (4.5 for RGBA). PNG's only when interlaced (`_whole_decode_bytes`)
#: an animated WebP's frames are drawn on an RGBA canvas of its whole size, held while it decodes (a 56 kB file of
#: 100 tiny frames on a 100 MP canvas took 400 MB)
_WEBP_CANVAS_BYTES = 4
_WEBP_LOADER = "webpload_source"
_WHOLE_DECODE_EXTRA = {"heifload_source": 12, HEIC_LOADER: 5, "gifload_source": 1, "pngload_source": 0}


@dataclass(frozen=True)
class Rendered:
    body: bytes
    format: str
    width: int
    height: int
    #: the output's ETag, hashed here in the render's thread: no second hop to hash it
    etag: str


@dataclass(frozen=True)
class ImageHeader:
    """What the header of an original says, read without decoding the pixels."""

    loader: str
    width: int  # after EXIF orientation; one frame of an animation
    height: int
    has_alpha: bool
    frames: int = 1
    has_profile: bool = False
    #: bytes a frame takes while its loader decodes it whole (0 for the loaders that stream)
    decode_memory: int = 0
    #: a progressive JPEG: decoded whole (every scan into the coefficients of the whole image) before any row
    progressive: bool = False
    #: an indexed original (a palette PNG, a GIF): its PNG outputs are indexed too
    palette: bool = False


def _read_in_place(body: bytes) -> pyvips.Source:
    """`body` as a libvips source that reads it in place (the image keeps `body` alive). Loading from
    a buffer instead copies the whole body into libvips first: 2.4 MB and 1-2 ms for a 12 MP JPEG
    (30 MB for a 12 MP PNG), for every probe and every decode (benchmarks/README.md, "Memory, third pass")."""
    return pyvips.Source.new_from_memory(body)


#: chunks a WebP file may have besides its frames (VP8X, ICCP, ANIM, EXIF, XMP, a few unknown ones)
_WEBP_OTHER_CHUNKS = 16


def _webp_frames(body: bytes, limit: int) -> int:
    """The animation frames (`ANMF` chunks) of a WebP file, counted from the RIFF chunks' headers up to
    `limit` + 1 (0 for other files): libwebp's demuxer, which libvips' header read calls, walks every frame
    in time that grows with the square of their number (40 000 tiny frames in 1.9 MB: 1.7 s; a 40 MB file,
    minutes), out of the render deadline's reach. More chunks than `limit` frames and `_WEBP_OTHER_CHUNKS`
    count as `limit` + 1: walking 40 MB of empty ones held a render thread, and the GIL, 1.8 s."""
    if body[:4] != b"RIFF" or body[8:12] != b"WEBP":
        return 0
    frames, offset = 0, 12
    for _ in range(limit + _WEBP_OTHER_CHUNKS):
        if offset + 8 > len(body) or frames > limit:
            return frames
        size = int.from_bytes(body[offset + 4:offset + 8], "little")
        frames += body[offset:offset + 4] == b"ANMF"
        offset += 8 + size + (size & 1)  # chunks are padded to an even size
    return frames if offset + 8 > len(body) else max(frames, limit + 1)


def _may_have_many_scans(body: bytes) -> bool:
    """Whether a JPEG's frame is progressive, read from its segments' headers before the frame's (skipping
    the images an EXIF block may embed); True when that cannot be told within `_JPEG_HEADER_SEGMENTS`. Counting
    scans reads the whole file (~0.3 ms a MB, 4 × the rest of a 12 MP JPEG's probe): only where they matter."""
    for _, marker in jpeg_segments(body, _JPEG_HEADER_SEGMENTS):
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a frame header (not DHT, JPG, DAC)
            return marker in _PROGRESSIVE_FRAMES
    return True


def _too_many_frames(limits: Limits) -> BadRequest:
    return BadRequest(f"source too large: more than {limits.max_frames} frames")


#: the first bytes of documents an image CDN's storage holds beside its images, which no loader here reads (a
#: Cloudinary account's PDFs, Photoshop and Illustrator files), and what they are
_DOCUMENT_SIGNATURES = ((b"%PDF-", "a PDF document (Illustrator's .ai too)"), (b"8BPS", "a Photoshop document"),
                        (b"%!PS", "a PostScript document"), (b"\xc5\xd0\xd3\xc6", "an EPS document"))


#: an SVG document's start: its root element `svg`, after an XML declaration, a doctype (with its internal subset:
#: `<!DOCTYPE svg [<!ENTITY …>]>`, an attacker's favourite) and comments (an HTML page holding an inline `<svg>`, an
#: origin's login page, is none)
_SVG_ROOT = re.compile(rb"(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*>\s*)?"
                       rb"(?:(?:<!--.*?-->|<!DOCTYPE\s+svg[^>\[]*(?:\[[^\]]*\]\s*)?>)\s*)*"
                       rb"<svg[\s>/]", re.DOTALL | re.IGNORECASE)


class _FramesTooLarge(BadRequest):
    """An animation's frames decoded, summed over a render's originals, over `max_source_pixels` (400): its first
    frame alone may do, under `f-auto`; its bytes as they are, never."""


def _named_format(body: bytes, allow_svg: bool) -> tuple[str, ...]:
    """The 422's message for a document the node does not read, named (a team moving from Cloudinary read
    "corrupt" of a PDF it had served as an image, and of an SVG the config leaves unread); none (the default
    message) for anything else."""
    for signature, what in _DOCUMENT_SIGNATURES:
        if body.startswith(signature):
            return (f"unsupported source: {what}; the node reads {READ_FORMATS}",)
    # an AVIF sequence's brand, in its file type box (of size 0: to the end of the file; its brands are what begins it)
    if body[4:8] == b"ftyp" and b"avis" in body[8:min(int.from_bytes(body[:4], "big") or len(body), 4096)]:
        return (f"unsupported source: an animated AVIF, which libvips does not read; the node reads {READ_FORMATS} "
                "(AVIF stills)",)
    if not allow_svg and _SVG_ROOT.match(body, 0, 4096):  # libvips' own sniffing is off with its SVG loader
        return (f"unsupported source: an SVG document, read only with [limits] allow_svg = true; the node reads "
                f"{READ_FORMATS}",)
    return ()


def probe(body: bytes, limits: Limits, *, svg_read: bool = True, as_is: bool = False) -> ImageHeader:
    """Read the header; refuse what is not an image (422) or too large to decode (400). `svg_read=False`: an SVG
    is told by its first bytes, its header left unread (0×0), for one served as it is: librsvg parses a whole
    document for its header (26 MB of shapes: 4 s and 1.1 GB at every miss, for bytes sent untouched).
    `as_is`, for an original served as it is whatever its format: one cut short (`served_cut_short`), which no
    decode will find, is a 422. A PNG's text and profile chunks are bounded first (`png_chunks`)."""
    return _probe_bounded(without_bulky_chunks(body), limits, svg_read=svg_read, as_is=as_is)


def _probe_bounded(body: bytes, limits: Limits, *, svg_read: bool = True, as_is: bool = False) -> ImageHeader:
    """`probe` of bytes `png_chunks` bounded already (a render's, which it decodes after: walked once)."""
    if _webp_frames(body, limits.max_frames) > limits.max_frames:
        raise _too_many_frames(limits)
    try:
        if limits.allow_svg and _is_svg(body):  # parsed in a child process too (`_svg_thumbnail`)
            if not svg_read:
                return ImageHeader(SVG_LOADER, 0, 0, True)
            image, loader = _svg_thumbnail(body, None, {}, limits), SVG_LOADER
        else:
            image = pyvips.Image.new_from_source(_read_in_place(body), "")
            loader = image.get("vips-loader")
    except pyvips.Error:
        raise UnprocessableSource(*_named_format(body, limits.allow_svg), unreadable=True) from None
    if loader == "heifload_source" and image.get_typeof("heif-compression") and image.get("heif-compression") == "hevc":
        loader = HEIC_LOADER
    if loader not in INPUT_LOADERS and not (loader == SVG_LOADER and limits.allow_svg):
        raise UnprocessableSource(*_named_format(body, limits.allow_svg), unreadable=True)
    # a scan header is a scan: within a scan's data, an FF byte is always followed by 00. (An Ultra HDR
    # JPEG's gain map, after the primary image, may be progressive whatever the primary is: always counted)
    progressive = loader == _JPEG_LOADER and _may_have_many_scans(body)
    if loader == _UHDR_LOADER or progressive:
        scans = islice(_JPEG_SCAN_HEADER.finditer(body), MAX_JPEG_SCANS + 1)  # counted no further
        if sum(1 for _ in scans) > MAX_JPEG_SCANS:
            raise BadRequest(f"source too large: more than {MAX_JPEG_SCANS} JPEG scans")
    frames = image.get("n-pages") if image.get_typeof("n-pages") else 1
    width, height = image.width, image.height  # each read is a round of calls into libvips
    if frames > limits.max_frames:
        raise _too_many_frames(limits)
    if width * height > limits.max_source_pixels:
        raise BadRequest("source too large")
    if (as_is or loader == _GIF_LOADER) and served_cut_short(body, loader):  # a GIF's decode never tells it
        raise UnprocessableSource()
    orientation = image.get("orientation") if image.get_typeof("orientation") else 1
    if orientation in _SWAPS_SIDES:
        width, height = height, width
    return ImageHeader(loader, width, height, image.hasalpha(), frames, bool(image.get_typeof("icc-profile-data")),
                       _whole_decode_bytes(image, loader, progressive, frames), progressive,
                       bool(image.get_typeof("palette") and image.get("palette")))


def _whole_decode_bytes(image: pyvips.Image, loader: str, progressive: bool, frames: int) -> int:
    """The memory one frame of `image` takes while its loader decodes it whole, or 0 when it streams
    (a baseline JPEG, a non-interlaced PNG: a few strips). A progressive JPEG holds its coefficients, 2 bytes
    a sample at full resolution whatever the shrink on load (a 100 MP one took 710 MB); a still WebP its
    pixels (an animation's frames are decoded one at a time onto its canvas, counted apart)."""
    if progressive:
        return image.width * image.height * (image.bands * 2 + 1)
    if loader == _WEBP_LOADER and frames == 1:
        return image.width * image.height * (image.bands + 1)
    extra = _WHOLE_DECODE_EXTRA.get(loader)
    if extra is None or (loader == "pngload_source" and not
                         (image.get_typeof("interlaced") and image.get("interlaced"))):
        return 0
    return image.width * image.height * (image.bands * SAMPLE_BYTES.get(image.format, 8) + extra)


def jpeg_shrink(header: ImageHeader, width: int, height: int) -> int:
    """The largest factor (8, 4, 2) at which libjpeg can decode `header`'s JPEG and still give at least
    `width`×`height` (upright) pixels, or 1. libvips' `thumbnail` leaves a factor of 2 for its own
    resize (it decodes a 2000 px JPEG at 1/2 for a 300 px output, where 1/4 would do); libjpeg's DCT
    scaling is a good enough filter that decoding at the largest factor costs little quality
    (tests/test_shrink_on_load.py holds it to an SSIM bound) and 20–40 % of the render's CPU.

    libvips' JPEG loader rounds a shrunk side down (1333 rows at 1/4: 333), and refuses a side that
    rounds to 0 ("bad dimensions"): a factor is taken only when both sides, rounded down, still hold
    the output (and so are at least 1 px: a 1×1, 6×6 or 20000×1 JPEG is decoded at full size)."""
    if header.loader != _JPEG_LOADER:
        return 1
    width, height = max(1, width), max(1, height)
    for factor in _JPEG_SHRINKS:
        if header.width // factor >= width and header.height // factor >= height:
            return factor
    return 1


#: seconds between two looks at the stop switch while an SVG is drawn in its child process
_SVG_POLL = 0.02
#: the child's script, run by its path (isolated: it needs pyvips alone), so that it is this process' copy
_SVG_RASTER = str(Path(__file__).with_name("svgraster.py"))
#: the memory the SVG child's interpreter and libvips take beside the document's (measured: 25 MB)
SVG_CHILD_BASE_BYTES = 64 * 10**6
_SVG_CHILD = threading.Semaphore(1)


def _svg_thumbnail(body: bytes, width: int | None, options: dict, limits: Limits) -> pyvips.Image:
    """`thumbnail_buffer(body, width, **options)` of an SVG, drawn in a child process (`svgraster`) killed
    when the render is stopped: librsvg draws a whole document without looking at libvips' kill flag (a
    15 kB file of blurred shapes held a render thread 22 s and more past a 1 s deadline). Without a width,
    its header: an image of that size and no pixels."""
    cpu_seconds = math.ceil(limits.render_timeout) + 1  # the child's own bound, should this process die
    memory_bytes = limits.max_decode_memory + SVG_CHILD_BASE_BYTES
    # one child at a time in a worker, each up to `memory_bytes`: four at once of a 38 MB document had taken 6.8 GB
    while not _SVG_CHILD.acquire(timeout=_SVG_POLL):
        stopping.check()
    try:
        return _svg_child(body, width, options, limits, cpu_seconds, memory_bytes)
    finally:
        _SVG_CHILD.release()


def _svg_child(body: bytes, width: int | None, options: dict, limits: Limits, cpu_seconds: int,
               memory_bytes: int) -> pyvips.Image:
    # the document is the child's stdin as a file in memory: `communicate`, called again after a timeout,
    # never writes to a pipe again (a document larger than the pipe's 64 kB waited for ever)
    with open(os.memfd_create("svg"), "w+b") as document:
        document.write(body)
        document.seek(0)
        child = subprocess.Popen([sys.executable, "-I", _SVG_RASTER,
                                  json.dumps([width, options, cpu_seconds, memory_bytes])],
                                 stdin=document, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                out, _ = child.communicate(timeout=_SVG_POLL)
                break
            except subprocess.TimeoutExpired:
                stopping.check()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    if child.returncode in (svgraster.OUT_OF_MEMORY, -signal.SIGABRT, -signal.SIGSEGV):  # its allocation refused
        raise BadRequest(f"source too large: drawing it takes over max_decode_memory "
                         f"({limits.max_decode_memory / 1e6:.0f} MB)")
    if child.returncode == -signal.SIGXCPU:  # its own CPU bound, reached before the render's deadline was seen
        raise RenderTimedOut()  # (it had been a 422, "corrupt": the document is drawable, only too slowly)
    if child.returncode != 0:
        raise pyvips.Error("the SVG could not be drawn")
    head_end = out.index(b"\n")
    width, height, bands, band_format, interpretation = json.loads(out[:head_end])
    if len(out) == head_end + 1:  # the header alone
        return pyvips.Image.black(width, height, bands=bands).cast(band_format).copy(interpretation=interpretation)
    image = pyvips.Image.new_from_memory(memoryview(out)[head_end + 1:], width, height, bands, band_format)
    held.charge(image, kept=True)  # the drawing, read back whole (w-5000 of a 350-byte SVG: 194 MB, uncounted)
    return image.copy(interpretation=interpretation)


def _is_svg(body: bytes) -> bool:
    """Whether libvips would read `body` with its SVG loader (asked of its first bytes: nothing parsed)."""
    name = pyvips.vips_lib.vips_foreign_find_load_source(_read_in_place(body).pointer)
    return name != pyvips.ffi.NULL and pyvips.ffi.string(name).decode() == LOADER_CLASSES[SVG_LOADER] + "Source"


def _still_source(body: bytes, header: ImageHeader, keep_profile: bool, limits: Limits, strict: bool) -> Source:
    """The first frame, upright, shrunk on load; an embedded profile applied unless `cp-true`. `strict`:
    a JPEG's warnings fail its decode (`_JPEG_LOST_PIXELS`)."""
    if header.loader == HEIC_LOADER:  # decoded whole, by libheif: no shrink on load
        return _page_source(body, header, None, keep_profile, limits)
    convert = {"export_profile": "srgb"} if header.has_profile and not keep_profile else {}
    fail_on = _fail_on(header, strict)

    def thumbnail(width: int, height: int | None = None, **options) -> pyvips.Image:
        if header.loader == SVG_LOADER:
            if height is not None:
                options["height"] = height
            return stopping.watch(_svg_thumbnail(body, width, options, limits))
        # without a height, libvips fits a width×width box: checking the width alone is then enough
        shrink = jpeg_shrink(header, width, height or 1)
        if height is not None:
            options["height"] = height
        if shrink > 1:  # decoded at 1/shrink; `thumbnail_image` then resizes, turns upright, converts
            small = (header.width // shrink) * (header.height // shrink) <= RANDOM_ACCESS_MAX_PIXELS
            access = pyvips.enums.Access.RANDOM if small else pyvips.enums.Access.SEQUENTIAL
            loaded = stopping.watch(pyvips.Image.new_from_source(
                _read_in_place(body), "", shrink=shrink, fail_on=fail_on, access=access))
            return stopping.watch(loaded.thumbnail_image(width, **convert, **options))
        return stopping.watch(pyvips.Image.thumbnail_source(
            # thumbnail's own `fail_on` does not reach the loader (libvips 8.18); the loader options do
            _read_in_place(body), width, option_string=f"fail_on={fail_on}", **convert, **options))

    return Source(header.width, header.height, thumbnail,
                  lambda: thumbnail(header.width, height=header.height, size=pyvips.enums.Size.FORCE))


def _page_source(body: bytes, header: ImageHeader, page: int | None, keep_profile: bool, limits: Limits) -> Source:
    """`pg-N`: that page (frame) of a multi-page source, upright, at its own size (a TIFF's pages may
    differ in size from the first, which the probe checked); `None`: a HEIC's primary image."""
    if header.loader == HEIC_LOADER:
        image = heic.decode(body, page, limits.max_source_pixels)
    else:
        image = stopping.watch(pyvips.Image.new_from_source(_read_in_place(body), "", page=page - 1,
                                                            fail_on=_FAIL_ON))
        if image.width * image.height > limits.max_source_pixels:
            raise BadRequest("source too large")
        image = image.autorot()
    if keep_profile is False and image.get_typeof("icc-profile-data"):
        image = image.icc_transform("srgb", embedded=True)
    return Source.of_image(_eight_bit(image, keep_profile))


def _eight_bit(image: pyvips.Image, keep_profile: bool) -> pyvips.Image:
    """8-bit sRGB (or greyscale), as `thumbnail` makes the still sources: the effects, paddings, borders
    and alpha arithmetic work in 0-255 (`bg-00FF00` on a page of a 16-bit TIFF was a black border, `o-50`
    made it wholly transparent). An 8-bit image under `cp-true` keeps its colour space for its profile."""
    srgb, grey = pyvips.enums.Interpretation.SRGB, pyvips.enums.Interpretation.B_W
    if image.format == pyvips.enums.BandFormat.UCHAR and (keep_profile or image.interpretation in (srgb, grey)):
        return image
    return image.colourspace(srgb if image.bands >= 3 else grey)


def _frames(body: bytes, header: ImageHeader, keep_profile: bool) -> tuple[pyvips.Image, list[Source]]:
    """Every frame of an animation, each a source of its own."""
    strip = stopping.watch(pyvips.Image.new_from_source(_read_in_place(body), "", n=-1, fail_on=_FAIL_ON))
    if header.has_profile and not keep_profile:
        strip = strip.icc_transform("srgb", embedded=True)
    strip = _eight_bit(strip, keep_profile)
    height = strip.height // header.frames
    return strip, [Source.of_image(strip.crop(0, i * height, strip.width, height)) for i in range(header.frames)]


def _trimmed_together(sources: list[Source], threshold: int) -> list[Source]:
    """An animation's frames trimmed by one box, the one that holds what each frame's trim keeps: trimmed
    each alone, frames of other sizes were stretched to the first one's (a square moving across a GIF
    became one still square)."""
    frames = [in_memory(source.decode()) for source in sources]
    boxes = [box for frame in frames if (box := trim_box(frame, threshold)) is not None]
    if not boxes:  # every frame uniform: nothing to cut
        return sources
    left, top = min(box[0] for box in boxes), min(box[1] for box in boxes)
    right, bottom = max(box[0] + box[2] for box in boxes), max(box[1] + box[3] for box in boxes)
    return [Source.of_image(frame.crop(left, top, right - left, bottom - top)) for frame in frames]


def _animation(strip: pyvips.Image, frames: list[pyvips.Image]) -> pyvips.Image:
    """Rendered frames (all of one size) back into one animation, with the original's timing."""
    animation = pyvips.Image.arrayjoin(frames, across=1).copy()
    animation.set_type(pyvips.GValue.gint_type, "page-height", frames[0].height)
    for name in ("delay", "loop"):
        if strip.get_typeof(name):
            animation.set_type(strip.get_typeof(name), name, strip.get(name))
    return animation


def _render_steps(source: Source, steps: tuple[Step, ...], max_output_side: int,
                  draw: Callable[[pyvips.Image, Step], pyvips.Image] | None = None,
                  base: tuple[int, int] | None = None, original: tuple[int, int] | None = None) -> pyvips.Image:
    """One image through the steps (`_render_frames`)."""
    return _render_frames([source], steps, max_output_side, draw, base, original)[0]


def _render_frames(sources: list[Source], steps: tuple[Step, ...], max_output_side: int,
                   draw: Callable[[pyvips.Image, Step], pyvips.Image] | None = None,
                   base: tuple[int, int] | None = None, original: tuple[int, int] | None = None,
                   max_pixels: int | None = None) -> list[pyvips.Image]:
    """Each step reads the previous one's result, which is held to the output limit too (else a chain
    of borders grows an image without bound before a last step shrinks it), and made once, in memory
    (else a step reads it as often as its operations need: a blur of a blur recomputed the first blur
    for every strip of the second, 40 times over). `draw` draws a step's layers on its result; `base`:
    a layer's steps are drawn on an image of this size; `original`: the size `iw`, `ih` are (the source's).

    An animation's frames (all of one size) go through each step together, and decide together: the
    first frame where `fo-auto` and `fo-face` cut and what `bg-dominant` and `cr`'s dominant colour are, all
    of them the box `t` trims (each frame deciding alone, the crop followed what moves and dragged the
    background with it).
    Every frame is made at each step's size: all of them together at most `max_pixels`, the budget for
    decoding them, checked on the first frame before the others are made."""
    images: list[pyvips.Image] = []
    original = original or (sources[0].width, sources[0].height)
    watched_from, held_from = stopping.mark(), held.mark()
    pending = list(steps)
    while pending:
        step = pending.pop(0)
        first = sources[0]
        if step.branches is not None:  # an if block: its branch for the image's size at this step
            chosen = step.branches.chosen((first.width, first.height), original, lambda: face_count(first),
                                          step.layers)
            # an empty branch: nothing to do, unless no step is left to make the image (a decode at full
            # size then: the step after an empty branch shrinks the original on load instead)
            pending[:0] = chosen or ((DEFAULT_STEP,) if not images and not pending else ())
            continue
        stopping.check()
        if step.trim is not None and len(sources) > 1:
            sources, step = _trimmed_together(sources, step.trim), replace(step, trim=None)
            first = sources[0]
        step = resolved(step, first, original, base)
        images = []
        for source in sources:
            image = apply_look(apply_geometry(source if source is first else replace(source, decided_by=first),
                                              step, max_output_side, layer=base is not None), step)
            if step.layers and draw is not None:
                image = draw(image, step)
            check_side(image.width, image.height, max_output_side)
            if max_pixels is not None and image.width * image.height * len(sources) > max_pixels:
                raise BadRequest(f"output too large: {len(sources)} frames of {image.width}x{image.height}"
                                 f" exceed {max_pixels} pixels")
            # Made now, one frame after the other, where a step follows (the result when only empty branches
            # follow, too: the lazy image would read a streamed decode again, out of order, and
            # `w-1500:if-w_gt_2000,w-1000,if-end` on a 12 MP JPEG was a 422) and for every frame of an
            # animation: the frames' lazy pipelines, joined, ran all at once, each with its operations'
            # buffers (`cr-green` on 100 frames of 480×270 peaked at 1.1 GB)
            images.append(in_memory(image) if pending or len(sources) > 1 else image)
        if pending:
            sources = [Source.of_image(image) for image in images]
            stopping.forget_since(watched_from, images)
            held.release_since(held_from, images)
    assert images, "a transformation renders at least one step"
    return images


def _read_overlay(path: str, body: bytes, limits: Limits) -> tuple[bytes, ImageHeader]:
    """A layer's original as libvips reads it (`png_chunks`), and `probe` of it: their errors name the layer (the base
    URL is not at fault)."""
    try:
        body = without_bulky_chunks(body)
        return body, _probe_bounded(body, limits)
    except UnprocessableSource:
        raise InvalidTransformation(f"i-{path}", "not an image the node can decode") from None
    except BadRequest as error:
        raise InvalidTransformation(f"i-{path}", error.message) from None


class _LayerDrawer:
    """Draws a step's layers; an image layer is its original rendered with the layer's own steps,
    once per render (an animation's frames share it, so it is made in memory) and kept until `close`.
    Not closures that call each other: the cycle they made held the layers' originals after the render, until
    the next garbage collection, seldom in a worker (`gc.freeze`): ten 37 MB PNG layers, 368 MB held idle."""

    def __init__(self, overlays: Mapping[str, bytes], headers: Mapping[str, ImageHeader], fonts: Mapping[str, Font],
                 limits: Limits, strict: bool):
        self._overlays, self._headers, self._fonts = overlays, headers, fonts
        self._limits, self._strict = limits, strict
        self._made: dict[tuple, tuple[pyvips.Image, tuple[int, int]]] = {}

    def draw(self, image: pyvips.Image, step: Step) -> pyvips.Image:  # also on layers, for the layers in them
        return draw_layers(image, step.layers, self.image_of, self._fonts, self._limits.max_output_side, self.draw)

    def image_of(self, path: str, steps: tuple[Step, ...], base: tuple[int, int],
                 page: int | None = None) -> tuple[pyvips.Image, tuple[int, int]]:
        key = path, steps, base, page
        if (made := self._made.get(key)) is None:
            made = self._made[key] = self._make(path, steps, base, page)
        return made

    def close(self) -> None:
        """Free the layers made (ten of 72 MB, the next render beside them: 2 GB where the decode budget is 1 GB), and
        let go of their originals: a traceback that holds the drawer's frame holds no layer then."""
        self._made.clear()
        self._overlays, self._headers = {}, {}

    def _make(self, path: str, steps: tuple[Step, ...], base: tuple[int, int],
              page: int | None) -> tuple[pyvips.Image, tuple[int, int]]:
        header, body, limits, strict = self._headers[path], self._overlays[path], self._limits, self._strict
        if page is not None and page > header.frames:
            raise InvalidTransformation(f"pg-{page}", f"the layer's source has {header.frames} page(s)")
        # `pg-N`: that page or frame (`pg-1` of a single-page source is the source, as for the base)
        source = _page_source(body, header, page, False, limits) if page and header.frames > 1 else \
            _still_source(body, header, keep_profile=False, limits=limits, strict=strict)
        watched_from, held_from = stopping.mark(), held.mark()
        try:  # made here, whole: a failure is the layer's (its original or its steps), not the base's
            drawn = _render_steps(source, steps or (DEFAULT_STEP,), limits.max_output_side, self.draw, base=base)
            layer = in_memory(drawn, kept=True)  # to the end of the render: `_made` keeps it
            # what made it is done with: held by the switch, ten turned 24 MP layers had taken 720 MB more
            stopping.forget_since(watched_from, [layer])
            held.release_since(held_from, ())
            return layer, (header.width, header.height)
        except InvalidTransformation:
            raise
        except BadRequest as error:  # the layer over a limit (a 20000×1 overlay at its own size): name it
            raise InvalidTransformation(f"i-{path}", error.message) from None
        except pyvips.Error as error:
            stopping.check()  # a stopped render fails inside libvips: report why it was stopped
            _check_allocated(error)
            if _harmless_warning(error, header, strict):
                raise _HarmlessJpegWarning() from None
            reason = "not an image the node can decode" if not _decodes(body, header, limits, strict) else \
                "libvips could not apply the layer's transformation to it"
            raise InvalidTransformation(f"i-{path}", reason) from None


def _check_allocated(error: pyvips.Error) -> None:
    """Raise `OutOfMemory` if libvips failed for an allocation (its loaders' and its own `out of memory`): the
    process at its memory limit, not a corrupt original's 422 (scarce-resources probe)."""
    if "out of memory" in str(error).lower():
        raise OutOfMemory() from None


def _decodes(body: bytes, header: ImageHeader, limits: Limits, strict: bool) -> bool:
    """Whether the first frame of `body` decodes whole (a truncated or corrupt file does not): the
    question asked only after a render that reads it failed, to say whose fault the failure was."""
    try:
        if header.loader == SVG_LOADER:  # drawn in its child process, as for the render
            _svg_thumbnail(body, 1, {}, limits)
            return True
        if header.loader == HEIC_LOADER:
            heic.decode(body, None, limits.max_source_pixels)
            return True
        image = stopping.watch(pyvips.Image.new_from_source(
            _read_in_place(body), "", fail_on=_fail_on(header, strict), access=pyvips.enums.Access.SEQUENTIAL))
        image.avg()
    except pyvips.Error:
        stopping.check()
        return False
    return True


def _asks_for_the_source(transformation: Transformation, planned: str, header: ImageHeader) -> bool:
    """Whether the transformation changes nothing of an animated source: no step, no output option
    but the source's own format or `f-auto`, and the source's format is one the browser takes (every browser
    takes GIF, a WebP only one that said so: an animated WebP had gone to any)."""
    fmt = LOADER_FORMATS.get(header.loader)
    return (all(step == DEFAULT_STEP for step in transformation.steps)
            and transformation.output.format in (None, fmt, "auto")
            and transformation.output == replace(DEFAULT_OUTPUT, format=transformation.output.format)
            and (fmt in final_formats(planned, header.loader, header.has_alpha, True)
                 or (fmt == "gif" and chosen_by_accept(planned))))


def fitted_to_the_side(transformation: Transformation) -> bool:
    """Whether an original larger than `[limits] max_output_side` is fitted within it rather than refused: a URL
    without steps (none, or output options alone). An endpoint's watermark is a step: there it is refused."""
    return not transformation.steps


def render_image(body: bytes, transformation: Transformation, planned_format: str,
                 defaults: Defaults, limits: Limits, overlays: Mapping[str, bytes] | None = None,
                 fonts: Mapping[str, Font] | None = None, budget: DecodeBudget | None = None,
                 reserved: int = 0, endpoint: Hashable | None = None) -> Rendered:
    """Decode, transform and encode, in the calling thread. `overlays`: the originals of the image
    layers, by path. Raises `EdgeError`s only (and the reason of a stop, when the render runs under a
    stopped `StopSwitch`), or `NeedsDecodeMemory` when `budget` (if any) cannot hold the render's memory
    (`held`, on `endpoint`'s share) now and `reserved` bytes of it, taken by the caller, are not enough.
    `w-auto`/`dpr-auto` must have been resolved (`hints.negotiate`)."""
    # what libvips reads, for as long as the render: a PNG's text and profile chunks bounded (`png_chunks`)
    body = without_bulky_chunks(body)
    # an endpoint's watermark is a layer: an SVG it is drawn on is drawn too, so that none goes out without it
    svg_as_is = as_vector(planned_format) and not any(step.layers for step in transformation.steps)
    header = _probe_bounded(body, limits, svg_read=not svg_as_is)
    if header.loader == SVG_LOADER and svg_as_is:
        return Rendered(body, "svg", header.width, header.height, strong_etag(body))
    page = transformation.output.page
    if page is not None and page > header.frames:
        raise BadRequest(f"invalid transformation: pg-{page}: the source has {header.frames} page(s)")
    animated = header.frames > 1 and page is None and animates(planned_format, header.loader)
    if fitted_to_the_side(transformation) and not animated and \
            max(header.width, header.height) > limits.max_output_side:
        # a URL that names no size (no step: a format, a quality at most) of an original over `max_output_side`, a
        # phone's panorama of 16000 px, is the original fitted within it: its own URL had been a 400 (an animation
        # asked for as it is is its bytes: `_asks_for_the_source`)
        side = limits.max_output_side
        transformation = replace(transformation, steps=(replace(DEFAULT_STEP, width=side, height=side, crop="at_max"),))
    overlays_read = {path: _read_overlay(path, data, limits) for path, data in (overlays or {}).items()}
    overlays = {path: data for path, (data, _) in overlays_read.items()}
    overlay_headers = {path: header for path, (_, header) in overlays_read.items()}
    # each layer decodes its original (ten layers of one original: ten decodes at once)
    layers = [(overlay_headers[path], layer_page) for path, layer_page in pages_drawn(transformation.steps)
              if path in overlay_headers]
    # an animation's frames are decoded one after the other, and its frame N (`pg-N`, the base's or a layer's)
    # from the N before it: those of one render, summed, are held to `max_source_pixels` as one original is
    # (ten layers of frames 91-100 of a 100-frame 1 MP WebP took 16 s of CPU for a cost of nothing)
    def frames_decoded(animated: bool) -> list[tuple[ImageHeader, int]]:
        animations = [(header, header.frames if animated else page)] + layers
        return [(h, frames) for h, frames in animations if frames and h.frames > 1 and h.loader in ANIMATED_LOADERS]

    layer_decodes = sum(decode_cost(h) for h, _ in layers)

    def costed(animated: bool) -> str:  # the encode counts too; an `f-auto` format over budget falls back
        if sum(h.width * h.height * frames for h, frames in frames_decoded(animated)) > limits.max_source_pixels:
            raise _FramesTooLarge("source too large")
        return check_render_cost(
            transformation, planned_format, header.loader, header.has_alpha, animated, limits, defaults,
            (header.width, header.height), header.frames if animated else 1,
            {path: (h.width, h.height) for path, h in overlay_headers.items()},
            decode_cost(header) * (header.frames if animated else 1) + layer_decodes)
    try:
        planned_format = costed(animated)
    except BadRequest as error:
        # an animation asked for as it is, in its own format: its bytes, rather than an encode of every frame over
        # budget that could only lose colours (a plain URL of a long GIF keeps working), without the metadata an
        # encode strips (none when its structure does not walk to its end)
        as_is = without_metadata(body, LOADER_FORMATS[header.loader]) if animated and \
            not isinstance(error, _FramesTooLarge) and _asks_for_the_source(transformation, planned_format, header) \
            else None
        if as_is is not None:
            return Rendered(as_is, LOADER_FORMATS[header.loader], header.width, header.height, strong_etag(as_is))
        if not (animated and chosen_by_accept(planned_format)):
            raise
        # `f-auto` answers no 400 for its format alone: an animation over budget in every format the browser takes
        # is its first frame, as `f-jpg` makes it (an animated WebP had been a 400 to every browser without WebP)
        animated = False
        planned_format = costed(animated)
    # estimated from the headers, before any decode: libvips cannot stop such a decode once it started
    whole = header.decode_memory * (header.frames if animated else 1) + sum(h.decode_memory for h, _ in layers) + \
        sum(h.width * h.height * _WEBP_CANVAS_BYTES for h, _ in frames_decoded(animated) if h.loader == _WEBP_LOADER)

    def attempt(strict: bool) -> Rendered:
        with held.accounted(budget, reserved, limits.max_decode_memory, whole, endpoint):
            return _render_checked(body, transformation, planned_format, defaults, limits, overlays, fonts, header,
                                   overlay_headers, animated, strict, decode_cost(header) + layer_decodes)

    watched_from = stopping.mark()
    try:
        return attempt(strict=True)
    except _HarmlessJpegWarning:
        # the first attempt's images, held by the stop switch and the warning's traceback, freed before the second
        # makes its own (a retry inside this block had held both: +577 MB where one takes +308)
        stopping.forget_since(watched_from, [])
    return attempt(strict=False)


def _render_checked(body: bytes, transformation: Transformation, planned_format: str, defaults: Defaults,
                    limits: Limits, overlays: Mapping[str, bytes] | None, fonts: Mapping[str, Font] | None,
                    header: ImageHeader, overlay_headers: Mapping[str, ImageHeader], animated: bool,
                    strict: bool, decodes: float) -> Rendered:
    """`render_image` once the originals' headers passed every check. `strict`: the JPEGs' warnings fail
    it (`_JPEG_LOST_PIXELS`); raises `_HarmlessJpegWarning` when one that loses no pixel did. `decodes`: the units
    of decoding a still's originals, each layer's once (`cost.decode_cost`)."""
    page = transformation.output.page
    output, steps = transformation.output, transformation.steps or (DEFAULT_STEP,)
    layers = _LayerDrawer(overlays or {}, overlay_headers, fonts or shipped_fonts(), limits, strict)
    draw = layers.draw
    try:
        if animated:
            strip, sources = _frames(body, header, output.colour_profile)
            size = header.width, header.height  # `iw`, `ih`: a frame's, trimmed or not
            image = _animation(strip, _render_frames(sources, steps, limits.max_output_side, draw, original=size,
                                                     max_pixels=limits.max_source_pixels))
            frame_height = image.get("page-height")
        else:
            # `pg-1` of a single-page source is the source (its loader may take no `page` option)
            source = _page_source(body, header, page, output.colour_profile, limits) if page and header.frames > 1 \
                else _still_source(body, header, output.colour_profile, limits, strict)
            image = _render_steps(source, steps, limits.max_output_side, draw)
            frame_height = image.height
        image = _eight_bit(image, output.colour_profile)  # as the sources are: what the encoders take
        width = image.width
        has_alpha = image.hasalpha()
        if has_alpha and not animated and picks_by_alpha(planned_format) and \
                width * image.height <= OPAQUE_CHECK_MAX_PIXELS:
            # an alpha band that hides nothing (a PNG's unused band) makes no PNG of `f-auto`: JPEG is a
            # tenth of the size or less. Read twice, for the band then for the encode: made once, in memory
            image = in_memory(image)
            has_alpha = not opaque(image)
        frames = image.height // frame_height
        formats = output_formats(transformation, planned_format, header.loader, has_alpha, animated,
                                 (width, frame_height), frames, limits, defaults)
        if len(formats) > 1:  # encoded several times: decoded and transformed once
            image = in_memory(image)
        flatten_on = next((step.colour for step in reversed(steps) if step.colour), WHITE)
        # an indexed original's PNG stays indexed: made full colour, a PNG-8's downscale had been 2.5 times its size
        palette = header.palette and "png" in formats and not output.lossless and frames == 1 and \
            image.bands >= 3 and palette_affordable(transformation, formats, (width, frame_height), limits, defaults,
                                                    decodes)
        options = EncodeOptions(
            quality=output.quality or defaults.quality, avif_effort=defaults.avif_effort,
            chroma_subsampling=defaults.chroma_subsampling,
            progressive=output.progressive, lossless=output.lossless, metadata=output.metadata,
            colour_profile=output.colour_profile, flatten_on=flatten_on, palette=palette)
        # the encoders' memory, and the outputs kept while the next is made (`f-auto`'s smallest of several)
        held.charge_encoding(max(encoder_memory(image, fmt, options, frame_height) for fmt in formats) +
                             (image.width * image.height * image.bands if len(formats) > 1 else 0))
        encoded, fmt = min(((encode(stopping.watch(image), fmt, options), fmt) for fmt in formats),
                           key=lambda candidate: len(candidate[0]))
    except pyvips.Error as error:
        stopping.check()  # a stopped render fails inside libvips: report why it was stopped
        _check_allocated(error)
        if _harmless_warning(error, header, strict):
            raise _HarmlessJpegWarning() from None
        # libvips reports some truncations only while writing, so the encode is inside this try too.
        raise UnprocessableSource() from None
    finally:
        layers.close()
    return Rendered(encoded, fmt, width, frame_height, strong_etag(encoded))


class SettingsTag:
    """The config settings that change what a render makes of the same URL, as a tag for the output's
    key (`output_key`'s `settings`): `[defaults] quality`, `avif_effort` and `chroma_subsampling` (`j0`),
    `[limits] max_cost` (the format an over-budget `f-auto`, or a format the URL does not name, falls back to;
    an animation's own bytes rather than an encode), `allow_svg` (`svg`: an SVG is served as the document it
    is, where a release before drew it, or where without it it is refused), and `[limits] max_output_side`
    for text layers (a line wider than it is refused) and for a URL without steps (the size an original larger
    than it is fitted to), and the files of the text's fonts. Only what differs from the shipped defaults is
    named (`q30,e4`), so that the keys of a config that changes none stay as they were. `[defaults] auto_format`
    and `auto_format_smallest` change the planned format, which the key holds already; the endpoint's watermark
    and named transformations are in the canonical transformation; the other limits refuse rather than render
    differently."""

    def __init__(self, defaults: Defaults, limits: Limits, fonts: Mapping[str, Font]):
        shipped_defaults, shipped_limits, shipped = Defaults(), Limits(), shipped_fonts()
        #: the parts of every output's tag
        self._changed = [f"{name}{value:.15g}" for name, value, default in (
            ("q", defaults.quality, shipped_defaults.quality),
            ("e", defaults.avif_effort, shipped_defaults.avif_effort),
            ("j", defaults.chroma_subsampling, shipped_defaults.chroma_subsampling),
            ("c", limits.max_cost, shipped_limits.max_cost)) if value != default]
        # every output's, not only an SVG's: a key is made before the original is read. The releases before
        # this tag drew an SVG (a PNG for `/logo.svg`); neither release reads the other's (a rollback had served
        # the later one's documents without their sandbox), nor a node with SVGs refused their documents
        self._changed += ["svg"] if limits.allow_svg else []
        self._tag = ",".join(self._changed)
        #: the parts added for an output with a text layer
        self._text = [f"s{limits.max_output_side}"] if limits.max_output_side != shipped_limits.max_output_side else []
        #: the tag of an output fitted to the side (`fitted_to_the_side`)
        self._fitted = ",".join([*self._changed, *self._text])
        #: fonts whose file is not the shipped one of that name → their part, added where they are drawn; `ff2`
        #: for a face of its own (`Font.face`): the releases before drew the family's regular face for it
        self._fonts = {name: f"ff{'2' if font.face else ''}-{name}={font.digest[:16]}" for name, font in fonts.items()
                       if name not in shipped or shipped[name].digest != font.digest}

    def of(self, transformation: Transformation) -> str:
        """The tag of an output of `transformation` ("" when it renders as with the shipped defaults)."""
        if fitted_to_the_side(transformation):
            return self._fitted
        fonts = drawn_fonts(transformation.steps)
        if not fonts:
            return self._tag
        drawn = [self._fonts[name] for name in sorted(fonts) if name in self._fonts]
        return ",".join([*self._changed, *self._text, *drawn])


class Renderer:
    """A bounded pool of libvips threads with a queue in front of it, bounded in length and in time."""

    def __init__(self, defaults: Defaults, limits: Limits, threads: int, queue: int,
                 fonts: Mapping[str, Font] | None = None,
                 queue_timeout: float = ServerSettings.transform_queue_timeout,
                 refused: Callable[[str], None] = lambda reason: None,
                 decode_budget: DecodeBudget | None = None, timed_out: Callable[[], None] = lambda: None):
        """`refused(reason)` counts work refused for overload: `queue_full`, `queue_timeout`, `decode_memory`;
        `timed_out()` a render stopped at `render_timeout`.
        `decode_budget`: this process's `[server] decode_memory` (the defaults' when None)."""
        self.decode_budget = decode_budget or DecodeBudget(ServerSettings.decode_memory,
                                                           ServerSettings.decode_memory_wait)
        self.defaults = defaults
        self.limits = limits
        self.fonts = fonts or shipped_fonts()
        self._threads = BlockingPool(threads, "vips")
        self._thread_count = threads
        self._capacity = threads + queue
        self._pending = 0
        #: renders pending (queued or running) by lane (endpoint), those with any
        self._pending_in: Counter[Hashable] = Counter()
        # renders running × seconds, summed since `_counted_at` last moved: a render's share of the pool over its
        # own time, whatever ends when (a count read at its deadline missed the others its own deadline had stopped)
        self._running_seconds, self._counted_at = 0.0, time.monotonic()
        self._queue_timeout = queue_timeout
        self._refused = refused
        self._timed_out = timed_out

    async def run(self, function, *args, start_within: float | None = None, lane: Hashable | None = None):
        """Run `function(*args)` on the libvips pool, in turns with the other lanes' work (the endpoints'); 503
        when the pool and its queue are full, or when no thread started it within `start_within`
        (`queue_timeout`) (it is withdrawn: it never runs). A full queue still takes a lane's work while the lane
        has less than its share of it (the capacity over the lanes with work pending): one endpoint filling the
        queue would otherwise have every other's refused (so at most twice the capacity is pending)."""
        self.check_room(lane)
        self._count_pending(+1, lane)
        try:
            return await self._threads.run(render_notes.noting(function), *args,
                                           start_within=start_within or self._queue_timeout, lane=lane)
        except NotStarted:
            self._refused("queue_timeout")
            raise TransformQueueTimeout() from None
        finally:
            self._count_pending(-1, lane)

    def check_room(self, lane: Hashable | None = None) -> None:
        """`TransformQueueFull` (counted) when `run` would refuse `lane`'s work now: asked before its original is
        fetched too, so that a burst past the queue is refused without reading an original for each request (150
        connections at once had each read 6.4 MB to be refused, and the other endpoints' hits slowed 20-fold)."""
        if self._pending >= self._capacity and self._pending_in[lane] >= self._capacity // len(
                self._pending_in.keys() | {lane}):
            self._refused("queue_full")
            raise TransformQueueFull()

    def _running_seconds_so_far(self) -> float:
        """Renders running × seconds since the pool started (the work pending, up to a thread each)."""
        now = time.monotonic()
        return self._running_seconds + min(self._pending, self._thread_count) * (now - self._counted_at)

    def _count_pending(self, change: int, lane: Hashable) -> None:
        self._running_seconds, self._counted_at = self._running_seconds_so_far(), time.monotonic()
        self._pending += change
        if self._pending_in[lane] + change:
            self._pending_in[lane] += change
        else:
            del self._pending_in[lane]

    async def render(self, body: bytes, transformation: Transformation, planned_format: str,
                     overlays: Mapping[str, bytes] | None = None, lane: Hashable | None = None) -> Rendered:
        """Render within `render_timeout` of the start in a pool thread (else `RenderTimedOut`). When the
        awaiting task is cancelled, the libvips work is stopped too and `CancelledError` propagates. A render
        whose memory (`held`) does not fit the decode budget now stops and gives its thread back, waits here for
        all it counted (`DecodeMemoryExhausted`, 503, when the budget stays full), then runs again holding it:
        its clock starts again (and should it need more still, it waits again). Waiting for the budget is waiting
        to start: the waits for it and for a thread take at most `queue_timeout` together (so the node's longest
        answer, `flight.wait_bound`, stays as it was)."""
        loop = asyncio.get_running_loop()
        queued_at = loop.time()
        reserved = 0
        try:
            while True:
                left = self._queue_timeout - (loop.time() - queued_at)
                if reserved and left <= 0:
                    self._refused("queue_timeout")
                    raise TransformQueueTimeout()
                try:
                    return await self._render_once(body, transformation, planned_format, overlays, reserved,
                                                   left if reserved else self._queue_timeout, lane)
                except NeedsDecodeMemory as need:
                    size = need.size
                    # its traceback holds the stopped attempt's frames and their images, through the future that
                    # carried it (a cycle): freed now, not at the next collection (four renders waiting had held
                    # +944 MB on a 300 MB budget)
                    drop_tracebacks(need)
                if reserved:  # given back first: waiting for more while holding it, a render could wait on itself
                    self.decode_budget.give_back(reserved, lane)
                    reserved = 0
                left = self._queue_timeout - (loop.time() - queued_at)
                try:
                    await self.decode_budget.take(size, min(self.decode_budget.wait, max(0.0, left)), lane)
                except DecodeMemoryExhausted:
                    self._refused("decode_memory")
                    raise
                reserved = size
        finally:
            if reserved:
                self.decode_budget.give_back(reserved, lane)

    async def _render_once(self, body: bytes, transformation: Transformation, planned_format: str,
                           overlays: Mapping[str, bytes] | None, reserved: int, start_within: float,
                           lane: Hashable) -> Rendered:
        loop = asyncio.get_running_loop()
        switch = stopping.StopSwitch()
        # when a thread picked the render up (`loop.time()`'s clock) and the process' CPU time then
        started: list[tuple[float, float]] = []
        timer: asyncio.TimerHandle | None = None
        limit, spent, read_at = self.limits.render_timeout, 0.0, loop.time()
        # the loop's CPU time; the pool's running renders × seconds, and the time, from here
        loop_cpu, running_from, since = time.thread_time(), self._running_seconds_so_far(), time.monotonic()

        def check_clock() -> None:
            # On the IOLoop: the clock starts when a thread starts the render, which the thread only
            # notes (waking the loop for it cost each render a hand-off); time spent queueing is not
            # the render's. A step longer than a loop running late is a clock that jumped.
            nonlocal timer, spent, read_at
            now = loop.time()
            if started:
                spent += min(now - max(read_at, started[0][0]), RENDER_STEP_MAX_SECONDS)
            read_at = now
            if spent >= limit:
                # the renders' CPU time (the process' less the loop's) against a core each for the wall time
                renders_cpu = time.process_time() - started[0][1] - (time.thread_time() - loop_cpu)
                running = (self._running_seconds_so_far() - running_from) / max(time.monotonic() - since, 1e-6)
                fair = CONTENDED_SHARE * spent * max(1.0, running)
                switch.stop(functools.partial(RenderTimedOut, contended=renders_cpu < fair))
            else:
                timer = loop.call_later(min(RENDER_CLOCK_SECONDS, limit - spent), check_clock)

        def stoppable_render() -> Rendered:
            started.append((time.monotonic(), time.process_time()))
            with stopping.stoppable(switch):
                return render_image(body, transformation, planned_format, self.defaults, self.limits, overlays,
                                    self.fonts, self.decode_budget, reserved, lane)

        timer = loop.call_later(min(RENDER_CLOCK_SECONDS, limit), check_clock)
        try:
            return await self.run(stoppable_render, start_within=start_within, lane=lane)
        except asyncio.CancelledError:
            switch.stop(asyncio.CancelledError)
            raise
        except RenderTimedOut:
            self._timed_out()
            raise
        finally:
            timer.cancel()

    async def probe(self, body: bytes, *, svg_read: bool = True, as_is: bool = False,
                    lane: Hashable | None = None) -> ImageHeader:
        return await self.run(functools.partial(probe, svg_read=svg_read, as_is=as_is), body, self.limits, lane=lane)

    def shutdown(self) -> None:
        self._threads.shutdown(drop_queued=True)

