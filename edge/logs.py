"""Diagnostics on standard error (`[server] log_level`, `log_format`); the access log is `edge.accesslog`."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from contextvars import ContextVar

from .errors import one_line
from .settings import redact

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
#: the process' id after the logger's name, as syslog writes it (`edge.origin[4242]`): every worker logs the same
#: events, and a line must say which (and which line is the supervisor's)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d] %(message)s"
#: at most one line of Tornado's messages about malformed requests per this many seconds, per process
CLIENT_NOISE_SECONDS = 10.0
#: how those messages begin (tornado.http1connection and tornado.iostream, at INFO)
_CLIENT_NOISE = ("Malformed HTTP message from ", "Timeout reading body from ", "Unsatisfiable read")
#: where a malformed request's reason starts quoting what the client sent
_QUOTED = re.compile(r"""\s*[:'"(].*""", re.DOTALL)
#: the longest diagnostic message written (and line of a traceback): one may quote a client's path or
#: header, of up to `max_header_size`, or a purge target, of up to `max_admin_body`
MAX_MESSAGE_CHARS = 2000
#: the least level of libraries' loggers, whatever `log_level`: pyvips' own messages (libvips' go to stderr from
#: C: edge/transform/render.py); the HTTP and S3 clients' debug lines, ~50 a request a client chooses, which wrote
#: each request's SigV4 `Authorization` (replayable for 15 minutes), a role's session token and the origin's raw
#: answers (information probe)
_LIBRARY_FLOORS = {"pyvips": logging.WARNING,
                   **dict.fromkeys(("botocore", "aiobotocore", "aioboto3", "boto3", "s3transfer", "urllib3",
                                    "aiohttp"), logging.INFO)}
#: how the later lines of a text record (a traceback's) begin
CONTINUATION = "  "
#: the id of the request being served (its `X-Request-Id`, as the access log writes it), set in the request's task
#: and carried to the tasks and the pool threads it starts: a diagnostic line names the request it was logged for,
#: and an origin's failure is found in the access log. Work shared by several requests (a render, an original's
#: fetch) names the request that started it
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
#: the request's method, host and path (not its query: a signature or a token may be in it), set with
#: `REQUEST_ID`: what names a request whose access log line will never be written (`edge.render_notes`)
REQUEST_TARGET: ContextVar[str | None] = ContextVar("request_target", default=None)


def loggable(text: str, max_chars: int = MAX_MESSAGE_CHARS) -> str:
    """`text` as one log line: masked and cut as by `capped`, every character that is not printable
    escaped (`one_line`: a CR LF that a client or an origin put in a path or a message cannot start a
    line of its own, an ESC cannot drive the reader's terminal)."""
    return _cut(one_line(redact(text)), max_chars)


def capped(text: str, max_chars: int = MAX_MESSAGE_CHARS) -> str:
    """`text` with the config's credentials masked (before the cut: one cut in two would no longer be),
    cut to `max_chars` with a marker saying how much was left out. The JSON format's message is this
    alone: JSON escapes the rest, and a decoded message then reads as it was logged."""
    return _cut(redact(text), max_chars)


def _cut(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else f"{text[:max_chars]}… ({len(text) - max_chars} more characters)"


class TextFormatter(logging.Formatter):
    """`TEXT_FORMAT`, the message `loggable`; a traceback's lines each `loggable` and indented by
    `CONTINUATION`: only a record's first line starts with its time, so an exception's message with a
    line break in it (a client's path quoted by a plugin's error) cannot pass for a record of its own."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        # local time with its offset (`2026-12-05 23:42:16,364+0545`): a container's zone is not its host's
        return super().formatTime(record, datefmt) + time.strftime("%z", self.converter(record.created))

    def formatMessage(self, record: logging.LogRecord) -> str:
        # the request's id (`REQUEST_ID`, no space in it: `edge.accesslog.request_id`) first, as logfmt writes it
        request_id = record.__dict__.get("request_id")
        record.message = (f"request_id={request_id} " if request_id else "") + loggable(record.message)
        return super().formatMessage(record)

    def formatException(self, ei) -> str:
        return _continued(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _continued(super().formatStack(stack_info))


def _continued(text: str) -> str:
    return "\n".join(CONTINUATION + loggable(line) for line in text.split("\n"))


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time (Unix seconds), level, logger, pid, request_id (null outside a request),
    message, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name,
                "pid": record.process, "request_id": record.__dict__.get("request_id"),
                "message": capped(record.getMessage())}
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=True)


class Sparse:
    """Lines that a client can cause one per request, kept to one per `seconds` per kind (`key`):
    `allow(key)` is None for a line to leave out, else the text the line ends with, saying how many
    of its kind were left out since the last one written, and over how long: a burst's count is told only by the
    next line of its kind, which may come minutes later, with another incident (log probe)."""

    def __init__(self, seconds: float, clock=time.monotonic):
        self._seconds = seconds
        self._clock = clock
        self._next: dict[object, float] = {}
        self._left_out: dict[object, int] = {}

    def allow(self, key: object = None) -> str | None:
        now = self._clock()
        if now < (next_line := self._next.get(key, float("-inf"))):
            self._left_out[key] = self._left_out.get(key, 0) + 1
            return None
        self._next[key] = now + self._seconds
        if not (left_out := self._left_out.pop(key, 0)):
            return ""
        return f" (and {left_out} more such messages left out in the {now - next_line + self._seconds:.0f} s before)"


class ClientNoiseFilter(logging.Filter):
    """Tornado logs every malformed request at INFO with what the client sent (`Invalid header value
    '…'`: up to `max_header_size` bytes of it, which may be a token or a cookie): one client could
    write megabytes a second, secrets included. Such lines keep their reason without the client's
    bytes, one per `CLIENT_NOISE_SECONDS` at most, the next one saying how many were left out."""

    def __init__(self, clock=time.monotonic):
        super().__init__()
        self._sparse = Sparse(CLIENT_NOISE_SECONDS, clock)

    def filter(self, record: logging.LogRecord) -> bool:
        if not (isinstance(record.msg, str) and record.msg.startswith(_CLIENT_NOISE)):
            return True
        if (left_out := self._sparse.allow()) is None:
            return False
        message = record.getMessage()
        if message.startswith(_CLIENT_NOISE[0]):  # "… from <address>: <reason quoting the client>"
            peer, _, reason = message.partition(": ")
            message = f"{peer}: {_QUOTED.sub('', reason)[:100]}"
        record.msg, record.args = message + left_out, ()
        return True


class _StderrHandler(logging.StreamHandler):
    """The handler `configure_logging` installs (and replaces when called again). What it writes has
    the config's credentials masked, tracebacks included (the access log is written apart), and every
    message is capped and kept to its line (`TextFormatter`, `JSONFormatter`), whoever logged it (the
    node, Tornado, a third-party plugin)."""

    def format(self, record: logging.LogRecord) -> str:
        # a copy, which the formatter may change: other handlers (a test's capture) see the record as it
        # was logged; its traceback formatted anew (another handler's text of it is not escaped). Handled in
        # the thread and context that logged it: the request's id is theirs
        record = logging.makeLogRecord({"request_id": REQUEST_ID.get(), **record.__dict__, "exc_text": None})
        return redact(super().format(record))


def configure_logging(level: str, log_format: str) -> None:
    handler = _StderrHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_LEVELS[level])
    tornado = logging.getLogger("tornado.general")
    for old_filter in [f for f in tornado.filters if isinstance(f, ClientNoiseFilter)]:
        tornado.removeFilter(old_filter)
    tornado.addFilter(ClientNoiseFilter())
    for library, floor in _LIBRARY_FLOORS.items():
        logging.getLogger(library).setLevel(max(floor, _LEVELS[level]))
