"""Small solid-colour originals whose colour says which object was served, even after a resize; and
reading the colours of what came back."""

from __future__ import annotations

import pyvips

from edge.testing import centre_colour, solid_image as solid  # noqa: F401 - the tests' names for them

TOLERANCE = 8  # JPEG keeps a flat colour within a few levels


def colour(index: int) -> tuple[int, int, int]:
    """A colour per index (0–99), every two at least 20 levels apart in some channel."""
    return (20 + 20 * (index % 10), 20 + 20 * (index // 10 % 10), 128)


def same_colour(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    return all(abs(x - y) <= TOLERANCE for x, y in zip(a, b))


def pixel(image: pyvips.Image, x: int, y: int) -> tuple[int, ...]:
    return tuple(round(v) for v in image.getpoint(x, y))


def close(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 12) -> bool:
    """Colour equality up to lossy-coding noise."""
    return len(actual) >= len(expected) and all(abs(a - e) <= tolerance for a, e in zip(actual, expected))
