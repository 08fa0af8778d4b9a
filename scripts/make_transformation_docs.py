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
from urllib.parse import unquote

import pyvips

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge.config import Defaults, Limits  # noqa: E402
from edge.transform.formats import plan_format  # noqa: E402
from edge.transform.hints import negotiate  # noqa: E402
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
    #: request headers (client hints) the picture was asked for with
    headers: tuple[tuple[str, str], ...] = ()


OVERLAYS = """\
ImageKit's layers ([ImageKit: add overlays on images](https://imagekit.io/docs/add-overlays-on-images),
[layer syntax](https://docs.imagekit.io/features/image-transformations/overlay-using-layers)), as the
`imagekitio` SDK writes them: a layer starts with `l-image` or `l-text` and ends with `l-end`; what
stands between applies to the layer, not to the base. A step's layers are drawn, in order, on the
step's result (after its resize and effects); further steps work on the composite. An image layer's
own transformation may chain steps with `:`. Layers nest three levels deep, as in ImageKit: a layer
inside an image layer or a colour block is drawn on it
(`l-image,i-ik_canvas,bg-red,w-200,h-60,l-text,i-SALE,l-end,l-end`: a badge with its text centred), also
in a later step of that layer's chain, as ImageKit's expression docs write it
(`l-image,i-dress.jpg,w-bw_div_3:l-image,i-logo.png,w-bw_div_2,l-end,l-end`: the logo on the resized
dress), and its `bw`, `bh`, `bar` are that layer's size; a fourth level is a 400, and so is a layer inside a
text layer (`a text layer cannot hold layers`). The 10 layers a URL may hold count
the nested ones.

- **Image** `l-image,i-<path>,…,l-end`: an image from the same endpoint's origins (`/` written as
  `@@`, or `ie-<base64 of the path>`; given both, `i-` is ignored, as ImageKit does), with its own steps (`w`, `h`, `c`, `rt`, `bl`, `r`, `o`, `e-…`, `b`
  … — any step parameter; output parameters such as `f` are a 400 in a layer, except `q`, which
  ImageKit lists for layers and which is accepted and has nothing to do: the base's encode makes the
  layer's pixels, and `pg-N`, which picks the page or frame of the layer's own original, as ImageKit
  documents for layers: `l-image,i-banner.gif,pg-3,w-200,l-end`; without it, the first); the corners
  its `rt` or `e-distort` opens are transparent without a `bg`, the base showing through. ImageKit
  trims an overlay image by default (`t-false` to keep its borders); the node does not, and takes
  `t-false` as no trim: add `t-true` to the layer to trim it (its transparent margin, or its borders
  of the top-left pixel's colour). Trimming by default would decode every overlay whole, at its
  full size, for every output that draws it (a 12 MP overlay drawn 200 px wide: 0.40 s of CPU
  against 0.07, and about 37 units of the cost budget against 1), and change where the logos of
  existing URLs land. It is fetched
  through the same originals tier, single flight and fetch-memory budget as the main original, and
  counted in the cost budget from its own size. The output is as fresh as the least recently
  confirmed of its originals, and its version covers the layers' versions: when an overlay is
  revalidated and has changed (or was purged and comes back changed), the next output is made
  anew. A purge of the overlay's path alone does not purge the outputs that use it before they are
  next revalidated (`[cache] original_ttl`): purge those URLs (or their prefix) for an immediate
  change. An overlay that no origin has is a **400**
  `invalid transformation: i-<path>: no such image on this endpoint` (ImageKit's documentation does not
  say what it answers; the base URL exists, so a 404 would be wrong, and the body names the parameter
  to fix). One that is not an image, or is truncated or corrupt, is a **400**
  `invalid transformation: i-<path>: not an image the node can decode` (not a 422: the base is fine).
- **Solid colour block** `l-image,i-ik_canvas,bg-<colour>,…,l-end` (the SDK's `solidColor`): `w`×`h`
  (pixels, or fractions of the base; the base's size by default), `al-1`…`al-9` opacity in tenths
  (ignored when the `bg` colour has its own opacity, `bg-FF000050`, or is a colour name, `bg-blue`, as
  ImageKit documents), `r`
  rounded corners (`r-max`: a circle), through which the base shows; `rt`, `fl` and `e-distort` turn, flip
  and bend the block as drawn (rounded corners and all), on transparency. With `e-gradient` and no `bg`
  (`l-image,i-ik_canvas,e-gradient-from-F2559A_to-F27855_ld-top,w-bw,h-bh_div_10,ly-N0,l-end`) it is
  ImageKit's gradient block: the gradient alone, on a transparent block.
- **Text** `l-text,i-<text>,…,l-end` (`i-` percent-encoded, or `ie-<base64>` as the SDK writes any text
  beyond letters, digits, `-._` and spaces; a `,` or `:` in the text needs `ie-`: the URL is decoded
  before it is split, so `i-Hello%2C%20World` ends the text at the comma, a 400 naming ` World`): `fs` size in pixels (default 14, at most 500; or an
  expression of the base's size, `fs-bh_div_20`, drawn at 500 when it gives more), `ff` a font the
  operator lists in `[fonts]` (default `DejaVuSans`, shipped with its licence), `co` colour (default
  black), `bg` background of the text box, `pa` padding (CSS shorthand with `_`: `pa-8_12`; or one
  expression for every side, `pa-bw_mul_0.01`), `al` opacity 1–9, `ia` alignment in the box (`left`,
  `center`, `right`), `tg` `b`, `i`, `strikethrough` or combinations (`b_i`), `lh` line height in pixels
  (or an expression, as `fs`), `w` wrap width in pixels, `rt`, `fl`, `r` and `e-distort` (after the turn:
  `e-distort-a-N120` curves the line, Cloudinary's curved text); `fol-<width>_<colour>` an
  outline (`fol-2_blue`, at most 50 px) and `fsh-<colour>_<indent>` a shadow down and right
  (`fsh-blue_2`), written as the SDK documents them for subtitles. At most 500 characters. The text's box is
  the bounding box of its ink, not of its lines: `Hello` at `fs-100` is 240×77 px and `xxx` 172×55, so two
  captions at one `ly` do not share a baseline, `lfo-bottom` aligns the bottom of the lowest glyph and a `bg`/`pa`
  badge is as tall as its letters. Only the font's own glyphs are drawn: a character it lacks (CJK or emoji with
  the shipped DejaVu Sans) is drawn as a box showing its code point, a 200; list a font that has them in
  `[fonts]` and name it with `ff`. With lines of both directions (Hebrew or Arabic next to Latin) `ia-left` and
  `ia-right` follow each paragraph's own direction, as Pango lays it out: with `ia-left` a right-to-left line
  stands at the box's right.
- **Position**: `lx`, `ly` (pixels from the left/top, rounded when the SDK writes a float; `N20` — or
  `-20`, as the SDK writes a negative number — puts the layer's right/bottom edge 20 px from the base's
  right/bottom edge, `N0` flush with it; ImageKit documents the leading `N` for negative values, the
  pages read for this did not say more precisely where a negative value puts the layer; or an
  expression, `lx-bw_mul_0.9`, see [Arithmetic expressions](#arithmetic-expressions)), `lxc`, `lyc` (the
  layer's centre), or `lfo-<focus>` (`center` by default, `top_left`, `bottom`, …; ignored when a
  coordinate is given, a missing one being 0). A coordinate beyond the base's side or on its far edge
  (`lx-400` or `lx-450` on a 400 px base, `lx-N500`) moves the layer to fit within the base, as ImageKit
  does; what falls outside the base from a coordinate within it is clipped.
- **Blend** `lm-`: `multiply` (darkens: layer × base), `cutter` (keeps the base only where the layer is
  opaque, trimmed to the layer's box), `cutout` (makes the base transparent where the layer is
  opaque). `lm-displace`, `lap` (anchor point) and video timing (`lso`, `leo`, `ldu`) are 400s
  saying they are not supported; `l-video` and `l-subtitles` too.
- **Limits**: 10 layers per URL (all steps together), 500 characters of text, font size 500;
  every layer adds a composite over its step's output and its own work to the cost estimate
  (`[limits] max_cost`); a text layer's glyphs are estimated at 0.8 × `fs`² pixels per character, and
  its box (the wrap width `w`, else its longest line, by its lines: each line break 1.2 × `fs` or `lh` more,
  each line longer than `w` as many as it wraps to; `pa`, `fol`, `fsh`) is counted for each ink, its corners and
  its rotation; an outline (`fol`) is a filter as wide as it over the whole box. A text
  more than 8192 px a side once drawn (the output limit; at `fs-500`, more than 14 lines) is a 400
  `l-text: the text is more than 8192 px a side` (without `w` a line is never wrapped: one wider than that
  is this 400), and a text of only spaces and line breaks a 400
  naming its `i-`. Every error is a 400 naming the parameter. An endpoint can draw the same layers
  on every image it serves: `watermark` in [configuration.md](configuration.md#endpoints).
"""


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
    ("aspect_ratio", "ar", "supported", "`4-3`, `4_3`, `4:3`, `1.5`, expressions"),
    ("background", "bg", "differs", "colours (`RRGGBBOO`: opacity %), `dominant` (and the node's `dominant_border`), "
     "`blurred…`; `gradient_dominant` and `genfill` are a 400"),
    ("blur", "bl", "supported", "0.1–100, decimals"),
    ("border", "b", "supported", "`<width>_<colour>`; the width may be an expression (`b-cw_mul_0.05_yellow`)"),
    ("crop", "c", "supported", "every value the SDK lists"),
    ("crop_mode", "cm", "supported", "every value the SDK lists; padding is `bg`, else white, or transparent "
     "for sources with transparency"),
    ("dpr", "dpr", "supported", "0.1–5; `dpr-auto` (client hint) see its section"),
    ("focus", "fo", "differs", "positions and `auto`; `fo-face` see its section; object names "
     "(`fo-person`, `fo-car`: AI) and `fo-custom` (a media library's focus area) are a 400"),
    ("quality", "q", "supported", "1–100"),
    ("x, y, x_center, y_center", "x y xc yc", "supported", "pixels or expressions"),
    ("format", "f", "differs", "`auto webp jpg jpeg png gif avif orig`; `svg mp4 webm` are a 400"),
    ("radius", "r", "supported", "`N`, `max`, `a_b_c_d`"),
    ("rotation", "rt", "supported", "degrees with decimals, `N…` or `-…`, `auto`"),
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
    ("trim", "t", "differs", "`true`, 1–99 or `false`; a layer is not trimmed unless it says `t-true` (ImageKit: by default)"),
    ("zoom", "z", "supported", "see the `z` section"),
    ("page", "pg", "differs", "a page number of GIF, WebP, TIFF, HEIF; ranges, PSD layer names and PDF are a 400"),
    ("overlay", "l-…", "supported", "layers: see the overlay section"),
    ("video_codec, audio_codec, start_offset, end_offset, duration, streaming_resolutions",
     "vc ac so eo du sr", "unsupported", "video: the node serves images"),
    ("ai_remove_background, ai_remove_background_external, ai_change_background, ai_edit, ai_drop_shadow, "
     "ai_retouch, ai_upscale, ai_variation", "e-bgremove e-removedotbg e-changebg e-edit e-dropshadow e-retouch "
     "e-upscale e-genvar (and e-genfill)", "unsupported", "AI generation and removal: models the node does not run"),
    ("color_replace", "cr", "supported", "the SDK's three forms; the formula is the node's: see its section"),
    ("colorize", "e-colorize", "supported", "`co in`, the SDK's defaults (gray, 100): see the tone effects"),
    ("distort", "e-distort", "supported", "`p-` four corners, `a-` an arc: see its section (the canvas is the "
     "node's choice)"),
    ("density", "dn", "unsupported", "density: vector sources (where it matters) are not read"),
    ("raw", "(any)", "supported", "the SDK's pass-through: served as far as its keys are"),
    ("(none)", "if-…", "supported", "conditional steps: see their section"),
)
PARITY = ("What the ImageKit Python SDK (`imagekitio`) writes, and what the node does with it. "
          "*Unsupported* keys are a **400** `invalid transformation: <param>: not supported (<why>)`, "
          "never silently ignored.\n\n| SDK field | key | node | notes |\n| --- | --- | --- | --- |\n" +
          "\n".join(f"| {field} | `{key}` | {status} | {note} |" for field, key, status, note in PARITY_ROWS))

CLIENT_HINTS = """\
`w-auto` takes the width from the request's `Sec-CH-Width` header (else the legacy `Width`),
`dpr-auto` the pixel ratio from `Sec-CH-DPR` (else `DPR`), as ImageKit reads them ([ImageKit: client
hints](https://docs.imagekit.io/features/client-hints), [resize and
crop](https://imagekit.io/docs/image-resize-and-crop): "read the width value from the Sec-CH-Width
Client Hint request header"). The pictures below were asked for with the headers shown.

- **Width**: rounded *up* to the next 100 px, as ImageKit does ("rounds the intrinsic size of the
  image to the next smallest 100": `Sec-CH-Width: 212` → 300 px), and held to `[limits]
  max_output_side`, however large the number (`Sec-CH-Width: 9999999999999999999999999` is 8192 px
  by default). The width hint is in device pixels, so with `w-auto` the step's `dpr` (a
  number or `dpr-auto`) is not applied again: `w-auto,dpr-auto` with `Sec-CH-Width: 600` and
  `Sec-CH-DPR: 2` is 600 px wide, as in ImageKit's example.
- **DPR**: rounded up to the next tenth (`2.625` → 2.7), within 0.1–5 (a larger number is 5); it
  multiplies `w`/`h` like `dpr-N`.
- **No hint** (a browser that sends none, a first request, a non-browser client), or a value that is
  not a plain number (`-400`, `1e5`, `auto`) or is zero: `w-auto` sets no width — the step is as if
  `w` were not given, so the image keeps its
  own width unless `h` or `ar` say otherwise — and `dpr-auto` is 1. ImageKit's documentation does not
  say what it does without the header; this is the choice that never invents a size.
- **Fallback width**, the node's own (Cloudinary's `w_auto:100:<fallback width>`; ImageKit has none):
  `w-auto,wf-400` is 400 px wide without a width hint, as `w-400` (the step's `dpr` applies), and the
  hint's width with one. `wf` without `w-auto` is a 400.
- **Not in a layer**: a layer's own `w-auto` or `dpr-auto` is a 400 (`a layer's size cannot come
  from client hints`): the hints size the image asked for.
- **Bounded cache**: the rounded values are part of the output's cache key (never the raw header), so
  however many different `Width` values clients send, one URL has at most `max_output_side / 100`
  (82) widths × the formats of `f-auto`; `dpr-auto` at most 50 ratios.
- **Headers**: a response that used hints says `Vary: Sec-CH-Width, Width` and/or `Vary: Sec-CH-DPR,
  DPR` (`Accept, …` first with `f-auto`), exactly the hints its transformation reads (not the ratio where
  it has no side to multiply, as in `w-auto,dpr-auto` without `wf` or `h`; a ratio of 1 is keyed as none), and
  `Accept-CH: Sec-CH-Width, Sec-CH-DPR`. Cache hits carry the same headers. ImageKit's `Content-DPR` response
  header is not sent: it was removed from the client hints specification and Chromium no longer
  reads it. So a browser lays out a `dpr-auto` image of a plain `src` at its intrinsic size (`w-100`
  at DPR 2 is 200 CSS pixels wide): give the `<img>` its display size in CSS (`width: 100px`).
  `sizes` does not do it: it applies only to the candidates of a `srcset`.
- **Browsers**: Chromium-based browsers send these hints only to origins that asked for them: the
  HTML page must opt in, and delegate them to the image host when it is another origin, e.g.
  `<meta http-equiv="delegate-ch" content="sec-ch-width https://img.example.com; sec-ch-dpr
  https://img.example.com">`, or on the page's response `Accept-CH: Sec-CH-Width, Sec-CH-DPR` with
  `Permissions-Policy: ch-width=(self "https://img.example.com"), ch-dpr=(self
  "https://img.example.com")`. `Sec-CH-Width` is sent only for `<img>` elements with a `sizes`
  attribute (tests/test_client_hints.py loads such a page in headless Chromium: 250 px `sizes` → a
  300 px image, no `sizes` → no hint). Firefox and Safari send no client hints: there `w-auto` falls
  back as above. A browser fetches one URL once per page, whatever `Vary` says: the same `w-auto` URL in
  two slots of different `sizes` is one request, and both get the first slot's width (a headless Chromium
  probe: 100 px for the 800 px slot too); give each slot a URL of its own (a `wf-` of its size does it).
- **Caches in front** (a CDN) must key on the same headers: most CDNs honour `Vary` only for
  `Accept-Encoding`, so either forward the hints and add them to the CDN's cache key, or keep `w-auto`
  URLs off the CDN.
"""

FACES = """\
`fo-face` crops around the faces found by OpenCV's frontal-face Haar cascade
(`haarcascade_frontalface_alt2.xml`, shipped inside the `opencv-python-headless` wheel). OpenCV is
an optional extra of about 50 MB: install the node with `pip install 'edge-image-node[faces]'`
(`python3 dev.py` installs it for the tests). **Without it, `fo-face` is a 400** `invalid
transformation: fo-face: needs a face detector: install the node with its [faces] extra …` rather
than another crop than the one asked for. (Cloudinary URLs' `g_face`/`g_faces` become `fo-face`, so
the same holds for them.) An extra that is installed but does not load (OpenCV missing a system library)
is logged (`edge.faces`) at the first search, whose answer is a 400 saying so; the node then answers as
without the extra until it restarts. There are no settings.

- **Where it searches**: on a copy of the step's input reduced to at most 0.5 megapixel, in the
  render's thread (OpenCV's own threads off, so a render keeps to one core), checked against the render
  deadline before and after. Faces at least 24 px in that copy are found: a face of about 1/24 of a
  3:2 photo's height, whatever its resolution. A search counts 8 megapixels in the cost budget
  (`[limits] max_cost`), per step and per frame of an animation.
- **Framing** (with `w` and `h`, `c-maintain_ratio` or `c-maintain_ratio_no_enlarge`): the box around
  the largest face and every face at least a quarter of its size (a group photo keeps its group,
  small background faces and false detections are left out), 2.5 times as wide and high (head, hair and
  shoulders), widened to the output's aspect ratio, divided by `z`, then held between the output's
  size in the input's pixels (a face is never enlarged beyond the original's resolution) and the
  whole image. So `z-0.5` shows twice as much around the face and `z-2` half as much, ImageKit's
  behaviour for zoom with face crops. `ffr-false` (the node's own, for Cloudinary's `c_fill,g_face`, which
  scales to cover and only keeps the face in the middle) frames nothing: the image scaled to cover the box,
  as without a focus, the crop centred on the faces (as near as the image's edges allow); `z` then zooms into
  their centre. Without `fo-face`, `ffr-false` is a 400.
- **Other uses**: with one side or no size (`w-300,fo-face,z-2`), `z` zooms into the faces' centre as it
  does into any focus; `cm-extract`/`cm-pad_extract` centre their region on the faces. `cm-extract,fo-face`
  with neither `w` nor `h` cuts out the faces' box itself, divided by `z` and widened to `ar` when given
  (`cm-extract,fo-face,ar-1-1,z-0.5`: a square twice the face's size around it), as Cloudinary's
  `c_crop,g_face` does; on an animation every frame is cut where the first frame's faces are.
- **No face found**: the crop falls back to `fo-auto` (the most interesting point); `z` then acts as
  with `fo-auto`. ImageKit's documentation does not say what `fo-face` does without a face; this keeps
  the subject of most photos in the crop rather than a fixed centre. `fof-<focus>` (the node's own, not
  ImageKit's) names another fallback, any focus but `face`: `fo-face,fof-top` crops at the top without a
  face, as Cloudinary's `g_face` does (`fo-face,fof-center`: its `g_face:center`); with a face it plays no
  part. `fof` without `fo-face` is a 400.
- **Cache**: `fo-face` is its own cache entry (no longer the same as `fo-auto`).
- **Faces hidden**: `e-blurfaces-N` blurs each face found (N: a radius in pixels of the step's output,
  0.1–100, as `bl`), `e-pixelatefaces-N` pixelates it in squares of N×N px (1–200), the rest of the
  image untouched; they are the node's own, for Cloudinary's `e_blur_faces` and `e_pixelate_faces`
  ([leaving-cloudinary.md](leaving-cloudinary.md)). Each face's box, which runs from the eyebrows to
  the mouth, is grown by a quarter of its size on every side to cover forehead, hair and chin; every
  face found is hidden, however small (not only those framing keeps), with the effect run once over the
  image and a mask of the faces picking from it. **A face the detector misses stays as it is** (a face
  in profile, turned away, very small, or partly hidden; in a grid of 24 frontal portraits it found
  15): this is a courtesy blur, not a guarantee of anonymity. The radius is in pixels: a face 200 px
  wide at full size needs about `e-blurfaces-60` to be past recognising, one 50 px wide in a 1000 px
  rendition `e-blurfaces-20`. No face found, the image is unchanged. Each costs a search (above) plus,
  for the blur, `bl`'s weight over the whole output, and needs the `[faces]` extra as `fo-face` does.

**Which detector.** OpenCV's bundled Haar cascades need no model download (the `opencv-python-headless`
wheel carries them); a CNN detector such as YuNet would need a model file no well-kept PyPI package
ships. Of the three frontal-face cascades, `alt2` is used: measured with `.venv/bin/python -m
benchmarks.bench_faces` (CPU time of one search of the node's 0.5 MP copy of the 12 MP test scene,
against libvips' attention search of its 1 MP copy in the same rounds, median of 7; 2 cores shared
with other jobs, load average 13):

| cascade | CPU ms | × attention (`fo-auto`) | LFW faces found | LFW non-faces flagged | photos without faces flagged |
| --- | --- | --- | --- | --- | --- |
| default | 132 | 9.6 | 97/100 | 0/100 | 2/19 (coins, cells) |
| alt | 154 | 11.2 | 98/100 | 0/100 | 0/19 |
| **alt2** | 119 | 8.6 | 98/100 | 0/100 | 0/19 |

The faces are the 100 faces and 100 non-faces of scikit-image's `lfw_subset` (25 px crops of
Labeled Faces in the Wild, scaled up with a border); the photos are scikit-image's 19 sample images
without faces (brick, grass, gravel, coins, cells, the cat, the coffee, text…). Every cascade finds
the one face of the astronaut photo and of the 12 MP test scene. Haar cascades find frontal faces:
profiles, strongly tilted or covered faces are missed (and then the crop is `fo-auto`'s).
"""


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
    Section("`ar`: aspect ratio", "`ar-<width>-<height>` (or `ar-4_3`; or `ar-4:3`, which the SDK writes for "
            "an `aspect_ratio` given as `\"4:3\"`, and which is read as `ar-4-3`, not as two chained steps; or one "
            "decimal ratio, `ar-1.5`) with exactly one of `w`/`h`; ignored when both are given. Alone, it "
            "crops the largest box of that ratio out of the input.", (
                Example("w-240,ar-16-9", "astronaut.jpg"),
                Example("h-160,ar-1-2", "coffee.jpg"),
            )),
    Section("`dpr`: device pixel ratio", "Multiplies `w` and `h` (0.1–5); needs one of them. When that would "
            "make a side of the output larger than 5000 px (or smaller than 1 px), the `dpr` is not applied and "
            "`w`/`h` are used as given, as ImageKit does: `w-3000,dpr-2` is 3000 px wide, and so is the side the "
            "URL leaves to the image's aspect: `h-2000,dpr-2` of a 4:3 photo is 2000 px high, not 4000. The side is "
            "the output's: with `c-at_max` or `c-maintain_ratio_no_enlarge`, which never enlarge, "
            "`w-2600,c-at_max,dpr-2` of a 4000×3000 photo is 4000×3000 (the box is 5200 px wide, the output not "
            "over 5000 px), and of an 8000×6000 one 2600×1950 (5200 px with it).", (
                Example("w-100,dpr-2", "chelsea.jpg", "200 px wide"),
            )),
    Section("Client hints", CLIENT_HINTS, (
                Example("w-auto", "coffee.jpg", "250 rounded up to 300", (("Sec-CH-Width", "250"),)),
                Example("w-100,dpr-auto", "coffee.jpg", "100 × 2.625, rounded up to 2.7",
                        (("Sec-CH-DPR", "2.625"),)),
                Example("w-auto,dpr-auto", "coffee.jpg", "the width hint counts the DPR already",
                        (("Sec-CH-Width", "200"), ("Sec-CH-DPR", "2"))),
                Example("w-auto", "coffee.jpg", "no hint: the image's own width"),
            )),
    Section("`c`: crop strategy", "How `w`×`h` is reached when both are given.\n\nOne more value, not in "
            "ImageKit's grammar: `c-enlarge_to_fit` fits inside `w`×`h` only by enlarging — an image already "
            "larger than the box is left at its size (Cloudinary's `c_mfit`, see "
            "[leaving-cloudinary.md](leaving-cloudinary.md)). `c-pad_resize` and `c-extract`, as ImageKit wrote "
            "these crop modes before `cm-` (its conditional-transformation docs still write `c-pad_resize`), are "
            "`cm-pad_resize` and `cm-extract`.", (
                Example("w-200,h-120,c-maintain_ratio", "astronaut.jpg", "default: cover the box, crop by `fo`"),
                Example("w-200,h-120,c-force", "astronaut.jpg", "stretch to the box"),
                Example("w-200,h-120,c-at_max", "astronaut.jpg", "fit inside, never upscale"),
                Example("w-800,h-200,c-at_max_enlarge", "chelsea.jpg", "fit inside, may upscale"),
                Example("w-200,h-120,c-at_least", "astronaut.jpg", "cover the box, no crop"),
                Example("w-900,h-120,c-maintain_ratio_no_enlarge", "chelsea.jpg",
                        "like the default, never upscaled: the box shrinks to the image"),
            )),
    Section("`fo`: focus", "Where a crop is taken. `fo-auto` is content-aware (libvips smartcrop, "
            "*attention* strategy: skin tones, saturation, edges). `fo-face` frames the faces a face detector "
            "finds: see [Faces](#faces). On an animation the first frame decides where every frame is cut, "
            "so that the crop stands still and what moves moves through it (each frame cut at its own most "
            "interesting point, the crop would follow a moving subject and shake the background).", (
                Example("w-240,h-100,fo-center", "astronaut.jpg"),
                Example("w-240,h-100,fo-top", "astronaut.jpg"),
                Example("w-240,h-100,fo-bottom", "astronaut.jpg"),
                Example("w-100,h-200,fo-left", "coffee.jpg"),
                Example("w-100,h-200,fo-right", "coffee.jpg"),
                Example("w-120,h-120,fo-top_left", "chelsea.jpg"),
                Example("w-120,h-120,fo-auto", "chelsea.jpg", "finds the cat"),
                Example("w-120,h-120,fo-face", "astronaut.jpg", "the face, framed"),
            )),
    Section("`z`: zoom", "With a crop, zooms into the focus by the factor (`z-2`: half the field of view). "
            "Applies to `c-maintain_ratio` / `c-maintain_ratio_no_enlarge` and to steps without `w`/`h`. "
            "Below 1 it zooms out, around faces (`fo-face`, see [Faces](#faces)); with another focus, values "
            "at or below 1 change nothing (a crop cannot show more than the whole image) and are dropped "
            "from the cache key.", (
                Example("w-150,h-150,fo-auto", "astronaut.jpg"),
                Example("w-150,h-150,fo-auto,z-2", "astronaut.jpg"),
                Example("w-150,h-150,fo-top,z-3", "astronaut.jpg"),
            )),
    Section("Faces", FACES, (
                Example("w-240,h-120,fo-auto", "astronaut.jpg", "attention"),
                Example("w-240,h-120,fo-face", "astronaut.jpg", "the face, with a margin"),
                Example("w-150,h-150,fo-face,z-0.5", "astronaut.jpg", "zoomed out: more around the face"),
                Example("w-150,h-150,fo-face", "astronaut.jpg"),
                Example("w-150,h-150,fo-face,z-2", "astronaut.jpg", "zoomed in"),
                Example("w-120,h-120,fo-face", "coffee.jpg", "no face: as fo-auto"),
            )),
    Section("`cm`: crop modes", "`pad_resize`: fit inside `w`×`h`, pad to exactly `w`×`h` with `bg` (white, "
            "or transparent for images with transparency: an alpha band opaque everywhere, as every GIF and "
            "many PNGs of opaque pictures carry, is none, up to 16 megapixels); `fo-left/right/top/bottom` put "
            "the image on "
            "that side. `pad_resize_no_enlarge`: the same, but an image smaller than the box keeps its "
            "size and is padded all round. `extract`: cut a `w`×`h` region out of the input at its own "
            "scale, placed by `fo` or `x,y` / `xc,yc`. `pad_extract`: the same, padding with `bg` where "
            "the region leaves the image. `pad_extract_no_shrink`: like `pad_extract`, but a side of the "
            "box smaller than the image's grows to the image's: it only ever pads, never cuts. "
            "`extract_within` (the node's own, for Cloudinary's `c_crop`): like `extract`, but a region that "
            "leaves the image is cut to the part of it inside (`w-500,h-200` of a 451×300 image, centred: "
            "451×200); only one wholly outside it is a 400.", (
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
    Section("`rt`: rotate", "Clockwise degrees, decimals allowed (`rt-12.5`), any number of them as in "
            "ImageKit (`rt-450` = `rt-90`); `N` is counter-clockwise (`rt-N90` = `rt-270`), and so is `-` as "
            "the ImageKit SDK writes `rotation: -90` (`rt--90`). Right angles are exact; other angles fill the "
            "corners with `bg` (without it: transparent where the image has transparency, as for `cm-pad_resize`, "
            "or is a layer, the base showing, else white). `rt-auto` is what always happens anyway: the EXIF "
            "orientation is applied first, to every image.", (
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
    Section("`e-distort`: perspective and arc", "ImageKit's syntax (its SDK: \"`p-x1_y1_x2_y2_x3_y3_x4_y4` changes "
            "the position of the four corners starting clockwise from top-left\"; \"`a-degrees` curves the image "
            "upwards (positive values) or downwards (negative values)\"). ImageKit does not say how large the "
            "result is, nor what fills it beyond the image; the node's choices: `e-distort-p-…` (integers, `N` for "
            "minus) moves the image's corners to those pixels of the image's own rectangle, and maps what lies "
            "between them as a perspective does (straight lines stay straight; the far half of a receding plane is "
            "shorter); a corner past an edge grows the canvas on that side, as imgix documents its `distort` "
            "(`e-distort-p-N20_0_…` makes it 20 px wider, the top-left corner at its left edge), so that nothing "
            "is cut off, and corners within the image keep its size. The corners must make a convex "
            "shape, clockwise from the top left, each on its own side of the others as ImageKit's editor holds "
            "them: else a 400. `e-distort-a-N` (−360–360, 0: nothing) bends the image around a circle: its "
            "middle row keeps its length over N degrees, the top edge outside (below 0 the image stays upright, "
            "bent the other way, the bottom edge outside); an arc too tight for the image's height takes the "
            "inner edge to the circle's centre. The canvas is the smallest that holds the arc, so larger than "
            "the image. Beyond the image: `bg`, as `rt`'s corners (without it, transparent where the image has "
            "transparency or is a layer, else white; `bg-00000000` makes it transparent). The distortion comes after "
            "the step's resize, crop, rotation and flip, so the corners are in pixels of the image as it is by then "
            "(`w-240,e-distort-p-…` counts in the 240 px wide image); each pixel is sampled (bilinear) from the "
            "image held in memory at that size. Its cost counts 5.5 × the canvas' megapixels "
            "([security.md](security.md#work-per-url)).", (
                Example("w-240,e-distort-p-30_10_210_0_240_160_0_150", "coffee.jpg", "a corner pulled in"),
                Example("w-240,e-distort-p-60_0_180_0_240_160_0_160,bg-00000000,f-png", "coffee.jpg",
                        "receding: the far half shorter"),
                Example("w-240,e-distort-a-120", "coffee.jpg", "upwards; a larger canvas"),
                Example("w-240,e-distort-a-N90,bg-00000000,f-png", "chelsea.jpg", "downwards, on transparency"),
            )),
    Section("`t`: trim", "Cuts away uniform borders the colour of the top-left pixel. `t-true` uses a "
            "threshold of 10; `t-1`…`t-99` sets it. Trim comes first in its step, before the resize. "
            "`t-false` is no trim, as without `t`. When the top-left pixel is transparent, the transparent "
            "borders are cut, whatever colour their pixels hold. On an animation, a trim cuts every frame "
            "by one box, the smallest that holds what each frame's own trim keeps, so that what moves stays "
            "in place (each frame trimmed alone would be of its own size).", (
                Example("w-240,h-240,cm-pad_resize,bg-white", "chelsea.jpg", "padded"),
                Example("w-240,h-240,cm-pad_resize,bg-white:t-true", "chelsea.jpg",
                        "padded in step one, trimmed back in step two"),
            )),
    Section("`q`: quality", "1–100 for JPEG, WebP and AVIF; default from the config (`[defaults] quality`, 80). "
            "The number is JPEG's scale, which WebP's follows; AVIF's own scale is not: at the same number an AVIF "
            "was several times the WebP's size (q-80, a 12 MP photo at 1600 px: 183 KB against 35 KB), so AVIF is "
            "encoded at 0.7 × q up to `q-80` (56), rising to 100 at `q-100` (`q-90`: 78), where it is smaller than "
            "the WebP with pixels at least as close to the original. "
            "JPEG is chroma-subsampled (4:2:0) below `q-90`, AVIF below its own 90 (`q-96`), as libvips and most "
            "image CDNs do: smaller files, colour edges a little softer. ImageKit documents its JPEG 4:2:0 as a "
            "dashboard setting, off "
            "by default: `[defaults] chroma_subsampling = false` gives its full colour resolution (4:4:4) at every "
            "quality; it documents no AVIF defaults.", (
                Example("w-240,q-10", "coffee.jpg"),
                Example("w-240,q-90", "coffee.jpg"),
            )),
    Section("`bl`: blur", "Gaussian blur, radius 0.1–100 px (decimals allowed). On an image with transparency, "
            "blurred premultiplied: the colour under a transparent pixel (black, white, whatever an editor left there) "
            "never bleeds into the visible edge.", (
                Example("w-240,bl-3", "coffee.jpg"),
                Example("w-240,bl-15", "coffee.jpg"),
            )),
    Section("`e-grayscale`, `e-contrast`, `e-sharpen`, `e-usm`: effects", "`e-contrast` stretches the "
            "1st–99th percentile of the levels to the full range; `e-contrast-N` (0–100, the node's own, for "
            "Cloudinary's `e_auto_contrast:N`) lays N % of that stretch over the original. `e-sharpen` takes an "
            "optional amount "
            "(default 10). `e-usm-<radius>-<sigma>-<amount>-<threshold>` is an unsharp mask as in "
            "ImageMagick: the gaussian's extent follows from `sigma`, `threshold` is a fraction of the "
            "full range. `e-usm` alone (what the SDK writes for `unsharp_mask: True`) is "
            "`e-usm-2-1-1-0.05`: ImageKit documents no numbers for its default. On an image with transparency, "
            "each counts only the pixels that show: `e-contrast`'s levels (of several bands, the mean of each "
            "band's 1st and 99th percentile), and the neighbours `e-sharpen` and `e-usm` set an edge against.", (
                Example("w-240,e-grayscale", "coffee.jpg"),
                Example("w-240,e-contrast", "camera.jpg"),
                Example("w-240,e-sharpen-60", "chelsea.jpg"),
                Example("w-240,e-usm-2-2-3-0.02", "chelsea.jpg"),
            )),
    Section("`e-brightness`, `e-saturation`, `e-sepia`, `e-vibrance`, `e-hue`, `e-red`, `e-green`, `e-blue`, "
            "`e-negate`, `e-blackwhite`, `e-autocolor`, `e-autobrightness`, `e-pixelate`, `e-region`: the node's own "
            "colour effects",
            "ImageKit has no such parameters; the node has them for Cloudinary's `e_brightness`, `e_saturation`, "
            "`e_sepia`, `e_vibrance`, `e_hue`, `e_red`, `e_green`, `e_blue`, `e_negate`, `e_blackwhite`, "
            "`e_auto_color`, `e_auto_brightness`, `e_improve` "
            "and `e_pixelate` "
            "([leaving-cloudinary.md](leaving-cloudinary.md)), with the "
            "formulas of CSS's filters where one exists, since Cloudinary documents only the ranges. "
            "`e-brightness-N` (−99–100, `N` for minus: `e-brightness-N30`) multiplies each colour value by "
            "1 + N/100 (CSS's `brightness()`); `e-saturation-N` (−100–100) is `saturate(1 + N/100)`, −100 being "
            "greyscale; `e-sepia-N` (1–100) is `sepia(N/100)`; `e-vibrance-N` (−100–100) is, for each pixel, "
            "`saturate(1 + N/100 × (1 − spread))`, spread being the difference of its largest and smallest value "
            "over 255, so that greys and dull colours change most and a colour with one value 0 and one 255 (red, "
            "yellow, blue…) not at all; `e-hue-N` (−100–100) is `hue-rotate(N × 1.8deg)` (100: half the colour "
            "wheel; ImageMagick's `-modulate` hue of 100 + N); `e-red-N`, `e-green-N`, `e-blue-N` (−100–100) "
            "multiply that band's values by 1 + N/100; `e-negate` makes each colour value v "
            "255 − v; `e-blackwhite-N` (0–100) is white where the grey level is above N % of white, else black "
            "(`e-blackwhite-100`: all black); "
            "`e-pixelate-N` (1–200) makes squares of N×N px from the top-left corner, each the average of its "
            "pixels; `e-region-<x>_<y>[_<w>_<h>]` keeps the step's `bl` and `e-pixelate` to that rectangle (whole "
            "pixels of the step's result, not the original's: after a `w-`, the resized image's; without a size, to "
            "the edges; one that starts outside the step's result is a 400, where a blur that hid nothing had "
            "served the image sharp), for Cloudinary's `e_blur_region` and "
            "`e_pixelate_region`; `e-pixelatefaces-N` and `e-blurfaces-N` do it, or blur, on the faces alone (see "
            "[faces](#faces)). After the step's geometry and blur, in this order: pixelate, the faces, "
            "`e-grayscale`, brightness (and HSB brightness, below), saturation, sepia, vibrance, hue, the bands, "
            "a colour blended in, negate, black and white, auto colour, auto brightness, then `e-contrast`, the "
            "sigmoidal and linear contrasts, gamma, `e-sharpen`, the vignette and `e-usm`; transparency is kept "
            "(the opacity threshold comes with `o`). `e-autocolor[-B]` stretches "
            "each colour band's 1st–99th percentile to the full range on its own, which takes a colour cast away "
            "(image editors' auto colour or auto levels); `e-autobrightness[-B]` applies the gamma that brings "
            "the mean grey level to the middle (ImageMagick's `-auto-gamma`), at most 3 or 1/3 (both of the pixels "
            "that show); B (0–100, "
            "default 100) is the share of the result laid over the original, as Cloudinary's blend for "
            "`e_auto_color`, `e_auto_brightness` and `e_improve` (both of them).", (
                Example("w-240,e-brightness-40", "coffee.jpg"),
                Example("w-240,e-brightness-N40", "coffee.jpg"),
                Example("w-240,e-saturation-80", "coffee.jpg"),
                Example("w-240,e-saturation-N100", "coffee.jpg"),
                Example("w-240,e-sepia-80", "coffee.jpg"),
                Example("w-240,e-vibrance-80", "coffee.jpg"),
                Example("w-240,e-hue-50", "coffee.jpg"),
                Example("w-240,e-negate", "coffee.jpg"),
                Example("w-240,e-blackwhite-40", "coffee.jpg"),
                Example("w-240,e-autocolor", "coffee.jpg"),
                Example("w-240,e-autobrightness", "coffee.jpg"),
                Example("w-240,e-pixelate-12", "coffee.jpg"),
                Example("w-240:e-pixelate-10,e-region-60_40_100_70", "coffee.jpg", "a rectangle alone"),
                Example("w-240,e-pixelatefaces-8", "astronaut.jpg", "faces only (the `[faces]` extra)"),
                Example("w-240,e-blurfaces-10", "astronaut.jpg", "faces only (the `[faces]` extra)"),
            )),
    Section("`e-sigmoidcontrast`, `e-linearcontrast`, `e-gamma`, `e-brightnesshsb`, `e-colorize`, "
            "`e-vignette`, `e-opacitythreshold`: tone effects",
            "`e-colorize` is ImageKit's (its SDK's syntax and defaults); the others are the node's own, for Cloudinary's "
            "`e_contrast` (its two types), `e_gamma`, `e_brightness_hsb`, `e_vignette` and `e_opacity_threshold` "
            "([leaving-cloudinary.md](leaving-cloudinary.md), where `e_colorize` with `co_` is `e-colorize`); Cloudinary "
            "documents their ranges and defaults, the formulas are ImageMagick's where it has the operation "
            "(Cloudinary's own engine) and written here where it has not. `e-sigmoidcontrast-N` (−100–100, `N` for "
            "minus) is ImageMagick's `-sigmoidal-contrast (N/10)x50%`: an S curve that keeps black, mid grey and "
            "white, stronger with N; below 0 its inverse (`+sigmoidal-contrast`), which flattens. "
            "`e-linearcontrast-N` (1–200) is CSS's `contrast(N/100)`: each value's distance from mid grey times "
            "N/100. `e-gamma-N` (−50–150) is ImageMagick's `-gamma 1 + N/100`: each value (0–1) to the power 1 / (1 + "
            "N/100), lighter mid tones above 0, darker below. `e-brightnesshsb-N` (−99–100) multiplies HSB's "
            "brightness (a pixel's largest value) by 1 + N/100, keeping hue and saturation: the pixel's values are "
            "scaled alike, no further than its largest reaches white (where `e-brightness` clips each value on its "
            "own). `e-colorize-co-<colour>_in-N` (a colour as `bg` takes, default gray; intensity 0–100, default "
            "100: either part may be left out, bare `e-colorize` is gray at 100 %) is ImageMagick's `-colorize`: each "
            "colour value becomes (1 − N/100) × itself + N/100 × the colour's (a translucent colour in proportion to "
            "its opacity). `e-vignette-N` (0–100) darkens toward the edges: each value times 1 − N/100 × d², d being "
            "the distance from the centre on an ellipse the image's shape, 1 at the corners (at 100 the corners are "
            "black, the middle of each side half as bright). `e-opacitythreshold-N` (0–100) makes a pixel less opaque "
            "than N % transparent and the others opaque, before `o`.", (
                Example("w-240,e-sigmoidcontrast-60", "camera.jpg"),
                Example("w-240,e-sigmoidcontrast-N60", "camera.jpg"),
                Example("w-240,e-linearcontrast-150", "camera.jpg"),
                Example("w-240,e-gamma-80", "coffee.jpg"),
                Example("w-240,e-gamma-N40", "coffee.jpg"),
                Example("w-240,e-brightnesshsb-60", "coffee.jpg"),
                Example("w-240,e-colorize-co-FF6600_in-40", "coffee.jpg"),
                Example("w-240,e-vignette-60", "chelsea.jpg"),
                Example("w-200,e-opacitythreshold-50,f-png", "logo-transparent.png"),
            )),
    Section("`cr`: colour replacement", "ImageKit's syntax (its SDK: `cr-<to>` replaces the dominant colour, "
            "`cr-<to>_<tolerance>` with a tolerance 0–100, `cr-<to>_<tolerance>_<from>` a given colour; colours "
            "as `bg` takes them, opaque), Cloudinary's `e_replace_color` in another spelling. Neither says how "
            "a colour is replaced; Cloudinary says its shades follow, \"taking luminosity and chroma into "
            "account\". The node's formula, in CIE Lab: a pixel's distance from the source colour (a lightness "
            "difference counting half, as shades of one colour differ most in lightness) weighs its change, fully "
            "within half the tolerance, less and less to none at the tolerance (0: the source colour alone); "
            "the change takes the pixel to the target's hue, its chroma scaled as the target's is to the "
            "source's (a grey source: the target's chroma), its lightness moved so that the source's becomes the "
            "target's, a shade's difference from it kept (or narrowed, to fit between black and white): a white "
            "background (`cr-<to>_20_white`) takes the target colour itself. A darker shade of the source becomes a darker shade of the "
            "target. Without a source, the image's dominant colour as the step starts (`bg-dominant`'s: before "
            "the step's crop, padding, turn and effects; an animation's first frame's, for every frame). The "
            "tolerance defaults "
            "to 50 (Cloudinary's); pixels out of its reach keep their exact values. The cost counts 6.5 × the "
            "step's megapixels on top of 1.", (
                Example("w-240,cr-0077FF_25_9A2109", "coffee.jpg", "the red cup blue, shaded as it was"),
                Example("w-240,cr-0077FF_45_9A2109", "coffee.jpg", "a larger tolerance: the wood too, in part"),
                Example("w-240,cr-00A000", "coffee.jpg", "the dominant colour (the wood) green"),
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
            "40 % on black); a translucent one only pads (in a format without transparency, JPEG or GIF, "
            "with its colour at full strength: a greyscale image flattened on a colour becomes a colour image). "
            "This differs from ImageKit on one point: there, "
            "`o-50,bg-0000FF30` ignores the `bg`'s opacity and blends on opaque blue whatever the format; "
            "here a PNG, WebP or AVIF output of it keeps the faded image's transparency. `bg-dominant` pads with the image's most common "
            "colour, `bg-dominant_border` (the node's own, for Cloudinary's `b_auto`) with the most common colour "
            "of its border (the outer pixels of a 32 px copy: a frame about 1/32 of the image's side deep); "
            "`bg-blurred[_<radius>[_<brightness>]]` (radius `auto` or 0–100, as in ImageKit; brightness −255–255, `N` for minus) pads with "
            "the image itself, scaled to cover the box and blurred ([ImageKit: dominant and blurred "
            "backgrounds](https://imagekit.io/docs/effects-and-enhancements#dominant-color-background)); "
            "the image's own transparent areas show that blurred backdrop, and the output has no "
            "transparency. `bg-gradient_dominant` and `bg-genfill` are a 400 `not supported`.", (
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
            "at `sp` (a fraction of the way across, or pixels above 1, or an expression of them, "
            "`sp-ih_div_2`; default 1). Defaults as "
            "[ImageKit documents them](https://imagekit.io/docs/effects-and-enhancements#shadow---e-shadow).", (
                Example("w-200,e-shadow-bl-6_st-60_x-4_y-4,f-png", "logo-transparent.png"),
                Example("w-240,e-gradient", "coffee.jpg"),
                Example("w-240,e-gradient-ld-90_from-1E3A8A50_to-FFFFFF00_sp-0.6", "coffee.jpg"),
            )),
    Section("Arithmetic expressions", "`w`, `h`, `ar`, `x`, `y`, `xc`, `yc`, a border's width and a "
            "gradient's stop point (`sp`) take ImageKit's expressions "
            "([ImageKit](https://imagekit.io/docs/arithmetic-expressions-in-transformations)): values "
            "(numbers or `iw`, `ih`, `iar` — the original's width, height, aspect ratio — and `cw`, `ch`, "
            "`car` — the step's input) joined by `add`, `sub`, `mul`, `div`, `mod`, `pow` (`pow` first, "
            "then `mul`/`div`/`mod`, then `add`/`sub`, as in arithmetic; an older ImageKit page gave mul/div, add/sub, "
            "mod, then pow: write one operator kind per expression where it matters), at most 15 terms. `w-iw_div_2` is half the "
            "original's width. A result that is not a positive size (`w-iw_sub_iw`) is a 400 naming it. "
            "In a layer, `bw`, `bh`, `bar` are the size of the base it is drawn on (its step's result; "
            "outside a layer, a 400), `iw`… the layer's own original, and expressions are read in its "
            "`w`/`h`/`ar`, its position `lx`/`ly`/`lxc`/`lyc` (where `cw`, `ch`, `car` are the layer as "
            "drawn: `lx-bw_sub_cw` sets it flush right; a result below 0 is 0) and a text's `fs` and `w` "
            "(`fs-bh_div_20`; `bw`, `bh`, `bar` only, `fs` from 1 to 500). So one URL draws a watermark "
            "at the same share of every size: `l-image,i-logo.png,w-bw_mul_0.2,lx-bw_mul_0.75,"
            "ly-bh_mul_0.05,l-end`. An `x`… that evaluates below 0 or above 65500, or a border above 1000 px, "
            "is a 400 naming it; a border that comes to 0 (`b-ch_mod_5_yellow`) is no border. "
            "A text's `pa` takes one expression too, the same padding on every side (`pa-bw_mul_0.01`).", (
                Example("w-iw_div_4", "coffee.jpg", "a quarter of 600 px"),
                Example("w-200,ar-iar_div_2", "coffee.jpg", "half the original's ratio"),
                Example("w-300,l-image,i-logo-transparent.png,w-bw_mul_0.3,lx-bw_sub_cw_sub_10,ly-bh_mul_0.05,l-end",
                        "coffee.jpg", "a logo at 30 % of the base's width, 10 px from its right edge"),
            )),
    Section("`pg`: page", "`pg-<N>`: the N-th frame of an animated GIF or WebP, or page of a multi-page TIFF, "
            "or image of a HEIF that holds several (AVIF, HEIC), as a still image at its own size (1-based; "
            "beyond the last one is a 400). ImageKit's page ranges and PSD "
            "layer names are not read, and PDF is not an input. `/<path>/ik-thumbnail.jpg` (ImageKit's thumbnail "
            "URL: `/tr:pg-2/banner.gif/ik-thumbnail.jpg`) is the original at `<path>` as a JPEG (another format "
            "with `f-`): its first frame or page, or the one `pg` names, a still also in a format that animates "
            "(`f-gif`, `f-webp`, `f-auto`); a file of that name is not reachable. "
            "ImageKit's thumbnails of videos (`clip.mp4`, `.webm`, `.mov`…) and of PDF, PSD, EPS and AI files are "
            "a 400 naming `ik-thumbnail.jpg`, before anything is fetched.", ()),
    Section("Chained steps", "Steps separated by `:` run in order, each on the result of the one before. "
            "Output parameters (`f q pr lo md cp di orig`) belong to the one result, wherever they stand.", (
                Example("w-300,h-300,fo-auto:rt-90:e-grayscale,r-max,f-png", "chelsea.jpg"),
                Example("w-200,h-200,cm-pad_resize,bg-white:b-4_333333:r-20,f-png", "logo-transparent.png"),
            )),
    Section("Conditional steps", "ImageKit's `if-<condition>,<steps>[,if-else,<steps>],if-end` ([conditional "
            "transformations](https://imagekit.io/docs/conditional-transformations)): a step that is an if block "
            "stands for the steps of its first branch when the condition holds, else for those after `if-else` "
            "(none: the image is left as it is, at no cost: the step after it still shrinks the original on "
            "load). The condition compares `w`, `h`, `ar` (the image's size at that "
            "step of the chain) or `iw`, `ih`, `iar` (the original's), or the node's own `fc` (for Cloudinary's "
            "`if_fc_…`: how many faces the `[faces]` extra's detector finds in the image at that step; without the "
            "extra, a 400 naming it) with a number (or a ratio, `ar_gt_4-3`) by "
            "`eq`, `ne`, `gt`, `gte`, `lt` or `lte`; comparisons are joined by `_and_`, which binds first, and "
            "`_or_`: `if-ar_gt_1,w-600,if-else,h-400,if-end` makes a landscape image 600 px wide and a portrait "
            "one 400 px high, `h-200:if-h_eq_200,w-100,if-end:rt-90` tests the height the first step made. A "
            "branch may chain steps with `:` and holds step parameters only: an if block is a step of its own "
            "(`h-100,if-h_eq_200,…` is a 400, as in ImageKit), and within it layers, output parameters (`f`, "
            "`q`…, which belong to the whole result), named transformations, client hints (`w-auto`) and another "
            "if block are a 400 naming the parameter. Its branches count among the 10 steps. The cost budget "
            "counts the branch the sizes choose once the original's size is known (before it, after a step whose "
            "size only the render knows, a trim or a cut to the faces or by an `lm-cutter` layer, and for a "
            "condition on `fc`: whichever branch costs more with the steps after it, and for `fc` a face "
            "search).", ()),
    Section("`f`: output format", "`auto`: AVIF when `Accept` names `image/avif` (animations: WebP, which "
            "libvips can write animated, when it names `image/webp` too, else GIF), else WebP when it "
            "names `image/webp`, else JPEG (a type counts "
            "only when named outright, not by `image/*` or `*/*`, and with a weight above 0: "
            "`image/webp;q=0` refuses WebP, as RFC 9110 says; a `q` that is not a number is ignored, and "
            "other weights do not reorder AVIF and WebP; JPEG is the fallback whatever `Accept` says: "
            "`image/png, image/jpeg;q=0` still gets JPEG, as RFC 9110 12.5.1 allows) — or PNG when "
            "the result has transparency (an alpha band opaque everywhere, as some PNGs carry, is none: "
            "JPEG, a tenth of the size; looked at up to 16 megapixels), or GIF when it is an animation (an animated GIF stays animated "
            "for every browser); the response says `Vary: Accept`. `orig`: the original's format. "
            "Without `f`, the format follows the extension of the requested path, else the original's — "
            "unless `[defaults] auto_format = true`: then a URL without `f` is an `f-auto` one, as "
            "ImageKit delivers by default ([ImageKit: format](https://imagekit.io/docs/image-optimization#format---f)); "
            "the cache key then holds the class of `Accept` (AVIF+WebP, AVIF, WebP, neither), so each "
            "browser class gets its own entry. With `[defaults] auto_format_smallest = true`, `f-auto` "
            "encodes every format the browser accepts (AVIF, WebP and JPEG/PNG) and serves the smallest, "
            "at the cost of those encodes (see benchmarks/README.md): ImageKit's documented behaviour, which "
            "the node does not make its default because every miss would pay every encode (AVIF alone costs "
            "5–7 × a JPEG's), while at the default AVIF effort an AVIF can be the largest of the three "
            "(a 12 MP photo at full size: AVIF 2.1 MB, JPEG 1.3, WebP 1.2). `f-svg`, `f-mp4` and `f-webm` are "
            "a 400 `not supported`. An SVG original (with `[limits] allow_svg`) is served as it is, as ImageKit "
            "delivers one, unless a raster format is asked for: `f-auto`, `auto_format` and steps alone "
            "(`w-300`) leave it the vector, `f-png`, `f-webp`… draw it at the steps' size; with a layer, the "
            "URL's or the endpoint's watermark, it is drawn, in the format `f-auto` picks under `f-auto` or "
            "`auto_format`, else as PNG. It goes out as `image/svg+xml` "
            "with `Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; sandbox`: opened "
            "as a page, its scripts never run nor does it load anything. The pictures below were asked for "
            "with a browser's `Accept` (AVIF and WebP).", (
                Example("w-200,f-auto", "coffee.jpg"),
                Example("w-200,f-webp", "coffee.jpg"),
                Example("w-200,f-png", "logo-transparent.png"),
                Example("w-200,f-jpg", "logo-transparent.png", "flattened on white"),
            )),
    Section("`pr`, `lo`, `md`, `cp`: encoding", "`pr-true`: progressive JPEG / interlaced PNG and GIF; a JPEG "
            "over 16 megapixels stays baseline, the same pixels (its scans, like the optimised tables every smaller "
            "JPEG gets, are made from the whole image held in memory: 264 MB more at 45 MP). "
            "`lo-true`: lossless WebP and AVIF, and a full-colour PNG of an indexed original: a PNG of a palette "
            "PNG (PNG-8, as pngquant makes them) or a GIF is indexed too, at most 256 colours dithered as "
            "pngquant would (a PNG-8's downscale had been made full colour, 2.5 times the size of the original), "
            "unless indexing it is over `max_cost` (~6 MP: it then is full colour) or the result is greyscale; "
            "whatever the URL draws on it (a photo layer, a shadow) is indexed with it: ask `lo-true` for every "
            "colour. "
            "Metadata (EXIF, XMP, IPTC, comments) is stripped unless `md-true`, from an animation served as it "
            "is too (its frames' encode over budget; a WebP's colour profile kept: "
            "[security.md](security.md#work-per-url)) "
            "(the EXIF orientation then says upright, since the pixels are, and so does an XMP packet's "
            "`tiff:Orientation`, which some tools read first, in UTF-8, UTF-16 or UTF-32; a JPEG keeps an XMP packet "
            "of up to 60 KB, libvips' bound within the 64 KB of a JPEG segment: a larger one is dropped, as libvips "
            "writes no extended XMP; PNG, WebP and AVIF keep it up to 1 MB; a field over 1 MB, an XMP packet, IPTC, "
            "EXIF or a PNG's text, is left out: a PNG of 221 kB had carried 45 MB of compressed XMP into each of its "
            "outputs; and a PNG's text past 1 MB, summed, is not read at all, nor a profile past 4 MB; IPTC goes "
            "into JPEG outputs alone, the one format libvips writes it in: keep a photo's credit and copyright in "
            "its EXIF or XMP too; a camera's EXIF thumbnail is never kept: the whole uncropped picture as stored, "
            "unturned); "
            "`md-copyright`, not in ImageKit's grammar (Cloudinary's `fl_keep_attribution`), keeps the EXIF Copyright "
            "and Artist fields and nothing else (not a camera's EXIF thumbnail: the whole uncropped picture). Colours "
            "are converted to sRGB and the ICC profile dropped unless `cp-true`, which keeps the original's profile "
            "and pixel values (except in GIF, which holds no profile: its colours are converted to sRGB whatever `cp`; "
            "nor when the profile's header gives another length than its own, as some writers pad it or cut it short: "
            "libpng refuses it, and a browser ignores or misreads it; one that cannot be read at all counts as none, "
            "its values taken as sRGB's). Under `cp-true` the colours a URL names (`bg`, borders, text, colour blocks) "
            "and image layers are drawn with their sRGB values into the original's colour space: on a Display P3 or "
            "Adobe RGB original they show more saturated than asked; `e-grayscale` greys the colours seen, its "
            "output in sRGB without a profile. AVIF effort "
            "comes from the config (`[defaults] avif_effort`).", (
                Example("w-200,pr-true", "coffee.jpg"),
                Example("w-200,f-webp,lo-true", "logo-transparent.png"),
            )),
    Section("`n`: named transformations", "`n-<name>` expands to a transformation defined in the node's "
            "config (`[named_transformations]`), here `thumb = \"w-200,h-200,c-at_max\"`. Other "
            "parameters in the same step override the definition's. An unknown name is a 400. An "
            "endpoint with `named_only = true` accepts nothing else, one name at a time (but from URLs "
            "signed with its `private_key`: see [signed-urls.md](signed-urls.md)). The expansion is the cache key: "
            "`n-thumb` and `w-200,h-200,c-at_max` are one entry. Leaving ImageKit: its upload and list "
            "APIs answer every file with a `thumbnailUrl` in its own named transformation, "
            "`tr:n-ik_ml_thumbnail/…`, which applications often store; ImageKit documents no definition "
            "for it, so the node has none: define `ik_ml_thumbnail` (and your dashboard's names) in "
            "`[named_transformations]`, else those URLs are a 400.", (
                Example("n-thumb", "coffee.jpg"),
                Example("n-thumb,rt-90", "coffee.jpg"),
            )),
    Section("`di`: default image", "`di-<path>` with `/` written as `@@` (`di-placeholders@@missing.png`): "
            "served, with the same transformation, when no origin has the requested path. A default "
            "image that is itself missing is a 404. What it makes stands in for `[cache] not_found_ttl` only "
            "(also its `Cache-Control: public, max-age=60` by default), then the real image is served once it "
            "exists. Shown: `/tr:w-160,di-logo-transparent.png/no-such-file.jpg`.", (
                Example("w-160", "logo-transparent.png", "what a request for a missing file returns"),
            )),
    Section("`orig`: the original bytes", "`orig-true` serves the stored file untouched: no resize, no "
            "metadata stripping, no format change; every other parameter is ignored, `f-auto`, "
            "`auto_format`, `w-auto` and `dpr-auto` included (one cache entry, no `Vary`). Any original the node "
            "reads is served so, with its own type: a TIFF as `image/tiff`, an Ultra HDR JPEG (with its gain map) "
            "as `image/jpeg`, an SVG (with `[limits] allow_svg`) as `image/svg+xml`. Not on an endpoint with a "
            "`watermark` ([configuration.md](configuration.md#endpoints)): "
            "there `orig-true` is the URL without it, the original at its size with the watermark drawn, since "
            "the untouched file would be the image without its watermark.", ()),
    Section("Overlays", OVERLAYS, (
                Example("w-300,l-image,i-logo-transparent.png,w-70,lx-N10,ly-N10,l-end", "coffee.jpg",
                        "a logo 10 px from the bottom-right corner"),
                Example("w-300,l-image,i-chelsea.jpg,w-90,h-90,r-max,lx-10,ly-10,l-end", "coffee.jpg",
                        "the layer's own steps: a round thumbnail"),
                Example("w-300,l-image,i-logo-transparent.png,w-120,lx-220,ly-110,rt-30,l-end", "chelsea.jpg",
                        "partly off the image: clipped"),
                Example("w-300,l-image,i-ik_canvas,bg-000000,al-6,h-44,lfo-bottom,l-end,"
                        "l-text,i-Fresh%20coffee,fs-26,co-FFFFFF,lx-12,ly-N8,l-end", "coffee.jpg",
                        "a caption bar: a canvas and a text"),
                Example("w-300,l-text,i-Text%20wraps%20at%20the%20layer%27s%20width,fs-22,w-150,ia-left,co-FFFFFF,"
                        "bg-1E293B,pa-8_12,tg-b,lfo-top_left,l-end", "chelsea.jpg", "w, ia, pa, bg, tg"),
                Example("w-300,l-text,i-Espresso,fs-44,co-FFFFFF,fol-2_000000,fsh-00000099_4,lfo-top,ly-12,l-end",
                        "coffee.jpg", "fol (outline), fsh (shadow)"),
                Example("w-300,l-image,i-ik_canvas,bg-FF9900,lm-multiply,l-end", "chelsea.jpg",
                        "lm-multiply: an orange tint"),
                Example("w-240,l-image,i-logo-transparent.png,w-150,lm-cutter,l-end,f-webp", "coffee.jpg",
                        "lm-cutter: the base in the logo's shape"),
                Example("w-240,l-image,i-logo-transparent.png,w-150,lm-cutout,l-end,f-webp", "coffee.jpg",
                        "lm-cutout: the logo's shape punched out"),
            )),
    Section("ImageKit SDK parity", PARITY, ()),
)


def _overlays(transformation) -> dict[str, bytes]:
    """The image layers' originals, from the samples (as the node gets them from the origins)."""
    return {layer.input: (SAMPLES / layer.input).read_bytes()
            for step in transformation.steps for layer in step.layers if layer.fetches}


def slug(transformation: str, sample: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", f"{Path(sample).stem}-{transformation}").strip("_")


def render(example: Example) -> tuple[str, str]:
    """Render one example; (picture file name, caption)."""
    transformation = parse_transformation(unquote(example.transformation), named=NAMED)  # as the router decodes
    if transformation.client_hints:
        transformation = negotiate(transformation, dict(example.headers), Limits().max_output_side).transformation
    planned, _ = plan_format(transformation.output_format, example.sample, ACCEPT)
    rendered = render_image((SAMPLES / example.sample).read_bytes(), transformation, planned, Defaults(), Limits(),
                            _overlays(transformation))
    hints = "".join(f"_{name}_{value}" for name, value in example.headers)
    name = f"{slug(example.transformation + hints, example.sample)}.{rendered.format}"
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
            url += "".join(f"`<br>`{name}: {value}" for name, value in example.headers)
            lines.append(f"| `{url}`<br>{caption} | ![{example.transformation}](img/transformations/{picture}) |")
        lines.append("")
    return "\n".join(lines)


HEADER = """# Transformations

<!-- Generated by scripts/make_transformation_docs.py from edge/samples/: edit the script, not this file. -->

A transformation goes in the first path segment after the endpoint (`/tr:w-300,h-200/photo.jpg`) or
in the query (`/photo.jpg?tr=w-300,h-200`); both together are chained, path first. Parameters are
separated by `,`, steps by `:`. Each picture below is what the node returns for the URL beside it
(rendered by the node's own code, `edge.transform.render`).

Query parameters besides `tr` (given once: more than one `tr` is a 400) and the signature's `ik-t`
and `ik-s`: `?ik-attachment=true` answers `Content-Disposition: attachment` with the file name the URL
ends in and the extension of what is sent (`photo.jpg` asked for as WebP downloads as `photo.webp`; one
that names the type sent is kept as written: `photo.JPEG`);
any other parameter changes nothing (a cache buster for browsers and CDNs in front). Conditional
requests use the `ETag`: `If-None-Match` answers 304; `If-Modified-Since` alone is not evaluated (the
`Last-Modified` is the original's, and an output can change while it does not, with the config's
quality, say), so it gets the full answer.

Errors: an unknown key, a malformed or out-of-range value is a **400** whose body names the parameter
(`invalid transformation: w-abc: expected a number`; a number has at most 9 digits before and after its
point). A source over the limits (40 MB, 100 megapixels,
100 frames; decided from the header, before decoding) is a 400 `source too large`; an output over 8192
px a side (WebP: at most 16383 whatever the config, AVIF 16384; `f-auto`, or a format the URL does not
name, then falls back to one that reaches it), after any step of a chain, is a 400 `output too large`, and so
is an animation whose frames at the size of any step add up to more than 100 megapixels. A
transformation has at most 10 chained steps and 2000 characters (path and query form together); more
is a 400. A transformation estimated to cost more than `[limits] max_cost` (200 megapixels of work:
output pixels weighted by its operations, e.g. `w-8192,h-8192,c-force,bl-100` is about 291, and the
encode where it costs more than JPEG's: `f-gif` on a 12 MP photo is about 264, `w-8192,f-webp` 350) is
a 400 `transformation too costly: …`, before the original is fetched when the URL alone says so, else
once its header is read; a format chosen by `f-auto` falls back to WebP or JPEG/PNG instead, one the URL does
not name (its extension's, the original's own) to WebP for an AVIF, else JPEG/PNG (an animation
over budget in every animated format the browser takes: the original's bytes where it takes their format and the
URL has no step, else its first frame: `/tr:w-400,f-auto/anim.gif` of 100 frames is a still); see
[security.md](security.md#work-per-url). A render still running after
`[limits] render_timeout` (20 s) is stopped and answered **503** `rendering took too long`. A source
that is not an image, is in a format the node does not read (it reads JPEG, Ultra HDR JPEG, PNG, WebP,
AVIF/HEIF, HEIC, GIF, TIFF, and SVG only with `[limits] allow_svg`; libvips' other loaders are blocked, see
[security.md](security.md#originals-the-decoders-that-run)), or fails to decode (truncated, corrupt, a
JPEG whose data ends before its last row: see [security.md](security.md#originals-the-decoders-that-run)) is a
**422**; only the URL's own original is answered so: a layer's original that is not an image or fails to
decode is a 400 naming its `i-` (see [Overlays](#overlays)). Any size of JPEG is served, down to 1×1
px and 20000×1 strips; a URL with no step (none, or only `f-`, `q-` and such output options) of an original
larger than `[limits] max_output_side` (8192 px) is that original fitted within it (not on an endpoint with a
watermark, itself a step), as `w-8192,h-8192,c-at_max`
would make it (a phone's 16000 px panorama linked as it is had been a 400), where a size the URL asks for over
it is a 400. A floating-point TIFF is read as libvips reads one, linear light from 0 to 1
(scRGB, as HDR tools write 32-bit files): 0.214 is sRGB's mid-grey 128, 1 and above white, so a float
TIFF holding 0–255 values comes out white.

Every parameter works at every size: rotations, vertical flips, a shadow shifted up or down, a region
(`e-region`) and the other operations that read an image out of order decode the step's already shrunk image to memory
first (a 12 MP photo turned at full size holds its 36 MB of pixels while it is turned). `t` (trim)
and `fo-auto` search a copy reduced to about one megapixel on larger images: a trim then keeps at
most a few pixels of border (2 on a 12 MP photo, 9 on a 100 MP one), never cutting into the picture.

The cache key is the canonical form of the transformation: parameters sorted, defaults dropped,
synonyms folded (`f-jpeg` → `f-jpg`, `rt-N90` → `rt-270`, `bg-red` → `bg-FF0000`), named
transformations expanded, output parameters written once: these spellings of one transformation share
one cache entry. Parameters that change nothing for a given image are not folded (a `bg` with nothing to
fill, `e-hue-0`, `q-80` when that is the configured quality, `f-jpg` of a JPEG, a step repeated, two
fractions that round to one width): each is an entry and a render of its own, as each new width is
(`max_cost` and the disk's LRU bound them alike). A parameter given twice in one step counts once, the last one (`w-300,w-200` is
`w-200`). `w-auto` and `dpr-auto` add the client hints' rounded values to the key.

Inputs: the EXIF orientation is always applied (all eight); CMYK, 16-bit, greyscale and ICC-tagged
sources come out as 8-bit sRGB; transparency is kept where the output format has it (GIF shows a pixel
or not: a partly transparent one, as with `o-50` or soft edges, is flattened onto the last `bg` or
white as in JPEG, and only wholly transparent pixels stay so); CMYK always becomes sRGB, `cp-true`
included (its profile is not kept); animated GIF and
WebP stay animated when the output is GIF, WebP or `f-auto` (each frame gets the same steps, and the first frame
decides for all where `fo-auto` and `fo-face` cut and what `bg-dominant` and `cr`'s dominant colour are), and become
their first frame otherwise (or the frame `pg-N` names); the pages of a multi-page TIFF (scans, a
pyramid's levels) and a HEIF's several images are no animation: the first page in every format. What libvips does
not read is not served as browsers show it: an animated PNG (APNG) is its default image, still (one that is no frame
of the animation included); an animated AVIF is a 422 naming it; an HDR AVIF (PQ or HLG) is read as SDR values,
without tone mapping; a PNG's `gAMA` is ignored (its `iCCP` or `sRGB` is not).
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
