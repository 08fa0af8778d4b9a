"""Edges of the render step: tiny and thin JPEGs (shrink-on-load must agree with libvips' JPEG loader,
which rounds a shrunk side down and refuses a side of 0 px), and failures inside libvips that are a
layer's fault, not the base original's (a 400 naming the layer's parameter, never a 422 blaming the
base). Through `render_image` in-process, and through a node on a real socket."""

from __future__ import annotations

import pytest
import pyvips

from edge.config import Defaults, Limits
from edge.errors import BadRequest, InvalidTransformation, UnprocessableSource
from edge.transform.options import parse_transformation
from edge.transform.render import _JPEG_SHRINKS, jpeg_shrink, probe, render_image
from tests import imagecorpus
from tests.nodes import decode, local_config, write_config

LOADERS = {"jpg": "jpegload", "png": "pngload", "webp": "webpload", "avif": "heifload", "gif": "gifload"}
TOO_LARGE_TEXT = "invalid transformation: l-text: the text is more than 8192 px a side: a smaller fs or less text"
UNDECODABLE_OVERLAY = "invalid transformation: i-trunc.jpg: not an image the node can decode"


def jpeg(width: int, height: int) -> bytes:
    """A plain JPEG of that size (a grey ramp, so that it is not one flat colour)."""
    ramp = pyvips.Image.xyz(width, height)[0] * (255 / max(1, width)) + 40
    return ramp.bandjoin([ramp, ramp]).cast("uchar").copy(interpretation="srgb").jpegsave_buffer(Q=90)


@pytest.fixture(scope="module")
def photo() -> bytes:
    """A 12 MP photo, the base of the layer cases."""
    return imagecorpus.photo_jpeg(4000, 3000)


def render(body: bytes, tr: str, planned: str = "jpg", overlays: dict[str, bytes] | None = None):
    """(format, width, height) of the render, checked against the decoded output."""
    rendered = render_image(body, parse_transformation(tr), planned, Defaults(), Limits(), overlays)
    image = pyvips.Image.new_from_buffer(rendered.body, "")
    image.avg()  # decodes every pixel
    assert (image.get("vips-loader").removesuffix("_buffer"), image.width, image.height) == \
        (LOADERS[rendered.format], rendered.width, rendered.height)
    return rendered.format, rendered.width, rendered.height


def loads_at(body: bytes, shrink: int) -> tuple[int, int] | None:
    """The size libvips' JPEG loader gives at `shrink`, or None when it refuses it."""
    try:
        image = pyvips.Image.new_from_buffer(body, "", shrink=shrink)
        image.avg()
    except pyvips.Error:
        return None
    return image.width, image.height


# -- jpeg_shrink agrees with libvips ------------------------------------------------------------------

ODD_SIZES = [(1, 1), (2, 2), (3, 3), (6, 6), (7, 9), (9, 9), (15, 17), (3000, 5), (20000, 1), (1, 3000),
             (1001, 1333)]


@pytest.mark.parametrize("size", ODD_SIZES)
def test_libvips_rounds_a_shrunk_jpeg_down_and_refuses_0_px(size):
    body = jpeg(*size)
    for shrink in _JPEG_SHRINKS:
        width, height = size[0] // shrink, size[1] // shrink
        assert loads_at(body, shrink) == ((width, height) if width and height else None), shrink


@pytest.mark.parametrize("size", ODD_SIZES)
def test_the_shrink_chosen_is_the_largest_libvips_can_decode_at_that_holds_the_output(size):
    body = jpeg(*size)
    header = probe(body, Limits())
    decoded = {shrink: loads_at(body, shrink) for shrink in _JPEG_SHRINKS}
    for width, height in {(1, 1), (1, size[1]), (size[0], 1), (max(1, size[0] // 8), max(1, size[1] // 8)),
                          (max(1, size[0] // 4), max(1, size[1] // 4)), (size[0] // 4 + 1, size[1] // 4 + 1),
                          (max(1, size[0] // 2), max(1, size[1] // 2)), size}:
        fitting = [s for s in _JPEG_SHRINKS if decoded[s] and decoded[s][0] >= width and decoded[s][1] >= height]
        assert jpeg_shrink(header, width, height) == (fitting[0] if fitting else 1), (width, height)


@pytest.mark.parametrize("size, asked, shrink", [
    ((1001, 1333), (125, 166), 8),  # 1001/8 = 125.1, 1333/8 = 166.6: libvips gives 125×166
    ((1001, 1333), (126, 167), 4),  # ceiling rounding said 8 (126×167), libvips gives 125×166
    ((1001, 1333), (250, 333), 4),
    ((1001, 1333), (251, 334), 2),  # ceiling rounding said 4
    ((1001, 1333), (500, 666), 2),
    ((1001, 1333), (501, 667), 1),
    ((1, 1), (1, 1), 1),  # ceiling rounding said 8: 0×0, "bad dimensions"
    ((6, 6), (1, 1), 4),  # 6/8 is 0 px
    ((3000, 5), (300, 1), 4),  # 5/8 is 0 px
    ((20000, 1), (300, 1), 1),  # 1/2 is 0 px
    ((4240, 2832), (530, 354), 8),  # exactly enough
])
def test_jpeg_shrink_at_odd_sizes(size, asked, shrink):
    assert jpeg_shrink(probe(jpeg(*size), Limits()), *asked) == shrink


# -- tiny and thin JPEGs render at the promised size ---------------------------------------------------

@pytest.mark.parametrize("size, tr, planned, expected", [
    ((1, 1), "", "jpg", ("jpg", 1, 1)),
    ((1, 1), "w-300", "jpg", ("jpg", 300, 300)),  # the default crop enlarges (docs: only at_max and
    ((1, 1), "w-300,c-at_max", "jpg", ("jpg", 1, 1)),  # maintain_ratio_no_enlarge never do)
    ((1, 1), "w-300,h-200", "jpg", ("jpg", 300, 200)),
    ((1, 1), "t-true", "jpg", ("jpg", 1, 1)),
    ((1, 1), "w-1,f-webp", "webp", ("webp", 1, 1)),
    ((1, 1), "e-sharpen", "jpg", ("jpg", 1, 1)),
    ((1, 1), "e-contrast,e-grayscale,bl-5", "jpg", ("jpg", 1, 1)),
    ((1, 1), "rt-90,fl-v", "jpg", ("jpg", 1, 1)),
    ((1, 1), "r-max", "png", ("png", 1, 1)),
    ((1, 1), "b-2_FF0000", "jpg", ("jpg", 5, 5)),
    ((1, 1), "w-10,h-10,cm-pad_resize,bg-blurred", "jpg", ("jpg", 10, 10)),
    ((1, 1), "w-10,h-4,cm-pad_resize,bg-dominant", "jpg", ("jpg", 10, 4)),
    ((1, 1), "w-2,h-2,fo-auto", "jpg", ("jpg", 2, 2)),
    ((1, 1), "f-avif", "avif", ("avif", 1, 1)),
    ((1, 1), "f-gif", "gif", ("gif", 1, 1)),
    ((3000, 5), "w-300", "jpg", ("jpg", 300, 1)),
    ((3000, 5), "w-750", "jpg", ("jpg", 750, 1)),
    ((3000, 5), "w-1500", "jpg", ("jpg", 1500, 2)),
    ((3000, 5), "w-2999", "jpg", ("jpg", 2999, 5)),
    ((3000, 5), "w-300,t-true,e-sharpen", "jpg", ("jpg", 300, 1)),
    ((6, 6), "w-1", "jpg", ("jpg", 1, 1)),
    ((6, 6), "w-2", "jpg", ("jpg", 2, 2)),
    ((6, 6), "w-3,f-png", "png", ("png", 3, 3)),
    ((20000, 1), "w-300", "jpg", ("jpg", 300, 1)),
    ((20000, 1), "w-2500", "jpg", ("jpg", 2500, 1)),
    ((20000, 1), "w-8000,f-webp", "webp", ("webp", 8000, 1)),
    # a URL without steps of an original over `max_output_side` (a panorama's own URL): fitted within it, not a 400
    ((20000, 1), "", "jpg", ("jpg", 8192, 1)),
    ((20000, 1), "f-png", "png", ("png", 8192, 1)),
    ((20000, 500), "q-50,f-webp", "webp", ("webp", 8192, 205)),
    ((500, 20000), "", "jpg", ("jpg", 205, 8192)),
    ((1, 3000), "h-300", "jpg", ("jpg", 1, 300)),
    ((1001, 1333), "w-1", "jpg", ("jpg", 1, 1)),
    ((1001, 1333), "w-125", "jpg", ("jpg", 125, 166)),
    ((1001, 1333), "w-126", "jpg", ("jpg", 126, 168)),
    ((1001, 1333), "w-250", "jpg", ("jpg", 250, 333)),
    ((1001, 1333), "w-251", "jpg", ("jpg", 251, 334)),
    ((1001, 1333), "w-300", "jpg", ("jpg", 300, 400)),
    ((1001, 1333), "w-500", "jpg", ("jpg", 500, 666)),
    ((1001, 1333), "w-501", "jpg", ("jpg", 501, 667)),
    ((1001, 1333), "w-1000", "jpg", ("jpg", 1000, 1332)),
    ((1001, 1333), "h-333", "jpg", ("jpg", 250, 333)),
    ((1001, 1333), "w-125,h-125", "jpg", ("jpg", 125, 125)),
    ((1001, 1333), "w-126,h-167,c-force", "jpg", ("jpg", 126, 167)),
])
def test_tiny_thin_and_odd_jpegs_render_at_the_promised_size(size, tr, planned, expected):
    assert render(jpeg(*size), tr, planned) == expected


@pytest.mark.parametrize("tr, expected", [("w-125", (125, 166)), ("w-126", (126, 168)), ("w-251", (251, 334))])
def test_an_exif_turned_odd_jpeg_shrinks_on_its_stored_sides(tr, expected):
    """Stored 1333×1001 turned (orientation 6), shown 1001×1333: the shrink is chosen on the upright sides."""
    upright = pyvips.Image.new_from_buffer(jpeg(1001, 1333), "")
    assert render(imagecorpus.stored_with_orientation(upright, 6), tr) == ("jpg", *expected)


def test_a_truncated_base_jpeg_is_still_a_422():
    body = jpeg(1001, 1333)
    with pytest.raises(UnprocessableSource):
        render_image(body[: len(body) // 2], parse_transformation("w-125"), "jpg", Defaults(), Limits())


@pytest.mark.parametrize("value, grey", [(0.214, 128), (0.5, 188), (1.0, 255), (128.0, 255)])
def test_a_float_tiff_is_read_as_linear_light(value, grey):
    tiff = (pyvips.Image.black(64, 64, bands=3) + value).cast("float").tiffsave_buffer()
    output = pyvips.Image.new_from_buffer(render_image(tiff, parse_transformation("w-32"), "jpg", Defaults(),
                                                       Limits()).body, "")
    assert output.getpoint(16, 16) == [grey] * 3


# -- a layer's failure is the layer's 400 ---------------------------------------------------------------

def text_layer(newlines: int) -> str:
    return "w-1000,l-text,i-a" + "\n" * newlines + "b,fs-500,l-end"


@pytest.mark.parametrize("newlines", [14, 50, 56, 60, 200])
def test_a_text_too_tall_to_draw_is_a_400_naming_the_layer(photo, newlines):
    """From 56 lines at fs-500 the text is over Cairo's 32767 px: it fails inside libvips' text, before
    the node's own size check, and was a 422."""
    with pytest.raises(InvalidTransformation) as raised:
        render_image(photo, parse_transformation(text_layer(newlines)), "jpg", Defaults(), Limits())
    assert (raised.value.status, raised.value.message) == (400, TOO_LARGE_TEXT)


def test_a_text_of_a_few_lines_is_drawn(photo):
    assert render(photo, text_layer(10)) == ("jpg", 1000, 750)


@pytest.mark.parametrize("text", [" ", "  ", "\n", " \n ", "\u00a0"])
def test_a_text_of_only_spaces_is_a_400_naming_it(text):
    """libvips refuses a text without ink ("no text to render"): refused when the URL is read."""
    with pytest.raises(InvalidTransformation) as raised:
        parse_transformation(f"l-text,i-{text},l-end")
    assert raised.value.message == f"invalid transformation: i-{text}: only spaces and line breaks: no text to draw"


@pytest.mark.parametrize("tr", ["w-1000,l-image,i-trunc.jpg,l-end", "w-1000,l-image,i-trunc.jpg,w-10,rt-90,l-end",
                                "w-1000:l-image,i-trunc.jpg,lx-10,l-end"])
def test_a_truncated_overlay_is_a_400_naming_it(photo, tr):
    with pytest.raises(InvalidTransformation) as raised:
        render_image(photo, parse_transformation(tr), "jpg", Defaults(), Limits(),
                     {"trunc.jpg": imagecorpus.truncated_jpeg()})
    assert (raised.value.status, raised.value.message) == (400, UNDECODABLE_OVERLAY)


@pytest.mark.parametrize("overlay, tr", [
    ((1, 1), "l-image,i-o.jpg,l-end"),
    ((1, 1), "l-image,i-o.jpg,w-300,t-true,e-sharpen,l-end"),
    ((6, 6), "l-image,i-o.jpg,w-1,l-end"),
    ((3000, 5), "l-image,i-o.jpg,w-300,l-end"),
    ((20000, 1), "l-image,i-o.jpg,w-300,l-end"),
    ((1001, 1333), "l-image,i-o.jpg,w-126,l-end"),
])
def test_tiny_and_thin_jpeg_overlays_are_drawn(photo, overlay, tr):
    assert render(photo, "w-1000," + tr, overlays={"o.jpg": jpeg(*overlay)}) == ("jpg", 1000, 750)


# -- over a real socket --------------------------------------------------------------------------------

@pytest.fixture
async def node_over_files(node_factory, tmp_path, photo):
    folder = tmp_path / "files"
    folder.mkdir()
    for name, size in {"tiny.jpg": (1, 1), "line.jpg": (3000, 5), "six.jpg": (6, 6), "thin.jpg": (20000, 1),
                       "odd.jpg": (1001, 1333)}.items():
        (folder / name).write_bytes(jpeg(*size))
    (folder / "photo.jpg").write_bytes(photo)
    (folder / "panorama.jpg").write_bytes(pyvips.Image.new_from_buffer(photo, "").thumbnail_image(
        16000, height=2400, size="force").jpegsave_buffer(Q=85))
    (folder / "trunc.jpg").write_bytes(imagecorpus.truncated_jpeg())
    (folder / "page.jpg").write_bytes(imagecorpus.not_an_image())
    return await node_factory(write_config(tmp_path, local_config(folder)))


@pytest.mark.parametrize("path, content_type, size", [
    ("/tiny.jpg", "image/jpeg", (1, 1)),
    ("/tr:t-true/tiny.jpg", "image/jpeg", (1, 1)),
    ("/tr:w-1,f-webp/tiny.jpg", "image/webp", (1, 1)),
    ("/tr:e-sharpen/tiny.jpg", "image/jpeg", (1, 1)),
    ("/tr:w-300/tiny.jpg", "image/jpeg", (300, 300)),  # w alone, default crop: enlarged
    ("/tr:w-300,h-300,c-at_max/tiny.jpg", "image/jpeg", (1, 1)),  # never enlarged
    ("/tr:w-20,f-png/tiny.jpg", "image/png", (20, 20)),
    ("/tr:w-300/line.jpg", "image/jpeg", (300, 1)),
    ("/tr:w-1/six.jpg", "image/jpeg", (1, 1)),
    ("/tr:w-300/thin.jpg", "image/jpeg", (300, 1)),
    ("/thin.jpg", "image/jpeg", (8192, 1)),  # its own URL: fitted within max_output_side (it was a 400)
    ("/panorama.jpg", "image/jpeg", (8192, 1229)),  # a phone's 20 MP panorama, as linked from a page
    ("/tr:f-webp/panorama.jpg", "image/webp", (8192, 1229)),
    ("/tr:w-251/odd.jpg", "image/jpeg", (251, 334)),
    ("/tr:w-126/odd.jpg", "image/jpeg", (126, 168)),
    ("/tr:w-1000,l-image,i-tiny.jpg,w-300,l-end,l-image,i-thin.jpg,w-300,l-end/photo.jpg", "image/jpeg", (1000, 750)),
])
async def test_tiny_and_thin_jpegs_are_served(node_over_files, path, content_type, size):
    response = await node_over_files.fetch(path)
    assert response.code == 200, (path, response.code, response.body[:200])
    assert response.headers["Content-Type"] == content_type
    image = decode(response)
    image.avg()
    assert (image.get("vips-loader").removesuffix("_buffer"), image.width, image.height) == \
        ({"image/jpeg": "jpegload", "image/webp": "webpload", "image/png": "pngload"}[content_type], *size)


@pytest.mark.parametrize("path, status, body", [
    ("/tr:w-1000,l-text,i-a" + "%0A" * 60 + "b,fs-500,l-end/photo.jpg", 400, TOO_LARGE_TEXT),
    ("/tr:w-1000,l-text,i-a" + "%0A" * 20 + "b,fs-500,l-end/photo.jpg", 400, TOO_LARGE_TEXT),
    ("/tr:w-1000,l-image,i-trunc.jpg,l-end/photo.jpg", 400, UNDECODABLE_OVERLAY),
    ("/tr:w-1000,l-image,i-page.jpg,l-end/photo.jpg", 400,
     "invalid transformation: i-page.jpg: not an image the node can decode"),
    ("/tr:w-1000,l-image,i-thin.jpg,l-end/photo.jpg", 400,  # 20000x1 at its own size: over the side limit
     "invalid transformation: i-thin.jpg: output too large: 20000x1, at most 8192 px a side"),
    ("/tr:w-300/trunc.jpg", 422, "unsupported or corrupt source image"),  # the base's own corruption
    ("/tr:w-300,l-image,i-tiny.jpg,l-end/trunc.jpg", 422, "unsupported or corrupt source image"),
])
async def test_whose_fault_the_answer_names(node_over_files, path, status, body):
    response = await node_over_files.fetch(path)
    assert (response.code, response.body.decode()) == (status, body + "\n")


async def test_a_text_of_only_spaces_over_http(node_over_files):
    response = await node_over_files.fetch("/tr:l-text,i-%20%0A,l-end/photo.jpg")
    assert response.code == 400
    assert response.body.decode().endswith(": only spaces and line breaks: no text to draw\n")
    ok = await node_over_files.fetch("/tr:w-300,l-text,i-%20a%20,fs-40,l-end/photo.jpg")
    assert ok.code == 200 and (decode(ok).width, decode(ok).height) == (300, 225)


# -- pages of a 16-bit TIFF: 8-bit sRGB before the steps, as every other source ---------------------------

def sixteen_bit_tiff(pages: int = 2) -> bytes:
    """A TIFF of `pages` 16-bit RGB photo pages, 1200x800 (a scanner's, a print workflow's)."""
    page = (pyvips.Image.new_from_buffer(imagecorpus.photo_jpeg(1200, 800), "").cast("ushort") * 257).cast("ushort")
    strip = pyvips.Image.arrayjoin([page] * pages, across=1).copy(interpretation="rgb16")
    strip.set_type(pyvips.GValue.gint_type, "page-height", 800)
    return strip.tiffsave_buffer(keep="none")


@pytest.mark.parametrize("tr, point, expected", [
    ("pg-2,b-20_00FF00,f-png", (5, 5), [0, 255, 0]),  # was black: 255 of 65535
    ("pg-2,rt-45,bg-00FF00,f-png", (5, 5), [0, 255, 0]),
    ("pg-2,cm-pad_extract,w-1400,h-1000,bg-00FF00,f-png", (5, 5), [0, 255, 0]),
    ("pg-2,o-50,f-png", (600, 400), 127),  # the alpha: was 0, wholly transparent
    ("pg-2,r-100,f-png", (600, 400), 255),  # opaque but for the corners: was transparent
    ("f-gif,b-20_00FF00", (5, 5), [0, 255, 0]),  # every page, an animation
])
def test_a_page_of_a_16_bit_tiff_takes_colours_and_opacity_as_8_bit_sources_do(tr, point, expected):
    rendered = render_image(sixteen_bit_tiff(), parse_transformation(tr), tr.split("f-")[1][:3], Defaults(), Limits())
    image = pyvips.Image.new_from_buffer(rendered.body, "")
    assert image.format == "uchar"  # an 8-bit output, as the docs promise (e-contrast made a 16-bit PNG)
    values = [round(v) for v in image.getpoint(*point)]
    if isinstance(expected, int):
        assert values[3] == expected
    else:
        assert all(abs(a - b) < 8 for a, b in zip(values[:3], expected)), values


def test_a_page_of_a_cmyk_tiff_without_a_profile_takes_bg_colours_as_srgb():
    page = pyvips.Image.new_from_buffer(imagecorpus.photo_jpeg(400, 300), "").colourspace("cmyk")
    strip = pyvips.Image.arrayjoin([page] * 2, across=1).copy(interpretation="cmyk")
    strip.set_type(pyvips.GValue.gint_type, "page-height", 300)
    rendered = render_image(strip.tiffsave_buffer(keep="none"), parse_transformation("pg-2,b-20_00FF00,f-png"), "png",
                            Defaults(), Limits())
    corner = pyvips.Image.new_from_buffer(rendered.body, "").getpoint(5, 5)
    assert [round(v) for v in corner[:3]] == [0, 255, 0]  # was [39, 24, 39]: the colour's values taken as CMYK


# -- trimming an animation -----------------------------------------------------------------------------

def moving_square_gif() -> bytes:
    """Three 400x300 white frames, a red square (or bar) in another place on each."""
    frames = [(pyvips.Image.black(400, 300, bands=3) + 255).draw_rect([255, 0, 0], x, y, w, h, fill=True)
              for x, y, w, h in ((10, 10, 50, 50), (100, 50, 150, 30), (200, 100, 40, 120))]
    strip = pyvips.Image.arrayjoin([frame.cast("uchar") for frame in frames], across=1).copy(interpretation="srgb")
    strip.set_type(pyvips.GValue.gint_type, "page-height", 300)
    strip.set_type(pyvips.GValue.array_int_type, "delay", [100, 100, 100])
    return strip.gifsave_buffer()


@pytest.mark.parametrize("tr, planned", [("t-true", "gif"), ("t-true,f-webp", "webp"), ("w-400:t-true", "gif")])
def test_an_animation_is_trimmed_by_one_box_for_every_frame(tr, planned):
    """The box that holds the square wherever it is (10,10 to 250,220): each frame trimmed alone was
    stretched to the first one's 50x50, all three frames one red square, the motion lost. In a later
    step of a chain too."""
    rendered = render_image(moving_square_gif(), parse_transformation(tr), planned, Defaults(), Limits())
    image = pyvips.Image.new_from_buffer(rendered.body, "", n=-1)
    assert (rendered.width, rendered.height) == (240, 210) and image.get("n-pages") == 3
    red = [round((image.crop(0, 210 * page, 240, 210)[1] < 90).avg() / 255, 2) for page in range(3)]
    assert red == [round(w * h / (240 * 210), 2) for w, h in ((50, 50), (150, 30), (40, 120))]


# -- an animation's frames decide together ---------------------------------------------------------------

ANIMATION_FRAME = (2400, 800)
#: where the skin-toned square (the most interesting thing of each frame, for libvips' attention) is
SQUARE_AT, SQUARE_SIDE = ((200, 300), (1100, 300), (2000, 300)), 200


def moving_subject_webp() -> bytes:
    """Three frames of one photo, greyed and dimmed (lossless, so that what does not move is the same pixels
    in each), a skin-toned square in another place on each."""
    photo = imagecorpus.photo_jpeg(*ANIMATION_FRAME)
    # dimmed, grey: the square, saturated and skin-toned, is what attention picks on every frame
    grey = pyvips.Image.new_from_buffer(photo, "").colourspace("b-w") * 0.3 + 90
    background = grey.bandjoin([grey, grey]).cast("uchar").copy_memory()
    square = (pyvips.Image.black(SQUARE_SIDE, SQUARE_SIDE, bands=3) + [230, 160, 120]).cast("uchar")
    strip = pyvips.Image.arrayjoin([background.insert(square, x, y) for x, y in SQUARE_AT], across=1)
    strip = strip.copy(interpretation="srgb")
    strip.set_type(pyvips.GValue.gint_type, "page-height", ANIMATION_FRAME[1])
    strip.set_type(pyvips.GValue.array_int_type, "delay", [100] * len(SQUARE_AT))
    return strip.webpsave_buffer(lossless=True, effort=0)


def frames_of(rendered) -> list[pyvips.Image]:
    image = pyvips.Image.new_from_buffer(rendered.body, "", n=-1)
    height = image.get("page-height")
    colour = image.extract_band(0, n=3)  # an animated WebP is decoded with alpha
    return [colour.crop(0, top, image.width, height).copy_memory() for top in range(0, image.height, height)]


def share_of(mask: pyvips.Image) -> float:
    """The share of a frame's pixels that a one-band mask holds, rounded."""
    return round(mask.avg() / 255, 2)


@pytest.mark.parametrize("tr, side", [("w-300,h-300,fo-auto", 300), ("w-800,h-800,cm-extract,fo-auto", 800),
                                      ("w-800:w-300,h-300,fo-auto", 300)])
def test_an_animation_is_cut_at_one_place_for_every_frame(tr, side):
    """`fo-auto` on an animation whose subject moves: every frame is cut where the first frame's most
    interesting point is, so the photo stands still and the square leaves the crop. Cut each by its own,
    the crop followed the square (in every frame, at one place) and dragged the photo behind it."""
    rendered = render_image(moving_subject_webp(), parse_transformation(f"{tr},f-webp,lo-true"), "webp",
                            Defaults(), Limits())
    frames = frames_of(rendered)  # the last two are the same: the encoder may make them one
    assert len(frames) in (2, 3) and (rendered.width, rendered.height) == (side, side)
    squares = [share_of((frame == [230, 160, 120]).bandand()) for frame in frames]
    assert squares[0] >= 0.05 and squares[1:] == [0] * (len(frames) - 1)
    # and nothing else changed: the photo behind stood still (the square's ~6 % and its resampled edge)
    changed = [share_of(((frame - frames[0]).abs() > 0).bandor()) for frame in frames[1:]]
    assert all(share <= 0.08 for share in changed)


def test_an_animation_is_padded_in_the_first_frame_s_dominant_colour():
    """`bg-dominant` on an animation whose frames are of other colours: the padding of every frame is the
    first frame's dominant colour (each frame its own, the padding flickered)."""
    frames = [(pyvips.Image.black(1600, 1200, bands=3) + colour).cast("uchar") for colour in
              ([20, 40, 200], [30, 180, 40], [200, 30, 30])]
    strip = pyvips.Image.arrayjoin(frames, across=1).copy(interpretation="srgb")
    strip.set_type(pyvips.GValue.gint_type, "page-height", 1200)
    rendered = render_image(strip.webpsave_buffer(lossless=True, effort=0),
                            parse_transformation("w-400,h-200,cm-pad_resize,bg-dominant,f-webp,lo-true"), "webp",
                            Defaults(), Limits())
    padding = [frame.getpoint(5, 100) for frame in frames_of(rendered)]
    assert len(padding) == 3 and all(colour == padding[0] for colour in padding) and padding[0][2] > 150


def test_an_animation_s_colour_replacement_replaces_the_first_frame_s_dominant_colour():
    """`cr-<to>` without a source colour on an animation: the first frame's dominant colour (red) is replaced
    in every frame, and a colour the first frame holds little of (blue) in none. Each frame deciding alone, the
    second, mostly blue, had its blue made green and its red kept."""
    reds, blues = (200, 30, 30), (30, 40, 200)
    frames = [(pyvips.Image.black(1600, 1200, bands=3) + list(ground)).cast("uchar")
              .draw_rect(list(patch), 100, 100, 400, 300, fill=True) for ground, patch in ((reds, blues), (blues, reds))]
    strip = pyvips.Image.arrayjoin(frames, across=1).copy(interpretation="srgb")
    strip.set_type(pyvips.GValue.gint_type, "page-height", 1200)
    rendered = render_image(strip.webpsave_buffer(lossless=True, effort=0),
                            parse_transformation("w-400,cr-00C000,f-webp,lo-true"), "webp", Defaults(), Limits())
    first, second = frames_of(rendered)
    green = (0, 192, 0)
    # the ground, and the patch (at 25-125, 25-100 once shrunk)
    assert [first.getpoint(300, 200), first.getpoint(60, 50)] == [list(green), list(blues)]
    assert [second.getpoint(300, 200), second.getpoint(60, 50)] == [list(blues), list(green)]


def test_every_step_of_an_animation_is_held_to_the_frames_budget():
    """Every frame is made at each step's size: a chain that makes them large on the way (three frames at
    800x600) is refused even when its last step is small, before they are made."""
    limits = Limits(max_source_pixels=1_000_000)
    with pytest.raises(BadRequest) as refused:
        render_image(moving_square_gif(), parse_transformation("w-800:w-100"), "gif", Defaults(), limits)
    assert refused.value.message == "output too large: 3 frames of 800x600 exceed 1000000 pixels"
    smaller = render_image(moving_square_gif(), parse_transformation("w-500:w-100"), "gif", Defaults(), limits)
    assert smaller.width == 100
