"""Output parameters and request-level parameters over a real socket: f (incl. auto), the
extension rule, pr, lo, md, cp, orig, n, di, and the limits."""

import shutil
import time

import pytest

from edge.transform.formats import path_format
from tests.assets import close, pixel
from tests.nodes import SAMPLES, decode, loader, local_config, write_config
from tests.transform_node import fetch_image, image_node, image_root, images_config  # noqa: F401

MODERN = "image/avif,image/webp,image/apng,image/*,*/*;q=0.8"


@pytest.mark.parametrize("tr, mime, load", [
    ("f-jpg", "image/jpeg", "jpegload"),
    ("f-jpeg", "image/jpeg", "jpegload"),
    ("f-png", "image/png", "pngload"),
    ("f-webp", "image/webp", "webpload"),
    ("f-avif", "image/avif", "heifload"),
    ("f-gif", "image/gif", "gifload"),
    ("f-orig", "image/png", "pngload"),
])
async def test_explicit_formats(image_node, tr, mime, load):
    response, image = await fetch_image(image_node, f"/tr:w-50,{tr}/card.png")
    assert response.headers["Content-Type"] == mime and loader(response) == load
    assert (image.width, image.height) == (50, 25)
    assert "Vary" not in response.headers


@pytest.mark.parametrize("accept, path, mime", [
    (MODERN, "photo.jpg", "image/avif"),
    ("image/avif", "photo.jpg", "image/avif"),
    ("image/webp,*/*", "photo.jpg", "image/webp"),
    ("*/*", "photo.jpg", "image/jpeg"),
    ("*/*", "alpha.png", "image/png"),
    ("*/*", "card.png", "image/jpeg"),
    (MODERN, "anim.gif", "image/webp"),  # an animation: libvips writes no animated AVIF
    ("image/avif", "anim.gif", "image/gif"),  # the same, for a browser that takes no WebP
])
async def test_f_auto_negotiates_by_accept_and_transparency(image_node, accept, path, mime):
    response, _ = await fetch_image(image_node, f"/tr:w-32,f-auto/{path}", headers={"Accept": accept})
    assert response.headers["Content-Type"] == mime
    assert response.headers["Vary"] == "Accept"


async def test_f_auto_keeps_animation_as_webp(image_node):
    response = await image_node.fetch("/tr:w-16,f-auto/anim.gif", headers={"Accept": MODERN})
    image = decode(response)
    assert loader(response) == "webpload" and image.get("n-pages") == 5


async def test_each_accept_class_is_its_own_cache_entry(image_node):
    avif = await image_node.fetch("/tr:w-40,f-auto/photo.jpg", headers={"Accept": MODERN})
    jpeg = await image_node.fetch("/tr:w-40,f-auto/photo.jpg", headers={"Accept": "*/*"})
    again = await image_node.fetch("/tr:w-40,f-auto/photo.jpg", headers={"Accept": MODERN})
    assert jpeg.headers["Content-Type"] == "image/jpeg" and jpeg.headers["X-Cache"] == "MISS"
    assert again.headers["X-Cache"] == "HIT" and again.body == avif.body


async def test_an_animation_for_a_browser_without_webp_is_not_the_entry_of_one_with_it(image_node):
    """AVIF alone and AVIF with WebP plan alike for a still image, not for an animation: WebP for one, GIF for the
    other, each its own entry (the AVIF-only browser cannot show an animated WebP)."""
    webp = await image_node.fetch("/tr:w-16,f-auto/anim.gif", headers={"Accept": MODERN})
    gif = await image_node.fetch("/tr:w-16,f-auto/anim.gif", headers={"Accept": "image/avif"})
    assert (webp.headers["Content-Type"], loader(webp)) == ("image/webp", "webpload")
    assert (gif.headers["Content-Type"], loader(gif), gif.headers["X-Cache"]) == ("image/gif", "gifload", "MISS")
    assert decode(gif).get("n-pages") == 5 and gif.headers["Vary"] == "Accept"


async def test_format_follows_the_extension_then_the_original(image_node):
    # jpeg-named.png holds JPEG bytes: the extension asks for PNG
    response, _ = await fetch_image(image_node, "/tr:w-20/jpeg-named.png")
    assert loader(response) == "pngload"
    response, _ = await fetch_image(image_node, "/tr:w-20/no-extension")
    assert loader(response) == "jpegload"
    response, _ = await fetch_image(image_node, "/tr:w-20,f-webp/jpeg-named.png")
    assert loader(response) == "webpload"


@pytest.mark.parametrize("path, fmt", [
    ("shoe.JPG", "jpg"), ("a/b.c/shoe.large.webp", "webp"), ("shoe.jpeg", "jpg"), ("shoe..png", "png"),
    ("a.jpg/shoe", None), (".jpg", None), ("a/..avif", None), ("shoe.", None), ("shoe.tiff", None), ("", None),
])
def test_the_extension_is_the_last_segment_s_as_posixpath_reads_it(path, fmt):
    assert path_format(path) == fmt


@pytest.mark.parametrize("path, frames", [("anim.gif", 5), ("anim.webp", 5)])
async def test_animations_stay_animated(image_node, path, frames):
    response = await image_node.fetch(f"/tr:w-16/{path}")
    image = decode(response, all_frames=True)
    assert image.get("n-pages") == frames and image.get("page-height") == 16
    # frame colours in order: red, green, blue, ...
    assert close(pixel(image, 8, 8), (255, 0, 0)) and close(pixel(image, 8, 16 + 8), (0, 255, 0))


@pytest.mark.parametrize("path, load", [("anim.gif", "gifload"), ("anim.webp", "webpload")])
async def test_f_orig_of_an_animation_keeps_every_frame_in_the_original_s_format(image_node, path, load):
    response = await image_node.fetch(f"/tr:w-16,f-orig/{path}")
    image = decode(response, all_frames=True)
    assert loader(response) == load and image.get("n-pages") == 5 and image.get("page-height") == 16
    assert close(pixel(image, 8, 8), (255, 0, 0)) and close(pixel(image, 8, 16 + 8), (0, 255, 0))


@pytest.mark.parametrize("tr", ["f-jpg", "f-png", "f-avif"])
async def test_animations_become_their_first_frame_where_the_format_cannot_animate(image_node, tr):
    response, image = await fetch_image(image_node, f"/tr:w-16,{tr}/anim.gif")
    assert (image.width, image.height) == (16, 16) and close(pixel(image, 8, 8), (255, 0, 0), 20)


async def test_progressive(image_node):
    response, _ = await fetch_image(image_node, "/tr:pr-true/photo.jpg")
    assert decode(response).get("jpeg-multiscan") == 1
    response, _ = await fetch_image(image_node, "/photo.jpg")
    assert decode(response).get("jpeg-multiscan") == 0
    response, image = await fetch_image(image_node, "/tr:pr-true/card.png")
    assert image.get("interlaced") == 1
    for tr, interlaced in (("pr-true,f-gif", True), ("f-gif", False)):  # GIF's interlaced rows
        response, image = await fetch_image(image_node, f"/tr:{tr}/card.png")
        assert bool(image.get_typeof("interlaced") and image.get("interlaced")) == interlaced, tr


@pytest.mark.parametrize("fmt", ["webp", "avif"])
async def test_lossless(image_node, fmt):
    _, image = await fetch_image(image_node, f"/tr:f-{fmt},lo-true/photo.jpg")
    _, reference = await fetch_image(image_node, "/tr:f-png/photo.jpg")
    assert (image - reference).abs().max() <= (0 if fmt == "webp" else 2)
    _, lossy = await fetch_image(image_node, f"/tr:f-{fmt}/photo.jpg")
    assert (lossy - reference).abs().max() > 2


async def test_metadata_stripped_by_default_and_kept_with_md(image_node):
    _, stripped = await fetch_image(image_node, "/exif-6.jpg")
    assert not stripped.get_typeof("exif-data") and not stripped.get_typeof("orientation")
    _, kept = await fetch_image(image_node, "/tr:md-true/exif-6.jpg")
    assert kept.get_typeof("exif-data")
    # the pixels are upright already: the orientation kept in the file must say so
    assert kept.get("orientation") == 1 and (kept.width, kept.height) == (64, 32)


async def test_colour_profile_converted_to_srgb_by_default_and_kept_with_cp(image_node, image_root):
    import pyvips
    source = pyvips.Image.new_from_file(str(image_root / "p3.jpg"))
    srgb_reference = source.icc_transform("srgb", embedded=True)
    _, converted = await fetch_image(image_node, "/tr:f-png/p3.jpg")
    assert not converted.get_typeof("icc-profile-data")
    assert (converted - srgb_reference).abs().avg() < 2 < (converted - source).abs().avg()
    _, kept = await fetch_image(image_node, "/tr:f-png,cp-true/p3.jpg")
    assert kept.get_typeof("icc-profile-data") and (kept - source).abs().avg() < 2


async def test_orig_serves_the_bytes_untouched(image_node, image_root):
    response, _ = await fetch_image(image_node, "/tr:orig-true,w-10/photo.jpg")
    assert response.body == (image_root / "photo.jpg").read_bytes()
    response, _ = await fetch_image(image_node, "/tr:orig-true,f-auto/photo.jpg", headers={"Accept": "image/avif"})
    assert response.body == (image_root / "photo.jpg").read_bytes() and "Vary" not in response.headers


@pytest.mark.parametrize("tr, header, values", [("f-auto", "Accept", ("image/avif", "image/webp", "*/*")),
                                                ("w-auto", "Sec-CH-Width", ("150", "777", "1900")),
                                                ("w-10,dpr-auto", "Sec-CH-DPR", ("1.5", "2", "3"))])
async def test_orig_is_one_entry_whatever_the_headers_that_would_have_shaped_an_output(image_node, image_root, tr,
                                                                                        header, values):
    """`orig-true` ignores every other parameter: the same bytes had been kept once per format `f-auto` would have
    chosen, and once per client-hint value (a 40 MB original up to 83 × 51 times) with a `Vary` on the hints that
    split the caches in front too (HTTP-semantics probe)."""
    original = (image_root / "photo.jpg").read_bytes()
    labels = []
    for value in values:
        response = await image_node.fetch(f"/tr:{tr},orig-true/photo.jpg", headers={header: value})
        assert response.body == original and "Vary" not in response.headers
        labels.append(response.headers["X-Cache"])
    assert labels == ["MISS", "HIT", "HIT"]


async def test_named_transformation_is_the_same_cache_entry_as_its_definition(image_node):
    named, image = await fetch_image(image_node, "/tr:n-thumb/photo.jpg")
    assert (image.width, image.height) == (200, 133)
    spelled, _ = await fetch_image(image_node, "/tr:w-200,h-200,c-at_max/photo.jpg")
    assert spelled.headers["X-Cache"] == "HIT" and spelled.body == named.body


async def test_named_transformation_with_more_parameters_and_steps(image_node):
    response, image = await fetch_image(image_node, "/tr:n-tiny_png,rt-90/photo.jpg")
    assert loader(response) == "pngload" and (image.width, image.height) == (13, 20)
    response, image = await fetch_image(image_node, "/tr:n-thumb,f-webp/photo.jpg")
    assert loader(response) == "webpload" and image.width == 200


async def test_unknown_named_transformation_is_a_400(image_node):
    response, _ = await fetch_image(image_node, "/tr:n-nope/photo.jpg", status=400)
    assert b"n-nope" in response.body and b"unknown named transformation" in response.body


async def test_named_only_endpoint(image_node):
    _, image = await fetch_image(image_node, "/named/tr:n-thumb/photo.jpg")
    assert image.width == 200
    response, _ = await fetch_image(image_node, "/named/tr:w-100/photo.jpg", status=400)
    assert b"named transformations" in response.body
    response, _ = await fetch_image(image_node, "/named/photo.jpg?tr=n-thumb,q-20", status=400)
    await fetch_image(image_node, "/named/photo.jpg")  # no transformation: the original, optimised


async def test_default_image_when_the_original_is_missing(image_node):
    response, image = await fetch_image(image_node, "/tr:w-20,di-defaults@@missing.png/nothing-here.jpg")
    assert (image.width, image.height) == (20, 10)
    assert close(pixel(image, 2, 2), (255, 0, 0))
    # no date: the URL's image has none, and the stand-in's was made up (a day before its file's, HTTP probe)
    assert "Last-Modified" not in response.headers
    response, image = await fetch_image(image_node, "/tr:w-20,di-defaults@@missing.png/photo.jpg")
    assert image.height == 13  # the original exists: the default image is not used
    assert "Last-Modified" in response.headers


async def test_missing_default_image_is_a_404(image_node):
    await fetch_image(image_node, "/tr:di-defaults@@gone.png/nothing-here.jpg", status=404)


@pytest.mark.parametrize("path", ["/bomb.png", "/tr:w-10/bomb.png"])
async def test_decompression_bomb_is_a_400_from_the_header(image_node, path):
    response, _ = await fetch_image(image_node, path, status=400)
    assert response.body == b"source too large\n"


@pytest.mark.parametrize("path", ["/truncated.jpg", "/tr:w-10/truncated.jpg", "/tr:f-webp/truncated.jpg",
                                  "/html.jpg", "/tr:orig-true/html.jpg"])
async def test_corrupt_sources_are_a_422(image_node, path):
    response, _ = await fetch_image(image_node, path, status=422)
    assert response.body == b"unsupported or corrupt source image\n"


async def test_frame_limit(node_factory, image_root, tmp_path):
    node = await node_factory(write_config(tmp_path, images_config(image_root, "[limits]\nmax_frames = 3\n")))
    response, _ = await fetch_image(node, "/tr:w-10/anim.gif", status=400)
    assert response.body == b"source too large: more than 3 frames\n"


async def test_webp_has_its_own_side_limit(node_factory, image_root, tmp_path):
    node = await node_factory(write_config(tmp_path, images_config(image_root, "[limits]\nmax_output_side = 20000\n")))
    _, image = await fetch_image(node, "/tr:w-17000,h-2,c-force,f-png/card.png")
    assert image.width == 17000
    response, _ = await fetch_image(node, "/tr:w-17000,h-2,c-force,f-webp/card.png", status=400)
    assert b"16383" in response.body


async def test_avif_effort_comes_from_config(node_factory, image_root, tmp_path):
    bodies = []
    for effort in (0, 6):  # each node with its own cache folder
        (tmp_path / str(effort)).mkdir()
        config = images_config(image_root, f"[defaults]\navif_effort = {effort}\n")
        node = await node_factory(write_config(tmp_path / str(effort), config))
        response, _ = await fetch_image(node, "/tr:w-200,f-avif/photo.jpg")
        assert response.headers["Content-Type"] == "image/avif"
        bodies.append(response.body)
    assert bodies[0] != bodies[1]


async def test_a_default_image_stands_in_only_as_long_as_a_404_is_kept(node_factory, tmp_path):
    """Caches in front keep the `di-` image no longer than a 404, and the node serves the real image once
    it is uploaded and the 404 behind the stand-in has expired (it kept the stand-in a day)."""
    root = tmp_path / "images"
    root.mkdir()
    shutil.copy(SAMPLES / "coffee.jpg", root / "placeholder.jpg")  # 3:2
    node = await node_factory(write_config(tmp_path, local_config(root)))
    url = "/tr:w-30,di-placeholder.jpg/upload.jpg"
    response, image = await fetch_image(node, url)
    assert (image.width, image.height) == (30, 20) and response.headers["Cache-Control"] == "public, max-age=60"
    node.node.clock = lambda: time.time() + 20
    response, image = await fetch_image(node, url)  # a hit, still a stand-in: kept for the 40 s it has left
    assert response.headers["X-Cache"] == "HIT" and response.headers["Cache-Control"] == "public, max-age=40"
    shutil.copy(SAMPLES / "astronaut.jpg", root / "upload.jpg")  # square
    node.node.clock = lambda: time.time() + 61
    response, image = await fetch_image(node, url)
    assert (image.width, image.height) == (30, 30) and response.headers["X-Cache"] == "MISS"
    assert response.headers["Cache-Control"] == "public, max-age=31536000"


async def test_the_default_image_uploaded_as_the_missing_one_is_no_longer_served_as_a_stand_in(node_factory, tmp_path):
    """The real original can be the placeholder's very file (copied with its time: the same version): the output,
    the same pixels, is made again as the URL's own, kept a year and dated, not confirmed as the stand-in it was,
    which caches in front kept for a minute at a time, forever."""
    root = tmp_path / "images"
    root.mkdir()
    shutil.copy(SAMPLES / "coffee.jpg", root / "placeholder.jpg")
    node = await node_factory(write_config(tmp_path, local_config(root)))
    url = "/tr:w-30,di-placeholder.jpg/upload.jpg"
    response, _ = await fetch_image(node, url)
    assert response.headers["Cache-Control"] == "public, max-age=60" and "Last-Modified" not in response.headers
    shutil.copy2(root / "placeholder.jpg", root / "upload.jpg")
    node.node.clock = lambda: time.time() + 61
    response, image = await fetch_image(node, url)
    assert (image.width, image.height) == (30, 20) and response.headers["X-Cache"] == "MISS"
    assert response.headers["Cache-Control"] == "public, max-age=31536000" and "Last-Modified" in response.headers


@pytest.mark.parametrize("source", ["photo.jpg", "anim.gif"])
async def test_opacity_in_a_gif_is_flattened_not_dropped(image_node, source):
    """GIF shows a pixel or not: `o-50` is the faded image on white, as in JPEG (it was wholly transparent)."""
    _, gif = await fetch_image(image_node, f"/tr:w-20,o-50,f-gif/{source}")
    _, jpeg = await fetch_image(image_node, f"/tr:w-20,o-50,f-jpg/{source}")
    assert gif.bands == 3 or gif[3].min() == 255  # nothing left out
    assert close(pixel(gif.flatten() if gif.hasalpha() else gif, 10, 5), pixel(jpeg, 10, 5), tolerance=24)
