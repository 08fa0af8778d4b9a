"""HTTP caching semantics as a CDN or a browser in front of the node sees them (RFC 9110 13, RFC 9111), over a
real socket: `If-Match` and `If-Unmodified-Since` on GET and HEAD, on misses, disk hits and memory hits; a
304's headers; what a HEAD miss does; and the request headers the node ignores on purpose (`Cache-Control`,
`Pragma`, `Range`, `If-Modified-Since`: docs/caching.md#conditional-requests-and-head)."""

import email.utils
import os
import shutil
import time

import pytest

from tests.nodes import SAMPLES, exchange, local_config, write_config

#: the originals' modification time, so that their `Last-Modified` is known: 2024-03-01 12:00:00 UTC
MODIFIED = 1709294400
LAST_MODIFIED = email.utils.formatdate(MODIFIED, usegmt=True)
BEFORE = email.utils.formatdate(MODIFIED - 1, usegmt=True)


@pytest.fixture
async def node(node_factory, tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    for name in ("coffee.jpg", "chelsea.jpg"):
        shutil.copyfile(SAMPLES / name, root / name)
        os.utime(root / name, (MODIFIED, MODIFIED))
    return await node_factory(write_config(tmp_path, local_config(root)))


async def _answers(node, path: str, headers: dict[str, str]):
    """The answers to `path` with `headers`, as a miss (GET and HEAD of a URL never asked for before, each its
    own), then from the cache (GET and HEAD once the output is stored, twice each: a disk hit, then a memory
    hit), each as (method, status, body, headers)."""
    answers = []
    for method in ("HEAD", "GET"):
        url = f"{path}?tr=w-{40 + len(answers)}"  # a miss each
        answer = await node.fetch(url, method=method, headers=headers)
        answers.append((method, answer.code, answer.body, answer.headers))
    url = f"/tr:w-30{path}"
    plain = await node.fetch(url)
    assert plain.code == 200
    for method in ("GET", "HEAD", "GET", "HEAD"):
        answer = await node.fetch(url, method=method, headers=headers)
        answers.append((method, answer.code, answer.body, answer.headers))
    return plain, answers


@pytest.mark.parametrize("condition", [
    {"If-Match": '"another"'},
    {"If-Match": '"another", "and-another"'},
    {"If-Unmodified-Since": BEFORE},
    {"If-Unmodified-Since": time.asctime(time.gmtime(MODIFIED - 1))},  # RFC 9110 5.6.7's obsolete forms
    {"If-Unmodified-Since": time.strftime("%A, %d-%b-%y %H:%M:%S GMT", time.gmtime(MODIFIED - 1))},
    {"If-Match": '"another"', "If-Unmodified-Since": LAST_MODIFIED},  # If-Match decides
])
async def test_a_precondition_that_fails_is_a_412_and_sends_no_image(node, condition):
    # RFC 9110 13.1.1, 13.1.4: the origin server MUST NOT perform the method; the node served the image
    _, answers = await _answers(node, "/coffee.jpg", condition)
    for method, status, body, headers in answers:
        assert status == 412, (method, condition)
        assert headers["Content-Type"] == "text/plain; charset=utf-8"
        assert headers["Cache-Control"] == "no-store"
        assert body == (b"" if method == "HEAD" else b"precondition failed\n")


async def test_a_page_may_send_the_preconditions(node):
    preflight = await node.fetch("/tr:w-30/coffee.jpg", method="OPTIONS", headers={
        "Origin": "https://shop.example", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "if-match,if-unmodified-since"})
    assert preflight.code == 204
    assert preflight.headers["Access-Control-Allow-Headers"] == "If-Match, If-Unmodified-Since"


async def test_a_weak_tag_never_satisfies_if_match(node):
    # If-Match compares strongly (RFC 9110 13.1.1): the output's own ETag made weak does not match
    first = await node.fetch("/tr:w-30/coffee.jpg")
    answer = await node.fetch("/tr:w-30/coffee.jpg", headers={"If-Match": "W/" + first.headers["ETag"]})
    assert answer.code == 412


async def test_preconditions_that_hold_serve_the_image(node):
    first = await node.fetch("/tr:w-30/coffee.jpg")
    etag = first.headers["ETag"]
    for condition in ({"If-Match": etag}, {"If-Match": f'"another", {etag}'}, {"If-Match": "*"},
                      {"If-Unmodified-Since": LAST_MODIFIED},
                      {"If-Unmodified-Since": "not a date"},  # ignored (RFC 9110 13.1.4)
                      {"If-Unmodified-Since": "Mon, 01 Jan 99999 00:00:00 GMT"},  # past Python's dates: ignored
                      # not in GMT, so no HTTP-date (RFC 9110 5.6.7): ignored, though earlier once converted
                      {"If-Unmodified-Since": BEFORE.replace("GMT", "+0100")},
                      {"If-Unmodified-Since": BEFORE.replace("GMT", "+9999")},
                      {"If-Match": etag, "If-Unmodified-Since": BEFORE}):  # ignored after If-Match
        for method in ("GET", "HEAD"):
            answer = await node.fetch("/tr:w-30/coffee.jpg", method=method, headers=condition)
            assert (answer.code, answer.headers["ETag"]) == (200, etag), (method, condition)
            assert answer.body == (b"" if method == "HEAD" else first.body)


async def test_if_none_match_is_evaluated_after_if_match(node):
    first = await node.fetch("/tr:w-30/coffee.jpg")
    etag = first.headers["ETag"]
    answer = await node.fetch("/tr:w-30/coffee.jpg", headers={"If-Match": etag, "If-None-Match": etag})
    assert (answer.code, answer.headers["ETag"]) == (304, etag)


async def test_the_etag_of_another_format_fails_if_match(node):
    webp = await node.fetch("/tr:w-30,f-auto/coffee.jpg", headers={"Accept": "image/webp"})
    assert webp.headers["Content-Type"] == "image/webp"
    avif = await node.fetch("/tr:w-30,f-auto/coffee.jpg", headers={"Accept": "image/avif",
                                                                   "If-Match": webp.headers["ETag"]})
    assert avif.code == 412


async def test_preconditions_are_ignored_on_an_error(node):
    # RFC 9110 13.2.1: only an answer that would have been a 2xx is made conditional
    for condition in ({"If-Match": '"another"'}, {"If-Unmodified-Since": BEFORE}):
        missing = await node.fetch("/tr:w-30/missing.jpg", headers=condition)
        invalid = await node.fetch("/tr:w-x/coffee.jpg", headers=condition)
        assert (missing.code, invalid.code) == (404, 400)


async def test_a_304_carries_the_200s_cache_control_etag_and_vary(node):
    for path, accept in (("/tr:w-30,f-auto/coffee.jpg", "image/webp"), ("/tr:w-30/coffee.jpg", "image/webp")):
        first = await node.fetch(path, headers={"Accept": accept})
        for _ in range(2):  # from disk, then from memory
            again = await node.fetch(path, headers={"Accept": accept, "If-None-Match": first.headers["ETag"]})
            assert (again.code, again.body) == (304, b"")
            for name in ("Cache-Control", "ETag", "Vary", "Last-Modified"):
                assert again.headers.get(name) == first.headers.get(name), name
        assert ("Vary" in first.headers) == ("f-auto" in path)


async def test_a_head_miss_makes_the_output_a_get_then_finds(node):
    head = await node.fetch("/tr:w-33/coffee.jpg", method="HEAD")
    get = await node.fetch("/tr:w-33/coffee.jpg")
    assert (head.code, head.body, head.headers["X-Cache"], get.headers["X-Cache"]) == (200, b"", "MISS", "HIT")
    assert (int(head.headers["Content-Length"]), head.headers["ETag"]) == (len(get.body), get.headers["ETag"])


@pytest.mark.parametrize("headers", [
    {"Cache-Control": "no-cache"}, {"Cache-Control": "max-age=0"}, {"Cache-Control": "no-store"},
    {"Pragma": "no-cache"}, {"Range": "bytes=0-99"}, {"Range": "bytes=-10"}, {"Range": "bytes=999999-"},
    {"Range": "bytes=0-1,5-9"}, {"Range": "lines=1-2"}, {"Range": "bytes=0-99", "If-Range": '"x"'},
    {"If-Modified-Since": LAST_MODIFIED},
])
async def test_what_the_node_ignores_is_answered_from_the_cache_whole(node, headers):
    # a client's reload never makes the node render again; Range is ignored (no Accept-Ranges says otherwise)
    first = await node.fetch("/tr:w-31/coffee.jpg")
    for _ in range(2):  # from disk (the handler), then from memory (the hit shortcut)
        again = await node.fetch("/tr:w-31/coffee.jpg", headers=headers)
        assert (again.code, again.headers["X-Cache"], again.body) == (200, "HIT", first.body)
        assert "Accept-Ranges" not in again.headers and "Content-Range" not in again.headers


async def test_an_http_1_0_client_gets_whole_images_and_its_connection_closed(node):
    first = await node.fetch("/tr:w-30/coffee.jpg")
    keep = "GET /tr:w-30/coffee.jpg HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"  # no Host: HTTP/1.0 has none
    raw = await exchange(node.url, (keep + keep + "HEAD /tr:w-30/coffee.jpg HTTP/1.0\r\n\r\n").encode())
    answers = raw.split(b"HTTP/1.1 ")[1:]
    assert [answer.split(b"\r\n", 1)[0] for answer in answers] == [b"200 OK"] * 3  # then closed (`exchange`)
    for answer in answers[:2]:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert body == first.body and b"\r\nConnection: Keep-Alive" in head
    assert answers[2].endswith(b"\r\n\r\n") and b"Content-Length: %d\r\n" % len(first.body) in answers[2]


async def test_errors_of_an_f_auto_url_say_how_long_a_cache_keeps_them(node):
    for method in ("GET", "HEAD"):
        for accept in ("image/webp", "image/avif"):
            missing = await node.fetch("/tr:w-30,f-auto/missing.jpg", method=method, headers={"Accept": accept})
            assert (missing.code, missing.headers["Cache-Control"]) == (404, "public, max-age=60")
            assert "Vary" not in missing.headers and missing.headers["Content-Length"] == "10"
            invalid = await node.fetch("/tr:w-x,f-auto/coffee.jpg", method=method, headers={"Accept": accept})
            assert (invalid.code, invalid.headers["Cache-Control"]) == (400, "no-store")
