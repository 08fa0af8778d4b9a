"""An animation served as it is (`render._asks_for_the_source`: its frames' encode over budget), without the metadata
a re-encode strips: its bytes had gone out whole, a phone's GPS position, camera serials, owner and XMP paths with
them, on its plain URL (privacy probe). The file's structure is walked from its headers and rewritten without those
blocks; its frames, timing and loop count are kept byte for byte, and a WebP's colour profile (a GIF's, in an
application extension, goes with the others)."""

from __future__ import annotations

from .cut_short import MAX_GIF_STEPS, gif_colour_table

#: the one application extension a GIF keeps, the loop count (Netscape's and its twin), as its 19 bytes are: the
#: identifier's sub-block, one of 3 bytes (1, the count), the terminator. Others (XMP, a profile, an editor's data),
#: one so named that holds more, and comments go
_GIF_LOOPS = (b"\x0bNETSCAPE2.0\x03\x01", b"\x0bANIMEXTS1.0\x03\x01")
_GIF_LOOP_BYTES = 19
#: what a WebP file holds besides metadata: its frames and their alpha, the animation's header and its colour profile
#: (EXIF, XMP and unknown chunks go)
_WEBP_KEPT = frozenset({b"VP8X", b"VP8 ", b"VP8L", b"ALPH", b"ANIM", b"ANMF", b"ICCP"})
#: the extended header's flags of EXIF and XMP chunks
_WEBP_METADATA_FLAGS = 0x08 | 0x04
#: the chunks of a WebP walked at most: a render's probe has refused one of more than `max_frames` and 16 others
#: (`render._webp_frames`), whatever `max_frames` is configured to; this bounds a walk nothing checked before
_WEBP_MAX_CHUNKS = 2**18


def without_metadata(body: bytes, fmt: str) -> bytes | None:
    """A GIF's or WebP's bytes without metadata; None when its structure could not be walked to its end (not served
    as it is, then)."""
    return _gif(body) if fmt == "gif" else _webp(body) if fmt == "webp" else None


def _gif(body: bytes) -> bytes | None:
    if len(body) < 13 or body[:4] != b"GIF8":
        return None
    at = 13 + gif_colour_table(body[10])  # the header, the screen's descriptor, the global colour table
    kept, start, steps = [], 0, MAX_GIF_STEPS  # blocks and sub-blocks walked, as `cut_short` walks them
    while steps > 0:
        if at == len(body):  # no trailer, as some encoders write
            return b"".join([*kept, body[start:]])
        block = body[at]
        if block == 0x3B:  # the trailer: what follows is no GIF's (and goes)
            return b"".join([*kept, body[start:at + 1]])
        if block == 0x21 and at + 2 < len(body):  # an extension: its label, then its sub-blocks
            end, steps = _sub_blocks_end(body, at + 2, steps)
            loop = end == at + _GIF_LOOP_BYTES and body[at + 2:at + 16] in _GIF_LOOPS
            dropped = body[at + 1] == 0xFE or (body[at + 1] == 0xFF and not loop)
            if end is not None and dropped:
                kept.append(body[start:at])
                start = end
        elif block == 0x2C and at + 10 < len(body):  # an image: descriptor, colour table, LZW code size, sub-blocks
            end, steps = _sub_blocks_end(body, at + 11 + gif_colour_table(body[at + 9]), steps)
        elif block in (0x21, 0x2C):  # cut short in its header
            return None
        else:  # no GIF block (padding where the trailer belongs): libnsgif stops there too, and so does the file
            return b"".join([*kept, body[start:at], b"\x3b"])
        if end is None:
            return None
        at = end
    return None


def _sub_blocks_end(body: bytes, at: int, steps: int) -> tuple[int | None, int]:
    """Where the sub-blocks from `at` end (after their terminating 0), or None if the data ends first or the walk's
    `steps` run out; and the steps left."""
    while steps > 0 and at < len(body):
        steps -= 1
        if not body[at]:
            return at + 1, steps
        at += 1 + body[at]
    return None, steps


def _webp(body: bytes) -> bytes | None:
    if len(body) < 12 or body[:4] != b"RIFF" or body[8:12] != b"WEBP":
        return None
    kept, at, end = [], 12, min(len(body), 8 + int.from_bytes(body[4:8], "little"))
    for _ in range(_WEBP_MAX_CHUNKS):
        if at == end:
            riff = b"".join(kept)
            return b"RIFF" + (len(riff) + 4).to_bytes(4, "little") + b"WEBP" + riff
        if at + 8 > end:
            return None
        kind, size = body[at:at + 4], int.from_bytes(body[at + 4:at + 8], "little")
        chunk_end = at + 8 + size + (size & 1)
        if chunk_end > end:
            return None
        if kind == b"VP8X" and size >= 1:
            kept.append(body[at:at + 8] + bytes([body[at + 8] & ~_WEBP_METADATA_FLAGS]) + body[at + 9:chunk_end])
        elif kind in _WEBP_KEPT:
            kept.append(body[at:chunk_end])
        at = chunk_end
    return None
