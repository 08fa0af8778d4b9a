"""The fonts text layers may name (`ff-<name>`): the shipped default and the operator's `[fonts]`.

libvips renders text with Pango, which needs the font's family name next to its file: it is read
from the file's `name` table once, at startup, so an operator lists only a name and a file.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

from ..settings import regular_file_bytes
from .layers import DEFAULT_FONT

SHIPPED = Path(__file__).resolve().parent.parent / "fonts"
#: a font file larger than this is refused at startup (DejaVu Sans is 0.76 MB; CJK fonts reach 20 MB)
MAX_FONT_BYTES = 64 * 1024 * 1024
_FAMILY_ID = 1


@dataclass(frozen=True)
class Font:
    file: str
    family: str
    #: the SHA-256 of the file as read at startup: the key of an output drawn with it names it
    #: (`render.SettingsTag`), so that a file replaced under the same name makes new outputs
    digest: str


def read_font(path: Path) -> Font:
    """The font of a TrueType/OpenType file; ValueError when it is no regular file within `MAX_FONT_BYTES` or
    has no family name (name ID 1)."""
    data = regular_file_bytes(path, MAX_FONT_BYTES)
    return Font(str(path), _family(data), hashlib.sha256(data).hexdigest())


def _family(data: bytes) -> str:
    try:
        tables = struct.unpack(">H", data[4:6])[0]
        for index in range(tables):
            tag, _, offset, _ = struct.unpack(">4sLLL", data[12 + 16 * index: 28 + 16 * index])
            if tag == b"name":
                return _family_in_name_table(data, offset)
    except struct.error:
        pass
    raise ValueError("not a TrueType/OpenType font with a family name")


def _family_in_name_table(data: bytes, table: int) -> str:
    _, count, strings = struct.unpack(">HHH", data[table: table + 6])
    for index in range(count):
        platform, _, _, name_id, length, offset = struct.unpack(
            ">HHHHHH", data[table + 6 + 12 * index: table + 18 + 12 * index])
        if name_id == _FAMILY_ID and platform in (0, 3):  # Unicode or Windows: UTF-16BE
            raw = data[table + strings + offset: table + strings + offset + length]
            return raw.decode("utf-16-be")
    raise ValueError("no family name")


@functools.cache
def shipped_fonts() -> dict[str, Font]:
    return {DEFAULT_FONT: read_font(SHIPPED / "DejaVuSans.ttf")}
