"""The request path over a real socket: transform, cache, conditional requests, errors."""

import pytest

from tests.nodes import SAMPLES, decode, loader, write_config

SAMPLES_CONFIG = f"""
[[origins]]
name = "samples"
type = "local"
root = "{SAMPLES}"

[[endpoints]]
id = ""
origins = ["samples"]
"""


@pytest.fixture
async def samples_node(node_factory, tmp_path):
    return await node_factory(write_config(tmp_path, SAMPLES_CONFIG))


async def test_width_resizes_and_second_request_is_a_hit(samples_node):
    first = await samples_node.fetch("/tr:w-300/astronaut.jpg")
    assert first.code == 200
    assert first.headers["Content-Type"] == "image/jpeg"
    assert first.headers["X-Cache"] == "MISS"
    image = decode(first)
    assert (image.width, image.height, loader(first)) == (300, 300, "jpegload")

    second = await samples_node.fetch("/tr:w-300/astronaut.jpg")
    assert second.headers["X-Cache"] == "HIT"
    assert second.body == first.body
    assert second.headers["ETag"] == first.headers["ETag"]
