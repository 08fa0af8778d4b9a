"""What an attacker (or an unlucky operator) sends a public node: URLs that ask for unbounded work or
memory, and sources the node must not render. Each answer is a quick one-line 4xx, never a long render."""

import random

import pytest
import pyvips

from edge.config import Limits
from edge.errors import BadRequest, UnprocessableSource
from edge.transform.render import allow_only_input_loaders, probe
from tests import imagecorpus
from edge.testing import solid_image
from tests.nodes import decode, local_config, write_config

SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20">'
       b'<rect width="40" height="20" fill="red"/></svg>')


@pytest.fixture
def folder(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "small.jpg").write_bytes(imagecorpus.photo_jpeg(64, 48))
    (folder / "anim.gif").write_bytes(imagecorpus.animated_gif(10))  # 10 frames of 32×32
    (folder / "drawing.svg").write_bytes(SVG)
    return folder


async def node_over(node_factory, directory, folder, limits=""):
    directory.mkdir(exist_ok=True)
    return await node_factory(write_config(directory, local_config(folder, after=f"[limits]\n{limits}")))


async def assert_refused(node, path, status, message):
    response = await node.fetch(path)
    assert (response.code, response.body.decode()) == (status, message + "\n")
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"


@pytest.mark.parametrize("transformation, message", [
    # thousands of chained resizes in one URL kept a libvips thread busy for minutes
    (":".join(["w-10"] * 11), "invalid transformation: tr: more than 10 chained steps"),
    ("w-10," * 400 + "h-10", "invalid transformation: tr: longer than 2000 characters"),
])
async def test_a_transformation_is_bounded_in_steps_and_length(node_factory, tmp_path, folder, transformation,
                                                               message):
    node = await node_over(node_factory, tmp_path, folder)
    await assert_refused(node, f"/tr:{transformation}/small.jpg", 400, message)
    await assert_refused(node, f"/small.jpg?tr={transformation}", 400, message)
    ten = await node.fetch("/tr:" + ":".join(["w-10"] * 10) + "/small.jpg")
    assert ten.code == 200 and decode(ten).width == 10


async def test_a_step_may_not_grow_the_image_past_the_output_limit(node_factory, tmp_path, folder):
    """Borders add 2×1000 px a step; a last step that shrinks must not license a huge intermediate."""
    node = await node_over(node_factory, tmp_path, folder)
    await assert_refused(node, "/tr:w-8000,h-10,c-force:b-1000_FF0000:w-100/small.jpg", 400,
                         "output too large: 10000x2010, at most 8192 px a side")
    within = await node.fetch("/tr:w-6000,h-10,c-force:b-1000_FF0000:w-100/small.jpg")
    assert within.code == 200 and decode(within).width == 100


async def test_an_animation_is_made_within_the_pixel_budget(node_factory, tmp_path, folder):
    """Every frame is rendered at the output size: 10 frames of 400×400 are 1.6 megapixels."""
    node = await node_over(node_factory, tmp_path, folder, "max_source_pixels = 1_000_000")
    await assert_refused(node, "/tr:w-400/anim.gif", 400,
                         "output too large: 10 frames of 400x400 exceed 1000000 pixels")
    within = await node.fetch("/tr:w-300/anim.gif")
    assert within.code == 200 and decode(within).get("n-pages") == 10
    first_frame = await node.fetch("/tr:w-400,f-png/anim.gif")  # not animated: one frame
    assert first_frame.code == 200 and decode(first_frame).width == 400


async def test_svg_is_rendered_only_when_the_operator_enables_it(node_factory, tmp_path, folder):
    node = await node_over(node_factory, tmp_path, folder)
    refused = ("unsupported source: an SVG document, read only with [limits] allow_svg = true; the node reads JPEG, "
               "PNG, WebP, AVIF, HEIC, GIF and TIFF")
    await assert_refused(node, "/tr:w-20/drawing.svg", 422, refused)
    await assert_refused(node, "/drawing.svg", 422, refused)
    enabled = await node_over(node_factory, tmp_path / "svg", folder, "allow_svg = true")
    response = await enabled.fetch("/tr:w-20,f-png/drawing.svg")
    assert response.code == 200 and (decode(response).width, decode(response).height) == (20, 10)
    assert response.headers["Content-Type"] == "image/png"


def test_an_svg_is_refused_for_a_config_without_allow_svg_even_with_its_loader_unblocked():
    """The loaders libvips may run are set process-wide by the last config applied (a node, `check-config` of
    another file): `probe` refuses an SVG for a config without `allow_svg` all the same, its second line (a
    mutation dropping it survived, hidden by the first)."""
    allow_only_input_loaders(allow_svg=True)
    try:
        with pytest.raises(UnprocessableSource) as raised:
            probe(SVG, Limits(allow_svg=False))
    finally:
        allow_only_input_loaders(allow_svg=False)  # as a node without it leaves them
    assert "an SVG document, read only with [limits] allow_svg = true" in str(raised.value)


@pytest.mark.parametrize("path", ["/drawing.svg", "/tr:w-20/drawing.svg", "/tr:f-auto/drawing.svg",
                                  "/tr:orig-true/drawing.svg"])
async def test_an_svg_is_served_as_it_is_unless_a_raster_format_is_asked_for(node_factory, tmp_path, folder, path):
    """As ImageKit delivers an SVG: `f-auto` and `[defaults] auto_format` keep it a vector, and a step alone draws
    nothing (`f-png` does, above). It was drawn to WebP or AVIF, and `orig-true` was a 422: no URL gave the SVG.
    Served as a document whose scripts never run."""
    node = await node_over(node_factory, tmp_path, folder, "allow_svg = true\n[defaults]\nauto_format = true")
    # every class of browser (one taking WebP but not AVIF had been sent a WebP drawing)
    for accept in ("image/avif,image/webp,*/*", "image/webp,*/*", "image/avif,*/*", "*/*"):
        response = await node.fetch(path, headers={"Accept": accept})
        assert (response.code, response.body) == (200, SVG), accept
        assert response.headers["Content-Type"] == "image/svg+xml"
        assert response.headers["Content-Security-Policy"] == "default-src 'none'; style-src 'unsafe-inline'; sandbox"


async def test_an_svg_is_drawn_with_its_endpoints_watermark(node_factory, tmp_path, folder):
    """Served as it is, it would go out without the watermark: drawn, as `f-auto` picks (a raster)."""
    (folder / "mark.png").write_bytes(solid_image(8, 8, (0, 0, 255), "png"))
    marked = '[[endpoints]]\nid = "wm"\norigins = ["samples"]\nwatermark = "l-image,i-mark.png,lx-0,ly-0,l-end"\n'
    node = await node_over(node_factory, tmp_path, folder, f"allow_svg = true\n{marked}")
    for path in ("/wm/drawing.svg", "/wm/tr:orig-true/drawing.svg", "/wm/tr:f-auto/drawing.svg"):
        response = await node.fetch(path, headers={"Accept": "image/webp"})
        image = decode(response)
        assert response.headers["Content-Type"] != "image/svg+xml" and image.width == 40, path
        assert image.getpoint(2, 2)[:3] == pytest.approx([0, 0, 255], abs=8), path  # the mark, top left


async def test_a_progressive_jpeg_of_too_many_scans_is_refused_before_its_decode(node_factory, tmp_path, folder):
    """libjpeg reads every scan, each a pass over the whole image, before the first row: out of the render
    deadline's reach (this 50 KB file took 0.5 s to decode; 3000 scans at 16 MP held a thread 5.7 s past a 1 s
    deadline, and answered 200)."""
    (folder / "scans.jpg").write_bytes(imagecorpus.many_scans_jpeg(2000, 2000, 1000))
    (folder / "hundred.jpg").write_bytes(imagecorpus.many_scans_jpeg(64, 48, 100 - 6))
    node = await node_over(node_factory, tmp_path, folder, "render_timeout = 1")
    await assert_refused(node, "/tr:w-100/scans.jpg", 400, "source too large: more than 100 JPEG scans")
    await assert_refused(node, "/tr:orig-true/scans.jpg", 400, "source too large: more than 100 JPEG scans")
    within = await node.fetch("/tr:w-32/hundred.jpg")
    assert within.code == 200 and decode(within).width == 32 and decode(within).avg() == pytest.approx(128, abs=2)


async def test_a_photo_followed_by_a_video_is_not_taken_for_many_scans(node_factory, tmp_path, folder):
    """A motion photo is a JPEG with its video appended: FF DA pairs occur in any compressed data (one in
    65 536 bytes, ~150 in a 10 MB video), and were counted as scans (a 400). A scan's header is counted."""
    photo = imagecorpus.photo_jpeg(64, 48)
    rng = random.Random(7)
    video = b"\0\0\0\x18ftypmp42" + b"".join(b"\xff\xda" + rng.randbytes(254) for _ in range(200))
    (folder / "motion.jpg").write_bytes(photo + video)
    node = await node_over(node_factory, tmp_path, folder)
    resized = await node.fetch("/tr:w-32/motion.jpg")
    assert resized.code == 200 and decode(resized).width == 32
    original = await node.fetch("/tr:orig-true/motion.jpg")
    assert (original.code, original.body) == (200, photo + video)


async def test_an_animated_webp_of_too_many_frames_is_refused_before_libvips_reads_it(node_factory, tmp_path, folder):
    """libwebp's demuxer, which libvips' header read calls, walks the frames in time that grows with the square
    of their number (these 20 000 took 0.44 s; a 40 MB file, minutes), out of the deadline's reach: the node
    counts them from the RIFF chunks first."""
    (folder / "frames.webp").write_bytes(imagecorpus.many_frames_webp(20_000))
    (folder / "few.webp").write_bytes(imagecorpus.many_frames_webp(3))
    node = await node_over(node_factory, tmp_path, folder, "render_timeout = 1")
    await assert_refused(node, "/tr:w-10/frames.webp", 400, "source too large: more than 100 frames")
    few = await node.fetch("/tr:w-16/few.webp")
    assert few.code == 200 and decode(few).width == 16
    # the count comes before libvips: with its WebP loader blocked the refusal is the same (else a 422)
    pyvips.operation_block_set("VipsForeignLoadWebp", True)
    try:
        with pytest.raises(BadRequest, match="more than 100 frames"):
            probe(imagecorpus.many_frames_webp(101), Limits())
    finally:
        pyvips.operation_block_set("VipsForeignLoadWebp", False)


def test_a_webp_of_very_many_chunks_is_refused_without_walking_them_all():
    """Chunks of no frame are walked too: 40 MB of empty ones held a render thread and the GIL 1.8 s in Python
    (then libvips refused them, 422). More chunks than frames allowed, and a few others, are too many frames."""
    animation = imagecorpus.many_frames_webp(3)
    junk = b"JUNK\0\0\0\0" * 125_000
    body = animation[12:] + junk
    with pytest.raises(BadRequest, match="more than 100 frames"):
        probe(b"RIFF" + (len(body) + 4).to_bytes(4, "little") + b"WEBP" + body, Limits())
    with_a_few = animation[12:] + b"JUNK\0\0\0\0" * 8
    header = probe(b"RIFF" + (len(with_a_few) + 4).to_bytes(4, "little") + b"WEBP" + with_a_few, Limits())
    assert header.frames == 3


def _webp_animation(frames: int, side: int) -> bytes:
    pages = [pyvips.Image.black(side, side, bands=3).linear(1, 20 * page).cast("uchar") for page in range(frames)]
    strip = pyvips.Image.arrayjoin(pages, across=1).copy(interpretation="srgb")
    strip.set_type(pyvips.GValue.gint_type, "page-height", side)
    return strip.webpsave_buffer(Q=50)


def test_the_frames_an_animation_s_pages_cost_are_summed_over_a_render_s_layers():
    """Frame N of an animated WebP is made from the N before it: ten layers of frames 91-100 of a 100-frame 1 MP
    WebP took 16 s of CPU for a cost of nothing. The frames one render decodes, base and layers, are held to
    `max_source_pixels` together."""
    from edge.config import Defaults
    from edge.transform.options import parse_transformation
    from edge.transform.render import render_image

    anim, base = _webp_animation(10, 200), imagecorpus.photo_jpeg(300, 200)
    limits = Limits(max_source_pixels=1_000_000)  # 25 frames of 200×200

    def render(transformation: str, body: bytes = base):
        return render_image(body, parse_transformation(transformation), "jpg", Defaults(), limits, {"a.webp": anim})

    assert render("w-50,pg-10", anim).width == 50  # 10 frames
    layers = ",".join(f"l-image,i-a.webp,pg-{page},w-20,l-end" for page in (8, 9))
    assert render(f"w-100,{layers}").width == 100  # 17 frames
    with pytest.raises(BadRequest, match="^source too large$"):
        render(f"w-100,{layers},l-image,i-a.webp,pg-10,w-20,l-end")  # 27


def test_an_animated_webp_s_canvas_counts_in_its_decode_memory():
    """Its frames are drawn on an RGBA canvas of its whole size (a 56 kB file of tiny frames on a 100 MP canvas
    took 400 MB, uncounted): 4 bytes a pixel of the canvas are in the decode's estimate."""
    from edge.config import Defaults
    from edge.transform.options import parse_transformation
    from edge.transform.render import render_image

    anim = _webp_animation(2, 1000)  # a canvas of 1 MP: 4 MB
    with pytest.raises(BadRequest, match="^source too large: decoding it takes 4 MB"):
        render_image(anim, parse_transformation("w-50,pg-2"), "jpg", Defaults(), Limits(max_decode_memory=3_000_000))
    assert render_image(anim, parse_transformation("w-50,pg-2"), "jpg", Defaults(),
                        Limits(max_decode_memory=5_000_000)).width == 50
