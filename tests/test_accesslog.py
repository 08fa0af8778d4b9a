"""The access log: one parseable JSON line per request, never a query string; who asked (the client
behind a trusted proxy, user agent, referer, host), the request id, and why an error was answered."""

import asyncio
import fcntl
import http.client
import json
import os
import re
import subprocess
import sys
import threading
from json.encoder import encode_basestring_ascii as json_string

import pytest

from edge.accesslog import ATOMIC_WRITE, FIELD_BYTES, MAX_PENDING_BYTES, AccessLog, client_address, request_id
from edge.config import load_config
from edge.pluginmanager import load_plugins
from edge.testing import ServingNode
from tests.nodes import NodeProcess, local_config, web_config, write_config
from tests.scrape import total
from tests.servers import HTTPOrigin

PROXY = "127.0.0.0/8"
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux's fcntl number (Python 3.10+ names it)


def logged(node, capsys) -> list[dict]:
    node.node.access_log.flush()
    assert node.node.access_log.written(10)
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


async def test_one_json_line_per_request_without_the_query(node_factory, tmp_path, capsys):
    node = await node_factory(write_config(tmp_path, local_config()))
    await node.fetch("/tr:w-20/coffee.jpg?ik-s=secret-signature&tr=h-10")
    await node.fetch("/tr:w-20/coffee.jpg?ik-s=secret-signature&tr=h-10")
    await node.fetch('/tr:w-20/"missing".jpg')
    await node.fetch("/_edge/health")  # probes are not logged by default
    await node.fetch("/metrics")
    out = logged(node, capsys)
    assert "secret-signature" not in json.dumps(out)
    assert [(r["path"], r["status"], r.get("cache")) for r in out] == [
        ("/tr:w-20/coffee.jpg", 200, "miss"),
        ("/tr:w-20/coffee.jpg", 200, "hit"),
        ('/tr:w-20/"missing".jpg', 404, "error"),
    ]
    miss, hit, missing = out
    assert miss["endpoint"] == "default" and miss["origin"] == "samples" and miss["method"] == "GET"
    assert hit["bytes"] == miss["bytes"] > 0
    assert missing["origin"] is None and missing["bytes"] == 0 and missing["error"] == "not_found"
    assert miss["error"] is None
    assert all(r["duration_ms"] >= 0 and r["time"] > 1e9 for r in out)


async def test_an_error_answer_is_labelled_error_whoever_made_it(node_factory, tmp_path, capsys):
    """Tornado's 405 and a 412 had been a `miss` and a `hit` in the log and the latency histogram (SRE probe)."""
    node = await node_factory(write_config(tmp_path, local_config()))
    assert (await node.fetch("/tr:w-20/coffee.jpg")).code == 200
    assert (await node.fetch("/tr:w-20/coffee.jpg", method="POST", body=b"x")).code == 405
    assert (await node.fetch("/tr:w-20/coffee.jpg", headers={"If-Match": '"nope"'})).code == 412
    assert [(r["status"], r["cache"]) for r in logged(node, capsys)] == [(200, "miss"), (405, "error"), (412, "error")]
    exposition = node.node.metrics.exposition().decode()
    assert total(exposition, "edge_http_request_duration_seconds_count", cache="error") == 2


async def test_every_error_answer_names_its_kind(node_factory, tmp_path, capsys):
    """A storm of 400s or 401s (a tightened limit, a signing key changed) is told apart in the access log:
    their `error` had been `null`, the kinds of 404s and 5xx alone named."""
    signed = '[[endpoints]]\nid = "s"\norigins = ["samples"]\nprivate_key = "k3y-0123456789"\nsigned_only = true\n'
    node = await node_factory(write_config(tmp_path, local_config(before='[limits]\nmax_cost = 50\n', after=signed)))
    answers = [await node.fetch(path) for path in (
        "/tr:w-x/coffee.jpg", "/tr:w-8000,h-8000,c-force/coffee.jpg", "/s/tr:w-20/coffee.jpg",
        "/s/tr:w-20/coffee.jpg?ik-s=" + "0" * 40)]
    kinds = ["invalid_transformation", "bad_request", "missing_signature", "invalid_signature"]
    assert [(a.code, a.headers.get("X-Edge-Error")) for a in answers] == list(zip((400, 400, 401, 401), kinds))
    assert [r["error"] for r in logged(node, capsys)] == kinds


async def test_who_asked_and_the_request_id(node_factory, tmp_path, capsys):
    node = await node_factory(write_config(tmp_path, local_config(before=f'[server]\ntrusted_proxies = ["{PROXY}"]\n')))
    kept = await node.fetch("/tr:w-20/coffee.jpg", headers={
        "X-Forwarded-For": "203.0.113.9, 198.51.100.7, 127.0.0.5", "X-Request-Id": "proxy-id-42",
        "User-Agent": "Mozilla/5.0 (test)", "Referer": "https://shop.example/p/1?session=secret-session-1",
        "Host": "img.example.com"})
    made_up = await node.fetch("/tr:w-20/gone.jpg", headers={"X-Request-Id": "not ok\u00e9" + "x" * 200})
    assert kept.headers["X-Request-Id"] == "proxy-id-42"
    generated = made_up.headers["X-Request-Id"]
    assert len(generated) == 32 and int(generated, 16) >= 0 and made_up.code == 404
    first, second = logged(node, capsys)
    assert (first["client"], first["user_agent"], first["referer"], first["host"], first["request_id"]) == (
        "198.51.100.7", "Mozilla/5.0 (test)", "https://shop.example/p/1", "img.example.com", "proxy-id-42")
    assert second["request_id"] == generated and second["client"] == "127.0.0.1" and second["referer"] is None


async def test_a_hit_answered_from_memory_is_logged_with_the_client_behind_the_proxy_and_its_time(
        node_factory, tmp_path, capsys):
    """The third fetch is a fresh memory-tier hit, which edge/hits.py answers and logs before the application:
    the same client (`X-Forwarded-For` from a trusted proxy) as the handler logs, and the time it took."""
    node = await node_factory(write_config(tmp_path, local_config(before=f'[server]\ntrusted_proxies = ["{PROXY}"]\n')))
    for _ in range(3):
        await node.fetch("/tr:w-20/coffee.jpg", headers={"X-Forwarded-For": "203.0.113.9"})
    lines = logged(node, capsys)
    assert [(line["cache"], line["client"]) for line in lines] == [("miss", "203.0.113.9"), ("hit", "203.0.113.9"),
                                                                     ("hit", "203.0.113.9")]
    assert all(line["duration_ms"] > 0 for line in lines)


async def test_forwarded_for_is_ignored_from_an_untrusted_peer(node_factory, tmp_path, capsys):
    node = await node_factory(write_config(tmp_path, local_config(before='[server]\ntrusted_proxies = ["10.0.0.0/8"]\n')))
    await node.fetch("/_edge/purge", method="POST", body=b"{}", headers={"X-Forwarded-For": "203.0.113.9"})
    (line,) = logged(node, capsys)
    assert line["client"] == "127.0.0.1" and line["path"] == "/_edge/purge" and line["status"] == 404


async def test_probes_are_logged_when_asked(node_factory, tmp_path, capsys):
    node = await node_factory(write_config(tmp_path, local_config(before="[server]\naccess_log_probes = true\n")))
    for path in ("/_edge/health", "/_edge/ready", "/metrics"):
        await node.fetch(path)
    assert [line["path"] for line in logged(node, capsys)] == ["/_edge/health", "/_edge/ready", "/metrics"]


@pytest.mark.parametrize("peer, forwarded, client", [
    ("127.0.0.1", None, "127.0.0.1"),
    ("127.0.0.1", "203.0.113.9", "203.0.113.9"),
    ("192.0.2.1", "203.0.113.9", "192.0.2.1"),  # not a trusted proxy: its header is not believed
    ("127.0.0.1", "spoofed, 203.0.113.9", "203.0.113.9"),  # left of the client: whatever it wrote
    ("127.0.0.1", "203.0.113.9, garbage", "127.0.0.1"),  # the proxy's own entry is garbage: the peer
    ("127.0.0.1", "2001:db8::1", "2001:db8::1"),
    ("127.0.0.1", "127.0.0.2, 127.0.0.3", "127.0.0.2"),  # every hop trusted: the leftmost
    ("127.0.0.1", ",".join(["203.0.113.1"] * 10000), "203.0.113.1"),
    # only the rightmost MAX_FORWARDED_HOPS (16) entries are looked at: 16 trusted hops, the leftmost of them
    ("127.0.0.1", "203.0.113.9, " + ", ".join(f"127.0.0.{hop}" for hop in range(2, 18)), "127.0.0.2"),
])
def test_client_address(tmp_path, peer, forwarded, client):
    trusted = load_config(write_config(tmp_path, local_config(before=f'[server]\ntrusted_proxies = ["{PROXY}"]\n')),
                          load_plugins(), environ={}).server.trusted_proxies
    assert client_address(peer, forwarded, trusted) == client


@pytest.mark.parametrize("proposed, kept", [
    ("0f8fad5b-d9cb-469f-a165-70867728950e", True), ("a" * 128, True), ("a" * 129, False), ("", False),
    (None, False), ("two words", False), ('quote"', False), ("new\nline", False)])
def test_request_ids_from_the_proxy_are_kept_only_when_well_formed(proposed, kept):
    assert (request_id(proposed) == proposed) is kept


def test_forked_workers_make_different_request_ids():
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # a worker, as the supervisor forks them
        os.write(writer, request_id(None).encode())
        os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    with os.fdopen(reader) as pipe:
        theirs = pipe.read()
    ours = request_id(None)
    assert len(theirs) == len(ours) == 32 and theirs != ours and int(ours, 16) >= 0


def test_a_stalled_reader_of_standard_output_holds_no_request(tmp_path):
    """`edge serve | tee` with tee stuck, a journald or log driver that stops reading: the pipe fills, and
    the access log's write had held the event loop, so that the worker answered no one. Lines that do
    not fit are dropped and counted; once the reader reads again, the log goes on and says how many."""
    reader, writer = os.pipe()
    fcntl.fcntl(writer, F_SETPIPE_SZ, 4096)  # the smallest pipe: a few lines fill it
    try:
        process = NodeProcess(write_config(tmp_path, local_config()), "--workers", "1", stdout=writer)
    finally:
        os.close(writer)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", int(process.url.rpartition(":")[2]), timeout=30)
        # ~900 bytes a line: past MAX_PENDING_BYTES, with what the pipe took
        statuses = []
        for n in range(2 * MAX_PENDING_BYTES // 900):
            connection.request("GET", f"/tr:w-{20 + n % 4}/coffee.jpg", headers={"User-Agent": "a" * 500})
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
        connection.close()
        assert set(statuses) == {200}
        drained = []
        draining = threading.Thread(target=lambda: drained.extend(iter(lambda: os.read(reader, 65536), b"")))
        draining.start()  # the reader reads again, until the node exits
        node = ServingNode(process)
        node.get("/tr:w-20/coffee.jpg", headers={"User-Agent": "after"})
        dropped = process.wait_for_log(r"access log: (\d+) line\(s\) dropped before these")
        # said at the first drop too, and counted: a reader gone for good writes nothing again, so nothing more
        process.wait_for_log(r"access log: standard output does not take its lines")
        metrics = node.get("/metrics")[2].decode()
        assert f"edge_access_log_dropped_lines_total {float(dropped.group(1))}" in metrics
    finally:
        process.stop()
        os.close(reader)
    draining.join(10)
    lines = b"".join(drained).decode().splitlines()
    assert json.loads(lines[-1])["user_agent"] == "after" and len(lines) <= len(statuses)


def test_a_line_of_the_longest_fields_is_one_atomic_write():
    """Every field is bounded as written (escapes count: an ESC is 6 bytes, an emoji 12), so a line always
    fits one write that a pipe keeps whole."""
    log = AccessLog(True)
    hostile = "\x1b😀" * 20000
    scoped = "fe80::1%" + "A" * 20000  # a trusted proxy's X-Forwarded-For may name a scope of any length
    log.write(hostile, hostile, 200, 1.5, scoped, hostile, hostile, hostile, "r" * 128, hostile, hostile, "hit",
              10**12, hostile)
    line = log._lines[0]
    assert len(line.encode()) + 1 <= ATOMIC_WRITE and json.loads(line)["path"].startswith("\x1b😀\x1b")
    # each field within its own bound as written, and cut no shorter than its last whole escapes require
    written = {name: len(json_string(value)) for name, value in json.loads(line).items() if name in FIELD_BYTES}
    assert all(FIELD_BYTES[name] - 24 <= length <= FIELD_BYTES[name] for name, length in written.items()), written


def test_workers_sharing_a_stalled_pipe_write_whole_lines(tmp_path):
    """Two workers' batches (tens of kB) written to one pipe whose reader stalled: a write larger than the
    pipe takes whole was split as the reader drained it and spliced into the other worker's, and about one
    line in a hundred was no JSON. Batches are now written in whole lines of at most `ATOMIC_WRITE` bytes."""
    reader, writer = os.pipe()
    fcntl.fcntl(writer, F_SETPIPE_SZ, 4096)
    try:
        process = NodeProcess(write_config(tmp_path, local_config()), "--workers", "2", stdout=writer)
    finally:
        os.close(writer)
    drained = []
    draining = threading.Thread(target=lambda: drained.extend(iter(lambda: os.read(reader, 65536), b"")))
    try:
        port = int(process.url.rpartition(":")[2])
        for n in range(600):  # ~800 bytes a line, a connection each (both workers answer)
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("GET", f"/tr:w-{20 + n % 4}/coffee.jpg", headers={"User-Agent": f"{n:04}" + "a" * 900})
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            connection.close()
    finally:
        draining.start()  # the reader reads again, until the node exits
        process.stop()
        draining.join(30)
        os.close(reader)
    parsed = [json.loads(line) for line in b"".join(drained).decode().splitlines()]  # every line whole
    assert sorted(int(entry["user_agent"][:4]) for entry in parsed) == list(range(600))


FILLS_MID_LINE = '''
import logging, resource, signal, sys
from edge.accesslog import AccessLog
logging.basicConfig(format="%(message)s")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails (EFBIG), as on a full disk
dropped = []
log = AccessLog(True, open(sys.argv[1], "w"), dropped=dropped.append)
def lines(count, first):
    for number in range(first, first + count):
        log.write("GET", f"/tr:w-{number}/a.jpg", 200, 0.01, "127.0.0.1", "h", "ua", None, "id")
    log.flush()
    assert log.written(10)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (10_007, hard))  # the file's limit falls within a line
lines(100, 0)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space again
lines(10, 1000)
print(sum(dropped))
'''


def test_a_disk_that_fills_mid_line_leaves_whole_lines_after_it(tmp_path):
    """A write a full disk cut short in the middle of a line left it without its end, and the next line written once
    there was space again was spliced onto it: neither parsed. And the lines written before the failure were counted
    dropped with the rest of their batch. A file size limit (RLIMIT_FSIZE) fails the writes as a full disk does."""
    out = tmp_path / "access.log"
    run = subprocess.run([sys.executable, "-c", FILLS_MID_LINE, str(out)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    text = out.read_text()
    assert text.endswith("\n")
    parsed, broken = [], []
    for line in text.splitlines():
        try:
            parsed.append(json.loads(line)["path"])
        except json.JSONDecodeError:
            broken.append(line)
    assert len(broken) == 1 and len(text.encode()) > 10_007  # the line cut short, ended
    written = len(parsed) - 10  # of the first 100
    assert parsed == [f"/tr:w-{n}/a.jpg" for n in (*range(written), *range(1000, 1010))]
    dropped = re.findall(r"access log: (\d+) line\(s\) dropped before these", run.stderr)
    assert 0 < written < 100 and dropped == [str(100 - written)], run.stderr
    assert run.stdout == f"{100 - written}\n"  # counted as dropped, for the metric
    assert run.stderr.count("access log: standard output does not take its lines") == 1  # at the first failure


async def test_an_original_that_is_no_image_is_logged_with_the_origin_that_gave_it(node_factory, tmp_path, capsys):
    """An origin answering 200 with an HTML page (a login page, an error page): the 422 had been logged with no
    origin, nothing telling which origin of an endpoint's chain serves pages for images."""
    origin = await HTTPOrigin(files={"photo.jpg": b"<!doctype html><title>Sign in</title>"}).start()
    try:
        node = await node_factory(write_config(tmp_path, web_config(origin.url)))
        assert (await node.fetch("/tr:w-20/photo.jpg")).code == 422
        (line,) = logged(node, capsys)
        assert (line["status"], line["error"], line["origin"]) == (422, "unprocessable", "web")
    finally:
        await origin.stop()


async def test_the_credentials_of_a_url_are_masked(node_factory, tmp_path, capsys):
    """An absolute-form target or a referer may carry a user and password (a client's: the node's log is not the
    place for them). They had been logged as sent (log probe); a path's own `@` stays."""
    node = await node_factory(write_config(tmp_path, local_config()))
    host, port = node.url.removeprefix("http://").split(":")
    for target in ("http://u:PW-one@h/a.jpg?x=1", "user:PW-two@h:443"):
        reader, writer = await asyncio.open_connection(host, int(port))
        method = "CONNECT" if "://" not in target else "GET"
        writer.write(f"{method} {target} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        assert (await asyncio.wait_for(reader.read(), 10)).startswith(b"HTTP/1.1 4")
        writer.close()
    await node.fetch("/tr:w-20/at@sign.jpg", headers={"Referer": "https://me:PW-three@shop.example/p/1?s=2"})
    out = logged(node, capsys)
    assert "PW-" not in json.dumps(out)
    assert [(r["path"], r["referer"]) for r in out] == [
        ("http://****@h/a.jpg", None), ("****@h:443", None), ("/tr:w-20/at@sign.jpg", "https://****@shop.example/p/1")]


async def test_what_a_client_sent_in_utf_8_is_logged_as_it_wrote_it(node_factory, tmp_path, capsys):
    """Tornado reads the request line and headers as Latin-1: a user agent in UTF-8 and a path typed with its accents
    were logged as mojibake (`cafÃ©`; log probe). A byte that is no UTF-8 is written as its escape, and a backslash
    as its own (`\\x5c`, as nginx does): the text `\\xe9` sent as it is had been logged as the byte was."""
    node = await node_factory(write_config(tmp_path, local_config()))
    host, port = node.url.removeprefix("http://").split(":")
    for path, agent in (("/tr:w-20/café.jpg".encode(), "Mozilla/5.0 (日本語; ü)".encode()),
                        (b"/tr:w-20/caf\xe9.jpg", b"agent \xe9\xff"), (b"/tr:w-20/caf\\xe9.jpg", b"agent \\xe9\\")):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: h\r\nUser-Agent: " + agent
                     + b"\r\nConnection: close\r\n\r\n")
        await writer.drain()
        assert (await asyncio.wait_for(reader.read(), 10)).startswith(b"HTTP/1.1 40")  # not found; not UTF-8
        writer.close()
    first, second, third = logged(node, capsys)
    assert (first["path"], first["user_agent"]) == ("/tr:w-20/café.jpg", "Mozilla/5.0 (日本語; ü)")
    assert (second["path"], second["user_agent"]) == ("/tr:w-20/caf\\xe9.jpg", "agent \\xe9\\xff")
    assert (third["path"], third["user_agent"]) == ("/tr:w-20/caf\\x5cxe9.jpg", "agent \\x5cxe9\\x5c")
