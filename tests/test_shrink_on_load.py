"""Shrink-on-load at the largest factor the output allows: what it decodes at, and a quality guard.

The guard: an output rendered by the node (JPEG decoded at 1/2, 1/4 or 1/8 by libjpeg, then resized)
compared with a reference made from the fully decoded photo resized to the same size, by SSIM on
luminance (Gaussian window, σ 1.5, the usual constants). On the 12 MP photos libvips' own choice
(`thumbnail`, which leaves a factor of 2 for its resize) scores 0.997 at 300 px; the largest factor
scores 0.997 / 0.995 / 0.991 at 300 / 500 / 1000 px and 0.978 at 2000 px (a 1/2 decode with
almost nothing left to resize). The bounds below are those figures less a small margin.
"""

from __future__ import annotations

import pytest
import pyvips

from edge.config import Defaults, Limits
from edge.errors import UnprocessableSource
from edge.transform import render
from edge.transform.options import parse_transformation
from edge.transform.render import jpeg_shrink, probe, render_image
from tests.photos import SIZE, marker_corner, photos  # noqa: F401 - the fixture

#: output width → lowest SSIM allowed against the full-decode reference
BOUNDS = {300: 0.99, 1000: 0.985, 2000: 0.97}


def ssim(a: pyvips.Image, b: pyvips.Image) -> float:
    """Mean SSIM of the luminance of two images of the same size (Wang et al. 2004)."""
    assert (a.width, a.height) == (b.width, b.height)
    x, y = (image.colourspace("b-w")[0].cast("float") for image in (a, b))

    def mean(image: pyvips.Image) -> pyvips.Image:
        return image.gaussblur(1.5, precision="float")

    mx, my = mean(x), mean(y)
    var_x, var_y, cov = mean(x * x) - mx * mx, mean(y * y) - my * my, mean(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    return (((mx * my * 2 + c1) * (cov * 2 + c2)) / ((mx * mx + my * my + c1) * (var_x + var_y + c2))).avg()


def rendered(body: bytes, tr: str) -> pyvips.Image:
    output = render_image(body, parse_transformation(tr), "png", Defaults(), Limits())
    return pyvips.Image.new_from_buffer(output.body, "")


def test_the_largest_factor_that_leaves_the_output_size(photos):
    header = probe(photos.read(photos.jpeg), Limits())
    width, height = SIZE
    assert jpeg_shrink(header, 300, 200) == 8
    assert jpeg_shrink(header, 530, 354) == 8  # 4240 / 8 = 530: exactly enough
    assert jpeg_shrink(header, 531, 355) == 4
    assert jpeg_shrink(header, 2000, 1336) == 2
    assert jpeg_shrink(header, width, height) == 1
    png = probe(photos.read(photos.png), Limits())
    assert jpeg_shrink(png, 300, 200) == 1  # libvips' thumbnail: PNG has no shrink-on-load


@pytest.mark.parametrize("width", sorted(BOUNDS))
def test_quality_against_a_full_decode(photos, width):
    body = photos.read(photos.jpeg)
    output = rendered(body, f"w-{width}")
    reference = pyvips.Image.new_from_buffer(body, "").thumbnail_image(
        output.width, height=output.height, size="force")
    assert ssim(output, reference) >= BOUNDS[width]


def test_turned_photos_shrink_upright(photos):
    """An EXIF-turned JPEG decoded at 1/8 still comes out upright, at the asked size."""
    for orientation, name in photos.oriented.items():
        output = rendered(photos.read(name), "w-300,h-200")
        assert (output.width, output.height) == (300, 200)
        assert marker_corner(output) == "top_left", orientation


@pytest.mark.parametrize("tr", ["w-300", "w-300,rt-90", "w-500,fl-v", "w-1000"])
def test_small_decodes_made_whole_give_the_streamed_pixels(photos, monkeypatch, tr):
    """A decode within RANDOM_ACCESS_MAX_PIXELS (here 530x354 and 1060x708) is made whole in memory at
    its first use, for less CPU than streaming it; the output is the streamed decode's, byte for byte."""
    body = photos.read(photos.jpeg)
    whole = render_image(body, parse_transformation(tr), "png", Defaults(), Limits()).body
    monkeypatch.setattr(render, "RANDOM_ACCESS_MAX_PIXELS", 0)
    assert render_image(body, parse_transformation(tr), "png", Defaults(), Limits()).body == whole


@pytest.mark.parametrize("tr, access", [("w-300", "random"), ("w-1000", "random"), ("w-2000", "sequential")])
def test_only_decodes_within_the_bound_are_made_whole(photos, monkeypatch, tr, access):
    """w-300 and w-1000 decode the 12 MP photo at 1/8 and 1/4 (0.19 and 0.75 MP): whole; w-2000 at 1/2
    (3 MP): streamed. The loader is libvips' own, its arguments recorded on the way."""
    asked = []
    load = pyvips.Image.new_from_source

    def recording(source, options, **kwargs):
        asked.append(kwargs.get("access"))
        return load(source, options, **kwargs)

    monkeypatch.setattr(pyvips.Image, "new_from_source", staticmethod(recording))
    output = rendered(photos.read(photos.jpeg), tr)
    assert output.width == int(tr.removeprefix("w-"))
    assert asked[-1] == getattr(pyvips.enums.Access, access.upper())


def test_a_truncated_photo_made_whole_is_refused(photos):
    body = photos.read(photos.jpeg)
    with pytest.raises(UnprocessableSource):
        render_image(body[: len(body) // 2], parse_transformation("w-300"), "jpg", Defaults(), Limits())


@pytest.mark.parametrize("block", ["if-ar_lt_1,rt-90,if-end", "if-iw_lt_100,w-50,if-else,if-end"])
def test_an_if_block_with_nothing_to_do_leaves_the_shrink_on_load(photos, monkeypatch, block):
    """An if block whose chosen branch is empty (what Cloudinary's `a_auto_right` becomes for a box of the
    image's orientation) leaves the image as it is: the next step still decodes the 12 MP photo at 1/8, and
    the output is byte for byte the one without the block (it was a whole decode at full size first: 3 × the
    CPU)."""
    shrinks = []
    load = pyvips.Image.new_from_source

    def recording(source, options, **kwargs):
        shrinks.append(kwargs.get("shrink"))
        return load(source, options, **kwargs)

    body = photos.read(photos.jpeg)
    plain = render_image(body, parse_transformation("h-300,w-400"), "jpg", Defaults(), Limits()).body
    monkeypatch.setattr(pyvips.Image, "new_from_source", staticmethod(recording))
    blocked = render_image(body, parse_transformation(f"{block}:h-300,w-400"), "jpg", Defaults(), Limits()).body
    assert (shrinks[-1], blocked) == (8, plain)
