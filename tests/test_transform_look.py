"""The look parameters over a real socket: q, bl, e-*, r, bg, b, o."""

import math

import pytest
import pyvips

from tests.assets import close, pixel
from tests.nodes import decode, write_config
from tests.photos import SAMPLE, SIZE, photos  # noqa: F401 - a fixture
from tests.transform_node import fetch_image, image_node, image_root, images_config  # noqa: F401

RED, MAGENTA = (255, 0, 0), (255, 0, 255)


async def test_quality_changes_the_size(image_node):
    low, image = await fetch_image(image_node, "/tr:q-10/photo.jpg")
    high, _ = await fetch_image(image_node, "/tr:q-95/photo.jpg")
    assert (image.width, image.height) == (600, 400)
    assert len(low.body) < len(high.body) / 2


async def test_quality_default_comes_from_config(node_factory, image_root, tmp_path):
    node = await node_factory(write_config(tmp_path, images_config(image_root, "[defaults]\nquality = 30\n")))
    default, _ = await fetch_image(node, "/tr:w-200/photo.jpg")
    explicit, _ = await fetch_image(node, "/tr:w-200,q-30/photo.jpg")
    other, _ = await fetch_image(node, "/tr:w-200,q-80/photo.jpg")
    assert default.body == explicit.body != other.body


async def test_blur_softens_edges(image_node):
    _, sharp = await fetch_image(image_node, "/tr:f-png/card.png")
    _, blurred = await fetch_image(image_node, "/tr:bl-10,f-png/card.png")
    assert (blurred.width, blurred.height) == (200, 100)
    assert pixel(sharp, 98, 20) == (255, 0, 0)
    assert not close(pixel(blurred, 98, 20), RED, 30)  # the green quadrant bleeds in
    assert close(pixel(blurred, 20, 20), RED, 2)  # far from the edges nothing changes


async def test_blur_sigma_is_half_the_amount(image_node, image_root):
    """`bl-10` across a black | white edge (at x 50): the values beside it follow a gaussian of sigma 5 (10 / 2),
    255 × Φ(d / 5) at d px from the edge, up to the truncation of libvips' mask; sigma 2.5 is far steeper."""
    (image_root / "edge.png").write_bytes(stripes_png([(0, 0, 0), (255, 255, 255)], width=50))
    _, image = await fetch_image(image_node, "/tr:bl-10,f-png/edge.png")

    def gaussian(d: float, sigma: float) -> int:
        return round(255 * (1 + math.erf(d / sigma / math.sqrt(2))) / 2)
    for x in (44, 47, 49, 50, 52, 55):
        d = x + 0.5 - 50
        assert abs(pixel(image, x, 5)[0] - gaussian(d, 5)) <= 12, (x, pixel(image, x, 5), gaussian(d, 5))


async def test_grayscale(image_node):
    _, image = await fetch_image(image_node, "/tr:e-grayscale/card.png")
    assert image.bands == 1 or len(set(pixel(image, 10, 10)[:3])) == 1


async def test_grayscale_keeps_alpha(image_node):
    _, image = await fetch_image(image_node, "/tr:e-grayscale/alpha.png")
    assert image.hasalpha() and pixel(image, 0, 10)[-1] == 0


@pytest.mark.parametrize("tr, red, yellow", [
    # the card's red and yellow quadrants through CSS's filter formulas (values clipped to 0–255)
    ("e-brightness-N50", (128, 0, 0), (128, 128, 0)),
    ("e-brightness-100", (255, 0, 0), (255, 255, 0)),
    ("e-saturation-N100", (54, 54, 54), (237, 237, 237)),
    ("e-saturation-50", (255, 0, 0), (255, 255, 0)),
    ("e-sepia-100", (100, 89, 69), (255, 255, 206)),
    ("e-negate", (0, 255, 255), (0, 0, 255)),
    # hue-rotate(180deg), hue-rotate(-90deg): the matrix of CSS's Filter Effects spec, worked by hand
    ("e-hue-100", (0, 109, 109), (218, 218, 255)),
    ("e-hue-N50", (109, 18, 255), (255, 164, 255)),
    ("e-red-N50", (128, 0, 0), (128, 255, 0)),
    ("e-green-N100,e-blue-50", (255, 0, 0), (255, 0, 0)),
])
async def test_colour_adjustments_follow_the_css_formulas(image_node, tr, red, yellow):
    _, image = await fetch_image(image_node, f"/tr:{tr},f-png/card.png")
    assert (image.width, image.height) == (200, 100)
    assert close(pixel(image, 20, 20), red, 1) and close(pixel(image, 180, 80), yellow, 1), \
        (pixel(image, 20, 20), pixel(image, 180, 80))


@pytest.mark.parametrize("tr, red, green, blue, yellow", [
    # libvips' grey levels of the card's quadrants: red 127, green 220, blue 76, yellow 247
    ("e-blackwhite-50", 0, 255, 0, 255), ("e-blackwhite-90", 0, 0, 0, 255), ("e-blackwhite-0", 255, 255, 255, 255),
    ("e-blackwhite-100", 0, 0, 0, 0)])
async def test_blackwhite_is_white_above_its_threshold(image_node, tr, red, green, blue, yellow):
    _, image = await fetch_image(image_node, f"/tr:{tr},f-png/card.png")
    assert [pixel(image, x, y)[0] for x, y in ((20, 20), (180, 20), (20, 80), (180, 80))] == [red, green, blue, yellow]


def chroma(image) -> float:
    return image.colourspace("lch")[1].avg()


async def test_vibrance_moves_dull_colours_and_leaves_vivid_ones(image_node):
    _, plain = await fetch_image(image_node, "/tr:f-png/photo.jpg")
    _, more = await fetch_image(image_node, "/tr:e-vibrance-100,f-png/photo.jpg")
    _, less = await fetch_image(image_node, "/tr:e-vibrance-N100,f-png/photo.jpg")
    assert chroma(less) < chroma(plain) * 0.8 and chroma(more) > chroma(plain) * 1.2
    for tr in ("e-vibrance-100", "e-vibrance-N100"):  # pure red and blue (spread 1): unchanged
        _, card = await fetch_image(image_node, f"/tr:{tr},f-png/card.png")
        assert close(pixel(card, 20, 20), (255, 0, 0), 1) and close(pixel(card, 20, 80), (0, 0, 255), 1)


def band_means(image) -> list[float]:
    return [image[band].avg() for band in range(3)]


async def test_auto_colour_takes_a_colour_cast_away(image_node):
    """The photo made sepia (a strong cast: red high, blue low), then `e-autocolor` in the next step:
    each band stretched on its own, their means come back together; blended at 0 nothing changes."""
    _, cast = await fetch_image(image_node, "/tr:e-sepia-100,f-png/photo.jpg")
    _, fixed = await fetch_image(image_node, "/tr:e-sepia-100:e-autocolor,f-png/photo.jpg")
    _, none = await fetch_image(image_node, "/tr:e-sepia-100:e-autocolor-0,f-png/photo.jpg")
    red, _, blue = band_means(cast)
    fixed_red, _, fixed_blue = band_means(fixed)
    assert red - blue > 40 and abs(fixed_red - fixed_blue) < (red - blue) / 3
    assert (none - cast).abs().max() == 0


async def test_auto_brightness_brings_a_dark_photo_to_the_middle(image_node):
    _, dark = await fetch_image(image_node, "/tr:e-brightness-N80,f-png/photo.jpg")
    _, brighter = await fetch_image(image_node, "/tr:e-brightness-N80:e-autobrightness,f-png/photo.jpg")
    _, half = await fetch_image(image_node, "/tr:e-brightness-N80:e-autobrightness-50,f-png/photo.jpg")
    assert dark.avg() < 50 and 90 < brighter.avg() < 170 and dark.avg() < half.avg() < brighter.avg()


async def test_auto_brightness_is_held_to_a_gamma_of_3_either_way(image_node, image_root):
    """A near-black grey (5) and a near-white one (250) through `e-autobrightness`: the gamma that would bring
    them to mid grey is past `AUTO_GAMMA` (3), so each gets 3: 255 × (5/255)^(1/3) = 69 (a night scene is not
    made day), 255 × (250/255)^3 = 240, not 128."""
    for grey, expected in ((5, 69), (250, 240)):
        (image_root / f"grey{grey}.png").write_bytes(swatch_png((grey, grey, grey)))
        _, image = await fetch_image(image_node, f"/tr:e-autobrightness,f-png/grey{grey}.png")
        assert close(pixel(image, 4, 4), (expected,) * 3, 1), (grey, pixel(image, 4, 4))


async def test_contrast_and_auto_colour_leave_a_flat_image_as_it_is(image_node, image_root):
    """One colour has no range to stretch: `e-contrast` and `e-autocolor` serve it unchanged."""
    (image_root / "flat_swatch.png").write_bytes(swatch_png((90, 140, 200)))
    for tr in ("e-contrast", "e-autocolor", "e-contrast-50"):
        _, image = await fetch_image(image_node, f"/tr:{tr},f-png/flat_swatch.png")
        assert pixel(image, 4, 4) == (90, 140, 200), (tr, pixel(image, 4, 4))


async def test_a_contrast_blend_is_between_the_original_and_the_stretch(image_node):
    _, plain = await fetch_image(image_node, "/tr:f-png/flat.png")
    _, stretched = await fetch_image(image_node, "/tr:e-contrast,f-png/flat.png")
    _, half = await fetch_image(image_node, "/tr:e-contrast-50,f-png/flat.png")
    spread = [image.deviate() for image in (plain, half, stretched)]
    assert spread == sorted(spread) and spread[0] * 1.5 < spread[1] < spread[2] / 1.2


async def test_colour_adjustments_keep_alpha(image_node):
    _, plain = await fetch_image(image_node, "/tr:f-png/alpha.png")
    adjusting = "e-brightness-20,e-saturation-N50,e-sepia-60,e-vibrance-50,e-negate"
    _, adjusted = await fetch_image(image_node, f"/tr:{adjusting},f-png/alpha.png")
    assert adjusted.bands == 4 and (adjusted[3] - plain[3]).abs().max() == 0


def grey_ramp_png() -> bytes:
    """256×4, lossless: column x is the grey (x, x, x)."""
    ramp = pyvips.Image.xyz(256, 4)[0].cast("uchar")
    return ramp.bandjoin([ramp, ramp]).copy(interpretation="srgb").pngsave_buffer()


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def sigmoidal(u: float, contrast: float) -> float:
    """ImageMagick's scaled sigmoidal contrast at mid grey (its `-sigmoidal-contrast <contrast>x50%`)."""
    low, high = _sigmoid(-contrast / 2), _sigmoid(contrast / 2)
    return (_sigmoid(contrast * (u - 0.5)) - low) / (high - low)


def on_ramp(curve) -> list[int]:
    return [min(255, max(0, round(255 * curve(x / 255)))) for x in range(256)]


@pytest.mark.parametrize("tr, curve", [
    # the formulas docs/transformations.md gives, worked from the documented ones (ImageMagick's, CSS's)
    ("e-sigmoidcontrast-60", lambda u: sigmoidal(u, 6)),
    ("e-sigmoidcontrast-N60", None),  # the inverse: undone by e-sigmoidcontrast-60, below
    ("e-linearcontrast-150", lambda u: (u - 0.5) * 1.5 + 0.5),
    ("e-linearcontrast-40", lambda u: (u - 0.5) * 0.4 + 0.5),
    ("e-gamma-80", lambda u: u ** (1 / 1.8)),
    ("e-gamma-N40", lambda u: u ** (1 / 0.6)),
    ("e-brightnesshsb-60", lambda u: u * 1.6),  # a grey: its largest value is each
])
async def test_tone_curves_follow_their_formulas(image_node, image_root, tr, curve):
    (image_root / "ramp.png").write_bytes(grey_ramp_png())
    _, image = await fetch_image(image_node, f"/tr:{tr},f-png/ramp.png")
    assert (image.width, image.height, image.bands) == (256, 4, 3)
    got = [pixel(image, x, 2)[0] for x in range(256)]
    if curve is None:
        _, undone = await fetch_image(image_node, f"/tr:{tr}:e-sigmoidcontrast-60,f-png/ramp.png")
        flatter = [pixel(undone, x, 2)[0] for x in range(256)]
        assert max(abs(value - x) for x, value in enumerate(flatter)) <= 2 and got[64] > 64 and got[192] < 192
        return
    assert max(abs(a - b) for a, b in zip(got, on_ramp(curve))) <= 1, tr
    assert got[0] == 0 and got[255] == 255 or tr.startswith("e-linearcontrast-40")


def swatch_png(colour: tuple[int, ...], width: int = 8, height: int = 8) -> bytes:
    return pyvips.Image.black(width, height).new_from_image(list(colour)).cast("uchar").copy(
        interpretation="srgb").pngsave_buffer()


async def test_hsb_brightness_keeps_the_hue_where_brightness_clips(image_node, image_root):
    """(200, 100, 50) made 60 % brighter: HSB's brightness stops where the largest value reaches white, the
    others scaled alike (255, 128, 64); `e-brightness` clips the red alone and shifts the hue (255, 160, 80)."""
    (image_root / "swatch.png").write_bytes(swatch_png((200, 100, 50)))
    for tr, expected in (("e-brightnesshsb-60", (255, 128, 64)), ("e-brightness-60", (255, 160, 80)),
                         ("e-brightnesshsb-N50", (100, 50, 25))):
        _, image = await fetch_image(image_node, f"/tr:{tr},f-png/swatch.png")
        assert close(pixel(image, 4, 4), expected, 1), (tr, pixel(image, 4, 4))


async def test_colorize_lays_the_colour_over_each_value(image_node, image_root):
    """`e-colorize-co-FF6600_in-40` on the grey ramp: each value 0.6 × itself + 0.4 × the colour's; a colour
    at half opacity weighs half as much; on the card's red, 100 % is the colour alone."""
    (image_root / "ramp.png").write_bytes(grey_ramp_png())
    _, image = await fetch_image(image_node, "/tr:e-colorize-co-FF6600_in-40,f-png/ramp.png")
    expected = [(round(0.6 * x + 102), round(0.6 * x + 40.8), round(0.6 * x)) for x in range(256)]
    assert max(max(abs(a - b) for a, b in zip(pixel(image, x, 1), want)) for x, want in enumerate(expected)) <= 1
    _, half = await fetch_image(image_node, "/tr:e-colorize-in-80_co-FF660050,f-png/ramp.png")
    assert (await fetch_image(image_node, "/tr:e-colorize-co-FF6600_in-40,f-png/ramp.png"))[0].body != \
        (await fetch_image(image_node, "/tr:f-png/ramp.png"))[0].body
    assert close(pixel(half, 100, 1), pixel(image, 100, 1), 1)  # 80 % of a colour at 50 %: 40 %
    _, full = await fetch_image(image_node, "/tr:e-colorize-co-0000FF,f-png/card.png")
    assert close(pixel(full, 20, 20), (0, 0, 255), 0) and close(pixel(full, 180, 80), (0, 0, 255), 0)


async def test_vignette_darkens_toward_the_corners(image_node, image_root):
    """`e-vignette-60` on a 200×100 swatch: the centre as it was, each value times 1 − 0.6 × d² (d² half
    the sum of the squared distances across, per half side: ~1 at the corners, ~½ at the sides' middles)."""
    (image_root / "wide.png").write_bytes(swatch_png((200, 100, 50), 200, 100))
    _, image = await fetch_image(image_node, "/tr:e-vignette-60,f-png/wide.png")

    def expected(x: int, y: int) -> tuple[int, ...]:
        d2 = (((x + 0.5 - 100) / 100) ** 2 + ((y + 0.5 - 50) / 50) ** 2) / 2
        return tuple(round(v * (1 - 0.6 * d2)) for v in (200, 100, 50))
    for x, y in ((100, 50), (0, 0), (199, 99), (0, 50), (100, 0), (150, 25)):
        assert close(pixel(image, x, y), expected(x, y), 1), (x, y, pixel(image, x, y))
    assert close(pixel(image, 0, 0), (80, 40, 20), 2)


def fade_png() -> bytes:
    """256×4 of (200, 100, 50), lossless: column x at an opacity of x/255."""
    ramp = pyvips.Image.xyz(256, 4)[0].cast("uchar")
    return pyvips.Image.black(256, 4).new_from_image([200, 100, 50]).cast("uchar").bandjoin(ramp).copy(
        interpretation="srgb").pngsave_buffer()


async def test_opacity_threshold_makes_each_pixel_transparent_or_opaque(image_node, image_root):
    """A ramp of opacity (column x at x/255) through `e-opacitythreshold-50`: transparent below 50 %, opaque
    from it; then `o-50` halves what is left; rounded corners' soft edges come out hard."""
    (image_root / "fade.png").write_bytes(fade_png())
    _, image = await fetch_image(image_node, "/tr:e-opacitythreshold-50,f-png/fade.png")
    assert [pixel(image, x, 1)[3] for x in (0, 127, 128, 255)] == [0, 0, 255, 255]
    _, halved = await fetch_image(image_node, "/tr:e-opacitythreshold-50,o-50,f-png/fade.png")
    assert [pixel(halved, x, 1)[3] for x in (0, 127, 128, 255)] == [0, 0, 127, 127]  # o-50: 127.5, truncated
    _, soft = await fetch_image(image_node, "/tr:w-64,r-max,f-png/alpha.png")
    _, hard = await fetch_image(image_node, "/tr:w-64,r-max,e-opacitythreshold-50,f-png/alpha.png")
    assert set(bytes(soft[3].write_to_memory())) - {0, 255} and set(bytes(hard[3].write_to_memory())) == {0, 255}


async def test_opacity_threshold_0_makes_every_pixel_opaque_and_100_keeps_only_the_opaque_ones(image_node,
                                                                                           image_root):
    """The ends of `e-opacitythreshold` on the opacity ramp: at 0 even the transparent column is opaque; at 100
    only the opaque column stays, the one at 254/255 goes."""
    (image_root / "fade.png").write_bytes(fade_png())
    _, none = await fetch_image(image_node, "/tr:e-opacitythreshold-0,f-png/fade.png")
    _, all_ = await fetch_image(image_node, "/tr:e-opacitythreshold-100,f-png/fade.png")
    assert [pixel(none, x, 1)[3] for x in (0, 1, 254, 255)] == [255, 255, 255, 255]
    assert [pixel(all_, x, 1)[3] for x in (0, 1, 254, 255)] == [0, 0, 0, 255]
    assert pixel(all_, 255, 1) == (200, 100, 50, 255)


async def test_pixelate_averages_squares_from_the_top_left(image_node):
    """30 px squares on the 200×100 card (red | green over blue | yellow, split at x 100, y 50): the square
    from x 90 holds 10 columns of red and 20 of green; from y 30, 20 rows of the top and 10 of the bottom;
    the squares the edges cut (x from 180, y from 90) are of their own colour."""
    _, image = await fetch_image(image_node, "/tr:e-pixelate-30,f-png/card.png")
    assert (image.width, image.height) == (200, 100)
    assert close(pixel(image, 91, 1), (85, 170, 0), 1) and pixel(image, 91, 1) == pixel(image, 119, 29)
    assert close(pixel(image, 1, 31), (170, 0, 85), 1) and close(pixel(image, 20, 20), (255, 0, 0), 0)
    assert close(pixel(image, 199, 99), (255, 255, 0), 0) and close(pixel(image, 185, 10), (0, 255, 0), 0)


async def test_pixelate_weighs_each_pixel_by_its_opacity(image_node, image_root):
    """One 20×10 square, half transparent red, half opaque blue: the hidden red counts for nothing, the square
    is blue at half opacity (not the purple of a plain average)."""
    halves = [pyvips.Image.black(10, 10).new_from_image(colour) for colour in ([255, 0, 0, 0], [0, 0, 255, 255])]
    (image_root / "half.png").write_bytes(
        halves[0].join(halves[1], "horizontal").cast("uchar").copy(interpretation="srgb").pngsave_buffer())
    _, image = await fetch_image(image_node, "/tr:e-pixelate-20,f-png/half.png")
    assert (image.width, image.height, image.bands) == (20, 10, 4)
    assert close(pixel(image, 0, 0), (0, 0, 255, 128), 1) and pixel(image, 0, 0) == pixel(image, 19, 9), \
        (pixel(image, 0, 0), pixel(image, 19, 9))


async def test_a_region_keeps_the_blur_or_the_pixels_to_itself(image_node):
    """`e-region-x_y_w_h` (Cloudinary's `e_blur_region`, `e_pixelate_region`): the step's `bl` and
    `e-pixelate` inside the rectangle only, its squares counted from its corner; outside, the card as it is."""
    _, blurred = await fetch_image(image_node, "/tr:bl-10,e-region-50_0_100_50,f-png/card.png")
    assert not close(pixel(blurred, 98, 20), (255, 0, 0), 30)  # across the red | green edge, inside
    assert [pixel(blurred, x, y) for x, y in ((20, 20), (98, 70), (160, 20))] == [(255, 0, 0), (0, 0, 255), (0, 255, 0)]
    _, squares = await fetch_image(image_node, "/tr:e-pixelate-30,e-region-60_20_100_60,f-png/card.png")
    assert close(pixel(squares, 95, 25), (85, 170, 0), 1) and pixel(squares, 95, 25) == pixel(squares, 119, 49)
    assert close(pixel(squares, 95, 55), (170, 170, 85), 1)  # the next row of squares: 10 columns blue, 20 yellow
    assert [pixel(squares, x, y) for x, y in ((10, 10), (95, 85), (190, 90), (165, 25))] == [
        (255, 0, 0), (0, 0, 255), (255, 255, 0), (0, 255, 0)]


def detail(image) -> float:
    """Mean high-frequency energy: how far pixels stand out from their neighbourhood."""
    return (image.cast("float") - image.gaussblur(1.5)).abs().avg()


@pytest.mark.parametrize("tr", ["e-sharpen", "e-sharpen-60", "e-usm-2-2-0.8-0.024", "e-usm-0-1.5-2-0"])
async def test_sharpening_adds_detail(image_node, tr):
    _, plain = await fetch_image(image_node, "/tr:f-png/photo.jpg")
    _, sharpened = await fetch_image(image_node, f"/tr:{tr},f-png/photo.jpg")
    assert (sharpened.width, sharpened.height) == (600, 400)
    assert detail(sharpened) > detail(plain) * 1.1


async def test_sharpen_amount_matters(image_node):
    _, light = await fetch_image(image_node, "/tr:e-sharpen-5,f-png/photo.jpg")
    _, strong = await fetch_image(image_node, "/tr:e-sharpen-90,f-png/photo.jpg")
    assert detail(strong) > detail(light) * 1.1


async def test_usm_threshold_spares_small_differences(image_node):
    _, plain = await fetch_image(image_node, "/tr:f-png/flat.png")
    _, masked = await fetch_image(image_node, "/tr:e-usm-1-1-3-0.5,f-png/flat.png")
    assert masked.avg() == plain.avg()


async def test_usm_threshold_leaves_low_contrast_detail_and_sharpens_an_edge(image_node, image_root):
    """`e-usm-2-1-3-0.1`: columns alternating 120 | 130 differ from their blur by ~5, under 10 % of 255: the same
    bytes; the 60 | 200 edge (at x 100) differs by far more: overshoots on both sides."""
    greys = [(120,) * 3, (130,) * 3] * 25 + [(60,) * 3] * 50 + [(200,) * 3] * 50
    (image_root / "texture.png").write_bytes(stripes_png(greys, width=1))
    _, plain = await fetch_image(image_node, "/tr:f-png/texture.png")
    _, masked = await fetch_image(image_node, "/tr:e-usm-2-1-3-0.1,f-png/texture.png")
    assert [pixel(masked, x, 5) for x in range(5, 40)] == [pixel(plain, x, 5) for x in range(5, 40)]
    assert pixel(masked, 99, 5)[0] < 60 - 20 and pixel(masked, 100, 5)[0] > 200 + 20
    assert pixel(masked, 75, 5) == (60, 60, 60) and pixel(masked, 125, 5) == (200, 200, 200)


async def test_contrast_stretches_the_1st_to_99th_percentile_past_outliers(image_node, image_root):
    """Greys 120 | 136 over 40×20 with one black and one white pixel (1/800 each): the 1st and 99th percentiles
    are the two greys, stretched to 0 and 255; a min–max stretch would leave them as they are."""
    rows = [[0 if (x, y) == (0, 0) else 255 if (x, y) == (39, 19) else 120 if x < 20 else 136 for x in range(40)]
            for y in range(20)]
    grey = pyvips.Image.new_from_array(rows).cast("uchar")
    (image_root / "outliers.png").write_bytes(grey.bandjoin([grey, grey]).copy(interpretation="srgb").pngsave_buffer())
    _, image = await fetch_image(image_node, "/tr:e-contrast,f-png/outliers.png")
    assert close(pixel(image, 10, 10), (0, 0, 0), 5) and close(pixel(image, 30, 10), (255, 255, 255), 5), \
        (pixel(image, 10, 10), pixel(image, 30, 10))


async def test_contrast_stretches_levels(image_node):
    # flat.png spans grey 100..150 only
    _, image = await fetch_image(image_node, "/tr:e-contrast,f-png/flat.png")
    assert image.min() <= 5 and image.max() >= 250


async def test_rounded_corners_make_alpha(image_node):
    _, image = await fetch_image(image_node, "/tr:r-20,f-png/card.png")
    assert image.bands == 4
    assert pixel(image, 0, 0)[3] == 0 and pixel(image, 199, 99)[3] == 0
    assert pixel(image, 100, 50)[3] == 255 and pixel(image, 25, 0)[3] == 255


async def test_a_radius_past_half_the_short_side_rounds_it_into_a_half_circle(image_node):
    """`r-80` on the 200×100 card is drawn at 50, half its height: a pill, its ends half circles."""
    _, image = await fetch_image(image_node, "/tr:r-80,f-png/card.png")
    assert pixel(image, 1, 50)[3] == 255 and pixel(image, 198, 50)[3] == 255 and pixel(image, 100, 1)[3] == 255
    assert pixel(image, 8, 8)[3] == 0 and pixel(image, 191, 91)[3] == 0 and pixel(image, 60, 1)[3] == 255


async def test_radius_max_is_an_ellipse(image_node):
    _, image = await fetch_image(image_node, "/tr:r-max,f-png/card.png")
    assert pixel(image, 0, 0)[3] == 0 and pixel(image, 15, 10)[3] == 0
    assert pixel(image, 100, 50)[3] == 255 and pixel(image, 2, 50)[3] > 0


async def test_rounded_corners_on_jpeg_flatten_on_bg(image_node):
    response, image = await fetch_image(image_node, "/tr:r-20,bg-FF00FF/photo.jpg")
    assert response.headers["Content-Type"] == "image/jpeg" and image.bands == 3
    assert close(pixel(image, 0, 0), MAGENTA)


async def test_rounded_corners_with_f_auto_become_png_for_old_browsers(image_node):
    response, image = await fetch_image(image_node, "/tr:r-20,f-auto/photo.jpg", headers={"Accept": "*/*"})
    assert response.headers["Content-Type"] == "image/png" and image.hasalpha()


async def test_background_names_and_hex_are_one_cache_entry(image_node):
    first, image = await fetch_image(image_node, "/tr:w-100,h-100,cm-pad_resize,bg-FF0000/photo.jpg")
    second, _ = await fetch_image(image_node, "/tr:w-100,h-100,cm-pad_resize,bg-red/photo.jpg")
    assert close(pixel(image, 50, 2), RED)
    assert second.headers["X-Cache"] == "HIT" and second.body == first.body


async def test_background_with_alpha_pads_translucent(image_node):
    # ImageKit's RRGGBBOO: the last two digits are an opacity in percent, 80 % → alpha 204
    _, image = await fetch_image(image_node, "/tr:w-100,h-100,cm-pad_resize,bg-FF000080,f-png/card.png")
    assert image.bands == 4
    assert pixel(image, 50, 2) == (255, 0, 0, 204) and pixel(image, 50, 50)[3] == 255


async def test_background_flattens_transparency_for_jpeg(image_node):
    _, image = await fetch_image(image_node, "/tr:bg-FF00FF,f-jpg/alpha.png")
    assert image.bands == 3 and close(pixel(image, 0, 30), MAGENTA)


async def test_border_surrounds_the_image(image_node):
    _, image = await fetch_image(image_node, "/tr:b-5_FF00FF/card.png")
    assert (image.width, image.height) == (210, 110)
    assert close(pixel(image, 2, 2), MAGENTA) and close(pixel(image, 207, 107), MAGENTA)
    assert close(pixel(image, 7, 7), RED)


async def test_opacity(image_node):
    _, image = await fetch_image(image_node, "/tr:o-50/card.png")
    assert image.bands == 4 and abs(pixel(image, 10, 10)[3] - 128) <= 1
    _, flattened = await fetch_image(image_node, "/tr:o-50,f-jpg/card.png")
    assert close(pixel(flattened, 10, 10), (255, 128, 128))


async def test_look_applies_to_a_chained_step(image_node):
    response = await image_node.fetch("/tr:w-100:e-grayscale:r-10,f-png/card.png")
    image = decode(response)
    assert (image.width, image.height) == (100, 50) and image.hasalpha()
    assert pixel(image, 0, 0)[-1] == 0


async def test_gradient_directions_towards_a_corner_as_imagekit_writes_them(image_node):
    """`ld-top_right` (ImageKit's own example, `e-gradient-ld-top_right_from-…`) and the other corners
    were a 400: the `_` inside the side's name was read as the separator of the gradient's parts.
    card.png: red top-left, green top-right, blue bottom-left, yellow bottom-right."""
    _, image = await fetch_image(image_node, "/tr:e-gradient-ld-top_right_from-000000_to-00000000_sp-1,f-png/card.png")
    assert close(pixel(image, 2, 97), (0, 0, 0), 12) and close(pixel(image, 197, 2), (0, 255, 0), 8)
    _, other = await fetch_image(image_node, "/tr:e-gradient-ld-bottom_left_from-000000_to-00000000,f-png/card.png")
    assert close(pixel(other, 197, 2), (0, 0, 0), 12) and close(pixel(other, 2, 97), (0, 0, 255), 8)


async def test_a_gradients_stop_point_may_be_an_expression(image_node):
    """ImageKit's expression docs list `sp` (`sp-bh_mul_0.75`, `sp-ih_div_2`): evaluated as the stop in
    pixels, the same image as the number it comes to (it was a 400)."""
    gradient = "e-gradient-ld-bottom_from-000000_to-00000000_sp"
    number, image = await fetch_image(image_node, f"/tr:{gradient}-50,f-png/card.png")
    for expression in ("ch_div_2", "ih_mul_0.5"):  # card.png is 100 px high
        expressed, _ = await fetch_image(image_node, f"/tr:{gradient}-{expression},f-png/card.png")
        assert expressed.body == number.body
    assert close(pixel(image, 5, 1), (0, 0, 0), 12) and close(pixel(image, 5, 60), (0, 0, 255), 2)
    response, _ = await fetch_image(image_node, f"/tr:{gradient}-ih_sub_ih/card.png", status=400)
    assert b"sp-ih_sub_ih" in response.body


def stripes_png(colours: list[tuple[int, int, int]], width: int = 20, height: int = 10) -> bytes:
    """One `width` px stripe of each colour, side by side: a lossless PNG."""
    stripes = [pyvips.Image.black(width, height) + list(colour) for colour in colours]
    image = pyvips.Image.arrayjoin(stripes).cast("uchar").copy(interpretation="srgb")
    return image.pngsave_buffer()


REDS_AND_OTHERS = [(255, 0, 0), (128, 0, 0), (255, 128, 128), (0, 200, 0), (255, 255, 255), (40, 40, 40)]


async def test_colour_replacement_moves_a_colour_and_its_shades(image_node, image_root):
    """`cr-0000FF_100_FF0000`: red becomes the blue asked for; dark red (within half the tolerance in Lab)
    becomes a blue as much darker; light red, a little farther, most of the way; green, white and dark grey,
    far from red, are the same bytes. At tolerance 0 only red itself moves."""
    (image_root / "reds.png").write_bytes(stripes_png(REDS_AND_OTHERS))
    _, plain = await fetch_image(image_node, "/tr:f-png/reds.png")
    _, image = await fetch_image(image_node, "/tr:cr-0000FF_100_FF0000,f-png/reds.png")
    red, dark, light, green, white, grey = (pixel(image, 20 * i + 10, 5) for i in range(6))
    assert close(red, (0, 0, 255), 2)
    assert dark[2] > 2 * max(dark[0], dark[1]) and sum(dark) < sum(red)  # a darker blue
    assert light[2] > max(light[0], light[1]) and sum(light) > sum(red)  # a lighter blue
    assert (green, white, grey) == tuple(pixel(plain, 20 * i + 10, 5) for i in (3, 4, 5))
    _, on_white = await fetch_image(image_node, "/tr:cr-0000FF_20_white,f-png/reds.png")  # a background
    assert close(pixel(on_white, 90, 5), (0, 0, 255), 2) and pixel(on_white, 110, 5) == pixel(plain, 110, 5)
    _, exact = await fetch_image(image_node, "/tr:cr-blue_0_red,f-png/reds.png")
    assert close(pixel(exact, 10, 5), (0, 0, 255), 2)
    assert [pixel(exact, 20 * i + 10, 5) for i in range(1, 6)] == [pixel(plain, 20 * i + 10, 5) for i in range(1, 6)]


async def test_colour_replacement_at_tolerance_0_leaves_a_red_5_levels_off(image_node, image_root):
    """`cr-blue_0_red`: red itself becomes blue; (250, 0, 0), 1.6 Lab units from it (a lightness difference
    counting half), is not red and stays the same bytes."""
    (image_root / "near_reds.png").write_bytes(stripes_png([(255, 0, 0), (250, 0, 0)]))
    _, image = await fetch_image(image_node, "/tr:cr-blue_0_red,f-png/near_reds.png")
    assert close(pixel(image, 10, 5), (0, 0, 255), 2) and pixel(image, 30, 5) == (250, 0, 0), pixel(image, 30, 5)


async def test_colour_replacement_without_a_source_takes_the_dominant_colour(image_node, image_root):
    """`cr-0000FF`: the image's dominant colour (green, five stripes of six) becomes blue; red stays."""
    (image_root / "greens.png").write_bytes(stripes_png([(0, 160, 0)] * 5 + [(255, 0, 0)]))
    _, image = await fetch_image(image_node, "/tr:cr-0000FF,f-png/greens.png")
    assert close(pixel(image, 10, 5), (0, 0, 255), 2) and close(pixel(image, 90, 5), (0, 0, 255), 2)
    assert pixel(image, 110, 5) == (255, 0, 0)
    # the image's as the step starts, not the step's result: a turn's white corners, more of it than the green,
    # stay white (they were the colour replaced, and the green stayed)
    _, turned = await fetch_image(image_node, "/tr:w-60,rt-45,bg-white,cr-0000FF,f-png/greens.png")
    assert pixel(turned, 1, 1) == (255, 255, 255) and close(pixel(turned, 20, 20), (0, 0, 255), 2)


@pytest.fixture(scope="module")
def cut_outs(photos) -> dict[str, bytes]:
    """The 12 MP photo's left half shown, its right half wholly transparent over black, over white (what an editor
    leaves under a cut-out varies), and the shown half alone, opaque."""
    photo = pyvips.Image.new_from_file(str(photos.path(photos.png)))
    half = photo.width // 2
    shown = pyvips.Image.black(photo.width, photo.height).insert(pyvips.Image.black(half, photo.height) + 255, 0, 0)
    made = {name: (shown > 0).ifthenelse(photo, [value] * 3).bandjoin(shown).cast("uchar").copy(interpretation="srgb")
            for name, value in (("over_black", 0), ("over_white", 255))}
    made["opaque_half"] = photo.crop(0, 0, half, photo.height)
    return {name: image.pngsave_buffer(compression=1) for name, image in made.items()}


@pytest.mark.parametrize("tr", ["e-contrast", "e-autocolor", "e-autobrightness", "bl-10", "e-sharpen-50",
                                "e-usm-3-2-2-0"])
async def test_what_lies_under_transparent_pixels_changes_no_shown_pixel(node_factory, tmp_path, cut_outs, tr):
    """A cut-out's look is its shown pixels': the levels were counted under transparent pixels too, and the blurs
    spread their colour into the edge, so that one picture came out washed out over black, darkened over white (a
    shown grey ramp 100–125 stretched to 205–255 or to 0–39; ImageKit probe). 800 px across the edge, cut out as
    they are (a resize would have made every hidden colour black): the shown half is the same over black or white,
    and as the same half, opaque, makes it, but near the edge, which a blur makes translucent."""
    root = tmp_path / "images"
    root.mkdir()
    for name, body in cut_outs.items():
        (root / f"{name}.png").write_bytes(body)
    node = await node_factory(write_config(tmp_path, images_config(root)))
    x = SIZE[0] // 2 - 400
    rendered = {name: (await fetch_image(node, f"/tr:cm-extract,x-{x},y-0,w-{400 if name == 'opaque_half' else 800},"
                                               f"h-800:{tr},f-png/{name}.png"))[1] for name in cut_outs}
    black, white, opaque = rendered["over_black"], rendered["over_white"], rendered["opaque_half"]
    assert (black.width, black.height, black.bands, opaque.width) == (800, 800, 4, 400)
    assert black.extract_band(3).crop(0, 0, 360, 800).min() == 255  # the left half shows, but near the edge (bl-10)
    for other in (white, opaque):
        difference = black.crop(0, 0, 360, 800).extract_band(0, n=3) - other.crop(0, 0, 360, 800).extract_band(0, n=3)
        assert difference.abs().max() <= 2, (tr, other is opaque, difference.abs().max())
    edge = [image.crop(360, 0, 60, 800) for image in (black, white)]  # where the blurs reach: shown the same
    shown = edge[0].extract_band(3) >= 32
    difference = shown.ifthenelse((edge[0] - edge[1]).extract_band(0, n=3).abs(), 0)
    assert shown.avg() > 0 and difference.max() <= 2, (tr, difference.max())


@pytest.mark.parametrize("tr", ["f-webp", "q-50,f-avif"])
async def test_a_lossy_encode_of_a_cut_out_is_the_same_whatever_lies_under_its_transparent_pixels(
        node_factory, tmp_path, cut_outs, tr):
    """libwebp and libaom weigh the colour under wholly transparent pixels in their choices for the whole picture:
    one cut-out came out with shown pixels up to 34 levels apart over black and over white (transparency probe).
    Across the edge, as they are (a resize would have made the hidden colour black): the same bytes."""
    root = tmp_path / "images"
    root.mkdir()
    for name in ("over_black", "over_white"):
        (root / f"{name}.png").write_bytes(cut_outs[name])
    node = await node_factory(write_config(tmp_path, images_config(root)))
    x = SIZE[0] // 2 - 400
    over_black, over_white = [(await fetch_image(node, f"/tr:cm-extract,x-{x},y-0,w-800,h-800:{tr}/{name}.png"))[0]
                              for name in ("over_black", "over_white")]
    assert over_black.body == over_white.body and decode(over_black).bands == 4


def test_the_trim_box_of_a_cut_out_is_the_same_whatever_lies_under_its_transparent_pixels():
    """Black with the 12 MP photo inset, and a band of black in which every other pixel is wholly transparent (a
    dithered cut-out): the box was found on a copy shrunk with the hidden colour averaged in, over white a grey
    taken for content (2202×2832 against 1002×1002 over black; transparency probe)."""
    from edge.transform.geometry import trim_box
    width, height = SIZE
    photo = pyvips.Image.new_from_file(str(SAMPLE)).resize(1000 / 512)
    base = (pyvips.Image.black(width, height, bands=3) + 0).insert(photo, 400, 400).cast("uchar")
    dithered = ((pyvips.Image.xyz(width, height)[0] + pyvips.Image.xyz(width, height)[1]) % 2 == 0)
    band = (pyvips.Image.xyz(width, height)[0] >= 1400) & (pyvips.Image.xyz(width, height)[0] < 2600)
    alpha = (band & dithered).ifthenelse(0, 255).cast("uchar")
    boxes = [trim_box((alpha > 0).ifthenelse(base, [value] * 3).bandjoin(alpha).cast("uchar")
                      .copy(interpretation="srgb").copy_memory(), 10) for value in (0, 255)]
    assert boxes[0] == boxes[1] and boxes[0][2] < 1500, boxes
