"""Upgrades and downgrades on a kept cache folder (docs/operations.md, "Upgrades and downgrades"): an output
an earlier release rendered under the same URL is never served once what the URL renders to changed
(`RENDER_VERSION` in every output key), and the renders that version names are pinned, so that a change
to them cannot land without raising it."""

import json
from dataclasses import replace

import diskcache
import pytest

from edge.cache import Caches, strong_etag
from edge.cache.keys import RENDER_VERSION
from edge.testing import solid_image
from tests.nodes import decode, local_config, write_config

TOKEN = "upgrade-token-5e0c1d2b3a49"
#: a colour block with r-max on the base's corner: the release before r3 drew it square (red at 2,2)
CANVAS = "/tr:w-200,h-200,l-image,i-ik_canvas,bg-FF0000,w-100,h-100,r-max,lx-0,ly-0,l-end,f-png/astronaut.jpg"
RED = (255, 0, 0)


def config() -> str:
    return local_config(before=f'[cache]\ndir = "cache"\n[admin]\ntoken = "{TOKEN}"\n')


def near(pixel, rgb, tolerance: float = 8) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, rgb))


async def test_an_output_of_the_previous_render_version_is_never_served_after_an_upgrade(tmp_path, node_factory):
    path = write_config(tmp_path, config())
    node = await node_factory(path)
    made = await node.fetch(CANVAS)
    assert made.code == 200 and not near(decode(made)(2, 2), RED)  # the corner is round: the base shows
    await node.stop()

    # The folder as the release before r3 left it: its output of the URL (a square red corner) under
    # the key it read it by, fresh and whole.
    caches = Caches(tmp_path / "cache", 10**8, 10**8)
    try:
        [key] = _keys(caches)
        current = caches.outputs.get(key)
        square = solid_image(200, 200, RED, "png")
        caches.outputs.delete(key)
        previous_key = key.replace(f"\0{RENDER_VERSION}", "\0r2", 1)
        caches.outputs.put(previous_key, replace(current, body=square, etag=strong_etag(square)))
    finally:
        caches.close()

    upgraded = await node_factory(path)
    served = await upgraded.fetch(CANVAS)
    assert (served.code, served.headers["X-Cache"]) == (200, "MISS")
    assert served.body == made.body and not near(decode(served)(2, 2), RED)
    assert (await upgraded.fetch(CANVAS)).headers["X-Cache"] == "HIT"

    # the earlier release's output is not lost to the budget: a purge of its path deletes it too
    purged = await upgraded.fetch("/_edge/purge", method="POST", headers={"Authorization": f"Bearer {TOKEN}"},
                                  body=json.dumps({"url": "/astronaut.jpg"}).encode())
    assert json.loads(purged.body)["by_tier"]["output"] == 2


def _keys(caches: Caches) -> list[str]:
    with diskcache.Cache(str(caches.outputs.directory)) as cache:
        return list(cache)


#: URLs whose renders changed in a release (each a reason for a render version), and what this render
#: version makes of them: (size, the pixels at 2,2 and at 50,50). A change of what they render to fails
#: here: raise RENDER_VERSION (edge/cache/keys.py) with it and record the new pixels, or every node
#: upgraded on a kept cache folder serves the old renders beside the new for as long as they last.
RENDERS_OF = "r3"
RENDERS = [
    (CANVAS, (200, 200), (196, 190, 184), RED),  # rounded corners clear
    ("/tr:w-200,h-200,l-image,i-ik_canvas,bg-FF000050,al-9,w-100,h-100,lx-0,ly-0,l-end,f-png/astronaut.jpg",
     (200, 200), (225, 94, 91), (225, 92, 91)),  # the colour's own opacity, not al's
    ("/tr:w-200,h-200,l-image,i-logo-transparent.png,lx-0,ly-0,l-end,f-png/astronaut.jpg",
     (200, 200), (196, 190, 184), (54, 121, 227)),  # an image layer untrimmed by default
]


@pytest.fixture
async def samples_node(tmp_path, node_factory):
    return await node_factory(write_config(tmp_path, config()))


@pytest.mark.parametrize("url, size, corner, inside", RENDERS)
async def test_the_renders_the_render_version_names_are_unchanged(samples_node, url, size, corner, inside):
    assert RENDER_VERSION == RENDERS_OF, "record what the new render version makes of these URLs"
    image = decode(await samples_node.fetch(url))
    assert (image.width, image.height) == size
    assert near(image(2, 2), corner, 3) and near(image(50, 50), inside, 3), (image(2, 2), image(50, 50))
