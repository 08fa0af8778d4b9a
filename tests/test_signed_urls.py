"""Signed URLs: the official ImageKit SDK (`imagekitio`) signs, a real node verifies before any cache lookup."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import json
import shutil
import subprocess
import sys
import time
from urllib.parse import quote, urlsplit

import pytest
from imagekitio import ImageKit

from edge import cli, signing
from tests.nodes import SAMPLES, decode, exchange, write_config
from tests.scrape import samples, scrape

KEY = "private_key_live_3f9c-not-in-any-output"
OLD_KEY = "private_key_old_77a1-not-in-any-output"
HOST = "img.example.test"
#: a file name with a space and non-ASCII characters, in a folder with both
ODD_NAME = "dossier été/my photo é ü.jpg"
CONFIG = f"""
[named_transformations]
thumb = "w-40"

[[origins]]
name = "photos"
type = "local"
root = "photos"

[[endpoints]]
id = "signed"
hosts = ["{HOST}"]
origins = ["photos"]
private_key = "${{EDGE_TEST_KEY}}"
previous_private_keys = ["${{EDGE_TEST_OLD_KEY}}"]
signed_only = true

[[endpoints]]
id = "named"
origins = ["photos"]
private_key = "${{EDGE_TEST_KEY}}"
named_only = true

[[endpoints]]
id = ""
origins = ["photos"]
"""


@pytest.fixture
def config_path(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_TEST_KEY", KEY)
    monkeypatch.setenv("EDGE_TEST_OLD_KEY", OLD_KEY)
    photos = tmp_path / "photos"
    (photos / ODD_NAME).parent.mkdir(parents=True)
    shutil.copy(SAMPLES / "coffee.jpg", photos / "coffee.jpg")
    shutil.copy(SAMPLES / "camera.jpg", photos / "camera.jpg")
    shutil.copy(SAMPLES / "chelsea.jpg", photos / ODD_NAME)
    return write_config(tmp_path, CONFIG)


@pytest.fixture
async def node(node_factory, config_path):
    return await node_factory(config_path)


def sdk_url(base: str, src: str, *, key: str = KEY, width: int = 100, position: str = "query",
            **options) -> str:
    """What an application's server writes into a page: the SDK's signed URL."""
    transformation = [{"width": width}] if width else None
    return ImageKit(private_key=key).helper.build_url(
        src=src, url_endpoint=base, transformation=transformation, transformation_position=position,
        signed=True, **options)


async def get(node, url: str, host: str | None = None):
    """Request `url` (any scheme and host: what is sent is its path and query) from the node."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    return await node.fetch(target, headers={"Host": host} if host else None)


async def served_width(node, url: str, host: str | None = None) -> int:
    response = await get(node, url, host)
    assert response.code == 200, (url, response.code, response.body)
    return decode(response).width


async def refused(node, url: str, reason: str, host: str | None = None) -> None:
    response = await get(node, url, host)
    assert (response.code, response.body) == (401, f"{reason} signature\n".encode()), url
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("position", ["query", "path"])
async def test_sdk_signed_urls_are_served(node, position):
    identifier = "https://node.example.test/signed"
    host = f"https://{HOST}"
    for base, host_header in ((identifier, None), (host, HOST)):
        for expiry in ({}, {"expires_in": 300}):
            for src, width in (("/coffee.jpg", 100), (ODD_NAME, 60), ("/coffee.jpg", 0)):
                url = sdk_url(base, src, width=width, position=position, **expiry)
                assert ("ik-t=" in url) == bool(expiry)
                assert await served_width(node, url, host_header) == (width or 600), url


async def test_a_path_encoded_whole_as_imagekit_advises_is_served(node):
    """ImageKit's signed-URL docs sign `encodeURIComponent("/image.jpg")`: the path starts `%2F`."""
    base = "https://node.example.test/signed"
    url = sdk_url(base, f"{base}/%2Fcoffee.jpg", width=100)
    assert "/signed/%2Fcoffee.jpg?tr=w-100&ik-s=" in url
    assert await served_width(node, url) == 100


def signed_as_written(base: str, unencoded: str, expires_at: int = 9999999999) -> str:
    """A signed URL as imagekitio before 5 writes it: signed over the path as given, not encoded (its
    `Url.get_signature`: HMAC-SHA1 of the URL past `url_endpoint/`, then the expiry); what a browser
    sends for it is that path percent-encoded."""
    digest = hmac.new(KEY.encode(), (unencoded + str(expires_at)).encode(), hashlib.sha1).hexdigest()
    expiry = "" if expires_at == 9999999999 else f"ik-t={expires_at}&"
    path, _, query = unencoded.partition("?")
    return f"{base}/{quote(path)}?{query + '&' if query else ''}{expiry}ik-s={digest}"


async def test_a_url_signed_over_its_unencoded_path_is_served_as_the_browser_encodes_it(node):
    """imagekitio before 5 signed `dossier été/my photo é ü.jpg` as written, and the browser asks for
    `dossier%20%C3%A9t%C3%A9/…`: refused as an invalid signature by the exact comparison alone."""
    base = "https://node.example.test/signed"
    for unencoded in (f"{ODD_NAME}?tr=w-60", f"tr:w-60/{ODD_NAME}"):
        assert await served_width(node, signed_as_written(base, unencoded)) == 60
        assert await served_width(node, signed_as_written(base, unencoded, int(time.time()) + 300)) == 60
    # an encoded slash is not a slash: the signature of `dossier été/…` does not verify `dossier%20été%2F…`
    url = signed_as_written(base, f"{ODD_NAME}?tr=w-60").replace("%C3%A9/my", "%C3%A9%2Fmy")
    await refused(node, url, "invalid")


async def test_a_signature_never_serves_the_file_named_by_its_url_encoded_once_more(node, config_path):
    """The path as written (every escape decoded) is tried for the SDKs before imagekitio 5; a URL sent once more
    encoded decoded to the text a later SDK signs, and was served as another file: `my%2520photo.jpg` took the
    signature of `my photo.jpg` (sent `my%20photo.jpg`) to the file named `my%20photo.jpg`, and `coffee.jpg%3Ftr=
    w-100` that of a 100 px `coffee.jpg` to the file `coffee.jpg?tr=w-100`, whole."""
    photos = config_path.parent / "photos"
    shutil.copy(SAMPLES / "coffee.jpg", photos / "my photo.jpg")
    shutil.copy(SAMPLES / "camera.jpg", photos / "my%20photo.jpg")
    shutil.copy(SAMPLES / "chelsea.jpg", photos / "coffee.jpg?tr=w-100")
    base = "https://node.example.test/signed"
    spaced = sdk_url(base, "/my photo.jpg", width=60)
    assert "/signed/my%20photo.jpg?tr=w-60&ik-s=" in spaced and await served_width(node, spaced) == 60
    await refused(node, spaced.replace("my%20photo", "my%2520photo"), "invalid")
    small = sdk_url(base, "/coffee.jpg", width=100)
    await refused(node, small.replace("coffee.jpg?tr=w-100&", "coffee.jpg%3Ftr=w-100?"), "invalid")
    # the SDKs before 5 sign a path as written: still served as the browser sends it
    assert await served_width(node, signed_as_written(base, "tr:w-60/my photo.jpg")) == 60


async def test_a_transformation_in_the_path_and_the_query_together(node):
    url = sdk_url("https://node.example.test/signed", "/coffee.jpg", width=100, position="path",
                  query_parameters={"tr": "rt-90", "v": "2"})
    assert "/tr:w-100/coffee.jpg?tr=rt-90&v=2&ik-s=" in url
    response = await get(node, url)
    assert response.code == 200
    assert (decode(response).width, decode(response).height) == (67, 100)  # resized, then rotated


async def test_tampered_wrong_key_and_expired_urls_are_refused(node):
    base = "https://node.example.test/signed"
    good = sdk_url(base, "/coffee.jpg", width=100)
    assert await served_width(node, good) == 100
    await refused(node, sdk_url(base, "/coffee.jpg", key="some-other-key"), "invalid")
    await refused(node, good.replace("coffee.jpg", "camera.jpg"), "invalid")  # tampered path
    await refused(node, good.replace("w-100", "w-1000"), "invalid")  # tampered transformation
    # a path encoded otherwise is the same path decoded (as older SDKs signed it); the query is signed as sent
    assert await served_width(node, good.replace("coffee", "coff%65e")) == 100
    await refused(node, good.replace("tr=w-100", "tr=w%2D100"), "invalid")
    await refused(node, good.replace("?tr=", "?v=2&tr="), "invalid")  # a parameter added after signing
    await refused(node, good + "&ik-s=" + "0" * 40, "invalid")  # two signatures
    signature = good.split("ik-s=")[1]
    await refused(node, good.replace(signature, signature.upper()), "invalid")
    await refused(node, good.split("&ik-s=")[0], "missing")  # unsigned on a signed_only endpoint
    await refused(node, good.split("?")[0], "missing")
    await refused(node, f"/signed/ik-s={signature}/coffee.jpg", "missing")  # a path segment is no signature
    await refused(node, "/signed/coffee.jpg?ik-t=9999999999", "invalid")

    expiring = sdk_url(base, "/coffee.jpg", width=100, expires_in=60)
    response = await get(node, expiring)
    assert response.code == 200 and decode(response).width == 100
    # caches in front must not serve it past its expiry
    max_age = int(response.headers["Cache-Control"].removeprefix("public, max-age="))
    assert 0 < max_age <= 60
    assert (await get(node, good)).headers["Cache-Control"] == "public, max-age=31536000"
    expiry = int(expiring.split("ik-t=")[1].split("&")[0])
    await refused(node, expiring.replace(f"ik-t={expiry}", f"ik-t={expiry + 3600}"), "invalid")  # moved expiry
    await refused(node, expiring.replace(f"ik-t={expiry}&", ""), "invalid")  # expiry removed
    # a second expiry after the signed one: whoever reads the last (a proxy, a log reader) sees one that never comes
    await refused(node, expiring + "&ik-t=9999999999", "invalid")
    node.node.clock = lambda: time.time() + 120
    await refused(node, expiring, "expired")
    await refused(node, expiring.replace(f"ik-t={expiry}", "ik-t=x"), "invalid")
    node.node.clock = time.time
    # a digit of the URL moved into the expiry, or one of the expiry into the URL: the same signed bytes
    await refused(node, expiring.replace(f"w-100&ik-t={expiry}", f"w-10&ik-t=0{expiry}"), "invalid")
    await refused(node, expiring.replace(f"w-100&ik-t={expiry}", f"w-100{str(expiry)[0]}&ik-t={str(expiry)[1:]}"),
                  "invalid")
    await refused(node, good.replace("w-100&", "w-10&ik-t=09999999999&"), "invalid")  # and never expiring
    await refused(node, good.replace("w-100&", "w-1&ik-t=009999999999&"), "invalid")

    metrics = await scrape(node.url)
    assert samples(metrics, "edge_signature_refusals_total", endpoint="signed") == {
        (("endpoint", "signed"), ("reason", "expired")): 1,
        (("endpoint", "signed"), ("reason", "invalid")): 16,
        (("endpoint", "signed"), ("reason", "missing")): 3,
    }
    assert samples(metrics, "edge_signature_refusals_total", endpoint="named") == {
        (("endpoint", "named"), ("reason", reason)): 0 for reason in signing.REASONS}
    assert not samples(metrics, "edge_signature_refusals_total", endpoint="default")
    assert samples(metrics, "edge_http_requests_total", endpoint="signed", status="401") == {
        (("endpoint", "signed"), ("status", "401")): 20}


async def test_a_served_signed_url_never_lets_the_unsigned_url_through(node):
    url = sdk_url(f"https://{HOST}", "/coffee.jpg", width=120)
    for cache in ("MISS", "HIT"):
        response = await get(node, url, HOST)
        assert (response.code, response.headers["X-Cache"]) == (200, cache)
    await refused(node, url.split("&ik-s=")[0], "missing", HOST)
    # the same output through the identifier: cached, but still behind the check
    await refused(node, "/signed/coffee.jpg?tr=w-120", "missing")
    await refused(node, "/signed/tr:w-120/coffee.jpg", "missing")


async def test_a_previous_key_verifies_during_a_rotation(node):
    base = "https://node.example.test/signed"
    assert await served_width(node, sdk_url(base, "/coffee.jpg", key=OLD_KEY, width=90)) == 90
    assert await served_width(node, sdk_url(base, "/coffee.jpg", key=OLD_KEY, width=90, expires_in=60)) == 90
    await refused(node, sdk_url(base, "/coffee.jpg", key="retired-key", width=90), "invalid")


async def test_query_parameters_are_signed_in_the_order_written(node):
    """The SDK signs `?v=2&a=1&tr=w-100` as it wrote it: the same parameters in another order are another text, and
    its signature does not verify them."""
    url = sdk_url("https://node.example.test/signed", "/coffee.jpg", width=100, query_parameters={"v": "2", "a": "1"})
    assert "/signed/coffee.jpg?v=2&a=1&tr=w-100&ik-s=" in url
    assert await served_width(node, url) == 100
    await refused(node, url.replace("v=2&a=1&", "a=1&v=2&"), "invalid")


async def test_a_url_is_expired_from_the_second_its_ik_t_names(node):
    """`ik-t` must be in the future by the node's clock: at that very second the URL is refused."""
    url = sdk_url("https://node.example.test/signed", "/coffee.jpg", width=100, expires_in=60)
    expiry = int(url.split("ik-t=")[1].split("&")[0])
    node.node.clock = lambda: expiry - 0.5
    assert await served_width(node, url) == 100
    node.node.clock = lambda: float(expiry)
    await refused(node, url, "expired")


async def test_a_signature_of_bytes_that_are_not_ascii_is_invalid_not_a_500(node):
    """Tornado reads the request line as Latin-1: 40 bytes of `é` sent raw are 40 characters, not hex, which
    `hmac.compare_digest` refuses to compare (a TypeError)."""
    answer = await exchange(node.url, b"GET /signed/coffee.jpg?tr=w-100&ik-s=" + b"\xe9" * 40
                            + b" HTTP/1.1\r\nHost: node.example.test\r\nConnection: close\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401 ") and body == b"invalid signature\n", answer[:300]


async def test_named_only_with_a_key_keeps_named_urls_public_and_signs_the_rest(node):
    base = "https://node.example.test/named"
    assert decode(await get(node, "/named/tr:n-thumb/coffee.jpg")).width == 40
    assert decode(await get(node, "/named/coffee.jpg")).width == 600  # the original needs no signature
    response = await get(node, "/named/tr:w-100/coffee.jpg")
    assert response.code == 400 and b"named transformations" in response.body
    # a chain of names is a new output per chain: each had been rendered and kept (n-thumb:n-thumb, 40 px)
    for chained in ("/named/tr:n-thumb:n-thumb/coffee.jpg", "/named/tr:n-thumb/coffee.jpg?tr=n-thumb"):
        response = await get(node, chained)
        assert (response.code, response.body) == (400, b"invalid transformation: n-thumb: this endpoint serves one "
                                                        b"named transformation at a time, not a chain of them\n")
    assert await served_width(node, sdk_url(base, "/coffee.jpg", width=100, position="path")) == 100
    assert await served_width(node, sdk_url(base, "/coffee.jpg", width=100, expires_in=60)) == 100
    # a signature, once given, is checked even where none is needed
    await refused(node, sdk_url(base, "/coffee.jpg", width=100).replace("w-100", "n-thumb"), "invalid")
    # an endpoint without a key ignores `ik-s` (it has nothing to check it with)
    assert await served_width(node, sdk_url("https://node.example.test", "/coffee.jpg", key="any")) == 100


async def test_edge_url_signs_any_transformation_for_a_named_only_endpoint_with_a_key(node, config_path):
    signed, _ = edge_url(config_path, "--endpoint", "named", "--path", "coffee.jpg", "--tr", "w-100",
                         "--base-url", node.url)
    assert "ik-s=" in signed and await served_width(node, signed) == 100


def edge_url(config_path, *args: str, status: int = 0) -> tuple[str, str]:
    """`edge url` (its `main`, in this process): stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert cli.main(["url", "--config", str(config_path), *args]) == status
    assert KEY not in out.getvalue() + err.getvalue()
    return out.getvalue().strip(), err.getvalue()


async def test_edge_url_writes_what_the_sdk_writes(node, config_path):
    base = "https://node.example.test"
    assert edge_url(config_path, "--endpoint", "signed", "--path", ODD_NAME, "--tr", "w-60", "--tr-position",
                    "query", "--base-url", base)[0] == sdk_url(f"{base}/signed", ODD_NAME, width=60)
    assert edge_url(config_path, "--endpoint", "signed", "--path", "/coffee.jpg", "--tr", "w-60")[0] \
        == sdk_url(f"https://{HOST}", "/coffee.jpg", width=60, position="path")
    expiring, _ = edge_url(config_path, "--endpoint", "signed", "--path", ODD_NAME, "--tr", "w-60",
                           "--expires-in", "60", "--base-url", node.url)
    assert expiring.startswith(f"{node.url}/signed/tr:w-60/") and "&ik-s=" in expiring
    assert await served_width(node, expiring) == 60
    expired, _ = edge_url(config_path, "--endpoint", "signed", "--path", "coffee.jpg",
                          "--expires-at", str(int(time.time()) - 1))
    await refused(node, expired, "expired", HOST)
    await refused(node, expired.replace("coffee.jpg", "camera.jpg"), "invalid", HOST)


async def test_edge_url_reaches_a_top_level_folder_named_like_a_transformation(node, config_path, tmp_path):
    """The node reads a first segment `tr:…` followed by more as the transformation (docs/origins.md): without a
    `tr:` segment of its own, the URL puts an empty one first, else it asked for the transformation `x`, a 400."""
    (tmp_path / "photos" / "tr:x").mkdir()
    shutil.copy(SAMPLES / "coffee.jpg", tmp_path / "photos" / "tr:x" / "in.jpg")
    width = decode(await node.fetch("/coffee.jpg")).width
    for args, expected in ((("--tr", "w-50"), 50), (("--tr", "w-50", "--tr-position", "query"), 50), ((), width)):
        for endpoint in ("signed", ""):
            url, _ = edge_url(config_path, "--endpoint", endpoint, "--path", "tr:x/in.jpg", "--base-url", node.url,
                              *args)
            assert await served_width(node, url) == expected, url
    url, _ = edge_url(config_path, "--endpoint", "", "--path", "tr:w-1.jpg", "--base-url", node.url)
    assert url == f"{node.url}/tr:w-1.jpg"  # the last segment is always the file's name: nothing to add


@pytest.mark.parametrize("args, message", [
    (("--endpoint", "nope", "--path", "a.jpg"), "no endpoint has id 'nope'"),
    (("--path", "a.jpg", "--expires-in", "60"), "endpoint '' has no private_key: an expiry needs a signed URL"),
    (("--endpoint", "signed", "--path", "a.jpg", "--expires-in", "0"), "--expires-in must be from 1 to 315360000 "
                                                                       "seconds (ten years)"),
    (("--endpoint", "signed", "--path", "a.jpg", "--expires-in", "99999999999999999999"),
     "--expires-in must be from 1 to 315360000 seconds (ten years)"),  # had signed a URL that never expires
    (("--endpoint", "signed", "--path", "a.jpg", "--expires-at", "99999999999"), "--expires-at is more than ten years away"),
    (("--endpoint", "signed", "--path", "/"), "--path must name an original"),
    (("--endpoint", "signed", "--path", "../../etc/passwd"), "--path may not hold . or .. segments (the node never "
                                                             "serves them)"),
    (("--endpoint", "signed", "--path", "a.jpg", "--tr", "w-10\r\nX: y"),
     "--path and --tr may not hold control characters (CR, LF, …)"),
    (("--endpoint", "signed", "--path", "a.jpg", "--tr", "w-huge"), "--tr: invalid transformation: w-huge: expected a number"),
    (("--endpoint", "signed", "--path", "a.jpg", "--base-url", "javascript:alert(1)//"),
     "--base-url: expected an http:// or https:// URL"),
    (("--endpoint", "signed", "--path", "a.jpg", "--base-url", "https://[::1/img"),  # had been a traceback
     "--base-url: expected an http:// or https:// URL"),
    (("--endpoint", "signed", "--path", "a.jpg", "--base-url", "https://img.example.com:99999"),
     "--base-url: expected an http:// or https:// URL"),
    (("--endpoint", "signed", "--path", "a.jpg", "--base-url", "https://img.example.com/x?y"),  # had been x?y/a.jpg
     "--base-url: expected an http:// or https:// URL without a query"),
])
def test_edge_url_refuses_what_it_cannot_build(config_path, args, message):
    out, err = edge_url(config_path, *args, status=2)
    assert out == "" and err.startswith(f"edge: {message}")


def test_signing_matches_the_sdk_byte_for_byte(monkeypatch):
    monkeypatch.setattr(time, "time", lambda: 1700000000.25)  # the SDK's clock, for its `expires_in`
    base = "https://node.example.test/products"
    for src, position, query in (("a b/é.jpg", "path", {"v": "3"}), ("x,y;z@(1)+ü.png", "query", {}),
                                 ("plain.jpg", "path", {})):
        url = sdk_url(base, src, width=300, position=position, query_parameters=query)
        unsigned = signing.unsigned_url(src, "w-300", in_query=position == "query") + ("?v=3" if query else "")
        assert f"{base}/{signing.sign(KEY, unsigned)}" == url
        expiring = sdk_url(base, src, width=300, position=position, query_parameters=query, expires_in=100)
        assert f"{base}/{signing.sign(KEY, unsigned, 1700000100)}" == expiring


async def test_the_key_never_appears_in_logs_metrics_bodies_or_check_config(node, config_path, capfd, caplog):
    bodies = []
    for url in (sdk_url("https://node.example.test/signed", "/coffee.jpg"),
                sdk_url("https://node.example.test/signed", "/coffee.jpg", key="wrong"),
                "/signed/coffee.jpg", "/signed/missing.jpg?ik-s=" + "a" * 40):
        response = await get(node, url)
        bodies.append(response.body.decode(errors="replace"))
    bodies.append(await scrape(node.url))
    node.node.access_log.flush()
    assert node.node.access_log.written(10)
    check = subprocess.run([sys.executable, "-m", "edge", "check-config", "--config", str(config_path)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    assert '"previous_private_keys": [\n        "****"\n      ]' in check.stdout
    captured = capfd.readouterr()
    everything = "\n".join([*bodies, captured.out, captured.err, caplog.text, check.stdout, check.stderr])
    records = [json.loads(line) for line in captured.out.splitlines() if line.startswith('{"time"')]
    assert [(r["path"], r["status"], r["endpoint"]) for r in records if r["path"] != "/metrics"] == [
        ("/signed/coffee.jpg", 200, "signed"), ("/signed/coffee.jpg", 401, "signed"),
        ("/signed/coffee.jpg", 401, "signed"), ("/signed/missing.jpg", 401, "signed")]
    assert "ik-s" not in captured.out  # the access log has paths only
    for secret in (KEY, OLD_KEY):
        assert secret not in everything
