"""The origin preference list: try each origin in order, serve from the first that has the path.

"Not found" moves on. An origin error moves on too but is remembered, so that when nobody has the
path the answer is 502 (504 for a timeout) rather than a 404 a CDN in front would cache.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType

from .errors import BadGateway, BadRequest, FetchMemoryExhausted, GatewayTimeout, NothingToServe, exhausted
from .fetching import fetching_for
from .logs import Sparse, capped
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
from .settings import redact

log = logging.getLogger("edge.origin")
#: the longest ETag, Last-Modified or Content-Type kept from an origin (S3's ETags are ~34–70)
MAX_VALIDATOR_CHARS = 1024
#: what an `OriginFailure.kind` may be (`redirect_refused`, a plugin's own word…); another is reported as `error`
_KIND = re.compile(r"[a-z][a-z_]{0,31}")
#: an origin's failures are logged once per this many seconds per origin (object: each node's own)
#: and kind: a client chooses the paths, and a path an origin refuses (a dot file, a key an S3 policy
#: hides) fails every time
FAILURE_LOG_SECONDS = 10.0
_FAILURE_LINES = Sparse(FAILURE_LOG_SECONDS)
#: characters of a failure's message logged (it may quote the client's path, of up to 32 kB)
FAILURE_LOG_CHARS = 300
#: seconds past its timeout a fetch's wait may end before the node says the event loop was held
LATE_SECONDS = 0.5
#: `fetch_first`'s `unopened` when every origin opened
_ALL_OPEN: Mapping[str, str] = MappingProxyType({})


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
                      known: Known | None = None, purged_at: float | None = None,
                      unopened: Mapping[str, str] = _ALL_OPEN) -> Found:
    """The original from the first origin that has `path`, or the error the chain ends in.

    With `known`, the origin it came from is asked conditionally and raises `NotModified` when that
    version is still current (an origin earlier in the list that now has the path wins, as always).
    `host` is the client's `Host`, or None: it reaches only the origins that take it
    (`takes_request_host`, `takes_host`), and the caller keys what it caches by it. `purged_at`: when the path's
    cache was last purged (`OriginRequest.purged_at`). `unopened`: origins not open in this worker (name → why),
    each a failure of kind `not_open`."""
    failures: list[tuple[Origin, OriginFailure]] = []
    for origin in origins:
        started = time.perf_counter()
        outcome: str | None = "found"
        given = host is not None and origin.takes_request_host and given_host(origin, host)
        request = OriginRequest(
            path, max_bytes, host=host if given else None,
            validators=known.validators if known is not None and known.origin == origin.name else None,
            purged_at=purged_at)
        try:
            if (why := unopened.get(origin.name)) is not None:
                raise OriginFailure("not_open", why)
            return Found(origin, await fetch_one(origin, request))
        except NotModified:
            outcome = "not_modified"
            raise
        except OriginNotFound:
            outcome = "not_found"
        except SourceTooLarge:
            # a 400 to the client; said here, or an origin's 10 GB answers (or endless ones) were counted `found`
            outcome = "too_large"
            if (left_out := _FAILURE_LINES.allow((id(origin), outcome))) is not None:
                log.warning("origin %r: %s is over [limits] max_source_bytes (%d bytes): answered 400%s",
                            origin.name, capped(repr(path), FAILURE_LOG_CHARS), max_bytes, left_out)
            raise BadRequest("source too large") from None
        except FetchMemoryExhausted:
            outcome = "busy"
            raise  # 503: the node is busy, not the origin broken
        except asyncio.CancelledError:  # nobody waits any more (`edge_abandoned_work_total` too); how long it ran
            outcome = "abandoned"  # says whether the origin kept its clients waiting (EdgeOriginAbandoned)
            raise
        except Exception as exc:  # OriginFailure (the timeout's too), or a bug in the plugin
            if (overload := exhausted(exc)) is not None:
                outcome = "busy"
                raise overload from None
            failure = as_failure(origin, exc)
            outcome = failure.kind if failure.kind in ORIGIN_FAILURES else "error"
            failures.append((origin, failure))
            if (left_out := _FAILURE_LINES.allow((id(origin), failure.kind))) is not None:
                log.warning("origin %r failed (%s): %s%s", origin.name, failure.kind,
                            capped(str(failure), FAILURE_LOG_CHARS), left_out)
        finally:
            if outcome is not None:
                metrics.add(metrics.origin_fetches, (origin.name, outcome))
                metrics.observe(metrics.origin_fetch_duration, (origin.name, outcome), time.perf_counter() - started)
    if failures:
        raise origin_error(failures)
    raise NothingToServe("not found")


def given_host(origin: Origin, host: str) -> bool:
    """`origin.takes_host(host)`; what a plugin's raises is a no, logged (naming the origin) once per
    `FAILURE_LOG_SECONDS`: it had been a 500 for every request of the endpoint, each with two tracebacks."""
    try:
        return bool(origin.takes_host(host))
    except Exception as error:
        if (left_out := _FAILURE_LINES.allow((id(origin), "takes_host"))) is not None:
            log.error("origin %r: takes_host raised %s: %s; the Host is not given to it%s", origin.name,
                      type(error).__name__, capped(str(error), FAILURE_LOG_CHARS), left_out)
        return False


async def fetch_one(origin: Origin, request: OriginRequest) -> Original:
    """`origin.fetch(request)`, held to the origin's timeout and checked. It runs as a task of its own,
    waited for no longer than the timeout: a fetch that swallows its cancellation (or blocks in a
    thread) is left to end by itself, and the request is answered at the timeout all the same."""
    fetching = asyncio.ensure_future(_contained(origin, request))
    started = time.monotonic()
    try:
        done, _ = await asyncio.wait((fetching,), timeout=origin.settings.timeout)
    except asyncio.CancelledError:  # the client went away, or nobody waits for the flight any longer
        _abandon(fetching)
        raise
    finally:  # a cancellation arriving past the timeout was held up the same way as a late timeout
        _warn_if_late(origin, time.monotonic() - started - origin.settings.timeout)
    if not done:
        _abandon(fetching)
        # the node's deadline, told apart from a `TimeoutError` the plugin raises (its client's, after its own
        # delay), which is unclassified: logged with its traceback (it had been logged as this, untrue)
        raise OriginFailure("timeout", f"no answer within {origin.settings.timeout:g}s")
    try:
        original = fetching.result()
    except NotModified:
        if request.validators is None:  # nothing to reuse: a 304 the plugin's storage sent unasked, or a bug
            raise OriginFailure("bad_response", "fetch raised NotModified, but the request had no validators "
                                                "(raise it only when request.validators still match)") from None
        raise
    return _checked(original, request)


def _warn_if_late(origin: Origin, late: float) -> None:
    """Log a wait for a fetch that ended `late` seconds past its timeout. It can only end that late when
    the event loop was held: most often a blocking call in a plugin's coroutine, which answers nothing
    else of the worker meanwhile (and silently, until `[server] worker_timeout` kills it); or the
    monotonic clock jumped (a virtual machine resumed)."""
    if late > LATE_SECONDS and (left_out := _FAILURE_LINES.allow((id(origin), "late"))) is not None:
        log.warning("origin %r: a fetch ended %.1fs past its timeout of %gs: the event loop was held meanwhile, "
                    "by this fetch or by another task of the worker (a blocking call in a coroutine? run it "
                    "with edge.plugin.in_thread), or the machine's clock jumped forward (a virtual machine "
                    "resumed or migrated)%s",
                    origin.name, late, origin.settings.timeout, left_out)


async def _contained(origin: Origin, request: OriginRequest) -> Original:
    """The fetch, its blocking calls on the origin's own threads, and what a plugin raises beyond
    `Exception` (SystemExit, KeyboardInterrupt, GeneratorExit, or a CancelledError nobody asked for)
    made a failure of its origin: left to propagate, it would end the worker's event loop (asyncio
    re-raises SystemExit and KeyboardInterrupt out of a task)."""
    fetching_for(origin.name)  # this task's context: its `in_thread` calls
    try:
        return await origin.fetch(request)
    except asyncio.CancelledError as exc:
        if asyncio.current_task().cancelling():  # asked for by `fetch_one`: the timeout, or no one waits
            raise
        _log_raised(origin, exc)
        raise OriginFailure("error", "the origin plugin raised CancelledError") from None
    except Exception:
        raise
    except BaseException as exc:
        _log_raised(origin, exc)  # with where it was raised: the plugin's author has only the log
        raise OriginFailure("error", f"the origin plugin raised {type(exc).__name__}") from None


def _abandon(fetching: asyncio.Future) -> None:
    """Cancel a fetch nobody waits for any longer; how it ends (late, if it swallows the cancellation)
    is of no interest, and not logged as an exception never retrieved."""
    fetching.cancel()
    fetching.add_done_callback(lambda done: done.cancelled() or done.exception())


def _checked(original: object, request: OriginRequest) -> Original:
    """The plugin's answer as the node relies on it: an `Original` of plain bytes within `max_bytes`, with
    text validators of a bounded length (a longer one is dropped: a `local` ETag names every output)."""
    if not isinstance(original, Original) or not isinstance(original.body, bytes):
        raise OriginFailure("bad_response", f"fetch returned {_kind_of(original)}, not an Original of bytes")
    if type(original.body) is not bytes:  # a subclass (numpy.bytes_): stored as it is, diskcache pickles it, and
        original = replace(original, body=bytes(original.body))  # the tier reads a pickle as tampering
    fields = {"etag": original.etag, "last_modified": original.last_modified, "content_type": original.content_type}
    if wrong := [key for key, value in fields.items() if value is not None and not isinstance(value, str)]:
        hint = " (http_date(datetime) makes last_modified)" if "last_modified" in wrong else ""
        raise OriginFailure("bad_response", f"an Original's {wrong[0]} is {type(fields[wrong[0]]).__name__}, not "
                                            f"text or None{hint}")
    if len(original.body) > request.max_bytes:
        raise SourceTooLarge(request.path)
    if any(value is not None and len(value) > MAX_VALIDATOR_CHARS for value in fields.values()):
        return replace(original, **{key: value if value is None or len(value) <= MAX_VALIDATOR_CHARS else None
                                    for key, value in fields.items()})
    return original


def _kind_of(value: object) -> str:
    return f"an Original of {type(value.body).__name__}" if isinstance(value, Original) else type(value).__name__


def as_failure(origin: Origin, exc: BaseException) -> OriginFailure:
    """What `fetch_one` raised, as the failure the chain reports: its kind a short word, never a credential."""
    if isinstance(exc, OriginFailure):
        try:
            kind, message = exc.kind, str(exc)
        except Exception:  # a plugin's own failure type whose message cannot be made: a failure all the same
            kind, message = vars(exc).get("kind"), f"{type(exc).__name__} (its message could not be made)"
            exc = OriginFailure(kind if isinstance(kind, str) else "error", message)
        # `kind` goes into `X-Edge-Error` and the access log (and metrics, as one of ORIGIN_FAILURES or `error`): a
        # short word, and not a credential of the config (a plugin had made its token the kind: sent to clients)
        if isinstance(kind, str) and _KIND.fullmatch(kind):
            if redact(kind) == kind:
                return exc
            return OriginFailure("error", f"{message} (its kind is a credential of the config: reported as error)")
        # said in the message, or the plugin's author sees `error` with no clue why (repr: no line breaks)
        return OriginFailure("error", f"{message} (its kind {capped(repr(kind), 40)} is not a short lowercase "
                                      f"word: reported as error)")
    # a bug in an origin plugin must not hide the other origins
    _log_raised(origin, exc)
    return OriginFailure("error", type(exc).__name__)


def _log_raised(origin: Origin, exc: BaseException) -> None:
    if (left_out := _FAILURE_LINES.allow((id(origin), "raised"))) is not None:
        log.error("origin %r raised an unexpected error%s", origin.name, left_out, exc_info=exc)


def origin_error(failures: list[tuple[Origin, OriginFailure]]) -> BadGateway:
    """502, or 504 when every failure was a timeout. `X-Edge-Error` names each origin and kind."""
    described = "; ".join(f"{origin.name}: {failure.kind}" for origin, failure in failures)  # escaped as sent
    if all(failure.kind == "timeout" for _, failure in failures):
        return GatewayTimeout("origin timed out", headers={"X-Edge-Error": described})
    return BadGateway("origin error", headers={"X-Edge-Error": described})
