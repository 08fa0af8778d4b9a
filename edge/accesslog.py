"""The access log: one JSON line per request on standard output (diagnostics go to stderr).

Lines are buffered and written in batches (at most `BATCH_LINES` lines or `FLUSH_SECONDS` late), as
nginx does with `access_log ... buffer= flush=`, and formatted without building a dict for
`json.dumps`: a log record and a write per request cost about a tenth of a cache hit. A thread writes
the batches: standard output is often a pipe or a socket (journald, a container's log driver, `| tee`),
and a reader that stalls would have held the event loop in its write, and the worker answered no one.
Fields: time, method, path, status, duration_ms, client, host, user_agent, referer, request_id,
error, and for image requests endpoint, cache, bytes, origin. The query strings of the request and of
the referer (which may carry signatures or another site's tokens) are never logged, nor the user and
password of an absolute-form target or a referer (`http://user:password@host/`: masked `****@`).

Also here, what the log says about who asked: the request id (`X-Request-Id`, kept from the front
proxy when well-formed, else made up) and the client address (`X-Forwarded-For` believed only from a
trusted proxy).
"""

from __future__ import annotations

import io
import ipaddress
import logging
import os
import queue
import re
import select
import sys
import threading
import time
from collections.abc import Callable, Sequence
from json.encoder import encode_basestring_ascii as json_string
from random import getrandbits
from typing import TextIO

BATCH_LINES = 256
FLUSH_SECONDS = 1.0
#: bytes of lines waiting for the writer thread; beyond them (standard output not read) a batch is
#: dropped, and how many lines were is logged once the writes go through again
MAX_PENDING_BYTES = 1 << 20
#: a request id taken from the proxy: printable, no spaces or quotes, at most 128 characters
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:+/=@-]{1,128}$")
#: bytes a pipe takes in one write, whole (POSIX's PIPE_BUF): the workers share standard output, and a
#: larger write may be split and interleaved with another worker's, leaving lines that are no JSON
ATOMIC_WRITE = select.PIPE_BUF
#: bytes of each field as written (escapes included), so that a whole line stays under `ATOMIC_WRITE`
#: (`test_a_line_of_the_longest_fields_is_one_atomic_write`)
FIELD_BYTES = {"method": 32, "path": 1024, "client": 64, "host": 256, "user_agent": 512, "referer": 512,
               "error": 512, "endpoint": 128, "origin": 128}
#: the user and password of an absolute URL (`http://user:pw@host/…`) or of an authority (`CONNECT user:pw@host:443`)
_USERINFO = re.compile(r"^((?:[A-Za-z][A-Za-z0-9+.-]*://)?)[^/?#@]*@")
#: X-Forwarded-For entries looked at, from the right (a forged header may be long)
MAX_FORWARDED_HOPS = 16

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
log = logging.getLogger("edge.accesslog")


def request_id(proposed: str | None) -> str:
    """The proxy's `X-Request-Id` when well-formed, else a new random one (32 hex digits, like nginx's).
    From `random`, which Python reseeds in each forked worker: an id is a label, not a secret, and
    `secrets` costs a system call per request."""
    if proposed and _REQUEST_ID.match(proposed):
        return proposed
    return getrandbits(128).to_bytes(16).hex()


def client_address(peer: str, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The client's address: the socket's peer, unless the peer is a trusted proxy; then the rightmost
    address of `X-Forwarded-For` that is not itself a trusted proxy (entries left of it are whatever
    the client wrote)."""
    if not trusted or not forwarded_for or not _in(peer, trusted):
        return peer
    client = peer
    for entry in reversed(forwarded_for.rsplit(",", MAX_FORWARDED_HOPS)[-MAX_FORWARDED_HOPS:]):
        entry = entry.strip()
        try:
            ipaddress.ip_address(entry)
        except ValueError:
            break  # garbage: the last address believed is the answer
        client = entry
        if not _in(entry, trusted):
            break
    return client


def _in(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def _without_userinfo(target: str) -> str:
    """`target` with a URL's credentials masked (a path starting with `/` has none: its `@` stays)."""
    return _USERINFO.sub(r"\1****@", target) if "@" in target else target


def _field(value: str | None, name: str) -> str:
    """`value` as a JSON string of at most `FIELD_BYTES[name]` bytes (cut short, whole escapes only), the bytes a
    client sent as UTF-8 read so (`_as_sent`). A backslash is written `\\x5c`, as nginx writes it: `\\xe9` then stands
    for a byte alone, never for the text a client sent (`caf\\xe9.jpg` typed so, another path)."""
    if value is None:
        return "null"
    if "\\" in value:
        value = value.replace("\\", "\\x5c")
    if not value.isascii():
        value = _as_sent(value)
    limit = FIELD_BYTES[name]
    written = json_string(value[:limit])
    while len(written) > limit:  # escapes of 6 or 12 bytes a character: fewer characters
        value = value[:len(value[:limit]) * limit // len(written) - 1]
        written = json_string(value)
    return written


def _as_sent(value: str) -> str:
    """A request line's or header's text as its client wrote it: Tornado reads their bytes as Latin-1 (HTTP's
    rule), and a user agent or a path sent in UTF-8 (`Mozilla/5.0 … 日本語`, `café.jpg` typed) was logged as
    mojibake (`Ã©`); a byte that is no UTF-8 is written as its escape (`caf\\xe9.jpg`, another path)."""
    try:
        return value.encode("latin-1").decode("utf-8", errors="backslashreplace")
    except UnicodeEncodeError:  # a character past Latin-1: not from the wire
        return value


class AccessLog:
    def __init__(self, enabled: bool, stream: TextIO | None = None,
                 dropped: Callable[[int], None] = lambda lines: None):
        """`dropped(lines)`: lines standard output did not take were dropped (counted in a metric: a reader gone
        for good, or a disk that stays full, writes nothing again, and so no warning of what was dropped)."""
        self.enabled = enabled
        self._stream = stream
        self._count_dropped = dropped
        self._warned = False  # of the drops since the last write that went through
        self._lines: list[str] = []
        self._pending: queue.Queue[tuple[str, int]] = queue.Queue()  # (text, lines)
        self._pending_bytes = 0
        self._pending_lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._dropped = 0  # lines, since the start

    def write(self, method: str, path: str, status: int, seconds: float, client: str, host: str,
              user_agent: str | None, referer: str | None, request_id: str, error: str | None = None,
              endpoint: str | None = None, cache: str | None = None, body_bytes: int = 0,
              origin: str | None = None) -> None:
        """One line (positional arguments: this runs for every request)."""
        if not self.enabled:
            return
        line = (f'{{"time":{time.time():.3f},"method":{_field(method, "method")},'
                f'"path":{_field(_without_userinfo(path), "path")},'
                f'"status":{status},"duration_ms":{seconds * 1000:.2f},"client":{_field(client, "client")},'
                f'"host":{_field(host, "host")},"user_agent":{_field(user_agent, "user_agent")},'
                f'"referer":{_field(_without_userinfo(referer.partition("?")[0]), "referer") if referer else "null"},'
                f'"request_id":{json_string(request_id)},"error":{_field(error, "error")}')
        if endpoint is not None:
            line += (f',"endpoint":{_field(endpoint, "endpoint")},"cache":"{cache}","bytes":{body_bytes},'
                     f'"origin":{_field(origin, "origin")}}}')
        else:
            line += "}"
        self._lines.append(line)
        if len(self._lines) >= BATCH_LINES:
            self.flush()

    def flush(self) -> None:
        """Hand the lines to the writer thread (started on the first call: after the worker's fork)."""
        if not self._lines:
            return
        lines, self._lines = self._lines, []
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_batches, name="edge-access-log", daemon=True)
            self._writer.start()
        text = "\n".join(lines) + "\n"
        with self._pending_lock:
            full = self._pending_bytes + len(text) > MAX_PENDING_BYTES
            if full:
                self._dropped += len(lines)
            else:
                self._pending_bytes += len(text)
        if full:
            self._dropping(len(lines))  # outside the lock: a warning may wait for standard error's reader
            return
        self._pending.put((text, len(lines)))

    def written(self, timeout: float) -> bool:
        """Whether every batch handed over so far was written (or dropped) within `timeout` seconds."""
        with self._pending.all_tasks_done:
            return self._pending.all_tasks_done.wait_for(lambda: not self._pending.unfinished_tasks, timeout)

    def _write_batches(self) -> None:
        reported = lost = 0  # `_dropped` is the loop's to count; `lost`, this thread's
        cut_short = False  # the last write ended within a line: a disk filled in its middle
        while True:
            text, lines = self._pending.get()
            # a line a full disk cut short is ended first: the lines after it are whole lines again, which a
            # log shipper parses (they were spliced onto it, and both lost)
            data = (b"\n" if cut_short else b"") + text.encode()
            try:
                _write_lines(self._stream or sys.stdout, data)
                cut_short = False
            except _Unwritten as failure:  # a full disk, a reader gone, a closed stream: the rest is lost
                written = data[:failure.written]
                lost_now = lines - max(0, written.count(b"\n") - cut_short)
                lost += lost_now
                self._dropping(lost_now)
                if written:
                    cut_short = not written.endswith(b"\n")
                continue
            finally:
                with self._pending_lock:
                    self._pending_bytes -= len(text)
                self._pending.task_done()
            dropped = self._dropped + lost  # read once: lines the loop drops meanwhile are told next time
            if dropped != reported:
                self._warned = False  # first: a drop from now on is said at once again
                log.warning("access log: %d line(s) dropped before these: standard output did not take them "
                            "(its reader stalled, or its disk was full)", dropped - reported)
                reported = dropped

    def _dropping(self, lines: int) -> None:
        """From either thread: `lines` dropped; the first drop since a write went through says so at once."""
        self._count_dropped(lines)
        if not self._warned:
            self._warned = True
            log.warning("access log: standard output does not take its lines (its reader stalled or is gone, or "
                        "its disk is full): they are dropped, counted in edge_access_log_dropped_lines_total")


class _Unwritten(Exception):
    """A write of lines that failed after its first `written` bytes."""

    def __init__(self, written: int):
        super().__init__(written)
        self.written = written


def _write_lines(stream: TextIO, data: bytes) -> None:
    """`data` (whole lines) written to `stream` in writes of whole lines of at most `ATOMIC_WRITE` bytes
    each, which a pipe never splits (a stream with no file descriptor: as it is); `_Unwritten` when a write
    fails."""
    start = 0
    try:
        try:
            fd = stream.fileno()
        except (AttributeError, io.UnsupportedOperation):
            stream.write(data.decode())
            stream.flush()
            return
        stream.flush()
        while start < len(data):
            end = len(data) if len(data) - start <= ATOMIC_WRITE else \
                data.rfind(b"\n", start, start + ATOMIC_WRITE) + 1
            if end <= start:  # a line longer than a pipe takes whole (none, with every field held to FIELD_BYTES)
                end = data.find(b"\n", start) + 1 or len(data)
            while start < end:
                start += os.write(fd, memoryview(data)[start:end])
    except (OSError, ValueError):
        raise _Unwritten(start) from None
