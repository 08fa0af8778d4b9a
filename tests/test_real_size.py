"""Every parameter of docs/transformations.md on real-size photos (12 MP JPEG and PNG, EXIF-rotated
JPEGs, a 3000×2000 JPEG): the operations that read out of order (rotations, vertical flips) at full
size too. Most cases render in-process through `render_image` (each output decoded, its size, format
and the red marker's corner checked); a smaller set goes through a node on a real socket."""

import math

import pytest
import pyvips

from edge.config import Defaults, Limits
from edge.errors import BadRequest
from edge.transform.formats import plan_format
from edge.transform.options import parse_transformation
from edge.transform.render import render_image
from tests.assets import close, pixel
from tests.nodes import decode, local_config, write_config
from tests.photos import SIZE, marker_corner, photos, upright_photo  # noqa: F401 - photos is a fixture

BROWSER_ACCEPT = "image/avif,image/webp,*/*"
W, H = SIZE

# (transformation, output size, format, corner of the red marker or None where it is cut away/hidden)
JPEG_CASES = [
    ("", (W, H), "jpg", "top_left"),
    ("w-300", (300, 200), "jpg", "top_left"),
    ("h-200", (299, 200), "jpg", "top_left"),
    ("w-0.05", (212, 142), "jpg", "top_left"),
    ("w-300,h-300", (300, 300), "jpg", None),
    ("w-300,ar-16-9", (300, 169), "jpg", "top_left"),
    ("w-150,dpr-2", (300, 200), "jpg", "top_left"),
    ("w-3000,dpr-2", (3000, 2004), "jpg", "top_left"),  # over 5000 px with it: dpr is not applied (ImageKit)
    # the side the photo's aspect makes counts too: 2994 px wide, 5989 with it (it was served 5989×4000)
    ("h-2000,dpr-2", (2994, 2000), "jpg", "top_left"),
    ("h-1000,dpr-2", (2994, 2000), "jpg", "top_left"),
    # a mode that never enlarges: the rule is on the output, the photo's own size, under 5000 px (the 5200 px box
    # had dropped the dpr: 2600×1737, less than `w-2400,c-at_max,dpr-2` gives)
    ("w-2400,c-at_max,dpr-2", (W, H), "jpg", "top_left"),
    ("w-2600,c-at_max,dpr-2", (W, H), "jpg", "top_left"),
    ("w-3000,h-3000,c-at_max,dpr-2", (W, H), "jpg", "top_left"),
    ("w-2600,h-3000,c-maintain_ratio_no_enlarge,dpr-2", (W, H), "jpg", "top_left"),
    ("w-300,h-100,c-force", (300, 100), "jpg", "top_left"),
    ("w-300,h-300,c-at_max", (300, 200), "jpg", "top_left"),
    ("w-6000,h-300,c-at_max_enlarge", (449, 300), "jpg", "top_left"),
    ("w-300,h-300,c-at_least", (449, 300), "jpg", "top_left"),
    ("w-5000,h-300,c-maintain_ratio_no_enlarge", (W, 300), "jpg", None),
    ("w-300,h-100,fo-top", (300, 100), "jpg", "top_left"),
    ("w-300,h-100,fo-bottom", (300, 100), "jpg", None),
    ("w-100,h-300,fo-left", (100, 300), "jpg", "top_left"),
    ("w-300,h-300,fo-top_left", (300, 300), "jpg", "top_left"),
    ("w-300,h-300,fo-bottom_right", (300, 300), "jpg", None),
    ("w-300,h-300,fo-auto", (300, 300), "jpg", None),
    ("w-300,h-300,fo-face", (300, 300), "jpg", None),
    ("w-300,h-300,fo-auto,z-2", (300, 300), "jpg", None),
    ("w-300,h-300,fo-top,z-3", (300, 300), "jpg", None),
    ("w-300,h-200,cm-pad_resize,bg-F3E5AB", (300, 200), "jpg", "top_left"),
    ("cm-extract,w-300,h-300,fo-auto", (300, 300), "jpg", None),
    ("cm-extract,x-4000,y-2600,w-200,h-200", (200, 200), "jpg", None),
    ("cm-extract,xc-2120,yc-1416,w-200,h-120", (200, 120), "jpg", None),
    ("cm-pad_extract,x-4100,y-2700,w-300,h-300,bg-navy", (300, 300), "jpg", None),
    ("cm-extract,x-0,y-ih_sub_200,w-200,h-200", (200, 200), "jpg", None),  # the bottom-left corner
    ("cm-extract,x-iw_sub_2120,y-0,w-iw_div_2,h-ih_div_2", (2120, 1416), "jpg", None),  # top right: no marker
    ("cm-extract,x-0,y-0,w-iw_div_2,h-ih_div_2", (2120, 1416), "jpg", "top_left"),
    ("cm-extract,xc-iw_div_2,yc-ih_div_2,w-200,h-120", (200, 120), "jpg", None),
    ("rt-90", (H, W), "jpg", "top_right"),
    ("rt-180", (W, H), "jpg", "bottom_right"),
    ("rt-270", (H, W), "jpg", "bottom_left"),
    ("w-1000,rt-N90", (668, 1000), "jpg", "bottom_left"),
    ("w-1000,rt-auto", (1000, 668), "jpg", "top_left"),
    ("w-2000,rt-45,bg-FFD700", (2359, 2359), "jpg", None),
    ("w-1000,fl-h", (1000, 668), "jpg", "top_right"),
    ("fl-v", (W, H), "jpg", "bottom_left"),
    ("fl-h_v", (W, H), "jpg", "bottom_right"),
    ("w-1000,rt-90", (668, 1000), "jpg", "top_right"),
    ("w-1000,rt-450", (668, 1000), "jpg", "top_right"),  # any number of degrees, as ImageKit: rt-90
    ("w-1000,fl-v", (1000, 668), "jpg", "bottom_left"),
    ("t-true,w-300", (300, 200), "jpg", "top_left"),
    ("t-50,w-300", (300, 200), "jpg", "top_left"),
    # nothing to trim (no edge is all the marker's red): every pixel kept, the box found on a copy shrunk by 3 whose
    # last column (row, turned) ends short of the picture's edge, at 1413 × 3 = 4239 px
    ("t-true", (W, H), "jpg", "top_left"),
    ("rt-90:t-true", (H, W), "jpg", "top_right"),
    ("w-300,q-50", (300, 200), "jpg", "top_left"),
    ("w-1000,bl-100", (1000, 668), "jpg", None),
    ("w-300,bl-10", (300, 200), "jpg", "top_left"),
    ("w-300,e-grayscale", (300, 200), "jpg", None),
    ("w-300,e-contrast", (300, 200), "jpg", "top_left"),
    ("w-300,e-sharpen", (300, 200), "jpg", "top_left"),
    ("w-300,e-sharpen-50", (300, 200), "jpg", "top_left"),
    ("w-300,e-usm-2-2-0.8-0.024", (300, 200), "jpg", "top_left"),
    ("w-300,e-brightness-N25", (300, 200), "jpg", "top_left"),  # the marker darker (191): still red
    ("w-300,e-saturation-N100", (300, 200), "jpg", None),
    ("w-300,e-sepia-80", (300, 200), "jpg", None),
    ("w-300,e-negate", (300, 200), "jpg", None),
    ("w-300,e-vibrance-60", (300, 200), "jpg", "top_left"),  # the red marker is vivid: left as it is
    ("w-300,e-blackwhite-40", (300, 200), "jpg", None),
    ("e-autocolor", (W, H), "jpg", "top_left"),  # the full 12 MP: its bands' percentiles, then the stretch
    ("w-300,e-autobrightness-60,e-contrast-70", (300, 200), "jpg", None),
    ("w-300,e-hue-N40,e-green-30", (300, 200), "jpg", None),
    ("e-pixelate-60,e-region-2000_1000_1500_1200", (W, H), "jpg", "top_left"),  # squares inside the 12 MP alone
    ("e-pixelate-40", (W, H), "jpg", "top_left"),  # the full 12 MP: squares averaged on a streamed decode
    ("w-300,e-sigmoidcontrast-50", (300, 200), "jpg", "top_left"),
    ("w-300,e-linearcontrast-150,e-gamma-N30", (300, 200), "jpg", "top_left"),
    ("w-300,e-brightnesshsb-40,e-colorize-co-0000FF_in-30", (300, 200), "jpg", None),
    ("e-vignette-50", (W, H), "jpg", None),  # the full 12 MP: a float distance the size of the image
    # the full 12 MP, foreshortened: read at random from memory; the marker stays in the top-left corner
    ("e-distort-p-40_20_4200_0_4240_2832_0_2812", (W, H), "jpg", "top_left"),
    ("w-1000,e-distort-a-60", (1289, 752), "jpg", None),  # the corners beyond the arc's ends: white
    ("w-1000,e-distort-a-N60,f-png", (1289, 752), "png", None),
    ("cr-0000FF_30_FF0000", (W, H), "jpg", None),  # the full 12 MP: the red marker made blue
    ("w-1000,cr-00FF00", (1000, 668), "jpg", "top_left"),  # the dominant colour (the photo's) green; the marker red
    ("w-300,r-20,f-png", (300, 200), "png", "top_left"),
    ("w-300,r-max", (300, 200), "jpg", None),
    ("w-300,b-10_00FF00", (320, 220), "jpg", None),
    ("w-300:b-cw_mul_0.05_00FF00", (330, 230), "jpg", None),  # 5 % of the step's input, 300 px: 15 px
    ("w-300,o-50,f-png", (300, 200), "png", "top_left"),
    # the shadow is the alpha shifted down or up: rows far apart, out of order for a streamed decode
    ("w-2000,r-50,e-shadow-y-50,f-webp", (2000, 1336), "webp", "top_left"),
    ("w-2000,r-50,e-shadow-bl-15_st-80_x-N10_y-N40,f-webp", (2000, 1336), "webp", "top_left"),
    ("w-1000:rt-90:w-300", (300, 449), "jpg", "top_right"),
    ("w-300,f-png", (300, 200), "png", "top_left"),
    ("w-300,f-webp", (300, 200), "webp", "top_left"),
    ("w-300,f-avif", (300, 200), "avif", "top_left"),
    ("w-300,f-gif", (300, 200), "gif", "top_left"),
    ("w-300,f-auto", (300, 200), "avif", "top_left"),
    ("w-300,f-orig", (300, 200), "jpg", "top_left"),
    ("w-300,pr-true", (300, 200), "jpg", "top_left"),
    ("w-300,f-webp,lo-true", (300, 200), "webp", "top_left"),
    ("w-300,md-true", (300, 200), "jpg", "top_left"),
    ("w-300,md-copyright", (300, 200), "jpg", "top_left"),
    ("w-300,e-gradient-ld-top_right_sp-ih_div_2", (300, 200), "jpg", None),  # a corner, a stop in pixels
    ("w-300,cp-true", (300, 200), "jpg", "top_left"),
    ("if-ar_gt_1,w-300,if-else,h-300,if-end", (300, 200), "jpg", "top_left"),
    # an empty branch last: the step before is the result (it was read again, out of order: a 422)
    ("w-1500:if-w_gt_2000,w-1000,if-end", (1500, 1002), "jpg", "top_left"),
    ("w-1500:if-w_lt_2000,w-1000,if-else,w-500,if-end", (1000, 668), "jpg", "top_left"),
]

# The PNG source decodes whole whatever the output size (no shrink-on-load): every key once, fewer renders.
PNG_CASES = [
    ("f-jpg", (W, H), "jpg", "top_left"),  # a full-size PNG encode alone takes seconds
    ("rt-90,f-jpg", (H, W), "jpg", "top_right"),
    ("fl-h_v,f-jpg", (W, H), "jpg", "bottom_right"),
    ("w-2000,rt-45,bg-red", (2359, 2359), "png", None),
    ("w-1000,fl-v", (1000, 668), "png", "bottom_left"),
    ("w-300,h-100,c-force", (300, 100), "png", "top_left"),
    ("w-6000,h-300,c-at_max_enlarge", (449, 300), "png", "top_left"),
    ("w-200,ar-16-9,dpr-1.5", (300, 168), "png", "top_left"),
    ("w-0.05,h-300,fo-auto,z-2", (212, 300), "png", None),
    ("cm-extract,x-4000,y-2600,w-200,h-200", (200, 200), "png", None),
    ("cm-pad_extract,xc-4200,yc-2800,w-300,h-300", (300, 300), "png", None),
    ("cm-extract,x-iw_sub_300,y-ih_sub_300,w-300,h-300", (300, 300), "png", None),
    ("cm-pad_resize,w-300,h-300,bg-red", (300, 300), "png", None),
    ("t-true,w-300", (300, 200), "png", "top_left"),
    ("w-1000,bl-100,e-grayscale", (1000, 668), "png", None),
    ("w-300,e-contrast,e-sharpen,e-usm-2-2-0.8-0.024", (300, 200), "png", "top_left"),
    ("e-pixelate-7,e-brightness-20,e-saturation-50,f-jpg", (W, H), "jpg", "top_left"),
    ("w-300,e-sepia-100,e-negate", (300, 200), "png", None),
    ("w-300,e-vibrance-N50,e-blackwhite-60", (300, 200), "png", None),
    ("w-300,e-autocolor-50,e-autobrightness", (300, 200), "png", None),
    ("w-300,e-hue-70,e-red-N20,e-blue-40", (300, 200), "png", None),
    ("w-300,e-sigmoidcontrast-N40,e-gamma-60,e-vignette-30", (300, 200), "png", None),
    ("w-300,e-brightnesshsb-N20,e-linearcontrast-80,e-colorize-in-20", (300, 200), "png", None),
    ("w-300,r-40,e-opacitythreshold-60,f-png", (300, 200), "png", None),
    ("e-distort-p-0_0_4240_300_4240_2532_0_2832,f-jpg", (W, H), "jpg", "top_left"),  # the full 12 MP
    ("w-1000,e-distort-a-N200,bg-00000000", (1336, 784), "png", None),  # the bottom edge at the centre
    ("w-1000,cr-blue_20_red", (1000, 668), "png", None),
    ("bl-40,e-region-100_100_2000_1500,f-jpg", (W, H), "jpg", None),  # the marker (to 566 px) blurred away
    ("w-300,r-max,b-5_00FF00,o-50", (310, 210), "png", None),
    ("w-2000,r-50,e-shadow-y-N30,f-webp", (2000, 1336), "webp", "top_left"),
    ("w-300:b-ch_div_40_00FF00", (310, 210), "png", None),
    ("w-300,q-50,f-webp,lo-true,md-true,cp-true", (300, 200), "webp", "top_left"),
    ("w-300,pr-true", (300, 200), "png", "top_left"),
    ("w-300,f-auto", (300, 200), "avif", "top_left"),
    ("w-1000:rt-90:w-300", (300, 449), "png", "top_right"),
    ("w-1500:if-iw_lt_2000,w-1000,if-end", (1500, 1002), "png", "top_left"),
]

# Shown upright whatever the stored orientation, then turned or flipped like any photo (a wrong
# orientation would put the marker in another corner).
ORIENTED_CASES = [
    (orientation, transformation, size, corner)
    for orientation in (3, 6, 8)
    for transformation, size, corner in (("rt-90", (H, W), "top_right"),)
] + [(6, "w-1000,fl-v", (1000, 668), "bottom_left"), (8, "w-1000,rt-270", (668, 1000), "bottom_left")]


def render(photos, name: str, transformation: str):
    parsed = parse_transformation(transformation)
    planned, _ = plan_format(parsed.output_format, name, BROWSER_ACCEPT)
    rendered = render_image(photos.read(name), parsed, planned, Defaults(), Limits())
    return rendered, pyvips.Image.new_from_buffer(rendered.body, "")


def check(rendered, image, size, fmt, corner):
    loaders = {"jpg": "jpegload", "png": "pngload", "webp": "webpload", "avif": "heifload", "gif": "gifload"}
    assert (rendered.format, rendered.width, rendered.height) == (fmt, *size)
    assert (image.get("vips-loader").removesuffix("_buffer"), image.width, image.height) == (loaders[fmt], *size)
    if corner is not None:
        assert marker_corner(image.colourspace("srgb")) == corner


@pytest.mark.parametrize("transformation, size, fmt, corner", JPEG_CASES)
def test_every_parameter_on_a_12_megapixel_jpeg(photos, transformation, size, fmt, corner):
    check(*render(photos, photos.jpeg, transformation), size, fmt, corner)


@pytest.fixture(scope="module")
def wide_photo(photos):
    """An 8000×1000 JPEG beside the photos: its name."""
    photos.path("wide.jpg").write_bytes(upright_photo(8000, 1000).jpegsave_buffer(Q=88, keep="none"))
    return "wide.jpg"


@pytest.mark.parametrize("transformation, size", [
    ("w-3000,c-at_max,dpr-2", (3000, 375)),  # 6000 px wide with it, over 5000: not applied
    ("w-3000,h-3000,c-at_max,dpr-2", (3000, 375)),
    ("w-2500,c-at_max,dpr-2", (5000, 625)),  # 5000 px: applied
    ("w-3000,h-300,c-at_max,dpr-2", (4800, 600)),  # the box is 6000 px wide, the fit within it 4800: applied
])
def test_dpr_of_a_mode_that_never_enlarges_is_not_applied_where_its_output_would_pass_5000_px(
        photos, wide_photo, transformation, size):
    check(*render(photos, wide_photo, transformation), size, "jpg", "top_left")


@pytest.mark.parametrize("transformation, size, fmt, corner", PNG_CASES)
def test_every_parameter_on_a_12_megapixel_png(photos, transformation, size, fmt, corner):
    check(*render(photos, photos.png, transformation), size, fmt, corner)


@pytest.mark.parametrize("orientation, transformation, size, corner", ORIENTED_CASES)
def test_exif_rotated_photos_are_upright_then_transformed(photos, orientation, transformation, size, corner):
    check(*render(photos, photos.oriented[orientation], transformation), size, "jpg", corner)


@pytest.fixture
async def photo_node(node_factory, photos, tmp_path):
    return await node_factory(write_config(tmp_path, local_config(
        photos.folder, before='[named_transformations]\nthumb = "w-200,h-200,c-at_max"\n')))


@pytest.mark.parametrize("path, size, fmt, corner", [
    ("/tr:rt-90/photo.jpg", (H, W), "jpeg", "top_right"),
    ("/tr:fl-v,f-jpg/photo.png", (W, H), "jpeg", "bottom_left"),
    ("/photo.jpg?tr=w-3000,rt-45", (3538, 3538), "jpeg", None),
    ("/tr:rt-270/medium.jpg", (2000, 3000), "jpeg", "bottom_left"),
    ("/tr:fl-h_v/medium.jpg", (3000, 2000), "jpeg", "bottom_right"),
    ("/tr:rt-180/exif-6.jpg", (W, H), "jpeg", "bottom_right"),
    ("/tr:n-thumb/exif-8.jpg", (200, 134), "jpeg", "top_left"),
    ("/tr:w-300,di-medium.jpg/missing.jpg", (300, 200), "jpeg", "top_left"),
    ("/tr:e-distort-p-0_0_4240_300_4240_2532_0_2832/exif-6.jpg", (W, H), "jpeg", "top_left"),
])
async def test_full_size_rotations_over_a_real_socket(photo_node, path, size, fmt, corner):
    response = await photo_node.fetch(path)
    assert response.code == 200, response.body[:200]
    image = decode(response)
    assert (image.get("vips-loader").removesuffix("_buffer"), image.width, image.height) == (fmt + "load", *size)
    if corner is not None:
        assert marker_corner(image) == corner


async def test_orig_true_serves_the_12_megapixel_original_untouched(photo_node, photos):
    response = await photo_node.fetch("/tr:orig-true,rt-90/photo.png")
    assert response.code == 200 and response.body == photos.read(photos.png)


def test_opacity_as_gif_on_a_12_megapixel_photo_is_the_faded_image(photos):
    """GIF shows a pixel or not: `o-50` is the image faded on white, as in JPEG (it was an empty GIF)."""
    rendered, gif = render(photos, photos.jpeg, "w-300,o-50,f-gif")
    _, jpeg = render(photos, photos.jpeg, "w-300,o-50")
    check(rendered, gif, (300, 200), "gif", None)
    assert not gif.hasalpha() or gif[3].min() == 255  # nothing left out
    assert ((gif.flatten() if gif.hasalpha() else gif) - jpeg).abs().avg() < 12  # the same faded picture


@pytest.mark.parametrize("expressed, written", [
    ("cm-extract,x-iw_sub_300,y-ih_sub_200,w-300,h-200", f"cm-extract,x-{W - 300},y-{H - 200},w-300,h-200"),
    ("cm-extract,xc-iw_div_4,yc-ih_mul_0.75,w-300,h-200", f"cm-extract,xc-{W // 4},yc-{round(H * 0.75)},w-300,h-200"),
    ("w-400:b-cw_mul_0.05_FF0000", "w-400:b-20_FF0000"),
])
def test_expressions_in_positions_and_borders_are_the_pixels_they_evaluate_to(photos, expressed, written):
    """ImageKit's expressions in `x`/`y`/`xc`/`yc` and a border's width, on the 12 MP photo: the same
    output as the numbers they evaluate to."""
    assert render(photos, photos.jpeg, expressed)[0].body == render(photos, photos.jpeg, written)[0].body


@pytest.fixture(scope="module")
def unused_alpha(photos):
    """The 12 MP photo as PNG with an alpha band that hides nothing, and with one pixel of it at 254."""
    opaque = pyvips.Image.new_from_file(str(photos.path(photos.png))).bandjoin(255)
    photos.path("opaque-alpha.png").write_bytes(opaque.pngsave_buffer(compression=1))
    almost = opaque.draw_rect([255, 255, 255, 254], W - 1, H - 1, 1, 1)
    photos.path("almost-opaque.png").write_bytes(almost.pngsave_buffer(compression=1))
    return photos


@pytest.mark.parametrize("name, transformation, size, fmt", [
    ("opaque-alpha.png", "w-300,f-auto", (300, 200), "jpg"),  # the band hides nothing: JPEG, ~8× smaller
    ("opaque-alpha.png", "f-auto", (W, H), "jpg"),
    ("almost-opaque.png", "f-auto", (W, H), "png"),  # one pixel of 12 M at 254: kept
    ("opaque-alpha.png", "w-5000,f-auto", (5000, 3340), "png"),  # over 16 MP its band is not read (OPAQUE_CHECK_…)
    ("opaque-alpha.png", "w-300,r-40,f-auto", (300, 200), "png"),  # its own rounded corners are clear
])
def test_f_auto_without_webp_picks_jpeg_when_the_alpha_band_hides_nothing(unused_alpha, name, transformation,
                                                                          size, fmt):
    parsed = parse_transformation(transformation)
    planned, _ = plan_format(parsed.output_format, name, "*/*")  # a browser (or a bot) without WebP or AVIF
    rendered = render_image(unused_alpha.read(name), parsed, planned, Defaults(), Limits())
    image = pyvips.Image.new_from_buffer(rendered.body, "")
    check(rendered, image, size, fmt, "top_left")
    assert image.hasalpha() == (fmt == "png")


@pytest.mark.parametrize("name, transformation, corner_pixel", [
    ("opaque-alpha.png", "w-300,h-300,cm-pad_resize,f-png", (0, 0)),
    ("opaque-alpha.png", "cm-pad_extract,x-4100,y-2700,w-300,h-300,f-png", (299, 299)),
    ("opaque-alpha.png", "w-300,rt-30,f-png", (0, 0)),
    ("opaque-alpha.png", "w-300,e-distort-a-60,f-png", (0, 0)),
    ("opaque.gif", "w-300,h-300,cm-pad_resize", (0, 0)),  # libvips loads every GIF with an alpha band
    ("opaque.gif", "w-300,rt-45", (0, 0)),
])
def test_padding_and_corners_of_an_opaque_image_with_an_alpha_band_are_white(unused_alpha, name, transformation,
                                                                              corner_pixel):
    """An alpha band that hides nothing is no transparency, for padding and turned corners as for `f-auto`: they
    were transparent (every opaque GIF's: dark bars on a dark page; ImageKit probe). Its own clear pixels stay
    clear: `almost-opaque.png`'s one pixel at 254, kept at its scale, makes its padding clear."""
    if name == "opaque.gif" and not unused_alpha.path(name).exists():  # a banner of few colours, opaque
        ramp = (pyvips.Image.xyz(1200, 800)[0] * 16 // 1200 * 17).cast("uchar")
        unused_alpha.path(name).write_bytes(ramp.bandjoin([ramp, 128]).copy(interpretation="srgb").gifsave_buffer())
    assert pyvips.Image.new_from_buffer(unused_alpha.read(name), "").hasalpha()
    fmt = "gif" if name.endswith(".gif") else "png"
    parsed = parse_transformation(transformation)
    rendered = render_image(unused_alpha.read(name), parsed, fmt, Defaults(), Limits())
    image = pyvips.Image.new_from_buffer(rendered.body, "")
    assert image.getpoint(*corner_pixel)[:3] == [255, 255, 255] and image.getpoint(*corner_pixel)[-1] == 255
    if "pad_extract" in transformation:
        almost = render_image(unused_alpha.read("almost-opaque.png"), parsed, fmt, Defaults(), Limits())
        assert pyvips.Image.new_from_buffer(almost.body, "").getpoint(*corner_pixel)[-1] == 0


@pytest.mark.parametrize("box, scaled_by", [((200, 100), "w-200"), ((531, 200), "w-531"), ((100, 110), "h-110")])
def test_a_crop_to_a_box_is_the_photo_scaled_to_cover_it_then_cut_in_the_middle(photos, box, scaled_by):
    """`w-200,h-100` is the photo scaled as `w-200` is (the side that covers the box) and cut to 100 px high in
    the middle, to the pixel: 4240 × (200 / 4240) came out a hair above 200 and had scaled it to 201 px, its last
    column cut off (and so for one box in twenty)."""
    width, height = box
    _, cropped = render(photos, photos.jpeg, f"w-{width},h-{height},f-png")
    _, scaled = render(photos, photos.jpeg, f"{scaled_by},f-png")
    assert width in (scaled.width, scaled.height) or height in (scaled.width, scaled.height)
    middle = scaled.crop((scaled.width - width) // 2, (scaled.height - height) // 2, width, height)
    assert (cropped.width, cropped.height) == box and (cropped - middle).abs().max() == 0


def psnr(image: pyvips.Image, reference: pyvips.Image) -> float:
    mse = ((image[:3].cast("float") - reference[:3].cast("float")) ** 2).avg()
    return 10 * math.log10(255 ** 2 / mse)


@pytest.mark.parametrize("width", [800, 1600])
def test_f_auto_gives_a_browser_taking_avif_fewer_bytes_than_one_taking_webp(photos, width):
    """AVIF had been encoded at the URL's quality as it is, where its scale is not JPEG's: Chrome got 1.8-2.9 times
    the bytes Safari got as WebP for the same URL (bytes probe). At `avif_quality` (q-80: 56) it is smaller, its
    pixels as close to the photo's."""
    reference = pyvips.Image.new_from_buffer(photos.read(photos.jpeg), "").thumbnail_image(width)
    outputs = {}
    for accept in ("image/avif,image/webp,*/*", "image/webp,*/*"):
        parsed = parse_transformation(f"w-{width},f-auto")
        planned, _ = plan_format(parsed.output_format, photos.jpeg, accept)
        rendered = render_image(photos.read(photos.jpeg), parsed, planned, Defaults(), Limits())
        outputs[rendered.format] = (len(rendered.body), psnr(pyvips.Image.new_from_buffer(rendered.body, ""),
                                                             reference))
    (avif_bytes, avif_psnr), (webp_bytes, webp_psnr) = outputs["avif"], outputs["webp"]
    assert avif_bytes < webp_bytes and avif_psnr > webp_psnr - 0.3, outputs
    finest = render_image(photos.read(photos.jpeg), parse_transformation(f"w-{width},q-100,f-avif"), "avif",
                          Defaults(), Limits())  # q-100 is AVIF's 100
    assert len(finest.body) > 3 * avif_bytes


@pytest.fixture(scope="module")
def indexed(photos):
    """The photo with a clear corner as palette PNGs (pngquant's kind): 12 MP, and at 40 % (1.9 MP)."""
    cut_out = pyvips.Image.new_from_file(str(photos.path(photos.png))).bandjoin(255)
    cut_out = cut_out.draw_rect([0, 0, 0, 0], W - 600, H - 600, 600, 600, fill=True)
    photos.path("indexed.png").write_bytes(cut_out.pngsave_buffer(palette=True, effort=1))
    photos.path("indexed-small.png").write_bytes(cut_out.resize(0.4).pngsave_buffer(palette=True))
    return photos


@pytest.mark.parametrize("name, transformation, size, indexed_output", [
    ("indexed-small.png", "", (1696, 1133), True),
    ("indexed-small.png", "w-1600", (1600, 1069), True),
    ("indexed-small.png", "w-300,f-auto", (300, 200), True),  # PNG for a browser without WebP (it has alpha)
    ("indexed-small.png", "w-1000,lo-true", (1000, 668), False),  # lossless asked for: every colour kept
    ("indexed-small.png", "w-300,e-grayscale", (300, 200), False),  # greyscale: smaller as it is
    ("indexed.png", "w-3000", (3000, 2004), True),  # ~186 units of the 200, 198 with the decode
    ("indexed.png", "w-3100", (3100, 2071), False),  # ~199, 211 with the decode (attacker probe): a plain PNG
    ("indexed.png", "", (W, H), False),  # indexed, over the budget (~370 units): a plain PNG, still served
])
def test_an_indexed_png_stays_indexed_and_no_larger_than_its_original(indexed, name, transformation, size,
                                                                       indexed_output):
    """A palette PNG made full colour: `w-1600` of a 666 kB PNG-8 had been 1.67 MB, its own URL 1.3 times it
    (pixel-fidelity probe). Its PNG outputs are indexed too (libimagequant, dithered), as close to it as a
    full-colour output is."""
    parsed = parse_transformation(transformation)
    planned, _ = plan_format(parsed.output_format, name, "*/*")
    rendered = render_image(indexed.read(name), parsed, planned, Defaults(), Limits())
    image = pyvips.Image.new_from_buffer(rendered.body, "")
    check(rendered, image, size, "png", None if "grayscale" in transformation else "top_left")
    assert bool(image.get_typeof("palette") and image.get("palette")) == indexed_output
    if indexed_output:
        assert len(rendered.body) <= len(indexed.read(name))
        full = render_image(indexed.read(name), parse_transformation(f"{transformation},lo-true".lstrip(",")),
                            planned, Defaults(), Limits())
        assert (image - pyvips.Image.new_from_buffer(full.body, "")).abs().avg() < 4
    assert image.hasalpha() and image.getpoint(size[0] - 1, size[1] - 1)[-1] == 0  # the clear corner


@pytest.fixture(scope="module")
def grey_cut_out(photos):
    """The 12 MP photo in greyscale with an alpha band: its left eighth clear, its right eighth half clear."""
    grey = pyvips.Image.new_from_file(str(photos.path(photos.png))).colourspace("b-w")
    alpha = (pyvips.Image.black(W, H) + 255).draw_rect(0, 0, 0, W // 8, H, fill=True)
    alpha = alpha.draw_rect(128, W - W // 8, 0, W // 8, H, fill=True).cast("uchar")
    photos.path("grey-cut-out.png").write_bytes(grey.bandjoin(alpha).pngsave_buffer(compression=1))
    return photos


@pytest.mark.parametrize("transformation, bands, clear, half_clear", [
    ("w-300,f-jpg,bg-0000FF50", 3, (0, 0, 255), (0, 0, 255)),  # a translucent bg: full strength without alpha
    ("w-300,f-jpg,bg-FF000050", 3, (255, 0, 0), None),
    ("w-300,f-gif,bg-0000FF50", 4, None, (0, 0, 255)),  # GIF: half-clear pixels flattened, clear ones stay clear
    ("w-300,f-jpg,bg-80808050", 1, (128,), None),  # a grey keeps it greyscale
    ("w-300,f-jpg", 1, (255,), None),  # white by default
])
def test_a_greyscale_cut_out_is_flattened_on_the_colour_asked_for(grey_cut_out, transformation, bands, clear,
                                                                  half_clear):
    """Flattened on its grey level, a blue `bg` on a black-and-white cut-out product photo had been dark grey
    (18) where an RGB photo's was blue (pixel-fidelity probe)."""
    rendered, image = render(grey_cut_out, "grey-cut-out.png", transformation)
    assert (image.width, image.height, image.bands) == (300, 200, bands)
    if clear is not None:
        assert close(pixel(image, 10, 100), clear, 3)
    if half_clear is not None:  # half the colour over the photo's bright right edge: its hue shows
        blended = pixel(image, 295, 100)
        assert blended[2] > blended[0] + 60 and blended[2] > blended[1] + 60, blended


@pytest.mark.parametrize("encoding, start, formats", [
    ("utf-8", "", ("jpg", "webp", "png")),
    ("utf-16-le", "\ufeff", ("jpg", "webp")),  # PNG's XMP is text to its first NUL: no UTF-16 in it
    ("utf-16-be", "", ("jpg", "webp")),
    ("utf-32-le", "\ufeff", ("jpg",)),
    ("utf-32-be", "", ("jpg",)),
])
def test_md_true_states_the_upright_orientation_in_xmp_as_in_exif(photos, encoding, start, formats):
    """A photo stored turned (EXIF 6) with an XMP packet saying so too: served upright, its EXIF said 1 and its
    XMP still 6, and a tool that reads XMP first turned it again (pixel-fidelity probe); and so it still did when
    the packet was UTF-16 or UTF-32, which XMP allows. A byte of a UTF-8 packet that is no UTF-8 is kept."""
    stored = pyvips.Image.new_from_buffer(photos.read(photos.oriented[6]), "").copy()
    packet = (start + '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
              'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
              'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"><tiff:Artist>A</tiff:Artist>'
              '</rdf:Description><rdf:Description><tiff:Orientation>6</tiff:Orientation>'
              '</rdf:Description></rdf:RDF></x:xmpmeta>').encode(encoding).replace(b"A</", b"A\xe9</")
    stored.set_type(pyvips.GValue.blob_type, "xmp-data", packet)
    photos.path("exif-6-xmp.jpg").write_bytes(stored.jpegsave_buffer(Q=88, keep="all"))
    for fmt in formats:
        rendered, image = render(photos, "exif-6-xmp.jpg", f"w-300,md-true,f-{fmt}")
        check(rendered, image, (300, 200), fmt, "top_left")
        assert image.get("orientation") == 1
        kept = image.get("xmp-data")
        assert len(kept) == len(packet) and kept.startswith(start.encode(encoding)), kept
        text = kept.decode(encoding, "surrogateescape")
        assert 'tiff:Orientation="1"' in text and "<tiff:Orientation>1</tiff:Orientation>" in text, text
        assert 'Orientation="6"' not in text and ">6<" not in text
        assert ("<tiff:Artist>A\udce9</" if encoding == "utf-8" else "<tiff:Artist>A</") in text, text


@pytest.mark.parametrize("padding, kept", [(200_000, True), (2_000_000, False)])
def test_md_true_keeps_no_metadata_field_over_a_megabyte(photos, padding, kept):
    """A PNG of 221 kB carried 45 MB of compressed XMP, copied into each of its outputs (45 MB WebPs, 769 MB of a
    worker's memory; attacker probe): a field over `MAX_KEPT_METADATA_BYTES` is dropped, the others kept."""
    stored = pyvips.Image.new_from_file(str(photos.path(photos.png))).copy()
    packet = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
              b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="1">' +
              b"<tiff:Artist>A</tiff:Artist>" * (padding // 28) + b"</rdf:Description></rdf:RDF></x:xmpmeta>")
    stored.set_type(pyvips.GValue.blob_type, "xmp-data", packet)
    stored.set_type(pyvips.GValue.gstr_type, "exif-ifd0-Copyright", "Photo team")
    photos.path("xmp.png").write_bytes(stored.pngsave_buffer(compression=1, keep="all"))
    for transformation, fmt in (("w-300,md-true,f-webp", "webp"), ("w-300,md-true,f-png", "png"),
                                ("w-300,md-true,f-avif", "avif")):
        rendered, image = render(photos, "xmp.png", transformation)
        check(rendered, image, (300, 200), fmt, "top_left")
        assert bool(image.get_typeof("xmp-data")) == kept
        assert len(rendered.body) < 200_000 + (padding if kept else 0)
        assert image.get("exif-ifd0-Copyright").startswith("Photo team")


def test_md_true_keeps_a_jpeg_s_iptc_block_and_no_other_setting_does(photos):
    """IPTC (a Photoshop APP13 block: here its copyright notice and byline) is metadata `md-true` keeps, as EXIF and
    XMP; without `md-true` none of it goes out, nor under `md-copyright` (IPTC may hold a location)."""
    records = b"\x1c\x02\x74\x00\x0a(c) Studio\x1c\x02\x50\x00\x03Ann"  # 2:116 copyright, 2:80 byline
    records += bytes(len(records) % 2)
    iptc = b"Photoshop 3.0\0" + b"8BIM\x04\x04\0\0" + len(records).to_bytes(4, "big") + records
    stored = pyvips.Image.new_from_file(str(photos.path(photos.jpeg))).copy()
    stored.set_type(pyvips.GValue.blob_type, "iptc-data", iptc)
    photos.path("iptc.jpg").write_bytes(stored.jpegsave_buffer(Q=85, keep="all"))
    for transformation, kept in (("w-300,md-true", True), ("w-300", False), ("w-300,md-copyright", False)):
        rendered, image = render(photos, "iptc.jpg", transformation)
        check(rendered, image, (300, 200), "jpg", "top_left")
        assert (image.get("iptc-data") if image.get_typeof("iptc-data") else None) == (iptc if kept else None)
        assert (b"(c) Studio" in rendered.body) == kept, transformation


@pytest.mark.parametrize("metadata", ["md-copyright", "md-true"])
def test_no_exif_thumbnail_is_kept(photos, metadata):
    """A camera's EXIF holds a thumbnail of the whole picture as stored, with metadata of its own: `md-copyright` kept
    it (an uncropped preview of a cropped photo; privacy probe), where it keeps the Copyright and Artist fields alone;
    `md-true` kept it unturned beside an EXIF saying upright, a preview 90° off (pixels probe)."""
    stored = pyvips.Image.new_from_file(str(photos.path(photos.jpeg))).copy()
    preview = stored.thumbnail_image(160).copy()
    preview.set_type(pyvips.GValue.gstr_type, "exif-ifd0-ImageDescription", "preview of IMG_0001")
    fields = {"exif-ifd0-Copyright": "Photo team", "exif-ifd0-Artist": "Ann", "exif-ifd2-BodySerialNumber": "SN-77",
              "exif-ifd3-GPSLatitudeRef": "N"}
    for field, value in fields.items():
        stored.set_type(pyvips.GValue.gstr_type, field, value)
    stored.set_type(pyvips.GValue.blob_type, "jpeg-thumbnail-data", preview.jpegsave_buffer(keep="exif"))
    photos.path("camera.jpg").write_bytes(stored.jpegsave_buffer(Q=85, keep="exif"))
    assert pyvips.Image.new_from_file(str(photos.path("camera.jpg"))).get_typeof("jpeg-thumbnail-data")
    for fmt in ("jpg", "webp"):
        rendered, image = render(photos, "camera.jpg", f"cm-extract,x-0,y-0,w-2000,h-1000,{metadata},f-{fmt}")
        check(rendered, image, (2000, 1000), fmt, "top_left")
        assert b"IMG_0001" not in rendered.body  # the thumbnail's own field
        assert not image.get_typeof("jpeg-thumbnail-data")
        kept = {field for field in fields if image.get_typeof(field)}
        assert kept == (set(fields) if metadata == "md-true" else {"exif-ifd0-Copyright", "exif-ifd0-Artist"}), kept


@pytest.mark.parametrize("transformation, size, progressive", [
    ("w-4000,pr-true", (4000, 2672), True),
    ("w-5000,pr-true", (5000, 3340), False),  # 16.7 MP: over JPEG_WHOLE_IMAGE_MAX_PIXELS, baseline
])
def test_a_jpeg_over_16_megapixels_is_coded_without_holding_it_whole(photos, transformation, size, progressive):
    """Progressive scans and optimised tables are made from the whole image's coefficients in memory (5.5 bytes
    a pixel, 264 MB for a 45 MP output): past 16 MP the output is a baseline JPEG of the same pixels."""
    rendered, image = render(photos, photos.jpeg, transformation)
    check(rendered, image, size, "jpg", "top_left")
    assert bool(image.get_typeof("interlaced") and image.get("interlaced")) == progressive
    same = pyvips.Image.new_from_buffer(render(photos, photos.jpeg, transformation.replace(",pr-true", ""))[0].body,
                                        "")
    assert (image - same).abs().max() == 0


@pytest.mark.parametrize("transformation, region", [
    ("w-1000,e-region-2000_2000_500_500,bl-50", "2000_2000_500_500"),  # the original's pixels after a resize
    ("e-pixelate-40,e-region-5000_100", "5000_100"),
    ("e-pixelate-40,e-region-4240_100", "4240_100"),  # at the right edge exactly: nothing of it inside
    ("bl-20,e-region-100_2832_50_50", "100_2832_50_50"),  # at the bottom edge exactly
])
def test_a_region_outside_its_step_s_image_is_refused_not_served_sharp(photos, transformation, region):
    """A blur or pixelation in a region that starts outside the step's result hid nothing: the 12 MP photo was
    served sharp (and cached) where the URL asked for a plate or a face to be hidden."""
    size = "1000x668" if transformation.startswith("w-1000") else f"{SIZE[0]}x{SIZE[1]}"
    for name in (photos.jpeg, photos.png):
        with pytest.raises(BadRequest) as refused:
            render(photos, name, transformation)
        assert refused.value.message == (f"invalid transformation: e-region-{region}: the region starts outside the "
                                         f"{size} image of its step")
