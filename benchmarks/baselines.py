"""The baselines benchmarks compare the node with, free of the node's own modules (a baseline's
process should not carry them): a bare pyvips save, a bare Tornado server."""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING

import pyvips

if TYPE_CHECKING:
    from edge.config import Defaults


def bare_save(image: pyvips.Image, fmt: str, options: SimpleNamespace) -> bytes:
    """What a hand-written service would call, with the node's encoder options (`encoder_options`: `quality`,
    `avif_quality`, `avif_effort`)."""
    if fmt == "jpg":
        return image.jpegsave_buffer(Q=options.quality, keep="none", optimize_coding=True)
    if fmt == "webp":
        return image.webpsave_buffer(Q=options.quality, keep="none")
    return image.heifsave_buffer(Q=options.avif_quality, keep="none", compression="av1", effort=options.avif_effort)


def encoder_options(defaults: Defaults) -> SimpleNamespace:
    """The options the node encodes with under `defaults`, for `bare_save` (AVIF's quality is the node's mapping of
    `quality`: `edge.transform.encode.avif_quality`)."""
    from edge.transform.encode import avif_quality  # in the caller's process: the bare service takes the values
    return SimpleNamespace(quality=defaults.quality, avif_quality=avif_quality(defaults.quality),
                           avif_effort=defaults.avif_effort)


#: `python -c BARE_TORNADO_SERVER BODY_FILE PROCESSES [LAYER [KEYS PATH_FORMAT]]`: bare Tornado answering
#: BODY_FILE's bytes from memory on 127.0.0.1, in PROCESSES processes (one SO_REUSEPORT socket each; no
#: fork for 1); prints its port once per process when that process listens. LAYER `handler` (the
#: default): a `tornado.web.RequestHandler`, as the node's handlers are; `connection`: an
#: `HTTPMessageDelegate` that writes the response itself, below `tornado.web` (Tornado's HTTP server and
#: nothing else). With KEYS, it holds that many copies of the bytes, each its own allocation, in a dict by
#: path (`PATH_FORMAT.format(n)`), as the node's memory tier holds a long tail of outputs; other paths get
#: the first copy
BARE_TORNADO_SERVER = r"""
import asyncio, os, socket, sys, time
import tornado.process, tornado.web
from tornado import httputil
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
body = open(sys.argv[1], "rb").read()
layer = sys.argv[3] if len(sys.argv) > 3 else "handler"
bodies = {sys.argv[5].format(n): bytes(bytearray(body)) for n in range(int(sys.argv[4]))} if len(sys.argv) > 5 else {}
# a bound socket that never listens keeps the port ours; each process listens on its own socket
reserved = socket.socket()
reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
reserved.bind(("127.0.0.1", 0))
port = reserved.getsockname()[1]
if int(sys.argv[2]) > 1:
    tornado.process.fork_processes(int(sys.argv[2]), max_restarts=0)
class Bare(tornado.web.RequestHandler):
    def compute_etag(self):
        return None
    def get(self):
        self.set_header("Content-Type", "image/jpeg")
        self.finish(body)
class Keyed(Bare):
    def get(self):
        self.set_header("Content-Type", "image/jpeg")
        self.finish(bodies.get(self.request.path, body))
class Answer(httputil.HTTPMessageDelegate):
    def __init__(self, connection):
        self.connection = connection
    def finish(self):  # the request read whole (answering before would close the connection)
        self.connection.write_headers(httputil.ResponseStartLine("HTTP/1.1", 200, "OK"), httputil.HTTPHeaders(
            {"Content-Type": "image/jpeg", "Content-Length": str(len(body)), "Date": httputil.format_timestamp(time.time())}), body)
        self.connection.finish()
class Connections(httputil.HTTPServerConnectionDelegate):
    def start_request(self, server_conn, request_conn):
        return Answer(request_conn)
async def main():
    handler = Keyed if bodies else Bare
    server = HTTPServer(Connections() if layer == "connection" else tornado.web.Application([(r"/.*", handler)]))
    server.add_sockets(bind_sockets(port, "127.0.0.1", reuse_port=True))
    os.write(1, f"{port}\n".encode())  # one write: the processes share the pipe
    await asyncio.Event().wait()
asyncio.run(main())
"""


#: `python -c BARE_SERVICE_SERVER FOLDER PROCESSES THREADS QUALITY AVIF_QUALITY AVIF_EFFORT` (in the repository's
#: folder): the least a Tornado image service can do for a miss, as one would write it by hand.
#: `GET /<fmt>/<width>/<name>` reads FOLDER/name and renders it in one hand-off to a pool of THREADS
#: threads: libvips' JPEG shrink-on-load at the largest factor the width allows (as the node does), a
#: resize, `bare_save` (the node's encoder options); in PROCESSES processes (one SO_REUSEPORT socket
#: each); no cache, no metrics, no log. Prints its port once per process.
BARE_SERVICE_SERVER = r"""
import asyncio, os, socket, sys, types
from concurrent.futures import ThreadPoolExecutor
import pyvips, tornado.process, tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from benchmarks.baselines import bare_save
folder, processes, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
options = types.SimpleNamespace(quality=int(sys.argv[4]), avif_quality=int(sys.argv[5]), avif_effort=int(sys.argv[6]))
pyvips.cache_set_max(0)
pyvips.concurrency_set(1)
reserved = socket.socket()
reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
reserved.bind(("127.0.0.1", 0))
port = reserved.getsockname()[1]
if processes > 1:
    tornado.process.fork_processes(processes, max_restarts=0)
pool = ThreadPoolExecutor(threads)
def render(name, fmt, width):
    with open(os.path.join(folder, name), "rb") as file:
        body = file.read()
    full = pyvips.Image.new_from_buffer(body, "").width
    shrink = max(s for s in (1, 2, 4, 8) if full // s >= width)
    image = pyvips.Image.new_from_buffer(body, "", shrink=shrink)
    return bare_save(image.resize(width / image.width), fmt, options)
class Render(tornado.web.RequestHandler):
    def compute_etag(self):
        return None
    async def get(self, fmt, width, name):
        body = await asyncio.get_running_loop().run_in_executor(pool, render, name, fmt, int(width))
        self.set_header("Content-Type", "image/" + {"jpg": "jpeg"}.get(fmt, fmt))
        self.finish(body)
async def main():
    server = HTTPServer(tornado.web.Application([(r"/(jpg|webp|avif)/(\d+)/(.+)", Render)]))
    server.add_sockets(bind_sockets(port, "127.0.0.1", reuse_port=True))
    os.write(1, f"{port}\n".encode())
    await asyncio.Event().wait()
asyncio.run(main())
"""
