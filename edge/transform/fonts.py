"""The fonts text layers may name (`ff-<name>`): the shipped default and the operator's `[fonts]`.

libvips renders text with Pango, which is given the file and then asks fontconfig for a face by description:
the file's family name (its `name` table) and its own weight, width and slant (its `OS/2` table), read once, at
startup, so that an operator lists only a name and a file. A family's name alone asks for its regular face, which
is another file when the family has several.
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
#: Pango's words for the weights it knows (a file's usWeightClass is named by the nearest): the regular one unnamed
_WEIGHTS = {100: "Thin", 200: "Ultra-Light", 300: "Light", 350: "Semi-Light", 380: "Book", 400: "", 500: "Medium",
            600: "Semi-Bold", 700: "Bold", 800: "Ultra-Bold", 900: "Heavy", 1000: "Ultra-Heavy"}
#: Pango's words for usWidthClass 1-9: the normal width (5) unnamed
_WIDTHS = {1: "Ultra-Condensed", 2: "Extra-Condensed", 3: "Condensed", 4: "Semi-Condensed", 6: "Semi-Expanded",
           7: "Expanded", 8: "Extra-Expanded", 9: "Ultra-Expanded"}
_ITALIC, _OBLIQUE = 1, 1 << 9  # fsSelection bits


@dataclass(frozen=True)
class Font:
    file: str
    family: str
    #: the file's own face in Pango's words ("Bold Semi-Condensed Italic"); "" for a regular, upright, normal-width one
    face: str
    #: the SHA-256 of the file as read at startup: the key of an output drawn with it names it
    #: (`render.SettingsTag`), so that a file replaced under the same name makes new outputs
    digest: str

    def description(self, size: int) -> str:
        """Pango's description of the file's face at `size`; the comma ends the family, whose last word may be
        one of Pango's ("DejaVu Sans Condensed")."""
        return " ".join(word for word in (f"{self.family},", self.face, str(size)) if word)


def read_font(path: Path) -> Font:
    """The font of a TrueType/OpenType file, its family and its face; ValueError when it is no regular file within
    `MAX_FONT_BYTES` or has no family name (name ID 1)."""
    data = regular_file_bytes(path, MAX_FONT_BYTES)
    not_a_font = ValueError("not a TrueType/OpenType font with a family name")
    try:
        tables = _tables(data)
        if b"name" not in tables:
            raise not_a_font
        family = _family_in_name_table(data, tables[b"name"][0])
        face = _face(data, *tables[b"OS/2"]) if b"OS/2" in tables else ""  # an old Mac font may have none
    except struct.error:
        raise not_a_font from None
    return Font(str(path), family, face, hashlib.sha256(data).hexdigest())


def _tables(data: bytes) -> dict[bytes, tuple[int, int]]:
    """The file's tables: tag → (offset, length)."""
    tables = {}
    for index in range(struct.unpack(">H", data[4:6])[0]):
        tag, _, offset, length = struct.unpack(">4sLLL", data[12 + 16 * index: 28 + 16 * index])
        tables[tag] = offset, length
    return tables


def _face(data: bytes, table: int, length: int) -> str:
    if length < 64:  # no fsSelection: too short for any OS/2 version
        return ""
    weight, width = struct.unpack(">HH", data[table + 4: table + 8])
    selection, = struct.unpack(">H", data[table + 62: table + 64])
    weight = weight * 100 if 1 <= weight <= 9 else weight  # an old font's 1-9 scale, as fontconfig reads it
    slant = "Oblique" if selection & _OBLIQUE else "Italic" if selection & _ITALIC else ""
    words = (_WEIGHTS[min(_WEIGHTS, key=lambda known: abs(known - weight))], _WIDTHS.get(width, ""), slant)
    return " ".join(word for word in words if word)


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
