"""`[server]` limits over real sockets: bodies refused before they are read, header deadline,
connection cap, send timeout, and a node out of file descriptors that neither spins nor floods its log."""

import asyncio
import email.utils
import json
import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest
from tornado.httpclient import AsyncHTTPClient

from benchmarks.common import cpu_seconds
from edge.httpserver import CONNECTION_CLOSES
from edge.testing import total
from tests.nodes import NodeProcess, exchange, local_config, until, until_stored, web_config, write_config
from tests.photos import photos  # noqa: F401 - a fixture
from tests.scrape import scrape_when
from tests.servers import HTTPOrigin

WAIT = 10  # seconds any single answer may take here


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


ADMIN = '[admin]\ntoken = "s3cret-admin-token"'


async def test_a_body_on_an_image_url_is_refused_before_it_is_read(node_factory, tmp_path):
    node = await node_factory(write_config(tmp_path, local_config(before=ADMIN)))
    # 90 MB announced, none sent: the answer must come without waiting for the body
    answer = await exchange(node.url, b"GET /coffee.jpg HTTP/1.1\r\nHost: a\r\nContent-Length: 90000000\r\n\r\n")
    assert status(answer) == 400
    # the purge API takes larger bodies (up to max_admin_body) with its token: 500 KB reaches its handler
    body = b"x" * 500_000
    purge = await node.fetch("/_edge/purge", method="POST", body=body,
                             headers={"Authorization": "Bearer s3cret-admin-token"})
    assert (purge.code, purge.body) == (400, b'expected a JSON body: {"url": "..."} or {"prefix": "..."}\n')
    refused = await exchange(node.url, b"POST /_edge/purge HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n")
    assert status(refused) == 400
    assert (await node.fetch("/tr:w-10/coffee.jpg")).code == 200  # and the node serves on


@pytest.mark.parametrize("authorization", ["", "Authorization: Bearer not-the-token\r\n"])
async def test_a_purge_without_its_token_gets_no_more_body_than_an_image_request(node_factory, tmp_path,
                                                                                 authorization):
    """Each worker held ~1 MiB a connection (`max_admin_body`) of a purge with no token, read whole before its
    401 (1024 connections: 1 GiB), and `Expect: 100-continue` was answered `100` to invite it."""
    node = await node_factory(write_config(tmp_path, local_config(before=ADMIN)))
    head = f"POST /_edge/purge HTTP/1.1\r\nHost: a\r\n{authorization}"
    refused = await exchange(node.url, f"{head}Content-Length: 500000\r\nExpect: 100-continue\r\n\r\n".encode())
    assert refused.startswith(b"HTTP/1.1 400 ") and status(refused) == 400, refused[:200]
    small = b'{"prefix": "/"}'
    answer = await exchange(node.url, f"{head}Content-Length: {len(small)}\r\nConnection: close\r\n\r\n".encode()
                            + small)
    assert status(answer) == 401


async def closes(node) -> dict[str, float]:
    """`edge_connections_closed_total` of `node`, by reason (every reason's series exists from the start)."""
    text = (await node.fetch("/metrics")).body.decode()
    return {reason: total(text, "edge_connections_closed_total", reason=reason) for reason in CONNECTION_CLOSES}


async def test_headers_must_arrive_within_the_header_timeout(node_factory, tmp_path):
    node = await node_factory(write_config(tmp_path, local_config(before='[server]\nheader_timeout = "1s"')))
    started = time.monotonic()
    answer = await exchange(node.url, b"GET /coffee.jpg HTTP/1.1\r\nHost: a\r\n")  # never finished
    assert answer == b"" and time.monotonic() - started < WAIT  # closed, not answered
    assert await closes(node) == {**dict.fromkeys(CONNECTION_CLOSES, 0), "header_timeout": 1}


async def test_a_stalled_node_does_not_blame_its_clients_for_its_own_stall(tmp_path):
    """Requests whose headers arrived while the node's process was stopped (SIGSTOP here; a long callback or a
    paused VM alike) for longer than `header_timeout` are answered when it runs again, not closed as late."""
    node = NodeProcess(write_config(tmp_path, local_config(before='[server]\nworkers = 1\nheader_timeout = "2s"')))
    try:
        port = int(node.url.rsplit(":", 1)[1])
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        for _, writer in held:
            writer.write(b"GET /tr:w-10/coffee.jpg HTTP/1.1\r\nHost: a\r\n")  # all but the headers' end

        async def accepted():  # by the worker (a scrape may count itself: at least two of the three)
            response = await AsyncHTTPClient().fetch(node.url + "/metrics", request_timeout=WAIT)
            return total(response.body.decode(), "edge_open_connections") >= 3
        await until(accepted, "the worker holding the connections", timeout=WAIT)
        (worker,) = node.worker_pids()
        os.kill(worker, signal.SIGSTOP)
        try:
            for _, writer in held:
                writer.write(b"\r\n")
                await writer.drain()
            await asyncio.sleep(3)  # the stall itself: longer than header_timeout
        finally:
            os.kill(worker, signal.SIGCONT)
        answers = [await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT) for reader, _ in held]
        assert [status(answer) for answer in answers] == [200, 200, 200]
        for _, writer in held:
            writer.close()
    finally:
        node.stop()


async def test_a_kept_alive_connection_waits_idle_timeout_for_its_next_request(node_factory, tmp_path):
    node = await node_factory(write_config(tmp_path, local_config(
        before='[server]\nheader_timeout = "30s"\nidle_timeout = "1s"')))
    started = time.monotonic()
    answer = await exchange(node.url, b"GET /tr:w-10/coffee.jpg HTTP/1.1\r\nHost: a\r\n\r\n")  # then nothing
    assert status(answer) == 200  # answered, kept alive, then closed well before header_timeout
    assert 1 <= time.monotonic() - started < WAIT
    assert await closes(node) == {**dict.fromkeys(CONNECTION_CLOSES, 0), "idle_timeout": 1}


async def test_a_kept_alive_connection_s_next_head_must_arrive_within_the_header_timeout(node_factory, tmp_path):
    """A slow head after one quick request (slowloris on a kept-alive connection) had `idle_timeout`, 60 s by
    default, where a first request's has `header_timeout` (HTTP probe): timed from when it was first seen."""
    node = await node_factory(write_config(tmp_path, local_config(
        before='[server]\nheader_timeout = "2s"\nidle_timeout = "60s"')))
    started = time.monotonic()
    answer = await exchange(node.url, b"GET /tr:w-10/coffee.jpg HTTP/1.1\r\nHost: a\r\n\r\n"
                                      b"GET /coffee.jpg HTTP/1.1\r\nHost: a\r\n", timeout=WAIT)  # never finished
    assert status(answer) == 200 and answer.count(b"HTTP/1.1 ") == 1  # the first answered, the second closed
    assert time.monotonic() - started < 3.5  # header_timeout and a sweep or two (it was twice that: review)
    assert await closes(node) == {**dict.fromkeys(CONNECTION_CLOSES, 0), "header_timeout": 1}


async def test_the_open_connections_are_counted(node_factory, tmp_path):
    """`edge_open_connections`, sampled every sweep: connections held open count until they close; against
    `edge_connection_limit`."""
    node = await node_factory(write_config(tmp_path, local_config()))
    port = int(node.url.rsplit(":", 1)[1])

    text = (await node.fetch("/metrics")).body.decode()
    assert total(text, "edge_connection_limit") == 1024  # [server] max_connections, one worker

    async def open_connections(expected) -> bool:
        return expected(total((await node.fetch("/metrics")).body.decode(), "edge_open_connections"))
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
    try:
        await until(lambda: open_connections(lambda count: count >= 5), "5 connections counted", timeout=WAIT)
    finally:
        for _, writer in held:
            writer.close()
    await until(lambda: open_connections(lambda count: count <= 1), "the closed ones no longer counted", timeout=WAIT)


#: the CORS header lines of the HTTP layer's own answers with the default `cors_origin = "*"`
CORS_LINES = ("Access-Control-Allow-Origin: *\r\nAccess-Control-Expose-Headers: Content-Disposition, Date, ETag, "
              "Link, Retry-After, Vary, X-Cache, X-Edge-Error, X-Request-Id\r\nTiming-Allow-Origin: *\r\n")


def undated(answers: bytes) -> bytes:
    """`answers` without the `Date` each has right after its status line, which must be there and now (RFC 9110
    6.6.1: an origin server's 4xx carries one; the HTTP layer's own answers had none), to compare with
    `early_answer`."""
    dates = re.findall(rb"HTTP/1\.1 [^\r]*\r\nDate: ([^\r]*)\r\n", answers)
    assert len(dates) == answers.count(b"HTTP/1.1 "), answers[:300]
    for date in dates:
        assert abs(email.utils.parsedate_to_datetime(date.decode()).timestamp() - time.time()) < 60, date
    return re.sub(rb"(HTTP/1\.1 [^\r]*\r\n)Date: [^\r]*\r\n", rb"\1", answers)


#: the `X-Edge-Error` of each status the HTTP layer answers itself
EARLY_KINDS = {400: "bad_request", 414: "uri_too_long", 431: "headers_too_large", 503: "over_capacity"}


def early_answer(status_line: str, message: str, cors: str = CORS_LINES, extra: str = "") -> bytes:
    """The bytes of an answer of the HTTP layer itself (`undated`): `message` as a plain line, its kind named as
    every error answer's (it had none: docs probe), the connection closed."""
    kind = EARLY_KINDS[int(status_line.split()[0])]
    return (f"HTTP/1.1 {status_line}\r\n{extra}X-Edge-Error: {kind}\r\n{cors}"
            f"Content-Type: text/plain; charset=utf-8\r\n"
            f"X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\nConnection: close\r\n"
            f"Content-Length: {len(message) + 1}\r\n\r\n{message}\n").encode()


@pytest.mark.parametrize("cors_origin, cors", [("*", CORS_LINES), ("", "")])
async def test_connections_beyond_the_cap_get_503(node_factory, tmp_path, cors_origin, cors):
    """With the CORS headers: a page's `fetch()` of an image then reads the 503 and its `Retry-After`."""
    config = local_config(before=f'[server]\nmax_connections = 3\ncors_origin = "{cors_origin}"')
    node = await node_factory(write_config(tmp_path, config))
    idle = [await asyncio.open_connection("127.0.0.1", int(node.url.rsplit(":", 1)[1])) for _ in range(3)]
    try:
        answer = await exchange(node.url, b"GET /tr:w-10/coffee.jpg HTTP/1.1\r\nHost: a\r\n\r\n")
        assert undated(answer) == early_answer("503 Service Unavailable", "too many connections", cors, "Retry-After: 1\r\n")
    finally:
        for _, writer in idle:
            writer.close()
    scrape = []

    async def scraped():  # a scrape is a connection too: refused (503) until the node has seen the idle ones close
        scrape[:] = [await node.fetch("/metrics")]
        return scrape[0].code == 200
    await until(scraped, "the node taking connections again", timeout=WAIT)
    text = scrape[0].body.decode()
    assert total(text, "edge_connections_closed_total", reason="over_capacity") >= 1

    async def served() -> bool:  # once the node has seen the idle connections close
        return await probe_status(node.url) == 200
    await until(served, "a slot freed")


async def test_at_the_cap_a_kept_alive_connection_waiting_longest_makes_room(node_factory, tmp_path):
    """1024 connections that each asked once and then sat idle had locked every new client out (503) for
    `idle_timeout`: the one idle longest is closed for the new one, as nginx does."""
    node = await node_factory(write_config(tmp_path, local_config(before='[server]\nmax_connections = 3')))
    port = int(node.url.rsplit(":", 1)[1])
    kept = []
    for _ in range(3):  # each asks once, reads its answer and keeps its connection
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /tr:w-10/coffee.jpg HTTP/1.1\r\nHost: a\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        length = int(re.search(rb"Content-Length: (\d+)", head)[1])
        await asyncio.wait_for(reader.readexactly(length), WAIT)
        assert status(head) == 200
        kept.append((reader, writer))
    try:
        answer = await exchange(node.url, b"GET /tr:w-10/coffee.jpg HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert status(answer) == 200
        assert await asyncio.wait_for(kept[0][0].read(), WAIT) == b""  # the first one closed for it
        for reader, writer in kept[1:]:  # the others still served on
            writer.write(b"GET /_edge/health HTTP/1.1\r\nHost: a\r\n\r\n")
            assert status(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)) == 200
    finally:
        for _, writer in kept:
            writer.close()
    assert (await closes(node))["idle_reclaimed"] == 1


@pytest.mark.parametrize("cors_origin, cors", [("*", CORS_LINES), ("", "")])
async def test_tornado_s_400s_are_the_node_s_with_cors(node_factory, tmp_path, cors_origin, cors):
    """Tornado answered a request it could not parse or frame with a bare `400 Bad Request` (no body, no
    CORS headers: a page's `fetch()` saw a network error)."""
    node = await node_factory(write_config(tmp_path, local_config(before=f'[server]\ncors_origin = "{cors_origin}"')))
    refused = {
        "body over max_request_body": b"POST /tr:w-10/coffee.jpg HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n",
        "broken chunked framing": b"POST /tr:w-10/coffee.jpg HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  b"zz\r\n",
        "invalid Host": b"GET /tr:w-10/coffee.jpg HTTP/1.1\r\nHost: a b\r\n\r\n",
        "header line without a colon": b"GET /tr:w-10/coffee.jpg HTTP/1.1\r\nHost: a\r\nnocolon\r\n\r\n",
    }
    answers = {why: undated(await exchange(node.url, request)) for why, request in refused.items()}
    assert answers == dict.fromkeys(refused, early_answer("400 Bad Request", "bad request", cors))
    faulty = await exchange(node.url, b"GET /tr:w-10/coffee.jpg HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert undated(faulty) == early_answer("400 Bad Request", "Transfer-Encoding in an HTTP/1.0 request", cors)
    assert status(await answer_to(node.url, head_of(300))) == 200
    # counted (they had reached no metric: no request was made of them)
    assert closed_for(node, "bad_request") == len(refused) + 1


def closed_for(node, reason: str) -> float:
    return total(node.node.metrics.exposition().decode(), "edge_connections_closed_total", reason=reason)


HEAD_LIMIT = 2048
GOOD = "/tr:w-10/coffee.jpg"


def head_of(size: int, *, line: bool = False) -> bytes:
    """A request head of exactly `size` bytes: its request line that long (`line`), or its headers padded."""
    if line:
        return b"GET /tr:w-10/" + b"a" * (size - len("GET /tr:w-10/ HTTP/1.1\r\n")) + b" HTTP/1.1\r\n"
    start = f"GET {GOOD} HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-Pad: ".encode()
    return start + b"p" * (size - len(start) - 4) + b"\r\n\r\n"


async def answer_to(url: str, data: bytes) -> bytes:
    """Everything the node answers to `data` until it closes the connection, read even when the node has
    reset it (it closes a connection with a request over the limit not read to its end, and the client
    may still be sending): a client that reads its answer gets it."""
    host, port = url.removeprefix("http://").split(":")

    def exchange_blocking() -> bytes:
        with socket.create_connection((host, int(port)), timeout=WAIT) as client:
            try:
                client.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            chunks = []
            for _ in range(1000):  # bounded: each read waits at most WAIT
                try:
                    chunk = client.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks)
    return await asyncio.to_thread(exchange_blocking)


@pytest.mark.parametrize("cors_origin, cors", [("*", CORS_LINES), ("", "")])
async def test_a_request_head_over_the_limit_is_answered_414_or_431(node_factory, tmp_path, cors_origin, cors):
    """Tornado only closed the connection. A request line over `max_header_size` is a 414, a head over it
    a 431 (RFC 6585), whatever its size: what the node reads of it stays within the limit."""
    config = local_config(before=f'[server]\nmax_header_size = "2KiB"\ncors_origin = "{cors_origin}"')
    node = await node_factory(write_config(tmp_path, config))
    uri_too_long = early_answer("414 URI Too Long", "request line too long", cors)
    too_large = early_answer("431 Request Header Fields Too Large", "request headers too large", cors)
    assert status(await answer_to(node.url, head_of(HEAD_LIMIT))) == 200  # the limit itself is allowed
    assert undated(await answer_to(node.url, head_of(HEAD_LIMIT + 1))) == too_large
    assert undated(await answer_to(node.url, head_of(HEAD_LIMIT + 1, line=True))) == uri_too_long
    assert undated(await answer_to(node.url, head_of(8_000_000))) == too_large
    assert undated(await answer_to(node.url, head_of(8_000_000, line=True))) == uri_too_long
    # a line within the limit, the head not (the limit is the line's and the headers')
    assert undated(await answer_to(node.url, head_of(HEAD_LIMIT, line=True) + b"Host: a\r\n\r\n")) == too_large
    # after a kept-alive request, on the same connection
    kept = await answer_to(node.url, f"GET {GOOD} HTTP/1.1\r\nHost: a\r\n\r\n".encode() + head_of(HEAD_LIMIT + 1))
    assert status(kept) == 200 and undated(kept[kept.rindex(b"HTTP/1.1 "):]) == too_large
    assert status(await answer_to(node.url, head_of(300))) == 200  # and the node serves on
    assert (closed_for(node, "headers_too_large"), closed_for(node, "uri_too_long")) == (4, 2)


async def probe_status(url: str) -> int | None:
    """The status of a health check on a new connection, or None if the node reset it (a connection
    over the cap is closed at once: the reset may overtake its 503)."""
    try:
        return status(await exchange(url, b"GET /_edge/health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"))
    except ConnectionResetError:
        return None


async def client_asking(url: str, path: str, receive_buffer: int | None = None) -> socket.socket:
    """A connection that has asked for `path`, to be closed after the answer; a small `receive_buffer`
    keeps the node from handing a large response over to the kernel and being done."""
    loop = asyncio.get_running_loop()
    client = socket.socket()
    if receive_buffer:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    client.setblocking(False)
    await loop.sock_connect(client, ("127.0.0.1", int(url.rsplit(":", 1)[1])))
    await loop.sock_sendall(client, f"GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
    return client


async def read_all(client: socket.socket) -> tuple[bytes, OSError | None]:
    """What arrives until the connection ends, and the error that ended it (None: closed cleanly)."""
    loop, received = asyncio.get_running_loop(), []
    try:
        while chunk := await asyncio.wait_for(loop.sock_recv(client, 1 << 20), WAIT):
            received.append(chunk)
    except ConnectionError as exc:
        return b"".join(received), exc
    return b"".join(received), None


def photos_config(tmp_path: Path, photos, server: str) -> Path:  # noqa: F811 - photos is the fixture's value
    """A budget whose admission share (a 256th) holds the 26 MB PNG when first made."""
    before = f'[server]\n{server}\n[cache]\ndir = "cache"\noutput_size = "8GB"'
    return write_config(tmp_path, local_config(photos.folder, before=before))


async def test_a_client_that_stops_reading_is_dropped_after_send_timeout(node_factory, tmp_path, photos):  # noqa: F811
    # one connection slot: while the stalled client holds it, a new connection is refused
    node = await node_factory(photos_config(tmp_path, photos, 'send_timeout = "2s"\nmax_connections = 1'))
    whole = await node.fetch("/photo.png")  # the 12 MP PNG as stored: 19.6 MB, far more than socket buffers
    assert whole.code == 200 and len(whole.body) > 10_000_000

    async def slot_free() -> bool:
        return await probe_status(node.url) == 200

    await until(slot_free, "the slot to be free")

    started = time.monotonic()
    stalled = await client_asking(node.url, "/photo.png", receive_buffer=4096)
    try:
        head = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(stalled, 4096), WAIT)
        assert status(head) == 200
        assert await probe_status(node.url) != 200  # held by the stalled response
        await until(slot_free, "the stalled connection to be dropped", WAIT)
        assert time.monotonic() - started >= 2
        rest, error = await read_all(stalled)
        assert len(head) + len(rest) < len(whole.body) and isinstance(error, ConnectionResetError)
    finally:
        stalled.close()
    # counted as what it was (it had been in no reason's series), beside the 503s of the slot's probes
    assert (await closes(node))["send_timeout"] == 1


@pytest.mark.parametrize("memory_tier", ["", '[cache]\ndir = "cache"\nmemory_size = "400MB"'],
                         ids=["from disk", "from memory"])
async def test_a_large_body_left_mid_way_is_counted_as_far_as_it_was_sent(node_factory, tmp_path, photos,  # noqa: F811
                                                                           capsys, memory_tier):
    """The access log's `bytes` and `edge_response_bytes_total` counted a large body whole as soon as it was
    queued, though its client left after a few hundred kB: an operator's bandwidth figures were the
    bodies' sizes, not what was sent. Whether the body comes from disk (`ImageHandler`) or from the memory
    tier (a tier of 400 MB keeps outputs up to 25 MB, answered below `tornado.web` by `edge.hits`)."""
    config = write_config(tmp_path, local_config(photos.folder, before=f'[server]\nsend_timeout = "3s"\n{memory_tier}'))
    node = await node_factory(config)
    for _ in range(2):  # stored, then read from disk (and kept in a large enough memory tier)
        whole = await node.fetch("/photo.png")  # the 12 MP PNG as stored: 19.6 MB
        assert whole.code == 200 and len(whole.body) > 10_000_000
    stalled = await client_asking(node.url, "/photo.png", receive_buffer=4096)
    try:
        head = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(stalled, 4096), WAIT)
        assert status(head) == 200
        exposition = await scrape_when(node.url, "edge_http_requests_total", 3, endpoint="default", status="200")
    finally:
        stalled.close()
    sent = total(exposition, "edge_response_bytes_total", endpoint="default") - 2 * len(whole.body)
    assert 0 < sent < 5_000_000  # what the socket buffers took before `send_timeout` dropped the client
    node.node.access_log.flush()
    assert node.node.access_log.written(10)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    photo = [(line["status"], line["bytes"]) for line in lines if line["path"] == "/photo.png"]
    assert photo == [(200, len(whole.body)), (200, len(whole.body)), (200, sent)]
    # the stalled client's, a hit: until written out, not its download, which `send_timeout` ended (a read of 19.6 MB
    # from disk took up to 1 s on a loaded 2-core machine; the first request, a render of 12 MP, longer)
    assert [line["duration_ms"] < 3000 for line in lines if line["path"] == "/photo.png"][2:] == [True]


async def test_large_bodies_being_sent_are_held_to_send_memory(node_factory, tmp_path, photos):  # noqa: F811
    node = await node_factory(photos_config(tmp_path, photos, 'send_memory = "30MB"'))
    whole = await node.fetch("/photo.png")  # 19.6 MB: one fits, two do not
    assert whole.code == 200 and node.node.large_bodies.held == 0
    stalled = await client_asking(node.url, "/photo.png", receive_buffer=4096)
    try:
        head = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(stalled, 4096), WAIT)
        assert status(head) == 200 and node.node.large_bodies.held == len(whole.body)
        refused = await node.fetch("/photo.png")
        assert (refused.code, refused.body, refused.headers["Retry-After"]) == (503, b"node overloaded, retry later\n", "1")
        small = await node.fetch("/tr:w-300/photo.png")  # bodies up to 256 KiB are not held to it
        assert small.code == 200 and len(small.body) < 256 * 1024
    finally:
        stalled.close()  # with unread bytes: a reset, and the node lets the body go

    async def released() -> bool:
        return node.node.large_bodies.held == 0

    await until(released, "the stalled body to be let go", WAIT)
    again = await node.fetch("/photo.png")
    assert again.code == 200 and again.body == whole.body


async def test_one_body_sent_to_a_herd_is_held_once(node_factory, tmp_path, photos):  # noqa: F811
    """`send_memory` counted a body once per client it was being sent to, though a herd shares one copy
    (the single flight hands the same bytes to every waiter). Three clients of a 19.6 MB output,
    `send_memory = "30MB"`: two got 503 for memory that was never used."""
    origin = await HTTPOrigin(files={"photo.png": (photos.folder / "photo.png").read_bytes()}).start()
    origin.behaviour.hold = asyncio.Event()  # the herd's fetch stays in flight until every client has asked
    node = await node_factory(write_config(tmp_path, web_config(
        origin.url, '[server]\nsend_memory = "30MB"', origin='timeout = "60s"')))
    clients = []
    try:
        for _ in range(3):
            clients.append(await client_asking(node.url, "/photo.png", receive_buffer=4096))

        async def all_asked() -> bool:
            return node.node.inflight == 3
        await until(all_asked, "three requests in flight")
        origin.behaviour.hold.set()
        loop = asyncio.get_running_loop()
        heads = [await asyncio.wait_for(loop.sock_recv(client, 4096), WAIT) for client in clients]
        assert [status(head) for head in heads] == [200, 200, 200]
        body_size = int(re.search(rb"Content-Length: (\d+)", heads[0]).group(1))
        assert node.node.large_bodies.held == body_size
    finally:
        origin.behaviour.hold.set()
        for client in clients:
            client.close()
        await origin.stop()
    assert origin.requests == {"photo.png": 1}

    async def released() -> bool:
        return node.node.large_bodies.held == 0

    await until(released, "the bodies to be let go", WAIT)


async def test_a_client_that_pauses_less_than_send_timeout_gets_its_whole_response(node_factory, tmp_path,
                                                                                   photos):  # noqa: F811
    node = await node_factory(photos_config(tmp_path, photos, 'send_timeout = "1s"'))
    whole = await node.fetch("/photo.png")
    client = await client_asking(node.url, "/photo.png", receive_buffer=256 * 1024)
    loop, received = asyncio.get_running_loop(), bytearray()
    try:
        for _ in range(4):  # 2 s in all without reading, never 1 s in a row
            await asyncio.sleep(0.5)  # the slow client (not a wait for the node)
            for _ in range(100):  # then take what has arrived (bounded: up to 100 MB)
                try:
                    chunk = client.recv(1 << 20)
                except BlockingIOError:
                    break
                assert chunk, "the connection ended during a pause"
                received += chunk
        assert len(received) < len(whole.body)  # the node was still sending through every pause
        rest, error = await read_all(client)
    finally:
        client.close()
    assert error is None and (received + rest).endswith(whole.body)


async def test_malformed_requests_log_one_line_without_what_the_client_sent(tmp_path):
    """Tornado logs each malformed request with the offending header value: up to max_header_size
    bytes per request from one client, a token included."""
    node = NodeProcess(write_config(tmp_path, local_config(before='[admin]\ntoken = "admin-s3cret-token"')))
    try:
        header = b"Authorization: Bearer admin-s3cret-token\x01\r\n"
        for _ in range(50):
            answer = await exchange(node.url, b"GET / HTTP/1.1\r\nHost: a\r\n" + header + b"X: " + b"A" * 30_000 + b"\r\n\r\n")
            assert status(answer) == 400
        assert (await AsyncHTTPClient().fetch(node.url + "/tr:w-10/coffee.jpg")).code == 200
    finally:
        assert node.stop() == 0
    log = "".join(node.log)
    assert "admin-s3cret-token" not in log and "AAAA" not in log
    lines = [line for line in node.log if "Malformed HTTP message" in line]
    assert len(lines) == 1 and lines[0].endswith("Malformed HTTP message from 127.0.0.1: Invalid header value\n"), lines


async def test_an_http_1_0_request_with_transfer_encoding_is_refused_and_its_connection_closed(tmp_path):
    """RFC 9112 6.1: HTTP/1.0 has no chunked framing. Read as chunked on a kept-alive connection, the
    body below would carry a request a front end framing the message as 1.0 never saw (smuggling)."""
    node = NodeProcess(write_config(tmp_path, local_config()))
    try:
        inner = b"GET /_edge/ready HTTP/1.0\r\nHost: smuggled\r\n\r\n"
        answer = await exchange(node.url, b"GET /_edge/health HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n"
                                b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(inner), inner)
                                + b"GET /_edge/health HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n")
        head, _, body = answer.partition(b"\r\n\r\n")  # one answer, then the connection closed
        assert status(answer) == 400 and b"Connection: close" in head and b"HTTP/1.1 200" not in answer
        assert body == b"Transfer-Encoding in an HTTP/1.0 request\n"
        kept = await exchange(node.url, b"GET /_edge/health HTTP/1.0\r\nHost: a\r\n\r\n")
        assert status(kept) == 200 and kept.endswith(b"ok\n")  # the node serves on; 1.1 chunked bodies are not this
    finally:
        assert node.stop() == 0
    log = "".join(node.log)
    assert "Traceback" not in log and "Transfer-Encoding in an HTTP/1.0 request" in log


def test_the_client_noise_filter_counts_what_it_left_out():
    import logging

    from edge.logs import CLIENT_NOISE_SECONDS, ClientNoiseFilter

    now = [0.0]
    noise = ClientNoiseFilter(clock=lambda: now[0])

    def logged(message: str, *args: object) -> str | None:
        record = logging.LogRecord("tornado.general", logging.INFO, __file__, 1, message, args, None)
        return record.getMessage() if noise.filter(record) else None

    malformed = "Malformed HTTP message from %s: %s"
    assert logged(malformed, "::1", ValueError("Only integer Content-Length is allowed: 1e9")) == (
        "Malformed HTTP message from ::1: Only integer Content-Length is allowed")
    assert logged("Timeout reading body from %s", "::1") is None
    assert logged("Got events for closed stream %s", 7) == "Got events for closed stream 7"  # not a client's doing
    now[0] += 3 * CLIENT_NOISE_SECONDS  # when the count is told, the time it covers is told with it
    assert logged(malformed, "10.0.0.1", ValueError("Malformed HTTP headers: 'x'")) == (
        "Malformed HTTP message from 10.0.0.1: Malformed HTTP headers (and 1 more such messages left out in the "
        f"{3 * CLIENT_NOISE_SECONDS:.0f} s before)")
    now[0] += CLIENT_NOISE_SECONDS  # one interval to the moment after the last line written: the next one is
    assert logged("Timeout reading body from %s", "::1") == "Timeout reading body from ::1"


def open_idle_clients(url: str, count: int) -> list[socket.socket]:
    """`count` connections that never send a byte (the kernel completes them into the backlog)."""
    port = int(url.rsplit(":", 1)[1])
    clients = []
    for _ in range(count):
        client = socket.socket()
        client.setblocking(False)
        client.connect_ex(("127.0.0.1", port))
        clients.append(client)
    return clients


def limits_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no fd limit")


async def test_out_of_file_descriptors_the_node_pauses_then_serves_without_spinning(tmp_path):
    config = write_config(tmp_path, local_config(before='[server]\nheader_timeout = "2s"\nidle_timeout = "2s"'))
    node = NodeProcess(config, nofile=(64, 200))  # soft 64: raised to the hard 200 at start
    clients = []
    try:
        worker = node.worker_pids()[0]
        assert limits_of(worker) == 200
        url = node.url + "/tr:w-40/coffee.jpg"
        assert (await AsyncHTTPClient().fetch(url)).code == 200  # cached: the later hit needs no file
        log_lines, cpu_before, started = len(node.log), cpu_seconds(worker), time.monotonic()
        clients = open_idle_clients(node.url, 260)  # more than the fds left: accept hits EMFILE
        await asyncio.to_thread(node.wait_for_log, "pausing accepting", 20, log_lines)
        answer = await AsyncHTTPClient().fetch(url, request_timeout=40, raise_error=False)
        elapsed = time.monotonic() - started
        assert answer.code == 200 and answer.headers["X-Cache"] == "HIT"
        cpu = cpu_seconds(worker) - cpu_before
        assert cpu < max(1.0, elapsed / 4), f"{cpu:.2f} CPU-s in {elapsed:.1f} s: the accept loop spun"
        new_lines = node.log[log_lines:]
        assert any("pausing accepting" in line for line in new_lines)
        assert len(new_lines) < 20, "".join(new_lines[:40])
    finally:
        for client in clients:
            client.close()
        assert node.stop() == 0


def memory_kb(pid: int, field: str) -> int:
    """`VmRSS`, `VmHWM` (the peak)… of process `pid`, in kB."""
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith(field + ":"))
    return int(line.split()[1])


def held_mb(pid: int, resident_kb: int, at_most: int, within: float) -> int:
    """The MB process `pid` holds over `resident_kb`, once at most `at_most`, or as it is after `within` seconds
    (a worker gives memory back as its work ends, and its heap's rest when idle)."""
    deadline = time.monotonic() + within
    while (held := (memory_kb(pid, "VmRSS") - resident_kb) // 1024) > at_most and time.monotonic() < deadline:
        time.sleep(0.1)
    return held


async def test_a_request_refused_by_send_memory_reads_no_body_from_disk(tmp_path, photos):  # noqa: F811
    """A crowd asking for a large stored output while the budget is taken reads none of it: before,
    each refused request read its 19.6 MB body from the output tier first, four at a time (one per
    cache thread), and a worker peaked hundreds of MB over `send_memory`."""
    node = NodeProcess(photos_config(tmp_path, photos, 'send_memory = "30MB"\nworkers = 1'))
    try:
        whole = await AsyncHTTPClient().fetch(node.url + "/photo.png", request_timeout=WAIT * 3)  # rendered, stored
        assert len(whole.body) > 19_000_000
        await until_stored(tmp_path / "cache", 1)
        stalled = await client_asking(node.url, "/photo.png", receive_buffer=4096)  # holds the budget
        try:
            head = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(stalled, 4096), WAIT)
            assert status(head) == 200
            [worker] = node.worker_pids()
            Path(f"/proc/{worker}/clear_refs").write_text("5")  # the peak starts again from here
            before = memory_kb(worker, "VmRSS")
            crowd = await asyncio.gather(*(exchange(node.url, b"GET /photo.png HTTP/1.1\r\nHost: a\r\n"
                                                    b"Connection: close\r\n\r\n", WAIT * 3) for _ in range(40)))
            peak = memory_kb(worker, "VmHWM")
            # what sends no body is not refused: a HEAD, a conditional request its ETag matches
            request = b"%s /photo.png HTTP/1.1\r\nHost: a\r\nConnection: close\r\n%s\r\n"
            head_answer = await exchange(node.url, request % (b"HEAD", b""), WAIT)
            unchanged = await exchange(node.url, request % (b"GET", b"If-None-Match: %s\r\n"
                                                            % whole.headers["Etag"].encode()), WAIT)
            assert status(head_answer) == 200 and b"Content-Length: %d" % len(whole.body) in head_answer
            assert status(unchanged) == 304
        finally:
            stalled.close()
        for answer in crowd:
            head, _, body = answer.partition(b"\r\n\r\n")
            assert status(answer) == 503 and b"Retry-After: 1" in head and body == b"node overloaded, retry later\n"
        assert peak - before < 20_000  # less than one body: none was read
        served = await AsyncHTTPClient().fetch(node.url + "/photo.png", request_timeout=WAIT * 3)
        assert served.body == whole.body  # once the stalled client is gone
    finally:
        assert node.stop() == 0
