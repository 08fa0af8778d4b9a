"""The `web` origin against a real HTTP server on 127.0.0.1: URL building, headers, redirects, the
not-found / error split, conditional fetches."""

import asyncio
import base64
import datetime
import ipaddress
import logging
import ssl
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from yarl import URL

from edge import pipeline
from edge.errors import ConfigError
from edge.logs import Sparse
from edge.origin import NotModified, OriginRequest, OriginSettings, Validators
from edge.settings import ConfigTable
import edge_builtin_origins.web
from edge_builtin_origins.web import RedirectPolicy, WebOrigin
from tests.assets import centre_colour, colour, same_colour, solid
from tests.nodes import SAMPLES, decode, write_config
from tests.servers import HTTPOrigin

ASTRONAUT = (SAMPLES / "astronaut.jpg").read_bytes()


async def test_a_page_in_an_images_place_is_said_in_the_log(web, node_factory, tmp_path, caplog, monkeypatch):
    """An origin answering 200 with its "not found" page had shown as 422s alone (unlucky-operator probe)."""
    monkeypatch.setattr(pipeline, "_UNREADABLE_LINES", Sparse(60.0))  # not another test's minute
    web.files["images/gone.jpg"] = web.files["images/gone2.jpg"] = b"<html>Page not found</html>"
    node = await node_factory(write_config(tmp_path, web_config(web)))
    for path in ("/tr:w-40/gone.jpg", "/tr:w-40/gone2.jpg"):
        response = await node.fetch(path)
        assert (response.code, response.body) == (422, b"unsupported or corrupt source image\n")
    said = "origin 'legacy web' answered 'gone.jpg' with 27 bytes that are no image (starting b'<html>Page not f'):"
    assert said in caplog.text and caplog.text.count("that are no image") == 1  # once a minute per origin


def self_signed_context(tmp_path: Path) -> ssl.SSLContext:
    """A server's TLS context with a certificate for 127.0.0.1 that no CA signed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return context


async def test_tls_that_fails_is_told_as_such_not_as_a_closed_port(node_factory, tmp_path, caplog):
    """A self-signed certificate, or an https:// URL on a plain HTTP port, had been logged `cannot connect to …`:
    the operator checked a port that was open (unlucky-operator probe)."""
    async def hang_up(reader, writer):
        writer.close()

    async def answer_in_plain_http(reader, writer):  # as a web server answers a TLS hello
        await reader.read(1)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()
    tls = await asyncio.start_server(hang_up, "127.0.0.1", 0, ssl=self_signed_context(tmp_path))
    port = tls.sockets[0].getsockname()[1]
    http_port = await asyncio.start_server(answer_in_plain_http, "127.0.0.1", 0)
    plain = f"https://127.0.0.1:{http_port.sockets[0].getsockname()[1]}"
    try:
        for base_url, logged in ((f"https://127.0.0.1:{port}", "does not verify (self-signed certificate): "
                                                               "SSL_CERT_FILE names the CAs trusted"),
                                 (plain, "is it an https:// port?")):
            folder = tmp_path / base_url.rsplit(":", 1)[1]
            folder.mkdir()
            node = await node_factory(write_config(folder, web_config(SimpleNamespace(url=base_url), base="")))
            response = await node.fetch("/astronaut.jpg")
            assert (response.code, response.headers["X-Edge-Error"]) == (502, "legacy web: refused")
            assert logged in caplog.text, caplog.text[-2000:]
    finally:
        for server in (tls, http_port):
            server.close()
            await server.wait_closed()


@pytest.fixture
async def web():
    origin = await HTTPOrigin(files={
        "images/astronaut.jpg": ASTRONAUT,
        "images/image+example.jpg": solid(24, 16, colour(1)),
        "images/a b.jpg": solid(24, 16, colour(2)),
        "images/folder/ü.jpg": solid(24, 16, colour(3)),
    }).start()
    yield origin
    await origin.stop()


def web_config(origin: HTTPOrigin, extra: str = "", base: str = "/images") -> str:
    return f"""
[[origins]]
name = "legacy web"
type = "web"
base_url = "{origin.url}{base}"
{extra}

[[endpoints]]
id = ""
origins = ["legacy web"]
"""


async def test_serves_base_url_plus_path_with_the_project_user_agent(web, node_factory, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_TEST_ORIGIN_TOKEN", "token-from-env")
    extra = 'headers = { "X-Origin-Token" = "${EDGE_TEST_ORIGIN_TOKEN}" }\ncanonical_base_url = "https://a.example/i"'
    node = await node_factory(write_config(tmp_path, web_config(web, extra)))
    response = await node.fetch("/tr:orig-true/astronaut.jpg", headers={"Host": "img.example.com"})
    assert response.body == ASTRONAUT
    assert response.headers["Link"] == '<https://a.example/i/astronaut.jpg>; rel="canonical"'
    seen = web.headers_seen[-1]
    assert seen["User-Agent"].startswith("edge-image-node/")
    assert seen["X-Origin-Token"] == "token-from-env"
    assert seen["Host"] == web.url.removeprefix("http://")  # not forwarded unless asked
    assert "token-from-env" not in str(node.config.describe())


async def test_forward_host(web, node_factory, tmp_path):
    node = await node_factory(write_config(tmp_path, web_config(web, "forward_host = true")))
    assert (await node.fetch("/astronaut.jpg", headers={"Host": "img.example.com"})).code == 200
    assert web.headers_seen[-1]["Host"] == "img.example.com"


@pytest.mark.parametrize("request_path, expected", [
    ("/image+example.jpg", 1),
    ("/image%2Bexample.jpg", 1),
    ("/a%20b.jpg", 2),
    ("/a+b.jpg", None),  # `+` is never a space
    ("/folder/%C3%BC.jpg", 3),
])
async def test_special_characters(web, node_factory, tmp_path, request_path, expected):
    node = await node_factory(write_config(tmp_path, web_config(web)))
    response = await node.fetch(request_path)
    if expected is None:
        assert response.code == 404
    else:
        assert same_colour(centre_colour(decode(response)), colour(expected))


async def test_follows_at_most_three_redirects(web, node_factory, tmp_path):
    web.redirects.update({"images/r1.jpg": "/images/r2.jpg", "images/r2.jpg": "r3.jpg",
                          "images/r3.jpg": f"{web.url}/images/astronaut.jpg",
                          "images/r0.jpg": "/images/r1.jpg"})
    node = await node_factory(write_config(tmp_path, web_config(web)))
    assert (await node.fetch("/tr:orig-true/r1.jpg")).body == ASTRONAUT
    too_many = await node.fetch("/r0.jpg")
    assert (too_many.code, too_many.headers["X-Edge-Error"]) == (502, "legacy web: bad_response")


async def test_origin_headers_never_follow_an_allowed_redirect_to_another_host(web, node_factory, tmp_path):
    elsewhere = await HTTPOrigin(files={"moved.jpg": ASTRONAUT}).start()
    try:
        web.redirects["images/moved.jpg"] = f"{elsewhere.url}/moved.jpg"
        extra = (f'forward_host = true\nheaders = {{ Authorization = "Bearer origin-only" }}\n'
                 f'redirect_allow = ["{elsewhere.url}"]')
        node = await node_factory(write_config(tmp_path, web_config(web, extra)))
        response = await node.fetch("/tr:orig-true/moved.jpg", headers={"Host": "img.example.com"})
        assert response.body == ASTRONAUT
        assert web.headers_seen[-1]["Authorization"] == "Bearer origin-only"
        seen = elsewhere.headers_seen[-1]
        assert "Authorization" not in seen and seen["Host"] == elsewhere.url.removeprefix("http://")
    finally:
        await elsewhere.stop()


@pytest.fixture
async def elsewhere():
    """Another server on loopback, as an internal service a redirect could point at."""
    server = await HTTPOrigin(files={"secret.jpg": ASTRONAUT}).start()
    yield server
    await server.stop()


@pytest.mark.parametrize("allow", [None, '["*"]', '["http://*.example.com"]'])
async def test_a_redirect_to_another_loopback_port_is_refused(web, elsewhere, node_factory, tmp_path, caplog, allow):
    web.redirects["images/moved.jpg"] = f"{elsewhere.url}/secret.jpg"
    web.redirects["images/by-name.jpg"] = elsewhere.url.replace("127.0.0.1", "localhost") + "/secret.jpg"
    # 127.0.0.1 as one number: aiohttp refuses the form, and it was counted as a generic `error`
    web.redirects["images/by-number.jpg"] = elsewhere.url.replace("127.0.0.1", "2130706433") + "/secret.jpg"
    extra = f"redirect_allow = {allow}" if allow else ""
    node = await node_factory(write_config(tmp_path, web_config(web, extra)))
    for path in ("/moved.jpg", "/by-name.jpg", "/by-number.jpg"):
        response = await node.fetch(path)
        assert (response.code, response.headers["X-Edge-Error"]) == (502, "legacy web: redirect_refused"), path
    assert sum(elsewhere.requests.values()) == 0  # nothing reached the other server
    assert "redirect for 'moved.jpg' to " + elsewhere.url + " refused" in caplog.text


async def test_a_wildcard_never_reaches_base_urls_host_name_on_another_port(web, elsewhere, node_factory, tmp_path,
                                                                             caplog):
    """base_url names its host (`localhost`): the origin's own address is trusted for its port only. A redirect
    through `"*"` to the same name on another port (another service of the origin's machine) had been followed."""
    web.redirects["images/moved.jpg"] = elsewhere.url.replace("127.0.0.1", "localhost") + "/secret.jpg"
    config = web_config(web, 'redirect_allow = ["*"]').replace(web.url, web.url.replace("127.0.0.1", "localhost"))
    node = await node_factory(write_config(tmp_path, config))
    assert (await node.fetch("/tr:orig-true/astronaut.jpg")).body == ASTRONAUT  # base_url's own port: trusted
    response = await node.fetch("/moved.jpg")
    assert (response.code, response.headers["X-Edge-Error"]) == (502, "legacy web: redirect_refused")
    assert sum(elsewhere.requests.values()) == 0
    assert "refused: localhost resolves to no public address" in caplog.text


@pytest.mark.parametrize("address", ["64:ff9b::a9fe:a9fe", "64:ff9b::a00:1", "::10.0.0.1", "2002:a00:1::",
                                     "::ffff:10.0.0.1", "64:ff9b:1::808:808"])
async def test_a_wildcard_never_reaches_a_private_ipv4_address_an_ipv6_one_carries(web, node_factory, tmp_path,
                                                                                   caplog, address):
    """NAT64 (169.254.169.254 as `64:ff9b::a9fe:a9fe`), 6to4 and the IPv4-compatible form carry an IPv4 address
    to a gateway that connects to it: Python counts them global, and they were followed (fleet probe)."""
    web.redirects["images/carried.jpg"] = f"http://[{address}]/latest/meta-data/"
    node = await node_factory(write_config(tmp_path, web_config(web, 'redirect_allow = ["*"]')))
    response = await node.fetch("/carried.jpg")
    assert (response.code, response.headers["X-Edge-Error"]) == (502, "legacy web: redirect_refused")
    assert "a loopback, private or link-local address not listed exactly in redirect_allow" in caplog.text


@pytest.mark.parametrize("location, where", [("file:///etc/passwd", "a file: URL"),
                                             ("gopher://127.0.0.1:70/x", "a gopher: URL"),
                                             ("data:image/jpeg;base64,/9j/4AAQ", "a data: URL")])
async def test_a_redirect_out_of_http_is_refused_in_one_line(web, node_factory, tmp_path, caplog, location, where):
    web.redirects["images/away.jpg"] = location
    node = await node_factory(write_config(tmp_path, web_config(web)))
    response = await node.fetch("/away.jpg")
    assert (response.code, response.headers["X-Edge-Error"]) == (502, "legacy web: redirect_refused")
    assert f"redirect for 'away.jpg' to {where} refused: not an http(s) URL" in caplog.text
    assert "Traceback" not in caplog.text and "unexpected error" not in caplog.text


async def test_same_origin_redirects_are_followed_and_userinfo_is_never_sent(web, elsewhere, node_factory, tmp_path):
    port = web.url.rsplit(":", 1)[1]
    web.redirects["images/with-userinfo.jpg"] = f"http://admin:hunter2@127.0.0.1:{port}/images/astronaut.jpg"
    web.redirects["images/away.jpg"] = f"http://admin:hunter2@{elsewhere.url.removeprefix('http://')}/secret.jpg"
    node = await node_factory(write_config(tmp_path, web_config(web, f'redirect_allow = ["{elsewhere.url}"]')))
    response = await node.fetch("/tr:orig-true/with-userinfo.jpg")
    assert response.body == ASTRONAUT
    assert (await node.fetch("/tr:orig-true/away.jpg")).body == ASTRONAUT
    for seen in web.headers_seen + elsewhere.headers_seen:
        assert "Authorization" not in seen
    assert len(elsewhere.headers_seen) == 1


async def test_a_cookie_the_origin_sets_never_rides_on_the_next_request(web, node_factory, tmp_path):
    """A session or tenant cookie set in one answer would reach the origin with every later client's request, and
    what it chose by it be cached for all. By host name (`localhost`): a cookie jar keeps none for an address."""
    web.behaviour.set_cookie = "tenant=first-client; Path=/"
    config = web_config(web).replace(web.url, web.url.replace("127.0.0.1", "localhost"))
    node = await node_factory(write_config(tmp_path, config))
    for name in ("astronaut.jpg", "image+example.jpg"):
        assert (await node.fetch(f"/tr:w-20/{name}")).code == 200
    assert len(web.headers_seen) == 2 and not any("Cookie" in seen for seen in web.headers_seen)


@pytest.mark.parametrize("status, logged", [(404, False), (410, False), (400, True), (405, True)])
async def test_4xx_is_not_found_and_unusual_ones_are_logged(web, node_factory, tmp_path, caplog, status, logged):
    web.behaviour.status = status
    node = await node_factory(write_config(tmp_path, web_config(web)))
    with caplog.at_level(logging.WARNING, "edge.origin.web"):
        assert (await node.fetch("/astronaut.jpg")).code == 404
    assert any(f"HTTP {status}" in r.getMessage() for r in caplog.records) == logged


async def test_an_unusual_4xx_is_logged_again_once_its_interval_has_passed(web, node_factory, tmp_path, caplog,
                                                                           monkeypatch):
    """At most once a minute per status (a client choosing paths cannot write a line per request), but not once
    for ever: an origin misconfigured again later is said again. With no interval, each answer is logged."""
    monkeypatch.setattr(edge_builtin_origins.web, "UNUSUAL_STATUS_LOG_SECONDS", 0.0)
    web.behaviour.status = 400
    node = await node_factory(write_config(tmp_path, web_config(web)))
    with caplog.at_level(logging.WARNING, "edge.origin.web"):
        for number in range(3):
            assert (await node.fetch(f"/{number}.jpg")).code == 404
    assert sum("HTTP 400" in r.getMessage() for r in caplog.records) == 3


@pytest.mark.parametrize("status, kind", [(401, "denied"), (403, "denied"), (408, "server_error"),
                                          (429, "server_error")])
async def test_a_refusal_or_a_rate_limit_is_a_failure_and_the_stale_copy_stays(web, node_factory, tmp_path,
                                                                                  status, kind):
    node = await node_factory(write_config(tmp_path, '[cache]\ndir = "cache"\noriginal_ttl = "1s"\n' + web_config(web)))
    assert (await node.fetch("/tr:w-50/astronaut.jpg")).code == 200
    node.node.clock = lambda: time.time() + 5  # the original is past its freshness
    web.behaviour.status = status
    response = await node.fetch("/tr:w-50/astronaut.jpg")
    assert (response.code, response.headers["X-Cache"]) == (200, "STALE")  # not a 404 that drops it
    assert response.headers["Cache-Control"] == "public, max-age=60"  # kept in front no longer than a 404
    refused = await node.fetch("/tr:w-60/never-asked.jpg")  # nothing stored to fall back on
    assert (refused.code, refused.headers["X-Edge-Error"]) == (502, f"legacy web: {kind}")


@pytest.mark.parametrize("status", [202, 206])
async def test_a_2xx_other_than_200_is_a_bad_response_never_the_original(web, node_factory, tmp_path, status):
    """A 206 carries part of a file, a 202 a placeholder: neither is rendered nor kept as the image."""
    node = await node_factory(write_config(tmp_path, web_config(web)))
    web.behaviour.status = status
    response = await node.fetch("/tr:w-50/astronaut.jpg")
    assert (response.code, response.headers["X-Edge-Error"]) == (502, "legacy web: bad_response")
    web.behaviour.status = None
    response = await node.fetch("/tr:w-50/astronaut.jpg")
    assert response.code == 200 and decode(response).width == 50
    assert web.requests["images/astronaut.jpg"] == 2


async def test_an_origin_failure_a_client_repeats_is_logged_once_per_interval_and_clipped(web, node_factory,
                                                                                              tmp_path, caplog):
    """A path the origin refuses (a dot file behind a deny rule) fails at every request: one line per
    origin and kind every FAILURE_LOG_SECONDS, the next one counting those left out, none longer than
    the clip however long the client's path."""
    web.behaviour.status = 403
    node = await node_factory(write_config(tmp_path, web_config(web)))
    with caplog.at_level(logging.WARNING, "edge.origin"):
        for number in range(20):
            response = await node.fetch(f"/.secret-{number}-{'x' * 20_000}.jpg")
            assert (response.code, response.headers["X-Edge-Error"]) == (502, "legacy web: denied")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("origin 'legacy web' failed")]
    assert len(lines) == 1 and lines[0].startswith("origin 'legacy web' failed (denied): ") and len(lines[0]) < 400


def test_a_credential_a_failure_quotes_is_masked_before_the_line_is_clipped():
    from edge.chain import FAILURE_LOG_CHARS
    from edge.logs import capped
    from edge.settings import Secret
    secret = "sk_live_4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"
    Secret(secret)
    line = capped("x" * (FAILURE_LOG_CHARS - 20) + f"?api_key={secret}", FAILURE_LOG_CHARS)
    assert secret[:10] not in line and line.endswith("?api_key=****")


async def test_conditional_fetch(web):
    table = ConfigTable({"base_url": web.url + "/images/"}, file="t.toml", table="origins[0]", base_dir=Path("."))
    origin = WebOrigin.from_config(OriginSettings("legacy web", "web"), table)
    await origin.open()
    try:
        original = await origin.fetch(OriginRequest("astronaut.jpg", 10**7))
        assert original.body == ASTRONAUT and original.etag
        with pytest.raises(NotModified):
            await origin.fetch(OriginRequest("astronaut.jpg", 10**7, validators=original.validators))
        assert web.headers_seen[-1]["If-None-Match"] == original.etag
    finally:
        await origin.close()


async def test_a_last_modified_alone_is_asked_with_if_modified_since_and_no_if_none_match(web):
    """An origin that sends no ETag is revalidated by its date: the stored version's `last_modified` goes back."""
    table = ConfigTable({"base_url": web.url + "/images/"}, file="t.toml", table="origins[0]", base_dir=Path("."))
    origin = WebOrigin.from_config(OriginSettings("legacy web", "web"), table)
    await origin.open()
    try:
        date = "Wed, 21 Oct 2015 07:28:00 GMT"
        original = await origin.fetch(OriginRequest("astronaut.jpg", 10**7, validators=Validators(None, date)))
        assert original.body == ASTRONAUT  # the test server compares ETags only: a 200
        seen = web.headers_seen[-1]
        assert seen["If-Modified-Since"] == date and "If-None-Match" not in seen
    finally:
        await origin.close()


def test_a_path_is_percent_encoded_once_and_a_plus_never_reads_as_a_space():
    table = ConfigTable({"base_url": "https://static.example.com/images/"}, file="t.toml", table="origins[0]",
                        base_dir=Path("."))
    origin = WebOrigin.from_config(OriginSettings("legacy web", "web"), table)
    assert str(origin.url_for("a+b c/ü%.jpg")) == "https://static.example.com/images/a%2Bb%20c/%C3%BC%25.jpg"


@pytest.mark.parametrize("target, refused", [
    ("https://cdn.example.com/a.jpg", False),
    ("https://a.b.example.com/a.jpg", False),
    # the suffix ends the host: a name that only contains it is the attacker's
    ("https://cdn.example.com.attacker.net/a.jpg", True),
    ("https://example.com.attacker.net/a.jpg", True),
    # the scheme listed is the only one: `https://*.` never lets a redirect down to plain http
    ("http://cdn.example.com/a.jpg", True),
])
def test_a_wildcard_entry_allows_its_scheme_and_hosts_ending_in_its_suffix_only(target, refused):
    policy = RedirectPolicy("https://origin.example.org/images", ("https://*.example.com",))
    assert (policy.refusal(URL(target)) is not None) == refused


@pytest.mark.parametrize("keys, message", [
    ({"base_url": "static.example.com/images"}, "base_url: expected an http:// or https:// URL"),
    ({"base_url": "https://user:pw@static.example.com"}, "base_url: expected no user:password@"),
    ({"base_url": "ftp://user:pw@static.example.com"}, "base_url: expected an http:// or https:// URL without "
                                                       "\\?query, got 'ftp://…@static.example.com'"),
    # where API keys go: it had been quoted as written
    ({"base_url": "https://static.example.com/img?apikey=SECRET"}, "base_url: expected an http:// or https:// URL "
                                                                   "without \\?query, got 'https://static.example.com"
                                                                   "/img\\?…'"),
    ({"headers": {"Host": "x"}}, "headers: 'Host' is set by the node itself"),
    ({"headers": {"Bad Name": "x"}}, "headers: 'Bad Name' is not a valid header name"),
    ({"headers": {"X-A": "1\r\nX-B: 2"}}, "headers: the value of 'X-A' contains a line break"),
    ({"headers": {"X-A": "1\nX-B: 2"}}, "headers: the value of 'X-A' contains a line break"),  # a bare LF too
    # the conditional headers are the node's own, from what it holds: a fixed one would ask for a 304 of anything
    ({"headers": {"If-None-Match": '"x"'}}, "headers: 'If-None-Match' is set by the node itself"),
    ({"forward_host": "yes"}, "forward_host: expected true, false or a list of host names, got a string"),
    ({"forward_host": ["shop.example.com:443"]}, "forward_host: 'shop.example.com:443' is not a host name"),
    ({"forward_host": [True]}, "forward_host: expected a list of strings"),
    ({"redirect_allow": ["cdn.example.com"]}, "redirect_allow: expected \"\\*\" or scheme://host"),
])
def test_config_errors_name_the_key(keys, message):
    table = ConfigTable({"base_url": "https://static.example.com", **keys}, file="t.toml", table="origins[0]",
                        base_dir=Path("."))
    with pytest.raises(ConfigError, match=f"t.toml: \\[origins\\[0\\]\\] {message}"):
        WebOrigin.from_config(OriginSettings("legacy web", "web"), table)


@pytest.mark.parametrize("path", ["/../private.jpg", "/%2e%2e/private.jpg", "/x/%2E%2E/%2e%2e/private.jpg",
                                  "/tr:w-10/./../private.jpg",
                                  # a server on Windows (IIS, nginx) reads `\` and `%5C` as `/`: these had
                                  # been asked for as /images/..%5Cprivate.jpg
                                  "/..%5Cprivate.jpg", "/x%5C..%5C..%5Cprivate.jpg", "/tr:w-10/x\\..\\..\\private.jpg",
                                  "/.%5Cprivate.jpg"])
async def test_dot_segments_never_climb_out_of_the_base_url(web, node_factory, tmp_path, path):
    web.files["private.jpg"] = ASTRONAUT  # on the origin server, but outside base_url's /images
    node = await node_factory(write_config(tmp_path, web_config(web)))
    response = await node.fetch(path)
    assert (response.code, response.body) == (404, b"not found\n")
    assert sum(web.requests.values()) == 0  # refused before any origin was asked


CLIMBING = base64.b64encode(b"..\\private.jpg").decode()  # `..\private.jpg`, for `ie-`


@pytest.mark.parametrize("path", [f"/tr:l-image,ie-{CLIMBING},l-end/astronaut.jpg",
                                  "/tr:l-image,i-x%5C..%5C..%5Cprivate.jpg,l-end/astronaut.jpg",
                                  "/tr:di-..%5Cprivate.jpg/missing.jpg"])
async def test_a_layer_or_default_image_with_a_backslash_dot_segment_is_refused(web, node_factory, tmp_path, path):
    """`i-`/`ie-` and `di-` paths are held to the main path's rule: `..\\private.jpg` had been fetched."""
    web.files["private.jpg"] = ASTRONAUT
    node = await node_factory(write_config(tmp_path, web_config(web)))
    response = await node.fetch(path)
    assert response.code == 400 and b"must be" in response.body, response.body
    assert sum(web.requests.values()) == 0
