"""Running real nodes for tests: in-process on a real socket, or as `edge serve` processes (`NodeProcess`,
from `edge.testing`, which plugin authors use too)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import diskcache
import pyvips
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from edge.config import Config, load_config
from edge.fetching import fetch_budget
from edge.hits import image_server
from edge.pluginmanager import load_plugins
from edge.server import Node
from edge.testing import START_TIMEOUT, NodeProcess, write_config  # noqa: F401 - the tests' names for them

SAMPLES = Path(__file__).resolve().parent.parent / "edge" / "samples"
#: for tests of what reaches an origin on every output miss: no originals tier, no negative cache
EVERY_MISS_TO_ORIGIN = '[cache]\ndir = "cache"\noriginal_size = 0\nnot_found_ttl = "0s"\n'


def local_config(root: Path = SAMPLES, before: str = "", after: str = "") -> str:
    """Config text for one `local` origin over `root` on the default endpoint, with `before` and
    `after` (more tables) around it."""
    return _one_origin("samples", f'type = "local"\nroot = "{root}"', before, after)


def web_config(origin_url: str, before: str = "", after: str = "", origin: str = "") -> str:
    """The same for one `web` origin at `origin_url` (a `tests.servers.HTTPOrigin`), with `origin` (more
    keys of its table)."""
    return _one_origin("web", f'type = "web"\nbase_url = "{origin_url}"\n{origin}', before, after)


def _one_origin(name: str, table: str, before: str, after: str) -> str:
    return f"""{before}
[[origins]]
name = "{name}"
{table}

[[endpoints]]
id = ""
origins = ["{name}"]
{after}"""


@dataclass
class RunningNode:
    """A node serving on 127.0.0.1 in this test's event loop."""

    url: str
    node: Node
    server: HTTPServer
    client: AsyncHTTPClient = field(default_factory=AsyncHTTPClient)
    stopped: bool = False

    @property
    def config(self) -> Config:
        return self.node.config

    async def fetch(self, path: str, *, method: str = "GET", headers: dict[str, str] | None = None,
                    body: bytes | None = None, timeout: float = 30) -> HTTPResponse:
        """The response, once the node stored what it answered (it stores after responding): what a
        test then finds in the cache is what the request left there."""
        response = await self.client.fetch(self.url + path, method=method, headers=headers, body=body,
                                           raise_error=False, request_timeout=timeout,
                                           allow_nonstandard_methods=True)
        await self.node.settle()
        return response

    async def stop(self) -> None:
        """Stop serving and close the node (a second call does nothing: a test may stop a node early)."""
        if self.stopped:
            return
        self.stopped = True
        self.server.stop()
        await self.server.close_all_connections()
        await self.node.stop()


async def start_node(config_path: Path | None, *plugins: object, sockets: list | None = None) -> RunningNode:
    """A node on `sockets` (bound beforehand when its config must know its own URL), or a free port."""
    config = load_config(config_path, load_plugins(*plugins))
    fetch_budget.configure(config.server.fetch_memory, config.server.fetch_memory_wait)  # as a worker does
    node = Node(config)
    await node.start()
    sockets = sockets or bind_sockets(0, "127.0.0.1")
    server = image_server(node)
    server.add_sockets(sockets)
    return RunningNode(f"http://127.0.0.1:{sockets[0].getsockname()[1]}", node, server)


async def exchange(url: str, data: bytes, timeout: float = 10) -> bytes:
    """Send raw bytes to a node (a request a client library would normalise), return everything it
    answers until it closes the connection (bounded by `timeout`)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


async def until(condition, what: str, timeout: float = START_TIMEOUT) -> None:
    """Poll an async condition until it holds; fail after `timeout` seconds (a bounded wait for what a
    test cannot be told directly, such as a request having reached a server)."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def polled(condition, what: str, timeout: float = 10) -> None:
    """`until` for a test that is not a coroutine: poll a plain condition (a process of the node's starting or
    ending, a count another worker writes); fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def as_predicate(condition):
    """A plain condition as `until` wants it."""
    async def holds() -> bool:
        return condition()
    return holds


async def refused(*urls: str) -> bool:
    """Whether a new connection to each of `urls` is refused (a listening socket left, even with no process
    accepting on it, completes the handshake instead)."""
    for url in urls:
        address = urlsplit(url)
        try:
            # not `wait_for`: on Python 3.11 it drops a connection made as its timeout fires, unclosed (a
            # ResourceWarning in whichever test the collector next runs in; CI once)
            async with asyncio.timeout(0.25):
                _, writer = await asyncio.open_connection(address.hostname, address.port)
        except ConnectionRefusedError:
            continue
        except ConnectionResetError:  # accepted by a listening socket as it closed: ask again
            return False
        except TimeoutError:  # a SYN lost as the socket closed (the kernel would resend it in 1 s): ask again
            return False
        writer.close()
        return False
    return True


async def until_stored(cache_dir: Path, entries: int, tier: str = "outputs") -> None:
    """Wait (bounded) until the tier `tier` (its folder's name) under a node's `cache_dir` holds `entries`
    entries. A node stores after answering: a request for the same URL that reaches another worker
    before the store lands waits for it and is answered as a miss, so a test that expects a hit asks
    again only once this holds."""
    with diskcache.Cache(str(cache_dir / tier)) as cache:
        async def stored():
            return len(cache) >= entries
        await until(stored, f"{entries} entries stored in {tier}")


def decode(response: HTTPResponse, *, all_frames: bool = False) -> pyvips.Image:
    """The response body as an image (the first frame, or every frame stacked); fails the test if it
    is not one."""
    return pyvips.Image.new_from_buffer(response.body, "", **({"n": -1} if all_frames else {}))


def loader(response: HTTPResponse) -> str:
    return decode(response).get("vips-loader").removesuffix("_buffer")


def install_plugin(site: Path, name: str, module: str) -> None:
    """Plugin `edge-NAME-origin` 2.0.0 in `site` as pip installs it: its module, and a `.dist-info` with the
    entry point (a node given `PYTHONPATH=site` loads it; what is under test is the node, not pip)."""
    (site / f"edge_{name}_origin").mkdir(parents=True)
    (site / f"edge_{name}_origin" / "__init__.py").write_text(module)
    info = site / f"edge_{name}_origin-2.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: edge-{name}-origin\nVersion: 2.0.0\n")
    (info / "entry_points.txt").write_text(f"[edge.plugins]\n{name} = edge_{name}_origin\n")


#: origin types whose behaviour hangs on their `marker` file (`install_plugin(site, "marked", MARKED_ORIGINS)`):
#: `stuck` blocks its worker's loop, `checking` checks in `open()` that its storage (the marker's folder) is there,
#: `swallowing` fetches for ever, whatever cancels it, `slow_config`'s `from_config` waits while the marker is there
#: (writing `reading` beside it as it starts waiting), `crashing`'s `open()` crashes its worker (SIGSEGV, as native
#: code would) while the marker is there, and its fetch of `boom.jpg` always
MARKED_ORIGINS = """
import asyncio
import os
import signal
import time
from pathlib import Path

from edge.plugin import Origin, Original, OriginNotFound, hookimpl

EDGE_PLUGIN_API = "1.3"


class MarkedOrigin(Origin):
    @classmethod
    def from_config(cls, settings, table):
        origin = cls(settings)
        origin.marker = Path(table.str("marker"))
        table.finish()
        return origin


class StuckOrigin(MarkedOrigin):
    type_name = "stuck"

    async def open(self):
        await asyncio.sleep(1.5)  # slow, its loop alive: never killed for it
        if not self.marker.exists():  # the first worker only: a synchronous client waiting on a silent store
            self.marker.touch()
            time.sleep(600)

    async def fetch(self, request):
        if request.path == "blocks.jpg":  # a synchronous client in a coroutine
            time.sleep(600)
        raise OriginNotFound(request.path)


class CheckingOrigin(MarkedOrigin):
    type_name = "checking"

    async def open(self):
        if not self.marker.exists():
            raise ConnectionError(f"{self.marker.parent} is offline")

    async def fetch(self, request):
        try:
            return Original((self.marker.parent / request.path).read_bytes())
        except FileNotFoundError:
            raise OriginNotFound(request.path) from None


class CrashingOrigin(MarkedOrigin):
    type_name = "crashing"

    async def open(self):
        if self.marker.exists():
            os.kill(os.getpid(), signal.SIGSEGV)

    async def fetch(self, request):
        if request.path == "boom.jpg":
            os.kill(os.getpid(), signal.SIGSEGV)
        raise OriginNotFound(request.path)


class SwallowingOrigin(MarkedOrigin):
    type_name = "swallowing"

    async def fetch(self, request):  # goes on however often it is cancelled
        while True:
            try:
                await asyncio.sleep(600)
            except asyncio.CancelledError:
                pass


class SlowConfigOrigin(MarkedOrigin):
    type_name = "slow_config"

    @classmethod
    def from_config(cls, settings, table):
        origin = super().from_config(settings, table)
        if origin.marker.exists():  # a credential file on a hung mount
            (origin.marker.parent / "reading").touch()
            for _ in range(6000):
                if not origin.marker.exists():
                    break
                time.sleep(0.1)
        return origin

    async def fetch(self, request):
        raise OriginNotFound(request.path)


@hookimpl
def edge_origin_types():
    return [StuckOrigin, CheckingOrigin, CrashingOrigin, SwallowingOrigin, SlowConfigOrigin]
"""
