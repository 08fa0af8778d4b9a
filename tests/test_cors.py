"""CORS: every answer to an image request carries `Access-Control-Allow-Origin`, `Timing-Allow-Origin` and
`Access-Control-Expose-Headers` (`[server] cors_origin`, `*` by default), so that a page can draw a node's image
on a canvas and read it back, load it with `<img crossorigin>` or `fetch()` it and read its headers, errors
included; a preflight is answered 204."""

import asyncio
import html
import json
import re
import shutil

import pytest
import tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from edge.errors import ConfigError
from edge.testing import total
from tests.nodes import decode, local_config, write_config
from tests.test_config import load
from tests.test_status_page import CHROMIUM_FLAGS

IMAGE = "/tr:w-40/coffee.jpg"
CORS = ("Access-Control-Allow-Origin", "Timing-Allow-Origin")
PREFLIGHT = {"Origin": "https://shop.example.com", "Access-Control-Request-Method": "GET"}
EXPOSE = "Access-Control-Expose-Headers"
EXPOSED = "Content-Disposition, Date, ETag, Link, Retry-After, Vary, X-Cache, X-Edge-Error, X-Request-Id"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def cors(response) -> tuple[str | None, ...]:
    return tuple(response.headers.get(name) for name in CORS)


async def test_every_answer_of_an_image_request_allows_any_origin(node_factory, tmp_path):
    node = await node_factory(write_config(tmp_path, local_config()))
    answers = [await node.fetch(IMAGE) for _ in range(3)]
    assert [answer.headers["X-Cache"] for answer in answers] == ["MISS", "HIT", "HIT"]  # the last: edge.hits
    assert decode(answers[2]).width == 40
    etag = answers[0].headers["ETag"]
    others = {
        "not modified": await node.fetch(IMAGE, headers={"If-None-Match": etag}),
        "head": await node.fetch(IMAGE, method="HEAD"),
        "not found": await node.fetch("/tr:w-40/missing.jpg"),
        "bad transformation": await node.fetch("/tr:w-abc/coffee.jpg"),
        "method": await node.fetch(IMAGE, method="POST", body=b""),
    }
    assert {name: answer.code for name, answer in others.items()} == {
        "not modified": 304, "head": 200, "not found": 404, "bad transformation": 400, "method": 405}
    for answer in [*answers, *others.values()]:
        assert cors(answer) == ("*", "*")
        assert "Vary" not in answer.headers or "Origin" not in answer.headers["Vary"]  # the same for every page
    # the node's own paths are not for pages
    assert cors(await node.fetch("/_edge/health")) == (None, None)


async def test_a_configured_origin_is_sent_lower_cased(node_factory, tmp_path):
    config = local_config(before='[server]\ncors_origin = "https://Shop.Example.com:8443"\n')
    node = await node_factory(write_config(tmp_path, config))
    answers = [await node.fetch(IMAGE) for _ in range(3)] + [await node.fetch("/missing.jpg")]
    assert [answer.code for answer in answers] == [200, 200, 200, 404]
    assert answers[2].headers["X-Cache"] == "HIT"
    assert {cors(answer) for answer in answers} == {("https://shop.example.com:8443",) * 2}


async def test_an_empty_origin_sends_no_cors_headers(node_factory, tmp_path):
    node = await node_factory(write_config(tmp_path, local_config(before='[server]\ncors_origin = ""\n')))
    answers = [await node.fetch(IMAGE) for _ in range(3)] + [await node.fetch("/missing.jpg")]
    assert [(answer.code, cors(answer)) for answer in answers] == [
        (200, (None, None)), (200, (None, None)), (200, (None, None)), (404, (None, None))]
    preflight = await node.fetch(IMAGE, method="OPTIONS", headers=PREFLIGHT)
    assert (preflight.code, preflight.headers["Allow"]) == (405, "GET, HEAD")  # as without CORS


@pytest.mark.parametrize("path", [IMAGE, "/tr:w-40/missing.jpg", "/shop/any/thing"])
async def test_a_preflight_is_answered_with_the_methods_and_the_headers_the_node_reads(node_factory, tmp_path, path):
    node = await node_factory(write_config(tmp_path, local_config()))
    requested = "accept, Sec-CH-Width, authorization,x-request-id, cookie, dpr"
    answer = await node.fetch(path, method="OPTIONS",
                              headers={**PREFLIGHT, "Access-Control-Request-Headers": requested})
    assert (answer.code, answer.body) == (204, b"")
    assert {name: answer.headers.get(name) for name in (
        "Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers",
        "Access-Control-Max-Age")} == {
        "Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "GET, HEAD",
        "Access-Control-Allow-Headers": "Accept, Sec-CH-Width, X-Request-Id, DPR", "Access-Control-Max-Age": "86400"}
    bare = await node.fetch(path, method="OPTIONS", headers=PREFLIGHT | {"Access-Control-Request-Headers": "cookie"})
    assert (bare.code, bare.headers.get("Access-Control-Allow-Headers")) == (204, None)
    assert node.node.inflight == 0
    # counted as answered, but no image's latency (their instant 204s were misses: SRE probe)
    exposition = node.node.metrics.exposition().decode()
    assert total(exposition, "edge_http_requests_total", status="204") == 2
    assert total(exposition, "edge_http_request_duration_seconds_count") == 0


async def test_other_options_requests_are_answered_as_before(node_factory, tmp_path):
    node = await node_factory(write_config(tmp_path, local_config()))
    not_preflight = await node.fetch(IMAGE, method="OPTIONS", headers={"Origin": "https://shop.example.com"})
    assert (not_preflight.code, not_preflight.headers["Allow"], not_preflight.body) == (
        405, "GET, HEAD", b"Method Not Allowed\n")
    assert cors(not_preflight) == ("*", "*")  # an error answer of an image request
    admin = await node.fetch("/_edge/health", method="OPTIONS", headers=PREFLIGHT)
    assert (admin.code, admin.headers["Allow"], cors(admin)) == (405, "GET, HEAD", (None, None))


async def test_a_page_may_read_the_headers_the_node_sends_beyond_the_safelisted_ones(node_factory, tmp_path):
    node = await node_factory(write_config(tmp_path, local_config()))
    answers = {
        "miss": await node.fetch(IMAGE),
        "hit": await node.fetch(IMAGE),
        "attachment": await node.fetch(IMAGE + "?ik-attachment=true"),
        "not found": await node.fetch("/tr:w-40/missing.jpg"),
        "bad transformation": await node.fetch("/tr:w-abc/coffee.jpg"),
    }
    assert {name: answer.code for name, answer in answers.items()} == {
        "miss": 200, "hit": 200, "attachment": 200, "not found": 404, "bad transformation": 400}
    assert answers["hit"].headers["X-Cache"] == "HIT"  # edge.hits
    etag = answers["hit"].headers["ETag"]
    answers["not modified"] = await node.fetch(IMAGE, headers={"If-None-Match": etag})
    assert answers["not modified"].code == 304
    assert {name: answer.headers.get(EXPOSE) for name, answer in answers.items()} == dict.fromkeys(answers, EXPOSED)
    assert (await node.fetch("/_edge/health")).headers.get(EXPOSE) is None  # the node's own paths are not for pages


async def test_without_cors_nothing_is_exposed(node_factory, tmp_path):
    node = await node_factory(write_config(tmp_path, local_config(before='[server]\ncors_origin = ""\n')))
    answers = [await node.fetch(IMAGE) for _ in range(2)] + [await node.fetch("/missing.jpg")]
    assert [(answer.code, answer.headers.get(EXPOSE)) for answer in answers] == [(200, None), (200, None), (404, None)]


#: a page that `fetch()`es an image and a missing one from the node (another origin: another port) and
#: writes what it could read of the answers into the document
PAGE = """<!doctype html><title>cors</title><pre id="out">waiting</pre><script>
async function read(url) {
  try {
    const answer = await fetch(url);
    const body = await answer.arrayBuffer();
    return {status: answer.status, bytes: body.byteLength, x_cache: answer.headers.get("X-Cache"),
            etag: answer.headers.get("ETag"), error: answer.headers.get("X-Edge-Error"),
            request_id: answer.headers.get("X-Request-Id"), type: answer.headers.get("Content-Type")};
  } catch (error) {
    return {failed: String(error)};
  }
}
(async () => {
  const answers = [await read("NODE/tr:w-40/coffee.jpg"), await read("NODE/tr:w-40/missing.jpg")];
  document.getElementById("out").textContent = JSON.stringify(answers);
})();
</script>"""


class _PageHandler(tornado.web.RequestHandler):
    def initialize(self, page: str) -> None:
        self.page = page

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(self.page)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian: apt-get install chromium)")
async def test_a_page_of_another_origin_reads_x_cache_in_chromium(node_factory, tmp_path):
    node = await node_factory(write_config(tmp_path, local_config()))
    warm = [await node.fetch("/tr:w-40/coffee.jpg") for _ in range(2)]
    assert [answer.headers["X-Cache"] for answer in warm] == ["MISS", "HIT"]  # the page's is a hit of edge.hits
    sockets = bind_sockets(0, "127.0.0.1")
    pages = HTTPServer(tornado.web.Application([(r"/", _PageHandler, {"page": PAGE.replace("NODE", node.url)})]))
    pages.add_sockets(sockets)
    browser = await asyncio.create_subprocess_exec(
        CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
        "--dump-dom", f"http://127.0.0.1:{sockets[0].getsockname()[1]}/",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=tmp_path)
    try:
        dom, errors = await asyncio.wait_for(browser.communicate(), 120)
    finally:
        if browser.returncode is None:
            browser.kill()
            await browser.wait()
        pages.stop()
        await pages.close_all_connections()
    assert browser.returncode == 0, errors.decode()[-2000:]
    shown = re.search(r'<pre id="out">(.*?)</pre>', dom.decode(), re.DOTALL)
    assert shown is not None, dom.decode()[-2000:]
    image, missing = json.loads(html.unescape(shown[1]))
    assert image == {"status": 200, "bytes": len(warm[1].body), "x_cache": "HIT", "etag": warm[1].headers["ETag"],
                     "error": None, "request_id": image["request_id"], "type": "image/jpeg"}
    assert re.fullmatch(r"[0-9a-f]{32}", image["request_id"] or ""), image
    assert (missing["status"], missing["error"], missing["type"]) == (404, "not_found", "text/plain; charset=utf-8")


@pytest.mark.parametrize("value", ["https://shop.example.com/", "shop.example.com", "https://shop.example.com/img",
                                   "https://a.example.com:99999", "https://*.example.com", "null",
                                   # the ports just past the bounds (a mutation taking 0 survived)
                                   "https://a.example.com:0", "https://a.example.com:65536",
                                   "https://a.example.com, https://b.example.com"])
def test_cors_origin_must_be_star_or_one_origin(tmp_path, value):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, local_config(before=f'[server]\ncors_origin = "{value}"\n'))
    assert str(caught.value) == (
        f'{tmp_path / "edge.toml"}: [server] cors_origin: expected "*", one origin such as "https://shop.example.com" '
        f'(scheme://host[:port], no path) or "" (no CORS headers), got {value!r}')


@pytest.mark.parametrize("value, parsed", [("*", "*"), ("", ""), ("HTTP://[::1]:8080", "http://[::1]:8080"),
                                           ("https://Shop.Example.com:443", "https://shop.example.com"),
                                           ("http://a:00080", "http://a"), ("http://a:0443", "http://a:443"),
                                           ("https://shop.example.com", "https://shop.example.com")])
def test_cors_origin_values(tmp_path, value, parsed):
    assert load(tmp_path, local_config(before=f'[server]\ncors_origin = "{value}"\n')).server.cors_origin == parsed
