"""A PNG's compressed chunks (`zTXt`, compressed `iTXt`: an XMP packet, comments; `iCCP`: its colour profile) bounded
before libvips reads it. libvips inflates each before the image data whenever it reads the header, up to its own
chunk limit of ~50 MB: a PNG of 221 kB held 45 MB of XMP, inflated at each probe and decode (0.5 s of CPU and 250 MB
of a worker's memory, outside the decode budget, for a 40×20 image; attacker probe), and one of 44 kB a profile of
45 MB (0.44 s, 172 MB; under `cp-true`, copied into each output; review). Such chunks are left out once they would
inflate past their kind's bound, summed (`INFLATED_BOUNDS`): the text goes, the image is read as sRGB without the
profile (as with one that cannot be read). What follows the image data libvips does not read, and uncompressed
chunks are no larger than the file."""

from __future__ import annotations

import zlib

from ..errors import BadRequest
from .cut_short import MAX_PNG_CHUNKS
from .encode import MAX_KEPT_METADATA_BYTES

#: what one PNG's compressed chunks before its image data inflate to at most, summed by kind: its text (what `md-true`
#: keeps of a field) and its profile (a camera's or screen's: a few kB; a printer's, with its tables, a few MB)
INFLATED_BOUNDS = {"text": MAX_KEPT_METADATA_BYTES, "profile": 4 << 20}
_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def without_bulky_chunks(body: bytes) -> bytes:
    """`body` itself, or for a PNG whose compressed chunks before its image data inflate past `INFLATED_BOUNDS`, a
    copy without the chunks past them (each chunk has its own CRC: the rest stays valid). 400 for a PNG of more than
    `MAX_PNG_CHUNKS` chunks before its image data, which would hide a chunk past the walk (and which libvips walks
    too)."""
    if not body.startswith(_SIGNATURE):
        return body
    at, room, bulky = len(_SIGNATURE), dict(INFLATED_BOUNDS), []
    for _ in range(MAX_PNG_CHUNKS):
        if at + 8 > len(body):
            break
        kind, end = body[at + 4:at + 8], at + 12 + int.from_bytes(body[at:at + 4], "big")
        if kind in (b"IDAT", b"IEND"):
            break
        what, compressed = _compressed(kind, body[at + 8:end - 4])
        if what:
            inflated = _inflated_bytes(compressed, room[what] + 1) if room[what] >= 0 else 0
            if room[what] < 0 or inflated > room[what]:
                bulky.append((at, end))
                room[what] = -1  # none after it inflated either: the work stays bounded whatever the count of chunks
            else:
                room[what] -= inflated
        at = end
    else:
        raise BadRequest(f"source too large: more than {MAX_PNG_CHUNKS} PNG chunks before its image data")
    if not bulky:
        return body
    kept, start = [], 0
    for at, end in bulky:
        kept.append(body[start:at])
        start = end
    return b"".join([*kept, body[start:]])


def _compressed(kind: bytes, data: bytes) -> tuple[str | None, bytes]:
    """The kind (`INFLATED_BOUNDS`) and zlib stream of an `iCCP` chunk, a `zTXt` one, or an `iTXt` one marked
    compressed (after its keyword, flag, method, language and translated keyword); (None, b"") for any other."""
    keyword_end = data.find(b"\0")
    if keyword_end < 0:
        return None, b""
    if kind in (b"zTXt", b"iCCP"):
        return "text" if kind == b"zTXt" else "profile", data[keyword_end + 2:]
    if kind != b"iTXt" or data[keyword_end + 1:keyword_end + 2] != b"\x01":
        return None, b""
    language_end = data.find(b"\0", keyword_end + 3)
    translated_end = data.find(b"\0", language_end + 1) if language_end >= 0 else -1
    return ("text", data[translated_end + 1:]) if translated_end >= 0 else (None, b"")


def _inflated_bytes(compressed: bytes, limit: int) -> int:
    """How many bytes `compressed` inflates to, counted up to `limit`; 0 for a stream that does not inflate (libvips
    then reads the chunk as it would)."""
    try:
        return len(zlib.decompressobj().decompress(compressed, limit))
    except zlib.error:
        return 0
