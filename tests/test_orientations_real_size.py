"""The EXIF orientations tests/test_real_size.py does not turn (2, 4, 5, 7: the mirrored ones) on 12 MP JPEGs,
through a node on a real socket, under the geometric parameters: each answer is the same picture as the
answer for the upright JPEG (the region cropped, the side padded, the way turned), up to JPEG noise."""

from __future__ import annotations

from pathlib import Path

import pytest
import pyvips

from tests.imagecorpus import stored_with_orientation
from tests.nodes import decode, local_config, write_config
from tests.photos import SIZE, upright_photo

MIRRORED = (2, 4, 5, 7)
GEOMETRY = [
    "w-800,h-800",
    "w-900,h-500,fo-top",
    "w-500,h-900,fo-left,c-maintain_ratio",
    "w-500,h-500,fo-auto",
    "cm-extract,x-100,y-300,w-800,h-600",
    "cm-extract,xc-3000,yc-2000,w-600,h-400",
    "cm-pad_extract,x-3900,y-2600,w-600,h-400,bg-0000FF",
    "w-800,h-800,cm-pad_resize,bg-0000FF",
    "w-800,rt-90,fl-h",
    "w-600,rt-30",
]


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("orientations")
    upright = upright_photo(*SIZE)
    (folder / "upright.jpg").write_bytes(stored_with_orientation(upright, 1, quality=88))
    for orientation in MIRRORED:
        (folder / f"exif-{orientation}.jpg").write_bytes(stored_with_orientation(upright, orientation, quality=88))
    return folder


@pytest.fixture
async def node(node_factory, originals, tmp_path):
    return await node_factory(write_config(tmp_path, local_config(originals)))


@pytest.mark.parametrize("tr", GEOMETRY)
async def test_mirrored_orientations_are_upright_under_every_geometric_parameter(node, tr):
    expected = decode(await node.fetch(f"/tr:{tr},f-png/upright.jpg"))
    for orientation in MIRRORED:
        response = await node.fetch(f"/tr:{tr},f-png/exif-{orientation}.jpg")
        assert response.code == 200, (orientation, response.body[:200])
        image = decode(response)
        assert (image.width, image.height) == (expected.width, expected.height), orientation
        difference = (image.cast(pyvips.BandFormat.FLOAT) - expected).abs().avg()
        assert difference < 3, (orientation, difference)  # a wrong turn or region differs by tens
