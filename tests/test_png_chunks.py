"""A PNG's compressed chunks bounded before libvips reads it (`edge/transform/png_chunks.py`): a 221 kB PNG held 45 MB
of XMP, one of 44 kB a 45 MB profile, which every probe and decode inflated (attacker probe, review)."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib

import pytest
import pyvips

from edge.config import Defaults, Limits
from edge.errors import BadRequest
from edge.transform.cut_short import MAX_PNG_CHUNKS
from edge.transform.encode import EncodeOptions, encode
from edge.transform.options import parse_transformation
from edge.transform.png_chunks import INFLATED_BOUNDS, MIN_CHUNK_BYTES, without_bulky_chunks
from edge.transform.render import render_image
from tests.photos import SIZE, marker_corner, photos  # noqa: F401 - photos is a fixture

XMP_KEYWORD = b"XML:com.adobe.xmp"


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def compressed_xmp(size: int) -> bytes:
    """An `iTXt` chunk of an XMP packet of `size` bytes, compressed (a repeated element: ~200 times smaller)."""
    packet = b'<x:xmpmeta xmlns:x="adobe:ns:meta/">' + b'<r a="6"/>' * (size // 10) + b"</x:xmpmeta>"
    return chunk(b"iTXt", XMP_KEYWORD + b"\0\x01\x00\0\0" + zlib.compress(packet, 9))


def with_chunks(png: bytes, before_data: bytes = b"", after_data: bytes = b"") -> bytes:
    """`png` with chunks after its header chunk (IHDR: 25 bytes after the signature) and before its end chunk."""
    end = png.rindex(b"IEND") - 4
    return png[:33] + before_data + png[33:end] + after_data + png[end:]


def xmp_read(body: bytes) -> int:
    """The length of the XMP packet libvips reads of `body` once bounded (0: none)."""
    image = pyvips.Image.new_from_buffer(without_bulky_chunks(body), "")
    return len(image.get("xmp-data")) if image.get_typeof("xmp-data") else 0


@pytest.fixture(scope="module")
def small_png() -> bytes:
    return pyvips.Image.black(40, 20).new_from_image([10, 200, 10]).copy(interpretation="srgb").pngsave_buffer()


def test_a_text_chunk_inflating_past_the_bound_is_left_out(small_png):
    bomb = with_chunks(small_png, compressed_xmp(45_000_000))
    assert len(bomb) < 250_000
    stripped = without_bulky_chunks(bomb)
    assert stripped == small_png and xmp_read(bomb) == 0


def test_a_compressed_comment_inflating_past_the_bound_is_left_out(small_png):
    """`zTXt`, a comment always compressed: 45 MB inflated from 44 kB went to libvips whole when only `iTXt` was
    counted inflated (a mutation audit)."""
    bomb = with_chunks(small_png, chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"x" * 45_000_000, 9)))
    assert len(bomb) < 100_000
    assert without_bulky_chunks(bomb) == small_png


def test_text_within_the_bound_is_read_as_it_is(small_png):
    body = with_chunks(small_png, compressed_xmp(200_000) + chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"x" * 1000)))
    assert without_bulky_chunks(body) is body
    assert xmp_read(body) in range(200_000, 200_100)


def test_the_bound_is_summed_over_chunks_and_every_one_past_it_is_left_out(small_png):
    small = chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"y" * 100))
    body = with_chunks(small_png, compressed_xmp(INFLATED_BOUNDS["text"] // 2) * 2 + compressed_xmp(1000) + small)
    assert without_bulky_chunks(body) == with_chunks(small_png, compressed_xmp(INFLATED_BOUNDS["text"] // 2))


def test_uncompressed_text_counts_its_data_and_no_more_up_to_the_bound(small_png):
    """A `tEXt` chunk counts its data (keyword, separator, text), not its length or CRC: one of the bound exactly
    is read, one byte more is left out."""
    at_bound = chunk(b"tEXt", b"Comment\0" + b"c" * (INFLATED_BOUNDS["text"] - 8))
    body = with_chunks(small_png, at_bound)
    assert without_bulky_chunks(body) is body
    over = with_chunks(small_png, chunk(b"tEXt", b"Comment\0" + b"c" * (INFLATED_BOUNDS["text"] - 7)))
    assert without_bulky_chunks(over) == small_png


def profile_chunk(padding: int) -> bytes:
    """An `iCCP` chunk of libvips' sRGB profile, its declared length made its real one after `padding` zeros (what
    libvips reads as a profile, and inflates)."""
    profile = pyvips.Image.black(1, 1, bands=3).copy(interpretation="srgb").icc_transform(
        "srgb").pngsave_buffer(keep="icc")
    profile = pyvips.Image.new_from_buffer(profile, "").get("icc-profile-data") + bytes(padding)
    profile = len(profile).to_bytes(4, "big") + profile[4:]
    return chunk(b"iCCP", b"sRGB\0\0" + zlib.compress(profile, 9))


def test_a_profile_inflating_past_its_bound_is_left_out_and_a_real_one_kept(small_png):
    bomb = with_chunks(small_png, profile_chunk(45_000_000))
    assert len(bomb) < 100_000 and without_bulky_chunks(bomb) == small_png
    real = with_chunks(small_png, profile_chunk(0))
    assert without_bulky_chunks(real) is real
    assert pyvips.Image.new_from_buffer(real, "").get_typeof("icc-profile-data")


def test_a_profile_over_a_megabyte_within_its_bound_is_kept_whole_under_md_true_and_cp_true(photos):
    """The megabyte `md-true` keeps of a metadata field is not the profile's: a printer's profile of a few MB, within
    its own bound, goes out whole under `cp-true`, with the rest of the metadata or without it."""
    body = with_chunks(photos.read(photos.png), profile_chunk(2_000_000))
    assert without_bulky_chunks(body) is body
    for transformation in ("w-300,md-true,cp-true,f-png", "w-300,cp-true,f-png"):
        rendered = render_image(body, parse_transformation(transformation), "png", Defaults(), Limits())
        image = pyvips.Image.new_from_buffer(rendered.body, "")
        assert image.width == 300 and marker_corner(image) == "top_left"
        assert len(image.get("icc-profile-data")) > 2_000_000, transformation


def test_tiny_text_chunks_count_at_least_a_few_kilobytes_and_one_profile_is_read(small_png):
    """libvips sets up an inflate, and warns, for each compressed chunk however small: 65 000 empty ones in 1.2 MB
    took 2.1 s of CPU and 455 000 lines of standard error a render (review). Each counts `MIN_CHUNK_BYTES` at least;
    a PNG has one profile, the first."""
    empty = chunk(b"zTXt", b"Comment\0\0")
    kept = without_bulky_chunks(with_chunks(small_png, empty * 1000))
    assert kept.count(b"zTXt") == INFLATED_BOUNDS["text"] // MIN_CHUNK_BYTES == 256
    profile = profile_chunk(0)
    assert without_bulky_chunks(with_chunks(small_png, profile * 2)) == with_chunks(small_png, profile)


def test_a_png_of_more_chunks_before_its_data_than_the_walk_reads_is_refused(small_png):
    """Past the walk's count, a bomb after 65 536 empty chunks (786 kB) had been read whole (review)."""
    flood = with_chunks(small_png, chunk(b"abCd", b"") * MAX_PNG_CHUNKS + compressed_xmp(45_000_000))
    with pytest.raises(BadRequest, match="source too large: more than 65536 PNG chunks before its image data"):
        without_bulky_chunks(flood)


def test_a_png_of_as_many_chunks_before_its_data_as_the_walk_reads_is_read_as_it_is(small_png):
    """The walk reads `MAX_PNG_CHUNKS` chunks before the image data's (the header's included), refuses one more."""
    at, own = 8, 0
    while small_png[at + 4:at + 8] != b"IDAT":  # its header chunk and those libvips writes after it
        at, own = at + 12 + int.from_bytes(small_png[at:at + 4], "big"), own + 1
    body = with_chunks(small_png, chunk(b"abCd", b"") * (MAX_PNG_CHUNKS - own))
    assert without_bulky_chunks(body) is body
    with pytest.raises(BadRequest, match="more than 65536 PNG chunks"):
        without_bulky_chunks(with_chunks(small_png, chunk(b"abCd", b"") * (MAX_PNG_CHUNKS - own + 1)))


def test_a_layer_s_original_refused_for_its_chunks_is_named(small_png):
    flood = with_chunks(small_png, chunk(b"abCd", b"") * (MAX_PNG_CHUNKS + 1))
    with pytest.raises(BadRequest, match=r"^invalid transformation: i-flood\.png: source too large: more than 65536"):
        render_image(small_png, parse_transformation("l-image,i-flood.png,l-end"), "png", Defaults(), Limits(),
                     overlays={"flood.png": flood})


@pytest.mark.parametrize("made", [
    lambda png: with_chunks(png, after_data=compressed_xmp(45_000_000)),  # libvips never reads it
    lambda png: with_chunks(png, chunk(b"iTXt", XMP_KEYWORD + b"\0\x00\x00\0\0" + b"<x/>" * 1000)),  # uncompressed
    lambda png: with_chunks(png, chunk(b"zTXt", b"Comment\0\0not zlib at all")),  # libvips' to judge
    lambda png: png[:60],  # cut short
    lambda png: b"\xff\xd8\xff" + png,  # no PNG
])
def test_anything_else_is_read_as_it_is(small_png, made):
    body = made(small_png)
    assert without_bulky_chunks(body) is body


def test_a_12_megapixel_png_with_a_bomb_renders_as_without_it(photos):
    png = photos.read(photos.png)
    bomb = with_chunks(png, compressed_xmp(45_000_000))
    for transformation in ("w-300", "w-300,md-true,f-webp"):
        rendered = render_image(bomb, parse_transformation(transformation), "png" if "f-" not in transformation
                                else "webp", Defaults(), Limits())
        image = pyvips.Image.new_from_buffer(rendered.body, "")
        assert (image.width, image.height) == (300, round(300 * SIZE[1] / SIZE[0]))
        assert marker_corner(image) == "top_left" and not image.get_typeof("xmp-data")


RENDER_A_BOMB = """
import resource, sys
from edge.config import Defaults, Limits
from edge.errors import BadRequest
from edge.transform.cut_short import MAX_PNG_CHUNKS
from edge.transform.options import parse_transformation
from edge.transform.render import render_image
plain, bomb = (open(name, "rb").read() for name in sys.argv[1:])
renders = (("w-20", "png"), ("w-20,md-true,f-webp", "webp"))
for transformation, planned in renders:  # libvips' own first allocations
    render_image(plain, parse_transformation(transformation), planned, Defaults(), Limits())
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for transformation, planned in renders:
    render_image(bomb, parse_transformation(transformation), planned, Defaults(), Limits())
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_a_render_never_inflates_the_text_left_out(small_png, tmp_path):
    """Read by a render (probe, decode, encode), the 45 MB of XMP had taken 250 MB of the worker's memory; left out,
    the render grows the process by a few MB at most (a fresh one: its high-water mark)."""
    plain, bomb = tmp_path / "plain.png", tmp_path / "bomb.png"
    plain.write_bytes(small_png)
    bomb.write_bytes(with_chunks(small_png, compressed_xmp(45_000_000)))
    grown = subprocess.run([sys.executable, "-c", RENDER_A_BOMB, str(plain), str(bomb)], capture_output=True, text=True,
                           timeout=120, check=True)
    assert int(grown.stdout) < 40, grown.stdout  # MB: 130 or more when inflated


@pytest.mark.parametrize("length, kept", [(200_000, True), (2_000_000, False)])
def test_md_true_keeps_no_text_over_a_megabyte(photos, length, kept):
    """A PNG's uncompressed text was copied whole into each `md-true` output: 4.75 MB of comment in a 35 kB PNG
    (review). Past the bound it is not read; and a text field libvips holds (a reference string, which had gone
    unmeasured) over 1 MB is not written."""
    body = with_chunks(photos.read(photos.png), chunk(b"tEXt", b"Comment\0" + b"c" * length))
    rendered = render_image(body, parse_transformation("w-300,md-true,f-png"), "png", Defaults(), Limits())
    image = pyvips.Image.new_from_buffer(rendered.body, "")
    comments = [field for field in image.get_fields() if field.startswith("png-comment-")]
    assert (image.width, bool(comments)) == (300, kept)
    assert len(rendered.body) < 200_000 + (length if kept else 0)
    small = image.copy()
    small.set_type(pyvips.GValue.refstr_type, "png-comment-0-Comment", "c" * length)
    written = pyvips.Image.new_from_buffer(encode(small, "png", EncodeOptions(80, 2, metadata=True)), "")
    assert bool(written.get_typeof("png-comment-0-Comment")) == kept
