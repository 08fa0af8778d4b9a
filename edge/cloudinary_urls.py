"""Cloudinary delivery URLs on a `url_style = "cloudinary"` endpoint, read into the node's own terms.

    /<cloud>/image/<type>/[s--SIGNATURE--/]<component>/…/[v<version>/]<public_id>[.<ext>]

`read` turns such a path into what every endpoint's request carries: the origin path
`image/<type>/[v<version>/]<public_id>[.<ext>]` (what a `cloudinary_backup` origin with
`folder = "/res/<cloud>/"` resolves) and a transformation in the node's grammar, so the canonical form,
the cache key, the limits and the renderer are the ones of every other URL. Each component is one
chained step (two for `c_lpad`). Every word is a row of `WORDS`, the table `docs/leaving-cloudinary.md`
prints; a word that is not there, or a value the node cannot honour, is a 400 naming it — a silently
ignored word would serve a wrong image, cached for a year.

A URL without components serves the stored original's bytes (`orig-true`), converted only when its
extension names another format (`Delivery.original_as`); an endpoint's watermark makes it a render
(`Pipeline._transformation`).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import math
import re
from urllib.parse import unquote
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from .errors import BadRequest, EdgeError, InvalidTransformation, NothingToServe, SignatureRefused, UnprocessableSource
from .transform.colours import opacity_percent
from .transform.expressions import EXPRESSION_OPERATORS
from .transform.formats import EXTENSIONS, IMAGE_EXTENSIONS, READ_FORMATS
from .transform.hints import WIDTH_STEP
from .transform.layers import dot_segment
from .transform.options import (MAX_PIXELS, MAX_TEXT, PARAMS, NeedsExtra, Transformation, parse_condition,
                                parse_transformation)

_VERSION = re.compile(r"v[0-9]{1,12}")
_SIGNATURE = re.compile(r"s--([A-Za-z0-9_-]{8}|[A-Za-z0-9_-]{32})--")
_CLOUD_FOLDER = re.compile(r"res/([A-Za-z0-9_-]+)/")
_INTEGER = re.compile(r"-?[0-9]{1,6}")
#: `w_auto:100:<fallback width>`: the client hint's width, rounded up to 100 px (Cloudinary's default step)
_AUTO_WIDTH = re.compile(rf"auto:{WIDTH_STEP}(?::([0-9]{{1,6}}))?")
#: `x_0.5`: a position as a fraction of the input's side (what crop tools that store percentages write)
_FRACTION = re.compile(r"0?\.[0-9]{1,9}")
#: the sizes Cloudinary's arithmetic reads (`w_iw_div_2`, `x_w_sub_100`) as the node's expressions name them: the
#: original's (`iw`), and the image's as the component starts (`w`, the node's `cw`)
_ARITHMETIC_VARIABLES = {"iw": "iw", "ih": "ih", "iar": "iar", "w": "cw", "h": "ch", "ar": "car"}
#: delivery types served; `private` and `authenticated` only on an endpoint that takes signed URLs only
PUBLIC_TYPES = ("upload",)
SIGNED_TYPES = ("private", "authenticated")
#: Cloudinary's other resource types (and their SEO forms): not served, and no root path either
OTHER_RESOURCES = ("video", "raw", "videos", "files")
#: the segments that stand for `image/upload`: the SEO suffix form, and the SDKs' `shorten` option
SHORT_FORMS = ("images", "iu")


@dataclass(frozen=True)
class Word:
    """One row of the mapping: a Cloudinary word (or family), what the node does, and the meaning
    Cloudinary documents for it."""

    cloudinary: str
    ours: str
    meaning: str


# --- the mapping: the data tables the translation reads, and the rows the docs print ---------------

#: `c_<mode>` → (our params when the box is fully given, our params with only one side, meaning)
CROP_MODES: dict[str, tuple[str, str, str]] = {
    "scale": ("c-force", "",
              "exactly w×h, stretched; with one side, the other follows the aspect ratio (the default without `c_`)"),
    "fit": ("c-at_max_enlarge", "", "fit inside w×h, keeping the ratio; may upscale"),
    "limit": ("c-at_max", "c-at_max", "fit inside w×h, keeping the ratio; never upscales"),
    "mfit": ("c-enlarge_to_fit", "c-enlarge_to_fit",
             "fit inside w×h only if the image is smaller (upscale); a larger image is unchanged"),
    "fill": ("c-maintain_ratio", "", "exactly w×h: scale to cover, crop by gravity (with `g_face`/`g_faces`: "
                                     "the faces in the middle, no closer, `ffr-false`)"),
    "lfill": ("c-maintain_ratio_no_enlarge", "c-at_max",
              "like `fill`, never upscales: an image smaller than the box keeps its size"),
    "pad": ("cm-pad_resize", "", "fit inside w×h, pad to exactly w×h with `b_` (gravity places the image)"),
    "lpad": ("cm-pad_extract", "c-at_max",
             "like `pad`, never upscales: a smaller image is padded to w×h at its own size"),
    "crop": ("cm-extract_within", "cm-extract_within",
             "cut a w×h region at `x_`,`y_` (top-left) or by gravity, no scaling; the part of it inside the image"),
    "thumb": ("c-maintain_ratio,fo-auto", "",
              "exactly w×h: scale to cover, crop around the subject (gravity `auto` unless `g_` says otherwise)"),
    # Cloudinary: "the best crop based on the gravity and specified dimensions", "less aggressive than thumb"
    # and "more focus than fill", downscaled or upscaled to w×h; how much tighter than fill it crops is its
    # own analysis and undocumented: the largest crop of the box's ratio around the gravity's focus, as `thumb`
    "auto": ("c-maintain_ratio", "",
             "exactly w×h: scale to cover, crop around `g_` (required; `g_auto`: the most interesting part), "
             "no tighter than `fill`"),
}
#: the modes that cut the image to the box (so `ar_` alone means: the largest part of that ratio)
_CROPPING = ("fill", "lfill", "crop", "thumb", "auto")
GRAVITIES = {
    "north": "top", "south": "bottom", "east": "right", "west": "left", "north_east": "top_right",
    "north_west": "top_left", "south_east": "bottom_right", "south_west": "bottom_left", "center": "center",
    "auto": "auto",
    # without a face, `g_face` "defaults to north gravity"; `:center` and `:auto` are "Same as face gravity, but
    # defaults to" centre, auto: the node's `fof-` (`fo-face` alone falls back to `auto`)
    "face": "face,fof-top", "faces": "face,fof-top", "face:center": "face,fof-center",
    "faces:center": "face,fof-center", "face:auto": "face", "faces:auto": "face",
}


def _faces(gravity: str | None) -> bool:
    """Whether a `g_` value frames faces (`g_face`, `g_faces:center`…)."""
    return GRAVITIES.get(gravity or "", "").startswith("face")
#: `q_auto[:level]` → a fixed quality (content-aware tuning is Cloudinary's; these are its levels' usual results)
QUALITY_LEVELS = {"auto": 70, "auto:low": 50, "auto:eco": 60, "auto:good": 70, "auto:best": 86}
#: `q_auto:<level>:sensitive` "raises the quality level slightly": `good:sensitive` is "above good, but not as good
#: as best", and `q_auto:sensitive` is `q_auto:good:sensitive`: half-way to the next level's (to 100 above best)
_RISING = [QUALITY_LEVELS[f"auto:{level}"] for level in ("low", "eco", "good", "best")] + [100]
SENSITIVE_LEVELS = {f"auto:{level}:sensitive": (quality + above) // 2
                    for level, quality, above in zip(("low", "eco", "good", "best"), _RISING, _RISING[1:])}
SENSITIVE_LEVELS["auto:sensitive"] = SENSITIVE_LEVELS["auto:good:sensitive"]
#: `f_auto:image`: "the desired media type when no file extension is included" (image, video, animated)
FORMATS = {"auto": "auto", "auto:image": "auto", "jpg": "jpg", "jpeg": "jpg", "jpe": "jpg", "png": "png",
           "webp": "webp", "avif": "avif", "gif": "gif"}
#: `b_auto` modes: "the predominant color while taking only the image border pixels into account" (the default)
#: or "all pixels in the image"
AUTO_BACKGROUNDS = {"auto": "dominant_border", "auto:border": "dominant_border", "auto:predominant": "dominant"}
#: Cloudinary's blur and sharpen strengths run 1–2000 (default 100); ours 1–100
_STRENGTH_SCALE = 20
#: Cloudinary's effects with a level → the node's own parameter, the level's range and Cloudinary's default
LEVELS = {"brightness": ("e-brightness", -99, 100, 80), "saturation": ("e-saturation", -100, 100, 80),
          "sepia": ("e-sepia", 1, 100, 80), "vibrance": ("e-vibrance", -100, 100, 20),
          "hue": ("e-hue", -100, 100, 80), "red": ("e-red", -100, 100, 0), "green": ("e-green", -100, 100, 0),
          "blue": ("e-blue", -100, 100, 0),
          "blackwhite": ("e-blackwhite", 0, 100, 50), "pixelate": ("e-pixelate", 1, 200, 5),
          "gamma": ("e-gamma", -50, 150, 0), "brightness_hsb": ("e-brightnesshsb", -99, 100, 80),
          "vignette": ("e-vignette", 0, 100, 20), "opacity_threshold": ("e-opacitythreshold", 0, 100, 50)}
_LEVEL_MEANINGS = {
    "brightness": "brightness: each colour value times 1 + N/100 (CSS's `brightness()`)",
    "saturation": "saturation: CSS's `saturate(1 + N/100)`; −100 is greyscale",
    "sepia": "sepia: CSS's `sepia(N/100)`",
    "vibrance": "vibrance: CSS's `saturate()` by up to 1 + N/100, the most on dull colours, none on pure ones",
    "hue": "hue: CSS's `hue-rotate()` by N × 1.8° (ImageMagick's `-modulate` hue 100 + N)",
    **{band: f"the {band} band's values times 1 + N/100 (the default, 0, changes nothing)"
       for band in ("red", "green", "blue")},
    "blackwhite": "black and white: white where the grey level is above N % of white",
    "pixelate": "pixelate: squares of N×N px, each the average of its pixels",
    "gamma": "gamma: each value (0–1) to the power 1 / (1 + N/100), as ImageMagick's `-gamma`; above 0 lighter",
    "brightness_hsb": "brightness in HSB: each pixel's values times 1 + N/100, no further than its largest "
                      "reaches white (hue and saturation kept)",
    "vignette": "vignette: each value times 1 − N/100 × d², d the distance from the centre on an ellipse the "
                "image's shape (1 at the corners)",
    "opacity_threshold": "a pixel less opaque than N % made transparent, the others opaque",
}
#: `e_contrast[:N]` (−100–100, default 0: no change) is a sigmoidal contrast; with `;type_linear`, the level
#: (1–200, default 100: no change) scales each value's distance from mid grey
CONTRAST_TYPES = {"sigmoidal": ("e-sigmoidcontrast", -100, 100, 0), "linear": ("e-linearcontrast", 1, 200, 100)}
#: `e_colorize`'s colour when the component has no `co_`
COLORIZE_COLOUR = "gray"
#: effects kept to the rectangle of the component's `x_`, `y_`, `w_`, `h_` (without them: the whole image)
REGION_EFFECTS = ("blur_region", "pixelate_region")
#: Cloudinary's automatic adjustments, each with a blend (0–100: how much of the result over the original)
AUTO_ADJUSTMENTS = {"auto_contrast": "e-contrast", "auto_color": "e-autocolor", "auto_brightness": "e-autobrightness"}
#: `e_unsharp_mask:N` (1–2000, default 100) is `e-usm` with amount N/100 (the node's `e-usm` at 100)
_UNSHARP_MASK = "e-usm-2-1-{amount:g}-0.05"
FLAGS = {"progressive": "pr-true", "keep_iptc": "md-true", "keep_attribution": "md-copyright"}
_FLAG_MEANINGS = {"progressive": "progressive JPEG",
                  "keep_iptc": "keep all metadata (IPTC in JPEG outputs alone: libvips writes it in no other format)",
                  "keep_attribution": "keep only the copyright-related metadata (EXIF Copyright and Artist)"}
#: flags that ask for what the node always does, accepted so that URLs carrying them keep working
UNCHANGING_FLAGS = {
    "any_format": "with `f_auto`, any format may be chosen: the node's `f-auto` chooses among all it writes",
    "preserve_transparency": "with `f_auto`, a transparent image stays transparent: the node's `f-auto` never "
                             "chooses a format without alpha for one",
    "strip_profile": "no ICC profile in the output: the node converts to sRGB and embeds none",
    "force_strip": "no metadata in the output: the node strips it (unless `fl_keep_iptc`)",
}
#: the flag that keeps the side a `c_scale` is not given (Cloudinary's "Scale in one dimension ignoring the aspect
#: ratio")
IGNORE_ASPECT_RATIO = "ignore_aspect_ratio"
#: `fl_progressive:<mode>`: Cloudinary's `semi` and `steep` tune a progressive JPEG's scans (fewer of them, or a
#: preview then one pass), which libvips does not choose; `none`: "Do not deliver a progressive image"
PROGRESSIVE_MODES = {"semi": "pr-true", "steep": "pr-true", "none": ""}
#: `cs_<space>`s that ask for what the node always does: an sRGB image (`tinysrgb`: with Facebook's truncated
#: sRGB profile embedded, where the node embeds none; `no_cmyk`: a CMYK original converted to sRGB)
COLOUR_SPACES = ("srgb", "tinysrgb", "no_cmyk")
#: `fl_lossy` makes an animated GIF lossy and an opaque PNG a JPEG ("Use with f_gif | f_png"): the output formats
#: where it changes nothing, since `f_auto` picks a lossy format or a PNG with transparency, and the others are lossy
LOSSY_OUTPUTS = ("auto", "jpg", "webp", "avif")

WORDS: tuple[Word, ...] = (
    Word("`w_N`, `h_N`", "`w-N`, `h-N`",
         "width, height in pixels; a decimal is a multiple of the image at this step: below 1 a fraction "
         "(`w_0.5`), from 1.0 `w-cw_mul_N`, `h-ch_mul_N` (`w_1.5`; `w_1.0`: as it is)"),
    Word("`w_iw_div_2`, `h_w_mul_0.5_add_10`, `x_iw_sub_300`", "`w-iw_div_2`, `h-cw_mul_0.5_add_10`, `x-iw_sub_300`",
         "arithmetic in `w_`, `h_` and a `c_crop` region's `x_`, `y_` (what the SDKs write for `iw / 2`): numbers and "
         "`iw`, `ih`, `iar` (the original's sides and ratio), `w`, `h`, `ar` (the image's where the component stands) "
         "with `add`, `sub`, `mul`, `div`, `mod`, `pow`, multiplication before addition; in an overlay's words `iw` "
         "is the overlay's own original. User-defined variables (`$name`) are a 400"),
    Word("`ar_16:9`, `ar_1.5`", "`ar-16-9`, `ar-1.5-1`",
         "aspect ratio, with one of w/h (alone with `c_fill`, `c_lfill`, `c_crop`, `c_thumb`, `c_auto`: "
         "the largest part of that ratio)"),
    *(Word(f"`c_{mode}`", ("`c-at_max` step, then " if mode == "lpad" else "") + f"`{ours}`"
           + (f" (one side: `{one}`)" if one and one != ours else ""), meaning)
      for mode, (ours, one, meaning) in CROP_MODES.items()),
    Word(", ".join(f"`g_{g}`" for g in GRAVITIES),
         ", ".join(f"`fo-{fo}`" for fo in GRAVITIES.values()),
         "which part a crop keeps, or where `pad` puts the image; `face`/`faces` frame the faces a detector "
         "finds (the `[faces]` extra), else the top (`g_face`, `g_faces`), the centre (`:center`) or the most "
         "interesting part (`:auto`)"),
    Word("`x_N`, `y_N`, `x_0.5`", "`x-N`, `y-N`, `x-cw_mul_0.5`",
         "top-left corner of a `c_crop` region, in pixels or (a decimal below 1) a fraction of the input's "
         "width, height; with `g_face`/`g_faces` no effect (the faces stay centred)"),
    Word("`z_N`", "`z-N`", "zoom into the crop's focus; below 1 only with `g_face`/`g_faces`: more around the faces"),
    Word("`q_N`", "`q-N`", "quality 1–100"),
    *(Word(f"`q_{level}`", f"`q-{quality}`", "automatic quality, as a fixed level")
      for level, quality in QUALITY_LEVELS.items()),
    Word(", ".join(f"`q_{level}`" for level in SENSITIVE_LEVELS),
         ", ".join(f"`q-{quality}`" for quality in SENSITIVE_LEVELS.values()),
         "a level raised \"slightly\": half-way to the next level's (`best`: to 100); `q_auto:sensitive` is "
         "`q_auto:good:sensitive`"),
    Word(", ".join(f"`f_{f}`" for f in FORMATS), ", ".join(f"`f-{f}`" for f in FORMATS.values()),
         "output format; `f_auto` (`:image`, the media type, changes nothing on an image): AVIF or WebP as the "
         "browser's `Accept` allows, else JPEG (PNG with transparency)"),
    Word("`.jpg` `.jpeg` `.jpe` `.png` `.webp` `.avif` `.gif` extension", "output format",
         "the extension names the output format (over `[limits] max_cost`, `.gif` and `.avif` fall back, as "
         "below); none: the stored format"),
    Word("`dpr_N` (0.1–5), `dpr_auto`", "`w-`, `h-` times N; `dpr-N`, `dpr-auto`",
         "multiplies w and h of the URL: of its own component, or, in a component of its own "
         "(`c_fill,w_300/dpr_2.0`, as the SDKs write it), of every component with a size in pixels; without any "
         "size the image keeps its size; `auto`: the `Sec-CH-DPR` client hint"),
    Word(f"`w_auto`, `w_auto:{WIDTH_STEP}`, `w_auto:{WIDTH_STEP}:N`", "`w-auto`, `w-auto`, `w-auto,wf-N`",
         f"the width from the `Sec-CH-Width` client hint, rounded up to {WIDTH_STEP} px (Cloudinary's default "
         "rounding step; other steps are not supported); without the hint, N px (the fallback width) or the "
         "image's own width"),
    Word("`a_N`, `a_-N`", "`rt-N` (N modulo 360, clockwise)",
         "rotate clockwise (negative: counter-clockwise); corners filled with `b_`"),
    Word("`a_hflip`, `a_vflip`", "`fl-h`, `fl-v`", "mirror horizontally, vertically"),
    Word("`a_hflip.90`", "`rt-270,fl-h`", "several of these modes joined with `.`, applied in turn"),
    Word("`a_exif`, `a_auto`", "(always done)", "rotate by the EXIF orientation, which the node always does"),
    Word("`a_auto_right`, `a_auto_left`", "a step `if-ar_lt_1,rt-90,if-end` (`ar_gt_1`, `rt-270`…) before it",
         "turn the image a quarter clockwise (anticlockwise) first when its orientation is not the one its "
         "component's `w_`×`h_` (or `ar_`) asks for: a portrait image into a landscape box, or the reverse; "
         "a square box turns nothing. Without both sizes in pixels or `ar_`, a 400"),
    Word("`r_N`, `r_max`, `r_N:N[:N[:N]]`", "`r-N`, `r-max`, `r-N_N_N_N`",
         "rounded corners; `max`: a circle or ellipse; per corner as CSS writes them (top-left first, clockwise)"),
    Word("`e_blur`, `e_blur:N` (1–2000)", f"`bl-N/{_STRENGTH_SCALE}` (default `bl-5`)", "gaussian blur"),
    Word("`e_blur_region`, `e_blur_region:N` (1–2000), with `x_`, `y_`, `w_`, `h_`",
         f"`bl-N/{_STRENGTH_SCALE},e-region-x_y_w_h` (default `bl-5`)",
         "gaussian blur of the rectangle `x_`, `y_`, `w_`, `h_` (whole pixels; a side not given: to the edge; "
         "none: the whole image) alone; with `g_faces` (or `g_face`) instead, of the faces: `e-blurfaces`"),
    Word("`e_pixelate_region`, `e_pixelate_region:N` (1–200), with `x_`, `y_`, `w_`, `h_`",
         "`e-pixelate-N,e-region-x_y_w_h` (default `e-pixelate-5`)",
         "that rectangle alone pixelated in squares of N×N px; with `g_faces` instead, the faces: `e-pixelatefaces`"),
    Word("`e_blur_faces`, `e_blur_faces:N` (1–2000)", f"`e-blurfaces-N/{_STRENGTH_SCALE}` (default `e-blurfaces-25`)",
         "gaussian blur of the faces alone (the `[faces]` extra's detector: a face it misses stays as it is; "
         "without the extra, a 400 naming it)"),
    Word("`e_pixelate_faces`, `e_pixelate_faces:N` (1–200)", "`e-pixelatefaces-N` (default `e-pixelatefaces-5`)",
         "the faces alone pixelated, in squares of N×N px (the `[faces]` extra's detector)"),
    Word("`e_sharpen`, `e_sharpen:N` (1–2000)", f"`e-sharpen-N/{_STRENGTH_SCALE}` (default `e-sharpen-5`)",
         "sharpen"),
    Word("`e_unsharp_mask`, `e_unsharp_mask:N` (1–2000)", "`e-usm-2-1-N/100-0.05` (default `e-usm`)",
         "unsharp mask"),
    Word("`e_grayscale`", "`e-grayscale`", "greyscale"),
    *(Word(f"`e_{name}`, `e_{name}:N` ({low}–{high})", f"`{ours}-N` (default `{ours}-{default}`)",
           _LEVEL_MEANINGS[name]) for name, (ours, low, high, default) in LEVELS.items()),
    Word("`e_negate`", "`e-negate`", "negative: each colour value 255 − itself"),
    Word("`e_contrast`, `e_contrast:N` (-100–100)", "(nothing), `e-sigmoidcontrast-N`",
         "ImageMagick's `-sigmoidal-contrast (N/10)x50%` (below 0 its inverse, which flattens); the default, 0, "
         "changes nothing"),
    Word("`e_contrast:level_N;type_linear` (1–200)", "`e-linearcontrast-N`",
         "CSS's `contrast(N/100)`: each value's distance from mid grey times N/100 (the default, 100, changes "
         "nothing); `;type_sigmoidal` is the above"),
    Word("`e_colorize`, `e_colorize:N` (0–100), with `co_<colour>`", "`e-colorize-co-<colour>_in-N` (default 100, "
         f"{COLORIZE_COLOUR})", "ImageMagick's `-colorize`: each colour value (1 − N/100) × itself + N/100 × the "
         "colour's"),
    Word("`e_distort:x1:y1:x2:y2:x3:y3:x4:y4` (pixels), `e_distort:arc:D`", "`e-distort-p-x1_y1_…`, "
         "`e-distort-a-D`", "the corners moved there (clockwise from the top left), or the image bent into an "
         "arc of D degrees (above 0 a frown, below a smile); Cloudinary says the image's dimensions change, not "
         "how: the node's canvas is the image's, grown to hold the corners (so not shrunk to them), and the "
         "smallest that holds the arc ([transformations.md](transformations.md))"),
    Word("`e_replace_color:<to>[:T[:<from>]]` (T 0–100, default 50; from: the dominant colour)",
         "`cr-<to>[_T[_<from>]]`", "the colours near `from` moved to `to`'s, each keeping its shade (the node's "
         "formula: [transformations.md](transformations.md))"),
    Word("`e_auto_contrast`, `e_auto_contrast:B` (0–100)", "`e-contrast`, `e-contrast-B`",
         "contrast stretch, blended B % over the original (Cloudinary's blend; default 100)"),
    Word("`e_auto_color`, `e_auto_color:B` (0–100)", "`e-autocolor`, `e-autocolor-B`",
         "each colour band stretched on its own, which takes a colour cast away; blended as above"),
    Word("`e_auto_brightness`, `e_auto_brightness:B` (0–100)", "`e-autobrightness`, `e-autobrightness-B`",
         "a gamma that brings the mean grey level to the middle; blended as above"),
    Word("`e_improve`, `e_improve:<mode>`, `e_improve:<mode>:B`, `e_improve:B`",
         "`e-autocolor-B,e-autobrightness-B`",
         "colours, contrast and brightness: both of the above; the modes `outdoor` and `indoor` adjust alike"),
    Word("`e_trim`, `e_trim:N` (1–99)", "`t-true`, `t-N`",
         "trim borders of the corner colour, tolerance N (default 10)"),
    Word("`b_rgb:RRGGBB[AA]`, `b_rgb:RGB[A]`, `b_<name>`", "`bg-RRGGBB[OO]`, `bg-<name>`",
         "background for padding, rotation corners and transparency; the hex alpha AA becomes ImageKit's "
         "opacity percent OO"),
    Word(", ".join(f"`b_{mode}`" for mode in AUTO_BACKGROUNDS),
         ", ".join(f"`bg-{bg}`" for bg in AUTO_BACKGROUNDS.values()),
         "with `c_pad`, `c_lpad`: pad in the most common colour of the image's border (`b_auto`, `b_auto:border`), "
         "of the whole image (`b_auto:predominant`)"),
    Word("`bo_Npx_solid_<colour>`", "`b-N_<colour>`", "border N px wide"),
    Word("`o_N`", "`o-N`", "opacity 0–100"),
    *(Word(f"`fl_{flag}`", f"`{ours}`", _FLAG_MEANINGS[flag]) for flag, ours in FLAGS.items()),
    Word(", ".join(f"`fl_progressive:{mode}`" for mode in PROGRESSIVE_MODES),
         ", ".join(f"`{ours}`" if ours else "(nothing)" for ours in PROGRESSIVE_MODES.values()),
         "`semi`, `steep`: a progressive JPEG, with the encoder's standard scans; `none`: not progressive"),
    Word("`fl_attachment`, `fl_attachment:<name>`", "(a header)",
         "a download: `Content-Disposition: attachment`, the file named after the public ID (or `<name>`) with "
         "the extension of the format sent, as the node's `?ik-attachment=true`; the same cached image as without"),
    Word("`fl_immutable_cache`", "(a header)",
         "`Cache-Control: …, immutable`: browsers do not revalidate the image on reload while it is fresh (not "
         "on a provisional answer: a stale copy, a default image); the same cached image as without"),
    *(Word(f"`fl_{flag}`", "(nothing)", meaning) for flag, meaning in UNCHANGING_FLAGS.items()),
    Word("`fl_ignore_aspect_ratio`", "`w-cw` or `h-ch`, `c-force`",
         "with `c_scale` (or no `c_`) and only `w_` or only `h_`: the other side stays as it is, the image stretched "
         "or squashed to the one given (`c_scale,fl_ignore_aspect_ratio,h_150` of a 4000×3000 photo: 4000×150); with "
         "another mode, `ar_` or both sides a 400"),
    Word("`fl_lossy`", "(nothing)",
         "with `f_auto` or a JPEG, WebP or AVIF output, already lossy: no change; with a PNG or GIF output "
         "(or none named) a 400"),
    Word("`l_<public_id>`, its words, `g_`, `x_`, `y_`; or `l_<public_id>` / … / `fl_layer_apply,g_,x_,y_`",
         "`l-image,i-image@@upload@@<public_id>,lx-,ly-,…,l-end`",
         "an image overlay (`:` in the public ID for folders) from the same origins, drawn on the image as the "
         "components before it made it: its own words (with `l_`, or in the components up to `fl_layer_apply`) "
         "are its steps; placed by a compass gravity (`g_center` by default) and offsets in whole pixels from "
         "that edge into the image (from the middle: right and down); `fl_relative`: its `w_`/`h_` fractions "
         "of the base. Fetched and video overlays, underlays (`u_`), other gravities and flags are a 400"),
    Word("`l_text:<font>_<size>[_<style>…]:<text>`, `co_`, `b_`, `w_` (`c_fit`), `o_`, `a_`, `e_distort`, `g_`, "
         "`x_`, `y_`", "`l-text,i-<text>,ff-<font>,fs-<size>,tg-,ia-,lh-,co-,bg-,w-,al-,rt-,e-distort-,lx-,ly-,l-end`",
         "a text overlay in the `[fonts]` entry named as the font (spaces as `_`; DejaVuSans ships with the "
         "node, others are a 400 naming `ff-`); styles `bold`, `italic`, `strikethrough`, `left`, `center`, "
         "`right`, `line_spacing_<N>`; `o_` to the nearest tenth; placed as an image overlay. Other styles "
         "(`underline`, `letter_spacing`, `stroke`) and saved text styles are a 400"),
    Word(", ".join(f"`cs_{space}`" for space in COLOUR_SPACES), "(nothing)",
         "sRGB, as the node renders every image (a CMYK or other profile converted, no profile embedded); "
         "`cs_cmyk`, `cs_keep_cmyk`, `cs_icc:<id>` and `cs_srgb:truecolor` are a 400"),
    Word("`pg_N`", "`pg-N`",
         "the N-th frame of an animated GIF or WebP, or page of a multi-page TIFF or HEIF, as a still image; "
         "ranges (`pg_2-4`), lists and PSD layer names are a 400"),
    Word("`t_<name>`, `t_<name>.<name>`", "`n-<name>`, `n-<name>:n-<name>`",
         "a named transformation, defined in the node's `[named_transformations]` in its own grammar; several, "
         "dot-separated (as the SDKs write a list of them): one after the other"),
    Word("`if_<condition>,<words>`; `if_<condition>` / … [/ `if_else[,<words>]` / …] / `if_end`",
         "`if-<condition>,…[,if-else,…],if-end`",
         "a condition on the image as it is at that point (`w`, `h`, `ar`, and `fc`, the faces the `[faces]` "
         "extra's detector finds in it) or as it came (`iw`, `ih`, `iar`), compared by `eq`, `ne`, `gt`, `gte`, "
         "`lt`, `lte` with a number or a ratio (`3:4`), joined by `_and_` (which binds first) or `_or_`: in the "
         "first form it applies to that component's words, in the second to the components up to `if_else` or "
         "`if_end` (whose first words may stand beside the condition, as the SDKs write them: a block when an "
         "`if_else` or `if_end` follows before another condition). Not nested; no overlays, formats or qualities "
         "within; pages, tags, metadata and variables are a 400"),
    Word("`d_<public_id>`", "`di-image@@upload@@<public_id>`",
         "default image (`:` in the public ID for folders) when the asset is missing"),
    Word("`s--XXXXXXXX--`", "signature check",
         "signed URL, verified with the endpoint's `private_key` (the account's API secret)"),
)

SUPPORTED_KEYS = frozenset({"w", "h", "ar", "c", "g", "x", "y", "z", "q", "f", "dpr", "a", "r", "e", "b", "bo",
                            "o", "fl", "t", "d", "pg", "cs", "l", "co"})
#: the other keys the Cloudinary SDKs emit (layers, conditions, variables, colour, pages, video…): a
#: segment made of them is a component — a 400 naming the word — never a folder of the public ID
UNSUPPORTED_KEYS = frozenset({"u", "if", "$", "dn", "fn", "vs", "ki", "sp", "af", "du",
                              "so", "eo", "vc", "ac", "br", "fps", "dl", "p", "bl"})
KNOWN_KEYS = SUPPORTED_KEYS | UNSUPPORTED_KEYS


def mapping_markdown() -> str:
    """The mapping as the Markdown table `docs/leaving-cloudinary.md` prints (a test keeps them equal)."""
    rows = ["| Cloudinary | this node | meaning |", "| --- | --- | --- |"]
    rows += [f"| {w.cloudinary} | {w.ours} | {w.meaning} |" for w in WORDS]
    return "\n".join(rows) + "\n"


# --- reading a path ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class CloudinaryPath:
    """A delivery path, split; `components` and `public_id` percent-decoded."""

    cloud: str
    delivery_type: str
    signature: str | None
    #: what the signature may cover, each form tried: `<components>/<public_id.ext>` as sent, and with the
    #: components as the SDKs wrote them (`_as_written`); the public ID is signed escaped
    signed: tuple[str, ...]
    components: tuple[str, ...]
    version: str | None
    public_id: str  # with the extension
    extension_format: str | None

    @property
    def origin_path(self) -> str:
        """What a `cloudinary_backup` origin with `folder = "/res/<cloud>/"` resolves."""
        return "/".join(filter(None, ("image", self.delivery_type, self.version, self.public_id)))


#: what Cloudinary stores as documents and delivers as they are: no image the node can render
DOCUMENT_EXTENSIONS = (".pdf", ".psd", ".ai", ".eps")


def refuse_document(extension: str) -> None:
    """A 422 naming a document's extension (`.pdf`, any case): such a URL had been a 404, its public ID looked
    up with the extension and missing, while the checker and the docs said 422."""
    if extension.lower() in DOCUMENT_EXTENSIONS:
        raise UnprocessableSource(f"unsupported source: a document ({extension.lower()}); the node reads "
                                  f"{READ_FORMATS}")


def split_path(raw: list[str], decode: Callable[[str], str]) -> CloudinaryPath:
    """`[cloud, "image", type, …]` (segments as sent) → its parts. NothingToServe for what is no delivery path.
    Three shorter forms of `image/upload` are read too: `images/…/<public_id>/<seo name>.<ext>` (a dynamic
    SEO suffix: the last segment names the file for search engines, its extension the format), `iu/…` (what
    the SDKs write with their `shorten` option) and the root path, `<cloud>/…/<public_id>`, with neither
    resource nor delivery type."""
    second = decode(raw[1]) if len(raw) > 1 else ""
    if second in OTHER_RESOURCES:
        raise NothingToServe("not found")
    seo = second == "images"
    if seo or (len(raw) > 1 and second != "image"):
        raw = [raw[0], "image", "upload", *raw[2 if second in SHORT_FORMS else 1:]]
    segments = [decode(segment) for segment in raw]
    if len(segments) < 4 or segments[1] != "image":
        raise NothingToServe("not found")
    start = 3
    signature = None
    if _SIGNATURE.fullmatch(segments[start]):
        signature, start = segments[start][3:-2], start + 1
    rest = segments[start:]
    count = 0
    while count < len(rest) - 1 and _is_component(rest[count]):
        count += 1
    # the version is the segment right after the components, as Cloudinary reads it: a folder named like
    # one further on (`products/v2/shoe`, which SDKs with `force_version` off, and the Java SDK before 2021,
    # write without a `v1`) belongs to the public ID
    version = rest[count] if count < len(rest) - 1 and _VERSION.fullmatch(rest[count]) else None
    public_start = count + 1 if version else count
    components, public = rest[:count], rest[public_start:]
    raw_public = raw[start + public_start:]
    if seo:  # the public ID, with the SEO name's extension (what the SDKs sign, too)
        if len(public) < 2 or not public[-1]:
            raise NothingToServe("not found")
        public, raw_public = (_without_seo_name(names) for names in (public, raw_public))
    # a segment's %2F decodes to a slash, %5C to a backslash: the public ID is checked once decoded
    if not public or "" in "/".join(public).split("/") or dot_segment("/".join(public)):
        raise NothingToServe("not found")
    stem, dot, extension = public[-1].rpartition(".")
    extension_format = None
    if dot and stem and extension.lower() in IMAGE_EXTENSIONS:
        extension_format = EXTENSIONS.get(extension.lower())
        if extension_format is None:
            raise BadRequest(f"invalid transformation: .{extension}: this node does not write {extension} images")
    sent = raw[start:start + count]
    written = [_as_written(component) for component in sent]
    # the version is not signed
    signed = tuple(dict.fromkeys("/".join(form + raw_public) for form in (sent, written)))
    return CloudinaryPath(segments[0], segments[2], signature, signed, tuple(components), version,
                          "/".join(public), extension_format)


#: what a browser percent-encodes in a path (WHATWG's path percent-encode set, and every non-ASCII byte)
_BROWSER_ESCAPES = re.compile(r"%(?:20|22|23|3[CcEeFf]|60|7[BbDd])|(?:%[89A-Fa-f][0-9A-Fa-f])+")


def _as_written(component: str) -> str:
    """A component as the SDKs wrote and signed it, from what a browser sent: they leave spaces and non-ASCII
    characters of `l_`, `d_` and text overlays unescaped (`l_brand:my logo`), which a browser then sends
    escaped (`my%20logo`). Only the escapes a browser makes are undone: a `%2C` the SDK wrote itself stays."""
    def undo(escape: re.Match) -> str:
        try:
            return unquote(escape.group(), errors="strict")
        except UnicodeDecodeError:  # not UTF-8: no browser wrote it
            return escape.group()
    return _BROWSER_ESCAPES.sub(undo, component)


def _without_seo_name(segments: list[str]) -> list[str]:
    """`[…, public_id_end, seo_name.ext]` → `[…, public_id_end.ext]`."""
    extension = segments[-1].rpartition(".")[2] if "." in segments[-1] else ""
    return [*segments[:-2], segments[-2] + (f".{extension}" if extension else "")]


def _is_component(segment: str) -> bool:
    return all(word.partition("_")[1] and _key(word) in KNOWN_KEYS for word in segment.split(","))


def _key(word: str) -> str:
    return "$" if word.startswith("$") else word.partition("_")[0]


# --- signatures ----------------------------------------------------------------------------------------

#: the digests a signature of a length may be made with: 8 characters of SHA-1 (the SDKs' default) or of SHA-256
#: (their `signature_algorithm = "sha256"`), which Cloudinary both accepts; 32 of SHA-256 (`long_url_signature`)
SIGNATURE_DIGESTS = {8: (hashlib.sha1, hashlib.sha256), 32: (hashlib.sha256,)}


def signatures(to_sign: str, secret: str, length: int = 8) -> list[str]:
    """Cloudinary's URL signatures of `length`: the first characters of URL-safe base64 of a digest over
    `<components>/<public_id.ext>` + the API secret, one per digest a signature of that length may be made with."""
    message = (to_sign + secret).encode()
    return [base64.urlsafe_b64encode(digest(message).digest())[:length].decode()
            for digest in SIGNATURE_DIGESTS.get(length, ())]


def check_signature(path: CloudinaryPath, secrets: tuple[str, ...], signed_only: bool) -> bool:
    """Whether the URL carries a valid signature for one of `secrets`; 401 for a wrong one, or for none
    where `signed_only` requires it. Without secrets nothing is checked (and nothing counts as signed)."""
    if path.signature is None:
        if signed_only:
            raise SignatureRefused("missing")
        return False
    if not secrets:
        return False
    if not any([hmac.compare_digest(path.signature, made) for secret in secrets for signed in path.signed
                for made in signatures(signed, secret, len(path.signature))]):
        raise SignatureRefused("invalid")
    return True


# --- translating components ----------------------------------------------------------------------------

def translate(components: tuple[str, ...], named: Mapping[str, str], named_only: bool,
              extension_format: str | None = None) -> Transformation:
    """Components → the node's transformation, one step each (`c_lpad`: two). A word the node cannot
    honour is a 400 naming the Cloudinary word, not ours. `extension_format`: what the URL's extension
    names (the output format unless an `f_` says otherwise)."""
    return _translate(components, tuple(named.items()), named_only, extension_format)


@functools.lru_cache(maxsize=4096)  # a site uses few distinct transformations; the translation is pure
def _translate(components: tuple[str, ...], named_items: tuple[tuple[str, str], ...],
               named_only: bool, extension_format: str | None) -> Transformation:
    if not components:
        return parse_transformation("orig-true")
    named = dict(named_items)
    if sum(map(len, components)) > MAX_TEXT:
        raise InvalidTransformation("/".join(components)[:40] + "…", f"longer than {MAX_TEXT} characters")
    chained = tuple(part for component in components for part in _named_chain(component))
    if named_only and len(chained) > 1:  # as `parse_transformation`'s: one name, not a chain of them, however written
        # (`t_a.b` too: unsigned, it had made any number of renders of the names, `t_a.b.a.b.a…`)
        raise InvalidTransformation(components[1].split(",")[0] if len(components) > 1 else components[0],
                                    "this endpoint serves one named transformation (t_<name>) at a time, not a "
                                    "chain of them")
    components = chained
    steps = _steps(_dpr_on_sizes(components, named_only), named, named_only)
    try:
        transformation = parse_transformation(":".join(steps), named=named)
    except InvalidTransformation as error:  # a rule between words (or a limit) the table does not see
        reason = error.message.removeprefix("invalid transformation: ")
        raise InvalidTransformation("/".join(components), reason) from None
    lossy = any(_key(word) == "fl" and "lossy" in word[3:].split(".")
                for component in components for word in component.split(","))
    if lossy and (transformation.output_format or extension_format) not in LOSSY_OUTPUTS:
        raise InvalidTransformation("fl_lossy", "only with f_auto or a JPEG, WebP or AVIF output (a lossy GIF, "
                                                "or a PNG that is a JPEG when opaque, the node does not make)")
    return transformation


IF_ELSE_WORD, IF_END_WORD = "if_else", "if_end"
#: why a word other than `t_` is refused on a `named_only` endpoint
NAMED_ONLY = "this endpoint accepts only named transformations (t_<name>)"


def _steps(components: list[str], named: Mapping[str, str], named_only: bool) -> list[str]:
    """Our steps for the components: each `if_` block one step of ours (an if block), the others a step or
    two each, with an overlay's components together."""
    steps: list[str] = []
    rest = list(components)
    while rest:
        plain = []
        while rest and _key(rest[0]) != "if":
            plain.append(rest.pop(0))
        steps += [step for group in _layer_groups(plain)
                  for step in (_layer(group, named, named_only) if isinstance(group, tuple)
                               else _component(group, named, named_only))]
        if rest:
            if named_only:
                raise InvalidTransformation(rest[0].split(",")[0], NAMED_ONLY)
            steps.append(_if_block(rest, named))
    return steps


def _if_block(rest: list[str], named: Mapping[str, str]) -> str:
    """The `if_` block `rest` starts with, taken off `rest`, as our `if-<condition>,…[,if-else,…],if-end`.
    Cloudinary's two forms: `if_<condition>,<words>` applies the condition to that component's words
    alone; `if_<condition>` alone opens a block of components up to `if_end`, with an optional `if_else`
    component (which may hold the first words of the other branch). The SDKs write a block's first words
    beside its condition (`{"if": "w_gt_1000", "width": 500}, {"if": "else", …}, {"if": "end"}`): a block
    too, when an `if_else` or `if_end` comes before another condition."""
    opening, *words = rest.pop(0).split(",")
    if opening in (IF_ELSE_WORD, IF_END_WORD):
        raise InvalidTransformation(opening, "no if_<condition> before it")
    condition = _condition(opening)
    if words and not _block_closes(rest):
        return f"if-{condition},{':'.join(_steps([','.join(words)], named, False))},if-end"
    branches: list[list[str]] = [[",".join(words)]] if words else [[]]
    while True:
        if not rest:
            raise InvalidTransformation(opening, "no if_end closes this condition")
        first, *others = rest.pop(0).split(",")
        if first == IF_END_WORD:
            if others:
                raise InvalidTransformation(others[0], "if_end takes a component of its own")
            break
        if first == IF_ELSE_WORD and len(branches) == 1:
            branches.append([",".join(others)] if others else [])
        elif _key(first) == "if":
            raise InvalidTransformation(first, "conditions do not nest, and one if_else per condition")
        else:
            branches[-1].append(",".join([first, *others]))
    then, otherwise = (":".join(_steps(branch, named, False)) for branch in (*branches, [])[:2])
    return ",".join(filter(None, (f"if-{condition}", then, otherwise and "if-else", otherwise, "if-end")))


def _block_closes(rest: list[str]) -> bool:
    """Whether an `if_else` or `if_end` component comes in `rest` before another condition."""
    for component in rest:
        first = component.split(",", 1)[0]
        if first in (IF_ELSE_WORD, IF_END_WORD):
            return True
        if _key(first) == "if":
            return False
    return False


def _condition(word: str) -> str:
    """`if_w_gt_400_and_ar_lt_3:4` → `w_gt_400_and_ar_lt_3-4`, checked by our parser; Cloudinary's other
    characteristics (pages, tags, metadata, variables) are a 400 naming the word."""
    condition = word.removeprefix("if_").replace(":", "-")
    try:
        parse_condition(condition)
    except NeedsExtra as exc:  # `fc` without the face detector
        raise InvalidTransformation(word, str(exc)) from None
    except ValueError:
        raise InvalidTransformation(word, "a condition is <w|h|ar|iw|ih|iar|fc>_<eq|ne|gt|gte|lt|lte>_<a number, or "
                                          "a ratio 3:4>, joined by _and_ or _or_ (not pages, tags, metadata or "
                                          "variables)") from None
    return condition


#: `l_<kind>:…`: overlays that are neither an image of the same cloud nor a text
_OTHER_LAYERS = frozenset({"fetch", "video", "subtitles", "lut"})
#: `a_auto_right`, `a_auto_left` → the turn they make when the image's orientation is not the requested one
_AUTO_TURNS = {"auto_right": 90, "auto_left": 270}
#: a text overlay's style words → our typography (`tg`) or alignment (`ia`); `normal` is the default weight and style
_TEXT_TYPOGRAPHY = {"bold": "b", "italic": "i", "strikethrough": "strikethrough"}
_TEXT_ALIGNMENTS = ("left", "center", "right")
#: a compass gravity → where it puts an overlay on each axis: an edge (`start`, `end`) or the middle
_LAYER_GRAVITIES = {"north_west": ("start", "start"), "north": ("middle", "start"), "north_east": ("end", "start"),
                    "west": ("start", "middle"), "center": ("middle", "middle"), "east": ("end", "middle"),
                    "south_west": ("start", "end"), "south": ("middle", "end"), "south_east": ("end", "end")}


def _layer_groups(components: list[str]) -> list[str | tuple[str, ...]]:
    """The components, with each overlay's as one tuple: from its `l_` to its `fl_layer_apply`, or its
    `l_` component alone when no `fl_layer_apply` follows (the older syntax: the overlay's own words and
    its placement in one component)."""
    groups: list[str | tuple[str, ...]] = []
    rest = list(components)
    while rest:
        component = rest.pop(0)
        if "l" not in _keys(component):
            if "layer_apply" in _flags(component):
                raise InvalidTransformation("fl_layer_apply", "no overlay (l_) before it")
            groups.append(component)
            continue
        apply = next((i for i, later in enumerate(rest) if "layer_apply" in _flags(later)), None)
        if apply is None or any("l" in _keys(later) for later in rest[:apply]):
            groups.append((component,))
        else:
            groups.append((component, *rest[:apply + 1]))
            del rest[:apply + 1]
    return groups


def _keys(component: str) -> set[str]:
    return {_key(word) for word in component.split(",")}


def _flags(component: str) -> set[str]:
    return {flag for word in component.split(",") if _key(word) == "fl" for flag in word[3:].split(".")}


def _layer(group: tuple[str, ...], named: Mapping[str, str], named_only: bool) -> list[str]:
    """An overlay (`l_<public ID>` … `fl_layer_apply`) → one step of ours: the node's image layer, drawn
    on the image as the components before it made it. Its own words (in its `l_` component, and the
    components up to `fl_layer_apply`) are its steps; `g_`, `x_`, `y_` where it is applied place it."""
    first, *own, apply = group if len(group) > 1 else (*group, group[0])
    words = {_key(word): word for word in first.split(",")}
    public_id = words.pop("l")[2:]
    if ":" in public_id and public_id.split(":")[0] in _OTHER_LAYERS or not public_id:
        raise InvalidTransformation(f"l_{public_id}", "only image and text overlays are supported (fetched, "
                                                      "video and subtitle overlays are not)")
    placement = {key: words.pop(key) for key in ("g", "x", "y") if len(group) == 1 and key in words}
    relative = "relative" in _flags(first)
    if "fl" in words:
        flags = _flags(first) - {"relative", "layer_apply"}
        words["fl"] = f"fl_{'.'.join(sorted(flags))}" if flags else None
    if len(group) > 1:
        applied = {_key(word): word for word in apply.split(",")}
        if set(applied) - {"g", "x", "y", "fl"} or _flags(apply) != {"layer_apply"}:
            extra = next(word for key, word in applied.items() if key not in ("g", "x", "y") and
                         not (key == "fl" and _flags(apply) == {"layer_apply"}))
            raise InvalidTransformation(extra, "fl_layer_apply places an overlay: with g_, x_ and y_ only")
        placement = {key: word for key, word in applied.items() if key != "fl"}
    if public_id.startswith("text:"):
        if own:
            raise InvalidTransformation(own[0], "a text overlay's words go in its l_text component")
        return [",".join(("l-text", *_text_layer(public_id, words), *_layer_position(placement), "l-end"))]
    steps = []
    for component in (",".join(word for word in words.values() if word), *own):
        if component:
            steps += _component(component, named, named_only)
    if relative and steps:  # `fl_relative`: w_/h_ fractions of the base, not of the overlay
        steps[0] = ",".join(re.sub(r"^([wh])-(0\.[0-9]+)$", lambda m: f"{m[1]}-b{m[1]}_mul_{m[2]}", param)
                            for param in steps[0].split(","))
    path = "@@".join(("image", "upload", *public_id.split(":")))
    return [",".join(filter(None, ("l-image", f"i-{path}", *_layer_position(placement), ":".join(steps), "l-end")))]


def _text_layer(spec: str, words: dict[str, str | None]) -> list[str]:
    """`l_text:<font>_<size>[_<style>…]:<text>` and the words beside it (`co_`, `b_`, `w_` with `c_fit`,
    `o_`, `a_`, `e_distort`) → our text layer's parameters. The font is the `[fonts]` entry of that name (spaces as
    `_`); the text was escaped twice, as Cloudinary asks (`%252C` for a comma), and is decoded once more."""
    _, style, *text = spec.split(":", 2)
    tokens = style.split("_")
    size_at = next((i for i, token in enumerate(tokens) if token.isdigit()), 0)
    if not text or not size_at:
        raise InvalidTransformation(f"l_{spec}", "a text overlay is l_text:<font>_<size>[_<style>…]:<text>")
    size = int(tokens[size_at])
    params = [f"ff-{'_'.join(tokens[:size_at]).replace(' ', '_')}", f"fs-{size}",
              f"ie-{base64.b64encode(unquote(text[0]).encode()).decode()}"]
    typography, rest = [], tokens[size_at + 1:]
    while rest:
        token = rest.pop(0)
        if token in _TEXT_TYPOGRAPHY:
            typography.append(_TEXT_TYPOGRAPHY[token])
        elif token in _TEXT_ALIGNMENTS:
            params.append(f"ia-{token}")
        elif token == "line" and rest[:1] == ["spacing"] and len(rest) > 1 and _INTEGER.fullmatch(rest[1]):
            params.append(f"lh-{max(1, size + int(rest[1]))}")  # Cloudinary's spacing is between the lines
            del rest[:2]
        elif token != "normal":
            raise InvalidTransformation(f"l_{spec}", f"{token}: not a text style the node draws (bold, italic, "
                                                     f"strikethrough, left, center, right, line_spacing_<N>)")
    if typography:
        params.append(f"tg-{'_'.join(typography)}")
    c = _Component({key: (word, word[len(key) + 1:]) for key, word in words.items() if word}, {})
    for key in c.words:
        if key == "co":
            params.append(f"co-{_colour(c, 'co', c.value('co'))}")
        elif key == "b":
            params.append(f"bg-{_colour(c, 'b', c.value('b'))}")
        elif key == "w":
            params.append(c.parsed("w", "w"))  # the width the text wraps at (`c_fit`)
        elif key == "o":  # our text's opacity is in tenths
            opacity = int(c.parsed("o", "o")[2:])
            params.append(f"al-{min(9, max(1, round(opacity / 10)))}")
        elif key == "a" and _INTEGER.fullmatch(c.value("a")):
            params.append(f"rt-{int(c.value('a')) % 360}")
        elif key == "e" and c.value("e").startswith("distort:"):  # curved text: `e_distort:arc:-120`
            params.append(_distortion(c, c.value("e").removeprefix("distort:")))
        elif not (key == "c" and c.value("c") == "fit"):
            raise c.fail(key, "not a word of a text overlay (co_, b_, w_ with c_fit, o_, a_, e_distort, g_, x_, y_)")
    return params
def _layer_position(placement: dict[str, str]) -> list[str]:
    """`g_`, `x_`, `y_` of an overlay → our `lx`/`lxc`, `ly`/`lyc`. Cloudinary's offsets are pixels from
    the gravity's edge into the image (from the middle: right and down); its default gravity is the centre."""
    gravity = placement["g"][2:] if "g" in placement else "center"
    if gravity not in _LAYER_GRAVITIES:
        raise InvalidTransformation(placement["g"], f"an overlay is placed by a compass gravity: "
                                                    f"{', '.join(_LAYER_GRAVITIES)}")
    position = []
    for axis, side, where in zip("xy", "wh", _LAYER_GRAVITIES[gravity]):
        word = placement.get(axis)
        offset = word[2:] if word else "0"
        if not _INTEGER.fullmatch(offset) or (where != "middle" and int(offset) < 0):
            raise InvalidTransformation(word, "an overlay's offset is whole pixels into the image")
        shift = int(offset)
        if where == "start":
            position.append(f"l{axis}-{shift}")
        elif where == "end":
            position.append(f"l{axis}-N{shift}")
        else:
            position.append(f"l{axis}c-b{side}_div_2" + (f"_add_{shift}" if shift > 0 else f"_sub_{-shift}"
                                                           if shift < 0 else ""))
    return position


def _named_chain(component: str) -> list[str]:
    """`t_card.thumb`, what the SDKs write for several named transformations (`transformation=["card",
    "thumb"]`): one after the other, a component each."""
    words = component.split(",")
    chained = [word for word in words if _key(word) == "t" and "." in word]
    if not chained:
        return [component]
    if len(words) > 1:
        raise InvalidTransformation(chained[0], "several named transformations take a component of their own")
    return [f"t_{name}" for name in chained[0][2:].split(".")]


def _dpr_on_sizes(components: tuple[str, ...], named_only: bool) -> list[str]:
    """Cloudinary's SDKs write `dpr_` in a component of its own (`c_fill,w_300,h_200/dpr_2.0`), where
    it multiplies the sizes of the whole URL: moved onto the components without a `dpr_` of their own
    that give w_/h_ in pixels; without those, onto the ones that give fractions; without those, onto
    those naming a `t_`. With none, there is nothing to multiply: the image is delivered at its size
    (docs/leaving-cloudinary.md), the word still held to what it would be held to where it multiplies."""
    def keys(component: str) -> set[str]:
        return {_key(word) for word in component.split(",")}

    def in_pixels(component: str) -> bool:
        return all(not 0 < _float(word[2:]) < 1 for word in component.split(",") if _key(word) in ("w", "h"))

    delivery = [word for component in components if not keys(component) & {"w", "h", "t"}
                for word in component.split(",") if _key(word) == "dpr"]
    if not delivery:
        return list(components)
    own = [component for component in components if keys(component) & {"w", "h", "t"} and "dpr" not in keys(component)]
    sized = [component for component in own if keys(component) & {"w", "h"}]
    # sizes in pixels are what it multiplies (fractions of an input so multiplied would compound it);
    # a named transformation's only when the URL has no size of its own
    multiplied = [component for component in sized if in_pixels(component)] or sized or own
    # each checked, whether it multiplies (the last) or is dropped: `dpr_abc` alone, or before another `dpr_`, was
    # served as if absent (a cache entry per spelling)
    for word in delivery:
        try:
            PARAMS["dpr"].parse(word[len("dpr_"):])
        except ValueError as exc:
            raise InvalidTransformation(word, str(exc)) from None
    if not multiplied and named_only:
        raise InvalidTransformation(delivery[0], NAMED_ONLY)
    moved = []
    for component in components:
        words = component.split(",")
        if not keys(component) & {"w", "h", "t"}:
            words = [word for word in words if _key(word) != "dpr"]
        elif component in multiplied:
            words.append(delivery[-1])
        if words:
            moved.append(",".join(words))
    return moved


def _component(text: str, named: Mapping[str, str], named_only: bool) -> list[str]:
    words: dict[str, tuple[str, str]] = {}
    for word in text.split(","):
        key = _key(word)
        value = word[len(key) + 1:]
        if not word.partition("_")[1] or key not in KNOWN_KEYS:
            raise InvalidTransformation(word, "not a Cloudinary transformation this node knows")
        if key not in SUPPORTED_KEYS:
            raise InvalidTransformation(word, "not supported by this node")
        if named_only and key != "t":
            raise InvalidTransformation(word, NAMED_ONLY)
        if key in words:
            raise InvalidTransformation(word, f"{key}_ given twice in one component")
        words[key] = (word, value)
    return _Component(words, named).steps()


class _Component:
    """The words of one component, keyed by their Cloudinary key, → our steps."""

    def __init__(self, words: dict[str, tuple[str, str]], named: Mapping[str, str]):
        self.words = words
        self.named = named
        #: with `e_blur_region`/`e_pixelate_region`, `x_`, `y_`, `w_`, `h_` are its rectangle, not a crop or
        #: size, and `g_faces` makes the faces the region
        regional = (self.value("e") or "").partition(":")[0] in REGION_EFFECTS
        self.region = {key: words.pop(key) for key in ("x", "y", "w", "h", "g") if key in words} if regional else {}

    def word(self, key: str) -> str:
        return self.words[key][0]

    def value(self, key: str) -> str | None:
        return self.words[key][1] if key in self.words else None

    def parsed(self, key: str, ours: str, value: str | None = None) -> str:
        """`ours-value`, checked by our parser for the value; the error names the Cloudinary word."""
        value = self.value(key) if value is None else value
        try:
            PARAMS[ours].parse(value)
        except ValueError as exc:
            raise InvalidTransformation(self.word(key), str(exc)) from None
        return f"{ours}-{value}"

    def fail(self, key: str, reason: str) -> InvalidTransformation:
        return InvalidTransformation(self.word(key), reason)

    def arithmetic(self, key: str, ours: str) -> str | None:
        """`ours-<expression>` for a value that is Cloudinary arithmetic (a size, operators), else None."""
        terms = self.value(key).split("_")
        if len(terms) == 1 and terms[0] not in _ARITHMETIC_VARIABLES:
            return None  # a number (or a word the caller knows)
        if len(terms) % 2 == 0 or not all(term in EXPRESSION_OPERATORS if index % 2 else
                                          term in _ARITHMETIC_VARIABLES or term[:1] in tuple("0123456789.")
                                          for index, term in enumerate(terms)):
            raise self.fail(key, f"arithmetic alternates numbers or {', '.join(_ARITHMETIC_VARIABLES)} with "
                                 f"{', '.join(EXPRESSION_OPERATORS)}; variables ($) are not supported")
        return self.parsed(key, ours, "_".join(terms[index] if index % 2 else _ARITHMETIC_VARIABLES.get(term, term)
                                               for index, term in enumerate(terms)))

    def region_param(self) -> list[str]:
        """`e-region-x_y_w_h` from the region's words (a side not given: to the image's edge)."""
        if not self.region:
            return []
        if "g" in self.region:
            raise InvalidTransformation(self.region["g"][0], "with a region effect, only g_face or g_faces (the "
                                                             "faces as the region, without x_, y_, w_, h_)")
        for word, value in self.region.values():
            if not re.fullmatch(r"[0-9]{1,5}", value):
                raise InvalidTransformation(word, "a region's position and size are whole pixels")
        x, y, w, h = (self.region[key][1] if key in self.region else None for key in ("x", "y", "w", "h"))
        size = f"_{w or MAX_PIXELS}_{h or MAX_PIXELS}" if w or h else ""
        return [self.parsed("e", "e-region", f"{x or 0}_{y or 0}{size}")]

    def steps(self) -> list[str]:
        return self._auto_turn() + self._steps()

    def _auto_turn(self) -> list[str]:
        """`a_auto_right`/`a_auto_left`: a step before the component's that turns the image when its
        orientation is not the requested box's (Cloudinary: "only if the requested aspect ratio does not
        match the image's aspect ratio")."""
        if self.value("a") not in _AUTO_TURNS:
            return []
        if "ar" in self.words:
            width, _, height = self.value("ar").partition(":")
            requested = _float(width) / (_float(height or "1") or 1)
        elif all(_INTEGER.fullmatch(self.value(key) or "") for key in ("w", "h")):
            requested = int(self.value("w")) / max(1, int(self.value("h")))
        else:
            raise self.fail("a", "needs the box it compares with: w_ and h_ in pixels, or ar_")
        if requested == 1 or requested <= 0:
            return []  # a square box: neither orientation is the one asked for
        return [f"if-ar_{'lt' if requested > 1 else 'gt'}_1,rt-{_AUTO_TURNS[self.value('a')]},if-end"]

    def _steps(self) -> list[str]:
        named = [self._named()] if "t" in self.words else []
        size = self._size()
        look = [param for key, translate_word in _LOOK.items() if key in self.words for param in translate_word(self)]
        if "cm-pad_extract" in size:  # c_lpad: fit inside without upscaling, then pad to exactly w×h around it
            if any(0 < _float(self.value(key) or "") < 1 for key in ("w", "h")):
                raise self.fail("c", "c_lpad takes sizes in pixels, not fractions")
            fit = [param.replace("cm-pad_extract", "c-at_max") for param in size if not param.startswith("fo-")]
            return [",".join(named + fit), ",".join(size + look)]
        params = named + size + look
        return [",".join(params)] if params else []

    def _named(self) -> str:
        name = self.value("t")
        if name not in self.named:
            raise self.fail("t", "unknown named transformation")
        return f"n-{name}"

    def _stretched(self) -> str | None:
        """With `fl_ignore_aspect_ratio`, the side not given, as it is at this step (`w-cw`, `h-ch`): Cloudinary's
        "scale in one dimension ignoring the aspect ratio", documented for `c_scale` only."""
        if IGNORE_ASPECT_RATIO not in (self.value("fl") or "").split("."):
            return None
        if self.value("c") not in (None, "scale") or "ar" in self.words or ("w" in self.words) == ("h" in self.words):
            raise self.fail("fl", f"{IGNORE_ASPECT_RATIO} only with c_scale and one of w_ or h_")
        return "h-ch" if "w" in self.words else "w-cw"

    def _box_given(self) -> bool:
        """Both sides are known: w and h, or `ar` with one of them (or alone: the largest such box)."""
        return ("w" in self.words and "h" in self.words) or "ar" in self.words

    def _size(self) -> list[str]:
        factor = self._dpr_factor()
        params = [self._dimension(key, factor) for key in ("w", "h") if key in self.words]
        stretched = self._stretched()
        if stretched:  # the side not given stays as it is: the image is stretched or squashed to the other
            params.append(stretched)
        if "ar" in self.words:
            params.append(self._aspect_ratio())
        if "dpr" in self.words and factor == 1:
            if "w" not in self.words and "h" not in self.words and "t" not in self.words:
                raise self.fail("dpr", "needs w_ or h_")
            params.append(self.parsed("dpr", "dpr"))
        mode = self.value("c")
        if mode is not None and mode not in CROP_MODES:
            raise self.fail("c", f"crop mode not supported; supported: {', '.join(CROP_MODES)}")
        mode = mode or "scale"
        if mode == "auto" and "g" not in self.words:  # a required qualifier: what it does without is undocumented
            raise self.fail("c", "needs a gravity (g_auto for the most interesting part)")
        if "ar" in self.words and "w" not in self.words and "h" not in self.words and mode not in _CROPPING:
            raise self.fail("ar", f"without w_ or h_ only with c_{', c_'.join(_CROPPING)}")
        both, one, _ = CROP_MODES[mode]
        crop = [param for param in (both if self._box_given() or stretched else one).split(",") if param]
        if "g" in self.words:  # in place of a mode's own focus (`c_thumb`'s `fo-auto`)
            crop = [param for param in crop if not param.startswith("fo-")] + self._gravity(mode)
        params += crop
        for key in ("x", "y"):
            if key in self.words:
                if mode != "crop":
                    raise self.fail(key, "only with c_crop or where an overlay is placed")
                computed = self.arithmetic(key, key)
                fraction = _FRACTION.fullmatch(self.value(key))
                if not computed and not fraction and not _INTEGER.fullmatch(self.value(key)):
                    raise self.fail(key, "must be a whole number of pixels, or a fraction below 1")
                if _faces(self.value("g")):
                    continue  # Cloudinary keeps the face centred: "x and y … have no positional effect"
                if self.value("g") not in (None, "north_west"):
                    raise self.fail(key, "offsets from a gravity other than north_west are not supported")
                if computed:
                    params.append(computed)
                elif fraction:  # relative, as w_0.5 is: of this step's input
                    params.append(self.parsed(key, key, f"c{'w' if key == 'x' else 'h'}_mul_{self.value(key)}"))
                else:
                    params.append(self.parsed(key, key))
        if "z" in self.words:
            params.append(self.parsed("z", "z"))
            if float(self.value("z")) < 1 and not _faces(self.value("g")):
                raise self.fail("z", "zooming out (below 1) is supported around faces only (g_face)")
        return params

    def _dpr_factor(self) -> float:
        """A `dpr_N` that multiplies this component's sizes here, in pixels: Cloudinary multiplies
        whatever the product (a 2560 px width at `dpr_2.0` is 5120 px), where ImageKit's `dpr` leaves a
        side over 5000 px as given. 1 when the node's `dpr-` does it (`dpr_auto`, fractions, `t_`)."""
        if "dpr" not in self.words or "t" in self.words:
            return 1.0
        self.parsed("dpr", "dpr")  # checked: 0.1–5 or auto
        sizes = [self.value(key) for key in ("w", "h") if key in self.words]
        if self.value("dpr") == "auto" or not sizes or not all(re.fullmatch(r"[0-9]{1,5}", v or "") for v in sizes):
            return 1.0
        return float(self.value("dpr"))

    def _dimension(self, key: str, factor: float = 1.0) -> str:
        value = self.value(key)
        automatic = _AUTO_WIDTH.fullmatch(value) if key == "w" else None
        if automatic:  # Cloudinary's default rounding step, as `w-auto`'s; the fallback width: the node's `wf`
            return "w-auto" + (f",{self.parsed('w', 'wf', automatic.group(1))}" if automatic.group(1) else "")
        if not value.startswith(("auto", "$")) and (computed := self.arithmetic(key, key)):
            return computed  # `_dpr_factor` leaves a `dpr_` to the node's `dpr-`
        if "." in value and _float(value) >= 1:  # `w_1.5`: a multiple of the image as it is at this step
            return self.parsed(key, key, f"{'cw' if key == 'w' else 'ch'}_mul_{value}")
        if key == "w" and value.startswith("auto:"):  # `w_auto` itself is
            raise self.fail(key, f"only w_auto, w_auto:{WIDTH_STEP} and w_auto:{WIDTH_STEP}:<fallback width> are "
                                 f"supported (a rounding step of {WIDTH_STEP} px; no breakpoints)")
        if (value == "auto" and key != "w") or value.startswith(("auto:", "$")):
            raise self.fail(key, "automatic sizes and variables are not supported")
        if factor == 1:
            return self.parsed(key, key)
        self.parsed(key, key)  # the value as written first (`w_0` is refused, multiplied or not)
        multiplied = str(max(1, math.floor(int(value) * factor + 0.5)))  # half up, not to even
        try:
            PARAMS[key].parse(multiplied)
        except ValueError as exc:
            raise self.fail(key, f"times {self.word('dpr')}: {exc}") from None
        return f"{key}-{multiplied}"

    def _aspect_ratio(self) -> str:
        width, colon, height = self.value("ar").partition(":")
        return self.parsed("ar", "ar", f"{width}-{height}" if colon else f"{width}-1")

    def _gravity(self, mode: str) -> list[str]:
        gravity = GRAVITIES.get(self.value("g"))
        if gravity is None:
            raise self.fail("g", f"gravity not supported; supported: {', '.join(GRAVITIES)}")
        if mode in ("scale", "fit", "limit", "mfit"):
            return []  # these modes keep the whole image: gravity changes nothing, as on Cloudinary
        if (gravity == "auto" or _faces(self.value("g"))) and mode in ("pad", "lpad"):
            raise self.fail("g", "places the image in c_pad/c_lpad: use a compass gravity")
        if _faces(self.value("g")) and mode in ("fill", "lfill"):
            # scaled to cover, the faces kept in the middle: no closer (`c_thumb` and `c_crop` frame them; `z_` is
            # for those, per Cloudinary)
            return [*f"fo-{gravity}".split(","), "ffr-false"]
        return f"fo-{gravity}".split(",")  # `fof-` too


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


def _quality(c: _Component) -> list[str]:
    value = c.value("q")
    if value in QUALITY_LEVELS or value in SENSITIVE_LEVELS:
        return [f"q-{QUALITY_LEVELS.get(value) or SENSITIVE_LEVELS[value]}"]
    return [c.parsed("q", "q")]


def _format(c: _Component) -> list[str]:
    if c.value("f") not in FORMATS:
        raise c.fail("f", f"format not supported; supported: {', '.join(FORMATS)}")
    return [f"f-{FORMATS[c.value('f')]}"]


def _angle(c: _Component) -> list[str]:
    value = c.value("a")
    if "." in value:
        return _angles(c, value.split("."))
    if value in ("hflip", "vflip"):
        return [f"fl-{value[0]}"]
    if value in ("exif", "auto") or value in _AUTO_TURNS:
        return []  # the node always applies the EXIF orientation; `auto_*` is a step of its own (`steps`)
    if not _INTEGER.fullmatch(value):
        raise c.fail("a", "must be degrees, hflip, vflip, exif, auto_right or auto_left")
    degrees = int(value) % 360
    return [f"rt-{degrees}"] if degrees else []


def _angles(c: _Component, modes: list[str]) -> list[str]:
    """`a_hflip.90`: Cloudinary's modes "concatenated with a dot", applied in turn, as one rotation then at
    most a horizontal flip (the order the node applies them in): a flip then a turn by θ is a turn by -θ
    then that flip, and `vflip` is `hflip` and a half turn."""
    degrees, flipped = 0, False
    for mode in modes:
        if mode in ("exif", "auto"):
            continue
        if mode == "hflip":
            flipped = not flipped
        elif mode == "vflip":
            degrees, flipped = degrees + 180, not flipped
        elif _INTEGER.fullmatch(mode):
            degrees += -int(mode) if flipped else int(mode)
        else:
            raise c.fail("a", "must be degrees, hflip, vflip or exif, or several of them joined with '.'")
    return [f"rt-{degrees % 360}"] * bool(degrees % 360) + ["fl-h"] * flipped


def _radius(c: _Component) -> list[str]:
    """`r_N`, `r_max`, or per corner as CSS writes them, `:`-separated: `r_20:0:20:0` (top-left,
    top-right, bottom-right, bottom-left), `r_20:40` (the diagonals), `r_10:20:30`."""
    value = c.value("r")
    if set(value.split(":")) == {"0"}:
        return []  # square corners: nothing to do
    corners = value.split(":")
    if len(corners) > 4:
        raise c.fail("r", "takes 1 to 4 radii separated by :")
    if len(corners) > 1:  # which given radius each corner takes, as in CSS's border-radius
        value = "_".join(corners[i] for i in _CORNERS[len(corners)])
    return [c.parsed("r", "r", value)]


#: radii given → the one each corner takes (top-left, top-right, bottom-right, bottom-left)
_CORNERS = {2: (0, 1, 0, 1), 3: (0, 1, 2, 1), 4: (0, 1, 2, 3)}


def _strength(c: _Component, argument: str, default: int) -> int:
    if not argument:
        return max(1, default // _STRENGTH_SCALE)
    if not argument.isdigit() or not 1 <= int(argument) <= 2000:
        raise c.fail("e", "strength must be an integer from 1 to 2000")
    return max(1, round(int(argument) / _STRENGTH_SCALE))


def _level(c: _Component, argument: str, low: int, high: int, default: int) -> int:
    if not argument:
        return default
    if not re.fullmatch(r"-?[0-9]{1,4}", argument) or not low <= int(argument) <= high:
        raise c.fail("e", f"must be an integer from {low} to {high}")
    return int(argument)


def _ours(key: str, value: int) -> str:
    """Our parameter `key` with `value`, as our parser writes it (`e-brightness-N30`; `e-contrast` at 100)."""
    written = PARAMS[key].write(value)
    return f"{key}-{written}" if written else key


def _effect(c: _Component) -> list[str]:
    name, _, argument = c.value("e").partition(":")
    if name == "blur":
        return [f"bl-{_strength(c, argument, 100)}"]
    if name == "sharpen":
        return [f"e-sharpen-{_strength(c, argument, 100)}"]
    if name in REGION_EFFECTS:
        level = _strength(c, argument, 100) if name == "blur_region" else _level(c, argument, 1, 200, 5)
        if _faces(c.region.get("g", ("", ""))[1]) and c.region.keys() == {"g"}:  # e_pixelate_region,g_faces
            return [c.parsed("e", "e-blurfaces" if name == "blur_region" else "e-pixelatefaces", str(level))]
        return [f"bl-{level}" if name == "blur_region" else f"e-pixelate-{level}", *c.region_param()]
    if name == "blur_faces":
        return [c.parsed("e", "e-blurfaces", str(_strength(c, argument, 500)))]
    if name == "pixelate_faces":
        return [c.parsed("e", "e-pixelatefaces", str(_level(c, argument, 1, 200, 5)))]
    if name == "unsharp_mask":
        return [_UNSHARP_MASK.format(amount=_level(c, argument, 1, 2000, 100) / 100)]
    if name in LEVELS:
        ours, *limits = LEVELS[name]
        level = _level(c, argument, *limits)
        return [_ours(ours, level)]
    if name in AUTO_ADJUSTMENTS:
        blend = _level(c, argument, 0, 100, 100)
        return [_ours(AUTO_ADJUSTMENTS[name], blend)]
    if name == "improve":
        mode, _, blend = argument.rpartition(":") if argument[-1:].isdigit() else (argument, "", "")
        if mode not in ("", "outdoor", "indoor"):
            raise c.fail("e", "mode must be outdoor or indoor")
        level = _level(c, blend, 0, 100, 100)
        return [_ours("e-autocolor", level), _ours("e-autobrightness", level)]
    if name == "contrast":
        return _contrast(c, argument)
    if name == "colorize":
        colour = _colour(c, "co", c.value("co") or COLORIZE_COLOUR)
        return [c.parsed("e", "e-colorize", f"co-{colour}_in-{_level(c, argument, 0, 100, 100)}")]
    if name == "distort":
        return [_distortion(c, argument)]
    if name == "replace_color":
        return [c.parsed("e", "cr", _replacement(c, argument))]
    if name in ("grayscale", "negate"):
        if argument:
            raise c.fail("e", "takes no value on this node")
        return [f"e-{name}"]
    if name == "trim":
        return [c.parsed("e", "t", argument or "true")]
    raise c.fail("e", "effect not supported; supported: blur, blur_faces, sharpen, unsharp_mask, grayscale, "
                         f"{', '.join(LEVELS)}, pixelate_faces, negate, contrast, colorize, distort, replace_color, "
                         f"{', '.join(AUTO_ADJUSTMENTS)}, improve, {', '.join(REGION_EFFECTS)}, trim")


def _replacement(c: _Component, argument: str) -> str:
    """`e_replace_color:<to>[:<tolerance>[:<from>]]` → `<to>[_<tolerance>[_<from>]]`, Cloudinary's colours ours."""
    if not argument:
        raise c.fail("e", "needs the colour to replace with (e_replace_color:<to>[:<tolerance>[:<from>]])")
    parts = re.findall(r"(?:rgb:)?[^:]+", argument)  # a colour may be written `rgb:00ff00`
    colours = {0, 2} & set(range(len(parts)))
    return "_".join(_colour(c, "e", part) if i in colours else part for i, part in enumerate(parts))


def _distortion(c: _Component, argument: str) -> str:
    """`e_distort:x1:y1:…:y4` (pixels) → `e-distort-p-x1_y1_…`; `e_distort:arc:D` → `e-distort-a-D` (`N` for
    minus, as ours), checked by our parser."""
    kind, values = ("a", argument.removeprefix("arc:")) if argument.startswith("arc:") else ("p", argument)
    numbers = values.split(":")
    if any(number.endswith("p") for number in numbers):
        raise c.fail("e", "corners in percent are not supported on this node: give pixels")
    return c.parsed("e", "e-distort", f"{kind}-" + "_".join(f"N{number[1:]}" if number.startswith("-") else number
                                                           for number in numbers))


def _contrast(c: _Component, argument: str) -> list[str]:
    """`e_contrast[:N]`, `e_contrast:level_N;type_<sigmoidal|linear>` (the SDKs' two forms)."""
    level, kind = "", "sigmoidal"
    for part in filter(None, argument.split(";")):
        if part.startswith("type_"):
            kind = part.removeprefix("type_")
        elif not level:
            level = part.removeprefix("level_")
        else:
            raise c.fail("e", "takes a level and a type_")
    if kind not in CONTRAST_TYPES:
        raise c.fail("e", f"type_ must be {' or '.join(CONTRAST_TYPES)}")
    ours, low, high, unchanged = CONTRAST_TYPES[kind]
    value = _level(c, level, low, high, unchanged)
    return [] if value == unchanged else [_ours(ours, value)]


def _colour_qualifier(c: _Component) -> list[str]:
    """`co_` outside a text layer: `e_colorize`'s colour (read there), nothing of its own."""
    if (c.value("e") or "").partition(":")[0] != "colorize":
        raise c.fail("co", "only with e_colorize (or in a text layer) on this node")
    return []


def _colour(c: _Component, key: str, text: str) -> str:
    colour = text.removeprefix("rgb:").removeprefix("#")
    if re.fullmatch(r"[0-9A-Fa-f]{3,4}", colour) and text != colour:  # `rgb:f00`: CSS's short hex
        colour = "".join(digit * 2 for digit in colour)
    if re.fullmatch(r"[0-9A-Fa-f]{8}", colour):  # Cloudinary's hex alpha → ImageKit's opacity percent
        alpha = int(colour[6:], 16)
        colour = colour[:6] + (f"{opacity_percent(alpha):02d}" if alpha != 255 else "")
    try:
        PARAMS["bg"].parse(colour)
    except ValueError:  # in Cloudinary's words (ImageKit's `RRGGBBOO`, an opacity percent, is no Cloudinary colour)
        raise c.fail(key, "must be rgb:RRGGBB, rgb:RRGGBBAA, rgb:RGB, rgb:RGBA or a CSS colour name") from None
    return colour


def _background(c: _Component) -> list[str]:
    value = c.value("b")
    if value in AUTO_BACKGROUNDS:
        if c.value("c") not in ("pad", "lpad"):
            raise c.fail("b", "only with c_pad or c_lpad (a padding colour)")
        return [f"bg-{AUTO_BACKGROUNDS[value]}"]
    # the other content-aware padding colours: contrasting, from a palette, gradients, generated
    if value.startswith(("auto:", "gen_fill")):
        raise c.fail("b", "not supported by this node (b_auto: give a colour, or use e_blur on a pad)")
    return [f"bg-{_colour(c, 'b', value)}"]


def _border(c: _Component) -> list[str]:
    match = re.fullmatch(r"([0-9]{1,4})px_solid_(.+)", c.value("bo"))
    if not match:
        raise c.fail("bo", "must be <N>px_solid_<colour>")
    return [c.parsed("bo", "b", f"{match.group(1)}_{_colour(c, 'bo', match.group(2))}")]


def _opacity(c: _Component) -> list[str]:
    return [c.parsed("o", "o")]


def _flag(c: _Component) -> list[str]:
    params = set()
    for flag in c.value("fl").split("."):
        name, colon, mode = flag.partition(":")
        if name == "progressive" and colon and mode in PROGRESSIVE_MODES:
            params.add(PROGRESSIVE_MODES[mode])
        elif flag in FLAGS:
            params.add(FLAGS[flag])
        elif flag == "lossy":  # checked against the output format once the URL is read (`_translate`)
            params.add("")
        elif name in DELIVERY_FLAGS:  # headers, not a transformation (`delivery_flag`)
            params.add("")
        elif flag in UNCHANGING_FLAGS or flag == IGNORE_ASPECT_RATIO:  # the latter: a size (`_stretched`)
            params.add("")
        else:
            raise c.fail("fl", f"flag {flag} not supported; supported: {', '.join(FLAGS)}, lossy, attachment, "
                               f"immutable_cache, {IGNORE_ASPECT_RATIO}, {', '.join(UNCHANGING_FLAGS)}, "
                               f"progressive:{', progressive:'.join(PROGRESSIVE_MODES)}")
    return sorted(params - {""})


#: the flags that change the answer's headers, not the image (`delivery_flag`)
DELIVERY_FLAGS = ("attachment", "immutable_cache")


def _headers_only(component: str) -> bool:
    """Whether a component is only flags of `DELIVERY_FLAGS` (`fl_attachment:name`, `fl_attachment.immutable_cache`)."""
    return all(word.startswith("fl_") and all(flag.partition(":")[0] in DELIVERY_FLAGS for flag in word[3:].split("."))
               for word in component.split(","))


def delivery_flag(components: tuple[str, ...], wanted: str) -> str | None:
    """The value of a flag that changes the answer's headers, not the image (`fl_attachment[:<name>]`,
    `fl_immutable_cache`): "" without one, None without the flag."""
    for word in (word for component in components for word in component.split(",") if word.startswith("fl_")):
        for flag in word[3:].split("."):
            name, _, value = flag.partition(":")
            if name == wanted:
                return value
    return None


def _colour_space(c: _Component) -> list[str]:
    if c.value("cs") not in COLOUR_SPACES:
        raise c.fail("cs", f"colour space not supported; supported: {', '.join(COLOUR_SPACES)} (sRGB)")
    return []


def _page(c: _Component) -> list[str]:
    return [c.parsed("pg", "pg")]


def _default_image(c: _Component) -> list[str]:
    public_id = c.value("d").replace(":", "/")
    return [c.parsed("d", "di", f"image@@upload@@{public_id.replace('/', '@@')}")]


#: the words after size and crop, in the order they are written into the step
_LOOK: dict[str, Callable[[_Component], list[str]]] = {
    "a": _angle, "r": _radius, "e": _effect, "b": _background, "bo": _border, "o": _opacity,
    "q": _quality, "f": _format, "fl": _flag, "cs": _colour_space, "pg": _page, "d": _default_image,
    "co": _colour_qualifier,
}


# --- the endpoint's side -------------------------------------------------------------------------------

def cloud_names(origins) -> frozenset[str]:
    """The clouds whose URLs an endpoint serves: those of its origins with `folder = "/res/<cloud>/"`."""
    return frozenset(match.group(1) for origin in origins
                     if (match := _CLOUD_FOLDER.fullmatch(getattr(origin, "folder", "") or "")))


@dataclass(frozen=True)
class Delivery:
    """What a delivery path asks for, in the node's terms."""

    #: the origin path: `image/<type>/[v<version>/]<public_id>[.<ext>]`
    path: str
    transformation: Transformation
    #: for a URL without components: the format its extension names (another stored format is converted)
    original_as: str | None
    #: `fl_attachment[:<name>]`: the downloaded file's name ("": the public ID's), None when not a download
    attachment: str | None = None
    #: `fl_immutable_cache`: the answer's `Cache-Control` says `immutable`
    immutable: bool = False


def same_asset(origin_path: str) -> list[str]:
    """The origin paths whose URLs show what `origin_path`'s does while it is not pinned to a version (none, or the
    SDKs' `v1` placeholder): its public ID with no extension or one of each format the node writes, with and
    without `v1`, and `origin_path` itself. A purge of one takes them all, as Cloudinary's invalidation does:
    after an upload, the SDKs' `v1/…` and the `.webp` of a purged `….jpg` had kept showing the old version."""
    delivery, _, rest = origin_path.partition("/")[2].partition("/")
    segments = rest.split("/")
    if len(segments) > 1 and _VERSION.fullmatch(segments[0]):
        segments = segments[1:]
    stem, dot, extension = segments[-1].rpartition(".")
    public = "/".join([*segments[:-1], stem if dot and stem and extension.lower() in EXTENSIONS else segments[-1]])
    forms = [f"{public}{suffix}" for suffix in ("", *(f".{extension}" for extension in EXTENSIONS))]
    return [origin_path, *(f"image/{delivery}/{version}{form}" for version in ("", "v1/") for form in forms
                           if f"image/{delivery}/{version}{form}" != origin_path)]


def read(segments: list[str], decode: Callable[[str], str], clouds: frozenset[str], secrets: tuple[str, ...], *,
         signed_only: bool, named: Mapping[str, str], named_only: bool, prefix: bool = False) -> Delivery:
    """Path segments after the endpoint (as sent; `decode` percent-decodes one) → a `Delivery`. 404 for
    another cloud, resource type or delivery type; 401 for a missing or wrong signature where one is
    required; 400 naming a word.
    `prefix`: the path may stop anywhere (a purge prefix); nothing else is checked. Paths of a private CDN
    or custom domain have no cloud name (`/image/upload/…`, and so the SDKs write the SEO, short and root
    forms there: `/images/…`, `/iu/…`, `/<components>/…/<public_id>`): they are the endpoint's cloud's, when
    it has one. Another cloud's URL (`/other/image/…`) stays another cloud's: a 404; but a first segment that is
    a version (`/v1/images/hero.jpg`, the root path of a public ID in a folder named `images`) names no cloud."""
    if len(clouds) == 1 and segments and segments[0] not in clouds and (
            _VERSION.fullmatch(decode(segments[0]))
            or not (len(segments) > 1 and decode(segments[1]) in ("image", *SHORT_FORMS, *OTHER_RESOURCES))):
        segments = [*clouds, *segments]
    if prefix:  # a purge: a whole URL's origin path, or a prefix of origin paths
        decoded = [decode(segment) for segment in segments]
        if len(decoded) < 2 or decoded[0] not in clouds or decoded[1] in OTHER_RESOURCES or decoded[1:] == ["image"]:
            raise NothingToServe("not found")
        try:
            return Delivery(split_path(segments, decode).origin_path, parse_transformation(""), None)
        except EdgeError:  # a prefix, in `image/<type>/`, written in whichever form (SEO, root path)
            rest = decoded[1:] if decoded[1] == "image" else \
                ["image", "upload", *decoded[2 if decoded[1] in SHORT_FORMS else 1:]]
            return Delivery("/".join(rest), parse_transformation(""), None)
    path = split_path(segments, decode)
    types = PUBLIC_TYPES + (SIGNED_TYPES if signed_only else ())
    if path.cloud not in clouds or path.delivery_type not in types:
        raise NothingToServe("not found")
    # as Cloudinary's strict transformations: a signed URL may ask for any transformation
    signed = check_signature(path, secrets, signed_only)
    stem, dot, extension = path.public_id.rpartition("/")[2].rpartition(".")
    if dot and stem:  # another cloud's, an unsigned one where signatures are wanted: their 404 or 401 first
        refuse_document(dot + extension)
    # flags that only change the answer's headers make no image: with nothing else, it is the stored one (re-encoded,
    # it had been a render and a cache entry of its own, and with `auto_format` one per browser)
    shaping = tuple(component for component in path.components if not _headers_only(component))
    transformation = translate(shaping, named, named_only and not signed, path.extension_format)
    if signed_only:  # the version is not signed: here it pins nothing, as on Cloudinary (the newest is served)
        path = replace(path, version=None)  # else a URL signed for the asset opened every upload the backup kept
    return Delivery(path.origin_path, transformation, None if shaping else path.extension_format,
                    delivery_flag(path.components, "attachment"),
                    delivery_flag(path.components, "immutable_cache") is not None)
