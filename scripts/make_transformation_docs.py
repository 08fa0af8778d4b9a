#!/usr/bin/env python3
"""Write docs/transformations.md and its pictures (docs/img/transformations/) from the sample images.

    .venv/bin/python scripts/make_transformation_docs.py

Every picture is rendered by `edge.transform.render.render_image`, the function the node runs for a
request, from the URL shown beside it. Edit the sections below, not the Markdown file.
"""

from __future__ import annotations

import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pyvips

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge.config import Defaults, Limits  # noqa: E402
from edge.transform.formats import plan_format  # noqa: E402
from edge.transform.options import parse_transformation  # noqa: E402
from edge.transform.render import render_image  # noqa: E402

SAMPLES = ROOT / "edge" / "samples"
DOCS = ROOT / "docs"
PICTURES = DOCS / "img" / "transformations"
NAMED = {"thumb": "w-200,h-200,c-at_max"}
ACCEPT = "image/avif,image/webp,*/*"  # what a current browser sends


@dataclass(frozen=True)
class Example:
    transformation: str
    sample: str
    note: str = ""


@dataclass(frozen=True)
class Section:
    title: str
    text: str
    examples: tuple[Example, ...]


#: every field of the ImageKit Python SDK's `Transformation` (imagekitio 5.x); tests/test_sdk_parity.py
#: checks that each supported one is served and each unsupported one is a 400, and that this table
#: names every field
PARITY_ROWS = (
    ("width", "w", "supported", "pixels, fractions, expressions; `w-auto` (client hint) see its section"),
    ("height", "h", "supported", "pixels, fractions, expressions"),
    ("aspect_ratio", "ar", "supported", "`4-3`, `4_3`, `1.5`, expressions"),
    ("background", "bg", "differs", "colours (`RRGGBBOO`: opacity %), `dominant`, `blurred…`; "
     "`gradient_dominant` and `genfill` are a 400"),
    ("blur", "bl", "supported", "0.1–100, decimals"),
    ("border", "b", "differs", "`<width>_<colour>`; expressions in the width are a 400"),
    ("crop", "c", "supported", "every value the SDK lists"),
    ("crop_mode", "cm", "supported", "every value the SDK lists; padding is `bg`, else white, or transparent "
     "for sources with transparency"),
    ("dpr", "dpr", "supported", "0.1–5; `dpr-auto` (client hint) see its section"),
    ("focus", "fo", "differs", "positions and `auto`; `fo-face` see its section; object names "
     "(`fo-person`, `fo-car`) are a 400"),
    ("quality", "q", "supported", "1–100"),
    ("x, y, x_center, y_center", "x y xc yc", "differs", "pixels; expressions are a 400"),
    ("format", "f", "differs", "`auto webp jpg jpeg png gif avif orig`; `svg mp4 webm` are a 400"),
    ("radius", "r", "supported", "`N`, `max`, `a_b_c_d`"),
    ("rotation", "rt", "supported", "degrees with decimals, `N…`, `auto`"),
    ("named", "n", "supported", "from `[named_transformations]`"),
    ("default_image", "di", "supported", "a path on the same endpoint"),
    ("flip", "fl", "supported", "`h v h_v v_h`"),
    ("original", "orig", "supported", ""),
    ("grayscale", "e-grayscale", "supported", ""),
    ("contrast_stretch", "e-contrast", "supported", ""),
    ("sharpen", "e-sharpen", "supported", "alone or 1–100"),
    ("unsharp_mask", "e-usm", "differs", "alone means `e-usm-2-1-1-0.05` (ImageKit's numbers are not documented)"),
    ("shadow", "e-shadow", "supported", "`bl st x y`, ImageKit's defaults"),
    ("gradient", "e-gradient", "supported", "`ld from to sp`, ImageKit's defaults"),
    ("progressive", "pr", "supported", ""),
    ("lossless", "lo", "supported", ""),
    ("color_profile", "cp", "supported", ""),
    ("metadata", "md", "supported", ""),
    ("opacity", "o", "supported", "with an opaque `bg`, the faded image lies on it"),
    ("trim", "t", "supported", "`true` or 1–99"),
    ("zoom", "z", "supported", "see the `z` section"),
    ("page", "pg", "differs", "a page number of GIF, WebP, TIFF; ranges, PSD layer names and PDF are a 400"),
    ("overlay", "l-…", "supported", "layers: see the overlay section"),
    ("video_codec, audio_codec, start_offset, end_offset, duration, streaming_resolutions",
     "vc ac so eo du sr", "unsupported", "video: the node serves images"),
    ("ai_remove_background, ai_remove_background_external, ai_change_background, ai_edit, ai_drop_shadow, "
     "ai_retouch, ai_upscale, ai_variation", "e-bgremove e-removedotbg e-changebg e-edit e-dropshadow e-retouch "
     "e-upscale e-genvar (and e-genfill)", "unsupported", "AI generation and removal: models the node does not run"),
    ("color_replace", "cr", "unsupported", "colour replacement: not built yet"),
    ("colorize", "e-colorize", "unsupported", "colour tint: not built yet"),
    ("distort", "e-distort", "unsupported", "perspective and arc distortion: not built yet"),
    ("density", "dn", "unsupported", "density: vector sources (where it matters) are not read"),
    ("raw", "(any)", "supported", "the SDK's pass-through: served as far as its keys are"),
    ("(none)", "if-…", "unsupported", "conditional transformations"),
)
PARITY = ("What the ImageKit Python SDK (`imagekitio`) writes, and what the node does with it. "
          "*Unsupported* keys are a **400** `invalid transformation: <param>: not supported (<why>)`, "
          "never silently ignored.\n\n| SDK field | key | node | notes |\n| --- | --- | --- | --- |\n" +
          "\n".join(f"| {field} | `{key}` | {status} | {note} |" for field, key, status, note in PARITY_ROWS))

SECTIONS = (
    Section("Original samples", "The sample images that ship with the node, at their own size scaled "
            "down for this page (`w-160`).", (
                Example("w-160", "astronaut.jpg", "512×512 RGB"),
                Example("w-160", "coffee.jpg", "600×400 RGB"),
                Example("w-160", "chelsea.jpg", "451×300 RGB"),
                Example("w-160", "camera.jpg", "512×512 greyscale"),
                Example("w-160", "logo-transparent.png", "256×256 with transparency"),
            )),
    Section("`w`, `h`: width and height", "Pixels, or a fraction of the input below 1 (`w-0.5`). With only "
            "one given, the other follows the aspect ratio. The result may be larger than the original "
            "(except with `c-at_max` and `c-maintain_ratio_no_enlarge`).", (
                Example("w-200", "coffee.jpg"),
                Example("h-120", "coffee.jpg"),
                Example("w-0.3", "coffee.jpg", "30 % of 600 px"),
                Example("w-200,h-200", "coffee.jpg", "both: exactly 200×200, cropped (see `c`)"),
            )),
    Section("`ar`: aspect ratio", "`ar-<width>-<height>` (or `ar-4_3`, as the SDK writes `4:3`, or one "
            "decimal ratio, `ar-1.5`) with exactly one of `w`/`h`; ignored when both are given. Alone, it "
            "crops the largest box of that ratio out of the input.", (
                Example("w-240,ar-16-9", "astronaut.jpg"),
                Example("h-160,ar-1-2", "coffee.jpg"),
            )),
    Section("`dpr`: device pixel ratio", "Multiplies `w` and `h` (0.1–5); needs one of them.", (
                Example("w-100,dpr-2", "chelsea.jpg", "200 px wide"),
            )),
    Section("`c`: crop strategy", "How `w`×`h` is reached when both are given.\n\nOne more value, not in "
            "ImageKit's grammar: `c-enlarge_to_fit` fits inside `w`×`h` only by enlarging — an image already "
            "larger than the box is left at its size (Cloudinary's `c_mfit`, see "
            "[leaving-cloudinary.md](leaving-cloudinary.md)).", (
                Example("w-200,h-120,c-maintain_ratio", "astronaut.jpg", "default: cover the box, crop by `fo`"),
                Example("w-200,h-120,c-force", "astronaut.jpg", "stretch to the box"),
                Example("w-200,h-120,c-at_max", "astronaut.jpg", "fit inside, never upscale"),
                Example("w-800,h-200,c-at_max_enlarge", "chelsea.jpg", "fit inside, may upscale"),
                Example("w-200,h-120,c-at_least", "astronaut.jpg", "cover the box, no crop"),
                Example("w-900,h-120,c-maintain_ratio_no_enlarge", "chelsea.jpg",
                        "like the default, never upscaled: the box shrinks to the image"),
            )),
    Section("`fo`: focus", "Where a crop is taken. `fo-auto` is content-aware (libvips smartcrop, "
            "*attention* strategy: skin tones, saturation, edges). **`fo-face` uses the same content-aware "
            "crop**: the node ships no face detector, so `fo-face` and `fo-auto` are one cache entry.", (
                Example("w-240,h-100,fo-center", "astronaut.jpg"),
                Example("w-240,h-100,fo-top", "astronaut.jpg"),
                Example("w-240,h-100,fo-bottom", "astronaut.jpg"),
                Example("w-100,h-200,fo-left", "coffee.jpg"),
                Example("w-100,h-200,fo-right", "coffee.jpg"),
                Example("w-120,h-120,fo-top_left", "chelsea.jpg"),
                Example("w-120,h-120,fo-auto", "chelsea.jpg", "finds the cat"),
                Example("w-120,h-120,fo-face", "astronaut.jpg", "= fo-auto"),
            )),
    Section("`z`: zoom", "With a crop, zooms into the focus by the factor (`z-2`: half the field of view). "
            "Values at or below 1 change nothing: a crop cannot show more than the whole image. Applies to "
            "`c-maintain_ratio` / `c-maintain_ratio_no_enlarge` and to steps without `w`/`h`.", (
                Example("w-150,h-150,fo-auto", "astronaut.jpg"),
                Example("w-150,h-150,fo-auto,z-2", "astronaut.jpg"),
                Example("w-150,h-150,fo-top,z-3", "astronaut.jpg"),
            )),
    Section("`cm`: crop modes", "`pad_resize`: fit inside `w`×`h`, pad to exactly `w`×`h` with `bg` (white, "
            "or transparent for images with transparency); `fo-left/right/top/bottom` put the image on "
            "that side. `pad_resize_no_enlarge`: the same, but an image smaller than the box keeps its "
            "size and is padded all round. `extract`: cut a `w`×`h` region out of the input at its own "
            "scale, placed by `fo` or `x,y` / `xc,yc`. `pad_extract`: the same, padding with `bg` where "
            "the region leaves the image. `pad_extract_no_shrink`: like `pad_extract`, but a side of the "
            "box smaller than the image's grows to the image's: it only ever pads, never cuts.", (
                Example("w-240,h-120,cm-pad_resize,bg-F3E5AB", "astronaut.jpg"),
                Example("w-240,h-120,cm-pad_resize,bg-F3E5AB,fo-left", "astronaut.jpg"),
                Example("w-200,h-200,cm-pad_resize", "logo-transparent.png", "transparent padding"),
                Example("cm-extract,w-160,h-160,fo-auto", "coffee.jpg"),
                Example("cm-pad_extract,w-240,h-240,bg-navy", "logo-transparent.png"),
                Example("w-400,h-200,cm-pad_resize_no_enlarge,bg-F3E5AB", "logo-transparent.png",
                        "not enlarged"),
            )),
    Section("`x`, `y`, `xc`, `yc`: extract position", "The top-left corner (`x`, `y`) or the centre (`xc`, "
            "`yc`) of a `cm-extract` / `cm-pad_extract` region, in pixels of the input. A region that "
            "leaves the image is a 400 with `cm-extract`.", (
                Example("cm-extract,x-180,y-60,w-160,h-160", "astronaut.jpg"),
                Example("cm-extract,xc-300,yc-170,w-200,h-120", "coffee.jpg"),
            )),
    Section("`rt`: rotate", "Clockwise degrees, decimals allowed (`rt-12.5`); `N` is counter-clockwise (`rt-N90` = `rt-270`). Right "
            "angles are exact; other angles fill the corners with `bg`. `rt-auto` is what always happens "
            "anyway: the EXIF orientation is applied first, to every image.", (
                Example("w-200,rt-90", "chelsea.jpg"),
                Example("w-200,rt-N90", "chelsea.jpg"),
                Example("w-200,rt-180", "chelsea.jpg"),
                Example("w-160,rt-30,bg-FFD700", "chelsea.jpg"),
            )),
    Section("`fl`: flip", "`h` (mirror left–right), `v` (upside down), `h_v` (both).", (
                Example("w-200,fl-h", "chelsea.jpg"),
                Example("w-200,fl-v", "chelsea.jpg"),
                Example("w-200,fl-h_v", "chelsea.jpg"),
            )),
    Section("`t`: trim", "Cuts away uniform borders the colour of the top-left pixel. `t-true` uses a "
            "threshold of 10; `t-1`…`t-99` sets it. Trim comes first in its step, before the resize.", (
                Example("w-240,h-240,cm-pad_resize,bg-white", "chelsea.jpg", "padded"),
                Example("w-240,h-240,cm-pad_resize,bg-white:t-true", "chelsea.jpg",
                        "padded in step one, trimmed back in step two"),
            )),
    Section("`q`: quality", "1–100 for JPEG, WebP and AVIF; default from the config (`[defaults] quality`, 80).", (
                Example("w-240,q-10", "coffee.jpg"),
                Example("w-240,q-90", "coffee.jpg"),
            )),
    Section("`bl`: blur", "Gaussian blur, radius 0.1–100 px (decimals allowed).", (
                Example("w-240,bl-3", "coffee.jpg"),
                Example("w-240,bl-15", "coffee.jpg"),
            )),
    Section("`e-grayscale`, `e-contrast`, `e-sharpen`, `e-usm`: effects", "`e-contrast` stretches the "
            "1st–99th percentile of the levels to the full range. `e-sharpen` takes an optional amount "
            "(default 10). `e-usm-<radius>-<sigma>-<amount>-<threshold>` is an unsharp mask as in "
            "ImageMagick: the gaussian's extent follows from `sigma`, `threshold` is a fraction of the "
            "full range. `e-usm` alone (what the SDK writes for `unsharp_mask: True`) is "
            "`e-usm-2-1-1-0.05`: ImageKit documents no numbers for its default.", (
                Example("w-240,e-grayscale", "coffee.jpg"),
                Example("w-240,e-contrast", "camera.jpg"),
                Example("w-240,e-sharpen-60", "chelsea.jpg"),
                Example("w-240,e-usm-2-2-3-0.02", "chelsea.jpg"),
            )),
    Section("`r`: rounded corners", "A radius in pixels, `max` for the largest ellipse (a circle for a "
            "square image), or one radius per corner, `r-<top-left>_<top-right>_<bottom-right>_<bottom-left>` "
            "(0 keeps a corner square). The output gets transparency; JPEG output is flattened on `bg` (else white), "
            "and `f-auto` picks PNG for browsers without WebP/AVIF.", (
                Example("w-200,h-200,r-30,f-png", "astronaut.jpg"),
                Example("w-200,h-200,r-max,f-png", "astronaut.jpg"),
                Example("w-200,h-200,r-max,bg-0F172A", "astronaut.jpg", "JPEG: corners in bg"),
                Example("w-200,h-200,r-0_60_0_60,f-png", "astronaut.jpg", "per corner"),
            )),
    Section("`bg`: background", "`RRGGBB`, `RRGGBBOO` or a CSS colour name (`bg-red` and `bg-FF0000` are "
            "one cache entry). As in ImageKit, the two digits after the colour are an **opacity in "
            "percent, 00–99, in decimal** (`bg-FF000050`: red at 50 %; `AA` or `FF` there is a 400), not a "
            "hex alpha ([ImageKit: solid colour background](https://imagekit.io/docs/effects-and-enhancements#solid-color-background)). "
            "Used for padding, free rotation, rounded corners and borders; an opaque `bg` also fills the "
            "step's transparent areas, whatever the output format (so `o-40,bg-000000` is the image at "
            "40 % on black); a translucent one only pads. `bg-dominant` pads with the image's most common "
            "colour; `bg-blurred[_<radius>[_<brightness>]]` (brightness −255–255, `N` for minus) pads with "
            "the image itself, scaled to cover the box and blurred ([ImageKit: dominant and blurred "
            "backgrounds](https://imagekit.io/docs/effects-and-enhancements#dominant-color-background)). "
            "`bg-gradient_dominant` and `bg-genfill` are a 400 `not supported`.", (
                Example("w-200,h-140,cm-pad_resize,bg-skyblue", "chelsea.jpg"),
                Example("w-200,h-140,cm-pad_resize,bg-FF000060,f-png", "chelsea.jpg", "red at 60 %"),
                Example("w-200,bg-1E293B,f-png", "logo-transparent.png", "transparency filled"),
                Example("w-200,h-140,cm-pad_resize,bg-dominant", "coffee.jpg"),
                Example("w-200,h-140,cm-pad_resize,bg-blurred_20_N40", "astronaut.jpg"),
            )),
    Section("`b`: border", "`b-<width>_<colour>`: a border around the image; the output grows by twice "
            "the width each way (so the picture itself is never cut).", (
                Example("w-200,b-8_FF6600", "chelsea.jpg"),
            )),
    Section("`o`: opacity", "0–100; adds transparency; with an opaque `bg` the faded image lies on it.", (
                Example("w-200,o-40,f-png", "chelsea.jpg"),
                Example("w-200,o-40,bg-000000,f-jpg", "chelsea.jpg"),
            )),
    Section("`e-shadow`, `e-gradient`: shadow and gradient", "`e-shadow[-bl-<0–15>_st-<0–100>_x-<%>_y-<%>]`: "
            "a shadow of the opaque pixels of an image with transparency, blurred by `bl` (default 10), "
            "`st` % dark (30), shifted by `x` % of the width and `y` % of the height (2 and 2; `N` for "
            "negative), on the same canvas under the image; an opaque image hides it. "
            "`e-gradient[-ld-<direction>_from-<colour>_to-<colour>_sp-<stop>]`: a linear gradient laid "
            "over the image, `ld` in degrees (CSS's: 180 runs top to bottom) or a side (`top`, "
            "`bottom_left`…), from `from` (default `FFFFFF00`) to `to` (`00000066`, black at 66 %) reached "
            "at `sp` (a fraction of the way across, or pixels above 1; default 1). Defaults as "
            "[ImageKit documents them](https://imagekit.io/docs/effects-and-enhancements#shadow---e-shadow).", (
                Example("w-200,e-shadow-bl-6_st-60_x-4_y-4,f-png", "logo-transparent.png"),
                Example("w-240,e-gradient", "coffee.jpg"),
                Example("w-240,e-gradient-ld-90_from-1E3A8A50_to-FFFFFF00_sp-0.6", "coffee.jpg"),
            )),
    Section("Arithmetic expressions", "`w`, `h` and `ar` take ImageKit's expressions "
            "([ImageKit](https://imagekit.io/docs/arithmetic-expressions-in-transformations)): values "
            "(numbers or `iw`, `ih`, `iar` — the original's width, height, aspect ratio — and `cw`, `ch`, "
            "`car` — the step's input) joined by `add`, `sub`, `mul`, `div`, `mod`, `pow` (`pow` first, "
            "then `mul`/`div`/`mod`, then `add`/`sub`), at most 15 terms. `w-iw_div_2` is half the "
            "original's width. A result that is not a positive size (`w-iw_sub_iw`) is a 400 naming it. "
            "Expressions in `b`, `x`/`y` and layer positions are not read.", (
                Example("w-iw_div_4", "coffee.jpg", "a quarter of 600 px"),
                Example("w-200,ar-iar_div_2", "coffee.jpg", "half the original's ratio"),
            )),
    Section("`pg`: page", "`pg-<N>`: the N-th frame of an animated GIF or WebP, or page of a multi-page TIFF, "
            "as a still image (1-based; beyond the last one is a 400). ImageKit's page ranges and PSD "
            "layer names are not read, and PDF is not an input.", ()),
    Section("Chained steps", "Steps separated by `:` run in order, each on the result of the one before. "
            "Output parameters (`f q pr lo md cp di orig`) belong to the one result, wherever they stand.", (
                Example("w-300,h-300,fo-auto:rt-90:e-grayscale,r-max,f-png", "chelsea.jpg"),
                Example("w-200,h-200,cm-pad_resize,bg-white:b-4_333333:r-20,f-png", "logo-transparent.png"),
            )),
    Section("`f`: output format", "`auto`: AVIF when `Accept` names `image/avif` (animations: WebP, which "
            "libvips can write animated), else WebP when it names `image/webp`, else JPEG — or PNG when "
            "the result has transparency, or GIF when it is an animation (an animated GIF stays animated "
            "for every browser); the response says `Vary: Accept`. `orig`: the original's format. "
            "Without `f`, the format follows the extension of the requested path, else the original's — "
            "unless `[defaults] auto_format = true`: then a URL without `f` is an `f-auto` one, as "
            "ImageKit delivers by default ([ImageKit: format](https://imagekit.io/docs/image-optimization#format---f)); "
            "the cache key then holds the class of `Accept` (AVIF+WebP, AVIF, WebP, neither), so each "
            "browser class gets its own entry. With `[defaults] auto_format_smallest = true`, `f-auto` "
            "encodes every format the browser accepts (AVIF, WebP and JPEG/PNG) and serves the smallest, "
            "at the cost of those encodes (see benchmarks/README.md). `f-svg`, `f-mp4` and `f-webm` are "
            "a 400 `not supported`. The pictures below were asked for with a browser's `Accept` (AVIF and WebP).", (
                Example("w-200,f-auto", "coffee.jpg"),
                Example("w-200,f-webp", "coffee.jpg"),
                Example("w-200,f-png", "logo-transparent.png"),
                Example("w-200,f-jpg", "logo-transparent.png", "flattened on white"),
            )),
    Section("`pr`, `lo`, `md`, `cp`: encoding", "`pr-true`: progressive JPEG / interlaced PNG and GIF. "
            "`lo-true`: lossless WebP and AVIF. Metadata (EXIF, XMP, IPTC) is stripped unless `md-true` "
            "(the EXIF orientation then says upright, since the pixels are). Colours are converted to "
            "sRGB and the ICC profile dropped unless `cp-true`, which keeps the original's profile and "
            "pixel values. AVIF effort comes from the config (`[defaults] avif_effort`).", (
                Example("w-200,pr-true", "coffee.jpg"),
                Example("w-200,f-webp,lo-true", "logo-transparent.png"),
            )),
    Section("`n`: named transformations", "`n-<name>` expands to a transformation defined in the node's "
            "config (`[named_transformations]`), here `thumb = \"w-200,h-200,c-at_max\"`. Other "
            "parameters in the same step override the definition's. An unknown name is a 400. An "
            "endpoint with `named_only = true` accepts nothing else (but from URLs signed with its "
            "`private_key`: see [signed-urls.md](signed-urls.md)). The expansion is the cache key: "
            "`n-thumb` and `w-200,h-200,c-at_max` are one entry.", (
                Example("n-thumb", "coffee.jpg"),
                Example("n-thumb,rt-90", "coffee.jpg"),
            )),
    Section("`di`: default image", "`di-<path>` with `/` written as `@@` (`di-placeholders@@missing.png`): "
            "served, with the same transformation, when no origin has the requested path. A default "
            "image that is itself missing is a 404. Shown: `/tr:w-160,di-logo-transparent.png/no-such-file.jpg`.", (
                Example("w-160", "logo-transparent.png", "what a request for a missing file returns"),
            )),
    Section("`orig`: the original bytes", "`orig-true` serves the stored file untouched: no resize, no "
            "metadata stripping, no format change; every other parameter is ignored.", ()),
    Section("ImageKit SDK parity", PARITY, ()),
)


def slug(transformation: str, sample: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", f"{Path(sample).stem}-{transformation}").strip("_")


def render(example: Example) -> tuple[str, str]:
    """Render one example; (picture file name, caption)."""
    transformation = parse_transformation(example.transformation, named=NAMED)
    planned, _ = plan_format(transformation.output_format, example.sample, ACCEPT)
    rendered = render_image((SAMPLES / example.sample).read_bytes(), transformation, planned, Defaults(), Limits())
    name = f"{slug(example.transformation, example.sample)}.{rendered.format}"
    (PICTURES / name).write_bytes(rendered.body)
    size = f"{rendered.width}×{rendered.height} {rendered.format.upper()}, {len(rendered.body) / 1024:.0f} KB"
    return name, "; ".join(filter(None, (example.note, size)))


def section_markdown(section: Section) -> str:
    lines = [f"## {section.title}", "", section.text, ""]
    if section.examples:
        lines += ["| URL | result |", "| --- | --- |"]
        for example in section.examples:
            picture, caption = render(example)
            url = f"/tr:{example.transformation}/{example.sample}"
            lines.append(f"| `{url}`<br>{caption} | ![{example.transformation}](img/transformations/{picture}) |")
        lines.append("")
    return "\n".join(lines)


HEADER = """# Transformations

<!-- Generated by scripts/make_transformation_docs.py from edge/samples/: edit the script, not this file. -->

A transformation goes in the first path segment after the endpoint (`/tr:w-300,h-200/photo.jpg`) or
in the query (`/photo.jpg?tr=w-300,h-200`); both together are chained, path first. Parameters are
separated by `,`, steps by `:`. Each picture below is what the node returns for the URL beside it
(rendered by the node's own code, `edge.transform.render`).

Errors: an unknown key, a malformed or out-of-range value is a **400** whose body names the parameter
(`invalid transformation: w-abc: expected a number`). A source over the limits (40 MB, 100 megapixels,
100 frames; decided from the header, before decoding) is a 400 `source too large`; an output over 8192
px a side (WebP: at most 16383 whatever the config), after any step of a chain, is a 400 `output too
large`, and so is an animation whose frames at the output size add up to more than 100 megapixels. A
transformation has at most 10 chained steps and 2000 characters (path and query form together); more
is a 400. A transformation estimated to cost more than `[limits] max_cost` (200 megapixels of work:
output pixels weighted by its operations, e.g. `w-8192,h-8192,c-force,bl-100` is about 291) is a 400
`transformation too costly: …`, before the original is fetched when the URL alone says so, else once
its header is read; see [security.md](security.md#work-per-url). A render still running after
`[limits] render_timeout` (20 s) is stopped and answered **503** `rendering took too long`. A source
that is not an image, is SVG (unless `[limits] allow_svg`), or fails to decode (truncated, corrupt) is
a **422**.

Every parameter works at every size: rotations, vertical flips and the other operations that read an
image out of order decode the step's already shrunk image to memory first (a 12 MP photo turned at
full size holds its 36 MB of pixels while it is turned). `t` (trim) and `fo-auto` search a copy
reduced to about one megapixel on larger images: a trim then keeps at most a few pixels of border
(2 on a 12 MP photo, 9 on a 100 MP one), never cutting into the picture.

The cache key is the canonical form of the transformation: parameters sorted, defaults dropped,
synonyms folded (`f-jpeg` → `f-jpg`, `rt-N90` → `rt-270`, `bg-red` → `bg-FF0000`, `fo-face` →
`fo-auto`), named transformations expanded, output parameters written once. Different spellings of
one result share one cache entry.

Inputs: the EXIF orientation is always applied (all eight); CMYK, 16-bit, greyscale and ICC-tagged
sources come out as 8-bit sRGB; transparency is kept where the output format has it; animated GIF and
WebP stay animated when the output is GIF, WebP or `f-auto` (each frame gets the same steps), and become
their first frame otherwise (or the frame `pg-N` names).
"""


def main() -> None:
    shutil.rmtree(PICTURES, ignore_errors=True)
    PICTURES.mkdir(parents=True)
    pyvips.cache_set_max(0)
    body = "\n".join(section_markdown(section) for section in SECTIONS)
    (DOCS / "transformations.md").write_text(HEADER + "\n" + body)
    total = sum(p.stat().st_size for p in PICTURES.iterdir())
    print(f"wrote docs/transformations.md and {len(list(PICTURES.iterdir()))} pictures, {total / 1024:.0f} KB")


if __name__ == "__main__":
    main()
