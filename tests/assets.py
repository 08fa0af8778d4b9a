"""Small solid-colour originals whose colour says which object was served, even after a resize; and
reading the colours of what came back."""

from __future__ import annotations

import pyvips

TOLERANCE = 8  # JPEG keeps a flat colour within a few levels


def colour(index: int) -> tuple[int, int, int]:
    """A colour per index (0–99), every two at least 20 levels apart in some channel."""
    return (20 + 20 * (index % 10), 20 + 20 * (index // 10 % 10), 128)


def solid(width: int, height: int, rgb: tuple[int, int, int], fmt: str = "jpg") -> bytes:
    image = (pyvips.Image.black(width, height) + list(rgb)).cast("uchar").copy(interpretation="srgb")
    return image.write_to_buffer(f".{fmt}")


def centre_colour(image: pyvips.Image) -> tuple[int, int, int]:
    rgb = image.colourspace("srgb")[0:3] if image.bands >= 3 else image.colourspace("srgb")
    return tuple(int(round(v)) for v in rgb.getpoint(image.width // 2, image.height // 2)[:3])


def same_colour(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    return all(abs(x - y) <= TOLERANCE for x, y in zip(a, b))


def pixel(image: pyvips.Image, x: int, y: int) -> tuple[int, ...]:
    return tuple(round(v) for v in image.getpoint(x, y))


def close(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 12) -> bool:
    """Colour equality up to lossy-coding noise."""
    return len(actual) >= len(expected) and all(abs(a - e) <= tolerance for a, e in zip(actual, expected))
