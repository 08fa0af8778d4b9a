"""HEIC originals (HEIF coded with HEVC, most phones' photos), on the 12 MP photo: libvips of
`pyvips[binary]` reads their header but not their pixels; `edge.transform.heic` decodes them.

Each output is checked against the same URL rendered from the photo's lossless PNG: HEVC at x265's
fastest preset and quality 50 leaves a mean difference of a few levels, a wrong turn, crop or colour
leaves tens.
"""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
import pyvips

from edge.config import Defaults, Limits
from edge.errors import BadRequest, UnprocessableSource
from edge.transform.formats import HEIC_LOADER
from edge.transform.options import parse_transformation
from edge.transform.render import probe, render_image
from tests.assets import close
from tests.nodes import decode, local_config, write_config
from tests.photos import SIZE, heic_bytes, heic_photo, marker_corner, photos  # noqa: F401 - the fixtures

#: mean absolute difference, in levels of 255, to the same render of the PNG
CLOSE = 4.0


def render(body: bytes, tr: str) -> pyvips.Image:
    rendered = render_image(body, parse_transformation(tr), "jpg", Defaults(), Limits())
    return pyvips.Image.new_from_buffer(rendered.body, "")


def difference(a: pyvips.Image, b: pyvips.Image) -> float:
    assert (a.width, a.height, a.bands) == (b.width, b.height, b.bands)
    return (a.cast("float") - b.cast("float")).abs().avg()


def test_the_header_is_read_as_a_heic(photos, heic_photo):
    header = probe(photos.read(heic_photo), Limits())
    assert (header.loader, header.width, header.height, header.has_alpha) == (HEIC_LOADER, *SIZE, False)
    assert header.decode_memory == SIZE[0] * SIZE[1] * 8  # decoded whole: 3 samples and 5 bytes more a pixel


@pytest.mark.parametrize("tr, corner", [
    ("w-300", "top_left"),
    ("w-4240", "top_left"),
    ("rt-90,w-300", "top_right"),
    ("fl-v,w-1000", "bottom_left"),
    ("w-600,h-600,fo-left", "top_left"),
    ("e-grayscale,bl-2,w-500", None),
])
def test_a_12_mp_heic_renders_as_its_png(photos, heic_photo, tr, corner):
    output, reference = render(photos.read(heic_photo), tr), render(photos.read(photos.png), tr)
    if corner:
        assert marker_corner(output) == corner
    assert difference(output, reference) < CLOSE  # and the same size


def test_a_heic_with_alpha_keeps_it():
    card = pyvips.Image.black(400, 300, bands=3).draw_rect([255, 0, 0], 0, 0, 200, 300, fill=True)
    alpha = pyvips.Image.black(400, 300).draw_rect([255], 0, 0, 200, 300, fill=True)  # right half clear
    body = heic_bytes(card.bandjoin(alpha).cast("uchar").copy(interpretation="srgb"))
    rendered = render_image(body, parse_transformation("w-200,f-png"), "png",
                            Defaults(), Limits())
    image = pyvips.Image.new_from_buffer(rendered.body, "")
    assert (rendered.format, image.bands) == ("png", 4)
    assert image.getpoint(20, 75)[3] > 250 and image.getpoint(180, 75)[3] < 5


def test_a_heic_with_a_profile_is_converted_to_srgb():
    """Display P3, as a phone's photo carries: sRGB's pure green is (117, 251, 76) in P3."""
    green = (pyvips.Image.black(200, 100, bands=3) + [0, 255, 0]).cast("uchar").copy(interpretation="srgb")
    in_p3 = green.icc_transform("p3")
    body = heic_bytes(in_p3, icc_profile=in_p3.get("icc-profile-data"))
    r, g, b = render(body, "w-50").getpoint(25, 12)
    assert r < 20 and g > 240 and b < 20  # the profile applied, not ignored
    kept = render(body, "w-50,cp-true")
    assert close(tuple(kept.getpoint(25, 12)), (117, 251, 76)) and kept.get_typeof("icc-profile-data")


def test_a_cut_heic_is_a_422(photos, heic_photo):
    body = photos.read(heic_photo)
    with pytest.raises(UnprocessableSource):
        render_image(body[: len(body) // 2], parse_transformation("w-300"), "jpg", Defaults(), Limits())


async def test_a_heic_is_served_as_jpeg_or_avif_and_as_itself(node_factory, tmp_path, photos, heic_photo):
    node = await node_factory(write_config(tmp_path, local_config(photos.folder)))
    plain = await node.fetch(f"/tr:w-300/{heic_photo}")
    assert (plain.code, plain.headers["Content-Type"], decode(plain).width) == (200, "image/jpeg", 300)
    auto = await node.fetch(f"/tr:w-300,f-auto/{heic_photo}", headers={"Accept": "image/avif,image/webp,*/*"})
    assert (auto.code, auto.headers["Content-Type"], decode(auto).width) == (200, "image/avif", 300)
    original = await node.fetch(f"/tr:orig-true/{heic_photo}")
    assert (original.code, original.headers["Content-Type"], original.body) == \
        (200, "image/heic", photos.read(heic_photo))


def several_images(*images: tuple[int, int, list[int]], primary: int = 0) -> bytes:
    """A HEIF of top-level images of one colour each (width, height, RGB), the one at `primary` its primary."""
    pillow_heif = pytest.importorskip("pillow_heif", reason="pillow-heif (the test extra) makes the HEIC")
    heif = None
    for width, height, colour in images:
        pixels = ((pyvips.Image.black(width, height, bands=3) + colour).cast("uchar")).write_to_memory()
        if heif is None:
            heif = pillow_heif.from_bytes("RGB", (width, height), pixels)
        else:
            heif.add_frombytes("RGB", (width, height), pixels)
    out = io.BytesIO()
    heif.save(out, quality=90, enc_params={"preset": "ultrafast"}, primary_index=primary)
    return out.getvalue()


def test_pg_picks_an_image_of_a_heic_that_holds_several():
    """A HEIF's several top-level images (a burst, an edit beside the original) are its pages: `pg-N`
    renders the N-th at its own size; the first without `pg`."""
    body = several_images((80, 60, [255, 0, 0]), (120, 90, [0, 0, 255]))
    rendered = {tr: render(body, tr) for tr in ("w-20", "pg-2", "pg-2,w-20")}
    assert {tr: (image.width, image.height, close(tuple(image.getpoint(5, 5)), (0, 0, 255)))
            for tr, image in rendered.items()} == {"w-20": (20, 15, False), "pg-2": (120, 90, True),
                                                   "pg-2,w-20": (20, 15, True)}
    with pytest.raises(BadRequest):
        render(body, "pg-3")


def test_a_heic_s_primary_image_is_its_picture_and_a_page_is_held_to_the_limit_by_its_own_size():
    """The primary image need not be the first (an edit saved after the original): it is what a URL without `pg`
    renders. The probe reads the primary's size: a page larger than it is held to `max_source_pixels` by its own
    (a mutation taking the first image, and one dropping the page's check, survived)."""
    body = several_images((80, 60, [255, 0, 0]), (120, 90, [0, 0, 255]), (200, 150, [0, 255, 0]), primary=1)
    image = render(body, "w-20")
    assert (image.width, image.height) == (20, 15) and close(tuple(image.getpoint(5, 5)), (0, 0, 255))
    limits = replace(Limits(), max_source_pixels=120 * 90)  # the primary's pixels, not the third page's
    first = pyvips.Image.new_from_buffer(render_image(body, parse_transformation("pg-1"), "jpg", Defaults(),
                                                      limits).body, "")
    assert (first.width, first.height) == (80, 60) and close(tuple(first.getpoint(5, 5)), (255, 0, 0))
    with pytest.raises(BadRequest, match="^source too large$"):
        render_image(body, parse_transformation("pg-3"), "jpg", Defaults(), limits)
