"""Output formats: what each is called, its MIME type, and how the output format is chosen.

The choice happens in two halves. Before the fetch, `plan_format` decides everything that does not
depend on the original (so it can be part of the cache key); after decoding, `final_formats` fills
in the rest (`f-orig`, transparency for `f-auto` on browsers without WebP/AVIF, animation).
"""

from __future__ import annotations

MIME_TYPES = {
    "jpg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "avif": "image/avif",
    "gif": "image/gif",
    "svg": "image/svg+xml",  # an SVG original served as it is (`as_vector`): the node writes none
}
#: MIME type → the extension of a file of it
TYPE_EXTENSIONS = {mime: fmt for fmt, mime in MIME_TYPES.items()}
#: request-path extension → output format (`.jpe` is JPEG's third, which Cloudinary delivers)
EXTENSIONS = {"jpg": "jpg", "jpeg": "jpg", "jpe": "jpg", "png": "png", "webp": "webp", "avif": "avif", "gif": "gif"}
#: every extension that names an image format (so, on a Cloudinary path, is not part of the public ID)
IMAGE_EXTENSIONS = frozenset(EXTENSIONS) | {"tif", "tiff", "bmp", "heic", "heif", "jxl", "jp2", "ico", "svg"}
#: libvips loader → the format we write when asked to keep the original's format
LOADER_FORMATS = {
    "jpegload_source": "jpg",
    "pngload_source": "png",
    "webpload_source": "webp",
    "heifload_source": "avif",
    "gifload_source": "gif",
    "uhdrload_source": "jpg",  # an Ultra HDR JPEG (a phone's photo with its gain map) is a JPEG
}
#: a HEIF coded with HEVC (`.heic`): not a libvips loader, but what `probe` calls the loader of one,
#: whose header libvips' HEIF loader reads and whose pixels `heic.decode` does
HEIC_LOADER = "heifload_source:hevc"
#: the MIME type of an original served as it is (`orig-true`) that is in no format the node writes
UNWRITTEN_TYPES = {"tiffload_source": "image/tiff", HEIC_LOADER: "image/heic"}
#: the loaders of the formats the node reads (JPEG, Ultra HDR JPEG, PNG, WebP, AVIF/HEIF, HEIC, GIF, TIFF);
#: anything else libvips could open is refused (422), SVG unless `[limits] allow_svg`
INPUT_LOADERS = frozenset(LOADER_FORMATS) | frozenset(UNWRITTEN_TYPES)
SVG_LOADER = "svgload_source"
#: the MIME type of an original served as it is in no format the node writes (`orig-true`; an SVG also unless a
#: raster format is asked for, `as_vector`)
AS_IS_TYPES = {**UNWRITTEN_TYPES, SVG_LOADER: MIME_TYPES["svg"]}
#: the libvips class of each loader the node may run (its file, buffer and source variants derive from
#: it): every other loader is blocked inside libvips (`render.allow_only_input_loaders`)
LOADER_CLASSES = {
    "jpegload_source": "VipsForeignLoadJpeg",
    "uhdrload_source": "VipsForeignLoadUhdr",
    "pngload_source": "VipsForeignLoadPng",  # spng's or libpng's, whichever the build has
    "webpload_source": "VipsForeignLoadWebp",
    "heifload_source": "VipsForeignLoadHeif",
    "gifload_source": "VipsForeignLoadNsgif",
    "tiffload_source": "VipsForeignLoadTiff",
    SVG_LOADER: "VipsForeignLoadSvg",
}
#: the formats an original may be in, as a message names them
READ_FORMATS = "JPEG, PNG, WebP, AVIF, HEIC, GIF and TIFF"
#: formats libvips writes with several frames
ANIMATED_FORMATS = ("gif", "webp")
#: the loaders whose pages are an animation's frames: a TIFF's pages are a document's (scans, a pyramid's
#: levels, of other sizes), a HEIF's several images a burst or edits, and they come out as their first
ANIMATED_LOADERS = frozenset({"gifload_source", "webpload_source"})
#: the format's own limit on a side, below the configured `max_output_side` default of others (libaom's AVIF: 16384;
#: past it, libvips' encode failed, and the 422 blamed the original)
FORMAT_MAX_SIDE = {"webp": 16383, "avif": 16384}

#: plan values that are settled only once the original is decoded
KEEP_SOURCE = "orig"
AUTO_LEGACY = "auto"
#: the `f-` values whose output keeps an animated original's frames (`animates`)
MAY_ANIMATE = (*ANIMATED_FORMATS, KEEP_SOURCE, AUTO_LEGACY)
#: `f-auto` for a browser taking both: AVIF, but WebP for an animation (libvips writes no animated AVIF)
AUTO_MODERN = "avif|webp"
#: `f-auto` for a browser taking AVIF but not WebP: AVIF, but GIF for an animation (every browser
#: animates GIF). Not the plan `avif`, which is `f-avif`'s (an animation becomes its first frame)
AUTO_AVIF = "avif|gif"
#: `f-auto` for a browser taking WebP but not AVIF: WebP, still or animated. Not the plan `webp`, which is
#: `f-webp`'s: that one had left this browser alone rasterising an SVG, and refusing a long GIF it passes on
AUTO_WEBP = "webp|webp"
#: `f-auto` with `[defaults] auto_format_smallest`: every acceptable format is encoded, the smallest
#: served; the plan lists them (`smallest:avif|webp|auto`), so the cache key differs from the plain plan
SMALLEST = "smallest:"


def path_format(path: str) -> str | None:
    """The output format named by the request path's extension, if it is a known image extension
    (`posixpath.splitext`'s, at half the price: it is on the path of every plan)."""
    stem, _, extension = path[path.rfind("/") + 1:].rpartition(".")
    if not stem.strip("."):  # no dot, or only leading ones (`.jpg`): no extension
        return None
    return EXTENSIONS.get(extension.lower())


def accepts(accept: str | None, media_type: str) -> bool:
    """Whether an `Accept` header names `media_type` itself (lower case) with a weight above 0.

    Only the type named outright counts (`image/*` and `*/*` do not: every browser sends them, and
    most of the browsers that send them alone take neither AVIF nor WebP). `q=0` means "not
    acceptable" (RFC 9110 12.4.2): `image/webp;q=0` refuses WebP. Names and parameters are compared
    without case, spaces around them are ignored; a `q` that is not a number is ignored (as if the
    range had none: weight 1), one above 1 counts as 1, one below 0 as 0. Listed twice, the lowest
    weight counts. Other weights do not order the formats: AVIF is still preferred to WebP when both
    are above 0."""
    accept = (accept or "").lower()
    if media_type not in accept:  # the common answer, without a parse
        return False
    listed = False
    for media_range in accept.split(","):
        name, _, parameters = media_range.partition(";")
        if name.strip() != media_type:
            continue
        listed = True
        if _weight(parameters) <= 0:
            return False
    return listed


def _weight(parameters: str) -> float:
    """The `q` of a media range's parameters (`q=0.5;level=1`, lower case), 1 when none is a number."""
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip() != "q":
            continue
        try:
            weight = float(value.strip().strip('"'))
        except ValueError:
            continue
        if weight != weight:  # NaN: not a number either
            continue
        return min(max(weight, 0.0), 1.0)
    return 1.0


def plan_format(requested: str | None, path: str, accept: str | None, default_auto: bool = False,
                smallest: bool = False) -> tuple[str, bool]:
    """Before the fetch: (planned format, whether it depended on `Accept`).

    The planned format is a real format, or `KEEP_SOURCE`, `AUTO_LEGACY` (JPEG, or PNG when the image
    has transparency, GIF when it stays animated), `AUTO_MODERN`, `AUTO_AVIF`, `AUTO_WEBP` or a `SMALLEST` list.
    `default_auto` (`[defaults] auto_format`) makes a URL without `f-` an `f-auto` one, whatever its
    extension, as ImageKit does by default.
    """
    if requested is None and default_auto:
        requested = "auto"
    if requested == "auto":
        avif, webp = accepts(accept, "image/avif"), accepts(accept, "image/webp")
        if smallest and (avif or webp):
            return SMALLEST + "|".join([*(["avif"] if avif else []), *(["webp"] if webp else []), AUTO_LEGACY]), True
        planned = AUTO_MODERN if avif and webp else AUTO_AVIF if avif else AUTO_WEBP if webp else AUTO_LEGACY
        return planned, True
    if requested is not None:
        return requested, False
    return path_format(path) or KEEP_SOURCE, False


def as_vector(planned: str) -> bool:
    """Whether an SVG original is served as it is, whatever the steps, as ImageKit delivers one: unless a raster
    format is asked for (`f-png`: then drawn and transformed), with `f-auto` and `[defaults] auto_format` too
    (`render_image`: but when a layer is drawn on it)."""
    return planned == KEEP_SOURCE or chosen_by_accept(planned)


def chosen_by_accept(planned: str) -> bool:
    """Whether the plan is `f-auto`'s: the format is picked for the browser, every browser shows GIF."""
    return planned in (AUTO_MODERN, AUTO_AVIF, AUTO_WEBP, AUTO_LEGACY) or planned.startswith(SMALLEST)


def animates(planned: str, loader: str) -> bool:
    """Whether the output keeps an animated original's frames (else it is the first frame). Under
    `f-auto` always: WebP where the browser takes it, else GIF."""
    return loader in ANIMATED_LOADERS and (chosen_by_accept(planned) or _settled(planned, loader) in ANIMATED_FORMATS)


def _settled(planned: str, loader: str) -> str:
    return LOADER_FORMATS.get(loader, AUTO_LEGACY) if planned == KEEP_SOURCE else planned


def picks_by_alpha(planned: str) -> bool:
    """Whether the plan's format (or one of its candidates) depends on whether the image has alpha:
    `f-auto` for a browser taking neither WebP nor AVIF, PNG or JPEG."""
    return planned == AUTO_LEGACY or planned.startswith(SMALLEST)


def final_formats(planned: str, loader: str, has_alpha: bool, animated: bool) -> list[str]:
    """After rendering: the formats to encode (one, or the candidates of a `SMALLEST` plan, of which
    the smallest output is served). `has_alpha` is the rendered image's, `animated` whether it kept
    several frames."""
    if planned.startswith(SMALLEST):
        candidates = [final_formats(p, loader, has_alpha, animated)[0]
                      for p in planned.removeprefix(SMALLEST).split("|") if not (animated and p == "avif")]
        return list(dict.fromkeys(candidates))
    planned = _settled(planned, loader)
    if planned == AUTO_MODERN:
        return ["webp" if animated else "avif"]
    if planned == AUTO_AVIF:
        return ["gif" if animated else "avif"]
    if planned == AUTO_WEBP:
        return ["webp"]
    if planned == AUTO_LEGACY:
        return ["gif" if animated else "png" if has_alpha else "jpg"]
    return [planned]


def max_side(fmt: str, configured: int) -> int:
    return min(configured, FORMAT_MAX_SIDE.get(fmt, configured))
