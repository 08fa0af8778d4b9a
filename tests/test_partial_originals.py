"""Originals cut short that their decoders do not fail: refused (422, nothing kept), never rendered with
what they lack filled in, on the 12 MP photo.

JPEGs whose coded data ends before their last row. A JPEG cut short without its end marker already failed
(`fail_on=truncated`). Cut short and closed again with an end marker, or with a frame header taller than
its data, libjpeg only warns and fills the rows it lacks with grey; renders of a JPEG now fail on its
warnings, and those that lose no pixel (stray bytes between segments, as some cameras write) are
rendered again with warnings let through: those photos keep rendering exactly as before.

Animated GIFs cut short: libnsgif decodes the frames there are and the last one as far as it goes, and
libvips fails at no `fail_on` level; the node walks a GIF's blocks.

Originals served as they are (`orig-true`, a Cloudinary URL without transformations), which nothing decodes:
told from their structure (`cut_short.served_cut_short`), as their decode would tell them.
"""

from __future__ import annotations

import functools

import pytest
import pyvips

from edge import pipeline
from edge.config import Defaults, Limits
from edge.errors import InvalidTransformation, UnprocessableSource
from edge.testing import NodeProcess, ServingNode
from edge.transform.cut_short import served_cut_short
from edge.transform.options import parse_transformation
from edge.transform.render import probe, render_image
from tests.imagecorpus import animated_gif, closed_early_jpeg, extraneous_bytes_jpeg, taller_frame_jpeg
from tests.nodes import decode, local_config, web_config, write_config
from tests.photos import SIZE, photos  # noqa: F401 - the fixture
from tests.servers import HTTPOrigin

LOSING_PIXELS = {
    "closed after 60 %": lambda body: closed_early_jpeg(body, 0.6),
    "closed after 99 %": lambda body: closed_early_jpeg(body, 0.99),
    "a frame 300 rows taller": lambda body: taller_frame_jpeg(body, 300),
}
#: each way a JPEG is decoded: shrunk on load by 8 and 2, whole (`thumbnail`, no shrink), turned and
#: flipped (random access), the bottom rows cut out (a region above them decodes no missing row)
TRANSFORMATIONS = ["w-300", "w-2000", "q-80", "rt-90,w-300", "fl-v,w-1000", "cm-extract,w-500,h-200,fo-bottom"]


def render(body: bytes, tr: str, overlays: dict[str, bytes] | None = None) -> bytes:
    return render_image(body, parse_transformation(tr), "jpg", Defaults(), Limits(), overlays).body


@pytest.mark.parametrize("damage", LOSING_PIXELS)
@pytest.mark.parametrize("tr", TRANSFORMATIONS)
def test_a_jpeg_missing_rows_is_refused_however_it_is_decoded(photos, damage, tr):
    with pytest.raises(UnprocessableSource):
        render(LOSING_PIXELS[damage](photos.read(photos.jpeg)), tr)


@pytest.mark.parametrize("tr", ["w-300", "q-80", "rt-90,w-300"])
def test_a_jpeg_with_stray_bytes_between_segments_renders_as_the_clean_one(photos, tr):
    clean = photos.read(photos.jpeg)
    assert render(extraneous_bytes_jpeg(clean), tr) == render(clean, tr)


def test_a_node_writes_no_libvips_warning_for_stray_bytes(photos, tmp_path, monkeypatch):
    """GLib wrote libvips' warnings to standard error as plain lines, twenty for one render of such a photo,
    unbounded and outside the JSON log: the node starts libvips with them dropped (`VIPS_WARNING`)."""
    monkeypatch.delenv("VIPS_WARNING", raising=False)  # set by this process' own import of edge
    (tmp_path / "stray.jpg").write_bytes(extraneous_bytes_jpeg(photos.read(photos.jpeg)))
    node = NodeProcess(write_config(tmp_path, local_config(tmp_path, before='[server]\nlog_format = "json"\n')))
    try:
        status, _, body = ServingNode(node).get("/tr:w-300/stray.jpg")
        assert (status, pyvips.Image.new_from_buffer(body, "").width) == (200, 300)
    finally:
        assert node.stop() == 0
    assert [line for line in node.log if line.strip() and not line.startswith("{")] == []


def test_a_layer_missing_rows_is_a_400_naming_it(photos):
    overlay = closed_early_jpeg(photos.read(photos.medium), 0.7)
    with pytest.raises(InvalidTransformation) as raised:
        render(photos.read(photos.jpeg), "w-1000,l-image,i-o.jpg,w-300,l-end", {"o.jpg": overlay})
    assert (raised.value.status, raised.value.message) == \
        (400, "invalid transformation: i-o.jpg: not an image the node can decode")


def test_a_layer_with_stray_bytes_is_drawn_as_the_clean_one(photos):
    base, overlay, tr = photos.read(photos.jpeg), photos.read(photos.medium), "w-1000,l-image,i-o.jpg,w-300,l-end"
    assert render(base, tr, {"o.jpg": extraneous_bytes_jpeg(overlay)}) == render(base, tr, {"o.jpg": overlay})


async def test_an_original_missing_rows_is_a_422_and_is_not_kept(node_factory, tmp_path, photos, monkeypatch):
    """Served by a web origin (as a partial upload would be): another URL of it fetches it again, once the 422
    is no longer remembered for the original (here at once; `test_origin_faults`)."""
    monkeypatch.setattr(pipeline, "UNUSABLE_SECONDS", 0.0)
    clean = photos.read(photos.jpeg)
    origin = await HTTPOrigin(files={"photo.jpg": closed_early_jpeg(clean, 0.8)}).start()
    try:
        node = await node_factory(write_config(tmp_path, web_config(origin.url)))
        response = await node.fetch("/tr:w-300/photo.jpg")
        assert (response.code, response.body) == (422, b"unsupported or corrupt source image\n")
        origin.files["photo.jpg"] = extraneous_bytes_jpeg(clean)
        response = await node.fetch("/tr:w-400/photo.jpg")
        image = decode(response)
        assert (response.code, image.width, image.height) == (200, 400, round(400 * SIZE[1] / SIZE[0]))
        bottom = image.crop(0, image.height - 20, image.width, 20)
        assert bottom.deviate() > 5  # the photo's own rows, not a flat grey
        assert origin.requests["photo.jpg"] == 2
    finally:
        await origin.stop()


def test_the_photo_itself_decodes_without_a_warning(photos):
    """The guard above renders strictly first: a clean photo never takes the second render."""
    image = pyvips.Image.new_from_buffer(photos.read(photos.jpeg), "", fail_on="warning")
    assert image.avg() > 0


@functools.cache
def _gif_of(path: str) -> bytes:
    photo = pyvips.Image.new_from_file(path)
    frames = [photo.crop(x, y, 1000, 700) for x, y in ((0, 0), (1500, 1000), (3000, 2000))]
    strip = pyvips.Image.arrayjoin(frames, across=1).copy()
    strip.set_type(pyvips.GValue.gint_type, "page-height", 700)
    return strip.gifsave_buffer(effort=1)


def gif_of_the_photo(photos) -> bytes:
    """Three 1000×700 frames of the 12 MP photo as a GIF (~1 MB)."""
    return _gif_of(str(photos.path(photos.jpeg)))


@pytest.mark.parametrize("fraction", [0.3, 0.7, 0.95, 0.999])
@pytest.mark.parametrize("planned", ["gif", "jpg"])
def test_an_animated_gif_cut_short_is_refused(photos, fraction, planned):
    body = gif_of_the_photo(photos)
    cut = body[: int(len(body) * fraction)]
    with pytest.raises(UnprocessableSource):
        render_image(cut, parse_transformation("w-300"), planned, Defaults(), Limits())
    with pytest.raises(UnprocessableSource):  # nor served as it is (`orig-true` reads its header alone)
        probe(cut, Limits())


def test_a_whole_gif_without_its_trailer_is_rendered(photos):
    body = gif_of_the_photo(photos)
    assert body.endswith(b"\x00\x3b")
    whole = render_image(body, parse_transformation("w-300"), "gif", Defaults(), Limits())
    untrailed = render_image(body[:-1], parse_transformation("w-300"), "gif", Defaults(), Limits())
    assert untrailed.body == whole.body


def test_a_gif_of_more_blocks_than_the_walk_takes_is_not_walked_to_its_end():
    """40 MB of 1-byte sub-blocks, or of empty comment blocks, had taken 2.6 and 3.9 s of Python per render of a GIF:
    past `MAX_GIF_STEPS` blocks and sub-blocks the walk stops, its end not checked (encoders write 255-byte
    sub-blocks: 160 000 for 40 MB); short of it, checked."""
    from edge.transform.cut_short import MAX_GIF_STEPS

    screen = b"GIF89a\x01\x00\x01\x00\x00\x00\x00"

    def sub_blocks(count: int) -> bytes:  # a 1×1 GIF, its image data in 1-byte sub-blocks
        return screen + b"\x2c" + bytes(8) + b"\x00\x02" + b"\x01\x00" * count + b"\x00\x3b"

    def comments(count: int) -> bytes:  # empty comment blocks before a 1×1 image
        return screen + b"\x21\xfe\x00" * count + b"\x2c" + bytes(8) + b"\x00\x02\x01\x00\x00\x3b"

    for made in (sub_blocks, comments):
        assert served_cut_short(made(MAX_GIF_STEPS - 10)[:-3], "gifload_source"), made
        assert not served_cut_short(made(MAX_GIF_STEPS - 10), "gifload_source"), made
        assert not served_cut_short(made(MAX_GIF_STEPS + 1)[:-3], "gifload_source"), made


def test_the_corpus_gifs_are_whole():
    for frames in (1, 5, 100):
        assert render_image(animated_gif(frames), parse_transformation("w-20"), "gif", Defaults(), Limits()).width == 20


#: the 12 MP photo in each format an original is served as it is in, and its loader
SERVED_AS_IS = {"jpg": "jpegload_source", "png": "pngload_source", "webp": "webpload_source",
                "avif": "heifload_source", "gif": "gifload_source"}


@functools.cache
def _photo_as(path: str, fmt: str) -> bytes:
    photo = pyvips.Image.new_from_file(path)
    if fmt == "gif":
        return photo.gifsave_buffer(effort=1)
    return photo.write_to_buffer(f".{fmt}", **({"effort": 0} if fmt == "avif" else {}))


@pytest.mark.parametrize("fmt", SERVED_AS_IS)
def test_an_original_served_as_it_is_is_cut_short_where_its_decode_fails(photos, fmt):
    """On the 12 MP photo: a JPEG missing no more than its end marker fails to decode too; a PNG missing what
    follows its image data (its end chunk) decodes whole."""
    body = _photo_as(str(photos.path(photos.jpeg)), fmt)
    cuts = [0, 1, 2, 12, 100, 4096, len(body) // 3, len(body) // 2, len(body) - 20, len(body) - 10]
    verdicts = []
    for cut in cuts:
        part = body[:len(body) - cut]
        try:
            pyvips.Image.new_from_buffer(part, "", fail_on="truncated", access="sequential").avg()
            decodes = True
        except pyvips.Error:
            decodes = False
        verdicts.append((cut, decodes, not served_cut_short(part, SERVED_AS_IS[fmt])))
    assert [verdict for verdict in verdicts if verdict[1] != verdict[2]] == []
    assert verdicts[0][1] and not verdicts[-2][1]  # whole, and cut in half


async def test_an_original_cut_short_is_never_served_as_it_is(node_factory, tmp_path, photos):
    """`orig-true` read the header alone: half of the 12 MP JPEG or PNG went out as a 200, cached for a year."""
    jpeg, png = photos.read(photos.jpeg), photos.read(photos.png)
    (tmp_path / "images").mkdir()
    for name, body in (("half.jpg", jpeg[:len(jpeg) // 2]), ("half.png", png[:len(png) // 2]),
                       ("unended.jpg", jpeg[:-2]), ("whole.jpg", jpeg)):
        (tmp_path / "images" / name).write_bytes(body)
    node = await node_factory(write_config(tmp_path, local_config(tmp_path / "images")))
    for name in ("half.jpg", "half.png", "unended.jpg"):
        response = await node.fetch(f"/tr:orig-true/{name}")
        assert (response.code, response.body) == (422, b"unsupported or corrupt source image\n"), name
    whole = await node.fetch("/tr:orig-true/whole.jpg")
    assert (whole.code, whole.body) == (200, jpeg)


def _insert_before_scan(jpeg: bytes, extra: bytes) -> bytes:
    at = jpeg.index(b"\xff\xda")
    return jpeg[:at] + extra + jpeg[at:]


@pytest.mark.parametrize("odd", ["stray FF 00", "stray FF FF 00", "TEM", "a restart marker", "AVIF + 4 zeros",
                                 "AVIF + 16 bytes", "GIF + 16 bytes for its trailer"])
def test_whole_originals_of_odd_structure_are_served_as_they_are(photos, odd):
    """Whole files the review found refused: bytes libjpeg skips or steps over before the first scan (a stray
    FF 00 had been read as a segment of 65 kB), bytes after an AVIF's boxes, bytes that are no GIF block after a
    GIF's last one (libnsgif stops there)."""
    jpeg, avif = photos.read(photos.jpeg), _photo_as(str(photos.path(photos.jpeg)), "avif")  # the 12 MP photo
    body, loader = {
        "stray FF 00": (_insert_before_scan(jpeg, b"\xff\x00"), "jpegload_source"),
        "stray FF FF 00": (_insert_before_scan(jpeg, b"\xff\xff\x00"), "jpegload_source"),
        "TEM": (_insert_before_scan(jpeg, b"\xff\x01"), "jpegload_source"),
        "a restart marker": (_insert_before_scan(jpeg, b"\xff\xd3"), "jpegload_source"),
        "AVIF + 4 zeros": (avif + bytes(4), "heifload_source"),
        "AVIF + 16 bytes": (avif + b"\x7f" * 16, "heifload_source"),
        "GIF + 16 bytes for its trailer": (_photo_as(str(photos.path(photos.jpeg)), "gif")[:-1] + b"\x7f" * 16,
                                           "gifload_source"),
    }[odd]
    pyvips.Image.new_from_buffer(body, "", fail_on="truncated", access="sequential").avg()  # whole, as libvips reads it
    assert not served_cut_short(body, loader)
    assert served_cut_short(body[:len(body) // 2], loader)  # and cut, still told


def test_an_avif_whose_last_box_runs_to_the_end_of_the_file_is_whole(photos):
    """ISOBMFF's box size 0: the box holds the rest of the file (libheif decodes it); the walk takes it as whole."""
    avif = _photo_as(str(photos.path(photos.jpeg)), "avif")
    at = 0
    while at + int.from_bytes(avif[at:at + 4], "big") < len(avif):
        at += int.from_bytes(avif[at:at + 4], "big")
    body = avif[:at] + bytes(4) + avif[at + 4:]  # the last box, its size 0
    pyvips.Image.new_from_buffer(body, "", fail_on="truncated", access="sequential").avg()
    assert not served_cut_short(body, "heifload_source")


def test_a_jpeg_of_endless_segments_or_fill_bytes_is_judged_within_a_bound():
    """40 MB before any scan: empty segments had been walked one by one for 4.6 s of Python, fill bytes 7.6 s."""
    for body in (b"\xff\xd8" + b"\xff\xfe\x00\x02" * 10**7, b"\xff\xd8" + b"\xff" * (40 * 10**6)):
        assert served_cut_short(body, "jpegload_source")
