"""Originals cut short (a partial upload, a transfer the origin ended early), told from their structure, where no
decode tells it: an animated GIF's, which libnsgif decodes as far as its data goes, and any original served as it
is (`orig-true`, a Cloudinary URL without transformations), which nothing decodes. Each walk reads headers only."""

from __future__ import annotations

import re
from collections.abc import Iterator

from .formats import HEIC_LOADER

#: the chunks of a PNG walked at most (~1 µs each); libpng writes 8 KB ones, 5000 for `max_source_bytes`. Past
#: that, a file of empty chunks, its end is not checked (its decode, for a render, still reads every one)
MAX_PNG_CHUNKS = 65536
#: the top-level boxes of an AVIF or HEIC file walked at most (encoders write three or four)
MAX_BOXES = 1024
#: the steps of a JPEG's walk to its first scan at most (cameras write a dozen segments before it): one that
#: takes more (40 MB of empty segments: 4.6 s of Python) is refused as having none
MAX_JPEG_STEPS = 1024
#: the blocks and sub-blocks of a GIF walked at most (~0.1 µs each); encoders write 255-byte sub-blocks, 160 000
#: for `max_source_bytes`, and a few blocks a frame. Past that (40 MB of 1-byte sub-blocks, or of empty comment
#: blocks: 2.6 and 3.9 s of Python), its end is not checked
MAX_GIF_STEPS = 2**18
#: a run of fill bytes before a marker
_FILL_BYTES = re.compile(rb"\xff+")
#: what follows FF without a length: byte stuffing (00), TEM, restart markers
_STANDALONE = frozenset({0x00, 0x01, *range(0xD0, 0xD8)})


def jpeg_segments(body: bytes, limit: int) -> Iterator[tuple[int, int]]:
    """The offset and marker of each of a JPEG's segments from its start to its first scan's (SOS, included), as
    libjpeg reads them: stray bytes between segments (some cameras write them) and fill bytes skipped, markers
    without a length stepped over (skipping the images an EXIF block may embed, in its segment). At most `limit`
    steps."""
    at = 2  # after SOI
    for _ in range(limit):
        at = body.find(b"\xff", at)
        if at < 0:
            return
        at = _FILL_BYTES.match(body, at).end() - 1
        if at + 4 > len(body):
            return
        marker = body[at + 1]
        if marker in _STANDALONE:
            at += 2
            continue
        yield at, marker
        if marker == 0xDA:
            return
        at += 2 + int.from_bytes(body[at + 2:at + 4], "big")


def _gif_cut_short(body: bytes) -> bool:
    """Whether a GIF's data ends inside one of its blocks, walked from their headers (~0.4 ms a MB).
    libnsgif decodes the frames there are, the last one as far as its data goes, and libvips fails at no
    `fail_on` level (8.18): an animation cut short was served with frames missing or half drawn. Data that
    ends between two blocks without the trailer (3B), as some encoders write, is whole."""
    if len(body) < 13:
        return True
    steps = MAX_GIF_STEPS
    at = 13 + gif_colour_table(body[10])  # the header, the screen's descriptor, the global colour table
    while at < len(body):
        steps -= 1
        if not steps:
            return False
        block = body[at]
        if block == 0x3B:  # the trailer
            return False
        if block == 0x21:  # an extension: its label, then its sub-blocks
            at += 2
        elif block == 0x2C:  # an image: its descriptor, colour table and LZW code size, then its sub-blocks
            if at + 10 > len(body):
                return True
            at += 11 + gif_colour_table(body[at + 9])
        else:  # not a GIF block: libnsgif stops there too
            return False
        while at < len(body) and body[at]:  # sub-blocks, each its length and its bytes, then a 0
            at += 1 + body[at]
            steps -= 1
            if not steps:
                return False
        if at >= len(body):
            return True
        at += 1
    return at > len(body)


def gif_colour_table(flags: int) -> int:
    """The bytes of the colour table a GIF descriptor's flags announce."""
    return 3 << ((flags & 7) + 1) if flags & 0x80 else 0


def served_cut_short(body: bytes, loader: str) -> bool:
    """Whether an original its `loader` reads, to be served as it is, ends before its image data does, where its
    decode would fail (`fail_on=truncated`): a JPEG without an end marker after its first scan (libjpeg fails on
    a missing one alone), a PNG whose data ends inside an image data chunk (or before the first), a WebP shorter
    than its RIFF header says, an AVIF or HEIC whose data ends inside a box, a GIF inside a block. Not told
    here: a JPEG cut and closed again with an end marker (its missing rows only a decode finds), a PNG cut
    exactly between two data chunks, a TIFF (its parts anywhere, by offsets)."""
    walk = _WALKS.get(loader)
    return walk is not None and walk(body)


def _jpeg_cut_short(body: bytes) -> bool:
    """No end marker after the first scan's header (none found within `MAX_JPEG_STEPS` included). Within a
    scan's coded data FF is followed by 00 or a restart marker only."""
    for at, marker in jpeg_segments(body, MAX_JPEG_STEPS):
        if marker == 0xDA:
            return body.rfind(b"\xff\xd9", at) < 0  # from the end, where a whole file has it
    return True


def _png_cut_short(body: bytes) -> bool:
    """Each chunk is its length, its type, its data and a CRC; libpng needs every byte up to the last image
    data chunk's (what follows is ancillary, the end chunk included)."""
    at, image_data = 8, False
    for _ in range(MAX_PNG_CHUNKS):
        if at + 8 > len(body):
            return not image_data  # after an image data chunk: the next one's or the end chunk's header
        kind = body[at + 4:at + 8]
        if kind == b"IEND":
            return False
        end = at + 12 + int.from_bytes(body[at:at + 4], "big")
        if end > len(body):
            return kind == b"IDAT" or not image_data
        image_data = image_data or kind == b"IDAT"
        at = end
    return False


def _boxes_cut_short(body: bytes) -> bool:
    """ISOBMFF's top-level boxes: each its size (32 bits; 1: 64 bits after the type; 0: to the end) and type.
    Cut short where the data ends inside the `meta` box (the image's items, its locations) or the `mdat` one (its
    coded data), or before `meta` whole; bytes after those, which libheif never reads, may be anything."""
    at, meta_read = 0, False
    for _ in range(MAX_BOXES):
        if at == len(body):
            return False
        if at + 8 > len(body):
            return not meta_read
        size, kind = int.from_bytes(body[at:at + 4], "big"), body[at + 4:at + 8]
        if size == 0:
            return False
        if size == 1 and at + 16 <= len(body):
            size = int.from_bytes(body[at + 8:at + 16], "big")
        if size < 8 or at + size > len(body):
            return kind in (b"meta", b"mdat") or not meta_read
        meta_read = meta_read or kind == b"meta"
        at += size
    return False


def _webp_cut_short(body: bytes) -> bool:
    return len(body) < 12 or int.from_bytes(body[4:8], "little") + 8 > len(body)


_WALKS = {"jpegload_source": _jpeg_cut_short, "uhdrload_source": _jpeg_cut_short, "pngload_source": _png_cut_short,
          "webpload_source": _webp_cut_short, "heifload_source": _boxes_cut_short, HEIC_LOADER: _boxes_cut_short,
          "gifload_source": _gif_cut_short}
