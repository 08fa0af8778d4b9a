"""Self-check for tests/imagecorpus.py: each generator really has the property it claims.

Container-level facts (PNG IHDR/chunks, JPEG SOF/APP markers, EXIF tag) are
parsed straight from the bytes here, so they do not rely on libvips reading
back what libvips wrote.
"""

import struct

import pytest
import pyvips

try:  # tests/ as a package (once tests/__init__.py exists) ...
    from tests import imagecorpus as ic
except ImportError:  # ... or as a plain rootdir-inserted directory
    import imagecorpus as ic


# --- tiny independent container parsers ------------------------------------


def png_chunks(data):
    """List of (type, payload) for every chunk of a PNG file."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


def png_ihdr(data):
    """(width, height, bit_depth, colour_type) from the IHDR chunk."""
    ctype, payload = png_chunks(data)[0]
    assert ctype == b"IHDR"
    width, height, depth, colour = struct.unpack(">IIBB", payload[:10])
    return width, height, depth, colour


def jpeg_segments(data):
    """List of (marker, payload) up to and including SOS."""
    assert data[:2] == b"\xff\xd8", "not a JPEG SOI"
    segs, pos = [], 2
    while pos + 4 <= len(data):
        assert data[pos] == 0xFF
        marker = data[pos + 1]
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        segs.append((marker, data[pos + 4 : pos + 2 + length]))
        if marker == 0xDA:  # SOS: entropy-coded data follows
            break
        pos += 2 + length
    return segs


def jpeg_sof(data):
    """(sof_marker, width, height, n_components) of the frame header."""
    for marker, payload in jpeg_segments(data):
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            precision, height, width, ncomp = struct.unpack(">BHHB", payload[:6])
            return marker, width, height, ncomp
    raise AssertionError("no SOF marker")


def jpeg_exif_orientation(data):
    """EXIF IFD0 Orientation (tag 0x0112) read from the APP1 segment, or None."""
    for marker, payload in jpeg_segments(data):
        if marker == 0xE1 and payload.startswith(b"Exif\x00\x00"):
            tiff = payload[6:]
            endian = {b"II": "<", b"MM": ">"}[tiff[:2]]
            (ifd,) = struct.unpack(endian + "I", tiff[4:8])
            (count,) = struct.unpack(endian + "H", tiff[ifd : ifd + 2])
            for i in range(count):
                entry = tiff[ifd + 2 + 12 * i : ifd + 14 + 12 * i]
                tag, typ, n = struct.unpack(endian + "HHI", entry[:8])
                if tag == 0x0112:
                    return struct.unpack(endian + "H", entry[8:10])[0]
    return None


def close(pixel, colour, tol=12):
    """True if every channel of pixel is within tol of colour."""
    return all(abs(a - b) <= tol for a, b in zip(pixel, colour))


def band_means(image):
    return [image[i].avg() for i in range(image.bands)]


# --- photo_jpeg --------------------------------------------------------------


def test_photo_jpeg_has_requested_size_and_is_baseline_rgb():
    data = ic.photo_jpeg(320, 200)
    assert jpeg_sof(data) == (0xC0, 320, 200, 3)
    image = pyvips.Image.new_from_buffer(data, "")
    assert (image.width, image.height, image.bands) == (320, 200, 3)


def test_photo_jpeg_compresses_like_a_photo_not_a_flat_image():
    photo = ic.photo_jpeg(640, 480)
    flat = pyvips.Image.black(640, 480, bands=3).copy(interpretation="srgb")
    flat_size = len(flat.jpegsave_buffer(Q=85, keep="none"))
    assert len(photo) > 10 * flat_size
    image = pyvips.Image.new_from_buffer(photo, "")
    assert image.deviate() > 20  # real tonal range, not a near-constant field


def test_photo_jpeg_quality_changes_output():
    assert len(ic.photo_jpeg(320, 200, quality=95)) > len(ic.photo_jpeg(320, 200, quality=40))


def test_photo_jpeg_3000x2000_has_its_size():
    data = ic.photo_jpeg(3000, 2000)
    assert jpeg_sof(data)[1:3] == (3000, 2000)


# --- EXIF orientation --------------------------------------------------------

# Corner of the *stored* pixels that holds the red quadrant, taken from the
# EXIF 2.3 orientation table (independent of the module's transform code).
STORED_RED_CORNER = {1: "tl", 2: "tr", 3: "br", 4: "bl", 5: "tl", 6: "bl", 7: "br", 8: "tr"}


def corner_pixel(image, corner):
    x = 2 if corner[1] == "l" else image.width - 3
    y = 2 if corner[0] == "t" else image.height - 3
    return image(x, y)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_tag_is_written(orientation):
    data = ic.exif_oriented_jpeg(orientation)
    assert jpeg_exif_orientation(data) == orientation
    assert pyvips.Image.new_from_buffer(data, "").get("orientation") == orientation


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_stored_pixels_match_exif_table(orientation):
    stored = pyvips.Image.new_from_buffer(ic.exif_oriented_jpeg(orientation), "")
    assert (stored.width, stored.height) == ic.exif_stored_size(orientation)
    assert close(corner_pixel(stored, STORED_RED_CORNER[orientation]), ic.RED)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_autorot_gives_upright_card(orientation):
    stored = pyvips.Image.new_from_buffer(ic.exif_oriented_jpeg(orientation), "")
    upright = stored.autorot()
    w, h = ic.EXPECTED_ORIENTED_SIZE
    assert (upright.width, upright.height) == (w, h)
    assert close(upright(w // 4, h // 4), ic.RED)
    assert close(upright(3 * w // 4, h // 4), ic.GREEN)
    assert close(upright(w // 2, 3 * h // 4), ic.BLUE)


@pytest.mark.parametrize("bad", [0, 9, -1])
def test_exif_rejects_out_of_range_orientation(bad):
    with pytest.raises(ValueError):
        ic.exif_oriented_jpeg(bad)


# --- CMYK ---------------------------------------------------------------------


def test_cmyk_jpeg_is_four_component_adobe_cmyk():
    data = ic.cmyk_jpeg()
    assert jpeg_sof(data)[3] == 4
    assert any(m == 0xEE and p.startswith(b"Adobe") for m, p in jpeg_segments(data))
    image = pyvips.Image.new_from_buffer(data, "")
    assert image.interpretation == "cmyk"
    assert image.bands == 4
    assert image.get_typeof("icc-profile-data") == 0  # default: no embedded profile
    assert len(data) < 20_000


def test_cmyk_jpeg_converts_to_srgb():
    srgb = pyvips.Image.new_from_buffer(ic.cmyk_jpeg(), "").colourspace("srgb")
    original = ic._photo(64, 64)
    for got, want in zip(band_means(srgb), band_means(original)):
        assert abs(got - want) < 8


def test_cmyk_jpeg_can_embed_profile():
    image = pyvips.Image.new_from_buffer(ic.cmyk_jpeg(embed_profile=True), "")
    profile = image.get("icc-profile-data")
    assert profile[16:20] == b"CMYK"  # ICC header: data colour space


# --- PNG variants ---------------------------------------------------------------


def test_png16_is_16_bit_rgb():
    data = ic.png16()
    assert png_ihdr(data) == (64, 48, 16, 2)
    image = pyvips.Image.new_from_buffer(data, "")
    assert image.format == "ushort"
    assert image.interpretation == "rgb16"
    assert image.bands == 3
    assert image.max() == 65535  # values really use the 16-bit range


def test_palette_png_with_alpha_is_indexed_with_trns():
    data = ic.palette_png_with_alpha()
    assert png_ihdr(data)[2:] == (8, 3)  # 8-bit, colour type 3 (palette)
    types = [t for t, _ in png_chunks(data)]
    assert b"PLTE" in types and b"tRNS" in types
    image = pyvips.Image.new_from_buffer(data, "")
    assert image.bands == 4
    assert image(0, 0)[3] == 0  # corner outside the disc: transparent
    assert close(image(32, 32), (230, 80, 20, 255), tol=4)  # centre: opaque orange


def test_png_with_alpha_is_rgba_with_full_alpha_range():
    data = ic.png_with_alpha(120, 40)
    assert png_ihdr(data) == (120, 40, 8, 6)
    image = pyvips.Image.new_from_buffer(data, "")
    assert image.bands == 4
    assert image(0, 20)[3] == 0
    assert image(119, 20)[3] == 255


# --- greyscale ------------------------------------------------------------------


def test_grayscale_jpeg_is_single_component():
    data = ic.grayscale_jpeg()
    assert jpeg_sof(data)[1:] == (96, 64, 1)
    image = pyvips.Image.new_from_buffer(data, "")
    assert image.bands == 1
    assert image.interpretation == "b-w"


# --- animations -----------------------------------------------------------------


@pytest.mark.parametrize("frames", [5, 2, 7])
def test_animated_gif_frames_are_distinct_solid_colours(frames):
    data = ic.animated_gif(frames)
    assert data[:6] == b"GIF89a"
    image = pyvips.Image.new_from_buffer(data, "", n=-1)
    assert image.get("n-pages") == frames
    page_height = image.get("page-height")
    assert page_height == 32
    assert image.height == frames * page_height
    for i in range(frames):
        want = ic.ANIMATION_COLOURS[i % len(ic.ANIMATION_COLOURS)]
        assert close(image(16, i * page_height + 16)[:3], want, tol=2)


@pytest.mark.parametrize("frames", [5, 2, 7])
def test_animated_webp_frames_are_distinct_solid_colours(frames):
    data = ic.animated_webp(frames)
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    assert b"ANIM" in data and data.count(b"ANMF") == frames
    image = pyvips.Image.new_from_buffer(data, "", n=-1)
    assert image.get("n-pages") == frames
    page_height = image.get("page-height")
    assert image.height == frames * page_height
    for i in range(frames):
        want = ic.ANIMATION_COLOURS[i % len(ic.ANIMATION_COLOURS)]
        assert close(image(16, i * page_height + 16)[:3], want, tol=2)


# --- broken / hostile inputs ----------------------------------------------------


def test_truncated_jpeg_has_valid_header_but_fails_full_decode():
    data = ic.truncated_jpeg()
    full = ic.photo_jpeg(640, 480)
    assert full.startswith(data)
    assert 0.55 * len(full) < len(data) < 0.65 * len(full)
    assert not data.endswith(b"\xff\xd9")
    header = pyvips.Image.new_from_buffer(data, "")
    assert (header.width, header.height) == (640, 480)
    strict = pyvips.Image.new_from_buffer(data, "", fail_on="truncated")
    with pytest.raises(pyvips.Error):
        strict.avg()


def test_decompression_bomb_png_claims_17000_square_in_few_bytes():
    data = ic.decompression_bomb_png()
    assert len(data) < 100_000
    width, height, _depth, _colour = png_ihdr(data)
    assert (width, height) == (ic.BOMB_SIZE, ic.BOMB_SIZE) == (17000, 17000)
    assert png_chunks(data)[-1][0] == b"IEND"  # complete file, not just a lying header
    header = pyvips.Image.new_from_buffer(data, "")  # header only; never decode it
    assert (header.width, header.height) == (17000, 17000)


def test_not_an_image_is_rejected_by_libvips():
    data = ic.not_an_image()
    assert data.lstrip().lower().startswith(b"<!doctype html")
    with pytest.raises(pyvips.Error):
        pyvips.Image.new_from_buffer(data, "")


def test_icc_profile_jpeg_embeds_display_p3_profile():
    data = ic.icc_profile_jpeg()
    assert any(m == 0xE2 and p.startswith(b"ICC_PROFILE\x00") for m, p in jpeg_segments(data))
    image = pyvips.Image.new_from_buffer(data, "")
    profile = image.get("icc-profile-data")
    assert profile[16:20] == b"RGB "
    assert "sP3C".encode("utf-16-be") in profile  # profile description


def test_icc_profile_jpeg_pixels_need_colour_management():
    image = pyvips.Image.new_from_buffer(ic.icc_profile_jpeg(), "")
    original = band_means(ic._photo(128, 96))
    raw = band_means(image)
    managed = band_means(image.icc_transform("srgb", embedded=True))
    # Ignoring the profile gives visibly different colours ...
    assert max(abs(r - o) for r, o in zip(raw, original)) > 4
    # ... while honouring it restores the sRGB original.
    assert max(abs(m - o) for m, o in zip(managed, original)) < 1.5


# --- determinism ----------------------------------------------------------------

GENERATORS = [
    lambda: ic.photo_jpeg(200, 100),
    lambda: ic.exif_oriented_jpeg(6),
    ic.cmyk_jpeg,
    ic.png16,
    ic.palette_png_with_alpha,
    ic.grayscale_jpeg,
    ic.animated_gif,
    ic.animated_webp,
    ic.truncated_jpeg,
    ic.not_an_image,
    ic.icc_profile_jpeg,
    lambda: ic.png_with_alpha(50, 30),
]


@pytest.mark.parametrize("generator", GENERATORS)
def test_generators_are_deterministic(generator):
    first = generator()
    assert isinstance(first, bytes) and len(first) > 0
    assert generator() == first
