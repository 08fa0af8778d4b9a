"""CORS: every answer to an image request carries `Access-Control-Allow-Origin` and `Timing-Allow-Origin`
(`[server] cors_origin`, `*` by default), so that a page can draw a node's image on a canvas and read it
back, load it with `<img crossorigin>` or `fetch()` it, errors included; a preflight is answered 204."""

import pytest

from edge.errors import ConfigError
from tests.nodes import decode, local_config, write_config
from tests.test_config import load

IMAGE = "/tr:w-40/coffee.jpg"
CORS = ("Access-Control-Allow-Origin", "Timing-Allow-Origin")
PREFLIGHT = {"Origin": "https://shop.example.com", "Access-Control-Request-Method": "GET"}


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


async def test_other_options_requests_are_answered_as_before(node_factory, tmp_path):
    node = await node_factory(write_config(tmp_path, local_config()))
    not_preflight = await node.fetch(IMAGE, method="OPTIONS", headers={"Origin": "https://shop.example.com"})
    assert (not_preflight.code, not_preflight.headers["Allow"], not_preflight.body) == (
        405, "GET, HEAD", b"Method Not Allowed\n")
    assert cors(not_preflight) == ("*", "*")  # an error answer of an image request
    admin = await node.fetch("/_edge/health", method="OPTIONS", headers=PREFLIGHT)
    assert (admin.code, admin.headers["Allow"], cors(admin)) == (405, "GET, HEAD", (None, None))


@pytest.mark.parametrize("value", ["https://shop.example.com/", "shop.example.com", "https://shop.example.com/img",
                                   "https://a.example.com:99999", "https://*.example.com", "null",
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
