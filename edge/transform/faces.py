"""`fo-face`: where the faces of an image are, found by OpenCV's frontal-face Haar cascade `alt2` (the
model file ships inside `opencv-python-headless`, which the node's `[faces]` extra installs; chosen
over the `default` and `alt` cascades for the fewest false detections at the same recall, and speed:
docs/transformations.md#faces, benchmarks/bench_faces.py).

Detection runs in the render's pool thread on a copy of the step's input reduced to at most
`DETECT_PIXELS` (Haar work grows with the pixels searched: the reduced copy bounds it, whatever the
original's size), with OpenCV's own threads off so that a render keeps to its one core like libvips
does. Without the extra, `fo-face` is a 400 naming it (`missing`), never a silent `fo-auto`; with an
extra that does not load (OpenCV installed without a system library it needs), the first search logs why
and the node answers from then on as without it, never a 500.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import math
import threading

import pyvips

from ..errors import BadRequest

#: pixels of the reduced copy searched for faces, and the smallest face looked for there: a face of
#: 1/24 of a 3:2 photo's height (the search at 1 MP took twice as long for the same relative size)
DETECT_PIXELS = 500_000
MIN_FACE = 24
#: OpenCV's defaults are 1.1 and 3: 5 neighbours cut false detections on textures (coins, cells)
SCALE_FACTOR = 1.1
MIN_NEIGHBOURS = 5
CASCADE = "haarcascade_frontalface_alt2.xml"
#: the extra that brings the detector, as the 400 names it
EXTRA = "faces"

Box = tuple[int, int, int, int]  # left, top, width, height in pixels of the searched image

log = logging.getLogger("edge.faces")
_local = threading.local()  # a cascade per thread: OpenCV does not promise a shared one is safe
#: why the detector did not load, once a search found it installed but broken
_broken: str | None = None


@functools.cache
def _installed() -> bool:
    """Whether OpenCV is installed (without importing it: that costs a fifth of a second)."""
    return importlib.util.find_spec("cv2") is not None


def missing() -> str | None:
    """Why the node cannot search for faces (the 400's reason), or None when it can."""
    if not _installed():
        return f"needs a face detector: install the node with its [{EXTRA}] extra " \
               f"(pip install 'edge-image-node[{EXTRA}]')"
    if _broken is not None:
        return f"needs a face detector: the node's [{EXTRA}] extra is installed but does not load (its log " \
               "says why)"
    return None


def _detector():
    """OpenCV and numpy, imported at the first search; an import that fails (a shared library missing) is
    logged once and remembered, and this search and the later ones are a 400 saying so."""
    global _broken
    try:
        import cv2
        import numpy
    except Exception as error:  # ImportError, or what a broken build raises while it loads
        if _broken is None:
            log.error("the [%s] extra does not load, faces are refused: %s: %s", EXTRA, type(error).__name__, error)
        _broken = type(error).__name__
        raise BadRequest(missing() or "") from None
    return cv2, numpy


def find_faces(image: pyvips.Image) -> list[Box]:
    """The faces in `image` (an upright sRGB or greyscale image, lazily made), largest first, in
    `image`'s pixels; none found is an empty list."""
    cv2, numpy = _detector()  # only once a render asks for faces

    shrink = max(1.0, math.sqrt(image.width * image.height / DETECT_PIXELS))
    if image.hasalpha():  # before the resize, which had averaged the colour under transparent pixels into the face
        image = image.flatten(background=[255])
    small = image.resize(1 / shrink) if shrink > 1 else image
    grey = small.colourspace(pyvips.enums.Interpretation.B_W).extract_band(0).cast("uchar")
    pixels = numpy.ndarray((grey.height, grey.width), dtype=numpy.uint8, buffer=grey.write_to_memory())
    found = _cascade(cv2).detectMultiScale(pixels, scaleFactor=SCALE_FACTOR, minNeighbors=MIN_NEIGHBOURS,
                                           minSize=(MIN_FACE, MIN_FACE))
    boxes = [tuple(round(v * shrink) for v in box) for box in found]
    return sorted(boxes, key=lambda box: box[2] * box[3], reverse=True)


def _cascade(cv2):
    cascade = getattr(_local, "cascade", None)
    if cascade is None:
        cv2.setNumThreads(1)  # one core per render, as pyvips.concurrency_set(1) does for libvips
        cascade = _local.cascade = cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE)
    return cascade
