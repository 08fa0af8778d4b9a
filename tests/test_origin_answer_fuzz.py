"""Random answers from a `web` origin (a raw TCP server that writes whatever bytes the test chose) to a
running node (`edge serve` in a child process): status lines that are not HTTP, every status class,
`Content-Length` short, long, negative, repeated or not a number, broken chunked encoding, gzip that is
not, redirects to itself and elsewhere, validators and types of any shape, bodies that are images, cut
images, noise or nothing. Never a 500: an image, or 400/404/422/502/503/504, within the origin's timeout,
the render deadline and a margin. And the node is not left worse: a good original served afterwards
renders, at its size."""

from __future__ import annotations

import gzip
import http.client
import itertools
import socket
import socketserver

import pyvips
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzzing import decoded, exchange, fuzz_settings, one_worker
from tests.nodes import SAMPLES, web_config, write_config
from tests.servers import RawServer

EXAMPLES = 150
ORIGIN_TIMEOUT = 2.0
RENDER_TIMEOUT = 2.0
BOUND = ORIGIN_TIMEOUT * (1 + 3) + RENDER_TIMEOUT + 10  # a fetch and its redirects, a render, a busy machine
STATUSES = {200, 400, 404, 422, 502, 503, 504}
JPEG = (SAMPLES / "astronaut.jpg").read_bytes()
PNG = (SAMPLES / "logo-transparent.png").read_bytes()
GOOD = pyvips.Image.new_from_buffer(JPEG, "")
#: how long the origin waits for a request's headers before it gives up on the connection
READ_SECONDS = 5.0


class RawOrigin(RawServer):
    """Answers every request with `answer` (raw bytes), then closes; `/good-*` paths with a plain 200 of
    the sample JPEG."""

    def __init__(self) -> None:
        super().__init__(_Handler)
        self.answer = b""
        self.requests = 0


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.settimeout(READ_SECONDS)
        head = b""
        try:
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = self.request.recv(4096)
                if not chunk:
                    return
                head += chunk
            self.server.requests += 1
            target = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b""
            if target.startswith(b"/good-"):
                answer = b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n" \
                         b"Connection: close\r\n\r\n%s" % (len(JPEG), JPEG)
            else:
                answer = self.server.answer
            self.request.sendall(answer)
        except OSError:
            pass


bodies = st.sampled_from([JPEG, JPEG[: len(JPEG) // 2], JPEG[:100], PNG, PNG[:-50], b"", b"not an image",
                          bytes(range(256)) * 4, gzip.compress(JPEG), b"\xff\xd8\xff" + b"\x00" * 5000])
statuses = st.sampled_from([200, 200, 200, 200, 201, 203, 204, 206, 301, 302, 303, 304, 307, 308, 400, 401,
                            403, 404, 410, 414, 429, 451, 500, 502, 503, 504, 599, 100, 999])
status_lines = st.one_of(
    statuses.map(lambda status: f"HTTP/1.1 {status} Reason"),
    statuses.map(lambda status: f"HTTP/1.0 {status}"),
    st.sampled_from(["HTTP/1.1 200", "HTTP/2 200 OK", "ICY 200 OK", "HTTP/1.1 abc OK", "", "HTTP/1.1 -1 X",
                     "HTTP/1.1 2000000000000 OK", "garbage"]))
header_values = st.one_of(
    st.sampled_from(["image/jpeg", "image/png", "text/html", "application/octet-stream", "image/svg+xml", "",
                     '"etag"', 'W/"weak"', '"' + "e" * 5000 + '"', "Wed, 21 Oct 2015 07:28:00 GMT", "not a date",
                     "gzip", "br", "identity", "chunked", "close", "keep-alive", "max-age=0", "no-store",
                     "/elsewhere.jpg", "http://127.0.0.1:1/x.jpg", "http://169.254.169.254/latest/", "//evil/",
                     "-1", "0", "99999999999999999999", "1e3", "12, 13"]),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40))
header_names = st.sampled_from(["Content-Type", "ETag", "Last-Modified", "Content-Encoding", "Transfer-Encoding",
                                "Location", "Cache-Control", "Connection", "Content-Length", "Set-Cookie",
                                "X-Junk", "Content-Range"])


@st.composite
def answers(draw) -> bytes:
    """A raw HTTP answer; one in three a well-framed 200 of an image with any validators and type."""
    if draw(st.integers(0, 2)) == 0:
        body = draw(st.sampled_from([JPEG, PNG]))
        headers = draw(st.lists(st.tuples(st.sampled_from(["Content-Type", "ETag", "Last-Modified", "Cache-Control",
                                                           "X-Junk", "Set-Cookie"]), header_values), max_size=4))
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
        return f"HTTP/1.1 200 OK\r\n{lines}Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body
    body = draw(bodies)
    headers = draw(st.lists(st.tuples(header_names, header_values), max_size=5))
    length = draw(st.sampled_from(["right", "right", "none", "short", "long", "twice", "from headers"]))
    if length == "right":
        headers.append(("Content-Length", str(len(body))))
    elif length == "short":
        headers.append(("Content-Length", str(max(0, len(body) - 10))))
    elif length == "long":
        headers.append(("Content-Length", str(len(body) + 1000)))
    elif length == "twice":
        headers += [("Content-Length", str(len(body))), ("Content-Length", str(len(body) + 1))]
    if draw(st.integers(0, 5)) == 0:  # chunked, well or badly framed
        headers = [(n, v) for n, v in headers if n != "Content-Length"] + [("Transfer-Encoding", "chunked")]
        framing = draw(st.sampled_from(["good", "bad size", "no end"]))
        size = b"zz" if framing == "bad size" else b"%x" % len(body)
        body = size + b"\r\n" + body + b"\r\n" + (b"" if framing == "no end" else b"0\r\n\r\n")
    head = draw(status_lines) + "\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n"
    return head.encode("latin-1") + body


@pytest.fixture(scope="module")
def raw_origin():
    with RawOrigin().serving() as origin:
        yield origin


@pytest.fixture(scope="module")
def fuzzed_node(raw_origin, tmp_path_factory):
    config = write_config(tmp_path_factory.mktemp("origin-fuzz-node"), web_config(
        raw_origin.url, before='[server]\naccess_log = false\n',
        after=f'[limits]\nrender_timeout = "{RENDER_TIMEOUT}s"\n', origin=f'timeout = "{ORIGIN_TIMEOUT}s"\n'))
    with one_worker(config) as address:
        yield address


def test_random_origin_answers_get_a_bounded_answer_and_never_a_500(raw_origin, fuzzed_node):
    widths = itertools.count()
    answered = []

    @fuzz_settings(EXAMPLES)
    @given(answer=answers())
    def one(answer):
        raw_origin.answer = answer
        number = next(widths)
        width = 100 + number % 50
        status, body, seconds = exchange(fuzzed_node, "GET", f"/tr:w-{width}/fuzz-{number}.jpg", timeout=BOUND)
        assert status in STATUSES, (answer[:300], status)
        assert seconds < BOUND, answer[:300]
        if status == 200:  # made of a whole image, at the width asked for (each path new: no cached copy)
            assert decoded(body).width == width, answer[:300]
        answered.append(status)

    one()
    assert answered.count(200) >= EXAMPLES // 10 and answered.count(502) >= EXAMPLES // 20, sorted(answered)
    for number in range(3):  # the node is none the worse: good originals render, at their size
        status, body, _ = exchange(fuzzed_node, "GET", f"/tr:w-{120 + number}/good-{number}.jpg", timeout=BOUND)
        assert status == 200, (status, body[:200])
        image = decoded(body)
        assert (image.width, image.height) == (120 + number, round(GOOD.height * (120 + number) / GOOD.width))


def test_a_connection_the_origin_closed_after_its_answer_is_not_reused(raw_origin, fuzzed_node):
    """An origin that closes each connection after answering (without `Connection: close`) has every
    request answered: a pooled connection it closed is not the next request's failure."""
    for number in range(6):
        raw_origin.answer = (b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(JPEG), JPEG))
        status, body, _ = exchange(fuzzed_node, "GET", f"/tr:w-90/kept-{number}.jpg", timeout=BOUND)
        assert status == 200, (number, status, body[:200])


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: zz\r\n\r\nhello"])
def test_a_malformed_answer_is_a_bad_response(raw_origin, fuzzed_node, answer):
    """aiohttp's parser refusing an answer was counted and logged as a generic `error`, by its class alone."""
    raw_origin.answer = answer
    connection = http.client.HTTPConnection(fuzzed_node.hostname, fuzzed_node.port, timeout=BOUND)
    try:
        connection.request("GET", "/tr:w-90/malformed.jpg")
        response = connection.getresponse()
        assert (response.status, response.getheader("X-Edge-Error"), response.read()) == (
            502, "web: bad_response", b"origin error\n")
    finally:
        connection.close()


def test_the_raw_origin_writes_what_it_is_given(raw_origin):
    raw_origin.answer = b"HTTP/1.1 418 Teapot\r\nContent-Length: 2\r\n\r\nhi"
    with socket.create_connection(("127.0.0.1", raw_origin.server_address[1]), timeout=5) as connection:
        connection.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        assert connection.makefile("rb").read() == raw_origin.answer
