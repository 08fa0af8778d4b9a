"""Encoding the rendered image: colour to sRGB (unless `cp-true`), metadata stripped (unless
`md-true`; `md-copyright` keeps the copyright fields only), quality, progressive, lossless, AVIF effort."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyvips

from .colours import RGBA
from .geometry import WHITE
from .held import image_bytes
from .options import COPYRIGHT_ONLY

Keep = pyvips.enums.ForeignKeep
Interpretation = pyvips.enums.Interpretation


#: JPEG outputs of at most this many pixels get optimised Huffman tables (5-8 % smaller) and, with `pr-true`,
#: progressive scans: libjpeg makes either from the whole image's coefficients, held in memory, ~5.5 bytes a pixel
#: (a 45 MP output 264 MB more than a baseline encode, ~90 MB at this bound). Larger outputs are baseline JPEGs
#: with standard tables: the same pixels, coded without that buffer
JPEG_WHOLE_IMAGE_MAX_PIXELS = 16_000_000


#: bytes a pixel an encoder holds while it writes (measured on 12 and 24 MP photos, libvips' high-water mark):
#: JPEG's coefficients for optimised tables (4:2:0; 4:4:4 twice as many: `_JPEG_444`), WebP's picture, AVIF's
#: picture and encoder state, GIF's quantiser; PNG and a baseline JPEG stream. No budget had counted them: a
#: 12 MP AVIF held 248 MB beyond the render's own images, a container's workers were OOM-killed on encodes
_ENCODER_BYTES_A_PIXEL = {"jpg": 6.2, "webp": 6.9, "avif": 20.7, "gif": 12.6, "png": 0.0}
#: a palette PNG's encoder: libimagequant, as GIF's
_PALETTE_PNG_BYTES_A_PIXEL = _ENCODER_BYTES_A_PIXEL["gif"]
_JPEG_444 = 2
_JPEG_STREAMING = 0.5
#: an output's size over its raw pixels' at most (noise, which does not compress), by the lowest quality it
#: applies from: a JPEG of noise at q100 is 1.37 × its pixels' bytes, AVIF 1.24 ×, at q80 0.46 ×
_LOSSY_OUTPUT_RATIO = ((96, 1.4), (86, 0.8), (71, 0.55), (0, 0.4))


def encoder_memory(image: pyvips.Image, fmt: str, options: EncodeOptions, frame_height: int) -> int:
    """The bytes encoding `image` holds beyond it: the encoder's own (per pixel of a frame) and the output."""
    # a GIF's output is a palette index a pixel at most; the others' their pixels' bytes (16-bit PNGs: two a band)
    frame_pixels, raw = image.width * frame_height, image.width * image.height if fmt == "gif" else image_bytes(image)
    per_pixel = _PALETTE_PNG_BYTES_A_PIXEL if fmt == "png" and options.palette else _ENCODER_BYTES_A_PIXEL[fmt]
    if fmt == "jpg":
        if image.width * image.height > JPEG_WHOLE_IMAGE_MAX_PIXELS:
            per_pixel = _JPEG_STREAMING
        elif options.quality >= 90 or not options.chroma_subsampling:  # libvips' `auto`: 4:4:4 from q90
            per_pixel *= _JPEG_444
    lossless = fmt in ("png", "gif") or options.lossless
    ratio = 1.0 if lossless else next(r for lowest, r in _LOSSY_OUTPUT_RATIO if options.quality >= lowest)
    return int(frame_pixels * per_pixel + raw * ratio)


def avif_quality(quality: int) -> int:
    """AVIF's quality for a URL's `q` (JPEG's scale, which WebP's follows). At the same number AVIF is far larger:
    `w-1600` of a 12 MP photo at 80 was 1.6 times the JPEG's size and 5 times the WebP's, for a PSNR 1.4-3 dB above
    WebP's (bytes probe: Chrome got more bytes than Safari). At 0.7 × q it is smaller than the WebP with a PSNR at
    least as high, up to q-80 (benchmarks/README.md); above, it rises to 100 at q-100."""
    return round(quality * 0.7) if quality <= 80 else round(56 + (quality - 80) * 2.2)


@dataclass(frozen=True)
class EncodeOptions:
    quality: int
    avif_effort: int
    #: JPEG 4:2:0 below quality 90 (`[defaults] chroma_subsampling`); else 4:4:4
    chroma_subsampling: bool = True
    progressive: bool = False
    lossless: bool = False
    metadata: bool | str = False
    colour_profile: bool = False
    #: what transparency is flattened onto for formats without alpha (the last `bg`, else white)
    flatten_on: RGBA = WHITE
    #: a PNG output is indexed (at most 256 colours, dithered: pngquant's way), as its original was
    palette: bool = False

    @property
    def keep(self) -> int:
        keep = Keep.NONE
        if self.metadata == COPYRIGHT_ONLY:
            keep |= Keep.EXIF  # what `_copyright_only` leaves of it
        elif self.metadata:
            keep |= Keep.EXIF | Keep.XMP | Keep.IPTC | Keep.OTHER
        if self.colour_profile:
            keep |= Keep.ICC
        return keep


def _flatten(image: pyvips.Image, colour: RGBA) -> pyvips.Image:
    if not image.hasalpha():
        return image
    if image.bands == 2:  # greyscale + alpha: stays greyscale on a grey, becomes sRGB on a colour
        if colour[0] == colour[1] == colour[2]:
            return image.flatten(background=[colour[0]])
        image = image.colourspace(Interpretation.SRGB)  # (flattened on its grey level, blue had been a dark grey)
    return image.flatten(background=list(colour[:3]))


def _one_bit_alpha(image: pyvips.Image, colour: RGBA) -> pyvips.Image:
    """For GIF, whose pixels are shown or not: what is partly transparent (`o-50`, soft edges) is
    flattened onto `colour` as JPEG would be, and only what is wholly transparent stays so. (libvips'
    GIF writer drops every pixel under half opacity: `o-50,f-gif` was an empty image.)"""
    if not image.hasalpha():
        return image
    return _flatten(image, colour).bandjoin(image[image.bands - 1] > 0)


#: the largest metadata field `md-true` keeps (an XMP packet, IPTC, EXIF, a PNG's text): a PNG of 221 kB carried 45 MB
#: of compressed XMP, copied into every output of it (45 MB WebPs, 769 MB of a worker's memory; attacker probe), where
#: a photo's are a few kB and an editor's bloated history a few hundred
MAX_KEPT_METADATA_BYTES = 1 << 20


#: the types of metadata fields: blobs (XMP, IPTC, EXIF) and strings (a PNG's text, EXIF's tags: libvips' reference
#: strings; a 4.75 MB PNG comment had been kept, review)
_METADATA_TYPES = (pyvips.GValue.blob_type, pyvips.GValue.gstr_type, pyvips.GValue.refstr_type)


def _bytes(value: bytes | str) -> int:
    """A field's size, a string's as UTF-8."""
    return len(value.encode(errors="replace") if isinstance(value, str) else value)


def _metadata_kept(image: pyvips.Image) -> pyvips.Image:
    """The image without its EXIF thumbnail nor its metadata fields over `MAX_KEPT_METADATA_BYTES` (the ICC profile
    is `cp-true`'s)."""
    left_out = [field for field in image.get_fields() if field == _EXIF_THUMBNAIL or (
        field != "icc-profile-data" and image.get_typeof(field) in _METADATA_TYPES
        and _bytes(image.get(field)) > MAX_KEPT_METADATA_BYTES)]
    if not left_out:
        return image
    image = image.copy()
    for field in left_out:
        image.remove(field)
    return image


#: the orientation an XMP packet states (`tiff:Orientation`, an attribute or an element)
_XMP_ORIENTATION = re.compile(r"""(tiff:Orientation\s*=\s*["']|<tiff:Orientation>)\s*\d+""")
#: how a packet that is not UTF-8 starts (XMP allows UTF-16 and UTF-32, with or without a byte order mark)
_XMP_ENCODINGS = ((b"\x00\x00\xfe\xff", "utf-32-be"), (b"\xff\xfe\x00\x00", "utf-32-le"),
                  (b"\x00\x00\x00<", "utf-32-be"), (b"<\x00\x00\x00", "utf-32-le"),
                  (b"\xfe\xff", "utf-16-be"), (b"\xff\xfe", "utf-16-le"),
                  (b"\x00<", "utf-16-be"), (b"<\x00", "utf-16-le"))


def _xmp_orientation_as_exif(image: pyvips.Image) -> pyvips.Image:
    """The image with its XMP packet stating the orientation its EXIF does (1 once `autorot` made the pixels
    upright): the packet kept under `md-true` still said 6, and a tool that reads XMP first turned the image again.
    Bytes of a UTF-8 packet that are no UTF-8 are kept as they are; a UTF-16 or UTF-32 packet that does not
    decode is left whole: no reader finds an orientation in it either."""
    packet = image.get("xmp-data")
    encoding = next((name for start, name in _XMP_ENCODINGS if packet.startswith(start)), "utf-8")
    orientation = str(image.get("orientation") if image.get_typeof("orientation") else 1)
    try:
        text = packet.decode(encoding, "surrogateescape")
        stated = _XMP_ORIENTATION.sub(lambda match: match.group(1) + orientation, text).encode(encoding,
                                                                                              "surrogateescape")
    except UnicodeError:
        return image
    if stated == packet:
        return image
    image = image.copy()
    image.set_type(pyvips.GValue.blob_type, "xmp-data", stated)
    return image


#: the EXIF fields `md-copyright` keeps; libvips writes no tag whose field is gone (location, camera, serial…)
COPYRIGHT_FIELDS = ("exif-ifd0-Copyright", "exif-ifd0-Artist")


#: a JPEG's EXIF thumbnail, which libvips writes back into the EXIF: the whole uncropped picture as stored, unturned
#: (privacy probe); dropped under `md-true` too, where the EXIF says upright (a preview 90° off: pixels probe)
_EXIF_THUMBNAIL = "jpeg-thumbnail-data"
#: blobs `md-copyright` drops whole: XMP and IPTC may hold a location
_NOT_COPYRIGHT_BLOBS = ("xmp-data", "iptc-data", _EXIF_THUMBNAIL)


def _copyright_only(image: pyvips.Image) -> pyvips.Image:
    """The image without its metadata but the copyright fields."""
    image = image.copy()
    for field in image.get_fields():
        if (field.startswith("exif-ifd") and field not in COPYRIGHT_FIELDS) or field in _NOT_COPYRIGHT_BLOBS:
            image.remove(field)
    return image


def _length_mismatch(image: pyvips.Image) -> bool:
    """Whether the image's ICC profile declares another length than its own (a writer padded or cut it)."""
    if not image.get_typeof("icc-profile-data"):
        return False
    profile = image.get("icc-profile-data")
    return int.from_bytes(profile[:4], "big") != len(profile)


def encode(image: pyvips.Image, fmt: str, options: EncodeOptions) -> bytes:
    keep, quality = options.keep, options.quality
    if options.metadata == COPYRIGHT_ONLY:
        image = _copyright_only(image)
    elif options.metadata:
        image = _metadata_kept(image)
        if image.get_typeof("xmp-data"):
            image = _xmp_orientation_as_exif(image)
    if options.colour_profile and _length_mismatch(image):
        # libpng refuses such a profile (the whole answer failed: a 422 for an original that decodes), the other
        # encoders embed it as it is, for a browser to ignore or misread: its colours are converted instead, as
        # lcms reads the profile
        image = image.icc_transform("srgb", embedded=True)
    if fmt == "jpg":
        whole = image.width * image.height <= JPEG_WHOLE_IMAGE_MAX_PIXELS
        return _flatten(image, options.flatten_on).jpegsave_buffer(
            Q=quality, keep=keep, optimize_coding=whole, interlace=options.progressive and whole,
            subsample_mode="auto" if options.chroma_subsampling else "off")
    if fmt == "png":
        if options.palette:  # libimagequant's fastest search, as for GIF: 2 times less CPU, files ~2 % larger
            return image.pngsave_buffer(keep=keep, interlace=options.progressive, palette=True, effort=1)
        return image.pngsave_buffer(keep=keep, interlace=options.progressive)
    if fmt in ("webp", "avif") and not options.lossless and image.hasalpha():
        # black under wholly transparent pixels, whatever was there: libwebp and libaom weigh it in their choices
        # for the whole picture (a cut-out over white or black hidden pixels: shown pixels up to 34 levels apart)
        alpha = image.extract_band(image.bands - 1)
        image = (alpha > 0).ifthenelse(image, [0] * image.bands).copy(interpretation=image.interpretation)
    if fmt == "webp":
        return image.webpsave_buffer(Q=quality, keep=keep, lossless=options.lossless)
    if fmt == "avif":
        if image.bands < 3:
            image = image.colourspace(Interpretation.SRGB)
        return image.heifsave_buffer(Q=avif_quality(quality), keep=keep, lossless=options.lossless,
                                     compression=pyvips.enums.ForeignHeifCompression.AV1,
                                     effort=options.avif_effort)
    if fmt == "gif":
        if options.colour_profile and image.get_typeof("icc-profile-data"):
            # GIF carries no profile: under `cp-true` a P3 or Adobe RGB original's values would be shown as sRGB
            # (a P3 green 128,200,60 as 129,201,60 instead of 103,202,0), so GIF gets sRGB values whatever `cp`
            image = image.icc_transform("srgb", embedded=True)
        # libimagequant's fastest palette search: 5-8 times less CPU than libvips' default (effort 7) on
        # small animated frames, 2.3 times on 12 MP, for files ~20 % larger (edge/transform/cost.py)
        return _one_bit_alpha(image, options.flatten_on).gifsave_buffer(
            keep=keep, interlace=options.progressive, effort=1)
    raise AssertionError(f"unknown output format {fmt}")
