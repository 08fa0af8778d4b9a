"""A PNG's compressed text (`zTXt`, compressed `iTXt`: an XMP packet, comments) bounded before libvips reads it.
libvips inflates every text chunk before the image data whenever it reads the header: a PNG of 221 kB held 45 MB of
XMP, inflated at each probe and decode (0.5 s of CPU and 250 MB of a worker's memory, outside the decode budget,
for a 40×20 image; attacker probe). Such chunks are left out once their text, summed, would inflate past
`MAX_INFLATED_TEXT_BYTES`; what follows the image data libvips does not read, and uncompressed text is no larger
than the file."""

from __future__ import annotations

import zlib

from .cut_short import MAX_PNG_CHUNKS
from .encode import MAX_KEPT_METADATA_BYTES

#: the compressed text of one PNG inflated at most, summed over its chunks: what `md-true` keeps of a field
MAX_INFLATED_TEXT_BYTES = MAX_KEPT_METADATA_BYTES
_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def without_bulky_text(body: bytes) -> bytes:
    """`body` itself, or for a PNG whose compressed text before its image data inflates past
    `MAX_INFLATED_TEXT_BYTES`, a copy without the chunks past it (each chunk has its own CRC: the rest stays
    valid)."""
    if not body.startswith(_SIGNATURE):
        return body
    at, room, bulky = len(_SIGNATURE), MAX_INFLATED_TEXT_BYTES, []
    for _ in range(MAX_PNG_CHUNKS):
        if at + 8 > len(body):
            break
        kind, end = body[at + 4:at + 8], at + 12 + int.from_bytes(body[at:at + 4], "big")
        if kind in (b"IDAT", b"IEND"):
            break
        compressed = _compressed_text(kind, body[at + 8:end - 4])
        if compressed:
            inflated = _inflated_bytes(compressed, room + 1) if room >= 0 else 0
            if room < 0 or inflated > room:
                bulky.append((at, end))
                room = -1  # nothing after it inflated either: the work stays bounded whatever the count of chunks
            else:
                room -= inflated
        at = end
    if not bulky:
        return body
    kept, start = [], 0
    for at, end in bulky:
        kept.append(body[start:at])
        start = end
    return b"".join([*kept, body[start:]])


def _compressed_text(kind: bytes, data: bytes) -> bytes:
    """The zlib stream of a `zTXt` chunk, or of an `iTXt` one marked compressed (after its keyword, flag, method,
    language and translated keyword); b"" for any other chunk."""
    keyword_end = data.find(b"\0")
    if keyword_end < 0:
        return b""
    if kind == b"zTXt":
        return data[keyword_end + 2:]
    if kind != b"iTXt" or data[keyword_end + 1:keyword_end + 2] != b"\x01":
        return b""
    language_end = data.find(b"\0", keyword_end + 3)
    translated_end = data.find(b"\0", language_end + 1) if language_end >= 0 else -1
    return data[translated_end + 1:] if translated_end >= 0 else b""


def _inflated_bytes(compressed: bytes, limit: int) -> int:
    """How many bytes `compressed` inflates to, counted up to `limit`; 0 for a stream that does not inflate (libvips
    then reads the chunk as it would)."""
    try:
        return len(zlib.decompressobj().decompress(compressed, limit))
    except zlib.error:
        return 0
