"""A PNG's text and profile chunks (`tEXt`, `zTXt`, `iTXt`: an XMP packet, comments; `iCCP`: its colour profile)
bounded before libvips reads it. libvips inflates each before the image data whenever it reads the header, up to its
own chunk limit of ~50 MB: a PNG of 221 kB held 45 MB of XMP, inflated at each probe and decode (0.5 s of CPU and
250 MB of a worker's memory, outside the decode budget, for a 40×20 image; attacker probe), and one of 44 kB a
profile of 45 MB (0.44 s, 172 MB; under `cp-true`, copied into each output; review). Such chunks are left out once
they would count past their kind's bound, summed (`INFLATED_BOUNDS`): the text goes, the image is read as sRGB
without the profile (as with one that cannot be read). What follows the image data libvips does not read."""

from __future__ import annotations

import zlib

from ..errors import BadRequest
from .cut_short import MAX_PNG_CHUNKS
from .encode import MAX_KEPT_METADATA_BYTES

#: what one PNG's text and profile chunks before its image data count at most, by kind: what they inflate to (or
#: hold, uncompressed), each at least `MIN_CHUNK_BYTES`. Text: what `md-true` keeps of a field; a profile (one a PNG:
#: the first): a camera's or screen's is a few kB, a printer's, with its tables, a few MB
INFLATED_BOUNDS = {"text": MAX_KEPT_METADATA_BYTES, "profile": 4 << 20}
#: what a chunk counts at least: libvips sets up an inflate, and warns, for each one however small (65 000 empty zTXt
#: chunks in 1.2 MB: 2.1 s of CPU and 455 000 lines on standard error a render; review), so at most 256 text chunks
MIN_CHUNK_BYTES = 4096
_KINDS = {b"tEXt": "text", b"zTXt": "text", b"iTXt": "text", b"iCCP": "profile"}
_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def without_bulky_chunks(body: bytes) -> bytes:
    """`body` itself, or for a PNG whose text or profile chunks before its image data count past `INFLATED_BOUNDS`, a
    copy without the chunks past them (each chunk has its own CRC: the rest stays valid). 400 for a PNG of more than
    `MAX_PNG_CHUNKS` chunks before its image data, which would hide a chunk past the walk (and which libvips walks
    too)."""
    if not body.startswith(_SIGNATURE):
        return body
    at, room, bulky = len(_SIGNATURE), dict(INFLATED_BOUNDS), []
    for _ in range(MAX_PNG_CHUNKS + 1):  # the one after them too: its image data's, or a refusal
        if at + 8 > len(body):
            break
        kind, end = body[at + 4:at + 8], at + 12 + int.from_bytes(body[at:at + 4], "big")
        if kind in (b"IDAT", b"IEND"):
            break
        what = _KINDS.get(kind)
        if what:
            counted = _counted_bytes(kind, body[at + 8:end - 4], room[what]) if room[what] >= 0 else 0
            if room[what] < 0 or counted > room[what]:
                bulky.append((at, end))
                room[what] = -1  # none after it counts either: the work stays bounded whatever the count of chunks
            else:
                room[what] = -1 if what == "profile" else room[what] - counted
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


def _counted_bytes(kind: bytes, data: bytes, room: int) -> int:
    """What a text or profile chunk counts (`INFLATED_BOUNDS`): the bytes its zlib stream inflates to, counted up to
    `room` + 1 (an `iCCP` chunk, a `zTXt` one, an `iTXt` one marked compressed: after its keyword, flag, method,
    language and translated keyword), or its data's, at least `MIN_CHUNK_BYTES`."""
    keyword_end = data.find(b"\0")
    stream = None
    if keyword_end >= 0 and kind in (b"zTXt", b"iCCP"):
        stream = data[keyword_end + 2:]
    elif keyword_end >= 0 and kind == b"iTXt" and data[keyword_end + 1:keyword_end + 2] == b"\x01":
        language_end = data.find(b"\0", keyword_end + 3)
        translated_end = data.find(b"\0", language_end + 1) if language_end >= 0 else -1
        stream = data[translated_end + 1:] if translated_end >= 0 else None
    return max(MIN_CHUNK_BYTES, len(data) if stream is None else _inflated_bytes(stream, room + 1))


def _inflated_bytes(compressed: bytes, limit: int) -> int:
    """How many bytes `compressed` inflates to, counted up to `limit`; 0 for a stream that does not inflate (libvips
    then reads the chunk as it would)."""
    try:
        return len(zlib.decompressobj().decompress(compressed, limit))
    except zlib.error:
        return 0
