"""Cache keys. Every key of every tier starts with `endpoint \\0 path \\0`, so "everything cached for a
path" and "for a path prefix" are key ranges, which a purge deletes through SQLite's index.

When an endpoint's origins pass the client's `Host` on (a `web` origin's `forward_host`), the origin
may answer differently per Host: the Host is then part of the original's key (and so of its outputs'
and its not-found record's), right after the path, so that one client's Host never chooses what
another client gets. Endpoints that do not forward it keep the shorter key.
"""

from __future__ import annotations

import re

from ..transform.formats import KEEP_SOURCE, chosen_by_accept, picks_by_alpha


def path_key(endpoint_id: str, path: str) -> str:
    """The key prefix of everything cached for a path (its originals, outputs and not-found records)."""
    return f"{endpoint_id}\0{path}\0"


def path_prefix_key(endpoint_id: str, path_prefix: str) -> str:
    """The key prefix shared by every entry whose path starts with `path_prefix`."""
    return f"{endpoint_id}\0{path_prefix}"


def original_key(endpoint_id: str, path: str, host: str | None) -> str:
    """The key of an original and of its not-found record, and the key prefix of its outputs.
    `host`: the forwarded Host, or None when the endpoint forwards none."""
    key = path_key(endpoint_id, path)
    return key if host is None else f"{key}{host}\0"


#: the version of what renders make, in every output's key: raised when a release changes what an
#: existing URL renders to (a parameter's meaning or default), so that no output an earlier release
#: made is served again. Those age out of the disk's LRU (a purge of their path still deletes them); an
#: output is otherwise kept as long as its original is unchanged, however long that is.
#: r2: a dpr over 5000 px not applied, layers beyond the image moved in, `t` cutting transparent borders.
#: r3: renders changed since r2 without raising it (an image layer untrimmed by default again, colour
#: blocks' rounded corners clear, a colour's own opacity over `al`, `cm-extract,fo-face` without a size cut
#: to the faces' box), and the settings' tag: an `r2:` key of a node whose quality, avif_effort or
#: max_cost were not the shipped ones was written before the tag existed. tests/test_upgrades.py pins the
#: renders a version names; tests/test_render_fingerprints.py fails on any change of what a corpus of URLs
#: renders to until this is raised and the fingerprints recorded anew (`python -m tests.render_fingerprints --update`).
RENDER_VERSION = "r3"
#: parameters whose renders a release changed after an earlier one shipped them, each as its keys, a pattern of the
#: canonical transformations it changed and a mark that their outputs' keys carry in the settings' tag: after
#: an upgrade only those outputs render again (a new RENDER_VERSION renders every output again, a whole cache's
#: work for one parameter). tests/test_upgrades.py pins each mark's renders.
#: cr2: `cr-<to>[_<tolerance>]` without a source colour took the colour of the step's result, fill included
#: (a pad, a turn's corners were replaced), where it is the image's as the step starts.
#: bd2: `bg-dominant` in a colour block's later step was left unresolved (the turn's corners clear), where it
#: is the block's dominant colour, as in every other step.
#: lt2: an image layer's `rt` or `e-distort` without `bg` opened transparent corners only where the overlay had
#: alpha (else white), where the base shows through them. Matched wherever `rt-` or `e-distort` follows an
#: image layer's start, inside it or not: a few outputs render again for nothing, none is missed. Anchored,
#: up to the first image layer possessively: one pass over the text (searched from each layer's start, a
#: 10 kB transformation of ten layers took 2.4 ms).
#: dp2: `dpr` that made the side a URL leaves to the image's aspect larger than 5000 px was applied (`h-2000,dpr-2`
#: of a 4:3 photo was 5333×4000, where it is 2667×2000): matched wherever `dpr-` is.
#: dp3: with `c-at_max` or `c-maintain_ratio_no_enlarge`, dpr's 5000 px rule was on the box, where it is on the output
#: (`w-2600,c-at_max,dpr-2` of a 4240×2832 photo was 2600×1737, where it is 4240×2832): matched wherever such a `c`
#: and `dpr-` are in one step (a step of a layer, or one with `cm-`, renders again for nothing).
#: rg2: `e-region` starting outside the step's result blurred or pixelated nothing, the image served as it was (a
#: privacy blur failing open), where it is a 400: matched wherever `e-region-` is.
#: op2: padding (`cm-pad_resize`, `cm-pad_extract`), a free turn's corners and `e-distort`'s without `bg` were
#: transparent wherever the image had an alpha band, one opaque everywhere included (every GIF, RGBA PNGs of
#: opaque pictures), where they are white. Matched wherever one of the three is but right-angle turns, with `bg` or
#: in a layer too (unchanged: layers' are transparent): a few outputs render again for nothing, none is missed.
#: bt2: a translucent `bg` (`RRGGBBOO`) flattened a greyscale image with alpha on the colour's grey level (blue as a
#: dark grey) in JPEG and GIF, where it is that colour: matched wherever such a `bg` is (a colour image renders
#: again for nothing).
#: md2: `md-true` kept an XMP packet stating the stored orientation of a photo made upright (a tool reading XMP first
#: turned it again), where it states the EXIF's. md3: `md-true` kept metadata fields of any size (45 MB of XMP from a
#: PNG of 221 kB), where one over `encode.MAX_KEPT_METADATA_BYTES` is left out. md4: `md-true` kept a UTF-16 or UTF-32
#: XMP packet stating the stored orientation (the rewrite read UTF-8 alone), where it states the EXIF's. md5: `md-true`
#: kept a JPEG's EXIF thumbnail, the uncropped picture as stored (90° off the output's upright EXIF), where it goes.
#: mc2: `md-copyright` kept a JPEG's EXIF thumbnail, the whole uncropped picture with metadata of its own, where it
#: keeps the Copyright and Artist fields alone.
#: cp2: `cp-true` kept a PNG's profile of any size (45 MB inflated from a 44 kB file, into each output), where one
#: past 4 MB is not read (`transform.png_chunks`). gy2: `e-grayscale` under `cp-true` greyed a wide-gamut original's
#: raw values, shown as sRGB's (up to 15 levels darker), where it greys the colours seen.
#: tp2: `e-contrast`, `e-autocolor`, `e-autobrightness` counted the colour under wholly transparent pixels, and `bl`,
#: `e-sharpen`, `e-usm` blurred it into the visible edge (one cut-out, three looks by what its editor left there);
#: `e-contrast` and `e-autocolor` took libvips' percentiles, which of several bands are of no one band nor of all,
#: where they take the levels of every band: matched wherever one of the six is.
#: ht2: `t-` (trim) found its box, and `e-pixelatefaces`, `e-blurfaces` their faces, on a copy shrunk with the colour
#: under wholly transparent pixels averaged into the ones that show (a face missed or moved, a box cut short):
#: matched wherever one of the three is.
#: pn2 and av2 are marks of the planned format (`format_marks`), below.
REVISED_PARAMETERS = (
    (("cr-",), re.compile(r"(?:^|[,:])cr-[^,:_]+(?:_[^,:_]+)?(?=[,:]|$)"), "cr2"),
    (("dpr-",), re.compile(r"(?:^|[,:])dpr-"), "dp2"),
    (("c-at_max", "c-maintain_ratio_no_enlarge"),
     re.compile(r"(?:^|[,:])c-(?:at_max|maintain_ratio_no_enlarge)(?=[,:]|$)[^:]*,dpr-"
                r"|(?:^|[,:])dpr-[^:]*,c-(?:at_max|maintain_ratio_no_enlarge)(?=[,:]|$)"), "dp3"),
    (("ik_canvas",), re.compile(r"i-ik_canvas,(?:(?!,l-end)[^:])*:(?:(?:(?!,l-end).)*?[,:])?bg-dominant"), "bd2"),
    (("e-region",), re.compile(r"(?:^|[,:])e-region-"), "rg2"),
    (("l-image",), re.compile(r"^(?:(?!l-image,ie?-(?!ik_canvas[,:])).)*+l-image,ie?-(?!ik_canvas[,:]).*?[,:]"
                              r"(?:rt-|e-distort)"), "lt2"),
    (("cm-pad_", "rt-", "e-distort-"),
     re.compile(r"(?:^|[,:])(?:cm-pad_|rt-(?!N?(?:90|180|270)(?=[,:]|$))|e-distort-)"), "op2"),
    (("bg-",), re.compile(r"(?:^|[,:])bg-[0-9A-F]{8}(?=[,:]|$)"), "bt2"),
    (("md-true",), re.compile(r"(?:^|[,:])md-true(?=[,:]|$)"), "md5"),
    (("md-copyright",), re.compile(r"(?:^|[,:])md-copyright(?=[,:]|$)"), "mc2"),
    (("cp-true",), re.compile(r"(?:^|[,:])cp-true(?=[,:]|$)"), "cp2"),
    (("e-grayscale",), re.compile(r"^(?=.*(?:^|[,:])cp-true(?=[,:]|$)).*(?:^|[,:])e-grayscale(?=[,:]|$)"), "gy2"),
    (("e-contrast", "e-auto", "bl-", "e-sharpen", "e-usm"),
     re.compile(r"(?:^|[,:])(?:e-contrast|e-autocolor|e-autobrightness|bl-|e-sharpen|e-usm)"), "tp2"),
    (("t-", "faces-"), re.compile(r"(?:^|[,:])(?:t-|e-pixelatefaces-|e-blurfaces-)"), "ht2"),
)
#: fa2, the mark of outputs whose format is negotiated with `formats.picks_by_alpha`: `f-auto` for a browser
#: taking neither WebP nor AVIF (and the smallest's candidate for it) chose PNG for an image whose alpha band hid
#: nothing (a PNG's unused band), where JPEG is a tenth of the size or less.
OPAQUE_ALPHA_MARK = "fa2"
#: av2, the mark of outputs planned as AVIF or that may be (`f-avif`, a `.avif` path, `f-auto` and `auto_format` for
#: a browser taking it): AVIF was encoded at the URL's quality as it is, where it is `encode.avif_quality` of it
#: (q-80: 56). An AVIF original's own format (`f-orig`, a path without an extension) is not marked: its output
#: cached before stays, correct and larger, until it ages out.
AVIF_QUALITY_MARK = "av2"
#: pn2, the mark of outputs planned as PNG (`f-png`, a `.png` path): the PNG of an indexed original (a palette PNG, a
#: GIF) was full colour, where it is indexed too. `f-auto`'s PNG is marked `fa2` already.
INDEXED_PNG_MARK = "pn2"
#: as2, the mark of outputs an animation may have been served as it is by (`render._asks_for_the_source`: no step, no
#: output option but a format, `f-auto` or none, planned as GIF, WebP, the original's own or by `Accept`): its bytes
#: went out with their metadata (a phone's GPS position), where they go without (`transform.as_is`).
AS_IS_MARK = "as2"
_AS_IS_TRANSFORMATIONS = frozenset({"", "f-auto", "f-gif", "f-webp"})
#: what separates an output's original key from the rest of its key
_RENDERED = f"\0{RENDER_VERSION}"
#: what starts the config settings' tag after the render version (`render.SettingsTag`)
SETTINGS_MARK = "+"


def output_key(original: str, canonical_transformation: str, negotiated_format: str, client_hints: str = "",
               settings: str = "", planned_format: str = "") -> str:
    """An output's key: its original's key, the render version and the tag of the config settings that
    change what it renders to (`+q30`; none with the shipped defaults) and of its revision marks (`+cr2`,
    and `format_marks` of the planned format: the negotiated one, else `planned_format`), the canonical
    transformation, and the negotiated format (empty unless `f-auto` or an `Accept`-based default decided it),
    then the client hints' values used by `w-auto` / `dpr-auto`, when there are any."""
    tag = ",".join(filter(None, (settings, revision_marks(canonical_transformation),
                                 format_marks(negotiated_format or planned_format, canonical_transformation))))
    tag = f"{SETTINGS_MARK}{tag}" if tag else ""
    key = f"{original}{RENDER_VERSION}{tag}:{canonical_transformation}\0{negotiated_format}"
    return f"{key}\0{client_hints}" if client_hints else key


def format_marks(planned_format: str, transformation: str) -> str:
    """The marks an output's key carries for the format planned before its original is read (`formats.plan_format`:
    `OPAQUE_ALPHA_MARK`, `AVIF_QUALITY_MARK`, `INDEXED_PNG_MARK`) and, with its `transformation`, `AS_IS_MARK`."""
    as_is = transformation in _AS_IS_TRANSFORMATIONS and \
        (planned_format in ("gif", "webp", KEEP_SOURCE) or chosen_by_accept(planned_format))
    return ",".join(filter(None, (OPAQUE_ALPHA_MARK if picks_by_alpha(planned_format) else "",
                                  AVIF_QUALITY_MARK if "avif" in planned_format else "",
                                  INDEXED_PNG_MARK if planned_format == "png" else "",
                                  AS_IS_MARK if as_is else "")))


def revision_marks(canonical_transformation: str) -> str:
    """The marks of `REVISED_PARAMETERS` that a canonical transformation's outputs are keyed with ("" if none)."""
    marks = ""
    for keys, changed, mark in REVISED_PARAMETERS:  # the keys looked for first: 0.15 µs a key, not 0.8
        if any(key in canonical_transformation for key in keys) and changed.search(canonical_transformation):
            marks = f"{marks},{mark}" if marks else mark
    return marks


def outputs_of(original: str) -> str:
    """What every output key of the original keyed `original` starts with, in this render version."""
    return original.removesuffix("\0") + _RENDERED


def original_of(key: str) -> str | None:
    """The original's key, less its final `\\0`, of an output key of this render version (whatever its
    settings' tag); else None."""
    original, rendered, rest = key.partition(_RENDERED)
    return original if rendered and rest[:1] in (":", SETTINGS_MARK) else None
