"""The node's HTTP server: Tornado's `HTTPServer` with limits fit for the open internet.

Tornado's defaults are not (a one-hour header timeout, 100 MB bodies, no connection cap, and an
accept loop that spins writing a traceback per attempt when the process is out of file
descriptors). `make_server` sets every limit from `[server]`; `EdgeHTTPServer` adds what Tornado
has no setting for:

- a deadline for a connection's first request's headers (`header_timeout`; a kept-alive connection's next
  request's too, from when they began), separate from how long a
  kept-alive connection may wait for its next request (`idle_timeout`), both enforced by one sweep of
  the connections every `SWEEP_SECONDS` (Tornado's own header timeout wraps every request's header
  read in a timer and a future: a measurable share of a cache hit); a sweep that finds the process
  stalled (or its clock jumped forward) closes nothing, and does not count that time against its clients;
- a small body limit for every request, raised only for the paths that take a body (the purge API),
  checked against `Content-Length` before any of the body is read;
- a cap on open connections: beyond it a connection gets a fixed 503 and is closed, never read;
- a request line over `max_header_size` answered 414, a header block over it 431 (Tornado closes the
  connection without a word), and Tornado's bare 400 for a malformed request given a body; these and
  the 503 carry the CORS headers of `[server] cors_origin`, so that a page's `fetch()` reads their status
  (`EarlyAnswers`, built once per server);
- at the fd limit (EMFILE), accepting pauses for a moment instead of spinning, and says so once;
- a send timeout (`send_timeout`): a connection whose client accepts none of its response for that
  long is dropped by the kernel (`TCP_USER_TIMEOUT`, set on the listening sockets and inherited by
  every accepted one: no per-request cost). Without it a client that stops reading holds its
  response's bytes, and its connection slot, for as long as it likes;
- `drain()`: stop accepting (the connections the kernel has queued accepted first, then the socket
  closed: once every copy of it is, new connections are refused), close idle connections, let
  requests in progress finish (bounded), then have those still in progress answered (503) rather
  than cut;
- an HTTP/1.0 request with `Transfer-Encoding` (faulty framing: a smuggling vector) answered 400 and
  its connection closed;
- a repeated or invalid `Host` refused with a 400 before the hit shortcut sees the request;
- what it does to connections reported to a `ConnectionObserver` (the node's metrics): each
  connection it closes itself and why, and every sweep how many are open;
- an absolute-form request target (`GET http://img.example.com/tr:w-300/a.jpg HTTP/1.1`, which a
  server must accept, RFC 9112 3.2.2) made the origin-form one (`/tr:w-300/a.jpg`) with its
  authority as the `Host` (the RFC: the target's authority replaces the Host header), before the hit
  shortcut or the application see it; Tornado's routing knows only paths.
"""

from __future__ import annotations

import asyncio
import errno
import heapq
import logging
import re
import resource
import socket
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from tornado import httputil
from tornado.http1connection import HTTP1Connection
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop, PeriodicCallback
from tornado.iostream import IOStream, UnsatisfiableReadError
from tornado.log import gen_log

from .config import ServerSettings
from .logs import Sparse
from .settings import Secret

log = logging.getLogger("edge.server")

#: the most connections a listening socket queues (Linux's default `net.core.somaxconn`; Tornado asks for 128):
#: the bound of the accepting that empties the queue when a server stops
MAX_QUEUED_CONNECTIONS = 4096
#: seconds accepting stays paused when the process is out of file descriptors
ACCEPT_PAUSE_SECONDS = 0.5
#: at most one "out of file descriptors" message per this many seconds
FD_WARNING_INTERVAL = 10.0
_OUT_OF_FDS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: bytes of a refused connection's request read and dropped before it is closed (`_refuse`)
_DISCARD_BYTES = 64 * 1024

#: how often connections waiting too long for a request's headers are looked for and closed: a
#: deadline is kept to within this (or a quarter of the shortest timeout, if shorter)
SWEEP_SECONDS = 1.0

#: a sweep that comes this many periods late finds the process stalled, and closes nothing that time
STALL_SWEEPS = 3

#: how long the 503s that end a drain (`EdgeHTTPServer.drain`) have to go out before their connections are closed
GIVE_UP_SECONDS = 1.0
#: bytes looked at, unread, for a whole request head on a connection a drain finds waiting (`_has_request`)
MAX_HEAD_PEEK = 64 * 1024

#: kept-alive connections looked at for one whose next request is not already there, to close it for a new one
RECLAIM_CANDIDATES = 8
#: why the server closes a connection itself (`ConnectionObserver.connection_closed`): its first request's headers
#: came later than `header_timeout`, a kept-alive connection waited longer than `idle_timeout` for its next
#: request, `max_connections` were open when it came (answered 503), or its client took none of what was sent
#: for `send_timeout` (the kernel dropped it: `set_send_timeout`); `idle_reclaimed`: a kept-alive connection
#: waiting for its next request, closed to make room for a new one at `max_connections`
CONNECTION_CLOSES = ("header_timeout", "idle_timeout", "over_capacity", "send_timeout", "bad_request", "uri_too_long",
                     "headers_too_large", "idle_reclaimed")


class ConnectionObserver(Protocol):
    def connection_closed(self, reason: str) -> None:
        """The server closed a connection itself, for `reason` (one of `CONNECTION_CLOSES`); on the IOLoop."""

    def connections_open(self, count: int) -> None:
        """`count` connections are open now (called every sweep, `SWEEP_SECONDS`)."""


class _Unobserved:
    def connection_closed(self, reason: str) -> None:
        pass

    def connections_open(self, count: int) -> None:
        pass


#: the purge API's path: `edge.server`'s `PurgeHandler`, and what `edge.fanout` calls on the peers
PURGE_PATH = "/_edge/purge"
#: an absolute-form request target of the schemes the node serves: its authority, and what follows it
_ABSOLUTE_FORM = re.compile(r"[hH][tT][tT][pP][sS]?://([^/?#]*)([/?].*)?", re.DOTALL)
#: an authority the node takes as the Host (a target's, or the Host header itself): a name or an IPv4
#: address, or an IPv6 literal, with an optional port; no user information (RFC 9110 4.2.4: an error), no
#: comma (a repeated Host arrives joined by commas)
_AUTHORITY = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+;=%-]+)(?::([0-9]{0,5}))?")
#: the largest TCP port (an authority with a larger one is no authority: a 400)
_MAX_PORT = 65535


def _is_authority(text: str) -> bool:
    """Whether `text` is a host, with a port of at most 65535 if any (a Host header, a target's authority)."""
    authority = _AUTHORITY.fullmatch(text)
    return authority is not None and int(authority[1] or 0) <= _MAX_PORT


def origin_form(start_line: httputil.RequestStartLine,
                headers: httputil.HTTPHeaders) -> httputil.RequestStartLine:
    """The request line with an absolute-form target (`http://host:port/path?query`) made the
    origin-form one (`/path?query`), `headers`' `Host` made the target's authority. A target that is
    anything else, or an absolute one with a scheme other than http(s), user information, no host or a
    port over 65535, is returned as it is (the application answers a target that is not a path with a
    400). An
    HTTP/1.1 request without any `Host` keeps that lack (Tornado's 400, RFC 9112 3.2)."""
    target = start_line.path
    if target.startswith("/"):
        return start_line
    match = _ABSOLUTE_FORM.fullmatch(target)
    if match is None or not _is_authority(match[1]):
        return start_line
    if "Host" in headers or start_line.version == "HTTP/1.0":
        headers["Host"] = match[1]
    rest = match[2] or ""
    return httputil.RequestStartLine(start_line.method, rest if rest.startswith("/") else "/" + rest,
                                     start_line.version)


#: the response headers a page's `fetch()` may read beyond the CORS-safelisted ones (`Cache-Control`,
#: `Content-Length`, `Content-Type`, `Last-Modified`, …): what the node says about an answer (docs/security.md)
CORS_EXPOSED = "Content-Disposition, Date, ETag, Link, Retry-After, Vary, X-Cache, X-Edge-Error, X-Request-Id"


def cors_headers(origin: str) -> dict[str, str]:
    """The CORS headers of image answers and of the HTTP layer's own answers (`[server] cors_origin`; none
    when it is "")."""
    if not origin:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": CORS_EXPOSED,
            "Timing-Allow-Origin": origin}


def _closing_fields(headers: dict[str, str], body: bytes) -> dict[str, str]:
    """The header fields of an answer of the HTTP layer: `headers`, a one-line `text/plain` `body` (as the
    handlers' error answers), and the connection closed after it."""
    return {**headers, "Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store", "Connection": "close", "Content-Length": str(len(body))}


def _plain_answer(status: int, reason: str, message: str, headers: dict[str, str]) -> bytes:
    """A whole answer after which the connection is closed: the status, `headers`, and `message` as the body."""
    body = message.encode() + b"\n"
    head = "".join(f"{name}: {value}\r\n" for name, value in _closing_fields(headers, body).items())
    return f"HTTP/1.1 {status} {reason}\r\n{head}\r\n".encode("latin-1") + body


class EarlyAnswers:
    """The answers the HTTP layer makes before any handler sees a request, built once per server with the
    CORS headers (for a page's `fetch()`, any of them may be the answer to an image URL; none quotes the
    request)."""

    def __init__(self, cors: dict[str, str]):
        self.cors = cors
        self.over_capacity = _plain_answer(503, "Service Unavailable", "too many connections",
                                          {"Retry-After": "1", "X-Edge-Error": "over_capacity", **cors})
        #: in place of Tornado's bare `400 Bad Request` to a request it cannot parse or frame
        self.bad_request = _plain_answer(400, "Bad Request", "bad request", {"X-Edge-Error": "bad_request", **cors})
        self.uri_too_long = _plain_answer(414, "URI Too Long", "request line too long",
                                          {"X-Edge-Error": "uri_too_long", **cors})
        self.headers_too_large = _plain_answer(431, "Request Header Fields Too Large", "request headers too large",
                                               {"X-Edge-Error": "headers_too_large", **cors})


_date_second, _date_text = -1, ""


def date_header_now() -> str:
    """The `Date` header's value now, formatted at most once a second."""
    global _date_second, _date_text
    now = int(time.time())
    if now != _date_second:
        _date_second, _date_text = now, httputil.format_timestamp(now)
    return _date_text


def _dated(answer: bytes) -> bytes:
    """An `EarlyAnswers` answer with its `Date` (RFC 9110 6.6.1: an origin server's 4xx has one; the answers
    are built once, the date is now)."""
    status_line, _, rest = answer.partition(b"\r\n")
    return b"%s\r\nDate: %s\r\n%s" % (status_line, date_header_now().encode(), rest)


def _refuse(sock: socket.socket, answer: bytes) -> None:
    """Send `answer` (`_dated`) on a connection about to be closed, without waiting, then the end of what the
    node sends; and drop what has arrived of the request: a socket closed with unread bytes resets the
    connection, and a reset can overtake the answer."""
    try:
        sock.send(_dated(answer), socket.MSG_DONTWAIT)
        sock.shutdown(socket.SHUT_WR)
        sock.recv(_DISCARD_BYTES, socket.MSG_DONTWAIT)
    except OSError:
        pass


#: Tornado's answer to a request it cannot parse or frame (`HTTP1Connection`), which `_ConnectionStream` replaces
_TORNADO_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\n\r\n"


class _ConnectionStream(IOStream):
    """An accepted connection's stream, with the node's answers where Tornado has none or a bare one:
    Tornado's 400 becomes `EarlyAnswers.bad_request`, and a request line or header block over
    `max_header_size` (Tornado's stream stops reading there and closes the connection: no more is
    buffered) is answered 414 or 431 before the connection is closed."""

    def __init__(self, connection: socket.socket, answers: EarlyAnswers, observer: ConnectionObserver,
                 **kwargs) -> None:
        super().__init__(connection, **kwargs)
        self._answers = answers
        self._observer = observer
        #: bytes given to `write`, and bytes the kernel has taken, since the connection opened: how much of a
        #: body its client was sent if it leaves mid-way (`edge.server.send_body`)
        self.queued = self.sent = 0

    def write(self, data):
        # Tornado writes its 400 in one call, then closes the connection
        if data == _TORNADO_BAD_REQUEST:
            data = _dated(self._answers.bad_request)
            self._observer.connection_closed("bad_request")
        self.queued += len(data)
        return super().write(data)

    def write_to_fd(self, data: memoryview) -> int:
        written = super().write_to_fd(data)
        self.sent += written
        return written

    def close_fd(self) -> None:
        # a read over its limit closes the stream; a server's only read to a pattern is the header block's
        if isinstance(self.error, UnsatisfiableReadError) and self._read_regex is not None:
            line_ended = self._read_buffer.find(b"\n", 0, self._read_max_bytes) != -1
            _refuse(self.socket, self._answers.headers_too_large if line_ended else self._answers.uri_too_long)
            self._observer.connection_closed("headers_too_large" if line_ended else "uri_too_long")
        super().close_fd()


#: bytes read from a connection at a time. Tornado zeroes a new buffer of this size for every read
#: (two a request: the request and the read that finds no more), 64 kB by default: 128 kB written per
#: cache hit to read a request of a few hundred bytes. Headers larger than this take more reads.
READ_CHUNK_SIZE = 8192


def _refuses_no_method(method: str, path: str) -> bool:
    return False


def make_server(app: httputil.HTTPServerConnectionDelegate, settings: ServerSettings,
                admin_token: Secret | None = None, cors: bool = True,
                observer: ConnectionObserver | None = None,
                refuses_method: Callable[[str, str], bool] = _refuses_no_method) -> EdgeHTTPServer:
    """An `HTTPServer` for `app` with `[server]`'s limits; a purge carrying `admin_token` may take
    `max_admin_body` bytes, every other request `max_request_body`; its own answers carry the CORS
    headers if `cors` (the images' port, not `metrics_port`); what it does to connections is told to
    `observer`; `refuses_method(method, path)` says whether `app` answers a request a 405 whatever it
    holds (its body is then not waited for)."""
    return EdgeHTTPServer(
        app,
        settings=settings,
        admin_token=admin_token,
        answers=EarlyAnswers(cors_headers(settings.cors_origin) if cors else {}),
        observer=observer or _Unobserved(),
        refuses_method=refuses_method,
        idle_connection_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        max_header_size=settings.max_header_size,
        max_body_size=settings.max_admin_body,
        chunk_size=READ_CHUNK_SIZE,
    )


def set_send_timeout(sock: socket.socket, seconds: float) -> None:
    """Drop a connection once the data sent on it has stayed unacknowledged, or unsent because the
    client's receive window is closed, for `seconds` (Linux `TCP_USER_TIMEOUT`; a client that reads
    slowly acknowledges some and starts it again). Set on a listening socket, every connection
    accepted from it inherits it. The kernel then reports an error on the socket, which closes the
    IOStream and frees what it held."""
    milliseconds = min(max(round(seconds * 1000), 1), 2**31 - 1)  # the option is a C int
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, milliseconds)


def _timed_out(error: BaseException | None) -> bool:
    """Whether a connection ended on `set_send_timeout`'s error (or a retransmission's timeout: the same)."""
    return isinstance(error, OSError) and error.errno == errno.ETIMEDOUT


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (every connection is a file descriptor);
    returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the file descriptor limit from %d to %d: %s", soft, hard, exc)
    return soft


class _ConnectionState:
    __slots__ = ("requests", "busy", "waiting_since", "head_since", "request")

    def __init__(self, now: float) -> None:
        self.requests = 0  # requests started (the first while its headers are awaited)
        self.busy = False  # between a request's headers and the start of the next request
        self.waiting_since = now  # when the wait for the current request's headers began
        #: when a sweep first saw part of a kept-alive connection's next request head, still arriving
        self.head_since: float | None = None
        self.request: HTTP1Connection | None = None  # the current request's

    @property
    def between_requests(self) -> bool:
        """A kept-alive connection waiting for its next request."""
        return self.requests > 1 and not self.busy


class EdgeHTTPServer(HTTPServer):
    def initialize(self, *args, settings: ServerSettings, admin_token: Secret | None, answers: EarlyAnswers,
                   observer: ConnectionObserver, refuses_method: Callable[[str, str], bool], **kwargs) -> None:
        super().initialize(*args, **kwargs)
        self.conn_params.header_timeout = None  # the sweep enforces it
        self.settings = settings
        self.observer = observer
        self.answers = answers
        self.admin_token = admin_token
        self.refuses_method = refuses_method
        self._states: dict[object, _ConnectionState] = {}  # by the connection's IOStream
        self._draining = False
        self._fd_warnings = Sparse(FD_WARNING_INTERVAL)
        self._sweep_seconds = min(SWEEP_SECONDS, settings.header_timeout / 4, settings.idle_timeout / 4)
        self._sweep = PeriodicCallback(self._close_late_connections, 1000 * self._sweep_seconds)
        self._swept_at = 0.0  # when the sweep last ran (`add_sockets` starts it)

    # -- connections ----------------------------------------------------------------------------
    def handle_stream(self, stream, address) -> None:
        if len(self._states) >= self.settings.max_connections and not self._draining:
            self._make_room()
        if len(self._states) >= self.settings.max_connections or self._draining:
            _refuse(stream.socket, self.answers.over_capacity)  # under load its request has arrived: the backlog
            stream.close()
            if not self._draining:
                self.observer.connection_closed("over_capacity")
            return
        self._states[stream] = _ConnectionState(time.monotonic())
        super().handle_stream(stream, address)

    def _make_room(self) -> None:
        """Close the kept-alive connection that has waited longest for its next request (and has none coming),
        as nginx reuses an idle connection when it has no other: a client's 1024 connections that each asked
        once and then sat idle had locked every new client out (503) for `idle_timeout`."""
        # the few idle longest, not every connection sorted: a refused one (none idle) costs a pass, no more
        idle = heapq.nsmallest(RECLAIM_CANDIDATES, ((state.waiting_since, id(stream), stream)
                                                    for stream, state in self._states.items()
                                                    if state.between_requests))
        for _, _, stream in idle:
            if not _has_request(stream):
                del self._states[stream]  # at once: the close is seen on the IOLoop's next turn
                stream.close()
                self.observer.connection_closed("idle_reclaimed")
                return

    def start_request(self, server_conn, request_conn) -> httputil.HTTPMessageDelegate:
        state = self._states.get(server_conn.stream)
        if state is not None:
            state.busy = False
            state.waiting_since = time.monotonic()
            state.head_since = None
            # draining: no request after the one answered, but one already there (pipelined, or sent as the
            # answer went out), which is answered with `Connection: close`; a first one is served (`drain`): its
            # connection was accepted before the drain began, its request loop starting on the IOLoop's next turn
            if self._draining and state.requests and not _has_request(server_conn.stream):
                request_conn.close()
            state.requests += 1
            state.request = request_conn
        return _Limited(super().start_request(server_conn, request_conn), request_conn, self, state)

    def _close_late_connections(self) -> None:
        """Close the connections whose request headers are late: the first request's after
        `header_timeout`, a kept-alive connection's next one after `idle_timeout`, or `header_timeout` after its
        first bytes were seen (a slow head after one quick request had been given `idle_timeout`, 60 s to 10)."""
        self.observer.connections_open(len(self._states))
        now = time.monotonic()
        unseen = now - self._swept_at
        self._swept_at = now
        if unseen > STALL_SWEEPS * self._sweep_seconds:
            # The process did not run (a long callback, SIGSTOP, a paused VM) or its clock jumped forward (a
            # VM resumed or migrated): headers that arrived meanwhile are read, but handed to their request
            # only after this timer (asyncio runs a turn's I/O callbacks, then its timers, then what they
            # woke). Its own stall is not the clients' delay: nor is it at the next sweeps, which closed
            # every kept-alive connection after a jump.
            for state in self._states.values():
                state.waiting_since += unseen
                if state.head_since is not None:
                    state.head_since += unseen
            return
        first, later = now - self.settings.header_timeout, now - self.settings.idle_timeout
        late = [(stream, "header_timeout" if state.requests <= 1 else "idle_timeout")
                for stream, state in self._states.items()
                if not state.busy and state.waiting_since < (first if state.requests <= 1 else later)]
        # a kept-alive connection whose next head has begun is timed as a first one's, from the sweep that saw it
        for stream, state in self._states.items():
            if state.between_requests and state.waiting_since >= later:
                if not _head_begun(stream):
                    state.head_since = None
                elif state.head_since is None:
                    state.head_since = now
                elif state.head_since < first:
                    late.append((stream, "header_timeout"))
        for stream, reason in late:
            stream.close()
            self.observer.connection_closed(reason)

    async def close_all_connections(self) -> None:
        self._sweep.stop()  # runs on while draining: a connection sending no headers is closed on time
        await super().close_all_connections()

    def on_close(self, server_conn) -> None:
        stream = server_conn.stream
        if self._states.pop(stream, None) is not None and _timed_out(stream.error):
            self.observer.connection_closed("send_timeout")
        super().on_close(server_conn)

    async def drain(self, grace: float, give_up: Callable[[], int] = lambda: 0) -> None:
        """Stop accepting; close connections idle between requests; let the others finish their
        request (a new connection its first one: it may have been accepted a moment ago) for at most
        `grace` seconds; then `give_up()` (it answers what it can of the requests left, and says how
        many), a moment for those answers to go out, and close what is left."""
        self.stop()
        self._draining = True
        # a next request already there is answered, and its connection then closed: closed unread, its client
        # saw a reset for a request it had sent, which the node had logged and counted as answered
        idle = [stream for stream, state in self._states.items()
                if state.between_requests and not _has_request(stream)]
        for state in self._states.values():
            if state.busy and state.request is not None and state.request._response_start_line is None:
                _last_on_connection(state.request)  # its answer says so: its client sends no other
        log.info("draining: %d request(s) in progress, %d idle connection(s) closed",
                 sum(state.busy for state in self._states.values()), len(idle))
        for stream in idle:
            stream.close()
        await self._closed_within(grace)
        if self._states:
            answered = give_up()
            log.warning("%d connection(s) still open after %gs; %d answered 503, closing them", len(self._states),
                        grace, answered)
            if answered:
                await self._closed_within(GIVE_UP_SECONDS)
        await self.close_all_connections()

    async def _closed_within(self, seconds: float) -> None:
        """Wait until every connection is closed (each closes after its request), at most `seconds`."""
        deadline = time.monotonic() + seconds
        while self._states and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    # -- accepting ------------------------------------------------------------------------------
    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        if not self._sweep.is_running():
            self._swept_at = time.monotonic()
            self._sweep.start()
        for sock in sockets:
            set_send_timeout(sock, self.settings.send_timeout)
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = self._accept_on(sock)

    def _accept_on(self, sock: socket.socket) -> Callable[[], None]:
        """Tornado's accept loop, except that running out of file descriptors pauses accepting on this
        socket for `ACCEPT_PAUSE_SECONDS` (Tornado's raises, logs a traceback and is called again at
        once: a spin). Pending connections wait in the kernel's backlog meanwhile, or go to another
        worker. Returns the function that stops accepting: it first accepts the connections the kernel
        has queued (`stop()` then closes the socket, and closing its last copy would reset them)."""
        loop = IOLoop.current()
        paused: list[object] = []  # the timer that resumes accepting, while paused

        def on_readable(fd: object, events: int) -> None:
            accept(128)  # as Tornado: a bounded batch per wake-up

        def accept(limit: int) -> None:
            for _ in range(limit):
                try:
                    connection, address = sock.accept()
                except BlockingIOError:
                    return
                except ConnectionAbortedError:
                    continue
                except OSError as exc:
                    if exc.errno not in _OUT_OF_FDS:
                        raise
                    self._pause(sock, exc, loop, paused, on_readable)
                    return
                self._serve_connection(connection, address)

        def stop() -> None:
            if not paused:
                accept(MAX_QUEUED_CONNECTIONS)
            if paused:  # out of file descriptors, now or before: what is queued is not accepted
                loop.remove_timeout(paused.pop())
            else:
                loop.remove_handler(sock)

        loop.add_handler(sock, on_readable, IOLoop.READ)
        return stop

    def _serve_connection(self, connection: socket.socket, address) -> None:
        """Tornado's `_handle_connection` (the node serves no TLS: its front proxy does), with the node's stream."""
        try:
            self.handle_stream(_ConnectionStream(connection, self.answers, self.observer,
                                                 max_buffer_size=self.max_buffer_size,
                                                 read_chunk_size=self.read_chunk_size), address)
        except Exception:
            gen_log.error("Error in connection callback", exc_info=True)

    def _pause(self, sock, exc: OSError, loop: IOLoop, paused: list, on_readable) -> None:
        loop.remove_handler(sock)
        if (left_out := self._fd_warnings.allow()) is not None:
            log.warning("cannot accept connections: %s (%d open); pausing accepting for %gs at a time%s",
                        exc.strerror, len(self._states), ACCEPT_PAUSE_SECONDS, left_out)

        def resume() -> None:
            paused.clear()
            loop.add_handler(sock, on_readable, IOLoop.READ)

        paused.append(loop.call_later(ACCEPT_PAUSE_SECONDS, resume))


#: why a request's framing is faulty (`_Limited.headers_received`), its 400's body and log line
_FAULTY_FRAMING = "Transfer-Encoding in an HTTP/1.0 request"


def _has_body(headers: httputil.HTTPHeaders) -> bool:
    """Whether a request's framing announces a body (RFC 9112 6.3)."""
    return "Transfer-Encoding" in headers or headers.get("Content-Length", "0").strip() not in ("", "0")


def _refused_length(headers: httputil.HTTPHeaders, limit: int) -> bool:
    """Whether Tornado refuses the announced body before reading it: a `Content-Length` over `limit`, not a
    number, or repeated with different values (repeated ones arrive joined by commas; equal ones are one)."""
    length = headers.get("Content-Length")
    if length is None:
        return False
    values = {value.strip() for value in length.split(",")}
    try:
        return len(values) > 1 or int(values.pop()) > limit
    except ValueError:
        return True


def _tokens(field: str) -> set[str]:
    """The options of a comma-separated header field, lower-cased."""
    return {token.strip().lower() for token in field.split(",")}


def _has_request(stream: IOStream) -> bool:
    """Whether a connection's next request's head has arrived whole: read by Tornado, or waiting in the
    socket (one still arriving is not waited for: a client could hold every stop for `shutdown_grace`)."""
    head = _arrived(stream)
    return b"\r\n\r\n" in head or b"\n\n" in head


def _head_begun(stream: IOStream) -> bool:
    """Whether part of a connection's next request head has arrived, and not all of it. Tornado reads what comes
    into its buffer at once: a byte peeked in the socket is enough (every idle connection is asked each sweep)."""
    head = _arrived(stream, 1)
    return bool(head.strip()) and b"\r\n\r\n" not in head and b"\n\n" not in head


def _arrived(stream: IOStream, peek: int = MAX_HEAD_PEEK) -> bytes:
    """What a connection's client has sent that no request has taken: read by Tornado, or waiting in the socket
    (up to `peek` bytes of it)."""
    try:
        waiting = stream.socket.recv(peek, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (OSError, AttributeError):  # nothing yet (EAGAIN), or the connection is gone
        waiting = b""
    return bytes(stream._read_buffer[:stream._read_buffer_size]) + waiting


def _last_on_connection(request: HTTP1Connection) -> None:
    """Close the connection once `request` is answered, and say so in the answer (`Connection: close`; an
    HTTP/1.0 client asking for keep-alive is answered without `Keep-Alive`, which Tornado would write)."""
    request._disconnect_on_finish = True
    if request._request_headers is not None:
        request._request_headers.pop("Connection", None)


class _Limited(httputil.HTTPMessageDelegate):
    """Applies the per-path body limit once the request line is known, before the body is read, and
    refuses a request whose framing is faulty."""

    def __init__(self, delegate: httputil.HTTPMessageDelegate, request_conn, server: EdgeHTTPServer,
                 state: _ConnectionState | None):
        self._delegate = delegate
        self._request_conn = request_conn
        self._server = server
        self._state = state
        self._refused = False

    def headers_received(self, start_line, headers):
        if self._state is not None:
            self._state.busy = True
        if self._server._draining:  # the last request of this connection (`drain`)
            _last_on_connection(self._request_conn)
        if start_line.version == "HTTP/1.0" and "Transfer-Encoding" in headers:
            # RFC 9112 6.1: HTTP/1.0 has no chunked framing, so the message's is faulty. Tornado would
            # read a chunked body and keep the connection: a front end framing the message as 1.0
            # would see another request in that body (smuggling). A 400, and the connection closed
            # (nginx's answer too; Tornado closes after a response finished before the request's body
            # was read); the application never sees the request.
            self._refused = True
            gen_log.info("Malformed HTTP message from %s: %s", self._request_conn.context, _FAULTY_FRAMING)
            headers.pop("Connection", None)  # else Tornado answers a 1.0 keep-alive `Connection: Keep-Alive`
            body = _FAULTY_FRAMING.encode() + b"\n"
            fields = {"Date": date_header_now(),
                      **_closing_fields({"X-Edge-Error": "bad_request", **self._server.answers.cors}, body)}
            self._request_conn.write_headers(httputil.ResponseStartLine("HTTP/1.1", 400, "Bad Request"),
                                             httputil.HTTPHeaders(fields), body)
            self._request_conn.finish()
            self._server.observer.connection_closed("bad_request")
            return None
        # RFC 9112 3.2: a repeated Host (which arrives joined by commas) or an invalid one is a 400. Tornado's
        # request checks it, but the hit shortcut answers before any request is made: Tornado's 400 here
        host = headers["Host"] if "Host" in headers else ""  # an empty one is allowed (RFC 9110 7.2)
        if host and not _is_authority(host):
            raise httputil.HTTPInputError("Invalid or repeated Host header")
        connection = headers.get("Connection")
        if connection is not None and "," in connection and "close" in _tokens(connection):
            # `Connection: TE, close`: Tornado closes only on a header that is exactly "close" (RFC 9110 7.6.1:
            # the option in a list is as binding), and kept the connection open
            self._request_conn._disconnect_on_finish = True
        settings = self._server.settings
        start_line = origin_form(start_line, headers)
        path = start_line.path.split("?", 1)[0]
        body_limit = settings.max_admin_body
        token = self._server.admin_token
        if path != PURGE_PATH or token is None or not token.is_bearer_of(headers.get("Authorization")):
            # Tornado refuses a larger Content-Length (400, connection closed) before reading the body,
            # and stops a chunked body as soon as it is over. A purge's allowance only with the token: a
            # client without it had each worker hold ~1 MiB a connection until its 401 (1 GiB at 1024)
            body_limit = settings.max_request_body
            self._request_conn.set_max_body_size(body_limit)
        if "Expect" in headers and (start_line.version != "HTTP/1.1" or not _has_body(headers)
                                    or _refused_length(headers, body_limit)):
            # Tornado answers `100 (Continue)` whenever it sees the header: never to an HTTP/1.0 client, whose
            # expectation is ignored (RFC 9110 15.2, 10.1.1), nor when no body is to come (10.1.1 allows that),
            # nor to a body it refuses unread (the client would start sending a body only to get the 400)
            del headers["Expect"]
        elif ("100-continue" in _tokens(headers.get("Expect", ""))
              and self._server.refuses_method(start_line.method, path)):
            # a method the target refuses: its 405 at once (10.1.1 allows it), not after a body sent only to be
            # dropped. The request goes on as one without a body, and the connection is closed after the answer:
            # what could come next on it is that body, held back for the 100
            del headers["Expect"]
            for framing in ("Content-Length", "Transfer-Encoding"):
                headers.pop(framing, None)
            _last_on_connection(self._request_conn)
        return self._delegate.headers_received(start_line, headers)

    def data_received(self, chunk):
        return None if self._refused else self._delegate.data_received(chunk)

    def finish(self) -> None:
        if not self._refused:
            self._delegate.finish()

    def on_connection_close(self) -> None:
        if self._state is not None:
            self._state.busy = False
        if not self._refused:  # the application's delegate never had the request's headers
            self._delegate.on_connection_close()
