"""Client hints: `w-auto` and `dpr-auto` take their values from the request's headers, as ImageKit
reads them (docs/transformations.md#client-hints).

    w-auto    Sec-CH-Width, else the legacy Width: the image's width in device pixels, rounded up to
              the next `WIDTH_STEP` and held to `[limits] max_output_side`; the step's `dpr` is then
              1 (the hint already counts the device's pixel ratio)
    dpr-auto  Sec-CH-DPR, else the legacy DPR, rounded up to the next `DPR_STEP`, within 0.1–5

A hint that is missing, not a plain number, or zero is as if absent: `w-auto` then sets no width (or
`wf-N`'s, the node's own fallback), `dpr-auto` is 1. A plain number of any size counts: a huge one is held to `max_output_side` (a width)
or 5 (a ratio) as a smaller one over them is (a whole part of more than `_DIGITS` digits is over both
and not converted at all). Rounding bounds what a client can make the node store: at most
`max_output_side / WIDTH_STEP` widths and 50 ratios per URL, however many different values are sent.
The values used are part of the output's key; the response names the headers it depends on in `Vary`
and asks for the modern ones with `Accept-CH`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from .options import AUTO, Step, Transformation

WIDTH_HEADERS = ("Sec-CH-Width", "Width")
DPR_HEADERS = ("Sec-CH-DPR", "DPR")
#: `Accept-CH` on responses that used hints: the modern names only (Chromium no longer sends `Width`, `DPR`)
ACCEPT_CH = "Sec-CH-Width, Sec-CH-DPR"
WIDTH_STEP = 100  # ImageKit: "rounds the intrinsic size of the image to the next ... 100"
DPR_STEP = 0.1
MAX_DPR = 5.0

_WIDTH = re.compile(r"[0-9]+")
_DPR = re.compile(r"[0-9]+(?:\.[0-9]+)?")
#: digits of a hint's whole part read; a whole part longer than this (after leading zeros) is over
#: every limit, however large (`int` of thousands of digits is slow, or refused; `float` overflows)
_DIGITS = 9


@dataclass(frozen=True)
class Negotiated:
    """A transformation with its hints resolved, and what the answer depends on."""

    transformation: Transformation | None
    #: the headers consulted, for `Vary` (`Sec-CH-Width, Width`); None when no hint is read
    vary: str | None = None
    #: the values used, for the output's key (`w600`, `dpr2.0`, `w-,dpr-`: `-` for an absent hint)
    key: str = ""


#: what a transformation without `w-auto` / `dpr-auto` negotiates: nothing
NO_HINTS = Negotiated(None)


def negotiate(transformation: Transformation, headers: Mapping[str, str], max_width: int) -> Negotiated:
    """`transformation` (which has `client_hints`) with the hints of `headers` in place of `auto`."""
    steps = transformation.steps
    wants_width = any(step.width == AUTO for step in steps)
    wants_dpr = any(step.dpr == AUTO and _multiplies(step, None) for step in steps)
    width = _first(headers, WIDTH_HEADERS, lambda text: _width(text, max_width)) if wants_width else None
    dpr = _first(headers, DPR_HEADERS, _dpr) if wants_dpr else None
    if dpr == 1.0 or not any(step.dpr == AUTO and _multiplies(step, width) for step in steps):
        dpr = None  # it changes nothing: keyed apart for nothing (`w_auto,dpr_auto` had a copy per phone's ratio)
    resolved = tuple(_resolved(step, width, dpr) for step in steps)
    used = (WIDTH_HEADERS if wants_width else ()) + (DPR_HEADERS if wants_dpr else ())
    key = ",".join(part for part in (f"w{width or '-'}" if wants_width else "",
                                     f"dpr{dpr or '-'}" if wants_dpr else "") if part)
    return Negotiated(replace(transformation, steps=resolved), ", ".join(used), key)


def _multiplies(step: Step, width: int | None) -> bool:
    """Whether a step's `dpr` has a side to multiply, once its `w-auto` is `width` (the hint, or None): the width
    hint is in device pixels already, and a step without a size is the same at any `dpr`."""
    if step.width == AUTO:
        return width is None and (step.width_fallback is not None or step.height is not None)
    return step.width is not None or step.height is not None


def _resolved(step: Step, width: int | None, dpr: float | None) -> Step:
    if step.width == AUTO:
        # without a hint, `wf-N` is the width (in pixels, as `w-N`: the step's dpr applies)
        step = replace(step, width=width or step.width_fallback, width_fallback=None)
        if width is not None:  # the width hint is in device pixels already
            return replace(step, dpr=1.0)
    return replace(step, dpr=dpr or 1.0) if step.dpr == AUTO else step


def _first(headers: Mapping[str, str], names: tuple[str, ...], parse):
    for name in names:
        value = parse(headers.get(name, "").strip())
        if value is not None:
            return value
    return None


def _width(text: str, max_width: int) -> int | None:
    if not _WIDTH.fullmatch(text):
        return None
    text = text.lstrip("0")
    if not text:
        return None  # zero
    if len(text) > _DIGITS:
        return max_width
    return min(math.ceil(int(text) / WIDTH_STEP) * WIDTH_STEP, max_width)


def _dpr(text: str) -> float | None:
    if not _DPR.fullmatch(text):
        return None
    whole, _, fraction = text.partition(".")
    whole = whole.lstrip("0")
    if len(whole) > _DIGITS:
        return MAX_DPR
    value = float(f"{whole or '0'}.{fraction or '0'}")
    if value <= 0:
        return None
    steps = math.ceil(round(value / DPR_STEP, 6))  # 2.625 → 2.7; 2.0 stays 2 (no float noise)
    return min(round(max(steps, 1) * DPR_STEP, 1), MAX_DPR)
