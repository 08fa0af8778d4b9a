"""What a client or an origin can put in the node's diagnostic log (stderr): no line of its own, no
terminal escape, no line longer than the cap, no line per request, no query string. Most tests run
`edge serve` over loopback, send the hostile input and read the lines the node wrote; the last two put a
hostile exception and message through the node's stderr handler (`configure_logging`) in this process."""

from __future__ import annotations

import json
import logging
import re
import socket
from urllib.parse import urlsplit

import pytest
from tornado.httpclient import AsyncHTTPClient

from edge.logs import CONTINUATION, MAX_MESSAGE_CHARS, capped, configure_logging, loggable
from edge.testing import REQUEST_TIMEOUT, running_node
from tests.nodes import SAMPLES, local_config, web_config
from tests.servers import HTTPOrigin

#: how every line of the text format begins (`%(asctime)s %(levelname)s`, the time with its zone's offset)
LINE_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}[+-]\d{4} [A-Z]+ ")
#: a line that, unescaped, would pass for the node's own
FORGED = "2030-01-01 00:00:00,000 ERROR edge forged by the test"


def status_of(base_url: str, request: bytes) -> int:
    """Send `request` as it is (a client library would refuse or normalise it); the status answered."""
    address = urlsplit(base_url)
    with socket.create_connection((address.hostname, address.port), REQUEST_TIMEOUT) as connection:
        connection.sendall(request)
        return int(connection.makefile("rb").readline().split()[1])


def assert_every_line_is_the_nodes(log: list[str]) -> None:
    """Each line the node wrote starts as its format does, holds no control character and is capped."""
    for line in filter(None, log):
        assert LINE_START.match(line), line
        assert line.rstrip("\n").isprintable(), line
        assert len(line) < MAX_MESSAGE_CHARS + 200, len(line)


def test_an_s3_error_code_with_a_line_break_is_escaped_in_the_failure_line(s3, tmp_path):
    """The store's error `Code` is quoted in the origin's failure (`GetObject 'a.jpg': <Code> (HTTP 500)`):
    an XML `&#13;&#10;` in it had written a line of the store's choosing. (A code that does not look like
    one is no longer quoted at all: `unexpected code`.)"""
    s3.client().create_bucket(Bucket="log-forging")
    config = s3.origin_table("store", "log-forging") + """
[[endpoints]]
id = ""
origins = ["store"]
"""
    with running_node(config, tmp_path) as node:
        s3.faults.status = 500
        s3.faults.code = f"SlowDown&#13;&#10;{FORGED}"  # XML 1.0 has no ESC, even as &#27;
        status, _, _ = node.get("/a.jpg")
        assert status == 502
        line = node.wait_for_log(r"origin 'store' failed").string
        assert line.rstrip("\n").endswith("GetObject 'a.jpg': unexpected code (HTTP 500)")
        assert FORGED not in "".join(node.log)
        assert_every_line_is_the_nodes(node.log)


def test_a_request_tornado_refuses_is_logged_by_its_path_once_per_interval(tmp_path):
    """A form body Tornado cannot read (its 400). Tornado logged each one, by its whole target: 50 such
    requests, each with a signature and 8 kB of query, wrote 50 lines of 8 kB, each with the signature."""
    signature = "0123456789abcdef0123456789abcdef01234567"
    with running_node(local_config(), tmp_path) as node:
        for number in range(50):
            target = f"/tr:w-10/a{number}.jpg?pad={'x' * 8000}&ik-s={signature}"
            request = (f"GET {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                       "Content-Encoding: gzip\r\nContent-Length: 3\r\n\r\na=1")
            assert status_of(node.base_url, request.encode()) == 400
    refusals = [line for line in node.log if "GET /tr:w-10/a" in line]  # the log is whole: the node has exited
    assert len(refusals) == 1
    assert re.search(r" INFO edge\[\d+\] 400 Invalid body: Unsupported Content-Encoding: gzip, in GET "
                     r"/tr:w-10/a0\.jpg \(127\.0\.0\.1\)$", refusals[0].rstrip("\n"))
    assert signature not in "".join(node.log)
    assert_every_line_is_the_nodes(node.log)


def test_a_header_quoted_by_a_refusal_cannot_break_the_line(tmp_path):
    """Tornado quotes `Content-Encoding` when it cannot parse a form body: a header value may hold any byte
    from 0x80 (Latin-1), among them NEL (U+0085, a line break to Python's `splitlines` and to log shippers
    that split on Unicode line ends) and CSI (U+009B, an escape sequence to an 8-bit terminal)."""
    body = b"a=1"
    request = (b"GET /a.jpg HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
               b"Content-Encoding: gzip\x85" + FORGED.encode() + b"\x9b2J\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    with running_node(local_config(), tmp_path) as node:
        assert status_of(node.base_url, request) == 400
    [line] = [line for line in node.log if "Unsupported Content-Encoding" in line]
    assert line.rstrip("\n").endswith(
        f"Invalid body: Unsupported Content-Encoding: gzip\\x85{FORGED}\\x9b2J, in GET /a.jpg (127.0.0.1)")
    assert_every_line_is_the_nodes(node.log)


async def test_an_origin_answering_an_unusual_4xx_is_logged_once_however_many_paths_a_client_tries(tmp_path):
    """A web origin answering 414 (its URI limit, nginx's 8 kB, below the node's 32 kB) to long paths:
    30 requests of 8 kB paths had written 30 lines of 8 kB."""
    origin = await HTTPOrigin().start()
    origin.behaviour.status = 414
    client = AsyncHTTPClient()
    try:
        with running_node(web_config(origin.url), tmp_path) as node:
            for number in range(30):
                response = await client.fetch(f"{node.base_url}/{number}-{'x' * 8000}.jpg", raise_error=False)
                assert response.code == 404
    finally:
        await origin.stop()
    assert sum(origin.requests.values()) == 30
    [line] = [line for line in node.log if "answered HTTP 414" in line]  # the log is whole: the node has exited
    assert "answered HTTP 414, treated as not found (logged at most once a minute per status by each worker): '0-xxx" in line
    assert_every_line_is_the_nodes(node.log)


async def test_a_redirect_an_origin_answers_for_every_path_is_logged_once_per_interval(tmp_path):
    """An origin that sends every missing path to its home page elsewhere (a common 302): each request
    had written its own line, with the client's whole path, besides the origin's failure."""
    origin = await HTTPOrigin().start()
    paths = [f"{number}-{'x' * 8000}.jpg" for number in range(30)]
    origin.redirects = dict.fromkeys(paths, "https://www.example.com/")
    client = AsyncHTTPClient()
    try:
        with running_node(web_config(origin.url), tmp_path) as node:
            for path in paths:
                response = await client.fetch(f"{node.base_url}/{path}", raise_error=False)
                assert (response.code, response.headers["X-Edge-Error"]) == (502, "web: redirect_refused")
    finally:
        await origin.stop()
    [line] = [line for line in node.log if "refused" in line]
    assert "origin 'web' failed (redirect_refused): redirect for '0-xxxxx" in line
    assert_every_line_is_the_nodes(node.log)


async def test_stale_originals_served_while_the_origin_fails_are_logged_once_per_interval(tmp_path):
    """Every request for a stale original falls back on it while its origin fails: one line per request
    (30 in a row here) had said so, at the rate of the traffic."""
    origin = await HTTPOrigin(files={"astronaut.jpg": (SAMPLES / "astronaut.jpg").read_bytes()}).start()
    client = AsyncHTTPClient()
    config = web_config(origin.url, before='[cache]\ndir = "cache"\noriginal_ttl = "1ms"\n')
    try:
        with running_node(config, tmp_path) as node:
            assert (await client.fetch(f"{node.base_url}/tr:w-10/astronaut.jpg")).code == 200
            origin.behaviour.status = 500
            for width in range(11, 41):  # each a new output of the original, past its freshness
                response = await client.fetch(f"{node.base_url}/tr:w-{width}/astronaut.jpg")
                assert response.headers["X-Cache"] == "STALE"
    finally:
        await origin.stop()
    assert len([line for line in node.log if "using the stale original" in line]) == 1
    assert_every_line_is_the_nodes(node.log)


@pytest.mark.parametrize("proposed", ["lb-7f3a.1", "two words"])
@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_a_diagnostic_line_names_the_request_it_was_logged_for(tmp_path, log_format, proposed):
    """An on-call SRE reading an origin's failure finds the request that met it in the access log: the line names
    the request's id, the one answered in `X-Request-Id` and written in the access log (the proxy's when
    well-formed; one with a space, which could have passed for the start of the message, is made anew)."""
    origin = await HTTPOrigin().start()
    origin.behaviour.status = 500
    config = web_config(origin.url, before=f'[server]\nlog_format = "{log_format}"\n')
    try:
        with running_node(config, tmp_path) as node:
            response = await AsyncHTTPClient().fetch(f"{node.base_url}/a.jpg", headers={"X-Request-Id": proposed},
                                                     raise_error=False)
            assert response.code == 502
            request_id = response.headers["X-Request-Id"]
            assert (request_id == proposed) is (" " not in proposed)
            line = node.wait_for_log("origin 'web' failed").string
    finally:
        await origin.stop()
    if log_format == "text":
        assert re.search(rf"WARNING edge\.origin\[\d+\] request_id={re.escape(request_id)} origin 'web' failed", line)
        assert_every_line_is_the_nodes(node.log)
    else:
        assert json.loads(line)["request_id"] == request_id
        assert json.loads(node.log[0])["request_id"] is None  # the worker's start: no request's


def logged_with_traceback(capsys, log_format: str, message: str) -> str:
    """What the node's stderr handler writes for an exception (`message`) logged with its traceback."""
    configure_logging("info", log_format)
    try:
        try:
            raise ValueError(message)
        except ValueError:
            logging.getLogger("edge.server").exception("unexpected exception on %s", "/a.jpg")
        return capsys.readouterr().err
    finally:
        with capsys.disabled():  # the handler left behind writes to the real stderr, not the closed capture
            configure_logging("info", "text")


def test_a_line_break_in_an_exceptions_message_cannot_start_a_record_of_its_own(capsys):
    """A plugin's error quoting a client's path (`no such key 'a.jpg\\r\\n<forged line>'`) had been written
    as it was inside the traceback: the forged line started at column 0, a record of its own to a reader
    or a log shipper. Each line of a traceback is now escaped and indented: only a record's first line
    starts with its time."""
    written = logged_with_traceback(capsys, "text", f"no such key 'a.jpg\r\n{FORGED}\x1b[2J'")
    first, *rest = written.rstrip("\n").split("\n")
    assert LINE_START.match(first) and re.search(r"ERROR edge\.server\[\d+\] unexpected exception on /a\.jpg$", first)
    assert rest and all(line.startswith(CONTINUATION) and line.isprintable() for line in rest), rest
    # the line break still breaks the traceback's line, but the forged line is indented: a continuation
    assert rest[-2:] == [f"{CONTINUATION}ValueError: no such key 'a.jpg\\r", f"{CONTINUATION}{FORGED}\\x1b[2J'"]
    assert not any(LINE_START.match(line) for line in rest)


def test_the_json_format_keeps_a_message_as_it_was_logged(capsys):
    """JSON escapes what the text format must: a decoded message read `\\r\\n` (escaped twice) where the
    message had a line break. It is now the message itself, masked and capped as in the text format."""
    written = logged_with_traceback(capsys, "json", f"no such key 'a.jpg\r\n{FORGED}'")
    assert written.count("\n") == 1  # one object, on one line
    line = json.loads(written)
    assert line["message"] == "unexpected exception on /a.jpg"
    assert line["traceback"].endswith(f"ValueError: no such key 'a.jpg\r\n{FORGED}'")
    configure_logging("info", "json")
    try:
        logging.getLogger("edge.origin").warning("quoted: %s", "é\r\n" + "x" * 3000)
        written = capsys.readouterr().err
    finally:
        with capsys.disabled():
            configure_logging("info", "text")
    assert json.loads(written)["message"] == f"quoted: é\r\n{'x' * (MAX_MESSAGE_CHARS - 11)}… (1011 more characters)"


def test_a_message_of_max_message_chars_is_kept_whole_and_one_character_more_is_cut():
    for keep in (capped, loggable):
        assert keep("x" * MAX_MESSAGE_CHARS) == "x" * MAX_MESSAGE_CHARS
        assert keep("x" * (MAX_MESSAGE_CHARS + 1)) == "x" * MAX_MESSAGE_CHARS + "… (1 more characters)"


def test_debug_keeps_the_s3_and_http_clients_lines_out(capsys):
    """At `log_level = "debug"` botocore wrote ~50 lines a request a client chose, each request's SigV4 signature
    among them (replayable for 15 minutes) and the origin's raw answer (information probe): the libraries' loggers
    stay at INFO, the node's own debug lines are written."""
    configure_logging("debug", "text")
    try:
        logging.getLogger("botocore.endpoint").debug("Sending http request: Authorization: AWS4-HMAC-SHA256 x")
        logging.getLogger("aiohttp.client").debug("a debug line of the HTTP client")
        logging.getLogger("botocore.credentials").info("Found credentials in environment variables.")
        logging.getLogger("edge.origin").debug("the node's own debug line")
        written = capsys.readouterr().err
    finally:
        with capsys.disabled():
            configure_logging("info", "text")
    assert "AWS4-HMAC-SHA256" not in written and "HTTP client" not in written
    assert "Found credentials" in written and "the node's own debug line" in written
