"""The errors a request can end in. Each type knows its HTTP status; handlers never guess.

These are the node's answers. What one origin says about one path is another idea with its own names,
in the plugin API (`edge.plugin.OriginNotFound`, `OriginFailure`): the origin chain turns those into
`NothingToServe` (every origin said not found), `BadGateway` or `GatewayTimeout`. The fleet's shared
tier is no origin either: what it cannot do is a `SharedCacheFailure`.

The message of an `EdgeError` is sent to the client as the one-line body, so it must never contain a
secret, a traceback or anything that varies between identical causes.
"""

from __future__ import annotations

import errno

#: how `one_line` writes the control characters that have a common short escape
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def drop_tracebacks(error: BaseException) -> None:
    """Drop the tracebacks of `error` and of the errors it was raised from, once answered. A frame that awaited
    the task or future holding `error` is in its traceback, a cycle that held what those frames held until
    the cyclic collector ran, seldom in a worker (`gc.freeze`): each render stopped at its deadline kept its
    pixels (250 MB for a 64 MP GIF) and its original. The frames themselves are left alone: one error is
    shared by the requests waiting on a flight, and its traceback holds frames of coroutines still suspended
    (a flight's leader recording the failure); clearing such a frame closed its coroutine, and its waiters
    got a 500 (`cannot reuse already awaited coroutine`)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        error.__traceback__ = None
        error = error.__cause__ or error.__context__


def one_line(text: str) -> str:
    """`text` as one printable line, for an error body, a header value or a log: every character that
    is not printable (control characters such as CR, LF, NUL and DEL, the line and paragraph
    separators, format characters, unassigned code points) written as an escape (`\\r`, `\\n`, `\\t`,
    `\\x00`, `\\u2028`), so that a message quoting a client's input can neither add a line to a body
    nor a header to an answer. Printable text, spaces included, is kept as it is."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escape(char) for char in text)


def _escape(char: str) -> str:
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


class EdgeError(Exception):
    """An error with a client-facing status and one-line message."""

    status = 500
    #: value of the `X-Edge-Error` header, when the error has one.
    kind: str | None = None
    #: the endpoint's label (metrics, access log) when the error came before routing finished (a
    #: refused signature): otherwise the request path knows it
    endpoint: str | None = None
    #: the origin whose original the answer is about (the access log's `origin`), when one gave it: a 422's
    origin: str | None = None

    def __init__(self, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})

    def again(self) -> EdgeError:
        """A new error of the same type, message, headers and kind, to raise for the next request of a URL
        whose answer is remembered (not this one, whose traceback would grow with each)."""
        error = type(self).__new__(type(self), self.message)
        error.__dict__.update(self.__dict__, headers=dict(self.headers))
        error.args = self.args
        return error


class BadRequest(EdgeError):
    """Malformed URL or transformation, or a limit exceeded (400)."""

    status = 400
    kind = "bad_request"


class InvalidTransformation(BadRequest):
    """A transformation parameter that does not parse or is out of range (400 naming it)."""

    kind = "invalid_transformation"

    def __init__(self, param: str, reason: str):
        super().__init__(f"invalid transformation: {param}: {reason}")
        self.param = param


class Unauthorized(EdgeError):
    """The admin API without the admin token, or an image URL without the valid signature its
    endpoint requires (401)."""

    status = 401
    kind = "unauthorized"


class SignatureRefused(Unauthorized):
    """An image URL's signature is `missing`, `invalid` or `expired` (the body says which, nothing more)."""

    def __init__(self, reason: str):
        super().__init__(f"{reason} signature")
        self.reason = reason
        self.kind = f"{reason}_signature"


class NothingToServe(EdgeError):
    """No origin has the path, or no endpoint matches (404). `max_age`: the seconds caches in front may keep
    the answer, when fewer than `[cache] not_found_ttl` (a not-found record made earlier)."""

    status = 404
    kind = "not_found"

    def __init__(self, message: str, *, max_age: int | None = None):
        super().__init__(message)
        self.max_age = max_age


class UnprocessableSource(EdgeError):
    """The original is not a supported or decodable image (422). `unreadable`: its header is not an image's
    (found before any transformation ran), so no URL of it can be served; else a pixel read or an encode
    failed, which a layer's original or the output's format may have caused as well."""

    status = 422
    kind = "unprocessable"

    def __init__(self, message: str = "unsupported or corrupt source image", *, unreadable: bool = False):
        super().__init__(message)
        self.unreadable = unreadable


class BadGateway(EdgeError):
    """Every origin that might have had the path failed (502)."""

    status = 502


class WatermarkMissing(BadGateway):
    """No origin of the endpoint has an image its `watermark` draws (502): the operator's config is wrong, not the
    client's URL, which a 400 naming the layer had blamed for a parameter it never sent."""

    kind = "watermark_missing"

    def __init__(self, path: str):
        super().__init__(f"watermark: i-{path}: no origin of this endpoint has it")


class GatewayTimeout(BadGateway):
    """As `BadGateway`, and every failure was a timeout (504)."""

    status = 504


class Overloaded(EdgeError):
    """The node is overloaded (503 with Retry-After); the subclasses say why (each its `X-Edge-Error`: the 503s
    no alert of their own counts are told apart so)."""

    status = 503
    kind = "overloaded"

    def __init__(self, message: str = "node overloaded, retry later"):
        super().__init__(message, headers={"Retry-After": "1"})


class TransformQueueFull(Overloaded):
    """A render (or an `orig-true` probe) found `[server] transform_queue` renders waiting already (503)."""

    kind = "queue_full"


class TransformQueueTimeout(Overloaded):
    """A render (or an `orig-true` probe) waited `[server] transform_queue_timeout` for a transform thread:
    withdrawn from the queue, never run (503 with Retry-After)."""

    kind = "queue_timeout"

    def __init__(self) -> None:
        super().__init__("node overloaded: waited too long for a transform thread, retry later")


class FetchMemoryExhausted(Overloaded):
    """The process's bytes of originals being fetched or held by renders stayed at `[server] fetch_memory` (503)."""

    kind = "fetch_memory"


class DecodeMemoryExhausted(Overloaded):
    """The process's bytes of originals being decoded whole stayed at `[server] decode_memory` (503)."""

    kind = "decode_memory"


class OutOfDescriptors(Overloaded):
    """A fetch failed for want of a file descriptor: the process is at its `RLIMIT_NOFILE` (503, not the origin's
    502: blamed on it, the origin's alerts sent the on-call to a healthy origin)."""

    kind = "out_of_descriptors"

    def __init__(self) -> None:
        super().__init__("node overloaded: out of file descriptors, retry later")


class OutOfMemory(Overloaded):
    """An allocation failed: the process is at its memory limit (an `RLIMIT_AS`, a container's limit below the
    node's budgets) (503: a `MemoryError` reading a local file was a 502 blaming the origin, libvips' failed
    allocation a 422 blaming the original, elsewhere a 500; scarce-resources probe)."""

    kind = "out_of_memory"

    def __init__(self) -> None:
        super().__init__("node overloaded: out of memory, retry later")


#: errors looked through for the cause of a failure (`exhausted`): a chain is a few long
MAX_CAUSES = 8


def exhausted(exc: BaseException | None) -> Overloaded | None:
    """The node's overload if something failed for want of a file descriptor or of memory, not for its origin or
    its disk: by the error, or one it was raised from or while handling (a plugin's `OriginFailure` made of the
    `OSError`, `from None` included, keeps it as its context)."""
    for _ in range(MAX_CAUSES):
        if exc is None:
            return None
        if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
            return OutOfDescriptors()
        if isinstance(exc, MemoryError):
            return OutOfMemory()
        exc = exc.__cause__ or exc.__context__
    return None


def out_of_descriptors(exc: BaseException | None) -> bool:
    """Whether something failed for want of a file descriptor (`exhausted`)."""
    return isinstance(exhausted(exc), OutOfDescriptors)


class SendMemoryExhausted(Overloaded):
    """Answering would take the process's bytes of large bodies being sent over `[server] send_memory` (503)."""

    kind = "send_memory"


class ShuttingDown(EdgeError):
    """The worker is stopping and the request was still in progress at the end of `[server]
    shutdown_grace` (503 with Retry-After: another worker, or the node restarted, will answer it)."""

    status = 503
    kind = "shutting_down"

    def __init__(self) -> None:
        super().__init__("node shutting down, retry", headers={"Retry-After": "1"})


class FlightTimeout(EdgeError):
    """Waited longer than the request producing the same image may legitimately take (504)."""

    status = 504
    kind = "wait_timeout"

    def __init__(self) -> None:
        super().__init__("timed out waiting for the same image to be produced")


class ConfigError(Exception):
    """A configuration problem; the message names the file, table and key."""


class SharedCacheFailure(Exception):
    """The fleet's shared tier (`[shared_cache]`) could not be purged or its purge journal read or
    written. `kind` is the store's word for it (`timeout`, `server_error`, `denied`, …: the bucket is
    reached through an `s3` origin, whose `OriginFailure` it carries on). Never an image request's
    answer (a failed read is a miss); a purge reports it (502). The message holds no credential."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class StartupError(Exception):
    """The node cannot start (a cache folder it cannot write, an address it cannot listen on, an origin
    that does not open); the message is the one line the operator sees."""


class RenderTimedOut(EdgeError):
    """A render still running after `[limits] render_timeout` was stopped (503). `contended`: it had less
    than its core meanwhile (other renders, other processes), so the same work alone might finish."""

    status = 503
    kind = "render_timeout"

    def __init__(self, contended: bool = False) -> None:
        super().__init__("rendering took too long")
        self.contended = contended
