"""A node over a folder of generated test images, for the transformation tests.

Import the fixtures into a test module (`from tests.transform_node import image_node  # noqa: F401`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests import imagecorpus as corpus
from tests.nodes import SAMPLES, decode, write_config

NAMED = {"thumb": "w-200,h-200,c-at_max", "tiny_png": "w-20:f-png"}


def image_files() -> dict[str, bytes]:
    """Every file the test origin serves, by path."""
    files = {
        "card.png": corpus.quadrants_png(),
        "framed.png": corpus.framed_png(),
        "flat.png": corpus.low_contrast_png(),
        "busy.png": corpus.busy_patch_png(),
        "photo.jpg": corpus.photo_jpeg(600, 400),
        "alpha.png": corpus.png_with_alpha(64, 64),
        "p3.jpg": corpus.icc_profile_jpeg(),
        "anim.gif": corpus.animated_gif(),
        "anim.webp": corpus.animated_webp(),
        "jpeg-named.png": corpus.photo_jpeg(64, 48),
        "no-extension": corpus.photo_jpeg(64, 48),
        "defaults/missing.png": corpus.quadrants_png(40, 20),
        "truncated.jpg": corpus.truncated_jpeg(),
        "bomb.png": corpus.decompression_bomb_png(),
        "html.jpg": corpus.not_an_image(),
    }
    files.update({f"exif-{n}.jpg": corpus.exif_oriented_jpeg(n) for n in range(1, 9)})
    return files


def write_images(root: Path) -> Path:
    for path, body in image_files().items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(body)
    for sample in SAMPLES.iterdir():
        if sample.suffix in (".jpg", ".png"):
            shutil.copy(sample, root / sample.name)
    return root


def images_config(root: Path, extra: str = "") -> str:
    named = "\n".join(f'{name} = "{text}"' for name, text in NAMED.items())
    return f"""
{extra}
[named_transformations]
{named}

[[origins]]
name = "images"
type = "local"
root = "{root}"

[[endpoints]]
id = ""
origins = ["images"]

[[endpoints]]
id = "named"
origins = ["images"]
named_only = true
"""


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    return write_images(tmp_path_factory.mktemp("images"))


@pytest.fixture
async def image_node(node_factory, image_root, tmp_path):
    return await node_factory(write_config(tmp_path, images_config(image_root)))


async def fetch_image(node, path: str, *, status: int = 200, headers: dict[str, str] | None = None):
    """GET `path`, check the status, and return (response, decoded image or None)."""
    response = await node.fetch(path, headers=headers)
    assert response.code == status, (path, response.code, response.body[:200])
    return response, (decode(response) if status == 200 else None)

