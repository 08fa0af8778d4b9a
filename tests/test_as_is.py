"""An animation served as it is (its frames' encode over budget) goes out without its metadata
(`edge/transform/as_is.py`): its bytes had carried a phone's GPS position, serials and XMP paths (privacy probe)."""

from __future__ import annotations

import pytest
import pyvips

from edge.transform.as_is import without_metadata
from edge.transform.cut_short import gif_colour_table
from tests import imagecorpus as corpus
from tests.nodes import decode, local_config, write_config

MARKERS = (b"MK_", b"alice")


def gif_extension(label: int, data: bytes) -> bytes:
    """An extension block: its label, then `data` in sub-blocks of at most 255 bytes, then the terminator."""
    blocks = b"".join(bytes([len(data[i:i + 255])]) + data[i:i + 255] for i in range(0, len(data), 255))
    return b"\x21" + bytes([label]) + blocks + b"\x00"


def with_gif_metadata(gif: bytes) -> bytes:
    """`gif` with a comment and an XMP application extension before its first block, and a comment before its
    trailer."""
    at = 13 + gif_colour_table(gif[10])
    comment = gif_extension(0xFE, b"MK_COMMENT taken by alice at 51.5N")
    xmp = gif_extension(0xFF, b"XMP DataXMP" + b'<x:xmpmeta><r path="/Users/alice/MK_XMP.psd"/></x:xmpmeta>')
    return gif[:at] + comment + xmp + gif[at:-1] + comment + gif[-1:]


def with_webp_metadata(frames: pyvips.Image) -> bytes:
    frames = frames.copy()
    frames.set_type(pyvips.GValue.gstr_type, "exif-ifd0-Artist", "MK_ARTIST alice")
    frames.set_type(pyvips.GValue.gstr_type, "exif-ifd2-BodySerialNumber", "MK_SERIAL 123")
    frames.set_type(pyvips.GValue.blob_type, "xmp-data", b'<x:xmpmeta><r path="/Users/alice/MK_XMP.psd"/></x:xmpmeta>')
    return frames.webpsave_buffer(Q=50, effort=0, keep="all")


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """Over budget as they are encoded again: 99 frames of 400×400 as GIF (~403 units), 60 of 800×800 as WebP."""
    root = tmp_path_factory.mktemp("as-is")
    (root / "long.gif").write_bytes(with_gif_metadata(corpus._animation(99, 400).gifsave_buffer(keep="none")))
    (root / "long.webp").write_bytes(with_webp_metadata(corpus._animation(60, 800)))
    return root


def same_frames(served: pyvips.Image, original: pyvips.Image) -> bool:
    return (served.get("n-pages"), served.get("page-height"), served.get("delay"), served.get("loop")) == \
        (original.get("n-pages"), original.get("page-height"), original.get("delay"), original.get("loop")) and \
        (served - original).abs().max() == 0


@pytest.mark.parametrize("path, accept", [("/long.gif", "*/*"), ("/tr:f-auto/long.gif", "image/png,*/*"),
                                          ("/long.webp", "image/webp,*/*"), ("/tr:f-webp/long.webp", "*/*")])
async def test_an_animation_served_as_it_is_goes_out_without_its_metadata(node_factory, tmp_path, originals, path,
                                                                         accept):
    node = await node_factory(write_config(tmp_path, local_config(originals)))
    response = await node.fetch(path, headers={"Accept": accept})
    assert response.code == 200 and response.headers["Content-Type"] == "image/" + path.rpartition(".")[2]
    original = (originals / path.rpartition("/")[2]).read_bytes()
    assert len(response.body) < len(original)
    assert not any(marker in response.body for marker in MARKERS) and all(marker in original for marker in MARKERS)
    served = decode(response, all_frames=True)
    assert same_frames(served, pyvips.Image.new_from_buffer(original, "", n=-1))
    assert not served.get_typeof("exif-data") and not served.get_typeof("xmp-data")


def test_what_is_kept_of_a_gif_is_its_blocks_as_they_were():
    plain = corpus._animation(3, 40).gifsave_buffer(keep="none")
    assert without_metadata(with_gif_metadata(plain), "gif") == plain
    assert without_metadata(plain[:-1], "gif") == plain[:-1]  # no trailer, as some encoders write: whole
    assert without_metadata(plain + b"trailing bytes", "gif") == plain
    assert without_metadata(plain[:-1] + bytes(16), "gif") == plain  # padding for a trailer, as libnsgif reads it


def test_only_the_loop_count_s_own_block_is_kept_of_a_gif_s_application_extensions():
    """A block named as the loop count's that holds more (a sub-block of data after the count, or one without its
    terminator, which reads the next block as its own) goes whole (privacy recheck)."""
    plain = corpus._animation(3, 40).gifsave_buffer(keep="none")
    loop_at = plain.index(b"\x21\xff\x0bNETSCAPE2.0")
    loop = plain[loop_at:loop_at + 19]
    assert loop.endswith(b"\x00") and without_metadata(plain, "gif") == plain
    xmp = gif_extension(0xFF, b"XMP DataXMP" + b"<x:xmpmeta>MK_XMP alice</x:xmpmeta>")
    crafted = plain[:loop_at] + loop[:-1] + b"\x0dMK_DATA alice" + b"\x00" + plain[loop_at + 19:]  # data after it
    assert without_metadata(crafted, "gif") == plain[:loop_at] + plain[loop_at + 19:]
    # no terminator: the XMP block is read as its sub-blocks, and what follows does not walk (not served as it is)
    crafted = plain[:loop_at] + loop[:-1] + xmp + plain[loop_at + 19:]
    assert without_metadata(crafted, "gif") is None


def test_a_webp_without_metadata_says_so_in_its_header():
    body = without_metadata(with_webp_metadata(corpus._animation(3, 40)), "webp")
    assert body[12:16] == b"VP8X" and not body[20] & 0x0C  # neither EXIF nor XMP announced
    assert int.from_bytes(body[4:8], "little") == len(body) - 8
    assert pyvips.Image.new_from_buffer(body, "", n=-1).get("n-pages") == 3


def test_a_webp_s_chunks_of_no_known_kind_go_too():
    """Only the kinds that make the picture are kept: a private chunk (any tool's, any data) goes, as EXIF and XMP
    do (a mutation keeping all but those two survived the test above)."""
    plain = with_webp_metadata(corpus._animation(3, 40))
    private = b"MKPR" + (17).to_bytes(4, "little") + b"MK_PRIVATE alice\0" + b"\0"  # odd size: padded
    riff = plain[12:] + private
    crafted = b"RIFF" + (len(riff) + 4).to_bytes(4, "little") + b"WEBP" + riff
    body = without_metadata(crafted, "webp")
    assert b"MK_PRIVATE" not in body and body == without_metadata(plain, "webp")


def test_a_webp_keeps_its_colour_profile():
    """Its frames' colours are read through their ICC profile: it stays, and its flag in the header, while EXIF and
    XMP go (a mutation dropping the ICCP chunk with them survived)."""
    frames = corpus._animation(3, 40).icc_transform("srgb", input_profile="srgb")  # the profile attached
    body = without_metadata(with_webp_metadata(frames), "webp")
    served = pyvips.Image.new_from_buffer(body, "", n=-1)
    assert served.get("icc-profile-data") == frames.get("icc-profile-data") and body[20] & 0x20
    assert not any(marker in body for marker in MARKERS) and served.get("n-pages") == 3


@pytest.mark.parametrize("body, fmt", [
    (corpus._animation(3, 40).gifsave_buffer(keep="none")[:-30], "gif"),  # ends inside a block
    (b"GIF89a" + bytes(7) + b"\x2c\x00", "gif"),
    (b"not a gif at all", "gif"),
    (corpus._animation(3, 40).webpsave_buffer()[:-10], "webp"),  # shorter than its RIFF header says
    (b"RIFF\x04\x00\x00\x00WEBX", "webp"),
    (b"\x89PNG\r\n\x1a\n", "png"),
])
def test_what_does_not_walk_to_its_end_is_not_served_as_it_is(body, fmt):
    assert without_metadata(body, fmt) is None
