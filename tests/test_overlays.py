"""Layers (`l-image`, `l-text`, `i-ik_canvas` … `l-end`) as the official ImageKit SDK writes them, on a
real node over a real HTTP origin: pixels at the layers' positions, one origin fetch of an overlay for
many outputs, a changed overlay making a new output, the endpoint watermark, and the 400s."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import struct
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import pyvips
from imagekitio import ImageKit

from edge.config import load_config
from edge.errors import ConfigError
from edge.pluginmanager import load_plugins
from edge.transform.fonts import SHIPPED, read_font
from tests.imagecorpus import ANIMATION_COLOURS, animated_gif
from tests.nodes import EVERY_MISS_TO_ORIGIN, decode, web_config, write_config
from tests.photos import photos  # noqa: F401 - fixture
from tests.servers import HTTPOrigin

BLUE, RED, GREEN = [0, 0, 255], [255, 0, 0], [0, 200, 0]
WATERMARKED = '''
[[endpoints]]
id = "wm"
origins = ["web"]
watermark = "l-image,i-logo.png,w-40,lx-N0,ly-N0,l-end"
'''


def solid(width: int, height: int, rgb: list[int], alpha: int | None = None) -> pyvips.Image:
    image = (pyvips.Image.black(width, height, bands=3) + rgb).cast("uchar").copy(interpretation="srgb")
    return image.bandjoin(alpha) if alpha is not None else image


def files() -> dict[str, bytes]:
    return {"base.png": solid(400, 300, BLUE).pngsave_buffer(),
            "logo.png": solid(50, 40, RED, alpha=255).pngsave_buffer(),
            # a 30×30 red mark with a black stripe down its left, in 20 px of transparent margin
            "padded.png": solid(30, 30, RED, alpha=255).draw_rect([0, 0, 0, 255], 0, 0, 8, 30, fill=True)
                                                       .embed(20, 20, 70, 70).pngsave_buffer(),
            "brand/mark.png": solid(20, 20, GREEN).pngsave_buffer(),
            "page.png": b"<html>not an image</html>",
            "anim.gif": animated_gif(5)}


def sdk_path(src: str, transformation: list[dict], position: str = "path") -> str:
    """The path and query the installed SDK writes for `transformation` on `src`."""
    url = ImageKit(private_key="unused").helper.build_url(
        src=src, url_endpoint="https://ik.example.com/", transformation=transformation,
        transformation_position=position)
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


@pytest.fixture
async def origin():
    served = await HTTPOrigin(files=files()).start()
    yield served
    await served.stop()


@pytest.fixture
async def node(node_factory, origin, tmp_path):
    return await node_factory(write_config(tmp_path, web_config(origin.url, after=WATERMARKED)))


async def image(node, path: str) -> pyvips.Image:
    response = await node.fetch(path)
    assert response.code == 200, (path, response.code, response.body[:200])
    return decode(response)


def at(image: pyvips.Image, x: int, y: int) -> list[int]:
    return [round(v) for v in image(x, y)[:3]]


def white_ink(out: pyvips.Image, width: int, height: int) -> tuple[list[int], list[int]]:
    """The columns and the rows of `out`'s top-left `width`×`height` that hold white (a text's glyphs)."""
    columns, rows = ((out[0] > 200) & (out[2] > 200)).crop(0, 0, width, height).project()
    return [x for x in range(width) if columns(x, 0)[0]], [y for y in range(height) if rows(0, y)[0]]


def near(pixel: list[int], rgb: list[int]) -> bool:
    return all(abs(a - b) <= 8 for a, b in zip(pixel, rgb))


async def test_image_layers_as_the_sdk_writes_them(node):
    def overlay(**fields):
        return sdk_path("base.png", [{"overlay": {"type": "image", "input": "logo.png", **fields}}])

    placed = await image(node, overlay(position={"x": 10, "y": 20}))
    assert near(at(placed, 15, 25), RED) and near(at(placed, 5, 5), BLUE)
    assert near(at(placed, 59, 59), RED) and near(at(placed, 61, 61), BLUE)  # 50×40 from (10, 20)

    from_far_edges = await image(node, overlay(position={"x": "N10", "y": -20}))  # the SDK writes -20 as-is
    assert near(at(from_far_edges, 400 - 10 - 1, 300 - 20 - 1), RED)
    assert near(at(from_far_edges, 400 - 5, 300 - 5), BLUE) and near(at(from_far_edges, 400 - 62, 300 - 30), BLUE)

    transformed = await image(node, overlay(position={"focus": "top_left"}, transformation=[{"width": 20}]))
    assert near(at(transformed, 10, 5), RED) and near(at(transformed, 25, 5), BLUE)

    in_folder = await image(node, sdk_path("base.png", [{"overlay": {"type": "image", "input": "/brand/mark.png",
                                                                       "position": {"focus": "top_left"}}}]))
    assert near(at(in_folder, 5, 5), [0, 200, 0])  # `brand@@mark.png` (the SDK drops x-0 and y-0)

    multiplied = await image(node, overlay(layer_mode="multiply"))  # red × blue = black, at the centre
    assert near(at(multiplied, 200, 150), [0, 0, 0]) and near(at(multiplied, 5, 5), BLUE)

    cut_out = await image(node, overlay(layer_mode="cutout") + "?tr=f-png")
    assert cut_out.hasalpha() and cut_out(200, 150)[3] == 0 and cut_out(5, 5)[3] == 255


async def test_an_image_layer_is_trimmed_when_it_says_t_true_its_dark_parts_kept(node):
    """`t-true` in a layer cuts its transparent margin, not what is dark in it (flattened on black to
    find the border, a logo's black lost with the margin). Without `t` it is not trimmed: ImageKit
    trims an overlay by default, the node does not (docs/transformations.md says why)."""
    trimmed = await image(node, "/tr:l-image,i-padded.png,lx-0,ly-0,t-true,l-end/base.png")
    assert near(at(trimmed, 2, 2), [0, 0, 0]) and near(at(trimmed, 12, 2), RED) and near(at(trimmed, 28, 28), RED)
    assert near(at(trimmed, 32, 32), BLUE)
    for kept in ("/tr:l-image,i-padded.png,lx-0,ly-0,l-end/base.png",
                 "/tr:l-image,i-padded.png,lx-0,ly-0,t-false,l-end/base.png"):
        untrimmed = await image(node, kept)
        assert near(at(untrimmed, 2, 2), BLUE) and near(at(untrimmed, 22, 22), [0, 0, 0])
        assert near(at(untrimmed, 32, 32), RED) and near(at(untrimmed, 52, 52), BLUE)


async def test_a_layer_placed_beyond_the_image_is_moved_to_fit_within_it(node):
    """ImageKit: an `lx`/`ly` beyond the image is adjusted to fit; the layer is not lost."""
    beyond = await image(node, "/tr:l-image,i-logo.png,lx-450,ly-1000,l-end/base.png")  # 50×40 on 400×300
    assert near(at(beyond, 399, 299), RED) and near(at(beyond, 351, 261), RED) and near(at(beyond, 348, 258), BLUE)
    far_beyond = await image(node, "/tr:l-image,i-logo.png,lx-N500,ly-N10,l-end/base.png")
    assert near(at(far_beyond, 0, 300 - 11), RED) and near(at(far_beyond, 49, 300 - 49), RED)
    at_the_edge = await image(node, "/tr:l-image,i-logo.png,lx-400,ly-0,l-end/base.png")  # just outside: moved in
    assert near(at(at_the_edge, 399, 5), RED) and near(at(at_the_edge, 349, 5), BLUE)
    within = await image(node, "/tr:l-image,i-logo.png,lx-380,ly-0,l-end/base.png")  # partly out: clipped
    assert near(at(within, 399, 5), RED) and near(at(within, 379, 5), BLUE)


async def test_a_layer_centred_from_the_far_edges_with_n_lxc_and_lyc(node):
    """`lxc-N100,lyc-N100`: the layer's centre 100 px from the right and the bottom edge."""
    centred = await image(node, "/tr:l-image,i-logo.png,lxc-N100,lyc-N100,l-end/base.png")  # 50×40 on 400×300
    assert near(at(centred, 276, 181), RED) and near(at(centred, 323, 218), RED)  # x 275–325, y 180–220
    assert near(at(centred, 272, 200), BLUE) and near(at(centred, 300, 222), BLUE) and near(at(centred, 100, 100), BLUE)


async def test_positions_are_rounded_and_an_expression_below_0_is_0(node):
    """`lx-10.5` is 11 (as the SDK writes a float); `lx-bw_sub_500` on a 400 px base is 0, not 99 px from the
    right edge (a negative number is an N position)."""
    rounded = await image(node, "/tr:l-image,i-logo.png,lx-10.5,ly-0,l-end/base.png")
    assert near(at(rounded, 10, 5), BLUE) and near(at(rounded, 11, 5), RED) and near(at(rounded, 60, 5), RED)
    below = await image(node, "/tr:l-image,i-logo.png,lx-bw_sub_500,ly-bh_sub_400,l-end/base.png")
    assert near(at(below, 0, 0), RED) and near(at(below, 49, 39), RED) and near(at(below, 50, 5), BLUE)
    assert near(at(below, 300, 5), BLUE) and near(at(below, 5, 280), BLUE)


async def test_canvas_and_text_layers(node):
    canvas = await image(node, sdk_path("base.png", [{"overlay": {
        "type": "solidColor", "color": "00FF00", "position": {"x": 300, "y": 0},
        "transformation": [{"width": 100, "height": 50}]}}]))
    assert near(at(canvas, 350, 25), [0, 255, 0]) and near(at(canvas, 350, 60), BLUE)

    plain = await image(node, "/base.png")
    for position in ("path", "query"):
        text = await image(node, sdk_path("base.png", [{"overlay": {
            "type": "text", "text": "Hello, edge!", "position": {"focus": "top_left"},  # the SDK base64-encodes it
            "transformation": [{"font_size": 40, "font_color": "FFFFFF", "typography": "b"}]}}], position))
        box, outside = text.crop(0, 0, 240, 50), text.crop(0, 100, 240, 50)
        assert (box - plain.crop(0, 0, 240, 50)).abs().max() > 100  # white glyphs on blue
        assert box.extract_band(0).max() > 200  # red channel: white text
        assert (outside - plain.crop(0, 100, 240, 50)).abs().max() == 0

    outlined = await image(node, "/base.png?tr=l-text,i-Hi,fs-60,co-FFFFFF,fol-3_FF0000,fsh-00FF00_6,lfo-top_left,l-end")
    box = outlined.crop(0, 0, 120, 90)
    assert ((box[0] > 200) & (box[1] < 60) & (box[2] < 60)).max() == 255  # red outline
    assert ((box[1] > 200) & (box[0] < 60) & (box[2] < 60)).max() == 255  # green shadow


async def test_a_text_layer_is_aligned_by_ia_inside_its_w_box(node):
    """`w-200`: the text's box is 200 px wide whatever its lines; `ia` places a short line in it."""
    for align, (first, last) in (("left", (0, 60)), ("center", (70, 130)), ("right", (140, 200))):
        drawn, _ = white_ink(await image(node, f"/tr:l-text,i-Hi,fs-30,co-FFFFFF,w-200,ia-{align},lx-0,ly-0,l-end"
                                               f"/base.png"), 240, 60)
        assert drawn and first <= drawn[0] and drawn[-1] < last, (align, drawn[0], drawn[-1])


@pytest.mark.parametrize("least, below", [("fs-1", "fs-0"), ("al-1", "al-0"), ("lh-1", "lh-0"), ("pa-0", None),
                                          ("fol-1_FF0000", "fol-0_FF0000"), ("fsh-FF0000_1", "fsh-FF0000_0")])
async def test_a_text_parameter_s_least_value_is_drawn_and_one_less_is_a_400(node, least, below):
    await image(node, f"/tr:l-text,i-Hi,{least},l-end/base.png")
    if below is not None:
        response = await node.fetch(f"/tr:l-text,i-Hi,{below},l-end/base.png")
        assert response.code == 400 and b"must be an integer from" in response.body, response.body


async def test_a_line_break_in_a_text_layer_draws_a_second_line(node):
    """`ie-` (base64) of `Hi` and a line break, `Hi` again: a control character, but the one a text may hold; the
    white ink reaches twice as far down as the one line's, from the same first row."""
    one, two = [await image(node, f"/tr:l-text,ie-{base64.b64encode(text.encode()).decode()},fs-30,co-FFFFFF,"
                                  f"lx-0,ly-0,l-end/base.png") for text in ("Hi", "Hi\nHi")]
    (_, one_rows), (_, two_rows) = white_ink(one, 200, 150), white_ink(two, 200, 150)
    assert two_rows[0] == one_rows[0] and two_rows[-1] - two_rows[0] > 1.8 * (one_rows[-1] - one_rows[0])


@pytest.mark.parametrize("padding", ["pa-10_40", "pa-10_40_20", "pa-10_30_20_40"])
async def test_a_text_layers_padding_puts_the_text_left_and_top_apart(node, padding):
    """`pa-10_40` (CSS shorthand: 10 top and bottom, 40 left and right) on a text layer with a `bg` at (0, 0): the
    text's first white column is 40 px right of where it is unpadded, its first white row 10 px down. Three values
    are top, left and right, bottom (the left is the second); four top, right, bottom, left."""
    plain, padded = [await image(node, f"/tr:l-text,i-Hi,fs-30,co-FFFFFF,bg-00C800,{pa}lx-0,ly-0,l-end/base.png")
                     for pa in ("", f"{padding},")]
    (x, y), (padded_x, padded_y) = [tuple(ink[0] for ink in white_ink(out, 200, 150)) for out in (plain, padded)]
    assert (padded_x - x, padded_y - y) == (40, 10), (x, y, padded_x, padded_y)
    assert near(at(padded, 2, 2), GREEN) and near(at(padded, x + 39, y + 9), GREEN)


async def test_a_text_shadow_grows_the_text_box_by_its_offset(node):
    """`fsh-FF0000_8`: the glyphs again 8 px right and down, under the text: the layer's box (its `bg`, green, at
    (0, 0) on the blue base) is 8 px wider and taller than without it, so that the shadow of the last glyph and
    of the lowest row is drawn whole, red in the box's last columns."""
    plain, shadowed = [await image(node, f"/tr:l-text,i-Hi,fs-30,co-FFFFFF,bg-00C800,{fsh}lx-0,ly-0,l-end/base.png")
                       for fsh in ("", "fsh-FF0000_8,")]

    def box(out: pyvips.Image) -> tuple[int, int]:
        columns, rows = (out[2] < 100).crop(0, 0, 200, 150).project()
        return (sum(1 for x in range(200) if columns(x, 0)[0]), sum(1 for y in range(150) if rows(0, y)[0]))
    (width, height), (shadowed_width, shadowed_height) = box(plain), box(shadowed)
    assert (shadowed_width - width, shadowed_height - height) == (8, 8), (box(plain), box(shadowed))
    red = (shadowed[0] > 200) & (shadowed[1] < 60) & (shadowed[2] < 60)
    assert red.crop(shadowed_width - 8, 0, 8, shadowed_height).max() == 255  # the shadow's right edge, not cut


async def test_ie_wins_over_i_in_one_layer(node):
    """ImageKit's layer docs: "In case both i and ie are present, i is ignored" (it was a 400 "one i- or
    ie- per layer"); the same key twice stays a 400."""
    both = await image(node, "/tr:l-image,i-missing.png,ie-bG9nby5wbmc=,lx-0,ly-0,l-end/base.png")  # logo.png
    assert near(at(both, 5, 5), RED) and near(at(both, 60, 60), BLUE)
    after = await image(node, "/tr:l-image,ie-bG9nby5wbmc=,i-missing.png,lx-0,ly-0,l-end/base.png")
    assert near(at(after, 5, 5), RED)
    response = await node.fetch("/tr:l-image,i-logo.png,i-padded.png,l-end/base.png")
    assert response.code == 400 and b"one i- or ie- per layer" in response.body


async def test_pg_picks_the_frame_of_an_image_layer(node):
    """ImageKit's layer docs list `pg` for image layers (`l-image,i-layout.psd,pg-3,…,l-end`: a page or
    frame of a multi-page overlay, the first without it); it was a 400 "an output parameter has no
    effect in a layer". anim.gif: 32×32 frames of one colour each."""
    for page, colour in ((None, ANIMATION_COLOURS[0]), (3, ANIMATION_COLOURS[2]), (4, ANIMATION_COLOURS[3])):
        pg = f"pg-{page}," if page else ""
        drawn = await image(node, f"/tr:l-image,i-anim.gif,{pg}w-64,lx-0,ly-0,l-end/base.png")
        assert near(at(drawn, 30, 30), list(colour)) and near(at(drawn, 100, 100), BLUE), page
    response = await node.fetch("/tr:l-image,i-anim.gif,pg-9,l-end/base.png")
    assert (response.code, response.body) == (400, b"invalid transformation: pg-9: the layer's source has 5 page(s)\n")
    response = await node.fetch("/tr:l-image,i-ik_canvas,bg-red,pg-2,l-end/base.png")
    assert response.code == 400 and b"pg-2" in response.body  # a colour block has no pages


async def test_a_colour_block_named_by_a_colour_name_ignores_al(node):
    """ImageKit's layer docs: "If `bg` is set to a standard color name (e.g. `blue`), then the `al` value
    is ignored": `bg-red,al-5` is opaque red (it was drawn at 50 %), `bg-FF0000,al-5` half red."""
    named = await image(node, "/tr:l-image,i-ik_canvas,bg-red,al-5,w-100,h-100,lx-0,ly-0,l-end/base.png")
    assert near(at(named, 50, 50), RED)
    hex_colour = await image(node, "/tr:l-image,i-ik_canvas,bg-FF0000,al-5,w-100,h-100,lx-0,ly-0,l-end/base.png")
    assert all(abs(a - b) <= 10 for a, b in zip(at(hex_colour, 50, 50), (128, 0, 128)))
    plain = await node.fetch("/tr:l-image,i-ik_canvas,bg-red,w-100,h-100,lx-0,ly-0,l-end/base.png")
    again = await node.fetch("/tr:l-image,i-ik_canvas,bg-red,al-5,w-100,h-100,lx-0,ly-0,l-end/base.png")
    assert again.headers["X-Cache"] == "HIT" and again.body == plain.body  # one cache key: al is dropped


async def test_al_is_the_opacity_of_a_colour_block_and_of_a_text_layer(node):
    """`al-2`: 20 % of the layer over the base (red over blue: mostly blue), for a block and for a text's `bg`."""
    block = await image(node, "/tr:l-image,i-ik_canvas,bg-FF0000,al-2,w-100,h-100,lx-0,ly-0,l-end/base.png")
    text = await image(node, "/tr:l-text,i-Hi,fs-30,co-FF0000,bg-FF0000,al-2,lx-0,ly-0,l-end/base.png")
    for out in (block, text):
        assert all(abs(a - b) <= 10 for a, b in zip(at(out, 1, 1), (51, 0, 204))), at(out, 1, 1)


async def test_a_gradient_block_is_a_canvas_with_e_gradient_and_no_bg(node):
    """ImageKit's "gradient blocks" (effects docs): `l-image,i-ik_canvas,e-gradient,…,l-end` with no `bg`
    is the gradient alone, `w`×`h` (the base's size by default), placed as any layer (it was a 400
    "i-ik_canvas needs bg-<colour>")."""
    bar = await image(node, "/tr:l-image,i-ik_canvas,e-gradient-from-FF0000_to-00FF00_ld-top,w-bw,h-bh_div_10,"
                            "ly-N0,l-end/base.png")
    assert (bar.width, bar.height) == (400, 300)
    assert near(at(bar, 200, 150), BLUE) and near(at(bar, 200, 260), BLUE)  # above the 30 px bar: the base
    bottom, top = at(bar, 200, 299), at(bar, 200, 270)  # `ld-top`: from red at the bottom up to green
    assert bottom[0] > 230 > 20 > bottom[1] and top[1] > 230 > 20 > top[0] and bottom[2] == top[2] == 0
    whole = await image(node, "/tr:l-image,i-ik_canvas,e-gradient,l-end/base.png")  # defaults: darker downwards
    assert near(at(whole, 200, 1), BLUE) and at(whole, 200, 298)[2] < 255 - 100
    response = await node.fetch("/tr:l-image,i-ik_canvas,w-10,l-end/base.png")  # neither a colour nor a gradient
    assert response.code == 400 and b"i-ik_canvas needs bg-<colour>" in response.body


async def test_a_colour_block_turns_flips_and_distorts_as_its_first_step_says(node):
    """A block's `rt`, `fl` and `e-distort` were dropped (it has no image to crop or resize, and its first step
    drew only its look): a 100×20 bar at 90° is 20×100, at 45° a diamond-ended bar on transparency, bent
    into an arc its ends lower than its middle."""
    upright = await image(node, "/tr:l-image,i-ik_canvas,bg-red,w-100,h-20,rt-90,lx-0,ly-0,l-end/base.png")
    assert near(at(upright, 10, 90), RED) and near(at(upright, 30, 10), BLUE) and near(at(upright, 90, 10), BLUE)
    turned = await image(node, "/tr:l-image,i-ik_canvas,bg-red,w-100,h-20,rt-45,lx-0,ly-0,l-end/base.png")
    assert near(at(turned, 42, 42), RED) and near(at(turned, 2, 2), BLUE) and near(at(turned, 82, 2), BLUE)
    bent = await image(node, "/tr:l-image,i-ik_canvas,bg-red,w-100,h-20,e-distort-a-90,lx-0,ly-0,l-end/base.png")
    assert near(at(bent, 40, 3), RED) and near(at(bent, 2, 3), BLUE) and near(at(bent, 7, 28), RED)
    cut = await node.fetch("/tr:l-image,i-ik_canvas,bg-red,w-100,h-20,rt-90,lm-cutter,l-end/base.png")
    assert (decode(cut).width, decode(cut).height) == (20, 100)  # the turned block's box


async def test_an_opaque_image_layer_turns_and_bends_on_transparency(node):
    """An overlay without alpha turned or bent without `bg` shows the base in the corners its turn opens, as a
    block and a text do (they had been white, the base image's corners in a format without alpha: a white
    diamond frame around a watermark); its own `bg` still fills them."""
    turned = await image(node, "/tr:l-image,i-brand@@mark.png,w-40,rt-45,lx-0,ly-0,l-end/base.png")
    assert near(at(turned, 28, 28), GREEN) and near(at(turned, 2, 2), BLUE) and near(at(turned, 54, 2), BLUE)
    bent = await image(node, "/tr:l-image,i-brand@@mark.png,w-40,e-distort-a-90,lx-0,ly-0,l-end/base.png")
    assert near(at(bent, 2, 1), BLUE) and near(at(bent, 20, 5), GREEN)
    filled = await image(node, "/tr:l-image,i-brand@@mark.png,w-40,rt-45,bg-red,lx-0,ly-0,l-end/base.png")
    assert near(at(filled, 2, 2), RED) and near(at(filled, 28, 28), GREEN)


async def test_a_text_layer_bends_with_e_distort(node):
    """`e-distort` in a text layer (after its turn): `a-N120` curves the line into a smile, its ends higher
    than its middle, so its white spans more rows than the straight line's; the canonical form keeps it."""
    def white_rows(image: pyvips.Image) -> int:
        rows = ((image[:3] > 235).bandand() / 255).project()[1]
        return sum(1 for y in range(rows.height) if rows(0, y)[0])
    layer = "l-text,i-Smile%20for%20the%20camera,fs-30,co-FFFFFF,lfo-top,{}l-end"
    straight = await image(node, f"/tr:{layer.format('')}/base.png")
    curved = await image(node, f"/tr:{layer.format('e-distort-a-N120,')}/base.png")
    assert white_rows(curved) > 1.5 * white_rows(straight)
    from edge.transform.options import parse_transformation
    written = parse_transformation(layer.format("e-distort-a-N120,rt-10,").replace("%20", " ")).canonical()
    assert written.endswith(",e-distort-a-N120,rt-10,l-end") and parse_transformation(written).canonical() == written


@pytest.fixture
async def photo_node(node_factory, photos, tmp_path):  # noqa: F811
    """A node serving the 12 MP photos from a local folder."""
    return await node_factory(write_config(tmp_path, f"""
[[origins]]
name = "photos"
type = "local"
root = "{photos.folder}"

[[endpoints]]
id = ""
origins = ["photos"]
"""))


async def test_a_12_megapixel_overlay_on_a_12_megapixel_photo(photo_node, photos):  # noqa: F811
    node = photo_node
    # the PNG photo, shrunk to 200 px wide, at the bottom-left corner of the JPEG one at 1000 px:
    # its red marker (the top-left 20 % of its height) lands at (0, 668 - 134)
    out = await image(node, f"/tr:w-1000,l-image,i-{photos.png},w-200,lx-0,ly-N0,l-end/{photos.jpeg}")
    assert (out.width, out.height) == (1000, 668)
    assert near(at(out, 10, 668 - 134 + 10), RED) and not near(at(out, 10, 668 - 134 - 10), RED)


async def test_a_12_megapixel_overlay_turned_shows_the_photo_under_its_corners(photo_node, photos):  # noqa: F811
    """The JPEG photo turned 45° over the PNG one at their top-left corners: where the turn opens the
    layer's corner, the base's red marker shows (it was white)."""
    out = await image(photo_node, f"/tr:w-1000,l-image,i-{photos.jpeg},w-300,rt-45,lx-0,ly-0,l-end/{photos.png}")
    assert (out.width, out.height) == (1000, 668)
    assert near(at(out, 5, 5), RED) and not near(at(out, 5, 5), [255, 255, 255])


async def test_layers_sized_and_placed_by_the_base_on_a_12_megapixel_photo(photo_node, photos):  # noqa: F811
    """ImageKit's layer variables: `bw`, `bh`, `bar` are the base's size (the step's result the layer
    is drawn on), in a layer's `w`/`h`/`ar`, its position and a text's `fs`; in a position, `cw`/`ch`
    are the layer as drawn. One URL makes a watermark of the same share of any size."""
    node = photo_node
    mark = f"l-image,i-{photos.png},w-bw_mul_0.25,lx-bw_sub_cw,ly-bh_mul_0.1,l-end"  # a quarter of the width, flush right
    for width in (800, 2000):
        out = await image(node, f"/tr:w-{width},{mark}/{photos.jpeg}")
        height = round(width * 2832 / 4240)
        side = round(width * 0.25)  # the layer: the PNG photo at a quarter of the base's width
        marker = round(side * 2832 / 4240 * 0.2)  # its red marker: the top-left 20 % of its height
        left, top = width - side, round(height * 0.1)
        assert (out.width, out.height) == (width, height)
        assert near(at(out, left + marker // 2, top + marker // 2), RED), width
        assert not near(at(out, left - 3, top + marker // 2), RED) and not near(at(out, left + marker // 2, top - 3), RED)

    # a text sized by the base's height: twice the base, twice the text
    def text_height(out: pyvips.Image) -> int:
        corner = out.crop(out.width // 2, out.height // 2, out.width // 2, out.height // 2)  # far from the marker
        ink = (corner[0] > 200) & (corner[1] < 60) & (corner[2] < 60)  # the red text, on its black box
        rows = [y for y in range(corner.height) if ink.crop(0, y, corner.width, 1).max() == 255]
        return rows[-1] - rows[0] + 1
    small, large = [await image(node, f"/tr:w-{w},l-text,i-EDGE,fs-bh_div_8,co-FF0000,bg-000000,lfo-bottom_right,"
                                      f"l-end/{photos.jpeg}") for w in (600, 1200)]
    assert 1.8 < text_height(large) / text_height(small) < 2.2


@pytest.mark.parametrize("tr, message", [
    ("w-bw_div_2", "w-bw_div_2: bw, bh and bar are the size of a layer's base: only within a layer"),
    ("w-iw_sub_iw", "w-iw_sub_iw: evaluates to 0, not above 0"),
    ("cm-extract,w-10,h-10,x-iw_sub_iw_sub_5", "x-iw_sub_iw_sub_5: evaluates to -5, below 0"),
    ("l-text,i-Hi,fs-iw_div_2,l-end", "fs-iw_div_2: iw is not known here"),
    ("l-image,i-logo.png,lx-bw_add_abc,l-end", "lx-bw_add_abc: must be an integer of pixels up to 65500, "
                                               "N-prefixed to count from the far edge, or an expression"),
])
async def test_layer_expressions_that_cannot_be_evaluated_are_400s_naming_them(node, tr, message):
    response = await node.fetch(f"/tr:{tr}/base.png")
    assert response.code == 400 and message in response.body.decode(), response.body


@pytest.mark.parametrize("position", ["lx-65500", "ly-N65500", "lxc-65500.4"])
async def test_a_layer_position_of_65500_is_drawn_and_one_more_is_a_400(node, position):
    """65500 px is the largest position: a layer that far off its base is moved in (drawn), 65501 is refused."""
    await image(node, f"/tr:l-image,i-logo.png,{position},l-end/base.png")
    over = position.replace("65500", "65501")
    response = await node.fetch(f"/tr:l-image,i-logo.png,{over},l-end/base.png")
    assert response.code == 400 and b"must be an integer of pixels up to 65500" in response.body, response.body


async def test_what_imagekits_overlay_docs_write_works(node):
    """Forms from ImageKit's overlay and expression docs (helper 42's probe): rounded colour blocks,
    a canvas's own opacity over `al`, text flips as the SDK writes them, `fo-auto` in a layer, a border
    expression that comes to nothing, positions the SDK writes as floats, `fs` past 500."""
    rounded = await image(node, "/tr:l-image,i-ik_canvas,bg-FF0000,w-200,h-60,r-30,lx-0,ly-0,l-end/base.png")
    assert near(at(rounded, 2, 2), BLUE) and near(at(rounded, 100, 30), RED)  # the corner shows the base
    circle = await image(node, "/tr:l-image,i-ik_canvas,bg-FF0000,w-100,h-100,r-max,lx-0,ly-0,l-end/base.png")
    assert near(at(circle, 5, 5), BLUE) and near(at(circle, 50, 50), RED)
    own_opacity = await image(node, "/tr:l-image,i-ik_canvas,bg-FF000050,al-9,w-100,h-100,lx-0,ly-0,l-end/base.png")
    assert all(abs(a - b) <= 10 for a, b in zip(at(own_opacity, 50, 50), (128, 0, 128)))  # 50 %, not 45 %
    with_q, without = [await node.fetch(f"/tr:l-image,i-logo.png,w-20,{q}lx-0,ly-0,l-end/base.png") for q in ("q-50,", "")]
    assert with_q.code == 200 and with_q.body == without.body  # `q` in a layer: accepted, and nothing to do
    assert (await node.fetch("/tr:l-image,i-logo.png,q-500,l-end/base.png")).code == 400
    for flip in ("v_h", "h_v"):
        assert (await node.fetch(f"/tr:l-text,i-Hi,fl-{flip},l-end/base.png")).code == 200
    auto = await image(node, "/tr:l-image,i-logo.png,w-20,h-20,fo-auto,lx-0,ly-0,l-end/base.png")
    assert near(at(auto, 10, 10), RED)
    assert (await image(node, "/tr:b-ch_mod_5_FFFF00/base.png")).width == 400  # 300 mod 5 = 0: no border
    assert near(at(await image(node, "/tr:l-image,i-logo.png,lx-10.5,ly-0,l-end/base.png"), 12, 5), RED)
    big = await node.fetch("/tr:w-4000,l-text,i-A,fs-bh_div_2,co-FF0000,l-end/base.png")  # 1500 px: drawn at 500
    assert big.code == 200

    def box_width(out: pyvips.Image) -> int:  # the green text box, from the top-left corner
        row = out.crop(0, 2, out.width, 1)
        return next(x for x in range(out.width) if not near(at(row, x, 0), GREEN))
    padded = [await image(node, f"/tr:w-{w},l-text,i-Hi,fs-20,co-FFFFFF,bg-00C800,pa-bw_mul_0.05,lfo-top_left,"
                                f"l-end/base.png") for w in (200, 400)]
    assert box_width(padded[1]) - box_width(padded[0]) == 2 * (20 - 10)  # 5 % of the base on each side


async def test_an_fs_expression_past_500_is_drawn_at_500(node):
    """`fs-bh_div_2` of a 3000 px base is 1500: drawn at the largest `fs`, 500, as `fs-500` is."""
    big, largest = [await image(node, f"/tr:w-4000,l-text,i-A,fs-{fs},co-FF0000,l-end/base.png")
                    for fs in ("bh_div_2", "500")]
    assert (big.width, big.height) == (4000, 3000) and (big - largest).abs().max() == 0
    red = (big[0] > 200) & (big[2] < 60)
    assert red.max() == 255 and red.crop(0, 0, 4000, 1000).max() == 0  # a 500 px glyph, centred: none up there


async def test_layers_nest_three_deep_as_imagekit_draws_them(node, origin):
    """A badge with its text centred in it; a logo with a mark (fetched too) in its corner; `bw` in a
    nested layer is the layer it is drawn on. Four deep is a 400 naming the layer."""
    badge = await image(node, "/tr:l-image,i-ik_canvas,bg-FF0000,w-200,h-60,lx-0,ly-0,"
                              "l-image,i-ik_canvas,bg-00C800,w-bw_div_2,h-bh_div_2,l-end,l-end/base.png")
    assert near(at(badge, 5, 5), RED) and near(at(badge, 100, 30), GREEN) and near(at(badge, 40, 30), RED)
    assert near(at(badge, 100, 70), BLUE)  # below the badge: the base
    marked = await image(node, "/tr:l-image,i-logo.png,lx-10,ly-10,"
                               "l-image,i-brand@@mark.png,w-10,h-10,lfo-top_left,l-end,l-end/base.png")
    assert near(at(marked, 14, 14), GREEN) and near(at(marked, 40, 40), RED) and origin.requests["brand/mark.png"] == 1
    text = await image(node, "/tr:l-image,i-ik_canvas,bg-000000,w-160,h-80,lfo-top_left,"
                             "l-text,i-SALE,fs-40,co-FFFFFF,l-end,l-end/base.png")
    box = text.crop(0, 0, 160, 80)
    assert ((box[0] > 200) & (box[1] > 200) & (box[2] > 200)).max() == 255 and near(at(text, 2, 2), [0, 0, 0])
    deep = "l-image,i-logo.png," * 4 + "l-end," * 4
    response = await node.fetch(f"/tr:{deep.rstrip(',')}/base.png")
    assert (response.code, response.body) == (400, b"invalid transformation: l-image: layers nest 3 deep at most\n")


async def test_a_nested_layer_in_a_later_step_of_its_layers_chain(node):
    """ImageKit's expression docs nest a layer in the second step of an image layer's own chain
    (`l-image,i-a,w-bw_div_3:l-image,i-b,…,l-end,l-end`), and a nested layer may close before a step of
    its layer's chain (`…,l-end:rt-180,l-end`): both parse as one outer layer (they were a 400 "no l-end
    closes this layer")."""
    second_step = await image(node, "/tr:l-image,i-logo.png,w-bw_div_2,lx-0,ly-0:"
                                    "l-image,i-brand@@mark.png,w-bw_div_10,lfo-top_left,l-end,l-end/base.png")
    # the logo 200×160 at the corner, the mark 20×20 (a tenth of the resized logo) in the logo's corner
    assert near(at(second_step, 10, 10), GREEN) and near(at(second_step, 100, 100), RED)
    assert near(at(second_step, 300, 250), BLUE)
    then_turned = await image(node, "/tr:l-image,i-logo.png,lx-0,ly-0,"
                                    "l-image,i-brand@@mark.png,w-10,h-10,lfo-top_left,l-end:rt-180,l-end/base.png")
    assert near(at(then_turned, 45, 35), GREEN) and near(at(then_turned, 5, 5), RED)  # the mark turned with the logo


async def test_many_outputs_fetch_the_overlay_once(node, origin):
    responses = await asyncio.gather(*(node.fetch(f"/tr:w-{100 + i},l-image,i-logo.png,l-end/base.png")
                                       for i in range(12)))
    assert [r.code for r in responses] == [200] * 12
    assert origin.requests["logo.png"] == 1


async def test_a_changed_overlay_makes_a_new_output(node, origin):
    url = "/tr:l-image,i-logo.png,lx-0,ly-0,l-end/base.png"
    assert near(at(await image(node, url), 5, 5), RED)
    origin.files["logo.png"] = solid(50, 40, GREEN).pngsave_buffer()
    assert near(at(await image(node, url), 5, 5), RED)  # still fresh
    node.node.clock = lambda: time.time() + 10 * node.config.cache.original_ttl  # past every freshness
    assert near(at(await image(node, url), 5, 5), GREEN)  # revalidated: the base is unchanged, the overlay not


async def test_the_endpoint_watermark(node):
    marked, plain = await image(node, "/wm/base.png"), await image(node, "/base.png")
    assert near(at(marked, 395, 295), RED) and near(at(plain, 395, 295), BLUE)
    assert near(at(await image(node, "/wm/tr:w-200/base.png"), 195, 145), RED)  # on the result, whatever its size


async def test_orig_true_on_a_watermarked_endpoint_is_the_original_with_its_watermark(node, origin):
    """The watermark is on every image the endpoint serves: `orig-true` had served the original's bytes
    without it, to anyone who added it to a URL (in the path or the query)."""
    plain = await node.fetch("/wm/base.png")
    for path in ("/wm/tr:orig-true/base.png", "/wm/base.png?tr=orig-true", "/wm/tr:w-20,orig-true/base.png"):
        response = await node.fetch(path)
        assert response.code == 200, (path, response.code, response.body[:200])
        marked = decode(response)
        assert (marked.width, marked.height) == (400, 300) and response.headers["Content-Type"] == "image/png"
        assert near(at(marked, 395, 295), RED) and near(at(marked, 5, 5), BLUE), path
        assert response.body == plain.body  # the plain URL's image: one output, not another to make
    assert origin.requests["base.png"] == 1
    untouched = await node.fetch("/tr:orig-true/base.png")  # the endpoint without a watermark: the stored bytes
    assert untouched.body == files()["base.png"]


async def test_a_watermark_image_no_origin_has_is_a_502_naming_the_watermark(node, origin):
    """The endpoint's config is wrong, not the client's URL: every image of the endpoint had been a 400 naming
    `i-logo.png`, a parameter the client never sent. Not cached in front; the other endpoints are unaffected."""
    del origin.files["logo.png"]
    for path in ("/wm/base.png", "/wm/tr:w-200/base.png"):
        response = await node.fetch(path)
        assert (response.code, response.body) == (502, b"watermark: i-logo.png: no origin of this endpoint has it\n")
        assert (response.headers["X-Edge-Error"], response.headers["Cache-Control"]) == ("watermark_missing",
                                                                                           "no-store")
    assert (await node.fetch("/base.png")).code == 200


def test_a_watermark_that_is_not_only_layers_is_refused_at_startup(tmp_path):
    for text, message in (("w-100", "expected layers only"), ("l-image,i-logo.png", "no l-end")):
        config = web_config("http://127.0.0.1:9", after=WATERMARKED.replace(
            "l-image,i-logo.png,w-40,lx-N0,ly-N0,l-end", text))
        with pytest.raises(ConfigError, match=message):
            load_config(write_config(tmp_path, config), load_plugins())


@pytest.mark.parametrize("transformation, body", [
    ("l-image,i-logo.png,w-10", "l-image: no l-end closes this layer"),
    ("w-10,l-end", "l-end: l-end without a layer"),
    ("l-image,w-10,l-end", "l-image: needs i-<input>"),
    ("l-image,i-missing.png,l-end", "i-missing.png: no such image on this endpoint"),
    ("l-image,i-page.png,l-end", "i-page.png: not an image the node can decode"),
    ("l-image,i-logo.png,lx-abc,l-end", "lx-abc: must be an integer"),
    ("l-image,i-logo.png,lm-displace,l-end", "lm-displace: a displacement map is not supported"),
    ("l-image,i-logo.png,f-png,l-end", "f-png: an output parameter has no effect in a layer"),
    ("w-300,l-image,i-logo.png,w-auto,l-end", "w-auto: a layer's size cannot come from client hints"),  # was a 500
    ("l-image,i-logo.png,dpr-auto,w-20,l-end", "dpr-auto: a layer's size cannot come from client hints"),
    ("l-text,i-hi,fs-501,l-end", "fs-501: must be an integer from 1 to 500"),
    ("l-text,i-hi,ff-Nope,l-end", "invalid transformation: ff-Nope: no such font"),
    ("l-text,i-" + "x" * 501 + ",l-end", ": at most 500 characters"),
    ("l-image,i-ik_canvas,w-10,l-end", "i-ik_canvas needs bg"),
    # accepted and never drawn, where an image layer or a colour block draws those it holds
    ("l-text,i-Outer,fs-80,l-image,i-ik_canvas,bg-00FF00,w-50,h-50,l-end,l-end",
     "invalid transformation: l-image: a text layer cannot hold layers (an image layer or a colour block can)\n"),
    ("l-text,i-Outer,l-text,i-INNER,l-end,l-end", "l-text: a text layer cannot hold layers"),
    (",".join(["l-image,i-ik_canvas,bg-red,l-end"] * 11), "tr: more than 10 layers"),
    ("l-video,i-clip.mp4,l-end", "l-video: not supported"),
    (",".join(["l-text,i-" + "x" * 500 + ",fs-500,l-end"] * 3), "transformation too costly"),
    ("l-text,i-" + "xy%20" * 160 + ",fs-500,l-end", "l-text: the text is more than 8192 px a side"),
    # one line of about 11 500 px without `w`: it had been wrapped at the output limit into two, a 200
    ("l-text,i-" + "xy%20" * 160 + ",fs-40,l-end",
     "invalid transformation: l-text: the text is more than 8192 px a side: a smaller fs or less text\n"),
])
async def test_bad_layers_are_400s_naming_the_parameter(node, transformation, body):
    response = await node.fetch(f"/base.png?tr={transformation}")
    assert response.code == 400
    assert body in response.body.decode()


async def test_a_render_refused_400_is_answered_so_again_without_the_work(node_factory, origin, tmp_path):
    """A text too large for the output limit is found by drawing it (0.3 s of CPU at fs-500): each request had
    drawn it again, nothing cached, so a stream of one such URL took the cores from every other miss. Now the
    refusal is remembered: asked again, the URL is answered 400 before its original is even fetched."""
    node = await node_factory(write_config(tmp_path, web_config(origin.url, before=EVERY_MISS_TO_ORIGIN)))
    path = "/base.png?tr=l-text,i-" + "xy%20" * 160 + ",fs-500,l-end"
    answers = [await node.fetch(path) for _ in range(3)]
    assert {(answer.code, answer.body, answer.headers["X-Edge-Error"]) for answer in answers} == {
        (400, b"invalid transformation: l-text: the text is more than 8192 px a side: a smaller fs or less text\n",
         "invalid_transformation")}  # the same kind when remembered
    assert origin.requests["base.png"] == 1


async def test_a_font_imagekit_names_by_its_media_library_path_is_declared_by_that_path(node_factory, origin,
                                                                                        tmp_path):
    """`ff-fonts@@Poppins-Regular_Q15GrYWmL.ttf` (ImageKit's custom font, uploaded to its media library): no
    `[fonts]` name could hold the path, so every such URL was a 400."""
    shipped = SHIPPED / "DejaVuSans.ttf"
    node = await node_factory(write_config(tmp_path, web_config(
        origin.url, f'[fonts]\n"fonts/Poppins-Regular_Q15GrYWmL.ttf" = "{shipped}"\n')))
    drawn = await image(node, "/base.png?tr=l-text,i-Hi,fs-40,ff-fonts@@Poppins-Regular_Q15GrYWmL.ttf,l-end")
    default = await image(node, "/base.png?tr=l-text,i-Hi,fs-40,l-end")
    assert drawn.width == default.width and (drawn - default).abs().max() == 0  # the same font file, so the same ink
    assert (drawn - await image(node, "/base.png")).abs().max() > 0  # and ink there is


SYSTEM_DEJAVU = Path("/usr/share/fonts/truetype/dejavu")


@pytest.mark.skipif(not (SYSTEM_DEJAVU / "DejaVuSans-Bold.ttf").exists(), reason="no DejaVu Sans Bold installed "
                    "(Debian: apt-get install fonts-dejavu-core)")
async def test_a_font_draws_its_own_file_face_whatever_of_its_family_was_drawn_before(node_factory, origin, tmp_path):
    """Pango was given a file and its family's name, then asked fontconfig for that family's regular face: a bold
    file drew the regular weight, or the bold once it alone of its family had been drawn, and that was cached (a
    brand's `Brand = Poppins-Bold.ttf` next to `Body = Poppins-Regular.ttf`; fonts probe). Both orders, one node."""
    faces = {"Book": "DejaVuSans.ttf", "Bold": "DejaVuSans-Bold.ttf", "CondObl": "DejaVuSansCondensed-Oblique.ttf",
             "XLight": "DejaVuSans-ExtraLight.ttf"}
    fonts = "".join(f'{name} = "{SYSTEM_DEJAVU / file}"\n' for name, file in faces.items())
    node = await node_factory(write_config(tmp_path, web_config(origin.url, f"[fonts]\n{fonts}")))

    async def ink_width(font: str, y: int) -> int:  # `y` makes each URL a new one, drawn rather than cached
        columns, _ = white_ink(await image(node, f"/base.png?tr=l-text,i-Hello,fs-100,co-FFFFFF,lx-0,ly-{y},"
                                                  f"ff-{font},l-end"), 400, 300)
        return columns[-1] - columns[0] + 1
    widths = {font: await ink_width(font, 0) for font in ("Book", "Bold", "CondObl", "XLight")}
    widths_reversed = {font: await ink_width(font, 1) for font in ("XLight", "CondObl", "Bold", "Book")}
    assert widths == widths_reversed == {"Book": 238, "Bold": 275, "CondObl": 221, "XLight": 234}, widths_reversed
    assert [read_font(SYSTEM_DEJAVU / file).face for file in faces.values()] == [
        "", "Bold", "Semi-Condensed Italic", "Ultra-Light"]


def test_fonts_are_read_at_startup(tmp_path):
    shipped = SHIPPED / "DejaVuSans.ttf"
    (tmp_path / "not-a-font.ttf").write_bytes(b"<html>")
    good = load_config(write_config(tmp_path, web_config("http://127.0.0.1:9", f'[fonts]\nBrand = "{shipped}"\n')),
                       load_plugins())
    assert good.fonts["Brand"].family == "DejaVu Sans" and "DejaVuSans" in good.fonts
    with pytest.raises(ConfigError, match="Brand.*not a TrueType/OpenType font"):
        load_config(write_config(tmp_path, web_config("http://127.0.0.1:9", '[fonts]\nBrand = "not-a-font.ttf"\n')),
                    load_plugins())


@pytest.mark.parametrize("name", ["Brand@Bold", "/Brand", "Brand Bold"])
def test_a_font_name_no_url_could_ask_for_is_refused(tmp_path, name):
    """A URL writes a font's `/` as `@@` (`ff-fonts@@Brand.ttf`): a name holding `@` could never be asked for."""
    text = web_config("http://127.0.0.1:9", f'[fonts]\n"{name}" = "{SHIPPED / "DejaVuSans.ttf"}"\n')
    with pytest.raises(ConfigError, match=re.escape(f"[fonts] {name}: a font name is letters, digits")):
        load_config(write_config(tmp_path, text), load_plugins())


def font_with_names(*names: tuple[int, int, bytes], os2: bytes = b"") -> bytes:
    """An sfnt of two tables, `OS/2` (`os2`, empty by default) and last `name`, whose records are (platform, name ID,
    string)."""
    records = strings = b""
    for platform, name_id, string in names:
        records += struct.pack(">HHHHHH", platform, 0, 0, name_id, len(string), len(strings))
        strings += string
    name = struct.pack(">HHH", 0, len(names), 6 + len(records)) + records + strings
    directory = struct.pack(">LHHHH", 0x00010000, 2, 32, 1, 0)
    return directory + struct.pack(">4sLLL", b"OS/2", 0, 12 + 2 * 16, len(os2)) + struct.pack(
        ">4sLLL", b"name", 0, 12 + 2 * 16 + len(os2), len(name)) + os2 + name


@pytest.mark.parametrize("weight, width, selection, face", [
    (400, 5, 0x40, ""), (700, 5, 0x20, "Bold"), (7, 5, 0, "Bold"),  # an old font's 1-9 weight scale
    (450, 3, 0x01, "Condensed Italic"), (250, 7, 0x201, "Ultra-Light Expanded Oblique"), (950, 0, 0, "Heavy"),
])
def test_a_fonts_face_is_named_from_its_os2_table_in_pangos_words(tmp_path, weight, width, selection, face):
    """usWeightClass as Pango's nearest weight, usWidthClass as its stretch, fsSelection's oblique (bit 9) before
    its italic (bit 0): what fontconfig is asked for, so that a family's bold file draws bold."""
    os2 = struct.pack(">HhHH", 4, 0, weight, width).ljust(62, b"\0") + struct.pack(">H", selection).ljust(34, b"\0")
    path = tmp_path / "brand.ttf"
    path.write_bytes(font_with_names((3, 1, "Brand".encode("utf-16-be")), os2=os2))
    assert read_font(path).face == face
    assert read_font(path).description(40) == " ".join(word for word in ("Brand,", face, "40") if word)
    path.write_bytes(font_with_names((3, 1, "Brand".encode("utf-16-be")), os2=os2[:63]))  # no fsSelection
    assert read_font(path).face == ""


@pytest.mark.parametrize("names, family", [
    ([(0, 1, "Brand Sans".encode("utf-16-be"))], "Brand Sans"),  # Unicode platform only, as some fonts have
    ([(1, 1, b"Brand Mac"), (3, 2, "Regular".encode("utf-16-be")), (3, 1, "Brand Win".encode("utf-16-be"))],
     "Brand Win"),  # the Macintosh one is Mac Roman, not UTF-16; a subfamily (ID 2) is no family
    ([(1, 1, b"Brand Mac"), (3, 4, "Brand Win Regular".encode("utf-16-be"))], None),
])
def test_a_fonts_family_is_its_unicode_or_windows_name_1_in_a_name_table_anywhere(tmp_path, names, family):
    """The family Pango is given is name ID 1 of the Unicode or Windows platform, in a `name` table that may be the
    file's last; a font without one is refused (a mutation audit: reading the Windows platform alone, skipping the
    last table, and a font without a family read as "", each survived: the shipped font is none of those)."""
    path = tmp_path / "brand.ttf"
    path.write_bytes(font_with_names(*names))
    if family is None:
        with pytest.raises(ValueError, match="no family name"):
            read_font(path)
    else:
        assert read_font(path).family == family


def test_a_font_that_is_no_regular_file_or_too_large_is_refused_at_once(tmp_path, monkeypatch):
    """A FIFO held `check-config`, `serve` and the supervisor's reload until a writer came (no SIGTERM heeded, no
    worker replaced), and `/dev/zero` was read until memory ran out: `[fonts]` is read at every reload."""
    fifo = tmp_path / "font.ttf"
    os.mkfifo(fifo)
    monkeypatch.setattr("edge.transform.fonts.MAX_FONT_BYTES", 100_000)
    large = tmp_path / "large.ttf"
    large.write_bytes(b"\0" * 100_001)
    for path, message in ((fifo, "not a regular file"), ("/dev/zero", "not a regular file"),
                          (large, "larger than 100000 bytes")):
        with pytest.raises(ConfigError) as error:
            load_config(write_config(tmp_path, web_config("http://127.0.0.1:9", f'[fonts]\nBrand = "{path}"\n')),
                        load_plugins())
        assert str(error.value).endswith(f"[fonts] Brand: {path}: {message}"), str(error.value)


def test_spellings_of_one_layer_share_one_cache_key():
    from edge.transform.options import parse_transformation

    def key(text: str) -> str:
        return parse_transformation(text).canonical()
    assert key("l-image,i-a@@logo.png,lx--20,w-50,l-end") == key("l-image,ie-YS9sb2dvLnBuZw==,w-50,lx-N20,l-end")
    assert key("l-text,i-Hi there,co-red,l-end") == key("l-text,ie-SGkgdGhlcmU=,co-FF0000,l-end")
    assert key("l-image,i-logo.png,ly-N0,l-end") != key("l-image,i-logo.png,ly-0,l-end")
    chained = key("w-300,l-image,i-logo.png,w-50:rt-90,l-end:e-grayscale")  # `:` inside the layer stays there
    assert chained == "w-300,l-image,i-logo.png,w-50:rt-90,l-end:e-grayscale" and key(chained) == chained
