"""Cache hits answered below tornado.web (edge/hits.py): the same answer, metrics and access-log line
as the handler gives a hit, and every request the shortcut does not take answered as before."""

import asyncio
import json
import time
from email.utils import parsedate_to_datetime

import pytest
import pyvips
from tornado.netutil import bind_sockets

from edge.hits import HitShortcut
from edge.httpserver import make_server
from edge.server import make_app
from tests.photos import marker_corner, photos  # noqa: F401 - photos is a fixture
from tests.nodes import decode, local_config, write_config
from tests.scrape import scrape_when, total

PATH = "/tr:w-300/photo.jpg"
TOKEN = "shortcut-token-4b7e0c19d2a85f36"
# headers every answer makes afresh
PER_REQUEST = {"Date", "X-Request-Id"}


@pytest.fixture
async def node(node_factory, tmp_path, photos):  # noqa: F811 - the fixture
    """A node over the 12 MP photos (`photo.jpg`, `photo.png`)."""
    return await node_factory(write_config(tmp_path, local_config(photos.folder,
                                                                  before=f'[admin]\ntoken = "{TOKEN}"\n')))


async def fresh_in_memory(node, path=PATH):
    """The path rendered, stored and read back once: from now on a fresh hit in the memory tier."""
    assert (await node.fetch(path)).headers["X-Cache"] == "MISS"
    assert (await node.fetch(path)).headers["X-Cache"] == "HIT"


def lasting(response) -> dict[str, str]:
    return {name: value for name, value in response.headers.get_all() if name not in PER_REQUEST}


@pytest.mark.parametrize("path, loader", [(PATH, "jpegload_buffer"), ("/tr:w-300/photo.png", "pngload_buffer")])
async def test_a_hit_is_the_answer_the_handler_gives(node, path, loader):
    await fresh_in_memory(node, path)
    shortcut = await node.fetch(path)
    handler = await node.fetch(path + "?v=2")  # a query: the application answers
    assert shortcut.code == handler.code == 200
    assert lasting(shortcut) == lasting(handler)
    assert shortcut.headers["X-Cache"] == "HIT" and shortcut.body == handler.body
    assert shortcut.headers["X-Content-Type-Options"] == "nosniff"  # an image is never sniffed as a page
    assert shortcut.headers["Content-Length"] == str(len(shortcut.body))
    image = pyvips.Image.new_from_buffer(shortcut.body, "")
    assert (image.width, image.height, image.get("vips-loader")) == (300, 200, loader)
    assert marker_corner(image) == "top_left"  # the photo's red marker, where it was
    assert shortcut.headers["X-Request-Id"] != handler.headers["X-Request-Id"]
    # made afresh, but made: an origin server's answer is dated (RFC 9110 6.6.1), a cache ages it from that date
    assert abs(parsedate_to_datetime(shortcut.headers["Date"]).timestamp() - time.time()) < 60


async def test_its_hits_are_counted_and_logged_as_the_handlers_are(node, capsys):
    await fresh_in_memory(node)
    node.node.access_log.flush()
    assert node.node.access_log.written(10)
    capsys.readouterr()
    answers = [await node.fetch(PATH, headers={"X-Request-Id": f"hit-{n}", "User-Agent": "test/1",
                                               "Referer": "https://shop.example/p?s=secret"})
               for n in range(3)]
    exposition = await scrape_when(node.url, "edge_http_requests_total", 5, endpoint="default", status="200")
    assert total(exposition, "edge_cache_requests_total", tier="output", result="hit") == 4  # 1 from disk, 3 here
    assert total(exposition, "edge_response_bytes_total", endpoint="default") == 5 * len(answers[0].body)
    assert total(exposition, "edge_http_request_duration_seconds_count", endpoint="default", cache="hit") == 4
    node.node.access_log.flush()
    assert node.node.access_log.written(10)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["request_id"], line["path"], line["status"], line["cache"], line["bytes"]) for line in lines] == [
        (f"hit-{n}", PATH, 200, "hit", len(answers[n].body)) for n in range(3)]
    assert all(line["method"] == "GET" and line["endpoint"] == "default" and line["origin"] == "samples"
               and line["client"] == "127.0.0.1" and line["user_agent"] == "test/1"
               and line["referer"] == "https://shop.example/p" and line["duration_ms"] >= 0 for line in lines)
    assert [answer.headers["X-Request-Id"] for answer in answers] == ["hit-0", "hit-1", "hit-2"]


async def test_a_failing_shortcut_is_logged_under_the_id_of_the_answer_the_application_gives(node, caplog):
    """A bug in the shortcut is logged, and the request answered the usual way: under one request id, else the
    line cannot be matched to the answer or its access-log line."""
    await fresh_in_memory(node)
    memory_hit = node.node.pipeline.memory_hit

    def failing(call):
        node.node.pipeline.memory_hit = memory_hit
        raise RuntimeError("a bug")
    node.node.pipeline.memory_hit = failing
    answer = await node.fetch(PATH)
    assert answer.code == 200 and answer.headers["X-Cache"] == "HIT" and decode(answer).width == 300
    [failed] = [record for record in caplog.records if record.getMessage().startswith("the hit shortcut failed")]
    assert failed.exc_info[0] is RuntimeError and failed.request_id == answer.headers["X-Request-Id"]


@pytest.mark.parametrize("method, headers, body, code, has_body", [
    ("HEAD", {}, None, 200, False),
    ("GET", {"If-None-Match": "the output's ETag"}, None, 304, False),
    ("GET", {"Content-Type": "text/plain"}, b"hello", 200, True),  # a body: the application reads it
])
async def test_requests_it_does_not_take_are_answered_as_before(node, method, headers, body, code, has_body):
    await fresh_in_memory(node)
    reference = await node.fetch(PATH)
    if "If-None-Match" in headers:
        headers = {"If-None-Match": reference.headers["ETag"]}
    answer = await node.fetch(PATH, method=method, headers=headers, body=body)
    assert answer.code == code and answer.headers["X-Cache"] == "HIT"
    assert answer.body == (reference.body if has_body else b"")
    if code == 200:
        assert answer.headers["Content-Length"] == str(len(reference.body))


async def test_pipelined_requests_on_one_connection_are_answered_in_order(node):
    await fresh_in_memory(node)
    reference = await node.fetch(PATH)
    missing = "/tr:w-300/nowhere.jpg"
    host, port = node.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        request = f"GET {{}} HTTP/1.1\r\nHost: {host}\r\n\r\n"
        writer.write((request.format(PATH) + request.format(missing) + request.format(PATH)).encode())
        await writer.drain()
        answers = [await asyncio.wait_for(read_response(reader), 10) for _ in range(3)]
    finally:
        writer.close()
    assert [(status, headers.get("x-cache")) for status, headers, _ in answers] == [
        (200, "HIT"), (404, None), (200, "HIT")]
    assert answers[0][2] == answers[2][2] == reference.body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in head[1:] if line)}
    return int(head[0].split()[1]), headers, await reader.readexactly(int(headers["content-length"]))


async def test_a_purged_output_is_not_answered_from_memory(node):
    await fresh_in_memory(node)
    purged = await node.fetch("/_edge/purge", method="POST", headers={"Authorization": f"Bearer {TOKEN}"},
                              body=json.dumps({"url": PATH}).encode())
    assert purged.code == 200
    assert (await node.fetch(PATH)).headers["X-Cache"] == "MISS"


class CountingApp:
    """The node's application, counting the requests handed to it."""

    def __init__(self, app):
        self.app, self.handed = app, 0

    def start_request(self, server_conn, request_conn):
        self.handed += 1
        return self.app.start_request(server_conn, request_conn)

    def on_close(self, server_conn):
        self.app.on_close(server_conn)


async def test_fresh_memory_hits_never_reach_the_application(node):
    await fresh_in_memory(node)
    app = CountingApp(make_app(node.node))
    server = make_server(HitShortcut(app, node.node), node.config.server)
    sockets = bind_sockets(0, "127.0.0.1")
    server.add_sockets(sockets)
    url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    try:
        hits = [await node.client.fetch(url + PATH) for _ in range(3)]  # a new Host (this port): planned here
        assert app.handed == 0 and all(hit.headers["X-Cache"] == "HIT" for hit in hits)
        others = {PATH + "?v=2": 200, "/tr:w-301/photo.jpg": 200, "/_edge/health": 200, "/tr:w-0/photo.jpg": 400}
        answers = {path: (await node.client.fetch(url + path, raise_error=False)).code for path in others}
        assert answers == others and app.handed == 4
    finally:
        server.stop()
        await server.close_all_connections()


@pytest.mark.parametrize("target, answer", [(PATH.removeprefix("/"), (400, None)),
                                            ("http://{host}" + PATH, (200, "HIT"))])
async def test_a_target_that_is_not_a_path_is_not_the_image_of_that_path(node, target, answer):
    """A target without the leading `/` (which the router alone would read as the image's path) is
    no image's: the application's 400. One in absolute form is the path it names (RFC 9112 3.2.2:
    `edge.httpserver` makes it the origin form before the shortcut sees it): a hit."""
    await fresh_in_memory(node)
    host = node.url.removeprefix("http://")
    reader, writer = await asyncio.open_connection(*host.split(":"))
    try:
        writer.write(f"GET {target.format(host=host)} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        await writer.drain()
        status, headers, _ = await asyncio.wait_for(read_response(reader), 10)
    finally:
        writer.close()
    assert (status, headers.get("x-cache")) == answer
