"""Two fixes found by probing a running node:

- a purge target that is not encodable as UTF-8 (a lone surrogate, `"\\ud800"` in JSON or a byte that
  is not UTF-8 on `edge purge`'s command line) is a 400 naming the problem, not a 500;
- `f-auto` never drops an animated original's frames: a browser taking AVIF but not WebP gets a GIF
  (every browser animates GIF), while an explicit `f-avif` still makes the first frame an AVIF.
"""

import json
import subprocess
import sys

import pytest

from edge.errors import BadRequest
from edge.purge import parse_body, parse_target
from edge.transform.formats import AUTO_AVIF, AUTO_LEGACY, AUTO_MODERN, AUTO_WEBP, animates, final_formats, plan_format
from tests.nodes import decode
from tests.test_purge import AUTH, cached, config, node, origin, warm  # noqa: F401 (fixtures)
from tests.transform_node import image_node, image_root  # noqa: F401 (fixtures)
from tests import imagecorpus as corpus

LONE_SURROGATE = "not valid UTF-8 (holds a lone surrogate)"


# --- purge: lone surrogates -------------------------------------------------------------------

@pytest.mark.parametrize("body, message", [
    (rb'{"url":"\ud800"}', f"url: {LONE_SURROGATE}\n".encode()),
    (rb'{"prefix":"/\ud800"}', f"prefix: {LONE_SURROGATE}\n".encode()),
    (rb'{"url":"/shop/shoes/\udfff.jpg"}', f"url: {LONE_SURROGATE}\n".encode()),
    (rb'{"prefix":"/shop/\ude00\ud83d"}', f"prefix: {LONE_SURROGATE}\n".encode()),  # a pair the wrong way round
])
async def test_a_purge_target_with_a_lone_surrogate_is_a_400_and_removes_nothing(node, body, message):
    await warm(node)
    response = await node.fetch("/_edge/purge", method="POST", headers=AUTH, body=body)
    assert (response.code, response.body) == (400, message)
    assert response.headers["Content-Type"].startswith("text/plain")
    assert await cached(node, "/shop/tr:w-30/shoes/red.jpg")


async def test_a_surrogate_pair_is_an_ordinary_character(node):
    # `\ud83d\ude00` is one character (U+1F600): a target like any other, naming nothing cached
    body = rb'{"url":"/shop/shoes/\ud83d\ude00.jpg"}'
    response = await node.fetch("/_edge/purge", method="POST", headers=AUTH, body=body)
    assert (response.code, json.loads(response.body)) == (
        200, {"removed": 0, "by_tier": {"output": 0, "original": 0, "not_found": 0}})


@pytest.mark.parametrize("target", [{"url": "\ud800"}, {"prefix": "/\udcff"}])
def test_parse_target_refuses_lone_surrogates(target):
    (kind, _), = target.items()
    with pytest.raises(BadRequest) as raised:
        parse_target(target)
    assert raised.value.message == f"{kind}: {LONE_SURROGATE}"
    with pytest.raises(BadRequest):
        parse_body(json.dumps(target).encode())  # json.dumps writes `\ud800` as an escape


@pytest.mark.parametrize("option", ["--url", "--prefix"])
def test_edge_purge_refuses_a_target_that_is_not_utf8(config, option):  # noqa: F811
    # a byte that is not UTF-8 on the command line reaches Python as a lone surrogate (surrogateescape)
    result = subprocess.run([sys.executable.encode(), b"-m", b"edge", b"purge", b"--config", str(config).encode(),
                             option.encode(), b"/shop/shoes/\xff.jpg"], capture_output=True, timeout=60)
    kind = option.removeprefix("--")
    assert (result.returncode, result.stdout, result.stderr) == (2, b"", f"edge: {kind}: {LONE_SURROGATE}\n".encode())


# --- f-auto keeps animations --------------------------------------------------------------------

FRAMES = 5  # tests.transform_node's anim.gif: corpus.animated_gif(), 32x32


@pytest.mark.parametrize("accept, mime, loader", [
    ("image/avif", "image/gif", "gifload"),  # AVIF but not WebP: GIF, the format every browser animates
    ("image/avif,image/webp", "image/webp", "webpload"),
    ("image/webp", "image/webp", "webpload"),
    ("*/*", "image/gif", "gifload"),
])
async def test_f_auto_keeps_every_frame_of_an_animated_gif(image_node, accept, mime, loader):
    response = await image_node.fetch("/tr:w-1000,f-auto/anim.gif", headers={"Accept": accept})
    assert response.code == 200, response.body[:200]
    assert (response.headers["Content-Type"], response.headers["Vary"]) == (mime, "Accept")
    image = decode(response, all_frames=True)
    assert image.get("vips-loader") == f"{loader}_buffer"
    assert image.get("n-pages") == FRAMES
    assert (image.width, image.get("page-height"), image.height) == (1000, 1000, FRAMES * 1000)
    # the frames are the original's, in order (red, green, blue, ...)
    for index, colour in enumerate(corpus.ANIMATION_COLOURS[:FRAMES]):
        pixel = image.crop(500, index * 1000 + 500, 1, 1).getpoint(0, 0)[:3]
        assert all(abs(a - b) <= 24 for a, b in zip(pixel, colour)), (index, pixel, colour)


async def test_the_avif_only_animation_is_cached_as_its_own_accept_class(image_node):
    gif = await image_node.fetch("/tr:w-40,f-auto/anim.gif", headers={"Accept": "image/avif"})
    webp = await image_node.fetch("/tr:w-40,f-auto/anim.gif", headers={"Accept": "image/avif,image/webp"})
    again = await image_node.fetch("/tr:w-40,f-auto/anim.gif", headers={"Accept": "image/avif"})
    assert (gif.headers["Content-Type"], webp.headers["Content-Type"]) == ("image/gif", "image/webp")
    assert (again.headers["X-Cache"], again.headers["Content-Type"], again.body) == ("HIT", "image/gif", gif.body)


async def test_f_auto_on_a_still_image_for_an_avif_only_browser_is_still_avif(image_node):
    response = await image_node.fetch("/tr:w-60,f-auto/photo.jpg", headers={"Accept": "image/avif"})
    image = decode(response, all_frames=True)
    assert (response.code, response.headers["Content-Type"]) == (200, "image/avif")
    assert (image.get("vips-loader"), image.width, image.height) == ("heifload_buffer", 60, 40)


@pytest.mark.parametrize("accept", ["image/avif", "image/avif,image/webp", "*/*"])
async def test_explicit_f_avif_on_an_animation_is_still_its_first_frame(image_node, accept):
    # unchanged: libvips writes no animated AVIF, and the URL asked for AVIF whatever the browser takes
    response = await image_node.fetch("/tr:w-1000,f-avif/anim.gif", headers={"Accept": accept})
    assert (response.code, response.headers["Content-Type"]) == (200, "image/avif")
    assert "Vary" not in response.headers
    image = decode(response, all_frames=True)
    assert image.get("vips-loader") == "heifload_buffer"
    assert (image.get("n-pages") if image.get_typeof("n-pages") else 1) == 1
    assert (image.width, image.height) == (1000, 1000)
    pixel = image.getpoint(500, 500)[:3]
    assert all(abs(a - b) <= 24 for a, b in zip(pixel, corpus.ANIMATION_COLOURS[0])), pixel


@pytest.mark.parametrize("accept, planned", [
    ("image/avif", AUTO_AVIF),
    ("image/avif,image/webp", AUTO_MODERN),
    ("image/webp", AUTO_WEBP),
    ("*/*", AUTO_LEGACY),
])
def test_every_f_auto_plan_animates(accept, planned):
    assert plan_format("auto", "anim.gif", accept) == (planned, True)
    assert animates(planned, "gifload_source") and animates(planned, "webpload_source")


def test_the_avif_only_plan_is_avif_for_stills_and_gif_for_animations():
    assert final_formats(AUTO_AVIF, "gifload_source", has_alpha=False, animated=True) == ["gif"]
    assert final_formats(AUTO_AVIF, "jpegload_source", has_alpha=True, animated=False) == ["avif"]
    # an explicit f-avif is not f-auto's plan: an animation becomes its first frame
    assert plan_format("avif", "anim.gif", "image/avif") == ("avif", False)
    assert not animates("avif", "gifload_source")


def test_the_smallest_of_f_auto_weighs_avif_for_a_still_and_leaves_it_out_for_an_animation():
    planned, _ = plan_format("auto", "photo.jpg", "image/avif,image/webp", smallest=True)
    assert final_formats(planned, "jpegload_source", has_alpha=False, animated=False) == ["avif", "webp", "jpg"]
    assert final_formats(planned, "pngload_source", has_alpha=True, animated=False) == ["avif", "webp", "png"]
    assert final_formats(planned, "gifload_source", has_alpha=False, animated=True) == ["webp", "gif"]
