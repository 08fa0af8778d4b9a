"""Awkward real-world inputs through a real node: every combination answers 200, 400 or 422 (never a
500), and the images that can be served come out right (upright, sRGB, 8-bit, alpha kept)."""

import pyvips
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.config import Defaults, Limits
from edge.errors import EdgeError, InvalidTransformation
from edge.transform.formats import plan_format
from edge.transform.hints import negotiate
from edge.transform.options import parse_transformation
from edge.transform.render import render_image
from tests.test_parser_properties import NAMED, steps_as_dicts, text_of

from tests import imagecorpus as corpus
from tests.assets import close, pixel
from tests.nodes import decode, local_config, write_config

TRANSFORMATIONS = ["", "w-50", "w-30,h-30,fo-auto", "w-40,h-20,cm-pad_resize,bg-red:rt-90", "r-10,e-grayscale",
                   "t-true,e-contrast,e-sharpen", "cm-extract,w-8,h-8,fo-bottom_right,b-2_blue,o-50"]
FORMATS = ["", "f-jpg", "f-png", "f-webp", "f-avif", "f-gif", "f-auto"]
INPUTS = {
    **{f"exif-{n}.jpg": corpus.exif_oriented_jpeg(n) for n in range(1, 9)},
    "cmyk.jpg": corpus.cmyk_jpeg(),
    "cmyk-profile.jpg": corpus.cmyk_jpeg(embed_profile=True),
    "p3.jpg": corpus.icc_profile_jpeg(),
    "16bit.png": corpus.png16(),
    "palette.png": corpus.palette_png_with_alpha(),
    "grey.jpg": corpus.grayscale_jpeg(),
    "anim.gif": corpus.animated_gif(),
    "anim.webp": corpus.animated_webp(),
    "truncated.jpg": corpus.truncated_jpeg(),
    "bomb.png": corpus.decompression_bomb_png(),
    "html.jpg": corpus.not_an_image(),
}
EXPECTED_STATUS = {"truncated.jpg": 422, "bomb.png": 400, "html.jpg": 422}


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    for name, body in INPUTS.items():
        (root / name).write_bytes(body)
    return root


@pytest.fixture
async def corpus_node(node_factory, corpus_root, tmp_path):
    return await node_factory(write_config(tmp_path, local_config(corpus_root)))


@pytest.mark.parametrize("name", sorted(INPUTS))
async def test_every_transformation_and_format_answers_without_a_500(corpus_node, name):
    expected = EXPECTED_STATUS.get(name, 200)
    for tr in TRANSFORMATIONS:
        for fmt in FORMATS:
            transformation = ",".join(filter(None, (tr, fmt)))
            path = f"/tr:{transformation}/{name}" if transformation else f"/{name}"
            response = await corpus_node.fetch(path, headers={"Accept": "image/avif,image/webp,*/*"})
            assert response.code == expected, (path, response.code, response.body[:100])
            if expected == 200:
                image = decode(response)
                assert image.format == "uchar" and image.width > 0, path
                assert not image.get_typeof("exif-data") and not image.get_typeof("icc-profile-data"), path
            else:
                assert response.headers["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize("orientation", range(1, 9))
async def test_exif_orientation_is_applied(corpus_node, orientation):
    response = await corpus_node.fetch(f"/tr:f-png/exif-{orientation}.jpg")
    image = decode(response)
    assert (image.width, image.height) == corpus.EXPECTED_ORIENTED_SIZE
    assert close(pixel(image, 4, 4), corpus.RED) and close(pixel(image, 60, 4), corpus.GREEN)
    assert close(pixel(image, 32, 28), corpus.BLUE)


@pytest.mark.parametrize("name", ["cmyk.jpg", "cmyk-profile.jpg"])
async def test_cmyk_becomes_srgb(corpus_node, name):
    response = await corpus_node.fetch(f"/tr:f-png/{name}")
    image = decode(response)
    reference = pyvips.Image.new_from_buffer(INPUTS[name], "").icc_transform("srgb")  # libvips' own conversion
    assert image.interpretation == "srgb" and image.bands == 3
    assert (image - reference).abs().avg() < 3


async def test_16_bit_png_becomes_8_bit_keeping_the_range(corpus_node):
    response = await corpus_node.fetch("/tr:f-png/16bit.png")
    image = decode(response)
    assert image.format == "uchar" and (image.width, image.height) == (64, 48)
    assert pixel(image, 0, 0) == (0, 0, 0) and pixel(image, 63, 47) == (255, 255, 255)


async def test_palette_png_keeps_its_transparency(corpus_node):
    response = await corpus_node.fetch("/tr:w-32/palette.png")
    image = decode(response)
    assert response.headers["Content-Type"] == "image/png" and image.hasalpha()
    assert pixel(image, 0, 0)[3] == 0 and close(pixel(image, 16, 16), (230, 80, 20, 255))


async def test_greyscale_stays_greyscale_in_jpeg(corpus_node):
    response = await corpus_node.fetch("/tr:w-48/grey.jpg")
    image = decode(response)
    assert (image.width, image.height, image.bands) == (48, 32, 1)


@pytest.mark.parametrize("name", ["anim.gif", "anim.webp"])
async def test_animations_keep_every_frame(corpus_node, name):
    response = await corpus_node.fetch(f"/tr:w-20,rt-90/{name}")
    image = decode(response, all_frames=True)
    assert image.get("n-pages") == 5 and image.get("page-height") == 20 and image.width == 20
    for frame, colour in enumerate(corpus.ANIMATION_COLOURS[:5]):
        assert close(pixel(image, 10, frame * 20 + 10)[:3], colour, 20)


TINY_AND_AWKWARD = [
    pyvips.Image.black(1, 1).copy(interpretation="srgb").pngsave_buffer(),
    corpus.quadrants_png(7, 3),
    corpus.png_with_alpha(5, 9),
    corpus.animated_gif(3),
    corpus.grayscale_jpeg(),
    corpus.cmyk_jpeg(),
    corpus.exif_oriented_jpeg(7),
    corpus.palette_png_with_alpha(),
    corpus.png16(),
]


@settings(max_examples=120, deadline=None)
@given(steps_as_dicts.map(text_of), st.sampled_from(TINY_AND_AWKWARD), st.sampled_from(["image/avif,image/webp", "*/*"]),
       st.sampled_from([{}, {"Sec-CH-Width": "250", "DPR": "2.5"}]))
def test_any_valid_transformation_of_a_good_image_renders_or_is_a_400(text, body, accept, hints):
    """The renderer the node runs, on generated transformations: a readable image never ends in a 422
    (a libvips error we failed to foresee) nor in an exception that is not an `EdgeError` (a 500)."""
    try:
        transformation = parse_transformation(text, named=NAMED)
    except InvalidTransformation:
        return
    if transformation.client_hints:  # as the pipeline resolves them before rendering
        transformation = negotiate(transformation, hints, 1500).transformation
    planned, _ = plan_format(transformation.output_format, "image.png", accept)
    try:
        render_image(body, transformation, planned, Defaults(), Limits(max_output_side=1500))
    except EdgeError as error:
        assert error.status == 400, (text, error.message)
