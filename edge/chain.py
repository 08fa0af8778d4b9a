"""The origin preference list: try each origin in order, serve from the first that has the path.

"Not found" moves on. An origin error moves on too but is remembered, so that when nobody has the
path the answer is 502 (504 for a timeout) rather than a 404 a CDN in front would cache.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import BadGateway, BadRequest, FetchMemoryExhausted, GatewayTimeout, NothingToServe
from .metrics import ORIGIN_FAILURES, Metrics
from .origin import (
    NotModified,
    Origin,
    Original,
    OriginFailure,
    OriginNotFound,
    OriginRequest,
    SourceTooLarge,
    Validators,
)

log = logging.getLogger("edge.origin")


@dataclass(frozen=True)
class Found:
    origin: Origin
    original: Original


@dataclass(frozen=True)
class Known:
    """A version of the original the caller already holds, and the origin that gave it."""

    origin: str
    validators: Validators


async def fetch_first(origins: Sequence[Origin], path: str, *, host: str | None, max_bytes: int, metrics: Metrics,
                      known: Known | None = None) -> Found:
    """The original from the first origin that has `path`, or the error the chain ends in.

    With `known`, the origin it came from is asked conditionally and raises `NotModified` when that
    version is still current (an origin earlier in the list that now has the path wins, as always).
    `host` is the client's `Host`, or None: it reaches only the origins that take it
    (`takes_request_host`), and the caller keys what it caches by it."""
    failures: list[tuple[Origin, OriginFailure]] = []
    for origin in origins:
        started = time.perf_counter()
        outcome = "found"
        request = OriginRequest(
            path, max_bytes, host=host if origin.takes_request_host else None,
            validators=known.validators if known is not None and known.origin == origin.name else None)
        try:
            async with asyncio.timeout(origin.settings.timeout):
                return Found(origin, await origin.fetch(request))
        except NotModified:
            outcome = "not_modified"
            raise
        except OriginNotFound:
            outcome = "not_found"
        except SourceTooLarge:
            raise BadRequest("source too large") from None
        except FetchMemoryExhausted:
            outcome = "busy"
            raise  # 503: the node is busy, not the origin broken
        except Exception as exc:  # TimeoutError, OriginFailure, or a bug in the plugin
            failure = _as_failure(origin, exc)
            outcome = failure.kind if failure.kind in ORIGIN_FAILURES else "error"
            failures.append((origin, failure))
            log.warning("origin %r failed (%s): %s", origin.name, failure.kind, failure)
        finally:
            metrics.add(metrics.origin_fetches, (origin.name, outcome))
            metrics.observe(metrics.origin_fetch_duration, (origin.name, outcome), time.perf_counter() - started)
    if failures:
        raise origin_error(failures)
    raise NothingToServe("not found")


def _as_failure(origin: Origin, exc: BaseException) -> OriginFailure:
    if isinstance(exc, OriginFailure):
        return exc
    if isinstance(exc, TimeoutError):
        return OriginFailure("timeout", f"no answer within {origin.settings.timeout:g}s")
    # a bug in an origin plugin must not hide the other origins
    log.error("origin %r raised an unexpected error", origin.name, exc_info=exc)
    return OriginFailure("error", type(exc).__name__)


def origin_error(failures: list[tuple[Origin, OriginFailure]]) -> BadGateway:
    """502, or 504 when every failure was a timeout. `X-Edge-Error` names each origin and kind."""
    described = "; ".join(f"{_header_safe(origin.name)}: {failure.kind}" for origin, failure in failures)
    if all(failure.kind == "timeout" for _, failure in failures):
        return GatewayTimeout("origin timed out", headers={"X-Edge-Error": described})
    return BadGateway("origin error", headers={"X-Edge-Error": described})


def _header_safe(text: str) -> str:
    return text.encode("ascii", "backslashreplace").decode("ascii").replace("\r", " ").replace("\n", " ")
