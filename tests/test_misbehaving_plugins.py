"""An origin plugin that misbehaves costs its own origin, never the worker: what it raises beyond
`Exception`, a fetch that swallows its cancellation, an answer of the wrong type or over the size
limit, a failure kind of its own are each a clear answer, and the node goes on serving
(edge/chain.py `_fetch`)."""

from __future__ import annotations

import asyncio
import time

import pytest

from edge import chain
from edge import plugin as plugin_api
from edge.origin import Original, OriginRequest
from edge.testing import image_size, photo_image
from tests.nodes import write_config

#: the photo every behaviour but the bad ones answers with
PHOTO = photo_image(640, 480)


class MisbehavingPlugin:
    """`type = "misbehaving"`: the path's first segment says how it fails; `good/…` is the photo."""

    EDGE_PLUGIN_API = "1.0"

    class MisbehavingOrigin(plugin_api.Origin):
        type_name = "misbehaving"

        @classmethod
        def from_config(cls, settings, table):
            table.finish()
            return cls(settings)

        async def fetch(self, request):
            behaviour = request.path.split("/")[0]
            if behaviour.startswith("raise-"):
                raise {"SystemExit": SystemExit(3), "KeyboardInterrupt": KeyboardInterrupt(),
                       "GeneratorExit": GeneratorExit(), "CancelledError": asyncio.CancelledError()}[behaviour[6:]]
            if behaviour == "swallow":  # keeps going once cancelled, then ends by itself
                try:
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    await asyncio.sleep(1)
                return Original(PHOTO)
            if behaviour == "kind":
                raise plugin_api.OriginFailure("Made Up\r\nX-Injected: 1", "a kind of its own")
            return {"none": None, "text": "an image", "text-body": Original("an image"),
                    "number-etag": Original(PHOTO, etag=5), "large": Original(b"\xff" * 2_000_001),
                    "good": Original(PHOTO)}[behaviour]

    @plugin_api.hookimpl
    def edge_origin_types(self):
        return [self.MisbehavingOrigin]


@pytest.fixture
async def node(node_factory, tmp_path):
    return await node_factory(write_config(tmp_path, """
        [limits]
        max_source_bytes = "2MB"

        [[origins]]
        name = "plugin"
        type = "misbehaving"
        timeout = 0.5

        [[endpoints]]
        id = ""
        origins = ["plugin"]
        """), MisbehavingPlugin())


async def served_afterwards(node) -> None:
    response = await node.fetch("/tr:w-64/good/photo.jpg")
    assert response.code == 200 and image_size(response.body) == (64, 48)


@pytest.mark.parametrize("raised", ["SystemExit", "KeyboardInterrupt", "GeneratorExit", "CancelledError"])
async def test_what_a_plugin_raises_beyond_exception_is_its_origins_failure(node, raised):
    response = await node.fetch(f"/tr:w-64/raise-{raised}/photo.jpg")
    assert (response.code, response.body, response.headers["X-Edge-Error"]) == (502, b"origin error\n",
                                                                                  "plugin: error")
    await served_afterwards(node)


async def test_a_fetch_that_swallows_its_cancellation_is_answered_at_the_timeout(node):
    started = time.monotonic()
    response = await node.fetch("/tr:w-64/swallow/photo.jpg")
    assert (response.code, response.headers["X-Edge-Error"]) == (504, "plugin: timeout")
    assert time.monotonic() - started < 0.9  # the timeout is 0.5 s, the plugin's own end 1.5 s
    await served_afterwards(node)


@pytest.mark.parametrize("behaviour", ["none", "text", "text-body", "number-etag"])
async def test_an_answer_of_the_wrong_type_is_a_bad_response(node, behaviour):
    response = await node.fetch(f"/tr:w-64/{behaviour}/photo.jpg")
    assert (response.code, response.headers["X-Edge-Error"]) == (502, "plugin: bad_response")


async def test_a_body_over_max_source_bytes_is_refused_and_not_kept(node):
    for _ in range(2):  # not kept: asked again, the origin is asked again
        response = await node.fetch("/tr:w-64/large/photo.jpg")
        assert (response.code, response.body) == (400, b"source too large\n")
    assert node.node.metrics.origin_fetches.labels("plugin", "found")._value.get() == 2


async def test_a_failure_kind_of_its_own_is_reported_as_error(node):
    response = await node.fetch("/tr:w-64/kind/photo.jpg")
    assert (response.code, response.headers["X-Edge-Error"]) == (502, "plugin: error")
    assert "X-Injected" not in response.headers


def test_a_validator_too_long_to_name_outputs_by_is_dropped():
    request = OriginRequest("a.jpg", 10**6)
    kept = chain._checked(Original(PHOTO[:100], etag='"' + "e" * 2000 + '"', last_modified="Tue, 01 Dec 2026"),
                          request)
    assert (kept.etag, kept.last_modified) == (None, "Tue, 01 Dec 2026")
