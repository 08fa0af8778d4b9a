"""Colour on real-size originals (12 MP), through a node on a real socket: a Display P3 JPEG (as an iPhone
makes), an Adobe RGB (1998) JPEG and CMYK JPEGs come out looking as the original does in a colour-managed
viewer, in every output format: converted to sRGB, or under `cp-true` carrying the original's profile
where the format can hold one.

Each original holds a patch of one colour at its centre, (128, 200, 60) in its own colour space: in P3
that is sRGB (103, 202, 0), in Adobe RGB (77, 201, 37). Served without its profile and unconverted, it
would show as (128, 200, 60), a visibly wrong green."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import pyvips

from tests.assets import close, pixel
from tests.nodes import decode, local_config, write_config
from tests.photos import SIZE, upright_photo

PATCH = (128, 200, 60)
FORMATS = ("jpg", "webp", "avif", "png", "gif")


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ " + bytes(4) + _s15(x) + _s15(y) + _s15(z)


def adobe_rgb_profile() -> bytes:
    """An ICC v2 matrix/TRC display profile with Adobe RGB (1998)'s D50 primaries and its 563/256 gamma:
    libvips ships no Adobe RGB profile, and this is what Adobe's own profile holds."""
    text = b"Adobe RGB (1998) compatible\0"
    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, 563) + bytes(2)
    tags = [(b"desc", b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(78)),
            (b"cprt", b"text" + bytes(4) + b"no copyright\0"), (b"wtpt", _xyz(0.9642, 1.0, 0.82491)),
            (b"rXYZ", _xyz(0.60974, 0.31111, 0.01947)), (b"gXYZ", _xyz(0.20528, 0.62567, 0.06087)),
            (b"bXYZ", _xyz(0.14919, 0.06322, 0.74457)), (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    offset, table, data = 132 + 12 * len(tags), b"", b""
    for signature, body in tags:
        body += bytes(-len(body) % 4)
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    header = (struct.pack(">I", offset + len(data)) + bytes(4) + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ "
              + struct.pack(">6H", 2000, 1, 1, 0, 0, 0) + b"acsp" + bytes(24) + bytes(4)
              + _s15(0.9642) + _s15(1.0) + _s15(0.8249) + bytes(48))
    return header + struct.pack(">I", len(tags)) + table + data


def _p3_profile() -> bytes:
    return pyvips.Image.black(1, 1, bands=3).icc_transform("p3", input_profile="srgb").get("icc-profile-data")


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("colour")
    width, height = SIZE
    patch = pyvips.Image.black(width // 2, height // 2, bands=3) + list(PATCH)
    photo = upright_photo(width, height).insert(patch, width // 4, height // 4).cast("uchar").copy_memory()
    (folder / "adobe.icc").write_bytes(adobe_rgb_profile())
    files = {
        "p3.jpg": photo.jpegsave_buffer(Q=90, profile="p3"),  # the photo's values, read as P3's
        "adobe.jpg": photo.jpegsave_buffer(Q=90, profile=str(folder / "adobe.icc")),
    }
    cmyk = photo.icc_transform("cmyk", input_profile="srgb")  # libvips writes Adobe's inverted CMYK, as Photoshop
    files["cmyk-profile.jpg"] = cmyk.jpegsave_buffer(Q=90)  # with libvips' CMYK profile
    files["cmyk.jpg"] = cmyk.jpegsave_buffer(Q=90, keep="none")  # read with the same one as a fallback
    # some writers pad a profile: it then holds more bytes than its header's length says (libpng refuses it)
    padded = photo.copy()
    padded.set_type(pyvips.GValue.blob_type, "icc-profile-data", _p3_profile() + bytes(4))
    files["p3-padded-profile.jpg"] = padded.jpegsave_buffer(Q=90, keep="icc")
    cut = photo.copy()  # and some cut one short, keeping its header's length
    cut.set_type(pyvips.GValue.blob_type, "icc-profile-data", _p3_profile()[:300])
    files["p3-cut-profile.jpg"] = cut.jpegsave_buffer(Q=90, keep="icc")
    for name, body in files.items():
        (folder / name).write_bytes(body)
    return folder


@pytest.fixture
async def node(node_factory, originals, tmp_path):
    return await node_factory(write_config(tmp_path, local_config(originals)))


def _as_viewed(image: pyvips.Image) -> tuple[int, ...]:
    """The centre's colour as a colour-managed viewer shows it (the embedded profile applied, else sRGB)."""
    if image.get_typeof("icc-profile-data"):
        image = image.icc_transform("srgb", embedded=True)
    return pixel(image, image.width // 2, image.height // 2)[:3]


@pytest.mark.parametrize("name, srgb", [("p3.jpg", (103, 202, 0)), ("adobe.jpg", (77, 201, 37))])
@pytest.mark.parametrize("tr", ["w-800", "w-800,md-true", "md-copyright,cm-extract,x-1060,y-708,w-600,h-400"])
async def test_wide_gamut_originals_are_served_in_srgb_in_every_format(node, name, srgb, tr):
    for fmt in FORMATS:
        response = await node.fetch(f"/tr:{tr},f-{fmt}/{name}")
        assert response.code == 200 and response.headers["Content-Type"] == f"image/{fmt.replace('jpg', 'jpeg')}"
        image = decode(response)
        assert not image.get_typeof("icc-profile-data") and close(_as_viewed(image), srgb, 6), (fmt, _as_viewed(image))


@pytest.mark.parametrize("name", ["cmyk-profile.jpg", "cmyk.jpg"])
async def test_cmyk_originals_are_served_in_srgb_in_every_format(node, originals, name):
    """CMYK with its profile, or without (then libvips' CMYK profile reads it), as a reference conversion."""
    original = pyvips.Image.new_from_file(str(originals / name))
    srgb = pixel(original.icc_transform("srgb", input_profile="cmyk"), original.width // 2, original.height // 2)
    for tr in ("w-800", "w-800,cp-true"):  # CMYK becomes sRGB under cp-true too: no browser shows a CMYK profile
        for fmt in FORMATS:
            response = await node.fetch(f"/tr:{tr},f-{fmt}/{name}")
            assert response.code == 200, (tr, fmt, response.body[:200])
            image = decode(response)
            assert image.bands in (3, 4) and close(_as_viewed(image), srgb, 6), (tr, fmt, _as_viewed(image), srgb)


@pytest.mark.parametrize("name, srgb", [("p3.jpg", (103, 202, 0)), ("adobe.jpg", (77, 201, 37))])
async def test_cp_true_keeps_the_profile_or_converts_where_the_format_holds_none(node, name, srgb):
    """GIF cannot carry a profile: under `cp-true` it gets sRGB values, not the original's values bare."""
    for fmt in FORMATS:
        response = await node.fetch(f"/tr:w-800,cp-true,f-{fmt}/{name}")
        assert response.code == 200, (fmt, response.body[:200])
        image = decode(response)
        assert bool(image.get_typeof("icc-profile-data")) == (fmt != "gif"), fmt
        assert close(_as_viewed(image), srgb, 6), (fmt, _as_viewed(image))


@pytest.mark.parametrize("name", ["p3.jpg", "adobe.jpg", "p3-cut-profile.jpg"])
async def test_cp_true_greys_the_colours_seen(node, name):
    """`e-grayscale` under `cp-true` had greyed an Adobe RGB or P3 original's raw values, shown as sRGB's: up to 15
    levels darker than without `cp-true`, and JPEG and PNG without the profile (pixels probe). Now the same grey,
    no profile."""
    for fmt in FORMATS:
        seen = []
        for tr in ("w-800,e-grayscale", "w-800,cp-true,e-grayscale"):
            response = await node.fetch(f"/tr:{tr},f-{fmt}/{name}")
            assert response.code == 200, (fmt, response.body[:200])
            image = decode(response)
            assert not image.get_typeof("icc-profile-data"), (tr, fmt)
            seen.append(_as_viewed(image))
        assert close(seen[0], seen[1], 3), (fmt, seen)


@pytest.mark.parametrize("name, seen", [("p3-padded-profile.jpg", (103, 202, 0)),  # P3's green, as sRGB
                                        ("p3-cut-profile.jpg", PATCH)])  # unreadable: the values, as sRGB
async def test_cp_true_with_a_profile_of_another_length_than_it_says_is_served_converted(node, name, seen):
    """libpng refuses such a profile (the answer had failed); the other encoders had embedded it as it was, for
    a browser to ignore or misread (image probe). One lcms cannot read is none: the values are taken as sRGB's,
    as without `cp-true`."""
    for fmt in FORMATS:
        response = await node.fetch(f"/tr:w-800,cp-true,f-{fmt}/{name}")
        assert response.code == 200, (fmt, response.code, response.body[:200])
        image = decode(response)
        if image.get_typeof("icc-profile-data"):
            profile = image.get("icc-profile-data")
            assert int.from_bytes(profile[:4], "big") == len(profile), fmt
        assert close(_as_viewed(image), seen, 6), fmt
