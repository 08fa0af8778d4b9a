"""libvips opens an origin's answer with whichever of its loaders recognises the bytes. In a node's process
only the loaders of the formats the node reads may run (SVG's when `[limits] allow_svg`): the others refuse
before parsing, and the node answers 422 as when `probe` alone refused them afterwards."""

import pytest
import pyvips

from tests import imagecorpus
from tests.nodes import decode, loader, web_config, write_config
from tests.photos import SIZE, photos  # noqa: F401 - a fixture
from tests.servers import HTTPOrigin

SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20">'
       b'<rect width="40" height="20" fill="red"/></svg>')


def _vips_file(directory) -> bytes:
    path = directory / "image.v"  # libvips writes its own format to files only
    pyvips.Image.black(4, 4).write_to_file(str(path))
    return path.read_bytes()


#: an SVG whose doctype has an internal subset (entities: an attacker's favourite), named as an SVG all the same
SVG_WITH_ENTITIES = (b'<?xml version="1.0"?>\n<!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n' + SVG)


def _foreign(directory) -> dict[str, bytes]:
    """Files libvips reads and the node does not: its own `.v` format, a matrix, SVG (`allow_svg` off)."""
    return {"image.v": _vips_file(directory), "kernel.mat": b"2 2\n1 2\n3 4\n", "drawing.svg": SVG,
            "entities.svg": SVG_WITH_ENTITIES}


@pytest.fixture
async def origin():
    server = await HTTPOrigin().start()
    yield server
    await server.stop()


async def _node(node_factory, directory, origin, limits=""):
    directory.mkdir(exist_ok=True)
    return await node_factory(write_config(directory, web_config(origin.url, after=f"[limits]\n{limits}")))


async def test_libvips_in_the_node_s_process_refuses_formats_the_node_does_not_read(node_factory, tmp_path, origin):
    foreign = _foreign(tmp_path)
    origin.files.update(foreign)
    node = await _node(node_factory, tmp_path / "node", origin)
    unread_svg = (b"unsupported source: an SVG document, read only with [limits] allow_svg = true; the node reads "
                  b"JPEG, PNG, WebP, AVIF, HEIC, GIF and TIFF\n")
    for name, body in foreign.items():
        response = await node.fetch(f"/tr:w-20/{name}")
        expected = unread_svg if name.endswith(".svg") else b"unsupported or corrupt source image\n"
        assert (response.code, response.body) == (422, expected), name
        with pytest.raises(pyvips.Error, match="not in a known format"):  # the loader itself is blocked
            pyvips.Image.new_from_buffer(body, "")


async def test_every_format_the_node_reads_still_renders(node_factory, tmp_path, origin, photos):  # noqa: F811
    origin.files.update({
        "photo.jpg": photos.read(photos.jpeg), "photo.png": photos.read(photos.png),
        "phone.jpg": imagecorpus.ultra_hdr_jpeg(), "scan.tif": imagecorpus.photo_tiff(300, 200),
        "anim.gif": imagecorpus.animated_gif(3), "anim.webp": imagecorpus.animated_webp(3),
        "photo.avif": pyvips.Image.new_from_buffer(imagecorpus.photo_jpeg(64, 48), "")
        .heifsave_buffer(compression="av1"),
        "drawing.svg": SVG,
    })
    node = await _node(node_factory, tmp_path / "node", origin, "allow_svg = true")
    for name in origin.files:
        response = await node.fetch(f"/tr:w-30,f-png/{name}")
        assert (response.code, loader(response), decode(response).width) == (200, "pngload", 30), name
    big = await node.fetch("/tr:orig-true/photo.png")  # decoded whole, by this process' libvips
    assert big.code == 200 and (decode(big).width, decode(big).height) == SIZE
    assert decode(big).avg() > 0
