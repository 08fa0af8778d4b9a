"""Real servers that tests run on 127.0.0.1: an HTTP origin that counts what reaches it, and the base of
the raw servers that answer whatever bytes a fuzz test chose."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socketserver
import threading
from collections import Counter
from dataclasses import dataclass, field

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

HOLD_LIMIT_SECONDS = 60


class RawServer(socketserver.ThreadingTCPServer):
    """A TCP server on 127.0.0.1 (a free port) whose `handler` writes raw bytes: answers no HTTP library would
    send."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, handler: type[socketserver.BaseRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @contextlib.contextmanager
    def serving(self):
        """Serve from a daemon thread while the block runs; then stop and close the socket."""
        threading.Thread(target=self.serve_forever, daemon=True).start()
        try:
            yield self
        finally:
            self.shutdown()
            self.server_close()


@dataclass
class Behaviour:
    """How the origin answers; tests change it between requests."""

    status: int | None = None  # answer every request with this status (and no file)
    delay: float = 0.0  # seconds before answering
    truncate_to: int | None = None  # announce the full Content-Length, send only this many bytes
    chunked: bool = False  # send files without Content-Length, in chunks (the size is known only by reading)
    hold: asyncio.Event | None = None  # answer only once this is set (keeps a fetch in flight)
    held_paths: frozenset[str] | None = None  # the paths `hold` holds (None: every path)
    #: send the headers and 64 KiB of a file (`chunked`: all but its last chunk), the rest once this is set
    stall: asyncio.Event | None = None
    set_cookie: str | None = None  # a Set-Cookie header on every answer


@dataclass
class HTTPOrigin:
    files: dict[str, bytes] = field(default_factory=dict)
    requests: Counter = field(default_factory=Counter)
    behaviour: Behaviour = field(default_factory=Behaviour)
    #: path → where it redirects (with `redirect_status`), relative or absolute
    redirects: dict[str, str] = field(default_factory=dict)
    redirect_status: int = 302
    #: the headers of every request, in order
    headers_seen: list[dict[str, str]] = field(default_factory=list)
    #: Host → the files a virtual host serves instead of `files`
    vhosts: dict[str, dict[str, bytes]] = field(default_factory=dict)
    #: requests whose client (the node) went away before the answer
    disconnects: int = 0
    url: str = ""
    _server: HTTPServer | None = None
    _release: asyncio.Event = field(default_factory=asyncio.Event)  # ends delays when the server stops

    async def start(self) -> HTTPOrigin:
        sockets = bind_sockets(0, "127.0.0.1")
        self._server = HTTPServer(tornado.web.Application([(r"/(.*)", _OriginHandler, {"origin": self})]))
        self._server.add_sockets(sockets)
        self.url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
        return self

    async def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.stop()
            await self._server.close_all_connections()


class _OriginHandler(tornado.web.RequestHandler):
    def initialize(self, origin: HTTPOrigin) -> None:
        self.origin = origin

    def on_connection_close(self) -> None:
        self.origin.disconnects += 1

    async def get(self, path: str) -> None:
        origin = self.origin
        origin.requests[path] += 1
        origin.headers_seen.append(dict(self.request.headers))
        behaviour = origin.behaviour
        if behaviour.set_cookie is not None:
            self.set_header("Set-Cookie", behaviour.set_cookie)
        if behaviour.hold is not None and (behaviour.held_paths is None or path in behaviour.held_paths):
            await asyncio.wait_for(behaviour.hold.wait(), HOLD_LIMIT_SECONDS)
        if behaviour.delay:  # the fault under test: a slow origin
            try:
                await asyncio.wait_for(origin._release.wait(), behaviour.delay)
            except TimeoutError:
                pass
        if behaviour.status is not None:
            self.set_status(behaviour.status)
            self.finish("origin says no")
            return
        if path in origin.redirects:
            self.redirect(origin.redirects[path], status=origin.redirect_status)
            return
        body = origin.vhosts.get(self.request.host, origin.files).get(path)
        if body is None:
            self.set_status(404)
            self.finish("not here")
            return
        self.set_header("Content-Type", "application/octet-stream")
        etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
        self.set_header("ETag", etag)
        if self.request.headers.get("If-None-Match") == etag:
            self.set_status(304)
            self.finish()
            return
        if behaviour.chunked:  # with `stall`: all but the last chunk, the last once it is set
            for start in range(0, len(body), 16384):
                if behaviour.stall is not None and start + 16384 >= len(body):
                    await asyncio.wait_for(behaviour.stall.wait(), HOLD_LIMIT_SECONDS)
                self.write(body[start:start + 16384])
                await self.flush()
            self.finish()
            return
        if behaviour.stall is not None:
            self.set_header("Content-Length", len(body))
            self.write(body[:65536])
            await self.flush()
            await asyncio.wait_for(behaviour.stall.wait(), HOLD_LIMIT_SECONDS)
            self.finish(body[65536:])
            return
        if behaviour.truncate_to is not None:
            self.set_header("Content-Length", len(body))
            self.write(body[: behaviour.truncate_to])
            await self.flush()
            self.request.connection.stream.close()
            return
        self.finish(body)

