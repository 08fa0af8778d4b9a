"""Cache hits answered below `tornado.web`.

Tornado's `RequestHandler` machinery (a handler object per request, its header checks, `finish`'s
bookkeeping, the routing) costs about as much CPU as Tornado's HTTP server itself: answering the same
bytes from memory, the HTTP server alone serves 1.6–1.7 × the requests a `RequestHandler` does
(`benchmarks/compare.py`, "Tornado's HTTP server alone"). So `HitShortcut` sits between the HTTP
server and the application: once a request has been read whole, a plain GET whose output is fresh
in the memory tier (`Pipeline.memory_hit`: planned, or its plan memoised, on the IOLoop) is answered
here, with the headers, metrics and access-log line `ImageHandler` gives a hit. Any other request
goes to the application unchanged, as if the shortcut were not there: anything with a query (`?tr=`,
signatures, `ik-attachment`), a body, a conditional header, another method or HTTP version, a target
that is not an image path (an admin path, or not starting with `/`: the application's routes decide;
an absolute-form target reaches here as its path already, `edge.httpserver`), no `Host`,
a URL that does not plan (answered, and counted, by the application), a disk hit or a miss.
"""

from __future__ import annotations

import logging
import time
from functools import partial

import tornado.web
from tornado import httputil

from . import accesslog
from .httpserver import EdgeHTTPServer, date_header_now, make_server
from .pipeline import ImageCall, Served
from .server import (ADMIN_HANDLERS, CONTENT_LENGTH, LARGE_BODY, Node, attachment, client_address,
                     count_image_answer, header_value, image_headers, make_app, refuses_method, send_body)

log = logging.getLogger("edge.server")

_OK = httputil.ResponseStartLine("HTTP/1.1", 200, "OK")
#: request headers that need more than the shortcut does: a body, or a conditional answer (`If-Modified-Since`
#: is not evaluated, `If-Range` only goes with a `Range`, which is ignored: docs/caching.md)
_NOT_PLAIN = ("Content-Length", "Transfer-Encoding", "If-None-Match", "If-Match", "If-Unmodified-Since")
#: the header an HTTP/1.1 request must have: without it, the application's 400 (RFC 9112 3.2)
_HOST = "Host"


def image_server(node: Node) -> EdgeHTTPServer:
    """The server of the images' port: the shortcut in front of the node's application, with `[server]`'s
    limits, and what it does to connections counted in the node's metrics."""
    return make_server(HitShortcut(make_app(node), node), node.config.server, node.config.admin_token,
                       observer=node.metrics, refuses_method=refuses_method)


class HitShortcut(httputil.HTTPServerConnectionDelegate):
    """The node's image application, with fresh memory-tier hits answered before it (see the module)."""

    def __init__(self, app: tornado.web.Application, node: Node):
        self.app = app
        self.node = node

    def start_request(self, server_conn: object, request_conn: httputil.HTTPConnection) -> httputil.HTTPMessageDelegate:
        return _Request(self, server_conn, request_conn)

    def on_close(self, server_conn: object) -> None:
        self.app.on_close(server_conn)


class _Request(httputil.HTTPMessageDelegate):
    def __init__(self, shortcut: HitShortcut, server_conn: object, connection: httputil.HTTPConnection):
        self._shortcut = shortcut
        self._server_conn = server_conn
        self._connection = connection
        self._start_line: httputil.RequestStartLine | None = None
        self._headers: httputil.HTTPHeaders | None = None
        self._started = 0.0
        #: how long the answer took to write out (`_record`)
        self._seconds = 0.0
        #: the application's delegate, once the request is handed to it
        self._app: httputil.HTTPMessageDelegate | None = None

    def headers_received(self, start_line, headers):
        path = start_line.path
        if (start_line.method != "GET" or start_line.version != "HTTP/1.1" or not path.startswith("/")
                or "?" in path or path in ADMIN_HANDLERS or any(name in headers for name in _NOT_PLAIN)
                or _HOST not in headers):
            return self._hand_over(start_line, headers)
        self._start_line, self._headers, self._started = start_line, headers, time.monotonic()
        return None

    def data_received(self, chunk):
        return self._app.data_received(chunk)  # only a request with a body gets here: handed over

    def finish(self) -> None:
        if self._app is None and not self._answered():
            self._hand_over(self._start_line, self._headers)
        if self._app is not None:
            self._app.finish()

    def on_connection_close(self) -> None:
        if self._app is not None:
            self._app.on_connection_close()

    def _hand_over(self, start_line, headers):
        self._app = self._shortcut.app.start_request(self._server_conn, self._connection)
        return self._app.headers_received(start_line, headers)

    def _answered(self) -> bool:
        """Answer the request if it is a fresh memory-tier hit; whether it was."""
        node, start_line, headers = self._shortcut.node, self._start_line, self._headers
        host = headers[_HOST]  # as `HTTPServerRequest.host` (an absolute-form target's authority: edge.httpserver)
        try:
            served = node.pipeline.memory_hit(ImageCall(host, start_line.path, None, header_value(headers, "Accept"),
                                                        headers))
        except Exception:  # a bug: the application answers (and logs what it finds) under the id logged here
            request_id = accesslog.request_id(header_value(headers, "X-Request-Id"))
            headers["X-Request-Id"] = request_id
            log.exception("the hit shortcut failed; the request goes the usual way", extra={"request_id": request_id})
            return False
        if served is None:
            return False
        output = served.output
        request_id = accesslog.request_id(header_value(headers, "X-Request-Id"))
        response = httputil.HTTPHeaders({"Date": date_header_now(), "X-Request-Id": request_id, **node.cors_headers})
        response.update(image_headers(node, served, "hit"))
        if served.request.attachment is not None:  # `fl_attachment` (`ik-attachment` is a query: handed over)
            response["Content-Disposition"] = attachment(start_line.path, output.content_type,
                                                         served.request.attachment)
        response[CONTENT_LENGTH] = str(len(output.body))
        large = len(output.body) > LARGE_BODY
        if large:  # not joined to the header block: no copy of the body (server.LARGE_BODY)
            self._connection.write_headers(_OK, response)
            send_body(self._connection, output.body, partial(self._record, served, request_id))
        else:
            self._connection.write_headers(_OK, response, output.body)
        self._connection.finish()
        self._seconds = time.monotonic() - self._started
        if not large:  # else once it is sent, as far as it was
            self._record(served, request_id, len(output.body))
        return True

    def _record(self, served: Served, request_id: str, body_bytes: int) -> None:
        """Count and log the hit as `ImageHandler` does."""
        node, headers, seconds = self._shortcut.node, self._headers, self._seconds
        count_image_answer(node.metrics, served.endpoint, 200, "hit", seconds, body_bytes)
        if node.access_log.enabled:
            node.access_log.write("GET", self._start_line.path, 200, seconds,
                                  client_address(node, self._connection.context.remote_ip, headers), headers[_HOST],
                                  header_value(headers, "User-Agent"), header_value(headers, "Referer"), request_id,
                                  None, served.endpoint, "hit", body_bytes, served.output.source.origin)
