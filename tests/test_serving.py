"""The request path over a real socket: routing, origin order, transformations, cache, HTTP semantics."""

import asyncio
import email.utils
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import pyvips

from edge.server import attachment
from edge.testing import total
from tests import imagecorpus
from tests.assets import pixel
from tests.nodes import SAMPLES, decode, loader, local_config, write_config
from tests.photos import SIZE, photos  # noqa: F401 - photos is a fixture

# astronaut.jpg is 512×512, chelsea.jpg 451×300, logo-transparent.png has alpha.
SAMPLES_CONFIG = local_config()


@pytest.fixture
async def samples(node_factory, tmp_path):
    return await node_factory(write_config(tmp_path, SAMPLES_CONFIG))


async def test_width_resizes_and_second_request_is_a_hit(samples):
    first = await samples.fetch("/tr:w-300/astronaut.jpg")
    assert first.code == 200
    assert first.headers["Content-Type"] == "image/jpeg"
    assert first.headers["X-Cache"] == "MISS"
    image = decode(first)
    assert (image.width, image.height, loader(first)) == (300, 300, "jpegload")

    second = await samples.fetch("/tr:w-300/astronaut.jpg")
    assert second.headers["X-Cache"] == "HIT"
    assert second.body == first.body
    assert second.headers["ETag"] == first.headers["ETag"]
    assert second.headers["Cache-Control"] == "public, max-age=31536000"


@pytest.mark.parametrize("transformation, size", [
    ("w-200", (200, 133)),
    ("h-100", (150, 100)),
    ("w-0.5", (226, 150)),
    ("h-0.5", (226, 150)),
    ("w-200,h-200", (200, 200)),  # maintain_ratio: cover, then crop
    ("w-200,h-200,c-force", (200, 200)),
    ("w-200,h-200,c-at_max", (200, 133)),
    ("w-1000,h-1000,c-at_max", (451, 300)),  # at_max never enlarges
    ("w-1000,h-1000,c-at_max_enlarge", (1000, 665)),
    ("w-200,h-200,c-at_least", (301, 200)),
    ("w-1000,h-1000,c-maintain_ratio_no_enlarge", (451, 300)),
])
async def test_geometry(samples, transformation, size):
    response = await samples.fetch(f"/tr:{transformation}/chelsea.jpg")
    assert response.code == 200, response.body
    image = decode(response)
    assert (image.width, image.height) == size


async def test_force_stretches_instead_of_cropping(tmp_path, node_factory):
    # left half red, right half blue: maintain_ratio to a square crops the sides, force keeps both
    (tmp_path / "o").mkdir()
    red_blue = pyvips.Image.black(200, 100).new_from_image([255, 0, 0])
    red_blue = red_blue.insert(red_blue.new_from_image([0, 0, 255]).crop(0, 0, 100, 100), 100, 0)
    (tmp_path / "o" / "rb.png").write_bytes(red_blue.pngsave_buffer())
    node = await node_factory(write_config(tmp_path, local_config(tmp_path / "o")))
    forced = decode(await node.fetch("/tr:w-100,h-100,c-force/rb.png"))
    assert pixel(forced, 5, 50)[:3] == (255, 0, 0) and pixel(forced, 95, 50)[:3] == (0, 0, 255)
    cropped = decode(await node.fetch("/tr:w-100,h-100,fo-left/rb.png"))
    assert pixel(cropped, 5, 50)[:3] == (255, 0, 0) and pixel(cropped, 95, 50)[:3] == (255, 0, 0)
    right = decode(await node.fetch("/tr:w-100,h-100,fo-right/rb.png"))
    assert pixel(right, 5, 50)[:3] == (0, 0, 255)


async def test_query_form_and_path_form_share_one_cache_entry(samples):
    path_form = await samples.fetch("/tr:w-120,h-80/chelsea.jpg")
    query_form = await samples.fetch("/chelsea.jpg?tr=h-80,w-120&utm=cache-buster")
    assert query_form.headers["X-Cache"] == "HIT"
    assert query_form.body == path_form.body


@pytest.mark.parametrize("query, path", [("w-100%20", "w-100%20"), ("%20w-100", "%20w-100"),
                                         ("w-70,l-text,i-a%00b,l-end", "w-70,l-text,i-a%00b,l-end")])
async def test_the_query_form_answers_what_the_path_form_does(samples, query, path):
    """Tornado's query arguments are stripped, control characters made spaces: `?tr=w-100%20` was `w-100` (the
    path form's 400), a text layer's NUL a space (a cache entry shared with `i-a%20b`)."""
    in_path, in_query = await samples.fetch(f"/tr:{path}/coffee.jpg"), await samples.fetch(f"/coffee.jpg?tr={query}")
    assert in_path.code == 400 and (in_query.code, in_query.body) == (in_path.code, in_path.body)


async def test_quality_changes_the_bytes(samples):
    low = await samples.fetch("/tr:w-300,q-10/astronaut.jpg")
    high = await samples.fetch("/tr:w-300,q-95/astronaut.jpg")
    assert len(low.body) * 2 < len(high.body)
    assert decode(low).width == decode(high).width == 300


@pytest.mark.parametrize("transformation, accept, content_type, vary", [
    ("f-png", None, "image/png", False),
    ("f-webp", None, "image/webp", False),
    ("f-avif", None, "image/avif", False),
    ("f-jpeg", None, "image/jpeg", False),
    ("f-auto", "image/avif,image/webp,*/*", "image/avif", True),
    ("f-auto", "image/webp,*/*", "image/webp", True),
    ("f-auto", "*/*", "image/jpeg", True),
])
async def test_output_format(samples, transformation, accept, content_type, vary):
    headers = {"Accept": accept} if accept else {}
    response = await samples.fetch(f"/tr:w-64,{transformation}/astronaut.jpg", headers=headers)
    assert response.headers["Content-Type"] == content_type
    assert decode(response).width == 64
    assert ("Vary" in response.headers) is vary
    if vary:
        assert response.headers["Vary"] == "Accept"


@pytest.mark.parametrize("path, content_type", [
    ("/tr:w-64,f-orig/logo-transparent.png", "image/png"),
    ("/tr:w-64,f-orig/astronaut.jpg", "image/jpeg"),
    ("/tr:w-64/astronaut.jpg?tr=f-orig", "image/jpeg"),
])
async def test_orig_format_keeps_the_originals_format(samples, path, content_type):
    response = await samples.fetch(path)
    assert response.headers["Content-Type"] == content_type
    assert decode(response).width == 64


async def test_auto_format_keeps_transparency_as_png_for_old_browsers(samples):
    response = await samples.fetch("/tr:w-64,f-auto/logo-transparent.png", headers={"Accept": "image/jpeg"})
    assert response.headers["Content-Type"] == "image/png"
    assert decode(response).hasalpha()


async def test_auto_format_variants_are_cached_per_accept(samples):
    webp = await samples.fetch("/tr:w-50,f-auto/astronaut.jpg", headers={"Accept": "image/webp"})
    jpeg = await samples.fetch("/tr:w-50,f-auto/astronaut.jpg", headers={"Accept": "image/jpeg"})
    assert (loader(webp), loader(jpeg)) == ("webpload", "jpegload")
    again = await samples.fetch("/tr:w-50,f-auto/astronaut.jpg", headers={"Accept": "image/webp"})
    assert again.headers["X-Cache"] == "HIT" and again.body == webp.body


async def test_orig_true_serves_the_original_bytes(samples):
    response = await samples.fetch("/tr:w-100,orig-true/chelsea.jpg")
    assert response.body == (SAMPLES / "chelsea.jpg").read_bytes()
    assert response.headers["Content-Type"] == "image/jpeg"


async def test_no_transformation_serves_an_optimised_copy_in_the_same_format(samples):
    response = await samples.fetch("/logo-transparent.png")
    image = decode(response)
    original = imagecorpus.pyvips.Image.new_from_file(str(SAMPLES / "logo-transparent.png"))
    assert response.headers["Content-Type"] == "image/png"
    assert (image.width, image.height, image.hasalpha()) == (original.width, original.height, True)


async def test_etag_gives_304_and_head_gives_headers_only(samples):
    first = await samples.fetch("/tr:w-80/coffee.jpg")
    not_modified = await samples.fetch("/tr:w-80/coffee.jpg", headers={"If-None-Match": first.headers["ETag"]})
    assert not_modified.code == 304 and not_modified.body == b""
    assert not_modified.headers["ETag"] == first.headers["ETag"]
    other = await samples.fetch("/tr:w-80/coffee.jpg", headers={"If-None-Match": '"something-else"'})
    assert other.code == 200 and other.body == first.body

    head = await samples.fetch("/tr:w-80/coffee.jpg", method="HEAD")
    assert head.code == 200 and head.body == b""
    assert int(head.headers["Content-Length"]) == len(first.body)
    assert head.headers["Content-Type"] == "image/jpeg"


async def test_every_answer_has_a_current_date_and_no_server_header(samples):
    before = time.time()
    answers = [await samples.fetch("/tr:w-80/coffee.jpg"), await samples.fetch("/tr:w-80/coffee.jpg"),
               await samples.fetch("/tr:w-80/missing.jpg"), await samples.fetch("/_edge/health")]
    after = time.time()
    for answer in answers:
        date = email.utils.parsedate_to_datetime(answer.headers["Date"]).timestamp()
        assert int(before) <= date <= after and answer.headers["Date"].endswith(" GMT")
        assert "Server" not in answer.headers
    assert [answer.code for answer in answers] == [200, 200, 404, 200]


async def test_attachment_query(samples):
    """A download named as the URL names the image, with the extension of what is sent."""
    response = await samples.fetch("/tr:w-10/coffee.jpg?ik-attachment=true")
    assert response.headers["Content-Disposition"] == "attachment; filename=\"coffee.jpg\"; filename*=UTF-8''coffee.jpg"
    as_webp = await samples.fetch("/tr:w-10,f-webp/coffee.jpg?ik-attachment=true")
    assert decode(as_webp).get("vips-loader").startswith("webpload")
    assert as_webp.headers["Content-Disposition"] == \
        "attachment; filename=\"coffee.webp\"; filename*=UTF-8''coffee.webp"


@pytest.mark.parametrize("path, content_type, disposition", [
    ("/tr:w-10/caf%C3%A9%20%22menu%22.jpg", "image/avif",
     "attachment; filename=\"caf_ _menu_.avif\"; filename*=UTF-8''caf%C3%A9%20%22menu%22.avif"),
    ("/caf\xc3\xa9.jpg", "image/jpeg", "attachment; filename=\"caf_.jpg\"; filename*=UTF-8''caf%C3%A9.jpg"),  # unencoded
    ("/photos/sample", "image/png", "attachment; filename=\"sample.png\"; filename*=UTF-8''sample.png"),
    ("/v1.2/a.b.tiff", "image/jpeg", "attachment; filename=\"a.b.jpg\"; filename*=UTF-8''a.b.jpg"),
    ("/x/%0D%0Aevil.gif", "image/gif", "attachment; filename=\"__evil.gif\"; filename*=UTF-8''%0D%0Aevil.gif"),
    ("/", "image/webp", "attachment; filename=\"image.webp\"; filename*=UTF-8''image.webp"),
    # a name whose extension says the type sent is kept as it is (ImageKit keeps the file's name)
    ("/p.JPG", "image/jpeg", "attachment; filename=\"p.JPG\"; filename*=UTF-8''p.JPG"),
    ("/p.jpeg", "image/jpeg", "attachment; filename=\"p.jpeg\"; filename*=UTF-8''p.jpeg"),
    ("/p.jpeg", "image/webp", "attachment; filename=\"p.webp\"; filename*=UTF-8''p.webp"),
])
def test_an_attachments_file_name_is_safe_in_a_header(path, content_type, disposition):
    assert attachment(path, content_type) == disposition


@pytest.mark.parametrize("path, status, body", [
    ("/tr:w-abc/astronaut.jpg", 400, "invalid transformation: w-abc: expected a number"),
    ("/tr:w-0/astronaut.jpg", 400, "invalid transformation: w-0: must be a positive number"),
    ("/tr:q-101/astronaut.jpg", 400, "invalid transformation: q-101: must be an integer from 1 to 100"),
    ("/tr:zz-1/astronaut.jpg", 400, "invalid transformation: zz-1: unknown parameter"),
    ("/tr:f-bmp/astronaut.jpg", 400, "invalid transformation: f-bmp: must be one of"),
    ("/astronaut.jpg?tr=c-sideways", 400, "invalid transformation: c-sideways: must be one of"),
    ("/astronaut.jpg?tr=w-100,h-50&tr=rt-90", 400, "invalid transformation: tr: given more than once in the query"),
    ("/astronaut.jpg?tr=w-100&tr=", 400, "invalid transformation: tr: given more than once in the query"),
    ("/tr:w-9000/astronaut.jpg", 400, "output too large: 9000x9000, at most 8192 px a side"),
    ("/no-such-image.jpg", 404, "not found"),
    ("/%ff.jpg", 400, "invalid path: not UTF-8 after percent-decoding"),
    ("/astronaut.jpg?tr=w-%ff", 400, "invalid transformation: tr: not UTF-8 after percent-decoding"),
])
async def test_bad_requests_get_a_one_line_answer(samples, path, status, body):
    response = await samples.fetch(path)
    assert response.code == status
    assert response.body.decode().startswith(body) and response.body.count(b"\n") == 1
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    if status == 404:
        assert response.headers["X-Edge-Error"] == "not_found"
        assert response.headers["Cache-Control"] == "public, max-age=60"
    else:
        assert response.headers["Cache-Control"] == "no-store"


@pytest.fixture
async def awkward(node_factory, tmp_path):
    folder = tmp_path / "awkward"
    folder.mkdir()
    (folder / "page.jpg").write_bytes(imagecorpus.not_an_image())
    # a PDF a Cloudinary account served as an image (its pages), read as "corrupt" (Cloudinary probe)
    (folder / "manual.jpg").write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n")
    # an intact SVG, which the config leaves unread (`allow_svg`): it had been "corrupt" too (Cloudinary probe)
    (folder / "logo.png").write_bytes(b'<svg xmlns="http://www.w3.org/2000/svg" width="20" height="20"/>')
    # an origin's login page with an inline icon: no SVG document, whatever it holds
    (folder / "login.png").write_bytes(b'<!doctype html><html><body><svg width="9"></svg>Sign in</body></html>')
    (folder / "truncated.jpg").write_bytes(imagecorpus.truncated_jpeg())
    # an animated AVIF, which browsers play and libvips does not read: "corrupt" had sent the operator to look for
    # a broken file (exotic-formats probe)
    (folder / "clip.avif").write_bytes(imagecorpus.animated_avif())
    (folder / "clip0.avif").write_bytes(bytes(4) + imagecorpus.animated_avif()[4:])  # its file type box "to the end"
    (folder / "bomb.png").write_bytes(imagecorpus.decompression_bomb_png())
    (folder / "big.jpg").write_bytes(imagecorpus.photo_jpeg(600, 600))  # ~80 kB
    config = local_config(folder, after="[limits]\nmax_source_bytes = 60000")
    return await node_factory(write_config(tmp_path, config))


@pytest.mark.parametrize("path, status, body", [
    ("/tr:w-10/page.jpg", 422, "unsupported or corrupt source image"),
    ("/tr:w-10,orig-true/page.jpg", 422, "unsupported or corrupt source image"),
    ("/tr:w-10/truncated.jpg", 422, "unsupported or corrupt source image"),
    ("/tr:w-10/manual.jpg", 422, "unsupported source: a PDF document (Illustrator's .ai too); the node reads JPEG, "
                                 "PNG, WebP, AVIF, HEIC, GIF and TIFF"),
    ("/tr:w-10/logo.png", 422, "unsupported source: an SVG document, read only with [limits] allow_svg = true; the "
                               "node reads JPEG, PNG, WebP, AVIF, HEIC, GIF and TIFF"),
    ("/tr:w-10/login.png", 422, "unsupported or corrupt source image"),
    ("/clip.avif", 422, "unsupported source: an animated AVIF, which libvips does not read; the node reads JPEG, "
                        "PNG, WebP, AVIF, HEIC, GIF and TIFF (AVIF stills)"),
    ("/clip0.avif", 422, "unsupported source: an animated AVIF, which libvips does not read; the node reads JPEG, "
                         "PNG, WebP, AVIF, HEIC, GIF and TIFF (AVIF stills)"),
    ("/tr:w-10/bomb.png", 400, "source too large"),
    ("/tr:w-10/big.jpg", 400, "source too large"),  # over max_source_bytes: refused before decoding
])
async def test_sources_that_cannot_be_served(awkward, path, status, body):
    response = await awkward.fetch(path)
    assert (response.code, response.body.decode()) == (status, body + "\n")


@pytest.mark.parametrize("name, original, content_type", [
    ("scan.tif", lambda: imagecorpus.photo_tiff(300, 200), "image/tiff"),
    ("phone.jpg", imagecorpus.ultra_hdr_jpeg, "image/jpeg"),
])
async def test_orig_true_serves_any_readable_original_as_it_is(node_factory, tmp_path, name, original, content_type):
    """Originals in a format the node reads but does not write (TIFF), or under a loader of their own
    (an Ultra HDR JPEG), are served untouched too, with their own type."""
    body = original()
    (tmp_path / name).write_bytes(body)
    node = await node_factory(write_config(tmp_path, local_config(tmp_path)))
    response = await node.fetch(f"/tr:orig-true/{name}")
    assert (response.code, response.headers["Content-Type"], response.body) == (200, content_type, body)
    resized = await node.fetch(f"/tr:w-30/{name}")  # and rendered as any other original
    assert (resized.code, decode(resized).width) == (200, 30)


async def test_orig_true_serves_a_12_mp_tiff_untouched_and_renders_it_too(node_factory, tmp_path, photos):
    body = pyvips.Image.new_from_file(str(photos.path(photos.jpeg))).tiffsave_buffer(compression="jpeg", Q=85)
    (tmp_path / "scan.tif").write_bytes(body)
    node = await node_factory(write_config(tmp_path, local_config(tmp_path)))
    response = await node.fetch("/tr:orig-true/scan.tif")
    assert (response.code, response.headers["Content-Type"], response.body) == (200, "image/tiff", body)
    assert (decode(response).width, decode(response).height) == SIZE
    resized = await node.fetch("/tr:w-300/scan.tif")
    assert (resized.code, loader(resized), decode(resized).width) == (200, "jpegload", 300)


@pytest.fixture
async def jail(node_factory, tmp_path):
    root = tmp_path / "root"
    (root / "inside").mkdir(parents=True)
    (root / "inside" / "ok.jpg").write_bytes(imagecorpus.photo_jpeg(40, 20))
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(imagecorpus.photo_jpeg(30, 30))
    os.symlink(secret, root / "escape.jpg")
    os.symlink(root / "inside" / "ok.jpg", root / "alias.jpg")
    return await node_factory(write_config(tmp_path, local_config(root)))


@pytest.mark.parametrize("path", [
    "/../secret.jpg",
    "/inside/../../secret.jpg",
    "/%2e%2e/secret.jpg",
    "/%2e%2e%2fsecret.jpg",
    "/inside%2f..%2f..%2fsecret.jpg",
    "/tr:w-10/..%2Fsecret.jpg",
    "//" + "SECRET",
    "/escape.jpg",
])
async def test_paths_that_leave_the_root_are_not_found(jail, tmp_path, path):
    path = path.replace("SECRET", str(tmp_path / "secret.jpg").lstrip("/"))
    response = await jail.fetch(path)
    assert response.code == 404
    assert response.body == b"not found\n"


#: a `local` origin's outcome for each path given, one per line: run as `nobody` when the tests run as root
#: (root reads through any permission), so that following a link meets the error the node's user would
LOCAL_OUTCOMES = r"""
import asyncio, os, sys
from pathlib import Path
from edge.origin import OriginFailure, OriginNotFound, OriginRequest, OriginSettings
from edge.settings import ConfigTable
from edge_builtin_origins.local import LocalOrigin
root = Path(sys.argv[1])
origin = LocalOrigin.from_config(OriginSettings("files", "local"),
                                 ConfigTable({"root": str(root)}, file="t.toml", table="origins[0]", base_dir=root))
if os.getuid() == 0:  # once everything is imported (Python's own library may be root's alone)
    os.setgid(65534)
    os.setuid(65534)
async def outcome(path):
    try:
        await origin.fetch(OriginRequest(path, 10**6))
    except OriginNotFound:
        return "not found"
    except OriginFailure as failure:
        return failure.kind
    return "served"
for path in sys.argv[2:]:
    print(asyncio.run(outcome(path)))
"""


def test_a_link_out_of_the_root_is_not_found_even_where_it_cannot_be_followed():
    """A link out of the root to a folder the node may not enter is not found, as any link out of it: a `denied`
    502 told a client what exists outside the root (its links, by trial). Within the root, such a folder is
    `denied`: the operator's to mend (a mutation audit found no test of either: the suite runs as root)."""
    base = Path(tempfile.mkdtemp(prefix="edge-denied-"))
    try:
        root, outside = base / "root", base / "outside"
        for folder in (root / "private", outside / "private"):
            folder.mkdir(parents=True)
            (folder / "a.jpg").write_bytes(imagecorpus.photo_jpeg(20, 20))
            folder.chmod(0o700)  # root's: `nobody` may not enter
        (root / "ok.jpg").write_bytes(imagecorpus.photo_jpeg(20, 20))
        os.symlink(outside / "private" / "a.jpg", root / "out.jpg")
        os.symlink(root / "private" / "a.jpg", root / "in.jpg")
        for folder in (base, root, outside):
            folder.chmod(0o755)
        if os.getuid() != 0 and os.access(outside / "private", os.X_OK):
            pytest.skip("not root, and a folder of one's own cannot be made unreadable to oneself")
        run = subprocess.run([sys.executable, "-c", LOCAL_OUTCOMES, str(root), "ok.jpg", "out.jpg", "in.jpg",
                              "private/a.jpg"], capture_output=True, text=True, timeout=60,
                             cwd=Path(__file__).resolve().parent.parent)
        assert run.returncode == 0, run.stderr
        assert run.stdout.split("\n")[:4] == ["served", "not found", "denied", "denied"], run.stdout
    finally:
        shutil.rmtree(base)


@pytest.mark.parametrize("path", ["/inside/ok.jpg/", "/tr:w-10/inside/ok.jpg//", "/inside/ok.jpg%2F"])
async def test_a_local_path_with_a_trailing_slash_is_not_found(jail, path):
    """The filesystem reads `inside/ok.jpg` for each: every spelling would be a cache entry of its own,
    which a purge of `/inside/ok.jpg` misses."""
    assert (await jail.fetch("/tr:w-10/inside/ok.jpg")).code == 200
    response = await jail.fetch(path)
    assert (response.code, response.body) == (404, b"not found\n")


@pytest.mark.parametrize("path", ["/tr:w-10/inside//ok.jpg", "/tr:w-10/inside/%2Fok.jpg"])
async def test_a_local_path_with_doubled_slashes_is_the_files_one_entry(jail, path):
    """The filesystem reads `inside/ok.jpg` for it, and so does the node: the entry of `/inside/ok.jpg`."""
    assert (await jail.fetch("/tr:w-10/inside/ok.jpg")).headers["X-Cache"] == "MISS"
    response = await jail.fetch(path)
    assert (response.code, response.headers["X-Cache"]) == (200, "HIT")


async def test_symlink_inside_the_root_is_served(jail):
    response = await jail.fetch("/alias.jpg")
    assert response.code == 200 and decode(response).width == 40


def folder_with(tmp_path, name, images):
    folder = tmp_path / name
    folder.mkdir()
    for file_name, (width, height) in images.items():
        (folder / file_name).write_bytes(imagecorpus.photo_jpeg(width, height))
    return folder


@pytest.fixture
async def routed(node_factory, tmp_path):
    first = folder_with(tmp_path, "first", {"only-first.jpg": (10, 10), "both.jpg": (11, 11)})
    second = folder_with(tmp_path, "second", {"only-second.jpg": (20, 20), "both.jpg": (22, 22)})
    config = f"""
        [[origins]]
        name = "first"
        type = "local"
        root = "{first}"
        [[origins]]
        name = "second"
        type = "local"
        root = "{second}"
        [[endpoints]]
        id = ""
        origins = ["first"]
        [[endpoints]]
        id = "both"
        hosts = ["img.example.com", "[::1]"]
        origins = ["first", "second"]
        [[endpoints]]
        id = "reversed"
        origins = ["second", "first"]
    """
    return await node_factory(write_config(tmp_path, config))


@pytest.mark.parametrize("path, host, width", [
    ("/only-first.jpg", None, 10),
    ("/both/only-second.jpg", None, 20),  # first origin misses, second has it
    ("/both/both.jpg", None, 11),  # the first origin that has it wins
    ("/reversed/both.jpg", None, 22),
    ("/tr:w-5/only-second.jpg", "img.example.com", 5),  # host endpoint, no identifier in the path
    ("/both.jpg", "IMG.example.com:8080", 11),
    ("/only-second.jpg", "[::1]", 20),  # an IPv6 literal, with and without a port
    ("/only-second.jpg", "[::1]:8080", 20),
])
async def test_endpoints_by_identifier_and_host_and_origin_order(routed, path, host, width):
    headers = {"Host": host} if host else None
    response = await routed.fetch(path, headers=headers)
    assert response.code == 200, response.body
    assert decode(response).width == width


async def test_under_a_host_an_endpoint_owns_the_path_is_that_endpoints_whatever_its_first_segment(routed):
    """The `Host` chooses the endpoint; a first segment naming another endpoint is a folder of its path, not a way
    to that endpoint (its keys, its origins) through this host."""
    response = await routed.fetch("/reversed/both.jpg", headers={"Host": "img.example.com"})
    assert (response.code, response.body) == (404, b"not found\n")  # `reversed/both.jpg`: no such file
    assert decode(await routed.fetch("/both.jpg", headers={"Host": "img.example.com"})).width == 11


async def test_default_endpoint_does_not_see_other_endpoints_origins(routed):
    response = await routed.fetch("/only-second.jpg")
    assert response.code == 404


async def test_unknown_identifier_without_default_endpoint_is_404(node_factory, tmp_path):
    config = SAMPLES_CONFIG.replace('id = ""', 'id = "products"')
    node = await node_factory(write_config(tmp_path, config))
    assert (await node.fetch("/products/tr:w-10/coffee.jpg")).code == 200
    missing = await node.fetch("/other/coffee.jpg")
    assert (missing.code, missing.body) == (404, b"unknown endpoint\n")


async def test_canonical_link_header(node_factory, tmp_path):
    config = SAMPLES_CONFIG.replace('root = ', 'canonical_base_url = "https://cdn.example.com/img/"\nroot = ')
    node = await node_factory(write_config(tmp_path, config))
    response = await node.fetch("/tr:w-10/coffee.jpg")
    assert response.headers["Link"] == '<https://cdn.example.com/img/coffee.jpg>; rel="canonical"'


async def test_health_and_readiness(samples):
    health = await samples.fetch("/_edge/health")
    ready = await samples.fetch("/_edge/ready")
    assert (health.code, health.body, ready.code, ready.body) == (200, b"ok\n", 200, b"ready\n")
    assert ready.headers["Cache-Control"] == "no-store"


async def test_a_flood_of_readiness_probes_costs_one_check_a_second(samples):
    """A check costs ~2 ms of CPU and a probe file written in the cache folder: an unauthenticated
    flood of probes shares one answer a second (READY_SECONDS) per worker."""
    from edge.server import READY_SECONDS

    caches, checks = samples.node.caches, []
    check = caches.check
    caches.check = lambda: checks.append(1) or check()  # counts the checks, does them as before
    started = time.monotonic()
    answers = await asyncio.gather(*(samples.fetch("/_edge/ready") for _ in range(50)))
    elapsed = time.monotonic() - started
    assert {(answer.code, answer.body) for answer in answers} == {(200, b"ready\n")}
    assert 1 <= len(checks) <= 2 + elapsed / READY_SECONDS


async def test_full_transform_queue_answers_503_with_retry_after(node_factory, tmp_path):
    folder = tmp_path / "big"
    folder.mkdir()
    for number in range(6):
        (folder / f"{number}.jpg").write_bytes(imagecorpus.photo_jpeg(3000, 2000))
    # one libvips thread, one waiting place: of six simultaneous slow misses, at most two are taken
    config = local_config(folder, before="[server]\ntransform_threads = 1\ntransform_queue = 1")
    node = await node_factory(write_config(tmp_path, config))
    responses = await asyncio.gather(*(node.fetch(f"/tr:w-2000,f-webp/{n}.jpg") for n in range(6)))
    refused = [r for r in responses if r.code == 503]
    served = [r for r in responses if r.code == 200]
    assert len(served) + len(refused) == 6 and 1 <= len(served) <= 2
    for response in refused:
        assert (response.headers["Retry-After"], response.headers["X-Edge-Error"]) == ("1", "queue_full")
        assert response.body == b"node overloaded, retry later\n"
    assert decode(served[0]).width == 2000
    refusals = node.node.metrics.exposition().decode()
    assert total(refusals, "edge_transform_refusals_total", reason="queue_full") == len(refused)
    assert total(refusals, "edge_transform_refusals_total", reason="queue_timeout") == 0
