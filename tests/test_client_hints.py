"""Client hints over a real socket: `w-auto` (Sec-CH-Width, then Width) and `dpr-auto` (Sec-CH-DPR,
then DPR), rounded into a bounded set of cache entries, with `Vary` on exactly the hints used and
`Accept-CH`, on misses and hits alike.

`photo.jpg` is 600x400.
"""

import asyncio
import subprocess

import pytest
import pyvips
import tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from tests.nodes import write_config
from tests.test_status_page import CHROMIUM, CHROMIUM_FLAGS
from tests.transform_node import fetch_image, image_root, images_config  # noqa: F401

WIDTH_VARY = "Sec-CH-Width, Width"
DPR_VARY = "Sec-CH-DPR, DPR"


@pytest.fixture
async def node(node_factory, image_root, tmp_path):
    # a small output limit: the clamp of a huge Width is then cheap to render
    return await node_factory(write_config(tmp_path, images_config(image_root, "[limits]\nmax_output_side = 800")))


@pytest.mark.parametrize("headers, width", [
    ({"Sec-CH-Width": "250"}, 300),  # rounded up to the next 100, as ImageKit does
    ({"Width": "250"}, 300),  # the legacy hint
    ({"Sec-CH-Width": "420", "Width": "150"}, 500),  # the modern one wins
    ({"Sec-CH-Width": "100"}, 100),
    ({"Sec-CH-Width": "999999999"}, 800),  # held to max_output_side
    ({}, 600),  # no hint: no width from it, the photo keeps its own
    ({"Sec-CH-Width": "abc", "Width": "-3"}, 600),  # not numbers: as if absent
    ({"Sec-CH-Width": "0"}, 600),
])
async def test_w_auto_takes_the_width_hint(node, headers, width):
    response, image = await fetch_image(node, "/tr:w-auto/photo.jpg", headers=headers)
    assert (image.width, image.height) == (width, round(width * 2 / 3))
    assert response.headers["Vary"] == WIDTH_VARY
    assert response.headers["Accept-CH"] == "Sec-CH-Width, Sec-CH-DPR"


@pytest.mark.parametrize("path, headers, width", [
    ("/tr:w-auto,wf-200/photo.jpg", {}, 200),  # no hint: the fallback width
    ("/tr:w-auto,wf-200/photo.jpg", {"Sec-CH-Width": "450"}, 500),  # a hint: the fallback plays no part
    ("/tr:w-auto,wf-200,dpr-2/photo.jpg", {}, 400),  # a width in pixels, as w-200: its dpr applies
])
async def test_wf_is_the_width_without_a_hint(node, path, headers, width):
    response, image = await fetch_image(node, path, headers=headers)
    assert ((image.width, image.height), response.headers["Vary"]) == ((width, round(width * 2 / 3)), WIDTH_VARY)


async def test_wf_needs_w_auto(node):
    response = await node.fetch("/tr:w-300,wf-200/photo.jpg")
    assert (response.code, response.body) == (400, b"invalid transformation: wf-200: needs w-auto\n")


async def test_widths_in_one_step_share_one_cache_entry(node):
    first, _ = await fetch_image(node, "/tr:w-auto/photo.jpg", headers={"Sec-CH-Width": "201"})
    assert first.headers["X-Cache"] == "MISS"
    for width in ("250", "299", "300"):  # the same bucket: an attacker's values cannot add entries
        again, _ = await fetch_image(node, "/tr:w-auto/photo.jpg", headers={"Width": width})
        assert again.headers["X-Cache"] == "HIT"
        assert again.body == first.body
        assert again.headers["Vary"] == WIDTH_VARY and again.headers["Accept-CH"]
    other, image = await fetch_image(node, "/tr:w-auto/photo.jpg", headers={"Sec-CH-Width": "301"})
    assert other.headers["X-Cache"] == "MISS" and image.width == 400
    plain, image = await fetch_image(node, "/tr:w-300/photo.jpg")  # the URL's own w-300 is another entry
    assert plain.headers["X-Cache"] == "MISS" and image.width == 300
    assert "Vary" not in plain.headers and "Accept-CH" not in plain.headers


@pytest.mark.parametrize("headers, width", [
    ({"Sec-CH-DPR": "2"}, 200),
    ({"DPR": "3"}, 300),
    ({"Sec-CH-DPR": "2.625"}, 270),  # rounded up to a tenth
    ({"Sec-CH-DPR": "40"}, 500),  # held to 5
    ({}, 100),  # no hint: 1
    ({"Sec-CH-DPR": "two"}, 100),
])
async def test_dpr_auto_takes_the_dpr_hint(node, headers, width):
    response, image = await fetch_image(node, "/tr:w-100,dpr-auto/photo.jpg", headers=headers)
    assert image.width == width
    assert response.headers["Vary"] == DPR_VARY


async def test_each_dpr_bucket_is_its_own_cache_entry(node):
    first, image = await fetch_image(node, "/tr:w-100,dpr-auto/photo.jpg", headers={"Sec-CH-DPR": "2"})
    assert (first.headers["X-Cache"], image.width) == ("MISS", 200)
    same, image = await fetch_image(node, "/tr:w-100,dpr-auto/photo.jpg", headers={"DPR": "1.95"})
    assert (same.headers["X-Cache"], image.width, same.body) == ("HIT", 200, first.body)
    for dpr, width in (("3", 300), ("2.01", 210)):  # another ratio: never the first one's image
        other, image = await fetch_image(node, "/tr:w-100,dpr-auto/photo.jpg", headers={"Sec-CH-DPR": dpr})
        assert (other.headers["X-Cache"], image.width) == ("MISS", width)
        assert other.headers["Vary"] == DPR_VARY


async def test_a_width_hint_counts_the_pixel_ratio_already(node):
    """ImageKit: with w-auto the Width hint is in device pixels, so the DPR hint is not applied again."""
    response, image = await fetch_image(node, "/tr:w-auto,dpr-auto/photo.jpg",
                                        headers={"Sec-CH-Width": "300", "Sec-CH-DPR": "2"})
    assert image.width == 300
    assert response.headers["Vary"] == WIDTH_VARY  # the ratio has no side to multiply without the width hint either
    for dpr in ("1", "1.5", "4.9"):  # unused beside the width hint: one entry, not one per ratio (resource probe)
        again, _ = await fetch_image(node, "/tr:w-auto,dpr-auto/photo.jpg",
                                     headers={"Sec-CH-Width": "300", "Sec-CH-DPR": dpr})
        assert (again.headers["X-Cache"], again.body) == ("HIT", response.body)
    _, image = await fetch_image(node, "/tr:w-auto,dpr-auto,h-100/photo.jpg", headers={"Sec-CH-DPR": "2"})
    assert (image.width, image.height) == (300, 200)  # no width hint: dpr-auto scales h


async def test_a_dpr_hint_with_nothing_to_multiply_is_one_entry_and_no_vary(node, image_root):
    """`w-auto,dpr-auto` without a width hint (Chromium sends none for an `<img>` without `sizes`) and no `wf`: the
    step has no side for the ratio, and a ratio of 1 is none: the same image had been kept once per phone's ratio
    (42 renders of one image over ratios 1–5; Cloudinary probe)."""
    labels = []
    for dpr in ("1", "1.5", "2", "2.625", "3.5"):
        response, image = await fetch_image(node, "/tr:w-auto,dpr-auto/photo.jpg", headers={"Sec-CH-DPR": dpr})
        assert (image.width, response.headers["Vary"]) == (pyvips.Image.new_from_file(str(image_root / "photo.jpg"))
                                                           .width, WIDTH_VARY)
        labels.append(response.headers["X-Cache"])
    assert labels == ["MISS"] + ["HIT"] * 4
    unhinted, _ = await fetch_image(node, "/tr:w-100,dpr-auto/photo.jpg")
    at_one, image = await fetch_image(node, "/tr:w-100,dpr-auto/photo.jpg", headers={"Sec-CH-DPR": "1"})
    assert (at_one.headers["X-Cache"], image.width, at_one.body) == ("HIT", 100, unhinted.body)


async def test_a_step_without_w_auto_takes_the_dpr_hint_beside_a_width_hint(node):
    """The width hint spares only the steps that take it the DPR: a later step's `h-50,dpr-auto` is 100 px at 2."""
    response, image = await fetch_image(node, "/tr:w-auto,dpr-auto:h-50,dpr-auto/photo.jpg",
                                        headers={"Sec-CH-Width": "300", "Sec-CH-DPR": "2"})
    assert (image.width, image.height) == (150, 100)
    assert response.headers["Vary"] == f"{WIDTH_VARY}, {DPR_VARY}"
    other, image = await fetch_image(node, "/tr:w-auto,dpr-auto:h-50,dpr-auto/photo.jpg",
                                     headers={"Sec-CH-Width": "300", "Sec-CH-DPR": "3"})
    assert (other.headers["X-Cache"], image.width, image.height) == ("MISS", 225, 150)


async def test_with_f_auto_the_answer_varies_on_accept_too(node):
    headers = {"Sec-CH-Width": "200", "Accept": "image/webp,*/*"}
    first, image = await fetch_image(node, "/tr:w-auto,f-auto/photo.jpg", headers=headers)
    assert image.get("vips-loader").startswith("webp") and image.width == 200
    hit, _ = await fetch_image(node, "/tr:w-auto,f-auto/photo.jpg", headers=headers)
    for response in (first, hit):
        assert response.headers["Vary"] == f"Accept, {WIDTH_VARY}"
    assert hit.headers["X-Cache"] == "HIT"
    jpeg, image = await fetch_image(node, "/tr:w-auto,f-auto/photo.jpg", headers={"Sec-CH-Width": "200"})
    assert jpeg.headers["X-Cache"] == "MISS" and image.get("vips-loader").startswith("jpeg")


async def test_auto_values_are_checked_like_others(node):
    response = await node.fetch("/tr:w-autox/photo.jpg")
    assert response.code == 400 and b"w-autox" in response.body
    response = await node.fetch("/tr:dpr-auto/photo.jpg")
    assert response.code == 400 and response.body == b"invalid transformation: dpr-auto: needs w or h\n"


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian: apt-get install chromium)")
async def test_chromium_sends_the_hints_a_page_delegates(node, tmp_path):
    """A page on another origin asks for the hints and delegates them to the node, as
    docs/transformations.md#client-hints says: Chromium then sends Sec-CH-Width for an <img> with
    `sizes` (250 px: a 300 px image), and none without `sizes` (the photo's own 600 px)."""
    images = "".join(f'<img id="{name}" {sizes} src="{node.url}/tr:w-auto,dpr-auto/photo.jpg?{name}" '
                     f'onload="document.body.dataset.{name} = this.naturalWidth">'
                     for name, sizes in (("sized", 'sizes="250px"'), ("unsized", "")))

    class Page(tornado.web.RequestHandler):
        def get(self) -> None:
            self.set_header("Accept-CH", "Sec-CH-Width, Sec-CH-DPR")
            self.set_header("Permissions-Policy", f'ch-width=(self "{node.url}"), ch-dpr=(self "{node.url}")')
            self.finish(f"<!doctype html><html><body>{images}</body></html>")

    sockets = bind_sockets(0, "127.0.0.1")
    page = HTTPServer(tornado.web.Application([(r"/", Page)]))
    page.add_sockets(sockets)
    try:
        browser = await asyncio.create_subprocess_exec(
            CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
            "--dump-dom", f"http://127.0.0.1:{sockets[0].getsockname()[1]}/", stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        dom, _ = await asyncio.wait_for(browser.communicate(), 120)
    finally:
        page.stop()
    assert b'data-sized="300"' in dom and b'data-unsized="600"' in dom, dom[-500:]
