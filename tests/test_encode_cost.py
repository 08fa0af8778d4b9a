"""The encode in the cost budget: GIF and AVIF encoders never look at libvips' kill flag within an
image, so the render deadline cannot stop them; WebP and PNG ones hold a thread until it does. Their
work is counted before any pixel is made (edge/transform/cost.py). And `bg-blurred` padding on an
animation: made without images larger than the box, and counted."""

import functools
from dataclasses import replace

import pytest
import pyvips

from edge.config import Defaults, Limits
from edge.errors import BadRequest
from edge.transform.as_is import without_metadata
from edge.transform.cost import check_render_cost, decode_cost, encode_cost, estimated_cost
from edge.transform.formats import final_formats, plan_format
from edge.transform.options import parse_transformation
from edge.transform.render import probe, render_image
from tests import imagecorpus as corpus
from tests.nodes import decode, local_config, write_config
from tests.photos import heic_bytes

MODERN = "image/avif,image/webp,*/*"
BUDGET = "megapixels of work exceed [limits] max_cost = 200"


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    root = tmp_path_factory.mktemp("encode-cost")
    (root / "photo.jpg").write_bytes(corpus.photo_jpeg(4000, 3000))
    (root / "photo.png").write_bytes(pyvips.Image.new_from_buffer(corpus.photo_jpeg(4000, 3000), "").pngsave_buffer())
    (root / "anim.gif").write_bytes(corpus.animated_gif(99))  # 99 frames of 32×32, ~5.6 KB
    (root / "long.gif").write_bytes(corpus._animation(99, 400).gifsave_buffer(keep="none"))  # 99 of 400×400
    return root


@pytest.fixture
async def node(node_factory, originals, tmp_path):
    return await node_factory(write_config(tmp_path, local_config(originals)))


def render(body: bytes, tr: str, name: str, accept: str | None = None, limits: Limits = Limits()):
    transformation = parse_transformation(tr)
    planned, _ = plan_format(transformation.output_format, name, accept)
    return render_image(body, transformation, planned, Defaults(), limits)


@pytest.mark.parametrize("path", [
    "/tr:w-8192,h-8192,c-force,f-gif/photo.jpg",  # refused at parse time, before the fetch
    "/tr:f-gif/photo.jpg",
    "/tr:w-8192,f-gif/photo.jpg",
    "/tr:w-6000,q-100,f-avif/photo.jpg",
    "/tr:f-avif/photo.jpg",  # 12 MP: priced for noise, ~10 s of one core that nothing could stop
    "/tr:w-2200,q-96,f-avif/photo.jpg",  # 3.6 MP above AVIF's own 85 (q-94)
    "/tr:lo-true,f-avif/photo.jpg",
    "/tr:q-100,f-avif/photo.png",
    "/tr:w-4000,h-3000,f-gif/photo.gif",  # f-gif names GIF: a missing original, refused before the fetch
])
async def test_gif_and_avif_encodes_over_the_budget_are_refused(node, path):
    response = await node.fetch(path)
    assert response.code == 400, (path, response.code, response.body[:200])
    body = response.body.decode().strip()
    assert body.startswith("transformation too costly: about ") and body.endswith(BUDGET), body


async def test_an_extension_names_no_format_a_refusal_could_be_made_for(node):
    """`photo.gif` at 12 MP costs ~270 units as GIF: an extension's format falls back to JPEG/PNG (`falls_back`)
    rather than refuse, so the URL alone refuses nothing before the fetch: a missing original is a 404."""
    assert (await node.fetch("/tr:w-4000,h-3000/photo.gif")).code == 404


@pytest.mark.parametrize("tr", ["f-gif", "w-8192,f-gif", "lo-true,f-avif", "q-100,f-avif"])
def test_the_refusal_comes_before_any_pixel_work(originals, tr):
    with pytest.raises(BadRequest, match=r"\[limits\] max_cost = 200"):
        render((originals / "photo.jpg").read_bytes(), tr, "photo.jpg",
               limits=Limits(render_timeout=0.001))  # a render that started would not be told apart


async def test_f_auto_falls_back_from_an_avif_over_budget_to_webp(node):
    response = await node.fetch("/tr:q-100,f-auto/photo.jpg", headers={"Accept": MODERN})
    assert response.code == 200, response.body[:200]
    image = decode(response)
    assert response.headers["Content-Type"] == "image/webp" and image.get("vips-loader") == "webpload_buffer"
    assert (image.width, image.height) == (4000, 3000) and response.headers["Vary"] == "Accept"
    again = await node.fetch("/tr:q-100,f-auto/photo.jpg", headers={"Accept": MODERN})
    assert again.headers["X-Cache"] == "HIT" and again.headers["Content-Type"] == "image/webp"


async def test_f_auto_without_webp_falls_back_to_jpeg(node):
    response = await node.fetch("/tr:lo-true,f-auto/photo.jpg", headers={"Accept": "image/avif"})
    assert response.code == 200, response.body[:200]
    image = decode(response)
    assert response.headers["Content-Type"] == "image/jpeg" and (image.width, image.height) == (4000, 3000)


def test_f_auto_keeps_avif_within_the_budget(originals):
    rendered = render((originals / "photo.jpg").read_bytes(), "w-2000,f-auto", "photo.jpg", MODERN)
    assert (rendered.format, rendered.width, rendered.height) == ("avif", 2000, 1500)
    rendered = render((originals / "photo.jpg").read_bytes(), "w-1000,f-gif", "photo.jpg")
    assert (rendered.format, rendered.width, rendered.height) == ("gif", 1000, 750)


def test_the_encode_and_the_blurred_background_are_counted():
    size = (4000, 3000)
    plain = estimated_cost(parse_transformation("w-1000"), size)
    assert estimated_cost(parse_transformation("w-1000"), size, formats=["jpg"]) == plain
    assert estimated_cost(parse_transformation("w-1000"), size, formats=["gif"]) > plain + 15
    assert estimated_cost(parse_transformation("w-1000"), size, formats=["avif"]) > plain + 8
    red = estimated_cost(parse_transformation("w-8192,h-1,cm-pad_resize,bg-red"), (32, 32), frames=99)
    blurred = estimated_cost(parse_transformation("w-8192,h-1,cm-pad_resize,bg-blurred"), (32, 32), frames=99)
    assert blurred >= red + 99


@pytest.mark.parametrize("layers, refused", [(2, False), (10, True)])
def test_each_layer_s_decode_of_its_original_counts(originals, layers, refused):
    """A layer decodes its original whole, however small it is drawn: ten layers of a 20 MP PNG at 10 px are ten
    20 MP decodes (a mutation leaving the layers' decodes out of the price survived every test)."""
    tr = "w-100:" + ",".join(["l-image,i-large.png,w-10,l-end"] * layers)
    overlays = {"large.png": pyvips.Image.black(5000, 4000).pngsave_buffer(compression=1)}
    render_it = functools.partial(render_image, (originals / "photo.jpg").read_bytes(), parse_transformation(tr),
                                  "jpg", Defaults(), Limits(), overlays)
    if not refused:
        assert pyvips.Image.new_from_buffer(render_it().body, "").width == 100
        return
    with pytest.raises(BadRequest) as raised:
        render_it()
    message = str(raised.value)
    assert message.startswith("transformation too costly: about ") and message.endswith(BUDGET), message
    assert int(message.split()[4]) >= layers * 20  # each layer's 20 megapixels of PNG decoded


async def test_blurred_padding_of_a_long_gif_as_gif_is_within_the_budget(node):
    # 99 frames of 8192x1 (20 s and 2 GB before the background was bounded): ~150 units, ~1.5 s
    response = await node.fetch("/tr:w-8192,h-1,cm-pad_resize,bg-blurred/anim.gif", timeout=15)
    assert response.code == 200, response.body[:200]
    image = decode(response, all_frames=True)
    assert image.get("vips-loader") == "gifload_buffer"
    assert image.get("n-pages") == 99 and (image.width, image.get("page-height")) == (8192, 1)


@pytest.mark.parametrize("tr", ["w-100", "w-400,f-webp"])
async def test_an_animation_within_the_budget_keeps_its_frames(node, tr):
    # 99 frames of 100×100 as GIF ~53 units, of 400×400 as WebP ~119
    response = await node.fetch(f"/tr:{tr}/anim.gif", timeout=30)
    image = decode(response, all_frames=True)
    assert response.code == 200 and image.get("n-pages") == 99 and image.width == int(tr[2:5].rstrip(","))


async def test_every_frame_of_an_animation_counts(node):
    # 99 frames of 400×400 as GIF, ~403 units: at 22 a megapixel of photo-like frames ~6 s of one core,
    # which the deadline would stop only after render_timeout (20 s) on each new width asked for
    response = await node.fetch("/tr:w-400/anim.gif")
    assert response.code == 400
    assert response.body.decode().strip() == f"transformation too costly: about 403 {BUDGET}"


@pytest.mark.parametrize("tr", ["", "/tr:f-gif", "/tr:f-auto", "/tr:w-400"])
async def test_an_animation_asked_for_as_it_is_is_served_as_it_is(node, originals, tr):
    # re-encoded as GIF, 99 frames of 400×400 would cost ~403 units: a plain URL serves the original's
    # bytes, and so does `f-auto` for a browser without WebP (with it: WebP, ~119)
    response = await node.fetch(f"{tr}/long.gif", headers={"Accept": "image/png,*/*"})
    if tr == "/tr:w-400":  # a step, even one that keeps the size, makes new frames: counted
        assert response.code == 400 and b"transformation too costly" in response.body
        return
    assert response.code == 200 and response.headers["Content-Type"] == "image/gif"
    assert response.body == (originals / "long.gif").read_bytes()
    assert decode(response, all_frames=True).get("n-pages") == 99


@pytest.fixture(scope="module")
def large_animation():
    """60 frames of 800×800, as GIF and as WebP: over the budget encoded as either (as GIF ~940 units)."""
    frames = corpus._animation(60, 800)
    return {"long.gif": frames.gifsave_buffer(keep="none"), "long.webp": frames.webpsave_buffer(Q=50, effort=0)}


@pytest.mark.parametrize("accept", [None, "image/png,*/*", "image/webp,*/*", "image/avif,*/*", MODERN])
def test_an_animation_over_the_budget_in_every_format_is_its_own_bytes_where_the_browser_takes_them(large_animation,
                                                                                                   accept):
    """`f-auto` on an animation no format's encode fits: its own bytes, a GIF for every browser, a WebP for one
    that takes WebP, else its first frame (JPEG, or AVIF where the browser takes it), never the 400 `f-auto` does
    not answer for its format alone (that browser had got it). A browser taking WebP but not AVIF had been refused
    the GIF (its plan was `f-webp`'s), and one taking neither had been sent the WebP."""
    takes_webp = accept is not None and "image/webp" in accept
    for name, body in large_animation.items():
        rendered = render(body, "f-auto", name, accept)
        if name == "long.webp" and not takes_webp:
            still = pyvips.Image.new_from_buffer(rendered.body, "")
            assert rendered.format == ("avif" if accept == "image/avif,*/*" else "jpg")
            assert (still.width, still.height, still.get_n_pages()) == (800, 800, 1)
            continue
        fmt = name[-4:].lstrip(".")  # its bytes without their metadata (the WebP's EXIF: tests/test_as_is.py)
        assert (rendered.format, rendered.body == without_metadata(body, fmt)) == (fmt, True), (name, accept)


def test_an_animation_is_refused_before_any_pixel_work():
    # 20 flat frames of 1000×1000 as WebP: cheap to make, ~506 units as GIF (10 s photo-like; 40 of them decodes)
    frames = pyvips.Image.arrayjoin([pyvips.Image.black(1000, 1000, bands=3) + i for i in range(20)], across=1)
    frames = frames.cast("uchar").copy(interpretation="srgb")
    frames.set_type(pyvips.GValue.gint_type, "page-height", 1000)
    body = frames.webpsave_buffer(lossless=True)
    with pytest.raises(BadRequest, match=r"about 506 megapixels"):
        render(body, "w-1000,f-gif", "anim.webp")
    assert render(body, "w-1000,f-webp", "anim.webp").width == 1000  # ~180


async def test_the_deadline_stops_an_animated_gif_between_frames(node_factory, tmp_path):
    """60 photo-like frames of 480x480 take ~6 s to quantise (over the default budget, raised here):
    the deadline (1 s here) stops them."""
    photo = pyvips.Image.new_from_buffer(corpus.photo_jpeg(4000, 3000), "")
    frames = [photo.crop(33 * i, 25 * i, 2000, 1500).thumbnail_image(480, height=480, size="force") for i in range(60)]
    animation = pyvips.Image.arrayjoin(frames, across=1).copy_memory()
    animation.set_type(pyvips.GValue.gint_type, "page-height", 480)
    (tmp_path / "noisy.gif").write_bytes(animation.gifsave_buffer(effort=1))
    node = await node_factory(write_config(tmp_path, local_config(tmp_path, before=(
        '[cache]\ndir = "cache"\n[limits]\nrender_timeout = "1s"\nmax_cost = 1000\n'))))
    response = await node.fetch("/tr:w-479/noisy.gif", timeout=30)
    assert (response.code, response.body) == (503, b"rendering took too long\n")


@pytest.mark.parametrize("tr, accept, fmt", [("w-8192,f-auto", MODERN, "jpg"), ("w-8192,f-auto", "image/webp", "jpg"),
                                             ("w-5000,f-auto", MODERN, "webp"), ("w-3000,f-auto", MODERN, "webp"),
                                             ("w-2000,f-auto", MODERN, "avif")])
def test_f_auto_falls_back_as_far_as_the_budget_needs(originals, tr, accept, fmt):
    # 8192x6144: AVIF ~2500 units, WebP ~300: JPEG; 5000x3750: WebP ~135; 3000x2250: AVIF ~330, WebP ~47;
    # 2000x1500: AVIF ~150
    transformation = parse_transformation(tr)
    planned, _ = plan_format(transformation.output_format, "photo.jpg", accept)
    plan = check_render_cost(transformation, planned, "jpegload_source", False, False, Limits(), Defaults(),
                             (4000, 3000))
    assert final_formats(plan, "jpegload_source", False, False) == [fmt]


@pytest.mark.parametrize("path", ["/tr:w-8192,q-100,f-webp/photo.jpg", "/tr:w-8192,h-8192,c-force,f-png/photo.jpg",
                                  "/tr:lo-true,f-webp/photo.jpg"])
async def test_webp_and_png_encodes_over_the_budget_are_refused(node, path):
    response = await node.fetch(path)
    assert response.code == 400 and response.body.decode().strip().endswith(BUDGET), response.body[:200]


@pytest.mark.parametrize("tr, size", [("w-8192,h-1", (8192, 1)), ("w-1,h-8192", (1, 8192))])
async def test_blurred_padding_of_a_long_gif_is_bounded(node, tr, size):
    # as WebP (stoppable, not counted): the background itself must be cheap; 20 s and 2 GB before
    response = await node.fetch(f"/tr:{tr},cm-pad_resize,bg-blurred,f-webp/anim.gif", timeout=15)
    assert response.code == 200, response.body[:200]
    image = decode(response, all_frames=True)
    assert image.get("n-pages") == 99 and (image.width, image.get("page-height")) == size


def test_blurred_padding_shows_the_image_blurred(originals):
    rendered = render(corpus.quadrants_png(200, 100), "w-400,h-100,cm-pad_resize,bg-blurred_1", "card.png")
    image = pyvips.Image.new_from_buffer(rendered.body, "")
    assert (image.width, image.height) == (400, 100)
    left, right = image.getpoint(2, 50), image.getpoint(397, 50)
    assert left != right  # the padding follows the picture's centre, not one colour


def test_an_output_over_the_side_limit_is_refused_as_such_not_as_costly():
    tall = pyvips.Image.black(100, 800).copy(interpretation="b-w").jpegsave_buffer()
    with pytest.raises(BadRequest, match=r"^output too large: 8192x65536, at most 8192 px a side$"):
        render(tall, "w-8192", "tall.jpg")  # 8192×65536: it read "transformation too costly: about 537 …"


@pytest.mark.parametrize("source, cpu_seconds", [((1000, 750), 0.07), ((2000, 1500), 0.44), ((4000, 3000), 0.30),
                                                 ((8000, 6000), 0.50), ((11000, 8250), 0.92)])
def test_a_trim_is_priced_by_what_it_decodes_and_what_it_searches(source, cpu_seconds):
    """`t` decodes its input whole and searches a reduced copy of 1 to 4 MP: priced 3 units a megapixel read, a
    300 px thumbnail trimmed from a 91 MP original (0.92 s of CPU more than without `t`) was refused, and a 3 MP one,
    searched whole (0.44 s), counted 9. Now at or over what it takes (a unit: ~20 ms), and far under the budget."""
    trim = parse_transformation("t-true,w-300")
    added = estimated_cost(trim, source) - estimated_cost(parse_transformation("w-300"), source)
    assert cpu_seconds / 0.020 <= added <= 3 * cpu_seconds / 0.020 + 10
    check_render_cost(trim, "jpg", "jpegload_source", False, False, Limits(), Defaults(), source)  # not refused


def test_f_auto_on_an_animation_over_the_frames_limit_is_its_first_frame(large_animation):
    """60 frames of 800×800 (38 MP decoded) over a `max_source_pixels` of 10 MP: `f-auto` serves the first frame, as
    for an animation over the cost budget (it had been a 400 `source too large`); a format the URL names, the 400."""
    limits = replace(Limits(), max_source_pixels=10_000_000)
    for name, body in large_animation.items():
        rendered = render(body, "f-auto", name, MODERN, limits)
        still = pyvips.Image.new_from_buffer(rendered.body, "")
        assert (rendered.format, still.width, still.height, still.get_n_pages()) == ("avif", 800, 800, 1)
        with pytest.raises(BadRequest, match="^source too large$"):
            render(body, "f-webp", name, MODERN, limits)


def test_a_thin_strip_s_trim_is_priced_as_searched_whole():
    """A 2,000,000×5 strip (10 MP) is searched whole by `t` (a reduced copy would be under 3 px high): priced as a
    reduced copy it counted ~56 units too few."""
    strip = (2_000_000, 5)
    added = estimated_cost(parse_transformation("t-true,w-300"), strip) - \
        estimated_cost(parse_transformation("w-300"), strip)
    assert added >= 7.5 * 10


def test_a_decode_is_priced_by_its_loader_and_a_progressive_jpeg_s_as_decoded_whole():
    """Units a source megapixel, by the header: a JPEG shrunk on load 0.7, a progressive one 2.5 (every scan decoded
    whole, which nothing stops), WebP 2.0, HEIC and AVIF 4.0, PNG 1.0 (mutations pricing a progressive JPEG as a
    baseline one, and a HEIC as a PNG, survived every test)."""
    photo = pyvips.Image.new_from_buffer(corpus.photo_jpeg(1000, 750), "")
    bodies = {0.7: photo.jpegsave_buffer(), 2.5: photo.jpegsave_buffer(interlace=True), 2.0: photo.webpsave_buffer(),
              4.0: heic_bytes(photo), 1.0: photo.pngsave_buffer()}
    for weight, body in bodies.items():
        assert decode_cost(probe(body, Limits())) == pytest.approx(weight * 0.75), weight
    avif = photo.heifsave_buffer(compression="av1", effort=0)
    assert decode_cost(probe(avif, Limits())) == pytest.approx(4.0 * 0.75)


@pytest.mark.parametrize("quality, lossless, units", [(90, False, 6.0), (91, False, 14.0), (80, True, 64.0)])
def test_a_webp_encode_is_priced_finer_only_above_quality_90(quality, lossless, units):
    """Per megapixel beyond the JPEG's: q-90 is WebP's ordinary encode, q-91 up its fine one, `lo-true` its lossless
    (a mutation pricing q-90 as fine survived)."""
    assert encode_cost("webp", (2000, 500), quality, lossless, avif_effort=2) == pytest.approx(units)


@pytest.mark.parametrize("effort, factor", [(0, 0.5), (2, 1.0), (4, 13.0), (12, 200.0)])
def test_an_avif_encode_is_priced_by_the_configured_effort(effort, factor):
    """`[defaults] avif_effort` multiplies libaom's work (4: 13 times 2's); one past 9 counts as 9 (a mutation leaving
    the effort out of the price survived: every test ran at the default, 2)."""
    assert encode_cost("avif", (2000, 500), 80, False, avif_effort=effort) == pytest.approx(48.0 * factor)


def test_the_steps_of_an_image_with_an_alpha_band_weigh_half_as_much_again():
    """Four bands for three, and premultiplied where pixels mix: the same URL on a 12 MP cut-out took 1.3–1.8 × the
    CPU of the RGB photo, upscales and blurs up to 2 × (a budget probe); the header tells, before any decode. An
    8192 px upscale blurred, 134 megapixels of steps: the RGB photo's is admitted (about 135 with its encode), the
    cut-out's refused at about 403 (336 before: 134 / 2 more)."""
    transformation = parse_transformation("w-8192,h-8192,c-force,bl-30")

    def cost(has_alpha: bool) -> str:
        return check_render_cost(transformation, "jpg", "pngload_source", has_alpha, False, Limits(), Defaults(),
                                 (4240, 2832))
    assert cost(False) == "jpg"
    with pytest.raises(BadRequest) as refused:
        cost(True)
    assert refused.value.message.startswith("transformation too costly: about 403 megapixels")
