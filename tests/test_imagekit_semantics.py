"""ImageKit's semantics where the node used to differ, over a real socket, pixels checked on 12 MP
sources: `bg-RRGGBBOO` opacity digits, an opaque `bg` filling transparency, `o` with `bg`, per-corner
radius, shadow and gradient, expressions, `pg`, animations under `f-auto`, `[defaults] auto_format`
and `auto_format_smallest`."""

from __future__ import annotations

import shutil

import pytest
import pyvips

from tests.assets import close, pixel
from tests.imagecorpus import ANIMATION_COLOURS, animated_gif
from tests.nodes import decode, write_config
from tests.photos import SIZE, marker_corner, photos  # noqa: F401 - photos is a fixture
from tests.transform_node import fetch_image, images_config

#: a 12 MP transparent PNG with an opaque red rectangle in its middle half
SHAPE_SIZE = (4000, 3000)
BROWSER = {"Accept": "image/avif,image/webp,*/*"}
FRAMES = 5


def two_page_tiff() -> bytes:
    """A TIFF of two 40x30 pages: red, then blue."""
    pages = [(pyvips.Image.black(40, 30, bands=3) + colour).cast("uchar") for colour in ([255, 0, 0], [0, 0, 255])]
    strip = pages[0].join(pages[1], "vertical").copy(interpretation="srgb")
    strip.set_type(pyvips.GValue.gint_type, "page-height", 30)
    return strip.tiffsave_buffer()


def striped_photo() -> bytes:
    """The 12 MP photo with a patch of 1 px red and blue columns at its top-left corner (100x100)."""
    x = pyvips.Image.xyz(100, 100)[0]
    stripes = ((x % 2) == 0).ifthenelse([255, 0, 0], [0, 0, 255]).cast("uchar")
    photo = (pyvips.Image.black(*SIZE, bands=3) + [90, 140, 60]).cast("uchar")
    return photo.insert(stripes, 0, 0).copy(interpretation="srgb").jpegsave_buffer(Q=95, subsample_mode="off")


def transparent_shape() -> bytes:
    width, height = SHAPE_SIZE
    shape = (pyvips.Image.black(width // 2, height // 2, bands=4) + [255, 0, 0, 255]).cast("uchar")
    canvas = pyvips.Image.black(width, height, bands=4).cast("uchar").insert(shape, width // 4, height // 4)
    return canvas.copy(interpretation="srgb").pngsave_buffer(compression=1, keep="none")


@pytest.fixture(scope="module")
def semantics_root(photos, tmp_path_factory):
    root = tmp_path_factory.mktemp("semantics")
    shutil.copy(photos.path(photos.jpeg), root / "photo.jpg")
    (root / "shape.png").write_bytes(transparent_shape())
    (root / "stripes.jpg").write_bytes(striped_photo())
    (root / "anim.gif").write_bytes(animated_gif(FRAMES))
    (root / "pages.tif").write_bytes(two_page_tiff())
    # a pyramidal TIFF (as scanners and map tools write): its pages are the photo at 1/1, 1/2, 1/4…
    photo = pyvips.Image.new_from_file(str(photos.path(photos.jpeg)))
    (root / "pyramid.tif").write_bytes(photo.tiffsave_buffer(compression="jpeg", Q=80, tile=True, pyramid=True))
    return root


@pytest.fixture
async def node(node_factory, semantics_root, tmp_path):
    return await node_factory(write_config(tmp_path, images_config(semantics_root)))


async def test_background_opacity_digits_are_a_percentage(node):
    _, image = await fetch_image(node, "/tr:w-400,h-400,cm-pad_resize,bg-00FF0050,f-png/photo.jpg")
    assert (image.width, image.height) == (400, 400)
    assert pixel(image, 200, 5) == (0, 255, 0, 128)  # 50 % of 255, not 0x50
    assert pixel(image, 200, 200)[3] == 255


async def test_jpeg_is_subsampled_below_quality_90_by_default(node):
    """libvips' rule and most image CDNs': 4:2:0 below q-90 (smaller files; 1 px red and blue columns are
    averaged, both purple), full colour resolution from q-90 up."""
    _, image = await fetch_image(node, "/tr:cm-extract,w-40,h-40,x-10,y-10/stripes.jpg")
    assert (image.width, image.height) == (40, 40) and image.get("jpeg-chroma-subsample") == "4:2:0"
    red, blue = pixel(image, 20, 20), pixel(image, 21, 20)
    assert abs(red[0] - blue[0]) < 80 and red[2] > 60  # the two columns' colours averaged: both purple
    _, photo = await fetch_image(node, "/tr:w-2120,q-95/stripes.jpg")
    assert photo.width == SIZE[0] // 2 and photo.get("jpeg-chroma-subsample") == "4:4:4"


async def test_chroma_subsampling_off_keeps_full_colour_resolution_as_imagekit_by_default(node_factory,
                                                                                       semantics_root, tmp_path):
    """ImageKit documents its 4:2:0 as a dashboard setting, off by default: `chroma_subsampling = false` gives its
    look, 1 px red and blue columns kept red and blue, at every quality."""
    (tmp_path / "full").mkdir()
    config = images_config(semantics_root, "[defaults]\nchroma_subsampling = false\n")
    full = await node_factory(write_config(tmp_path / "full", config))
    response, image = await fetch_image(full, "/tr:cm-extract,w-40,h-40,x-10,y-10/stripes.jpg")
    assert response.headers["Content-Type"] == "image/jpeg" and (image.width, image.height) == (40, 40)
    assert image.get("jpeg-chroma-subsample") == "4:4:4"
    assert close(pixel(image, 20, 20), (255, 0, 0), 12) and close(pixel(image, 21, 20), (0, 0, 255), 12)
    _, resized = await fetch_image(full, "/tr:w-2120,q-60/stripes.jpg")  # a resize, a low quality: still 4:4:4
    assert resized.width == SIZE[0] // 2 and resized.get("jpeg-chroma-subsample") == "4:4:4"


@pytest.mark.parametrize("legacy, mode", [("c-pad_resize", "cm-pad_resize"), ("c-extract", "cm-extract")])
async def test_a_crop_mode_written_as_c_is_the_crop_mode(node, legacy, mode):
    """ImageKit's `pad_resize` and `extract` were `c-` values before `cm-` (its conditional-transformation docs
    still write `h-200,c-pad_resize`; SDKs such as unpic wrote `c-pad_resize` and `c-extract` until 2025):
    they were a 400."""
    response, image = await fetch_image(node, f"/tr:w-300,h-300,{legacy},bg-00FF00/photo.jpg")
    expected = await node.fetch(f"/tr:w-300,h-300,{mode},bg-00FF00/photo.jpg")
    assert (image.width, image.height) == (300, 300) and response.body == expected.body
    assert expected.headers["X-Cache"] == "HIT"  # one canonical form, one cache entry
    if mode == "cm-pad_resize":  # the 3:2 photo fitted in, green above and below
        assert close(pixel(image, 150, 5), (0, 255, 0)) and marker_corner(image.crop(0, 50, 300, 200)) == "top_left"


async def test_conditional_steps_follow_the_size_at_their_step(node):
    """ImageKit's `if-<condition>,…[,if-else,…],if-end` (conditional-transformations docs); it was a 400."""
    _, landscape = await fetch_image(node, "/tr:if-ar_gt_1,w-600,if-else,h-400,if-end/photo.jpg")
    assert (landscape.width, landscape.height) == (600, round(600 * SIZE[1] / SIZE[0]))
    _, portrait = await fetch_image(node, "/tr:rt-90:if-ar_gt_1,w-600,if-else,h-400,if-end/photo.jpg")
    assert (portrait.width, portrait.height) == (round(400 * SIZE[1] / SIZE[0]), 400)
    assert marker_corner(portrait) == "top_right"  # turned first, then the else branch
    _, capped = await fetch_image(node, "/photo.jpg?tr=if-w_gt_168,w-168,if-end")
    _, small = await fetch_image(node, "/tr:w-100:if-w_gt_168,w-168,if-end/photo.jpg")
    assert (capped.width, small.width) == (168, 100)
    # ImageKit's chained example (written with the c-pad_resize of its page): the block sees the 200 px height
    _, chained = await fetch_image(node, "/tr:h-200,c-pad_resize:if-h_eq_200,w-100,if-end:rt-90/photo.jpg")
    assert (chained.width, chained.height) == (67, 100) and marker_corner(chained) == "top_right"
    # `and` binds before `or`; iw is the original's width, a ratio may be written 4-3; a branch may chain steps
    _, both = await fetch_image(node, "/tr:w-300:if-iw_gt_5000_and_w_lt_400_or_ar_gt_4-3,w-50:fl-h,if-end/photo.jpg")
    assert both.width == 50 and marker_corner(both) == "top_right"
    _, neither = await fetch_image(node, "/tr:w-300:if-iw_gt_5000_or_ar_lt_4-3,w-50,if-end/photo.jpg")
    assert neither.width == 300 and marker_corner(neither) == "top_left"
    again = await node.fetch("/tr:w-300.0:if-iw_gt_5000.0_or_ar_lt_4-3,w-50,if-end/photo.jpg")
    assert again.headers["X-Cache"] == "HIT"  # one canonical form
    response = await node.fetch("/tr:h-100,if-h_eq_200,w-100,if-end/photo.jpg")  # ImageKit's invalid example
    assert response.code == 400 and b"an if block is a step of its own" in response.body


@pytest.mark.parametrize("focus, why", [("person", "object-aware AI cropping"),
                                        ("custom", "the focus area ImageKit keeps with a file in its media library")])
async def test_imagekit_focus_the_node_cannot_do_says_so(node, focus, why):
    response = await node.fetch(f"/tr:w-300,h-300,fo-{focus}/photo.jpg")
    assert response.code == 400 and f"invalid transformation: fo-{focus}: " in response.body.decode()
    assert f"not supported ({why})" in response.body.decode()
    _, image = await fetch_image(node, "/tr:w-300,h-300,fo-left/photo.jpg")  # a position still crops
    assert (image.width, image.height) == (300, 300) and marker_corner(image) == "top_left"


async def test_per_corner_radius_rounds_only_the_corners_named(node):
    _, image = await fetch_image(node, "/tr:w-800,r-0_120_0_120,f-png/photo.jpg")
    right, bottom = image.width - 2, image.height - 2
    assert (image.width, image.height) == (800, round(800 * SIZE[1] / SIZE[0]))
    assert [pixel(image, x, y)[3] for x, y in ((1, 1), (right, 1), (right, bottom), (1, bottom))] == [255, 0, 255, 0]


async def test_gradient_darkens_towards_the_bottom_only(node):
    _, plain = await fetch_image(node, "/tr:w-800,f-png/photo.jpg")
    _, graded = await fetch_image(node, "/tr:w-800,e-gradient,f-png/photo.jpg")
    rows = plain.height

    def mean(image, top):
        return image.extract_band(0, n=3).crop(100, top, 600, 10).avg()
    assert abs(mean(plain, 0) - mean(graded, 0)) < 2  # from transparent at the top
    assert mean(plain, rows - 10) - mean(graded, rows - 10) > 25  # to black at 66 % at the bottom


async def test_shadow_falls_beside_the_opaque_shape_only(node):
    _, plain = await fetch_image(node, "/tr:w-400,f-png/shape.png")
    _, shadowed = await fetch_image(node, "/tr:w-400,e-shadow-bl-0_st-100_x-10_y-10,f-png/shape.png")
    # the shape covers x 100–300, y 75–225; the shadow is shifted by 40, 30
    assert pixel(plain, 320, 240)[3] == 0 and pixel(shadowed, 320, 240) == (0, 0, 0, 255)
    assert pixel(shadowed, 200, 150) == (255, 0, 0, 255)  # the shape stays on top
    assert pixel(shadowed, 50, 50)[3] == 0 and pixel(shadowed, 120, 15)[3] == 0


async def test_a_shadow_s_x_moves_it_across_and_its_y_down(node):
    """`x` is a share of the width, across; `y` of the height, down: `x-10_y-0` shifts it 40 px right only."""
    _, shadowed = await fetch_image(node, "/tr:w-400,e-shadow-bl-0_st-100_x-10_y-0,f-png/shape.png")
    # the shape covers x 100–300, y 75–225; the shadow x 140–340, y 75–225
    assert pixel(shadowed, 320, 150) == (0, 0, 0, 255) and pixel(shadowed, 320, 230)[3] == 0
    assert pixel(shadowed, 200, 240)[3] == 0 and pixel(shadowed, 345, 150)[3] == 0


async def test_an_opaque_background_fills_transparency_and_opacity_lies_on_it(node):
    _, filled = await fetch_image(node, "/tr:w-400,bg-0000FF,f-png/shape.png")
    assert filled.bands == 3 and pixel(filled, 20, 20) == (0, 0, 255) and pixel(filled, 200, 150) == (255, 0, 0)
    _, faded = await fetch_image(node, "/tr:w-400,o-50,bg-000000,f-png/shape.png")
    assert faded.bands == 3 and close(pixel(faded, 200, 150), (128, 0, 0), 2) and pixel(faded, 20, 20) == (0, 0, 0)


async def test_expressions_use_the_original_size(node):
    _, image = await fetch_image(node, "/tr:w-iw_div_2/photo.jpg")
    assert (image.width, image.height) == (SIZE[0] // 2, SIZE[1] // 2)
    _, chained = await fetch_image(node, "/tr:w-1000:w-cw_div_4,ar-iar_div_2/photo.jpg")
    assert (chained.width, chained.height) == (250, round(250 / (SIZE[0] / SIZE[1] / 2)))
    response = await node.fetch("/tr:w-iw_sub_iw/photo.jpg")
    assert response.code == 400 and b"w-iw_sub_iw: evaluates to 0" in response.body


async def test_expressions_keep_their_numbers_and_their_bounds(node):
    """A variable alone is an expression (`w-iw`: the original's width); a number keeps its 9 decimals (`0.125`, not
    rounded to `0.13`), and no more; 15 terms make one, 17 a 400; `pow` takes a base up to 65500 and an exponent up
    to 10: `65501_pow_0.5` (255) and `2_pow_11` (2048) are 400s saying so."""
    for tr, size in (("w-iw", SIZE), ("w-iw_mul_0.125", (530, 354)), ("w-iw" + "_sub_1" * 7, (4233, 2827))):
        _, image = await fetch_image(node, f"/tr:{tr}/photo.jpg")
        assert (image.width, image.height) == size, tr
    pow_bounds = b"pow takes a base from 0 to 65500 and an exponent up to 10"
    for tr, why in (("w-iw" + "_sub_1" * 8, b"at most 15 terms"), ("w-iw_mul_0.1234567891", b"at most 9 digits"),
                    ("w-65501_pow_0.5", pow_bounds), ("w-2_pow_11", pow_bounds)):
        response = await node.fetch(f"/tr:{tr}/photo.jpg")
        assert response.code == 400 and why in response.body, (tr, response.code, response.body)


async def test_page_picks_one_frame(node):
    response, image = await fetch_image(node, "/tr:pg-3,f-png/anim.gif")
    assert not image.get_typeof("n-pages") and close(pixel(image, 16, 16), ANIMATION_COLOURS[2], 2)
    _, second = await fetch_image(node, "/tr:pg-2,f-png/pages.tif")
    assert (second.width, second.height) == (40, 30) and pixel(second, 20, 15) == (0, 0, 255)
    response = await node.fetch("/tr:pg-9/anim.gif")
    assert (response.code, response.body) == (400, b"invalid transformation: pg-9: the source has 5 page(s)\n")


async def test_ik_thumbnail_is_a_jpeg_of_the_first_frame_or_the_page_named(node):
    """ImageKit's `/<path>/ik-thumbnail.jpg` (vector-and-animated-images: "the first page, frame, or layer is
    extracted by default", `pg-N` picks one); it was a 404."""
    response, still = await fetch_image(node, "/photo.jpg/ik-thumbnail.jpg?tr=w-400")
    assert response.headers["Content-Type"] == "image/jpeg"
    assert (still.width, still.height) == (400, round(400 * SIZE[1] / SIZE[0])) and marker_corner(still) == "top_left"
    response, first = await fetch_image(node, "/tr:w-32/anim.gif/ik-thumbnail.jpg")
    assert response.headers["Content-Type"] == "image/jpeg" and _frames(first) == 1
    assert first.width == 32 and close(pixel(first, 16, 16), ANIMATION_COLOURS[0], 12)
    response, third = await fetch_image(node, "/tr:pg-3/anim.gif/ik-thumbnail.jpg")
    assert response.headers["Content-Type"] == "image/jpeg" and close(pixel(third, 16, 16), ANIMATION_COLOURS[2], 12)
    response, png = await fetch_image(node, "/tr:w-400,f-png/photo.jpg/ik-thumbnail.jpg")  # `f-` still decides
    assert response.headers["Content-Type"] == "image/png" and png.width == 400 and marker_corner(png) == "top_left"
    plain = await node.fetch("/anim.gif")
    assert plain.headers["Content-Type"] == "image/gif" and decode(plain, all_frames=True).get("n-pages") == FRAMES


@pytest.mark.parametrize("tr, headers, content_type", [("f-webp", {}, "image/webp"), ("f-gif", {}, "image/gif"),
                                                       ("f-auto", {"Accept": "image/webp"}, "image/webp"),
                                                       ("f-auto", {}, "image/jpeg")])
async def test_ik_thumbnail_in_a_format_that_animates_is_still_the_first_frame(node, tr, headers, content_type):
    """`f-webp`, `f-gif` or `f-auto` with `ik-thumbnail.jpg` choose the thumbnail's format, not the animation: it was
    the whole animation, under `f-auto` the very entry of the URL without `ik-thumbnail.jpg` (HTTP-semantics probe)."""
    response, thumbnail = await fetch_image(node, f"/tr:w-32,{tr}/anim.gif/ik-thumbnail.jpg", headers=headers)
    assert response.headers["Content-Type"] == content_type and _frames(thumbnail) == 1
    assert thumbnail.width == 32 and close(pixel(thumbnail, 16, 16), ANIMATION_COLOURS[0], 12)
    animation = await node.fetch(f"/tr:w-32,{tr}/anim.gif", headers=headers)
    assert response.headers["ETag"] != animation.headers["ETag"]
    assert decode(animation, all_frames=True).get("n-pages") == FRAMES


@pytest.mark.parametrize("path, why", [("clip.mp4", "video thumbnails: the node serves images"),
                                       ("folder/layout.psd", "PDF, PSD, EPS and AI: the node does not read them")])
async def test_ik_thumbnail_of_a_video_or_a_document_names_itself(node, path, why):
    response = await node.fetch(f"/{path}/ik-thumbnail.jpg")
    assert (response.code, response.body) == (400, f"invalid transformation: ik-thumbnail.jpg: not supported ({why})\n"
                                              .encode())


def _frames(image: pyvips.Image) -> int:
    return image.get("n-pages") if image.get_typeof("n-pages") else 1


@pytest.mark.parametrize("tr, headers", [("f-webp", {}), ("f-gif", {}), ("f-auto", BROWSER), ("f-auto", {})])
async def test_a_multi_page_tiff_is_its_first_page_in_every_format(node, tr, headers):
    """A TIFF's pages are a document's (scans, a pyramid's levels), not an animation's frames: in a format that
    animates they were an animated WebP or GIF, and a 422 where the pages differ in size."""
    _, first = await fetch_image(node, f"/tr:{tr}/pages.tif", headers=headers)
    assert _frames(first) == 1 and (first.width, first.height) == (40, 30)
    assert close(pixel(first, 20, 15), (255, 0, 0), 2)
    _, level = await fetch_image(node, f"/tr:w-400,{tr}/pyramid.tif", headers=headers)
    assert _frames(level) == 1 and (level.width, level.height) == (400, 267)
    assert marker_corner(level) == "top_left"


@pytest.mark.parametrize("accept, content_type", [("image/gif", "image/gif"), ("image/webp,*/*", "image/webp"),
                                                   ("*/*", "image/gif")])
async def test_f_auto_keeps_an_animation_animated(node, accept, content_type):
    response = await node.fetch("/tr:w-16,f-auto/anim.gif", headers={"Accept": accept})
    frames = decode(response, all_frames=True)
    assert response.headers["Content-Type"] == content_type and response.headers["Vary"] == "Accept"
    assert frames.get("n-pages") == FRAMES and frames.width == 16


async def test_auto_format_by_default_and_the_smallest_format(node_factory, semantics_root, tmp_path, node):
    config = images_config(semantics_root, "[defaults]\nauto_format = true\nauto_format_smallest = true\n")
    (tmp_path / "auto").mkdir()
    auto = await node_factory(write_config(tmp_path / "auto", config))
    old = await auto.fetch("/tr:w-600/photo.jpg", headers={"Accept": "*/*"})
    assert old.headers["Content-Type"] == "image/jpeg" and old.headers["Vary"] == "Accept"
    first = await auto.fetch("/tr:w-600/photo.jpg", headers=BROWSER)
    again = await auto.fetch("/tr:w-600/photo.jpg", headers=BROWSER)
    assert again.headers["X-Cache"] == "HIT" and again.body == first.body  # one key per Accept class
    explicit = await auto.fetch("/tr:w-600,f-png/photo.jpg", headers=BROWSER)
    assert explicit.headers["Content-Type"] == "image/png" and "Vary" not in explicit.headers
    # the smallest of what the browser accepts, encoded at the same quality as asked for one by one
    sizes = {fmt: len((await node.fetch(f"/tr:w-600,f-{fmt}/photo.jpg")).body) for fmt in ("avif", "webp", "jpg")}
    smallest = min(sizes, key=sizes.get)
    assert first.headers["Content-Type"] == f"image/{'jpeg' if smallest == 'jpg' else smallest}"
    assert len(first.body) == sizes[smallest]


async def test_the_smallest_format_is_one_the_browser_takes_and_keeps_an_animation(node_factory, semantics_root,
                                                                                    tmp_path):
    config = images_config(semantics_root, "[defaults]\nauto_format_smallest = true\n")
    node = await node_factory(write_config(tmp_path, config))
    still = await node.fetch("/tr:w-600,f-auto/photo.jpg", headers={"Accept": "image/webp,*/*"})  # no AVIF
    assert still.headers["Content-Type"] in ("image/webp", "image/jpeg") and still.headers["Vary"] == "Accept"
    assert decode(still).get("vips-loader").removesuffix("_buffer") in ("webpload", "jpegload")
    # libvips writes no animated AVIF (a still, smaller here than either animation): not a candidate
    animation = await node.fetch("/tr:w-400,f-auto/anim.gif", headers=BROWSER)
    frames = decode(animation, all_frames=True)
    assert animation.headers["Content-Type"] in ("image/webp", "image/gif")
    assert frames.get("n-pages") == FRAMES and frames.width == 400
