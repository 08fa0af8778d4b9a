"""The look of one step, after its geometry: blur, pixelation, the faces hidden, greyscale, the colour
adjustments (brightness, saturation, sepia, vibrance, hue, each band, a colour blended in, a colour
replaced, negative, black and white), auto colour, auto brightness, contrast (stretched, sigmoidal,
linear), gamma, sharpen, vignette, unsharp mask, gradient, border, rounded corners, opacity threshold,
opacity, shadow, and last the flattening of transparency on `bg`. All on 8-bit images; colour effects
leave the alpha channel alone."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pyvips

from ..errors import BadRequest
from . import faces, stopping
from .colours import RGBA
from .geometry import background, in_memory
from .options import ColourReplacement, Step, write_region

Interpretation = pyvips.enums.Interpretation
#: `e-autobrightness`: the strongest gamma it applies, either way (3: a mean grey of 0.1 made 0.46, not 0.5)
AUTO_GAMMA = 3.0
#: `e-blurfaces`, `e-pixelatefaces`: how far beyond a face's detected box (eyebrows to mouth) each side
#: goes, as a fraction of the box's size, so that forehead, hair and chin are covered too
FACE_COVER = 0.25
#: `e-sharpen` on an image with transparent pixels: how far (a gaussian's sigma, px) a visible colour is spread
#: under them first, past the sharpen's own reach (sigma 1: 3 px)
SHARPEN_FILL_SIGMA = 2.0


def _colour_bands(image: pyvips.Image, effect: Callable[[pyvips.Image], pyvips.Image]) -> pyvips.Image:
    """Apply `effect` to the colour bands only, keeping alpha as it was."""
    if not image.hasalpha():
        return effect(image)
    return effect(image.extract_band(0, n=image.bands - 1)).bandjoin(image.extract_band(image.bands - 1))


def _to_uchar(image: pyvips.Image, like: pyvips.Image) -> pyvips.Image:
    return image.cast(pyvips.enums.BandFormat.UCHAR).copy(interpretation=like.interpretation)


@dataclass(frozen=True)
class Shown:
    """Where the pixels of an image with wholly transparent ones show (`mask`: 255, else 0), and how many do not."""

    mask: pyvips.Image
    hidden: int

    def share(self) -> float:
        return 1 - self.hidden / (self.mask.width * self.mask.height)


def _shown(image: pyvips.Image) -> Shown | None:
    """Where the pixels of `image` show; None when every pixel does. The colour under a transparent pixel is
    whatever its editor left (black, white, the picture before a cut-out): a level counted, or a neighbour blurred
    in, only where it shows, or one picture had three looks (ImageKit probe)."""
    if not image.hasalpha():
        return None
    alpha = image.extract_band(image.bands - 1)
    hidden = int(alpha.hist_find().getpoint(0, 0)[0])  # one pass: how many are 0
    return Shown(alpha > 0, hidden) if hidden else None


def _percentiles(bands: pyvips.Image, shown: Shown | None, *percents: float) -> list[list[int]]:
    """For each band, the levels below which `percents` % of its values lie, in the pixels `shown` (None: in all;
    as libvips' `percent`, to within a level, which has no mask), all bands found in one pass over the image."""
    hidden = 0
    if shown is not None:
        hidden = shown.hidden
        bands = shown.mask.ifthenelse(bands, 0)  # a hidden pixel counted at 0: taken off below
    levels = []
    for histogram in bands.hist_find().bandsplit():
        counts = histogram.cast(pyvips.enums.BandFormat.DOUBLE).tolist()[0]
        counts[0] -= hidden
        total, cumulative, level, found = sum(counts), 0.0, 0, []
        for percent in percents:
            while cumulative + counts[level] < total * percent / 100 and level < len(counts) - 1:
                cumulative += counts[level]
                level += 1
            found.append(level)
        levels.append(found)
    return levels


def _blurred_where_shown(image: pyvips.Image, sigma: float) -> pyvips.Image:
    """`image` (with alpha) blurred premultiplied: a transparent pixel's colour weighs nothing, a translucent one's
    as much as it shows. Premultiplied in 8 bits, whose blur is libvips' integer one: 2.3 × a plain blur's CPU,
    where a float blur took 17 × (`bl-10` of a 12 MP cut-out: 173 ms, 1.5 s); a colour under alpha 32 or more is
    then within 7 levels of the float blur's, and one less opaque hardly shows."""
    return _to_uchar(_to_uchar(image.premultiply(), image).gaussblur(sigma).unpremultiply(), image)


#: `bl-N` from which the blur reads its input in memory: its wide window had a streamed input (a resize) made
#: again for each strip of output, 2.5 × the CPU the cost prices (`bl-100` of an 8192×4500 upscale: 9.1 s of
#: CPU, 3.7 s in memory; benchmarks/bench_blur_cost.py); below it, streaming costs no more
BLUR_IN_MEMORY = 20


def blur(image: pyvips.Image, amount: float) -> pyvips.Image:
    """`bl-N`: a gaussian blur of radius about N px."""
    if amount >= BLUR_IN_MEMORY:
        image = in_memory(image)
    if image.hasalpha():
        return _blurred_where_shown(image, max(0.5, amount / 2))
    return image.gaussblur(max(0.5, amount / 2))


def grayscale(image: pyvips.Image) -> pyvips.Image:
    """`e-grayscale`: the grey of the colours a viewer sees. Under `cp-true` an image still holding its own profile's
    values is made sRGB first, and the profile dropped, as no grey output carries an RGB one: the grey of an Adobe
    RGB original's raw values, shown as sRGB's, had been up to 15 levels darker (pixels probe)."""
    if image.get_typeof("icc-profile-data") and image.bands >= 3:
        try:
            image = image.icc_transform("srgb", embedded=True)
        except pyvips.Error:
            pass  # a profile lcms cannot read counts as none: the values are sRGB's
        image = image.copy()
        image.remove("icc-profile-data")
    return image.colourspace(Interpretation.B_W)


def pixelate(image: pyvips.Image, side: int) -> pyvips.Image:
    """`e-pixelate-N`: squares of N×N px from the top-left corner, each the average of its pixels
    (weighted by their opacity); the squares cut by the right and bottom edges count their edge pixels
    again for the part that is missing."""
    if side == 1:
        return image
    width, height = image.width, image.height
    columns, rows = -(-width // side), -(-height // side)
    alpha = image.hasalpha()
    squares = (image.premultiply() if alpha else image).embed(
        0, 0, columns * side, rows * side, extend=pyvips.enums.Extend.COPY).shrink(side, side)
    if alpha:
        squares = _to_uchar(squares.unpremultiply(), image)
    return squares.zoom(side, side).crop(0, 0, width, height)


def in_region(image: pyvips.Image, region: tuple[int, int, int | None, int | None] | None,
              effect: Callable[[pyvips.Image], pyvips.Image]) -> pyvips.Image:
    """`effect` inside `region` (`e-region`: x, y, and a size or None for the rest of the image), clipped
    to the image; without one, on the whole image. A region that starts outside the image is a 400: a blur
    that hides nothing had served the image sharp (a plate given in the original's pixels after a `w-`)."""
    if region is None:
        return effect(image)
    x, y, width, height = region
    right, bottom = min(image.width, x + (width or image.width)), min(image.height, y + (height or image.height))
    if x >= right or y >= bottom:
        raise BadRequest(f"invalid transformation: e-region-{write_region(region)}: the region starts outside the "
                         f"{image.width}x{image.height} image of its step")
    # the rectangle and the image around it are two reads of one decode, apart: out of order for a streamed
    # one ("out of order read" on a 12 MP JPEG, answered 422): in memory, at the step's size, as a rotation
    image = in_memory(image)
    return image.insert(effect(image.crop(x, y, right - x, bottom - y)), x, y)


def on_faces(image: pyvips.Image, effect: Callable[[pyvips.Image], pyvips.Image]) -> pyvips.Image:
    """`effect` where `faces.find_faces` sees a face (its box grown by `FACE_COVER` each way), the rest
    untouched; no face, no change. The effect runs once over the whole image and a mask picks the faces
    from it, so the work stays that of one effect however many faces an image holds."""
    image = in_memory(image)  # searched, then read again by the effect
    stopping.check()
    found = faces.find_faces(image)
    stopping.check()
    if not found:
        return image
    return _face_mask(image.width, image.height, found).ifthenelse(effect(image), image)


def _face_mask(width: int, height: int, found: list[faces.Box]) -> pyvips.Image:
    """255 over every face's grown box, 0 elsewhere: drawn once at the search's scale (a cell of `scale`
    px a side, rounded outwards), then zoomed back."""
    import numpy  # with OpenCV, which `find_faces` needed

    scale = max(1, math.ceil(math.sqrt(width * height / faces.DETECT_PIXELS)))
    columns, rows = -(-width // scale), -(-height // scale)
    cells = numpy.zeros((rows, columns), dtype=numpy.uint8)
    for left, top, w, h in found:
        x0, x1 = (left - w * FACE_COVER) / scale, (left + w * (1 + FACE_COVER)) / scale
        y0, y1 = (top - h * FACE_COVER) / scale, (top + h * (1 + FACE_COVER)) / scale
        cells[max(0, math.floor(y0)):math.ceil(y1), max(0, math.floor(x0)):math.ceil(x1)] = 255
    mask = pyvips.Image.new_from_memory(cells.data, columns, rows, 1, pyvips.enums.BandFormat.UCHAR)
    return mask.zoom(scale, scale).crop(0, 0, width, height)


def _in_colour(image: pyvips.Image) -> pyvips.Image:
    """`image` with three colour bands: a greyscale one made sRGB (its alpha kept)."""
    return image.colourspace(Interpretation.SRGB) if image.bands < 3 else image


def _recombined(image: pyvips.Image, matrix: list[list[float]]) -> pyvips.Image:
    """The colour bands, made sRGB (a greyscale image gets three), times a 3×3 matrix."""
    return _colour_bands(_in_colour(image), lambda bands: _to_uchar(bands.recomb(matrix), bands))


def brightness(image: pyvips.Image, percent: int) -> pyvips.Image:
    """`e-brightness-N` (−99–100): each colour value times 1 + N/100, as CSS's `brightness()`."""
    return _colour_bands(image, lambda bands: _to_uchar(bands * (1 + percent / 100), bands))


def saturation(image: pyvips.Image, percent: int) -> pyvips.Image:
    """`e-saturation-N` (−100–100): CSS's `saturate(1 + N/100)`; −100 is greyscale."""
    if image.bands < 3:
        return image
    s = 1 + percent / 100
    return _recombined(image, [[0.213 + 0.787 * s, 0.715 - 0.715 * s, 0.072 - 0.072 * s],
                               [0.213 - 0.213 * s, 0.715 + 0.285 * s, 0.072 - 0.072 * s],
                               [0.213 - 0.213 * s, 0.715 - 0.715 * s, 0.072 + 0.928 * s]])


def sepia(image: pyvips.Image, percent: int) -> pyvips.Image:
    """`e-sepia-N` (1–100): CSS's `sepia(N/100)`."""
    k = 1 - percent / 100
    return _recombined(image, [[0.393 + 0.607 * k, 0.769 - 0.769 * k, 0.189 - 0.189 * k],
                               [0.349 - 0.349 * k, 0.686 + 0.314 * k, 0.168 - 0.168 * k],
                               [0.272 - 0.272 * k, 0.534 - 0.534 * k, 0.131 + 0.869 * k]])


def negate(image: pyvips.Image) -> pyvips.Image:
    return _colour_bands(image, lambda bands: bands.invert())


def vibrance(image: pyvips.Image, percent: int) -> pyvips.Image:
    """`e-vibrance-N` (−100–100): each colour moved away from its grey (toward it, below 0) as CSS's
    `saturate(1 + N/100 × (1 − spread))` would, spread being the difference of its largest and smallest
    value over 255: greys and dull colours change most, a colour with one value 0 and one 255 (red,
    yellow, blue…) not at all."""
    if image.bands < 3:
        return image

    def vibrant(bands: pyvips.Image) -> pyvips.Image:
        red, green, blue = bands[0], bands[1], bands[2]
        spread = (red.maxpair(green).maxpair(blue) - red.minpair(green).minpair(blue)) / 255
        grey = bands.recomb([[0.213, 0.715, 0.072]])
        return _to_uchar(grey + (bands - grey) * ((1 - spread) * (percent / 100) + 1), bands)
    return _colour_bands(image, vibrant)


def hue(image: pyvips.Image, percent: int) -> pyvips.Image:
    """`e-hue-N` (−100–100): CSS's `hue-rotate()` by N × 1.8° (100: half the colour wheel), as
    ImageMagick's `-modulate` reads a hue of 100 + N."""
    if image.bands < 3:
        return image
    angle = math.radians(percent * 1.8)
    c, s = math.cos(angle), math.sin(angle)
    return _recombined(image, [
        [0.213 + c * 0.787 - s * 0.213, 0.715 - c * 0.715 - s * 0.715, 0.072 - c * 0.072 + s * 0.928],
        [0.213 - c * 0.213 + s * 0.143, 0.715 + c * 0.285 + s * 0.140, 0.072 - c * 0.072 - s * 0.283],
        [0.213 - c * 0.213 - s * 0.787, 0.715 - c * 0.715 + s * 0.715, 0.072 + c * 0.928 + s * 0.072]])


def channels(image: pyvips.Image, red: int, green: int, blue: int) -> pyvips.Image:
    """`e-red-N`, `e-green-N`, `e-blue-N` (−100–100): that band's values times 1 + N/100 (a greyscale
    image is made sRGB first)."""
    factors = [1 + red / 100, 1 + green / 100, 1 + blue / 100]
    return _colour_bands(_in_colour(image), lambda bands: _to_uchar(bands * factors, bands))


def blackwhite(image: pyvips.Image, percent: int) -> pyvips.Image:
    """`e-blackwhite-N` (0–100): white where the grey level is above N % of white, black elsewhere."""
    def threshold(bands: pyvips.Image) -> pyvips.Image:
        grey = bands.colourspace(Interpretation.B_W) if bands.bands >= 3 else bands
        return _to_uchar((grey > 255 * percent / 100), grey)  # libvips' true is 255
    return _colour_bands(image, threshold)


def _mapped(image: pyvips.Image, curve: Callable[[float], float]) -> pyvips.Image:
    """Each colour value v made 255 × curve(v / 255), rounded: one table of the 256 values, looked up."""
    table = bytes(min(255, max(0, round(255 * curve(v / 255)))) for v in range(256))
    lut = pyvips.Image.new_from_memory(table, 256, 1, 1, pyvips.enums.BandFormat.UCHAR)
    return _colour_bands(image, lambda bands: bands.maplut(lut).copy(interpretation=bands.interpretation))


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def sigmoid_contrast(image: pyvips.Image, level: int) -> pyvips.Image:
    """`e-sigmoidcontrast-N` (−100–100): ImageMagick's `-sigmoidal-contrast (N/10)x50%`, an S curve that
    keeps black, mid grey and white where they are; below 0 its inverse (`+sigmoidal-contrast`), which
    flattens the same way; 0 changes nothing."""
    if level == 0:
        return image
    slope = abs(level) / 10
    low, high = _sigmoid(-slope / 2), _sigmoid(slope / 2)

    def increased(u: float) -> float:
        return (_sigmoid(slope * (u - 0.5)) - low) / (high - low)

    def decreased(u: float) -> float:
        inside = min(max(u * (high - low) + low, 1e-12), 1 - 1e-12)
        return 0.5 - math.log(1 / inside - 1) / slope
    return _mapped(image, increased if level > 0 else decreased)


def linear_contrast(image: pyvips.Image, percent: int) -> pyvips.Image:
    """`e-linearcontrast-N` (1–200): CSS's `contrast(N/100)`, each value's distance from mid grey times
    N/100; 100 changes nothing."""
    return image if percent == 100 else _mapped(image, lambda u: (u - 0.5) * percent / 100 + 0.5)


def gamma(image: pyvips.Image, level: int) -> pyvips.Image:
    """`e-gamma-N` (−50–150): ImageMagick's `-gamma 1 + N/100`, each value (0–1) to the power
    1 / (1 + N/100): above 0 the mid tones are lighter, below darker; black and white stay."""
    return image if level == 0 else _mapped(image, lambda u: u ** (1 / (1 + level / 100)))


def brightness_hsb(image: pyvips.Image, percent: int) -> pyvips.Image:
    """`e-brightnesshsb-N` (−99–100): HSB's brightness (a pixel's largest value) times 1 + N/100, hue and
    saturation kept: the pixel's values all scaled alike, no further than its largest reaches white (where
    `e-brightness` clips each value on its own, and so shifts the hue of bright colours)."""
    factor = 1 + percent / 100

    def scaled(bands: pyvips.Image) -> pyvips.Image:
        largest = bands if bands.bands == 1 else bands[0].maxpair(bands[1]).maxpair(bands[2])
        return _to_uchar(bands * (255 / largest.maxpair(1)).minpair(factor), bands)
    return _colour_bands(image, scaled)


def colour_blend(image: pyvips.Image, percent: int, colour: RGBA) -> pyvips.Image:
    """`e-colorize-co-<colour>_in-N`: ImageMagick's `-fill <colour> -colorize N%`, each colour value
    (1 − N/100) × itself + N/100 × the colour's (a translucent colour's share in proportion to its
    opacity; a greyscale image is made sRGB first)."""
    share = percent / 100 * colour[3] / 255
    return _colour_bands(_in_colour(image), lambda bands: _to_uchar(
        bands * (1 - share) + [value * share for value in colour[:3]], bands))


#: `cr`: a lightness difference counts this much of a colour difference (a and b) in telling a colour's shades
#: from other colours: the shades of one colour differ most in lightness
LIGHTNESS_SHARE = 0.5
#: `cr`: a source colour less colourful than this (CIE chroma) has no hue to keep: its shades take the target's
GREY_CHROMA = 2.0


def _lab(colour: RGBA) -> list[float]:
    pixel = (pyvips.Image.black(1, 1) + list(colour[:3])).cast(pyvips.enums.BandFormat.UCHAR)
    return pixel.copy(interpretation=Interpretation.SRGB).colourspace(Interpretation.LAB)(0, 0)


def replace_colour(image: pyvips.Image, replacement: ColourReplacement) -> pyvips.Image:
    """`cr-<to>_<tolerance>_<from>`, in CIE Lab: the pixels near the source colour take the target's hue,
    their chroma scaled by the target's over the source's and their lightness moved so that the source's
    becomes the target's (a shade's difference from it kept, or narrowed to fit); fully within half the
    tolerance of the source, less and less to none at the tolerance, a distance in Lab units (a lightness
    difference counting half)."""
    image = _in_colour(image)
    assert replacement.source is not None, "resolved to the dominant colour with the step (`geometry.resolved`)"
    (sl, sa, sb), (tl, ta, tb) = _lab(replacement.source), _lab(replacement.target)
    source_chroma = math.hypot(sa, sb)
    reach = replacement.tolerance

    def moved(bands: pyvips.Image) -> pyvips.Image:
        lab = bands.colourspace(Interpretation.LAB)
        offset = lab - [sl, sa, sb]
        distance = ((offset * offset * [LIGHTNESS_SHARE ** 2, 1, 1]).bandmean() * 3) ** 0.5
        # 1 within half the reach, down to 0 at the reach (a reach of 0: the source colour alone)
        if reach == 0:
            weight = (distance < 0.5).ifthenelse(1, 0)
        else:
            ramp = 2 - distance * (2 / reach)
            weight = (ramp > 1).ifthenelse(1, (ramp < 0).ifthenelse(0, ramp))
        lightness = lab[0]
        # the source's → the target's; a shade's difference from it kept, or narrowed to fit in 0–100
        darker, lighter = min(tl / sl, 1) if sl > 0 else 1, min((100 - tl) / (100 - sl), 1) if sl < 100 else 1
        lightness = (lightness < sl).ifthenelse(lightness.linear(darker, tl - sl * darker),
                                                lightness.linear(lighter, tl - sl * lighter))
        # the target's hue, at the pixel's chroma scaled as the target's is to the source's (a grey: the target's)
        if source_chroma >= GREY_CHROMA:
            colour = lab.extract_band(1, n=2)
            colour = ((colour * colour).bandmean() * 2) ** 0.5 * [ta / source_chroma, tb / source_chroma]
        else:
            colour = lightness * 0 + [ta, tb]
        blended = lab + (lightness.bandjoin(colour) - lab) * weight
        # the rest as it was, not through Lab and back (which may move a value by one)
        srgb = blended.copy(interpretation=Interpretation.LAB).colourspace(Interpretation.SRGB)
        return (weight > 0).ifthenelse(_to_uchar(srgb, bands), bands)
    return _colour_bands(image, moved)


def vignette(image: pyvips.Image, percent: int) -> pyvips.Image:
    """`e-vignette-N` (0–100): the colour darkened toward the edges, each value times 1 − N/100 × d², d
    being the distance from the centre on an ellipse the image's shape, 1 at the corners (at 100 the
    corners are black and the middle of each side half as bright)."""
    if percent == 0:
        return image
    width, height = image.width, image.height
    share = percent / 200  # d² is half the sum of the squared distances across and down
    # 1 − share × (across² + down²) is a row plus a column: two short lists repeated, not a distance a pixel
    across = pyvips.Image.new_from_list([[1 - share * ((x + 0.5) / (width / 2) - 1) ** 2 for x in range(width)]])
    down = pyvips.Image.new_from_list([[-share * ((y + 0.5) / (height / 2) - 1) ** 2] for y in range(height)])
    factor = across.replicate(1, height) + down.replicate(width, 1)
    return _colour_bands(image, lambda bands: _to_uchar(bands * factor, bands))


def opacity_threshold(image: pyvips.Image, percent: int) -> pyvips.Image:
    """`e-opacitythreshold-N` (0–100): a pixel less opaque than N % transparent, the others opaque (0:
    every pixel opaque; 100: only those already opaque stay)."""
    if not image.hasalpha():
        return image
    alpha = image.extract_band(image.bands - 1)
    return image.extract_band(0, n=image.bands - 1).bandjoin(
        _to_uchar(alpha >= 255 * percent / 100, alpha)).copy(interpretation=image.interpretation)


def _blended(image: pyvips.Image, adjusted: pyvips.Image, percent: int) -> pyvips.Image:
    """`percent` % of `adjusted` over the rest of `image` (Cloudinary's blend: 0 is the original)."""
    if percent == 100:
        return adjusted
    return _to_uchar(image * (1 - percent / 100) + adjusted * (percent / 100), adjusted)


def _levels(low: float, high: float) -> tuple[float, float]:
    """The scale and offset that stretch `low`–`high` to the full range (none when there is no range)."""
    return (255.0 / (high - low), -low * 255.0 / (high - low)) if high > low else (1.0, 0.0)


def contrast(image: pyvips.Image, blend: int = 100) -> pyvips.Image:
    """`e-contrast[-blend]`: stretch the 1st–99th percentile of the levels (of the pixels that show) to the full
    range."""
    image = in_memory(image)
    shown = _shown(image)

    def stretch(bands: pyvips.Image) -> pyvips.Image:
        # of several bands, the mean of each band's, as libvips' `percent` (one colour: no range, left as it is)
        lows, highs = zip(*_percentiles(bands, shown, 1, 99))
        scale, offset = _levels(sum(lows) / len(lows), sum(highs) / len(highs))
        return _blended(bands, _to_uchar(bands * scale + offset, bands), blend)
    return _colour_bands(image, stretch)


def auto_colour(image: pyvips.Image, blend: int) -> pyvips.Image:
    """`e-autocolor[-blend]`: each colour band's 1st–99th percentile (of the pixels that show) stretched to the
    full range on its own (a colour cast goes with it), as image editors' auto colour or auto levels."""
    image = in_memory(image)
    shown = _shown(image)

    def stretch(bands: pyvips.Image) -> pyvips.Image:
        levels = [_levels(low, high) for low, high in _percentiles(bands, shown, 1, 99)]
        adjusted = bands.linear([scale for scale, _ in levels], [offset for _, offset in levels])
        return _blended(bands, _to_uchar(adjusted, bands), blend)
    return _colour_bands(image, stretch)


def auto_brightness(image: pyvips.Image, blend: int) -> pyvips.Image:
    """`e-autobrightness[-blend]`: a gamma that brings the mean grey level (of the pixels that show) to the
    middle, as ImageMagick's `-auto-gamma`, held to `AUTO_GAMMA`'s range so that a night scene is not made day."""
    image = in_memory(image)
    shown = _shown(image)

    def brighten(bands: pyvips.Image) -> pyvips.Image:
        grey = bands.colourspace(Interpretation.B_W) if bands.bands >= 3 else bands
        if shown is None:
            mean = grey.avg() / 255
        elif (share := shown.share()) > 0:
            mean = shown.mask.ifthenelse(grey, 0).avg() / 255 / share
        else:
            return bands  # nothing shows
        mean = min(max(mean, 0.01), 0.99)
        power = min(max(math.log(0.5) / math.log(mean), 1 / AUTO_GAMMA), AUTO_GAMMA)
        return _blended(bands, _to_uchar(bands.gamma(exponent=1 / power), bands), blend)
    return _colour_bands(image, brighten)


def sharpen(image: pyvips.Image, amount: int) -> pyvips.Image:
    """`e-sharpen-N`: libvips' sharpen, in flat areas too; at 10 jagged areas get libvips' default slope. A
    transparent pixel takes its visible neighbours' colour first, which is what the sharpened edge is set against."""
    if image.hasalpha():
        image = in_memory(image)  # read twice: for what shows, then sharpened
        if (shown := _shown(image)) is not None:
            image = shown.mask.ifthenelse(image, _blurred_where_shown(image, SHARPEN_FILL_SIGMA))
    return _colour_bands(image, lambda bands: bands.sharpen(sigma=1.0, m1=amount / 10, m2=amount * 0.3))


def unsharp_mask(image: pyvips.Image, radius: float, sigma: float, amount: float, threshold: float) -> pyvips.Image:
    """`e-usm-radius-sigma-amount-threshold`, as in ImageMagick: add `amount` × (image − blurred), where
    that difference exceeds `threshold` (a fraction of the full range). The gaussian's extent follows
    from `sigma`, so `radius` only documents intent."""
    del radius

    blurred = _blurred_where_shown(image, sigma).extract_band(0, n=image.bands - 1) if image.hasalpha() else None

    def mask(bands: pyvips.Image) -> pyvips.Image:
        detail = bands.cast(pyvips.enums.BandFormat.FLOAT) - (bands.gaussblur(sigma) if blurred is None else blurred)
        if threshold > 0:
            detail = (detail.abs() > threshold * 255).ifthenelse(detail, 0)
        return _to_uchar(bands + detail * amount, bands)
    return _colour_bands(image, mask)


def border(image: pyvips.Image, width: int, colour) -> pyvips.Image:
    """`b-W_COLOUR`: a border of W px around the image (the output grows by 2W each way)."""
    image, values = background(image, colour)
    return image.embed(width, width, image.width + 2 * width, image.height + 2 * width,
                       extend=pyvips.enums.Extend.BACKGROUND, background=values)


def _with_alpha(image: pyvips.Image, factor: pyvips.Image | float) -> pyvips.Image:
    """Multiply the alpha channel (added, opaque, when missing) by `factor` in 0–1."""
    if not image.hasalpha():
        image = image.bandjoin_const([255])
    colour, alpha = image.extract_band(0, n=image.bands - 1), image.extract_band(image.bands - 1)
    return colour.bandjoin(_to_uchar(alpha * factor, alpha)).copy(interpretation=image.interpretation)


def rounded_corners(image: pyvips.Image, radius: int | str | tuple[int, int, int, int]) -> pyvips.Image:
    """`r-N`: corners rounded with radius N (anti-aliased); `r-max`: the largest ellipse that fits;
    `r-a_b_c_d`: one radius per corner, clockwise from the top left."""
    width, height = image.width, image.height
    xyz = pyvips.Image.xyz(width, height).cast(pyvips.enums.BandFormat.FLOAT) + 0.5
    x, y = xyz[0], xyz[1]
    if radius == "max":
        rx, ry = width / 2, height / 2
        distance = (((x - rx) / rx) ** 2 + ((y - ry) / ry) ** 2) ** 0.5
        edge = (1 - distance) * min(rx, ry)  # ≈ pixels inside the ellipse's edge
    else:
        corners = radius if isinstance(radius, tuple) else (int(radius),) * 4
        top_left, top_right, bottom_right, bottom_left = (min(c, width // 2, height // 2) for c in corners)
        if not any((top_left, top_right, bottom_right, bottom_left)):  # a 1-pixel side has no corner to round
            return image
        left, top = x < width / 2, y < height / 2
        r = left.ifthenelse(top.ifthenelse(top_left, bottom_left), top.ifthenelse(top_right, bottom_right))
        dx = (r - x).maxpair(x - (width - r)).maxpair(x * 0)
        dy = (r - y).maxpair(y - (height - r)).maxpair(y * 0)
        edge = r - (dx ** 2 + dy ** 2) ** 0.5
    coverage = (edge + 0.5).maxpair(edge * 0).minpair(edge * 0 + 1)
    if isinstance(radius, tuple):  # a corner of radius 0 stays square
        coverage = (r > 0).ifthenelse(coverage, 1.0)
    return _with_alpha(image, coverage)


def opacity(image: pyvips.Image, percent: int) -> pyvips.Image:
    return _with_alpha(image, percent / 100)


def _layer(colour: RGBA, alpha: pyvips.Image) -> pyvips.Image:
    """A layer of one colour with `alpha` (0–255, float) times the colour's own opacity."""
    rgb = (alpha * 0 + list(colour[:3])).cast(pyvips.enums.BandFormat.UCHAR)
    return rgb.bandjoin((alpha * (colour[3] / 255)).cast(pyvips.enums.BandFormat.UCHAR)).copy(
        interpretation=Interpretation.SRGB)


def _srgb_alpha(image: pyvips.Image) -> pyvips.Image:
    image, _ = background(image, (0, 0, 0, 0))  # sRGB, with alpha
    return image


def _over(lower: pyvips.Image, upper: pyvips.Image) -> pyvips.Image:
    return _to_uchar(lower.composite2(upper, pyvips.enums.BlendMode.OVER), lower)


def gradient(image: pyvips.Image, degrees: float, start: RGBA, end: RGBA, stop: float) -> pyvips.Image:
    """`e-gradient`: a linear gradient laid over the image, from `start` at the side `degrees` points
    away from (0: from the bottom up, 180: from the top down, as CSS) to `end` at the stop point (a
    fraction of the length across, or pixels above 1), `end` beyond it."""
    opaque = not image.hasalpha()
    image = _srgb_alpha(image)
    width, height = image.width, image.height
    radians = math.radians(degrees)
    dx, dy = math.sin(radians), -math.cos(radians)
    length = abs(width * dx) + abs(height * dy)  # the CSS gradient line's length
    xyz = pyvips.Image.xyz(width, height).cast(pyvips.enums.BandFormat.FLOAT)
    along = ((xyz[0] - width / 2) * dx + (xyz[1] - height / 2) * dy) / length + 0.5  # 0–1 along the line
    reach = stop * length if stop <= 1 else stop
    t = (along * (length / reach)).minpair(along * 0 + 1).maxpair(along * 0)
    bands = [t * (b - a) + a for a, b in zip(start, end)]
    layer = _to_uchar(bands[0].bandjoin(bands[1:]), image).copy(interpretation=Interpretation.SRGB)
    graded = _over(image, layer)
    return graded.extract_band(0, n=3) if opaque else graded


def shadow(image: pyvips.Image, blur_level: float, saturation: float, x_percent: float,
           y_percent: float) -> pyvips.Image:
    """`e-shadow`: a black shadow of the opaque pixels, blurred, `saturation` % dark, offset by a
    percentage of the size, under the image (on the same canvas: an opaque image hides it)."""
    if not image.hasalpha():
        return image
    dx, dy = round(image.width * x_percent / 100), round(image.height * y_percent / 100)
    if dy:
        # the shadow's row y is the alpha's row y - dy: the image is read at two places that far apart,
        # out of order for a streamed decode ("out of order read": `w-2000,r-50,e-shadow-y-50` on a 12 MP
        # JPEG was a 422 blaming the original). In memory, at the step's (shrunk) size, as a rotation does
        image = in_memory(image)
    image = _srgb_alpha(image)
    alpha = image.extract_band(3).cast(pyvips.enums.BandFormat.FLOAT)
    if blur_level > 0:
        alpha = alpha.gaussblur(blur_level)
    alpha = alpha.embed(dx, dy, image.width, image.height)  # shifted; black (transparent) where it left
    return _over(_layer((0, 0, 0, round(saturation / 100 * 255)), alpha), image)


def flatten_on(image: pyvips.Image, colour: RGBA) -> pyvips.Image:
    """An opaque `bg` fills transparent areas, as in ImageKit (a translucent one only pads: laid under
    its own padding it would darken it)."""
    return _srgb_alpha(image).flatten(background=list(colour[:3])).copy(interpretation=Interpretation.SRGB)


#: the step's fields that each take one value, and their effect, in the order they apply
Adjustments = tuple[tuple[str, Callable[[pyvips.Image, int], pyvips.Image]], ...]
_COLOUR_ADJUSTMENTS: Adjustments = (
    ("brightness", brightness), ("brightness_hsb", brightness_hsb), ("saturation", saturation), ("sepia", sepia),
    ("vibrance", vibrance), ("hue", hue))
_TONE_ADJUSTMENTS: Adjustments = (
    ("blackwhite", blackwhite), ("auto_colour", auto_colour), ("auto_brightness", auto_brightness),
    ("contrast", contrast), ("sigmoid_contrast", sigmoid_contrast), ("linear_contrast", linear_contrast),
    ("gamma", gamma), ("sharpen", sharpen))


def _blurred_and_pixelated(image: pyvips.Image, step: Step) -> pyvips.Image:
    if step.blur is not None:
        image = blur(image, step.blur)
    return image if step.pixelate is None else pixelate(image, step.pixelate)


def _each(image: pyvips.Image, step: Step, effects: Adjustments) -> pyvips.Image:
    for field, effect in effects:
        if (value := getattr(step, field)) is not None:
            image = effect(image, value)
    return image


def apply_look(image: pyvips.Image, step: Step) -> pyvips.Image:
    if step.blur is not None or step.pixelate is not None:  # in one region (`e-region`), held in memory once
        image = in_region(image, step.region, lambda whole: _blurred_and_pixelated(whole, step))
    if step.blur_faces is not None:
        image = on_faces(image, lambda face: blur(face, step.blur_faces))
    if step.pixelate_faces is not None:
        image = on_faces(image, lambda face: pixelate(face, step.pixelate_faces))
    if step.grayscale:
        image = grayscale(image)
    image = _each(image, step, _COLOUR_ADJUSTMENTS)
    if (step.red, step.green, step.blue) != (None, None, None):
        image = channels(image, step.red or 0, step.green or 0, step.blue or 0)
    if step.colour_blend is not None:
        image = colour_blend(image, *step.colour_blend)
    if step.colour_replacement is not None:
        image = replace_colour(image, step.colour_replacement)
    if step.negate:
        image = negate(image)
    image = _each(image, step, _TONE_ADJUSTMENTS)
    if step.vignette is not None:
        image = vignette(image, step.vignette)
    if step.unsharp_mask is not None:
        image = unsharp_mask(image, *step.unsharp_mask)
    if step.gradient is not None:
        image = gradient(image, *step.gradient)
    if step.border is not None:
        image = border(image, *step.border)
    if step.radius is not None:
        image = rounded_corners(image, step.radius)
    if step.opacity_threshold is not None:
        image = opacity_threshold(image, step.opacity_threshold)
    if step.opacity != 100:
        image = opacity(image, step.opacity)
    if step.shadow is not None:
        image = shadow(image, *step.shadow)
    if step.colour is not None and step.colour[3] == 255 and image.hasalpha():
        image = flatten_on(image, step.colour)
    return image
