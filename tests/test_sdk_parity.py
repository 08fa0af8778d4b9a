"""What the installed ImageKit SDK (`imagekitio`) can emit for images, the node serves, or refuses with
a 400 "not supported" that docs/transformations.md lists.

The keys come from the SDK itself: every field of its `Transformation` type, turned into a URL key by
its own mapping (`SUPPORTED_TRANSFORMS`), and every value its type lists (`Literal[...]`), built into
the `tr` string by its own builder. A new SDK version with a new key or value fails here until the key
gets a sample below or an entry in `edge.transform.options.UNSUPPORTED`.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path
from urllib.parse import quote

import pytest
from imagekitio.lib.helper import SUPPORTED_TRANSFORMS, _build_transformation_string
from imagekitio.types.shared_params.transformation import Transformation

from edge.transform.options import UNSUPPORTED, UNSUPPORTED_FORMATS
from tests.assets import close, pixel
from tests.imagecorpus import ANIMATION_COLOURS
from tests.nodes import decode, write_config
from tests.photos import SIZE, photos  # noqa: F401 - photos is a fixture
from tests.transform_node import fetch_image, images_config, write_images

#: The `overlay` field and the keys only written inside a layer: tests/test_overlays.py builds those
#: URLs with the SDK itself (image, text and solid-colour layers) and checks their pixels
LAYER_KEYS = {
    "overlay", "l", "i", "ie", "lx", "ly", "lfo", "lm", "fs", "ff", "co", "pa", "al", "ia", "tg", "lh",
    "fol", "fsh",
}
#: `raw` is the SDK's pass-through: its text is whatever the caller writes, not a key
PASS_THROUGH = {"raw"}

#: SDK field → sample values (besides the values its type lists) → (file, what the URL adds)
SAMPLES: dict[str, tuple] = {
    "width": (300, 0.5, "auto", "iw_div_2", "ih_mul_0.8_add_iw_mul_0.1"), "height": (200, 0.25, "ih_mul_0.5"),
    "aspect_ratio": ("4:3", "4_3", "4-3", 1.5, "iar_div_2"),  # the SDK writes "4:3" as given: `ar-4:3`
    "background": ("red", "F3F3F3", "AAFF0010", "dominant", "blurred", "blurred_25_N15"),
    "blur": (10, 2.5), "border": ("5_FFF000",), "dpr": (2, "auto"), "zoom": (0.5, 2), "focus": ("center", "auto", "top_left"),
    "quality": (40,), "x": (10,), "y": (10,), "x_center": (100,), "y_center": (100,),
    "radius": (20, "10_20_30_40"), "rotation": (90, "N40", -90, 12.5, "auto"), "named": ("thumb",),
    "default_image": ("photo.jpg",), "original": (True,), "contrast_stretch": (True,),
    "sharpen": (30,), "unsharp_mask": ("2-2-0.8-0.024",),
    "shadow": ("bl-5_st-60_x-N4_y-4",), "colorize": ("co-FF0000_in-15", "co-red", "in-40"),
    "distort": ("p-50_50_550_0_600_400_0_350", "a-20", "a-N45"),
    "color_replace": ("FF0000", "FF0000_50", "FF0000_50_00FF00", "blue_20_red"),  # the SDK's three forms
    "gradient": ("ld-top_from-red_to-00000050_sp-0.5",),
    "progressive": (True,), "lossless": (True,), "color_profile": (True,), "metadata": (True,),
    "opacity": (50,), "trim": (20,), "page": (2,),
}
#: what a sample needs with it: w/h for dpr and the crop parameters, an extract for x/y
CONTEXT = {"dpr": {"width": 100}, "zoom": {"width": 200, "height": 200, "focus": "face"}, "aspect_ratio": {"width": 100}, "crop": {"width": 200, "height": 200}, "crop_mode": {"width": 200, "height": 200},
           "x": {"crop_mode": "extract", "width": 50, "height": 50},
           "y": {"crop_mode": "extract", "width": 50, "height": 50},
           "x_center": {"crop_mode": "extract", "width": 50, "height": 50},
           "y_center": {"crop_mode": "extract", "width": 50, "height": 50},
           "background": {"width": 300, "height": 100, "crop_mode": "pad_resize"}}
#: files the samples read (the default: a 600×400 JPEG photo)
FILES = {"page": "anim.gif", "shadow": "alpha.png", "trim": "framed.png"}
#: sample values for the unsupported keys, to check their 400
UNSUPPORTED_SAMPLES = {"ai_change_background": "prompt-snow road", "ai_edit": "prompt-a hat",
                       "density": 300,
                       "duration": 5, "end_offset": 10, "start_offset": 5, "streaming_resolutions": ["240"]}


def _literals(hint) -> list:
    if typing.get_origin(hint) is typing.Literal:
        return list(typing.get_args(hint))
    return [value for argument in typing.get_args(hint) for value in _literals(argument)]


def sdk_fields() -> dict[str, list]:
    """Every field of the SDK's `Transformation` → the values its type lists."""
    return {field: _literals(hint) for field, hint in typing.get_type_hints(Transformation, include_extras=True).items()}


def sdk_key(field: str) -> str:
    return SUPPORTED_TRANSFORMS.get(field, field)


def sdk_text(values: dict) -> str:
    """The `tr` text the SDK writes for one step, quoted for the query as an HTTP client sends it."""
    return quote(_build_transformation_string([values]), safe=",:-_.@")


def test_every_key_the_sdk_emits_is_served_or_listed():
    fields = sdk_fields()
    unlisted = [field for field in fields if field not in SAMPLES and not fields[field]
                and field not in PASS_THROUGH | LAYER_KEYS
                and sdk_key(field) not in set(UNSUPPORTED) | LAYER_KEYS]
    assert unlisted == [], "new SDK keys: give each a sample here or list it in options.UNSUPPORTED"
    # the text-overlay keys of the mapping are written only inside layers
    assert set(SUPPORTED_TRANSFORMS.values()) - {sdk_key(f) for f in fields} <= LAYER_KEYS


def test_the_docs_parity_table_names_every_sdk_field():
    docs = (Path(__file__).resolve().parent.parent / "docs" / "transformations.md").read_text()
    table = docs[docs.index("## ImageKit SDK parity"):]
    named = {name for row in re.findall(r"^\| ([^|]+) \|", table, re.M) for name in row.split(", ")}
    assert set(sdk_fields()) - named == set()


def served_cases() -> list[tuple[str, str, str]]:
    """(field, tr text as the SDK writes it, file) for every sample and every listed value."""
    cases = []
    for field, listed in sdk_fields().items():
        key = sdk_key(field)
        if key in UNSUPPORTED or field in PASS_THROUGH or field in LAYER_KEYS:
            continue
        for value in [*listed, *SAMPLES.get(field, ())]:
            if field == "format" and value in UNSUPPORTED_FORMATS:
                continue
            cases.append((field, sdk_text({**CONTEXT.get(field, {}), field: value}), FILES.get(field, "photo.jpg")))
    return cases


@pytest.fixture
async def parity_node(node_factory, tmp_path):
    root = write_images(tmp_path / "images")
    return await node_factory(write_config(tmp_path, images_config(root)))


async def test_every_sdk_sample_is_served(parity_node):
    failures = []
    for field, text, file in served_cases():  # one node, every case: each mismatch is reported
        response = await parity_node.fetch(f"/{file}?tr={text}", headers={"Accept": "image/webp,*/*"})
        if response.code != 200:
            failures.append((field, text, response.code, response.body[:120]))
        else:
            image = decode(response)
            assert image.width > 0 and image.height > 0
    assert failures == []


async def test_every_unsupported_sdk_key_is_a_400_naming_it(parity_node):
    fields = sdk_fields()
    for field in fields:
        key = sdk_key(field)
        if key not in UNSUPPORTED:
            continue
        value = UNSUPPORTED_SAMPLES.get(field, fields[field][0] if fields[field] else True)
        text = sdk_text({field: value})
        response = await parity_node.fetch(f"/photo.jpg?tr={text}")
        assert response.code == 400, (field, text)
        assert f"invalid transformation: {key}" in response.body.decode() and "not supported" in response.body.decode()
    for fmt, why in UNSUPPORTED_FORMATS.items():
        response = await parity_node.fetch(f"/photo.jpg?tr=f-{fmt}")
        assert (response.code, response.body.decode()) == (400, f"invalid transformation: f-{fmt}: not supported ({why})\n")
    response = await parity_node.fetch("/photo.jpg?tr=if-w_gt_300,w-100,if-end")  # served: conditional steps
    assert response.code == 200 and decode(response).width == 100
