"""Randomly damaged originals (bits flipped, bytes set, inserted, repeated, the file cut) of every format the
node decodes — baseline and progressive JPEG, PNG with alpha, 16-bit and palette PNG, WebP still and
animated, GIF, AVIF, TIFF, HEIC (when pillow-heif, of the test extra, can make one) — read from a `local` origin by a running node (`edge serve` in a child
process) under a transformation each: an image, 400 or 422, within the render deadline and a margin,
and the worker never dies (a decoder crash would reset the connection). The sources are 200 px: the
decoders' paths are the same at any size, and small files give the fuzz its reach (real-size photos
are `tests/test_real_size.py`'s and `tests/test_hostile_input.py`'s)."""

import importlib.util
import itertools

import pytest
import pyvips
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzzing import decoded, exchange, fuzz_settings, one_worker
from tests.nodes import SAMPLES, local_config, write_config
from tests.photos import heic_bytes

EXAMPLES = 150
RENDER_TIMEOUT = 3.0
BOUND = RENDER_TIMEOUT + 12
STATUSES = {200, 400, 422}
TRANSFORMATIONS = ["w-100", "w-50,h-50", "rt-90", "fl-v", "w-80,f-webp", "w-80,f-avif", "w-80,f-png", "orig-true",
                   "w-60,f-gif", "e-grayscale,w-70", "cm-extract,x-10,y-10,w-30,h-30"]


def sources() -> dict[str, bytes]:
    image = pyvips.Image.new_from_file(str(SAMPLES / "astronaut.jpg")).thumbnail_image(200)
    frames = pyvips.Image.arrayjoin([image.crop(0, 0, 100, 100), image.crop(100, 100, 100, 100)], across=1).copy()
    frames.set_type(pyvips.GValue.gint_type, "page-height", 100)
    heic = {"heic": heic_bytes(image)} if importlib.util.find_spec("pillow_heif") else {}
    return heic | {
        "jpeg": image.jpegsave_buffer(Q=80), "progressive jpeg": image.jpegsave_buffer(interlace=True),
        "png": image.bandjoin(255).pngsave_buffer(), "16-bit png": image.cast("ushort").pngsave_buffer(bitdepth=16),
        "palette png": image.pngsave_buffer(palette=True), "webp": image.webpsave_buffer(),
        "animated webp": frames.webpsave_buffer(), "gif": frames.gifsave_buffer(),
        "avif": image.heifsave_buffer(compression="av1", effort=0), "tiff": image.tiffsave_buffer(compression="deflate"),
    }


SOURCES = sources()


@st.composite
def damaged(draw) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(SOURCES)))
    body = bytearray(SOURCES[name])
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "flip", "flip", "set", "set", "insert", "repeat", "cut"]))
        at = draw(st.integers(0, max(len(body) - 1, 0)))
        if kind == "flip" and body:
            body[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and body:
            body[at] = draw(st.sampled_from([0, 0x7F, 0x80, 0xFF]) | st.integers(0, 255))
        elif kind == "insert":
            body[at:at] = draw(st.binary(max_size=16))
        elif kind == "repeat":
            body[at:at] = body[at:at + draw(st.integers(1, 64))]
        elif kind == "cut":
            del body[at:]
    return name, bytes(body)


@pytest.fixture(scope="module")
def served_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("damaged-originals")
    config = write_config(tmp_path_factory.mktemp("damaged-node"), local_config(
        folder, before="[server]\naccess_log = false\n", after=f'[limits]\nrender_timeout = "{RENDER_TIMEOUT}s"\n'))
    with one_worker(config) as address:
        yield folder, address


def test_damaged_originals_get_an_image_or_a_4xx_and_never_kill_a_worker(served_folder):
    folder, node = served_folder
    numbers = itertools.count()
    answered = []

    @fuzz_settings(EXAMPLES)
    @given(original=damaged(), transformation=st.sampled_from(TRANSFORMATIONS))
    def one(original, transformation):
        name, body = original
        path = f"damaged-{next(numbers)}.bin"  # a new file each time: nothing cached
        (folder / path).write_bytes(body)
        status, answer, seconds = exchange(node, "GET", f"/tr:{transformation}/{path}", timeout=BOUND)
        assert status in STATUSES, (name, transformation, status)
        assert seconds < BOUND, (name, transformation)
        if status == 200 and transformation != "orig-true":  # (orig-true passes the stored bytes through)
            decoded(answer)  # what the node rendered decodes whole, damaged source or not
        answered.append(status)

    one()
    assert {200, 422} <= set(answered), sorted(answered)
