"""What every kind of URL renders to, fingerprinted, so that no change of it lands without a new
`RENDER_VERSION` (edge/cache/keys.py): outputs are cached under a key carrying that version for as long
as their original is unchanged, and a node upgraded on a kept cache would serve the earlier release's
renders beside the new ones. `tests/test_render_fingerprints.py` renders the corpus below through real
nodes and compares it with `tests/render_fingerprints.json`. After an intended change:

    raise RENDER_VERSION in edge/cache/keys.py, then
    .venv/bin/python -m tests.render_fingerprints --update

A change confined to one parameter may raise its revision instead (`REVISED_PARAMETERS`, beside
RENDER_VERSION): only the outputs of URLs using it are then keyed anew.

`--update` refuses to record a render that changed beyond the tolerance while RENDER_VERSION and the URL's
revision marks are the recorded ones (unless an input file it reads changed: a fixture's change is not a render change); it
keeps a recorded fingerprint that is within the tolerance, so that small changes cannot add up unseen,
and records URLs new to the corpus.

A fingerprint is the output's format (its loader), width, height (of a frame), frame count, band count
and the output decoded, premultiplied by its alpha (hidden colours do not count) and averaged down to
16×16 values per band. Two fingerprints match when all of that is equal and no value differs by more
than TOLERANCE levels (of 255). Measured on this corpus (libvips 8.18, 96 lossy renders): two runs differ
by 0 (renders are deterministic); `q-80` against `q-81` by at most 3 (JPEG and WebP; AVIF 1), against
`q-85` by 4; the whole output shifted by 1 px by 12 (median of 130; 110 of them beyond 6, flat ones
less). The changes that slipped through before r3, put back: square corners of an `r-max` colour block,
186; image layers trimmed by default, 28 to 195 (8 URLs). TOLERANCE = 6 is twice `q-81`'s noise.
Outputs under about 100 px are noisier (a 40 px JPEG: 6 at `q-81`): the corpus renders larger ones.
Not seen, by design of the fingerprint: what does not change the decoded pixels by more than the
tolerance (the default quality or chroma subsampling moved a few steps, sharpening) and what a
browser applies but the decode here does not: an ICC profile kept or dropped, an EXIF orientation
left on an output already turned. Such a change needs a new RENDER_VERSION by review.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyvips

from edge.cache.keys import RENDER_VERSION, format_marks, revision_marks
from edge.transform import faces
from edge.transform.formats import plan_format
from tests import imagecorpus
from tests.nodes import SAMPLES, local_config, start_node, write_config
from tests.photos import make_photos

FINGERPRINTS = Path(__file__).resolve().parent / "render_fingerprints.json"
UPDATE_COMMAND = ".venv/bin/python -m tests.render_fingerprints --update"
SIDE = 16
TOLERANCE = 6
BROWSER = {"Accept": "image/avif,image/webp,*/*"}
WEBP_ONLY = {"Accept": "image/webp,*/*"}
#: the node with the shipped defaults; the other one has every `[defaults]` that changes a render
SHIPPED, CONFIGURED = "shipped", "configured"
NAMED = '[named_transformations]\nthumb = "w-200,h-200,c-at_max"\n'
WATERMARK = '[[endpoints]]\nid = "wm"\norigins = ["samples"]\n' \
    'watermark = "l-image,i-logo-transparent.png,w-40,lx-N6,ly-N6,o-70,l-end"\n'
CONFIGS = {
    SHIPPED: NAMED,
    CONFIGURED: "[defaults]\nquality = 50\navif_effort = 0\nauto_format = true\n",
}


@dataclass(frozen=True)
class Case:
    url: str
    node: str = SHIPPED
    headers: tuple[tuple[str, str], ...] = tuple(BROWSER.items())

    @property
    def name(self) -> str:
        """Its key in the fingerprint file: the node, the URL and what of the request is not the browser's."""
        extra = [f"{k}: {v}" for k, v in self.headers if (k, v) not in BROWSER.items()]
        return " ".join([self.node, self.url, *extra])

    @property
    def marks(self) -> str:
        """The revision marks its output's key carries (`keys.REVISED_PARAMETERS`), read from the transformation
        as its URL writes it (the parameters and their parts are those of the canonical form), and those of the
        format planned for it (`keys.format_marks`: the URL's `f-`, its extension's, `f-auto`'s for its `Accept`;
        every URL without `f-` is `f-auto`'s on the configured node)."""
        written = re.search(r"/tr:([^/]+)/|[?&]tr=([^&]+)", self.url)
        transformation = (written[1] or written[2]) if written else ""
        requested = re.search(r"(?:^|[,:])f-([a-z]+)(?=[,:]|$)", transformation)
        path = self.url.partition("?")[0].rpartition("/")[2]
        planned, _ = plan_format(requested[1] if requested else None, path, dict(self.headers).get("Accept"),
                                 default_auto=self.node == CONFIGURED)
        return ",".join(filter(None, (revision_marks(transformation), format_marks(planned, transformation))))

    @property
    def needs_faces(self) -> bool:
        return "fo-face" in self.url or "faces-" in self.url


def _cases(node: str, urls: list[str], headers: dict[str, str] = BROWSER) -> list[Case]:
    return [Case(url, node, tuple(headers.items())) for url in urls]


LOGO = "l-image,i-logo-transparent.png"
CANVAS = "l-image,i-ik_canvas"
CORPUS = _cases(SHIPPED, [
    # sizes, aspect ratio, dpr, expressions, the query form, no transformation
    "/coffee.jpg", "/tr:w-200/coffee.jpg", "/tr:h-120/coffee.jpg", "/tr:w-0.3/coffee.jpg",
    "/tr:w-200,h-200/coffee.jpg", "/tr:w-240,ar-16-9/astronaut.jpg", "/tr:h-160,ar-1-2/coffee.jpg",
    "/tr:w-100,dpr-2/chelsea.jpg", "/tr:w-2600,dpr-2,q-20/chelsea.jpg", "/tr:w-iw_div_4/coffee.jpg",
    "/tr:w-200,ar-iar_div_2/coffee.jpg", "/coffee.jpg?tr=w-150:rt-90", "/tr:w-auto/coffee.jpg",
    # crop strategies
    "/tr:w-200,h-120,c-force/astronaut.jpg", "/tr:w-200,h-120,c-at_max/astronaut.jpg",
    "/tr:w-800,h-200,c-at_max_enlarge/chelsea.jpg", "/tr:w-200,h-120,c-at_least/astronaut.jpg",
    "/tr:w-900,h-120,c-maintain_ratio_no_enlarge/chelsea.jpg", "/tr:w-800,h-200,c-enlarge_to_fit/chelsea.jpg",
    # focus, zoom, faces
    "/tr:w-240,h-100,fo-top/astronaut.jpg", "/tr:w-100,h-200,fo-left/coffee.jpg",
    "/tr:w-120,h-120,fo-bottom_right/chelsea.jpg", "/tr:w-120,h-120,fo-auto/chelsea.jpg",
    "/tr:w-150,h-150,fo-auto,z-2/astronaut.jpg", "/tr:w-150,h-150,fo-top,z-3/astronaut.jpg",
    "/tr:w-240,h-120,fo-face/astronaut.jpg", "/tr:w-150,h-150,fo-face,z-0.5/astronaut.jpg",
    "/tr:w-120,h-120,fo-face/coffee.jpg", "/tr:cm-extract,fo-face/astronaut.jpg",
    "/tr:cm-extract,fo-face,ar-1-1,z-0.5/astronaut.jpg",
    # crop modes and extract positions
    "/tr:w-240,h-120,cm-pad_resize,bg-F3E5AB/astronaut.jpg", "/tr:w-240,h-120,cm-pad_resize,fo-left/astronaut.jpg",
    "/tr:w-200,h-200,cm-pad_resize/logo-transparent.png",
    "/tr:w-400,h-200,cm-pad_resize_no_enlarge,bg-F3E5AB/logo-transparent.png",
    "/tr:cm-extract,w-160,h-160,fo-auto/coffee.jpg", "/tr:cm-extract,x-180,y-60,w-160,h-160/astronaut.jpg",
    "/tr:cm-extract,xc-300,yc-170,w-200,h-120/coffee.jpg",
    "/tr:cm-pad_extract,w-240,h-240,bg-navy/logo-transparent.png",
    "/tr:cm-pad_extract_no_shrink,w-700,h-300,bg-red/chelsea.jpg",
    # rotations, flips, trim
    "/tr:w-200,rt-90/chelsea.jpg", "/tr:w-200,rt-N90/chelsea.jpg", "/tr:w-200,rt-180/chelsea.jpg",
    "/tr:w-160,rt-30,bg-FFD700/chelsea.jpg", "/tr:w-160,rt-12.5,f-png/logo-transparent.png",
    "/tr:w-200,fl-h/chelsea.jpg", "/tr:w-200,fl-v/chelsea.jpg", "/tr:w-200,fl-h_v/chelsea.jpg",
    "/tr:w-240,h-240,cm-pad_resize,bg-white:t-true/chelsea.jpg", "/tr:t-50,w-200/logo-transparent.png",
    # effects
    "/tr:w-240,bl-3/coffee.jpg", "/tr:w-240,bl-15/coffee.jpg", "/tr:w-240,e-grayscale/coffee.jpg",
    "/tr:w-240,e-contrast/camera.jpg", "/tr:w-240,e-sharpen/chelsea.jpg", "/tr:w-240,e-sharpen-60/chelsea.jpg",
    "/tr:w-240,e-usm/chelsea.jpg", "/tr:w-240,e-usm-2-2-3-0.02/chelsea.jpg",
    "/tr:w-200,e-shadow,f-png/logo-transparent.png", "/tr:w-200,e-shadow-bl-6_st-60_x-4_y-4,f-png/logo-transparent.png",
    "/tr:w-240,e-gradient/coffee.jpg", "/tr:w-240,e-gradient-ld-90_from-1E3A8A50_to-FFFFFF00_sp-0.6/coffee.jpg",
    "/tr:w-240,e-brightness-N40/coffee.jpg", "/tr:w-240,e-saturation-80/coffee.jpg",
    "/tr:w-240,e-sepia-80/coffee.jpg", "/tr:w-240,e-negate/coffee.jpg", "/tr:w-240,e-pixelate-12/coffee.jpg",
    "/tr:w-200,e-sepia-60,f-png/logo-transparent.png", "/tr:w-240,e-pixelatefaces-8/astronaut.jpg",
    "/tr:w-240,e-blurfaces-10/astronaut.jpg", "/tr:w-240,e-vibrance-80/coffee.jpg",
    "/tr:w-240,e-blackwhite-40/coffee.jpg", "/tr:w-240,e-autocolor/coffee.jpg",
    "/tr:w-240,e-autobrightness/coffee.jpg", "/tr:w-240,e-contrast-50/camera.jpg",
    "/tr:w-240,e-hue-50/coffee.jpg", "/tr:w-240,e-red-N40,e-blue-30/coffee.jpg",
    "/tr:w-240:e-pixelate-10,e-region-60_40_100_70/coffee.jpg",
    "/tr:w-240,e-sigmoidcontrast-60/camera.jpg", "/tr:w-240,e-sigmoidcontrast-N60/camera.jpg",
    "/tr:w-240,e-linearcontrast-150/camera.jpg", "/tr:w-240,e-gamma-80/coffee.jpg", "/tr:w-240,e-gamma-N40/coffee.jpg",
    "/tr:w-240,e-brightnesshsb-60/coffee.jpg", "/tr:w-240,e-colorize-co-FF6600_in-40/coffee.jpg",
    "/tr:w-240,e-vignette-60/chelsea.jpg", "/tr:w-200,e-opacitythreshold-50,f-png/logo-transparent.png",
    "/tr:w-200,bl-4,f-png/logo-transparent.png", "/tr:w-200,e-contrast,f-png/logo-transparent.png",
    "/tr:w-200,e-sharpen-60,f-png/logo-transparent.png", "/tr:w-200,e-usm-2-2-3-0,f-png/logo-transparent.png",
    # distortions
    "/tr:w-240,e-distort-p-30_10_210_0_240_160_0_150/coffee.jpg", "/tr:w-240,e-distort-a-120/coffee.jpg",
    "/tr:w-240,e-distort-a-N90,bg-00000000,f-png/chelsea.jpg",
    "/tr:w-240,cr-0077FF_25_9A2109/coffee.jpg", "/tr:w-240,cr-00A000/coffee.jpg",
    # corners, backgrounds, borders, opacity
    "/tr:w-200,h-200,r-30,f-png/astronaut.jpg", "/tr:w-200,h-200,r-max,f-png/astronaut.jpg",
    "/tr:w-200,h-200,r-max,bg-0F172A/astronaut.jpg", "/tr:w-200,h-200,r-0_60_0_60,f-png/astronaut.jpg",
    "/tr:w-200,h-140,cm-pad_resize,bg-skyblue/chelsea.jpg",
    "/tr:w-200,h-140,cm-pad_resize,bg-FF000060,f-png/chelsea.jpg",
    "/tr:w-200,bg-1E293B,f-png/logo-transparent.png", "/tr:w-200,h-140,cm-pad_resize,bg-dominant/coffee.jpg",
    "/tr:w-200,h-140,cm-pad_resize,bg-blurred_20_N40/astronaut.jpg",
    "/tr:w-200,h-140,cm-pad_resize,bg-blurred/coffee.jpg",
    "/tr:w-200,b-8_FF6600/chelsea.jpg", "/tr:w-200:b-cw_mul_0.05_yellow/chelsea.jpg",
    "/tr:w-200,o-40,f-png/chelsea.jpg", "/tr:w-200,o-40,bg-000000,f-jpg/chelsea.jpg",
    "/tr:w-200,o-50,f-gif/chelsea.jpg",
    # chains, named transformations, the default image, the original's bytes
    "/tr:w-300,h-300,fo-auto:rt-90:e-grayscale,r-max,f-png/chelsea.jpg",
    "/tr:w-200,h-200,cm-pad_resize,bg-white:b-4_333333:r-20,f-png/logo-transparent.png",
    "/tr:n-thumb,rt-90/coffee.jpg", "/tr:w-160,di-logo-transparent.png/no-such-file.jpg",
    "/tr:orig-true,w-100/coffee.jpg",
    # formats, quality, encoding options; colour inputs
    "/tr:w-200,f-auto/coffee.jpg", "/tr:w-200,f-webp/coffee.jpg", "/tr:w-200,f-avif,q-30/coffee.jpg",
    "/tr:w-200,f-gif/coffee.jpg", "/tr:w-200,f-png/logo-transparent.png", "/tr:w-200,f-jpg/logo-transparent.png",
    "/tr:w-200,f-orig/coffee.jpg", "/tr:w-200,f-auto,r-20/coffee.jpg", "/tr:w-240,q-10/coffee.jpg",
    "/tr:w-240,q-90,f-webp/coffee.jpg", "/tr:w-200,pr-true/coffee.jpg", "/tr:w-200,pr-true,f-png/logo-transparent.png",
    "/tr:w-200,f-webp,lo-true/logo-transparent.png", "/tr:w-100,f-avif,lo-true/chelsea.jpg",
    "/tr:w-200,md-true/coffee.jpg", "/tr:w-128,cp-true/p3.jpg", "/tr:w-128/p3.jpg", "/tr:w-128/cmyk.jpg",
    "/tr:w-128/png16.png", "/tr:w-128,e-grayscale,f-png/camera.jpg",
    # animations and pages
    "/anim.gif", "/tr:w-20,rt-90/anim.gif", "/tr:w-20,f-auto/anim.gif", "/tr:pg-3,f-png/anim.gif",
    # layers: images, colour blocks, text, positions, blends, nesting
    f"/tr:w-300,{LOGO},w-70,lx-N10,ly-N10,l-end/coffee.jpg",
    "/tr:w-300,l-image,i-chelsea.jpg,w-90,h-90,r-max,lx-10,ly-10,l-end/coffee.jpg",
    f"/tr:w-300,{LOGO},w-120,lx-220,ly-110,rt-30,l-end/chelsea.jpg",
    "/tr:w-300,l-image,i-chelsea.jpg,w-90,rt-30,lx-10,ly-10,l-end/coffee.jpg",
    f"/tr:w-200,h-200,{LOGO},lx-0,ly-0,l-end,f-png/astronaut.jpg",
    f"/tr:w-200,h-200,{LOGO},t-true,lx-0,ly-0,l-end,f-png/astronaut.jpg",
    f"/tr:w-300,{LOGO},w-bw_mul_0.3,lx-bw_sub_cw_sub_10,ly-bh_mul_0.05,l-end/coffee.jpg",
    f"/tr:w-300,{LOGO},w-80,lfo-bottom_left,l-end/coffee.jpg",
    f"/tr:w-200,h-200,{CANVAS},bg-FF0000,w-100,h-100,r-max,lx-0,ly-0,l-end,f-png/astronaut.jpg",
    f"/tr:w-200,h-200,{CANVAS},bg-FF000050,al-9,w-100,h-100,lx-0,ly-0,l-end,f-png/astronaut.jpg",
    f"/tr:w-200,h-200,{CANVAS},bg-0000FF,al-4,w-0.5,h-0.25,lxc-100,lyc-100,l-end/astronaut.jpg",
    f"/tr:w-300,{CANVAS},bg-000000,al-6,h-44,lfo-bottom,l-end,l-text,i-Fresh%20coffee,fs-26,co-FFFFFF,lx-12,ly-N8,"
    "l-end/coffee.jpg",
    "/tr:w-300,l-text,i-Text%20wraps%20at%20the%20layer%27s%20width,fs-22,w-150,ia-left,co-FFFFFF,bg-1E293B,pa-8_12,"
    "tg-b,lfo-top_left,l-end/chelsea.jpg",
    "/tr:w-300,l-text,i-Espresso,fs-44,co-FFFFFF,fol-2_000000,fsh-00000099_4,lfo-top,ly-12,l-end/coffee.jpg",
    "/tr:w-300,l-text,i-Two%0Alines,fs-bh_div_8,lh-40,ia-right,tg-i_strikethrough,al-7,rt-90,lx-10,ly-10,l-end"
    "/coffee.jpg",
    f"/tr:w-300,{CANVAS},bg-red,w-120,h-40,r-8,lfo-top_right,l-text,i-SALE,co-white,fs-20,l-end,l-end/coffee.jpg",
    f"/tr:w-300,{CANVAS},bg-FF9900,lm-multiply,l-end/chelsea.jpg",
    f"/tr:w-240,{LOGO},w-150,lm-cutter,l-end,f-webp/coffee.jpg",
    f"/tr:w-240,{LOGO},w-150,lm-cutout,l-end,f-webp/coffee.jpg",
    "/wm/tr:w-200/coffee.jpg",
    # 12 MP photos: shrink-on-load, the EXIF orientation, a region at full scale, a layer from one
    "/tr:w-300/photo.jpg", "/tr:w-300,h-300,fo-auto,f-webp/photo.jpg", "/tr:w-200,rt-90/exif-6.jpg",
    "/tr:cm-extract,x-4000,y-2600,w-200,h-200/photo.jpg", "/tr:w-300,l-image,i-photo.jpg,w-100,l-end/coffee.jpg",
]) + [
    Case("/tr:w-auto/coffee.jpg", headers=(*BROWSER.items(), ("Sec-CH-Width", "250"))),
    Case("/tr:w-100,dpr-auto/coffee.jpg", headers=(*BROWSER.items(), ("Sec-CH-DPR", "2.625"))),
    Case("/tr:w-200,f-auto/coffee.jpg", headers=tuple(WEBP_ONLY.items())),
    Case("/tr:w-200,f-auto/coffee.jpg", headers=(("Accept", "*/*"),)),
    Case("/tr:w-200,f-auto/logo-transparent.png", headers=(("Accept", "*/*"),)),
] + _cases(CONFIGURED, [
    # `[defaults]`: quality 50, AVIF effort 0, every URL without `f-` as `f-auto`
    "/tr:w-200/coffee.jpg", "/tr:w-200,f-jpg/coffee.jpg", "/tr:w-200,f-webp/coffee.jpg",
    "/tr:w-200,q-90,f-jpg/coffee.jpg",
]) + [
    Case("/tr:w-200/coffee.jpg", CONFIGURED, tuple(WEBP_ONLY.items())),
    Case("/tr:w-200/logo-transparent.png", CONFIGURED, (("Accept", "*/*"),)),
]


def write_inputs(folder: Path) -> dict[str, str]:
    """Every file the corpus reads, written to `folder`; its SHA-256 by name."""
    for sample in SAMPLES.iterdir():
        if sample.suffix in (".jpg", ".png"):
            shutil.copy(sample, folder / sample.name)
    photos = make_photos(folder / "photos")
    for name in (photos.jpeg, photos.oriented[6]):
        shutil.move(photos.path(name), folder / name)
    shutil.rmtree(photos.folder)
    generated = {"p3.jpg": imagecorpus.icc_profile_jpeg(), "cmyk.jpg": imagecorpus.cmyk_jpeg(),
                 "png16.png": imagecorpus.png16(), "anim.gif": imagecorpus.animated_gif()}
    for name, body in generated.items():
        (folder / name).write_bytes(body)
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())}


def inputs_of(case: Case, inputs: dict[str, str]) -> list[str]:
    """The input files a case reads (and its endpoint's watermark)."""
    reads = case.url + (WATERMARK if case.url.startswith("/wm/") else "")
    return [name for name in inputs if name in reads]


def fingerprint(body: bytes) -> dict:
    """What a change of the render shows in, and encoders' noise hardly does (see the module's docstring)."""
    image = pyvips.Image.new_from_buffer(body, "")
    frames = image.get_n_pages()
    if frames > 1:
        image = pyvips.Image.new_from_buffer(body, "", n=-1)
    height = image.get("page-height") if frames > 1 else image.height
    assert image.format == "uchar", f"an output of {image.format} samples"
    visible = image.premultiply().cast("uchar") if image.hasalpha() else image  # what is hidden does not count
    small = visible.resize(SIDE / image.width, vscale=SIDE / image.height, kernel="linear")
    return {"format": image.get("vips-loader").removesuffix("_buffer"), "size": [image.width, height],
            "frames": frames, "bands": image.bands, "pixels": base64.b64encode(small.write_to_memory()).decode()}


def difference(recorded: dict, made: dict) -> str | None:
    """Why two fingerprints differ, or None when they match within TOLERANCE."""
    for key in ("format", "size", "frames", "bands"):
        if recorded[key] != made[key]:
            return f"{key} {recorded[key]} -> {made[key]}"
    pairs = zip(base64.b64decode(recorded["pixels"]), base64.b64decode(made["pixels"]))
    largest = max(abs(a - b) for a, b in pairs)
    return f"pixels differ by up to {largest} (tolerance {TOLERANCE})" if largest > TOLERANCE else None


def cases() -> list[Case]:
    """The corpus this machine can render: `fo-face` and the faces' effects need OpenCV (the `[faces]` extra)."""
    return [case for case in CORPUS if faces.missing() is None or not case.needs_faces]


async def render_corpus(folder: Path) -> tuple[dict[str, dict], dict[str, str]]:
    """Fingerprints of `cases()` made by real nodes over inputs written to `folder`, and the inputs' digests."""
    inputs_folder = folder / "inputs"
    inputs_folder.mkdir()
    inputs = write_inputs(inputs_folder)
    fingerprints = {}
    for node_name, before in CONFIGS.items():
        settings = f'{before}[server]\naccess_log = false\n[cache]\ndir = "cache"\n'
        config = local_config(inputs_folder, settings, WATERMARK)
        (folder / node_name).mkdir()
        node = await start_node(write_config(folder / node_name, config))
        try:
            for case in (case for case in cases() if case.node == node_name):
                response = await node.fetch(case.url, headers=dict(case.headers))
                assert response.code == 200, f"{case.name}: {response.code} {response.body[:200]!r}"
                fingerprints[case.name] = {**fingerprint(response.body), "marks": case.marks}
        finally:
            await node.stop()
    return fingerprints, inputs


def load() -> dict:
    return json.loads(FINGERPRINTS.read_text()) if FINGERPRINTS.exists() else \
        {"render_version": None, "inputs": {}, "renders": {}}


def merged(recorded: dict, made: dict[str, dict], inputs: dict[str, str]) -> tuple[dict[str, dict], list[str]]:
    """The fingerprints to record, and the renders that changed beyond the tolerance while RENDER_VERSION and
    the URL's revision marks are the recorded ones (none may then be recorded)."""
    same_version = recorded["render_version"] == RENDER_VERSION
    renders, refused = {}, []
    for case in CORPUS:
        old, new = recorded["renders"].get(case.name), made.get(case.name)
        if new is None:  # a face URL on a machine without OpenCV: kept as it was
            if old is not None:
                renders[case.name] = old
        elif old is None or not same_version or old.get("marks", "") != new.get("marks", ""):
            renders[case.name] = new
        elif difference(old, new) is None:
            renders[case.name] = old  # within the tolerance: kept, so that small changes cannot add up
        elif any(recorded["inputs"].get(name) != inputs[name] for name in inputs_of(case, inputs)):
            renders[case.name] = new  # an input file changed, not the render
        else:
            refused.append(f"{case.name}: {difference(old, new)}")
    return renders, refused


def update() -> int:
    """Record the corpus's fingerprints; refuse (1) while a render changed under the recorded RENDER_VERSION."""
    with tempfile.TemporaryDirectory() as folder:
        made, inputs = asyncio.run(render_corpus(Path(folder)))
    renders, refused = merged(load(), made, inputs)
    if refused:
        print(f"renders changed while RENDER_VERSION is still {RENDER_VERSION}: raise it in edge/cache/keys.py "
              "and run this again. Changed:\n  " + "\n  ".join(refused), file=sys.stderr)
        return 1
    text = json.dumps({"render_version": RENDER_VERSION, "inputs": inputs, "renders": renders}, indent=1)
    FINGERPRINTS.write_text(text + "\n")
    print(f"recorded {len(renders)} renders of {RENDER_VERSION} in {FINGERPRINTS}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--update", action="store_true", required=True,
                        help="record the fingerprints (tests/render_fingerprints.json)")
    parser.parse_args()
    sys.exit(update())
