"""A time limit on one render, so that no URL holds a libvips thread for minutes.

libvips computes lazily, in its own threads, when an image is written (copied to memory or encoded).
An image passed through `watched` kills that computation once the render in this thread is past its
deadline; `check` stops between steps and frames. The render then ends in `RenderTimedOut` (503).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pyvips

from ..errors import RenderTimedOut

_current = threading.local()  # a render runs in one pool thread from start to end


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """The calling thread's render must end within `seconds`."""
    _current.at = time.monotonic() + seconds
    _current.watched = []
    try:
        yield
    finally:
        _current.at = None
        _current.watched = []


def _current_deadline() -> float | None:
    return getattr(_current, "at", None)


def _late(at: float | None) -> bool:
    return at is not None and time.monotonic() > at


def check() -> None:
    """Raise `RenderTimedOut` past the deadline (also the cause of a libvips error, if it is late)."""
    if _late(_current_deadline()):
        raise RenderTimedOut()


def watched(image: pyvips.Image) -> pyvips.Image:
    """`image`, whose computation (and that of anything made from it) stops past the deadline."""
    at = _current_deadline()
    if at is not None:  # libvips signals from its own threads: the deadline goes with the callback
        image.set_progress(True)
        image.signal_connect("eval", lambda late, _progress: late.set_kill(True) if _late(at) else None)
        # The callback lives in this wrapper, but the libvips image may outlive it (copy_memory of an
        # image already in memory returns that image): the wrapper must live as long as the render.
        _current.watched.append(image)
    return image
