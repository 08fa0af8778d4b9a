"""Deterministic generators for awkward real-world image inputs.

Every public function returns the encoded file as ``bytes`` and uses only
pyvips (plus the standard library).  Same arguments -> same bytes, so the
outputs are safe to use as cache keys or golden inputs in tests.

Notes on libvips 8.18 behaviour (pyvips-binary) that shaped this module:

* CMYK: both ``colourspace("cmyk")`` and ``icc_transform("cmyk")`` work, but
  they attach libvips' built-in CMYK profile (~940 KB) which ``jpegsave``
  then embeds, so a 64x64 CMYK JPEG weighs ~960 KB.  ``cmyk_jpeg()`` saves
  with ``keep="none"`` by default (~0.5 KB, decoders fall back to a generic
  CMYK profile); pass ``embed_profile=True`` for the heavy variant.
* ICC: the built-in ``"p3"`` profile is a real Display-P3 profile
  (description ``sP3C``), so ``icc_profile_jpeg()`` holds P3-encoded pixels
  that look wrong if a server strips the profile without converting.
* Decompression bomb: deflate cannot beat ~1032:1, so a 17000x17000 8-bit
  PNG cannot be under ~280 KB.  The bomb is a 1-bit greyscale PNG (~35 KB),
  which still decodes to 289 megapixels.
"""

from __future__ import annotations

import functools
import io

import pyvips

__all__ = [
    "EXPECTED_ORIENTED_SIZE",
    "BOMB_SIZE",
    "ANIMATION_COLOURS",
    "photo_jpeg",
    "exif_oriented_jpeg",
    "exif_stored_size",
    "stored_with_orientation",
    "cmyk_jpeg",
    "png16",
    "palette_png_with_alpha",
    "grayscale_jpeg",
    "animated_avif",
    "animated_gif",
    "animated_webp",
    "truncated_jpeg",
    "closed_early_jpeg",
    "taller_frame_jpeg",
    "extraneous_bytes_jpeg",
    "decompression_bomb_png",
    "not_an_image",
    "icc_profile_jpeg",
    "png_with_alpha",
    "QUADRANT_COLOURS",
    "quadrants_png",
    "framed_png",
    "low_contrast_png",
    "busy_patch_png",
]

# Upright (display) size of every exif_oriented_jpeg() image, as (width, height).
EXPECTED_ORIENTED_SIZE = (64, 32)

# Width and height claimed (and really encoded) by decompression_bomb_png().
BOMB_SIZE = 17000

# Solid frame colours used by animated_gif()/animated_webp(), cycled if frames > 6.
ANIMATION_COLOURS = (
    (255, 0, 0),
    (0, 255, 0),
    (0, 0, 255),
    (255, 255, 0),
    (0, 255, 255),
    (255, 0, 255),
)

# Quadrant colours of the upright orientation test card.
RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)


def _srgb(image: pyvips.Image) -> pyvips.Image:
    """Cast a float/int image to 8-bit and tag it as sRGB."""
    return image.cast("uchar").copy(interpretation="srgb")


def _photo(width: int, height: int, seed: int = 1) -> pyvips.Image:
    """Lazy 8-bit sRGB photo-like image: gradients, two perlin octaves, grain."""
    xy = pyvips.Image.xyz(width, height)
    gx = xy[0] * (255.0 / max(1, width))
    gy = xy[1] * (255.0 / max(1, height))
    coarse = pyvips.Image.perlin(width, height, cell_size=max(8, width // 6), seed=seed)
    fine = pyvips.Image.perlin(width, height, cell_size=max(4, width // 60), seed=seed + 1)
    grain = pyvips.Image.gaussnoise(width, height, sigma=6, mean=0, seed=seed + 2)
    r = gx * 0.6 + coarse * 60 + fine * 25 + grain + 40
    g = gy * 0.6 + coarse * 40 - fine * 20 + grain + 60
    b = (255 - gx) * 0.5 + fine * 30 + grain + 50
    return _srgb(r.bandjoin([g, b]))


def _solid(width: int, height: int, colour, bands: int = 3) -> pyvips.Image:
    """Solid-colour 8-bit image (sRGB for 3/4 bands)."""
    return _srgb(pyvips.Image.black(width, height, bands=bands) + list(colour))


def photo_jpeg(width: int, height: int, quality: int = 85) -> bytes:
    """Photo-like (gradients + perlin structure + grain, fixed seed) baseline JPEG."""
    return _photo(width, height).jpegsave_buffer(Q=quality, keep="none")


def _orientation_card() -> pyvips.Image:
    """Upright 64x32 card: top-left quadrant red, top-right green, bottom half blue."""
    w, h = EXPECTED_ORIENTED_SIZE
    top = _solid(w // 2, h // 2, RED).join(_solid(w // 2, h // 2, GREEN), "horizontal")
    return top.join(_solid(w, h // 2, BLUE), "vertical").copy(interpretation="srgb")


# Stored pixels for each EXIF orientation, derived from the EXIF 2.3 table
# (where row 0 / column 0 of the stored image appear on display): we apply
# the inverse of the display transform to the upright card.
_TO_STORED = {
    1: lambda im: im,
    2: lambda im: im.fliphor(),  # row0 top, col0 right
    3: lambda im: im.rot180(),  # row0 bottom, col0 right
    4: lambda im: im.flipver(),  # row0 bottom, col0 left
    5: lambda im: im.rot90().fliphor(),  # transpose: row0 left, col0 top
    6: lambda im: im.rot270(),  # display rotates stored 90 deg clockwise
    7: lambda im: im.rot90().flipver(),  # transverse: row0 right, col0 bottom
    8: lambda im: im.rot90(),  # display rotates stored 90 deg anticlockwise
}


def exif_stored_size(orientation: int) -> tuple[int, int]:
    """(width, height) of the stored pixels of exif_oriented_jpeg(orientation)."""
    w, h = EXPECTED_ORIENTED_SIZE
    return (h, w) if orientation >= 5 else (w, h)


def exif_oriented_jpeg(orientation: int) -> bytes:
    """JPEG whose EXIF Orientation is `orientation` (1..8); upright it is 64x32 with red top-left."""
    return stored_with_orientation(_orientation_card(), orientation)


def stored_with_orientation(upright: pyvips.Image, orientation: int, quality: int = 95) -> bytes:
    """JPEG of `upright` stored turned for EXIF Orientation `orientation` (1..8): it displays upright."""
    if orientation not in _TO_STORED:
        raise ValueError(f"EXIF orientation must be 1..8, got {orientation!r}")
    stored = _TO_STORED[orientation](upright).copy()
    stored.set_type(pyvips.GValue.gint_type, "orientation", orientation)
    # keep="exif" writes the EXIF block (with Orientation) and nothing else.
    return stored.jpegsave_buffer(Q=quality, keep="exif")


def cmyk_jpeg(embed_profile: bool = False) -> bytes:
    """64x64 CMYK (4-component, Adobe-marker) JPEG; optionally embeds libvips' ~940 KB CMYK profile."""
    cmyk = _photo(64, 64).colourspace("cmyk")
    return cmyk.jpegsave_buffer(Q=90, keep="icc" if embed_profile else "none")


def png16() -> bytes:
    """64x48 16-bit-per-channel RGB PNG (colour type 2, bit depth 16) with a full-range gradient."""
    xy = pyvips.Image.xyz(64, 48)
    r = xy[0] * (65535.0 / 63)
    g = xy[1] * (65535.0 / 47)
    b = (r + g) / 2
    img = r.bandjoin([g, b]).rint().cast("ushort").copy(interpretation="rgb16")
    return img.pngsave_buffer(bitdepth=16, keep="none")


def _alpha_card(width: int, height: int) -> pyvips.Image:
    """RGBA photo with a horizontal alpha ramp: left column 0, right column 255."""
    alpha = (pyvips.Image.xyz(width, height)[0] * (255.0 / max(1, width - 1))).rint()
    return _srgb(_photo(width, height).bandjoin(alpha))


def palette_png_with_alpha() -> bytes:
    """64x64 8-bit palette PNG (colour type 3) with a tRNS chunk: opaque disc on a transparent field."""
    xy = pyvips.Image.xyz(64, 64) - [32, 32]
    inside = (xy[0] ** 2 + xy[1] ** 2) < 24 ** 2  # 255 inside the disc, 0 outside
    rgb = _solid(64, 64, (230, 80, 20))
    rgba = _srgb(rgb.bandjoin(inside))
    return rgba.pngsave_buffer(palette=True, bitdepth=8, keep="none")


def grayscale_jpeg() -> bytes:
    """96x64 single-component (greyscale) JPEG."""
    grey = _photo(96, 64).colourspace("b-w")
    return grey.jpegsave_buffer(Q=90, keep="none")


def _animation(frames: int, size: int = 32) -> pyvips.Image:
    """Tall multi-page strip of `frames` solid frames with page-height/delay/loop set."""
    if frames < 1:
        raise ValueError("frames must be >= 1")
    pages = [_solid(size, size, ANIMATION_COLOURS[i % len(ANIMATION_COLOURS)]) for i in range(frames)]
    strip = pyvips.Image.arrayjoin(pages, across=1).copy(interpretation="srgb")
    strip.set_type(pyvips.GValue.gint_type, "page-height", size)
    strip.set_type(pyvips.GValue.array_int_type, "delay", [100] * frames)
    strip.set_type(pyvips.GValue.gint_type, "loop", 0)
    return strip


def animated_gif(frames: int = 5) -> bytes:
    """Animated 32x32 GIF, one solid colour per frame (see ANIMATION_COLOURS), 100 ms delay."""
    return _animation(frames).gifsave_buffer(keep="none")


def animated_webp(frames: int = 5) -> bytes:
    """Animated lossless 32x32 WebP, one solid colour per frame (see ANIMATION_COLOURS)."""
    return _animation(frames).webpsave_buffer(lossless=True, keep="none")


def animated_avif(frames: int = 3) -> bytes:
    """An AVIF sequence (brand `avis`), as Pillow writes one: libvips reads none. Pillow without AVIF: a skip."""
    from PIL import Image, features

    if not features.check("avif"):
        import pytest
        pytest.skip("this Pillow writes no AVIF")
    images = [Image.new("RGB", (64, 48), colour) for colour in ("red", "green", "blue")[:frames]]
    out = io.BytesIO()
    images[0].save(out, "AVIF", save_all=True, append_images=images[1:], duration=100)
    return out.getvalue()


def many_frames_webp(frames: int) -> bytes:
    """An animated WebP of `frames` copies of one 32×32 frame (its `ANMF` chunk repeated), made in
    milliseconds where encoding them would take minutes."""
    webp = animated_webp(2)  # a single frame is written as a still image, without ANMF chunks
    offset, chunks = 12, []
    while offset < len(webp):
        size = int.from_bytes(webp[offset + 4:offset + 8], "little")
        chunks.append(webp[offset:offset + 8 + size + (size & 1)])
        offset += 8 + size + (size & 1)
    frame = next(chunk for chunk in chunks if chunk[:4] == b"ANMF")
    body = b"".join(chunk for chunk in chunks if chunk[:4] != b"ANMF") + frame * frames
    return b"RIFF" + (len(body) + 4).to_bytes(4, "little") + b"WEBP" + body


def photo_tiff(width: int, height: int) -> bytes:
    return _photo(width, height).tiffsave_buffer()


def ultra_hdr_jpeg(width: int = 64, height: int = 48) -> bytes:
    """An Ultra HDR JPEG (a JPEG with a gain map, as phones now take photos), which libvips loads with
    `uhdrload` rather than `jpegload`."""
    image = _photo(width, height).copy()
    for name, value in (("max-content-boost", [4.0] * 3), ("min-content-boost", [1.0] * 3), ("gamma", [1.0] * 3),
                        ("offset-sdr", [1 / 64] * 3), ("offset-hdr", [1 / 64] * 3)):
        image.set_type(pyvips.GValue.array_double_type, f"gainmap-{name}", value)
    image.set_type(pyvips.GValue.gdouble_type, "gainmap-hdr-capacity-min", 1.0)
    image.set_type(pyvips.GValue.gdouble_type, "gainmap-hdr-capacity-max", 4.0)
    image.set_type(pyvips.GValue.gint_type, "gainmap-use-base-cg", 1)
    gain_map = (pyvips.Image.black(width // 4, height // 4) + 128).cast("uchar")
    image.set_type(pyvips.GValue.image_type, "gainmap", gain_map)
    return image.uhdrsave_buffer()


def truncated_jpeg() -> bytes:
    """A valid 640x480 photo JPEG cut off after 60% of its bytes (no EOI marker)."""
    data = photo_jpeg(640, 480, quality=85)
    return data[: int(len(data) * 0.6)]


def closed_early_jpeg(data: bytes, fraction: float) -> bytes:
    """A JPEG cut after `fraction` of its bytes and closed again with an end marker (EOI): libjpeg only
    warns ("premature end of data segment") and fills the rows it lacks with grey."""
    return data[: int(len(data) * fraction)] + b"\xff\xd9"


def _frame_header(data: bytes) -> int:
    """Where a baseline or progressive JPEG's frame header (SOF0-2) starts."""
    at = 2
    while data[at + 1] not in (0xC0, 0xC1, 0xC2):
        at += 2 + int.from_bytes(data[at + 2:at + 4], "big")
    return at


def taller_frame_jpeg(data: bytes, extra_rows: int) -> bytes:
    """A whole JPEG whose frame header claims `extra_rows` more rows than its coded data holds."""
    at = _frame_header(data) + 5  # marker, length, precision: then the height
    height = int.from_bytes(data[at:at + 2], "big") + extra_rows
    return data[:at] + height.to_bytes(2, "big") + data[at + 2:]


def extraneous_bytes_jpeg(data: bytes) -> bytes:
    """A whole JPEG with 3 stray bytes before its frame header, as some cameras write: libjpeg warns
    ("3 extraneous bytes before marker 0xc0") and decodes every pixel."""
    at = _frame_header(data)
    return data[:at] + b"\x01\x02\x03" + data[at:]


@functools.lru_cache(maxsize=1)
def decompression_bomb_png() -> bytes:
    """Complete, valid 17000x17000 1-bit greyscale PNG of ~35 KB (289 Mpx when decoded)."""
    # black() is lazy and pngsave streams, so this never holds the full image in RAM.
    bomb = pyvips.Image.black(BOMB_SIZE, BOMB_SIZE)
    return bomb.pngsave_buffer(bitdepth=1, compression=9, keep="none")


def many_scans_jpeg(width: int, height: int, scans: int) -> bytes:
    """A valid progressive grey JPEG of `scans` + 6 scans, a few bytes each (the known libjpeg DoS:
    every scan is a pass over the whole image, all of them before the first row is out): libvips'
    progressive JPEG, with one of its AC scans repeated as a first scan of coefficients already complete
    (Ah = Al = 0, which libjpeg accepts without a warning) before the end."""
    data = (pyvips.Image.black(width, height) + 128).cast("uchar").jpegsave_buffer(interlace=True, keep="none")
    starts = [i for i in range(len(data) - 1) if data[i:i + 2] == b"\xff\xda"]  # FF is stuffed elsewhere
    assert len(starts) == 6, "libvips' progression for one component"
    scan = bytearray(data[starts[2]:starts[3]])  # AC 6-63, first pass; the entropy data of a grey image
    scan[4 + 1 + 2 * scan[4] + 2] = 0x00  # after Ns and its components, Ss and Se: Ah, Al
    return data[:-2] + bytes(scan) * scans + data[-2:]


def not_an_image() -> bytes:
    """An HTML error page, as served by a misconfigured origin under a .jpg URL."""
    return (
        b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\n"
        b"<body><h1>Not Found</h1><p>The requested URL /photos/cat.jpg was not "
        b"found on this server.</p></body></html>\n"
    )


def icc_profile_jpeg() -> bytes:
    """128x96 JPEG whose pixels are Display-P3 encoded, with libvips' built-in P3 ICC profile embedded."""
    p3 = _photo(128, 96).icc_transform("p3", input_profile="srgb")
    return p3.jpegsave_buffer(Q=92, keep="icc")


def png_with_alpha(width: int, height: int) -> bytes:
    """8-bit RGBA PNG (colour type 6) of a photo with an alpha ramp from 0 (left) to 255 (right)."""
    return _alpha_card(width, height).pngsave_buffer(keep="none")


# Quadrant colours of quadrants_png(): top-left, top-right, bottom-left, bottom-right.
QUADRANT_COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0))


def quadrants_png(width: int = 200, height: int = 100) -> bytes:
    """RGB PNG in four solid quadrants (see QUADRANT_COLOURS): where pixels went is easy to check."""
    tl, tr, bl, br = (_solid(width // 2, height // 2, colour) for colour in QUADRANT_COLOURS)
    top, bottom = tl.join(tr, "horizontal"), bl.join(br, "horizontal")
    return top.join(bottom, "vertical").copy(interpretation="srgb").pngsave_buffer(keep="none")


def framed_png(inner: tuple[int, int] = (60, 40), frame: int = 20) -> bytes:
    """A red `inner` rectangle inside a uniform white frame `frame` px wide (for trimming)."""
    red = _solid(inner[0], inner[1], RED)
    framed = red.embed(frame, frame, inner[0] + 2 * frame, inner[1] + 2 * frame,
                       extend="background", background=[255, 255, 255])
    return framed.copy(interpretation="srgb").pngsave_buffer(keep="none")


def low_contrast_png(width: int = 64, height: int = 64) -> bytes:
    """Grey horizontal ramp from 100 to 150 only (for contrast stretching)."""
    ramp = pyvips.Image.xyz(width, height)[0] * (50.0 / max(1, width - 1)) + 100
    return _srgb(ramp.bandjoin([ramp, ramp])).pngsave_buffer(keep="none")


def busy_patch_png(width: int = 300, height: int = 100, patch_x: int = 220) -> bytes:
    """Flat grey field with one busy red/white checkerboard patch (60x60) at `patch_x`: the only
    interesting region for content-aware cropping."""
    grey = _solid(width, height, (128, 128, 128))
    xy = pyvips.Image.xyz(60, 60)
    checker = ((xy[0] / 6).floor() + (xy[1] / 6).floor()).remainder_const(2) == 0
    patch = checker.ifthenelse([255, 255, 255], [255, 0, 0])
    return grey.insert(_srgb(patch), patch_x, (height - 60) // 2).copy(interpretation="srgb").pngsave_buffer(keep="none")
