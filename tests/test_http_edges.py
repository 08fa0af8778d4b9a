"""HTTP at its edges, over real sockets: bodies that break a parser, input echoed into an error, the
methods a route takes, request targets in absolute form or no path at all, `Accept` weights and client
hints at their extremes, a repeated or fully qualified `Host`, `HEAD` on the node's own paths. Every
answer is the node's own: a status, one printable `text/plain` line, never sniffed."""

import asyncio
import json
import tracemalloc

import pytest
import pyvips
from tornado.netutil import bind_sockets

from edge.httpserver import make_server
from edge.server import make_metrics_app
from tests import imagecorpus
from tests.nodes import decode, exchange as raw_exchange, local_config, until, write_config
from tests.scrape import total
from tests.test_server_limits import early_answer, undated

WAIT = 10  # seconds any single answer may take here
TOKEN = "edge-token-3b9d7f01c6a24e58"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ADMIN = f'[admin]\ntoken = "{TOKEN}"\n'
JSON_EXPECTED = 'expected a JSON body: {"url": "..."} or {"prefix": "..."}\n'


class Answer:
    """A raw HTTP/1.1 answer: status, headers (the last of each name, lower-cased), body."""

    def __init__(self, raw: bytes):
        head, separator, self.body = raw.partition(b"\r\n\r\n")
        assert separator, raw[:200]
        status_line, *lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split(" ", 2)[1])
        self.header_lines = lines
        self.headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()

    def text(self) -> str:
        return self.body.decode("utf-8")


async def exchange(url: str, request: bytes, timeout: float = WAIT) -> Answer:
    """Send one raw request (which asks for `Connection: close`) and read the answer to the end."""
    return Answer(await raw_exchange(url, request, timeout))


def raw_get(target: str, host: str = "a", method: str = "GET", extra: str = "") -> bytes:
    return f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n".encode("latin-1")


def port_of(node) -> int:
    return int(node.url.rsplit(":", 1)[1])


def assert_one_plain_line(status: int, headers, body: bytes, expected_status: int, expected: str) -> None:
    """The node's error answer: the status, `text/plain`, and the body exactly `expected` and a newline,
    a single line of printable characters."""
    text = body.decode("utf-8")
    assert (status, text) == (expected_status, expected + "\n")
    assert text[:-1].isprintable()
    assert headers["Content-Type"] == "text/plain; charset=utf-8"


# -- 1. a body that breaks the JSON parser ------------------------------------------------------------

@pytest.mark.parametrize("body", [
    b"[" * 100_000,  # RecursionError in json.loads: was a 500 "internal error"
    b'{"url": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"prefix": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_000 + b"}",
    b"1" * 10_000,  # more digits than Python converts to an int
    b"\xff\xfe[",
])
async def test_a_purge_body_that_breaks_the_json_parser_is_a_400(node_factory, tmp_path, body):
    node = await node_factory(write_config(tmp_path, local_config(before=ADMIN)))
    response = await node.fetch("/_edge/purge", method="POST", headers=AUTH, body=body)
    assert_one_plain_line(response.code, response.headers, response.body, 400, JSON_EXPECTED.rstrip("\n"))
    good = await node.fetch("/_edge/purge", method="POST", headers=AUTH, body=b'{"prefix": "/"}')
    assert good.code == 200 and json.loads(good.body)["removed"] == 0  # and the API works on


# -- 2. input echoed into an error ---------------------------------------------------------------------

@pytest.mark.parametrize("target, message", [
    ("/tr:w-%0d%0aSet-Cookie:x/coffee.jpg", "invalid transformation: w-\\r\\nSet-Cookie: expected a number"),
    ("/tr:di-%00/coffee.jpg",
     "invalid transformation: di-\\x00: must be a path of the default image, with / written as @@"),
    ("/tr:w-%e2%80%a8%7f/coffee.jpg", "invalid transformation: w-\\u2028\\x7f: expected a number"),
    ("/tr:w-%c3%a9/coffee.jpg", "invalid transformation: w-é: expected a number"),  # printable: kept
])
async def test_an_error_quoting_the_request_is_one_printable_line(node_factory, tmp_path, capsys, target,
                                                                  message):
    node = await node_factory(write_config(tmp_path, local_config()))
    answer = await exchange(node.url, raw_get(target))
    assert_one_plain_line(answer.status, {"Content-Type": answer.headers["content-type"]}, answer.body, 400,
                          message)
    assert not any(line.lower().startswith("set-cookie") for line in answer.header_lines)
    node.node.access_log.flush()
    assert node.node.access_log.written(10)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1  # one log line, whatever the path held
    logged = json.loads(lines[0])
    assert logged["status"] == 400 and logged["path"].startswith("/tr:")


async def test_the_query_argument_that_is_not_utf8_is_named(node_factory, tmp_path):
    node = await node_factory(write_config(tmp_path, local_config()))
    response = await node.fetch("/coffee.jpg?tr=w-10%ff%0a")
    assert_one_plain_line(response.code, response.headers, response.body, 400,
                          "invalid transformation: tr: not UTF-8 after percent-decoding")
    assert response.headers["X-Edge-Error"] == "invalid_transformation"
    # a query argument the node reads no further than "is it true" is not: the image, not Tornado's 400
    attachment = await node.fetch("/coffee.jpg?ik-attachment=%ff")
    assert attachment.code == 200 and "Content-Disposition" not in attachment.headers


# -- 3. 405 names the methods the route takes ---------------------------------------------------------

@pytest.mark.parametrize("method, path, allow", [
    ("POST", "/tr:w-10/coffee.jpg", "GET, HEAD"),
    ("DELETE", "/coffee.jpg", "GET, HEAD"),
    ("GET", "/_edge/purge", "POST"),
    ("PUT", "/_edge/health", "GET, HEAD"),
    ("POST", "/metrics", "GET, HEAD"),
    ("FROB", "/coffee.jpg", "GET, HEAD"),  # a method Tornado does not know
])
async def test_a_405_says_which_methods_are_allowed(node_factory, tmp_path, method, path, allow):
    node = await node_factory(write_config(tmp_path, local_config(before=ADMIN)))
    extra = "Content-Length: 0\r\n" if method in ("POST", "PUT") else ""
    answer = await exchange(node.url, raw_get(path, method=method, extra=extra))
    assert (answer.status, answer.headers.get("allow"), answer.text()) == (405, allow, "Method Not Allowed\n")
    assert answer.headers["content-type"] == "text/plain; charset=utf-8"
    # Tornado refuses an unknown method before `prepare`: nothing was counted in flight, nothing uncounted
    # (a gauge that went below 0 for good, and the idle memory trim waiting for 0 never ran again)
    assert node.node.inflight == 0


# -- 4. request targets: absolute form, and targets no route takes ------------------------------------

def two_sites(tmp_path) -> str:
    """The default endpoint over the samples, and one owning `img.example.com` over a folder where
    `coffee.jpg` is a 64×48 picture (the sample is 600×400)."""
    folder = tmp_path / "other"
    folder.mkdir()
    (folder / "coffee.jpg").write_bytes(imagecorpus.photo_jpeg(64, 48))
    return local_config(after=f"""
[[origins]]
name = "other"
type = "local"
root = "{folder}"

[[endpoints]]
id = "other"
hosts = ["img.example.com"]
origins = ["other"]
""")


async def test_an_absolute_form_target_is_served_as_its_path(node_factory, tmp_path):
    node = await node_factory(write_config(tmp_path, two_sites(tmp_path)))
    target = f"http://127.0.0.1:{port_of(node)}/tr:w-30/coffee.jpg"
    for cache in ("MISS", "HIT"):  # the hit is the shortcut's, below the application
        await node.node.settle()
        answer = await exchange(node.url, raw_get(target, host="img.example.com"))
        assert (answer.status, answer.headers["content-type"], answer.headers["x-cache"]) == (200, "image/jpeg",
                                                                                             cache)
        image = decode(answer)
        assert (image.width, image.height) == (30, 20)  # the sample's: the target's host, not Host, counts


async def test_an_absolute_target_stands_for_a_missing_host_only_in_http_1_0(node_factory, tmp_path):
    """RFC 9112 3.2: an HTTP/1.1 request with no Host is a 400, whatever its target names; HTTP/1.0 has no Host,
    and its absolute target's authority is the one. A port of 65535, the largest, is a port (65536: a 400)."""
    node = await node_factory(write_config(tmp_path, two_sites(tmp_path)))
    target = "http://img.example.com:65535/tr:w-32/coffee.jpg"
    no_host = await raw_exchange(node.url, f"GET {target} HTTP/1.1\r\nConnection: close\r\n\r\n".encode())
    assert undated(no_host) == early_answer("400 Bad Request", "bad request")
    for request in (f"GET {target} HTTP/1.0\r\n\r\n".encode(), raw_get(target, host="a")):
        answer = await exchange(node.url, request)
        assert answer.status == 200
        assert (decode(answer).width, decode(answer).height) == (32, 24)  # the other site's 64×48: its host


@pytest.mark.parametrize("scheme", ["http", "HTTPS"])
async def test_the_authority_of_an_absolute_target_replaces_host(node_factory, tmp_path, scheme):
    node = await node_factory(write_config(tmp_path, two_sites(tmp_path)))
    for cache in ("MISS", "HIT"):
        await node.node.settle()
        answer = await exchange(node.url, raw_get(f"{scheme}://IMG.example.com/tr:w-32/coffee.jpg",
                                                  host=f"127.0.0.1:{port_of(node)}"))
        assert (answer.status, answer.headers["x-cache"]) == (200, cache)
        assert (decode(answer).width, decode(answer).height) == (32, 24)  # the other site's 64×48
    query = await exchange(node.url, raw_get("http://img.example.com?tr=w-16"))
    assert query.status == 404 and query.text() == "not found\n"  # `/?tr=w-16`: no image named
    bare = await exchange(node.url, raw_get("http://img.example.com/coffee.jpg?tr=w-16"))
    assert bare.status == 200 and decode(bare).width == 16


@pytest.mark.parametrize("request_line", [
    "GET * HTTP/1.1",
    "OPTIONS * HTTP/1.1",
    "GET coffee.jpg HTTP/1.1",
    "GET ftp://a/coffee.jpg HTTP/1.1",
    "GET http://user@a/coffee.jpg HTTP/1.1",
    "GET http:///coffee.jpg HTTP/1.1",
    "GET http://127.0.0.1:99999999999999/coffee.jpg HTTP/1.1",  # no such port: no authority
    "GET http://a:65536/coffee.jpg HTTP/1.1",
    "FROB * HTTP/1.1",
])
async def test_a_target_that_is_not_a_path_is_a_plain_400(node_factory, tmp_path, request_line):
    node = await node_factory(write_config(tmp_path, local_config()))
    answer = await exchange(node.url, f"{request_line}\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
    assert (answer.status, answer.headers["content-type"], answer.text()) == (
        400, "text/plain; charset=utf-8", "invalid request target\n")
    # counted as an answer no endpoint took, and named: open-proxy scans showed in no metric (SRE probe)
    assert answer.headers["x-edge-error"] == "bad_request"
    exposition = node.node.metrics.exposition().decode()
    assert total(exposition, "edge_http_requests_total", endpoint="-", status="400") == 1
    assert total(exposition, "edge_http_request_duration_seconds_count", endpoint="-", cache="error") == 1


async def test_the_metrics_port_answers_other_paths_with_a_plain_404(node_factory, tmp_path):
    node = await node_factory(write_config(tmp_path, local_config()))
    sockets = bind_sockets(0, "127.0.0.1")
    server = make_server(make_metrics_app(node.node), node.config.server, cors=False)  # as edge.supervisor
    server.add_sockets(sockets)
    url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    try:
        for target, status, body in (("/other", 404, "not found\n"), ("*", 400, "invalid request target\n")):
            answer = await exchange(url, raw_get(target))
            assert (answer.status, answer.headers["content-type"], answer.text()) == (
                status, "text/plain; charset=utf-8", body)
        metrics = await exchange(url, raw_get(f"{url}/metrics"))  # absolute form there too
        assert metrics.status == 200 and b"edge_" in metrics.body
        # the HTTP layer's own answers there are not for pages either: no CORS headers
        answer = await raw_exchange(url, raw_get("/metrics", host="a b"))
        assert undated(answer) == early_answer("400 Bad Request", "bad request", cors="")
    finally:
        server.stop()
        await server.close_all_connections()


# -- 5. Accept: q=0 is "not acceptable" ---------------------------------------------------------------

@pytest.mark.parametrize("accept, loader", [
    ("image/webp", "webpload"),
    ("image/webp;q=0", "jpegload"),
    ("image/webp; Q=0.000", "jpegload"),
    ("image/avif;q=0,image/webp", "webpload"),
    ("image/avif;q=0.0, image/webp;q=0", "jpegload"),
    ("image/avif,image/webp;q=0.5", "heifload"),
    ("image/webp;q=zero", "webpload"),  # a q that is not a number is ignored
    ("image/webp;q=", "webpload"),
    ('image/webp;q="0"', "jpegload"),  # a quoted weight is read as its number
    ("image/webp2,image/avifs", "jpegload"),  # a longer name holding image/webp or image/avif names neither
    ("image/webp;q=-1", "jpegload"),  # below 0: 0
    ("image/webp, image/webp;q=0", "jpegload"),  # listed twice: the lowest weight
    ("image/*,*/*;q=0.8", "jpegload"),  # wildcards name neither
])
async def test_f_auto_honours_a_zero_weight(node_factory, tmp_path, accept, loader):
    node = await node_factory(write_config(tmp_path, local_config()))
    response = await node.fetch("/tr:w-40,f-auto/coffee.jpg", headers={"Accept": accept})
    assert response.code == 200 and response.headers["Vary"] == "Accept"
    assert decode(response).get("vips-loader").removesuffix("_buffer") == loader


# -- 6. client hints at their extremes -----------------------------------------------------------------

@pytest.mark.parametrize("headers, width", [
    ({"Sec-CH-Width": "9999999999999999999999999"}, 1000),  # held to max_output_side, not ignored
    ({"Sec-CH-Width": "9" * 3000}, 1000),
    ({"Width": "00012345678901"}, 1000),
    ({"Sec-CH-Width": "0000000000250"}, 300),  # leading zeros count for nothing: a small width, however many
    ({"Sec-CH-Width": "250"}, 300),
    ({"Sec-CH-Width": "0"}, 600),  # zero, negative, not a number: as if absent (the image's own width)
    ({"Sec-CH-Width": "-400"}, 600),
    ({"Sec-CH-Width": "1e5"}, 600),
])
async def test_a_huge_width_hint_is_held_to_the_output_limit(node_factory, tmp_path, headers, width):
    node = await node_factory(write_config(tmp_path, local_config(after="[limits]\nmax_output_side = 1000")))
    response = await node.fetch("/tr:w-auto/coffee.jpg", headers=headers)
    assert response.code == 200 and decode(response).width == width


@pytest.mark.parametrize("dpr, width", [("99999999999999999999", 500), ("9" * 3000 + ".5", 500), ("2.01", 210),
                                        ("0", 100), ("-2", 100), ("0000000000002", 200)])
async def test_a_huge_dpr_hint_is_held_to_5(node_factory, tmp_path, dpr, width):
    node = await node_factory(write_config(tmp_path, local_config()))
    response = await node.fetch("/tr:w-100,dpr-auto/coffee.jpg", headers={"Sec-CH-DPR": dpr})
    assert response.code == 200 and decode(response).width == width


# -- 7. a large body is not copied to be written -------------------------------------------------------

async def test_a_large_body_is_written_without_a_copy_to_a_client_that_stops_reading(node_factory, tmp_path):
    """A client that reads the headers and stops: what the node holds for it is the cached body itself,
    not a second copy joined to the header block (a 150 MB image held 150 MB more per such client)."""
    folder = tmp_path / "images"
    folder.mkdir()
    noise = (pyvips.Image.gaussnoise(2400, 2400, sigma=80, mean=128).bandjoin([pyvips.Image.gaussnoise(
        2400, 2400, sigma=80, mean=128)] * 2).cast("uchar"))
    (folder / "noise.png").write_bytes(noise.pngsave_buffer(compression=1))
    node = await node_factory(write_config(tmp_path, local_config(folder, before="[cache]\nmemory_size = 1000000000")))
    first = await node.fetch("/noise.png")
    size = len(first.body)
    assert first.code == 200 and size > 12_000_000  # more than loopback's socket buffers take

    async def in_memory() -> bool:  # stored after the answer (the memory tier alone: over an eighth of the disk's)
        return (await node.fetch("/noise.png")).headers["X-Cache"] == "HIT"  # asked before, it waits: a miss
    await until(in_memory, "the output stored in the memory tier")
    for target in ("/noise.png", "/noise.png?v=1"):  # the hit shortcut's answer, the handler's
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            reader, writer = await asyncio.open_connection("127.0.0.1", port_of(node))
            try:
                writer.write(raw_get(target))
                await writer.drain()
                head = Answer(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT))
                assert (head.status, head.headers["x-cache"], int(head.headers["content-length"])) == (200, "HIT", size)
                held = tracemalloc.get_traced_memory()[0] - before
            finally:
                writer.close()
        finally:
            tracemalloc.stop()
        assert held < size / 4, f"{target}: {held} bytes allocated for a {size}-byte answer"


# -- 8. Host: repeated or invalid, and the fully qualified form --------------------------------------

@pytest.mark.parametrize("host_lines", ["", "Host: a\r\nHost: a\r\n", "Host: a\r\nHost: b\r\n", "Host: a,b\r\n",
                                        "Host: a b\r\n", "Host: a@b\r\n", "Host: a:99999\r\n"])
async def test_a_missing_repeated_or_invalid_host_is_a_400_even_for_a_hit(node_factory, tmp_path, host_lines):
    """RFC 9112 3.2. Tornado's request refuses them (and an HTTP/1.1 request with no Host at all), but a fresh
    memory-tier hit is answered before any request is made (edge/hits.py): it answered them 200. The HTTP
    layer's 400 (edge/httpserver.py); without a Host, the application's, not a shortcut failing on it."""
    node = await node_factory(write_config(tmp_path, local_config()))
    for _ in range(2):
        await node.fetch("/tr:w-30/coffee.jpg")  # now a fresh hit in the memory tier
    for target in ("/tr:w-30/coffee.jpg", "/"):
        raw = await raw_exchange(node.url, f"GET {target} HTTP/1.1\r\n{host_lines}Connection: close\r\n\r\n".encode())
        assert undated(raw) == early_answer("400 Bad Request", "bad request")
    good = await exchange(node.url, raw_get("/tr:w-30/coffee.jpg", host="a:8080"))
    assert (good.status, good.headers["x-cache"]) == (200, "HIT")


@pytest.mark.parametrize("host", ["img.example.com.", "IMG.example.com.:8080"])
async def test_a_host_with_a_trailing_dot_is_the_same_host(node_factory, tmp_path, host):
    node = await node_factory(write_config(tmp_path, two_sites(tmp_path)))
    answer = await exchange(node.url, raw_get("/tr:w-32/coffee.jpg", host=host))
    assert answer.status == 200
    assert (decode(answer).width, decode(answer).height) == (32, 24)  # the other site's 64×48, not the sample
    dots = await exchange(node.url, raw_get("/tr:w-32/coffee.jpg", host="img.example.com.."))
    assert dots.status == 200 and decode(dots).height == 21  # one dot only: no such host, the default endpoint's


# -- 9. HEAD on the node's own GET paths ---------------------------------------------------------------

@pytest.mark.parametrize("path", ["/_edge/health", "/_edge/ready", "/metrics", "/_edge/status"])
async def test_head_is_answered_like_get_without_a_body(node_factory, tmp_path, path):
    node = await node_factory(write_config(tmp_path, local_config()))
    get = await exchange(node.url, raw_get(path))
    head = await exchange(node.url, raw_get(path, method="HEAD"))
    assert (head.status, head.body, head.headers["content-type"]) == (200, b"", get.headers["content-type"])
    assert head.headers["cache-control"] == get.headers["cache-control"] == "no-store"
    if path in ("/_edge/health", "/_edge/ready"):  # the others change from one answer to the next
        assert head.headers["content-length"] == str(len(get.body))


# -- 10. error answers are never sniffed, and name their kind -----------------------------------------

@pytest.mark.parametrize("method, target, status, kind, extra", [
    ("GET", "/tr:w-%3Cscript%3E/coffee.jpg", 400, "invalid_transformation", ""),  # the body quotes the request
    ("GET", "/tr:w-10/%3Cscript%3E.jpg", 404, "not_found", ""),
    ("POST", "/tr:w-10/coffee.jpg", 405, "method_not_allowed", ""),
    ("GET", "*", 400, "bad_request", ""),
    ("GET", "/_edge/purge", 405, "method_not_allowed", ""),
    ("POST", "/_edge/purge", 401, "unauthorized", ""),
    # those had no X-Edge-Error, nor an `error` in the access log (docs probe)
    ("GET", "/_edge/status", 401, "unauthorized", ""),
    ("GET", "/tr:w-10/coffee.jpg", 412, "precondition_failed", 'If-Match: "other"\r\n'),
])
async def test_error_answers_are_never_sniffed_and_name_their_kind(node_factory, tmp_path, method, target, status,
                                                                   kind, extra):
    node = await node_factory(write_config(tmp_path, local_config(before=ADMIN)))
    extra += "Content-Length: 0\r\n" if method == "POST" else ""
    answer = await exchange(node.url, raw_get(target, method=method, extra=extra))
    assert (answer.status, answer.headers["content-type"]) == (status, "text/plain; charset=utf-8")
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-edge-error"] == kind


@pytest.mark.parametrize("method, target, body, status, content_type", [
    # those two were sent without it: only the images and the `text/plain` answers had it (HTTP probe)
    ("POST", "/_edge/purge", '{"url": "/a.jpg"}', 200, "application/json"),
    ("GET", "/_edge/status", "", 200, "text/html; charset=utf-8"),
    ("GET", "/metrics", "", 200, "text/plain; version=0.0.4; charset=utf-8"),
    ("GET", "/_edge/ready", "", 200, "text/plain; charset=utf-8"),
    ("OPTIONS", "/tr:w-10/coffee.jpg", "", 204, None),  # a CORS preflight
])
async def test_every_answer_is_never_sniffed(node_factory, tmp_path, method, target, body, status, content_type):
    node = await node_factory(write_config(tmp_path, local_config(before=ADMIN)))
    extra = (f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\n"
             "Origin: https://shop.example.com\r\nAccess-Control-Request-Method: GET\r\n")
    answer = await exchange(node.url, raw_get(target, method=method, extra=extra) + body.encode())
    assert (answer.status, answer.headers.get("content-type")) == (status, content_type)
    assert answer.headers["x-content-type-options"] == "nosniff"


# -- 11. `Expect: 100-continue` -----------------------------------------------------------------------

@pytest.mark.parametrize("request_head", [
    # RFC 9110 15.2: never a 1xx to an HTTP/1.0 client (it takes the 100 for the answer); 10.1.1: its
    # expectation is ignored. Tornado sent `HTTP/1.1 100 (Continue)` before every such answer.
    "GET /tr:w-20/coffee.jpg HTTP/1.0\r\nExpect: 100-continue\r\n",
    "GET /tr:w-20/missing.jpg HTTP/1.0\r\nExpect: 100-continue\r\n",
    # with a body too (its last two bytes the line end added below): the purge API, not configured here, a 404
    "POST /_edge/purge HTTP/1.0\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n{}",
    # a request without a body has nothing to wait for (10.1.1 lets the 100 be left out)
    "GET /tr:w-20/coffee.jpg HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nConnection: close\r\n",
    "HEAD /tr:w-20/coffee.jpg HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 0\r\nConnection: close\r\n",
])
async def test_no_100_continue_without_a_body_or_to_an_http_1_0_client(node_factory, tmp_path, request_head):
    node = await node_factory(write_config(tmp_path, local_config()))
    answer = await exchange(node.url, (request_head + "\r\n").encode())
    assert answer.status in (200, 404)  # the answer itself, with no 100 before it
    assert not answer.body.startswith(b"HTTP/"), answer.body[:100]


@pytest.mark.parametrize("target, length", [
    ("/_edge/purge", "1048577"),  # over max_admin_body
    ("/tr:w-20/coffee.jpg", "4097"),  # over max_request_body
    ("/_edge/purge", "12, 13"),  # Content-Length repeated with another value
])
async def test_a_body_refused_unread_gets_its_400_without_a_100_first(node_factory, tmp_path, target, length):
    """Tornado sent `100 (Continue)`, then its 400: the client started sending a body (up to the size it
    announced) only to have it refused."""
    node = await node_factory(write_config(tmp_path, local_config(before=ADMIN)))
    answer = await exchange(node.url, f"POST {target} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\n"
                                      f"Content-Length: {length}\r\nExpect: 100-continue\r\n\r\n".encode())
    assert (answer.status, answer.body, answer.headers["connection"]) == (400, b"bad request\n", "close")


@pytest.mark.parametrize("method, target, framing, allow", [
    ("POST", "/tr:w-100/coffee.jpg", "Content-Length: 4000", "GET, HEAD"),
    ("PUT", "/coffee.jpg", "Transfer-Encoding: chunked", "GET, HEAD"),
    ("GET", "/_edge/purge", "Content-Length: 20", "POST"),
    ("FROB", "/coffee.jpg", "Content-Length: 20", "GET, HEAD"),  # a method Tornado does not know
])
async def test_a_method_the_target_refuses_gets_its_405_without_a_100_or_the_body(node_factory, tmp_path, method,
                                                                                   target, framing, allow):
    """Tornado sent `100 (Continue)`, waited for the whole body, then answered 405 (HTTP probe). The body is
    never read, so the connection is closed after the answer: nothing sent after it is taken for a request."""
    node = await node_factory(write_config(tmp_path, local_config(before=ADMIN)))
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(node))
    try:
        writer.write(f"{method} {target} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\n{framing}\r\n"
                     "Expect: 100-continue\r\n\r\n".encode())
        answer = Answer(await asyncio.wait_for(reader.read(), WAIT))  # to the end: the node closes the connection
    finally:
        writer.close()
    assert (answer.status, answer.headers["allow"], answer.text()) == (405, allow, "Method Not Allowed\n")
    assert (answer.headers["connection"], answer.headers["x-edge-error"]) == ("close", "method_not_allowed")


@pytest.mark.parametrize("connection", ["TE, close", "close, TE", "keep-alive, Close"])
async def test_close_among_other_connection_options_closes_the_connection(node_factory, tmp_path, connection):
    """RFC 9110 7.6.1: `close` in a list binds as alone; Tornado closed only on a field that was exactly
    `close`, and kept the connection open after `Connection: TE, close`."""
    node = await node_factory(write_config(tmp_path, local_config()))
    for target in ("/tr:w-20/coffee.jpg", "/tr:w-20/coffee.jpg", "/tr:w-20/missing.jpg"):  # a miss, a hit, a 404
        # read to the end: the connection is closed
        answer = await exchange(node.url, f"GET {target} HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n"
                                          f"Connection: {connection}\r\n\r\n".encode())
        assert answer.status in (200, 404) and answer.headers["connection"] == "close"


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_body_announced_with_expect_still_gets_its_100(node_factory, tmp_path, chunked):
    """Announced by its length, or chunked (`Transfer-Encoding`, no `Content-Length`): a body is to come."""
    node = await node_factory(write_config(tmp_path, local_config(before=ADMIN)))
    body = b'{"prefix": "/"}'
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(node))
    try:
        writer.write(f"POST /_edge/purge HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\n"
                     f"{framing}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n".encode())
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        assert interim.startswith(b"HTTP/1.1 100 ")
        writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if chunked else body)
        answer = Answer(await asyncio.wait_for(reader.read(), WAIT))
    finally:
        writer.close()
    assert answer.status == 200 and json.loads(answer.body)["removed"] == 0
