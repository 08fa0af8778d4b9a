"""Freshness: the negative cache expires, stale originals are revalidated with conditional requests
(unchanged → outputs kept; changed → new outputs), and a failing origin gets the stale copy served.

Time moves by replacing the node's clock, so nothing here sleeps."""

import asyncio
import os
import time
from pathlib import Path

import pytest

from edge import originals
from edge.cache import original_key, strong_etag
from edge.transform.render import Renderer
from tests.assets import centre_colour, colour, same_colour, solid
from tests.imagecorpus import photo_jpeg
from tests.nodes import decode, local_config, until, web_config, write_config
from tests.s3server import shared_cache_table
from tests.scrape import total
from tests.servers import HTTPOrigin

HOUR = 3600.0


def later(running, seconds: float) -> None:
    """Move the node's clock forward."""
    running.node.clock = lambda: time.time() + seconds


def metric(running, name: str, **labels: str) -> float:
    return total(running.node.metrics.exposition().decode(), name, **labels)


@pytest.fixture
async def origin():
    server = await HTTPOrigin(files={"shoe.jpg": solid(80, 60, colour(1))}).start()
    yield server
    await server.stop()


@pytest.fixture
async def node(origin, node_factory, tmp_path):
    return await node_factory(write_config(tmp_path, web_config(origin.url, """
[cache]
dir = "cache"
original_ttl = "1h"
not_found_ttl = "60s"
""")))


async def test_not_found_is_remembered_until_not_found_ttl(origin, node):
    first = await node.fetch("/tr:w-40/new.jpg")
    assert (first.code, first.headers["Cache-Control"]) == (404, "public, max-age=60")
    origin.files["new.jpg"] = solid(80, 60, colour(2))  # uploaded after the 404
    later(node, 20)
    again = await node.fetch("/tr:w-50/new.jpg")  # another size, same path: still not found
    # caches in front keep it for what is left of the node's 60 s, not for 60 s more (that was up to 120 s)
    assert (again.code, again.headers["Cache-Control"]) == (404, "public, max-age=40")
    assert origin.requests["new.jpg"] == 1

    later(node, 61)
    found = await node.fetch("/tr:w-40/new.jpg")
    assert found.code == 200 and same_colour(centre_colour(decode(found)), colour(2))
    assert origin.requests["new.jpg"] == 2


async def test_an_unchanged_original_is_revalidated_with_a_304_and_keeps_its_outputs(origin, node):
    first = await node.fetch("/tr:w-40/shoe.jpg")
    assert first.headers["X-Cache"] == "MISS"
    assert (await node.fetch("/tr:w-40/shoe.jpg")).headers["X-Cache"] == "HIT"

    later(node, 2 * HOUR)
    revalidated = await node.fetch("/tr:w-40/shoe.jpg")
    assert (revalidated.code, revalidated.body, revalidated.headers["ETag"]) == \
        (200, first.body, first.headers["ETag"])
    assert origin.requests["shoe.jpg"] == 2
    assert metric(node, "edge_origin_fetches_total", outcome="not_modified") == 1
    assert metric(node, "edge_transform_duration_seconds_count") == 1  # the output was kept, not redone

    # confirmed for another hour: a hit again, and other sizes come from the kept original
    assert (await node.fetch("/tr:w-40/shoe.jpg")).headers["X-Cache"] == "HIT"
    assert decode(await node.fetch("/tr:w-30/shoe.jpg")).width == 30
    assert origin.requests["shoe.jpg"] == 2


async def test_an_original_is_fresh_for_less_than_original_ttl_and_asked_again_at_exactly_original_ttl(origin, node):
    checked = float(int(time.time()))  # whole seconds: `checked + HOUR - checked` is HOUR exactly
    node.node.clock = lambda: checked
    assert (await node.fetch("/tr:w-40/shoe.jpg")).headers["X-Cache"] == "MISS"
    node.node.clock = lambda: checked + HOUR - 0.5
    assert decode(await node.fetch("/tr:w-30/shoe.jpg")).width == 30  # made from the stored original
    assert origin.requests["shoe.jpg"] == 1
    node.node.clock = lambda: checked + HOUR
    assert decode(await node.fetch("/tr:w-20/shoe.jpg")).width == 20
    assert origin.requests["shoe.jpg"] == 2  # revalidated
    assert metric(node, "edge_origin_fetches_total", outcome="not_modified") == 1


async def test_a_changed_original_replaces_its_outputs(origin, node):
    small = await node.fetch("/tr:w-40/shoe.jpg")
    await node.fetch("/tr:w-20/shoe.jpg")
    assert same_colour(centre_colour(decode(small)), colour(1))

    origin.files["shoe.jpg"] = solid(100, 50, colour(3))
    later(node, 2 * HOUR)
    changed = await node.fetch("/tr:w-40/shoe.jpg")
    assert changed.headers["X-Cache"] == "MISS" and changed.headers["ETag"] != small.headers["ETag"]
    assert same_colour(centre_colour(decode(changed)), colour(3)) and decode(changed).height == 20
    assert origin.requests["shoe.jpg"] == 2

    # the other size made from the old original is gone too: remade from the new one, no fetch
    other = await node.fetch("/tr:w-20/shoe.jpg")
    assert other.headers["X-Cache"] == "MISS" and same_colour(centre_colour(decode(other)), colour(3))
    assert origin.requests["shoe.jpg"] == 2


async def test_an_earlier_origin_is_asked_plainly_when_the_version_held_came_from_a_later_one(origin, node_factory,
                                                                                                 tmp_path):
    """The held version's validators go to the origin that gave it alone: the same file copied since to the
    origin first in the list is fetched from it, not taken for the later origin's version by a 304 answering
    that origin's ETag (a mutation sending them to every origin survived)."""
    first = await HTTPOrigin().start()
    try:
        node = await node_factory(write_config(tmp_path, f"""
[cache]
dir = "cache"
original_ttl = "1h"

[[origins]]
name = "first"
type = "web"
base_url = "{first.url}"

[[origins]]
name = "second"
type = "web"
base_url = "{origin.url}"

[[endpoints]]
id = ""
origins = ["first", "second"]
"""))
        assert (await node.fetch("/tr:w-40/shoe.jpg")).code == 200  # from the second: the first has nothing
        first.files["shoe.jpg"] = origin.files["shoe.jpg"]  # the same bytes: the same ETag
        later(node, 2 * HOUR)
        again = await node.fetch("/tr:w-40/shoe.jpg")
    finally:
        await first.stop()
    assert again.code == 200 and same_colour(centre_colour(decode(again)), colour(1))
    assert first.requests["shoe.jpg"] == 2 and origin.requests["shoe.jpg"] == 1
    assert "If-None-Match" not in first.headers_seen[-1] and "If-Modified-Since" not in first.headers_seen[-1]
    assert metric(node, "edge_origin_fetches_total", origin="first", outcome="found") == 1
    assert metric(node, "edge_origin_fetches_total", outcome="not_modified") == 0


async def test_a_failing_origin_gets_the_stale_copy_served(origin, node):
    first = await node.fetch("/tr:w-40/shoe.jpg")
    origin.behaviour.status = 500
    later(node, 2 * HOUR)

    stale = await node.fetch("/tr:w-40/shoe.jpg")
    assert (stale.code, stale.headers["X-Cache"], stale.body) == (200, "STALE", first.body)
    assert stale.headers["Cache-Control"] == "public, max-age=60" and origin.requests["shoe.jpg"] == 2
    # a size never made before comes from the stale original; for not_found_ttl (a STALE answer's max-age), without
    # asking the failing origin again: each request had waited for its failure (a hung origin's whole timeout)
    origin.behaviour.status, origin.behaviour.delay = None, 30
    new_size = await node.fetch("/tr:w-25/shoe.jpg")
    assert (new_size.code, new_size.headers["X-Cache"], decode(new_size).width) == (200, "STALE", 25)
    assert origin.requests["shoe.jpg"] == 2
    # nothing stale to fall back on: the origin's error
    origin.behaviour.status, origin.behaviour.delay = 500, 0
    assert (await node.fetch("/tr:w-40/boot.jpg")).code == 502
    assert metric(node, "edge_http_request_duration_seconds_count", cache="stale") == 2

    later(node, HOUR + 2)  # a clock stepped back an hour leaves no window of an hour: asked again (still failing)
    assert (await node.fetch("/tr:w-40/shoe.jpg")).headers["X-Cache"] == "STALE"
    assert origin.requests["shoe.jpg"] == 3

    origin.behaviour.status = None  # the origin is back: fresh again, once the STALE answers' max-age has passed
    later(node, 2 * HOUR + 61)
    recovered = await node.fetch("/tr:w-40/shoe.jpg")
    assert (recovered.headers["X-Cache"], recovered.body) == ("MISS", first.body)
    assert (await node.fetch("/tr:w-40/shoe.jpg")).headers["X-Cache"] == "HIT"


async def test_the_originals_a_failing_origin_is_not_asked_for_again_are_bounded(origin, node, monkeypatch):
    """Each original its origin failed for is served stale without asking again for `not_found_ttl`; at most
    `FAILING_KEYS` of them are remembered so, the oldest forgotten first (a client asking for many paths of a
    failing origin had grown the list without bound: a mutation removing the cap survived)."""
    monkeypatch.setattr(originals, "FAILING_KEYS", 1)
    origin.files["boot.jpg"] = solid(80, 60, colour(2))
    for name in ("shoe.jpg", "boot.jpg"):
        assert (await node.fetch(f"/tr:w-40/{name}")).headers["X-Cache"] == "MISS"
    origin.behaviour.status = 500
    later(node, 2 * HOUR)
    for name in ("shoe.jpg", "boot.jpg"):
        assert (await node.fetch(f"/tr:w-40/{name}")).headers["X-Cache"] == "STALE"
    origin.behaviour.status = None  # back: only the original forgotten is asked for again
    assert (await node.fetch("/tr:w-25/boot.jpg")).headers["X-Cache"] == "STALE"
    assert (await node.fetch("/tr:w-25/shoe.jpg")).headers["X-Cache"] == "MISS"
    assert (origin.requests["boot.jpg"], origin.requests["shoe.jpg"]) == (2, 3)


async def test_an_original_deleted_at_the_origin_is_a_404_after_revalidation(origin, node):
    assert (await node.fetch("/tr:w-40/shoe.jpg")).code == 200
    del origin.files["shoe.jpg"]
    later(node, 2 * HOUR)
    assert (await node.fetch("/tr:w-40/shoe.jpg")).code == 404
    assert (await node.fetch("/tr:w-20/shoe.jpg")).code == 404  # the negative cache answers
    assert origin.requests["shoe.jpg"] == 2


#: the originals tier off, so that what the node revalidates or falls back on is the output alone
NO_ORIGINALS_KEPT = '[cache]\ndir = "cache"\noriginal_size = 0\noriginal_ttl = "1h"\n'


async def test_without_the_originals_tier_a_revalidation_downloads_once_for_every_size(origin, node_factory,
                                                                                       tmp_path):
    """With `original_size = 0` no validators are kept: revalidating is a download, shared by a new size
    that joins it; the unchanged output is kept rather than made again."""
    node = await node_factory(write_config(tmp_path, web_config(origin.url, NO_ORIGINALS_KEPT)))
    first = await node.fetch("/tr:w-40/shoe.jpg")
    assert first.code == 200
    later(node, 2 * HOUR)
    origin.behaviour.hold = asyncio.Event()
    revalidation = asyncio.ensure_future(node.fetch("/tr:w-40/shoe.jpg"))

    async def at_the_origin():
        return origin.requests["shoe.jpg"] == 2
    await until(at_the_origin, "the revalidation reaching the origin")
    new_size = asyncio.ensure_future(node.fetch("/tr:w-30/shoe.jpg"))  # needs the bytes

    async def joined():
        return metric(node, "edge_coalesced_requests_total") == 1
    await until(joined, "the new size joining the revalidation")
    origin.behaviour.hold.set()
    revalidated = await revalidation
    assert (revalidated.code, revalidated.headers["ETag"]) == (200, first.headers["ETag"])
    response = await new_size
    assert response.code == 200 and decode(response).width == 30
    assert origin.requests["shoe.jpg"] == 2
    assert metric(node, "edge_origin_fetches_total", outcome="found") == 2
    assert metric(node, "edge_transform_duration_seconds_count") == 2  # w-40 once, w-30 once


async def test_without_the_originals_tier_a_failing_origin_gets_the_stale_output_served(origin, node_factory, tmp_path):
    """No original kept (`original_size = 0`): the origin failing, the output made from the old one is the stale
    copy, while a size never made has nothing to fall back on (a mutation answering the origin's error whenever
    it failed survived)."""
    node = await node_factory(write_config(tmp_path, web_config(origin.url, NO_ORIGINALS_KEPT)))
    first = await node.fetch("/tr:w-40/shoe.jpg")
    assert (first.code, first.headers["X-Cache"], decode(first).width) == (200, "MISS", 40)
    origin.behaviour.status = 500
    later(node, 2 * HOUR)
    stale = await node.fetch("/tr:w-40/shoe.jpg")
    assert (stale.code, stale.headers["X-Cache"], stale.body) == (200, "STALE", first.body)
    assert (await node.fetch("/tr:w-25/shoe.jpg")).code == 502
    assert origin.requests["shoe.jpg"] == 3


@pytest.mark.parametrize("original_size", ["0", '"80kB"', "evicted"])
async def test_an_original_not_kept_that_changes_drops_the_outputs_of_the_old_one(origin, node_factory, tmp_path,
                                                                                   original_size):
    """With no bytes kept (`original_size = 0`, an original over an eighth of the tier, or one evicted while its
    outputs stay) a new size fetched the changed original while the sizes made before served the old image
    until `original_ttl`: nothing recorded the version. The outputs are now the record, those made from another
    version dropped; an original too large to keep has its version recorded, as a local file's."""
    origin.files["photo.jpg"] = photo_jpeg(400, 300)
    assert len(origin.files["photo.jpg"]) > 10_000
    node = await node_factory(write_config(tmp_path, web_config(origin.url, f"""
[cache]
dir = "cache"
original_size = {'"1GB"' if original_size == "evicted" else original_size}
original_ttl = "1h"
""")))
    assert (await node.fetch("/tr:w-100/photo.jpg")).headers["X-Cache"] == "MISS"
    if original_size == '"80kB"':  # too large to keep: its version is, as a local file's
        async def version_alone():
            record = node.node.caches.originals.get(original_key("", "photo.jpg", None))
            return record is not None and (record.kept, record.body) == (False, b"")
        await until(version_alone, "the original's version recorded", timeout=10)
    assert (await node.fetch("/tr:w-50/photo.jpg")).headers["X-Cache"] == "MISS"
    assert (await node.fetch("/tr:w-100/photo.jpg")).headers["X-Cache"] == "HIT"  # the same version spares them
    if original_size == "evicted":
        originals, key = node.node.caches.originals, original_key("", "photo.jpg", None)

        async def kept():
            return originals.get(key) is not None
        await until(kept, "the original kept")
        assert originals.delete(key)
    origin.files["photo.jpg"] = photo_jpeg(300, 400)
    assert decode(await node.fetch("/tr:w-200/photo.jpg")).height == 267  # the new original, upright
    for width, height in ((100, 133), (50, 67)):
        again = await node.fetch(f"/tr:w-{width}/photo.jpg")
        assert again.headers["X-Cache"] == "MISS" and (decode(again).width, decode(again).height) == (width, height)
    assert origin.requests["photo.jpg"] == (2 if original_size == "evicted" else 5)  # (the new original then kept)


async def test_outputs_drawn_with_layers_are_kept_while_their_original_is_unchanged(origin, node_factory, tmp_path):
    """An output drawn with layers is versioned by its original's and its layers' together: the check of an
    original fetched with nothing recorded took that for another version of the original, and dropped it."""
    origin.files["photo.jpg"], origin.files["logo.jpg"] = photo_jpeg(400, 300), solid(40, 20, colour(2))
    node = await node_factory(write_config(tmp_path, web_config(origin.url, """
[cache]
dir = "cache"
original_size = 0
""")))
    drawn = "/tr:w-100,l-image,i-logo.jpg,w-20,l-end/photo.jpg"
    assert (await node.fetch(drawn)).headers["X-Cache"] == "MISS"
    assert (await node.fetch("/tr:w-50/photo.jpg")).headers["X-Cache"] == "MISS"  # fetched again: not kept
    assert (await node.fetch(drawn)).headers["X-Cache"] == "HIT"
    origin.files["photo.jpg"] = photo_jpeg(300, 400)
    assert (await node.fetch("/tr:w-60/photo.jpg")).headers["X-Cache"] == "MISS"
    again = await node.fetch(drawn)
    assert again.headers["X-Cache"] == "MISS" and decode(again).height == 133


async def test_a_local_original_is_known_by_its_mtime_and_size(node_factory, tmp_path):
    """A local file is not hashed on a miss: its ETag (modification time in ns, size) is its version.
    Past its freshness, an untouched file keeps its output; a rewritten one makes a new output; the
    `orig-true` ETag is still the hash of the file's bytes (the stored copy is checked against it)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    shoe = folder / "shoe.jpg"
    shoe.write_bytes(solid(80, 60, colour(1)))
    os.utime(shoe, ns=(1_700_000_000_000_000_000,) * 2)
    config = local_config(folder, '[cache]\ndir = "cache"\noriginal_ttl = "1h"\n')
    node = await node_factory(write_config(tmp_path, config))
    first = await node.fetch("/tr:w-40/shoe.jpg")
    await node.node.settle()
    key = next(iter(node.node.pipeline._plans._plans.values())).key
    stored_version = node.node.caches.outputs.get(key).source.version
    assert stored_version == f'"{1_700_000_000_000_000_000:x}-{shoe.stat().st_size:x}"'

    later(node, 2 * HOUR)
    kept = await node.fetch("/tr:w-40/shoe.jpg")
    assert (kept.body, kept.headers["ETag"]) == (first.body, first.headers["ETag"])
    assert metric(node, "edge_transform_duration_seconds_count") == 1  # read again, not rendered again

    shoe.write_bytes(solid(80, 60, colour(3)))
    later(node, 4 * HOUR)
    changed = await node.fetch("/tr:w-40/shoe.jpg")
    assert changed.headers["ETag"] != first.headers["ETag"] and same_colour(centre_colour(decode(changed)), colour(3))

    original = await node.fetch("/tr:orig-true/shoe.jpg")
    await node.node.settle()
    assert original.body == shoe.read_bytes() and original.headers["ETag"] == strong_etag(original.body)
    assert (await node.fetch("/tr:orig-true/shoe.jpg")).headers["X-Cache"] == "HIT"  # stored whole


async def test_a_local_file_replaced_in_place_drops_the_outputs_of_the_old_one(node_factory, tmp_path):
    """A size read from a local file that changed drops every output of the old file at once, as new
    bytes from any origin do: sizes made before are not served from the old photo beside new sizes
    made from the new one until `original_ttl`. (The originals tier keeps a local file's version, not
    its bytes.)"""
    folder = tmp_path / "photos"
    folder.mkdir()
    photo = folder / "photo.jpg"
    photo.write_bytes(photo_jpeg(4000, 3000))
    node = await node_factory(write_config(tmp_path, local_config(folder)))
    for path in ("/tr:w-300/photo.jpg", "/photo.jpg?tr=h-100", "/tr:orig-true/photo.jpg"):
        assert (await node.fetch(path)).headers["X-Cache"] == "MISS"
        assert (await node.fetch(path)).headers["X-Cache"] == "HIT"

    replacement = folder / "replacement.jpg"
    replacement.write_bytes(photo_jpeg(3000, 4000))
    os.replace(replacement, photo)
    wider = await node.fetch("/tr:w-301/photo.jpg")
    assert wider.headers["X-Cache"] == "MISS" and (decode(wider).width, decode(wider).height) == (301, 401)
    for path, size in (("/tr:w-300/photo.jpg", (300, 400)), ("/photo.jpg?tr=h-100", (75, 100))):
        answer = await node.fetch(path)
        assert answer.headers["X-Cache"] == "MISS" and (decode(answer).width, decode(answer).height) == size
        assert (await node.fetch(path)).headers["X-Cache"] == "HIT"
    original = await node.fetch("/tr:orig-true/photo.jpg")
    assert original.headers["X-Cache"] == "MISS" and original.body == photo.read_bytes()
    assert metric(node, "edge_transform_duration_seconds_count") == 5  # 2 old sizes, 3 new ones


def landscape_photo(tmp_path) -> Path:
    """`photo.jpg`, 400×300, in a folder of its own for a local origin."""
    folder = tmp_path / "photos"
    folder.mkdir()
    photo = folder / "photo.jpg"
    photo.write_bytes(photo_jpeg(400, 300))
    return photo


async def replace_with_portrait(node, photo: Path) -> None:
    """Replace `photo` in place by a 300×400 one: a new size shows the new file, upright, and the size made
    before (`w-100`) is made again from it."""
    replacement = photo.with_name("replacement.jpg")
    replacement.write_bytes(photo_jpeg(300, 400))
    os.replace(replacement, photo)
    assert decode(await node.fetch("/tr:w-200/photo.jpg")).height == 267
    again = await node.fetch("/tr:w-100/photo.jpg")
    assert again.headers["X-Cache"] == "MISS" and (decode(again).width, decode(again).height) == (100, 133)


async def test_a_render_of_the_old_file_ending_after_the_change_was_found_is_not_kept(node_factory, tmp_path,
                                                                                       monkeypatch):
    """A render of a local file under way as the file was replaced, ending after a new size had found the change and
    dropped the old outputs, stored its own: the old picture, served beside the new sizes until `original_ttl` (a day
    by default; originals probe). Its request is answered from the file it read; nothing of it is kept."""
    photo = landscape_photo(tmp_path)
    node = await node_factory(write_config(tmp_path, local_config(photo.parent)))
    assert (await node.fetch("/tr:w-100/photo.jpg")).headers["X-Cache"] == "MISS"  # its version recorded
    held, release = asyncio.Event(), asyncio.Event()
    render = Renderer.render

    async def slow(self, body, transformation, *args, **kwargs):
        if transformation.canonical() == "w-150":  # the old file read, the render not begun
            held.set()
            await release.wait()
        return await render(self, body, transformation, *args, **kwargs)
    monkeypatch.setattr(Renderer, "render", slow)
    old = asyncio.ensure_future(node.client.fetch(node.url + "/tr:w-150/photo.jpg", request_timeout=30))
    await asyncio.wait_for(held.wait(), 10)
    await replace_with_portrait(node, photo)
    release.set()
    assert (decode(await old).width, decode(await old).height) == (150, 112)
    await node.node.settle()
    again = await node.fetch("/tr:w-150/photo.jpg")
    assert again.headers["X-Cache"] == "MISS" and (decode(again).width, decode(again).height) == (150, 200)


async def test_a_local_file_replaced_before_its_version_is_written_drops_the_old_outputs(node_factory, tmp_path,
                                                                                            monkeypatch):
    """A local file's version is written about once a second, with others: a file replaced within that
    second kept the outputs of its old version, served beside sizes of the new one until `original_ttl`
    (a CMS writing a file and rewriting it at once). The version not yet written is the one read last."""
    photo = landscape_photo(tmp_path)
    node = await node_factory(write_config(tmp_path, local_config(photo.parent)))
    monkeypatch.setattr(node.node.caches.originals, "flush_versions", lambda: None)  # the second that never ends
    assert (await node.fetch("/tr:w-100/photo.jpg")).headers["X-Cache"] == "MISS"
    await replace_with_portrait(node, photo)


async def test_a_local_file_replaced_after_another_worker_read_it_drops_the_old_outputs(node_factory, tmp_path):
    """A worker's version not yet written is its own: another worker reading the replaced file within that
    second found nothing recorded, and the outputs made from the old file stayed until `original_ttl`."""
    photo = landscape_photo(tmp_path)
    node = await node_factory(write_config(tmp_path, local_config(photo.parent)))
    originals = node.node.caches.originals
    originals.flush_versions = lambda: None  # the second that never ends
    assert (await node.fetch("/tr:w-100/photo.jpg")).headers["X-Cache"] == "MISS"
    originals._versions.clear()  # the worker that read it is not this one
    await replace_with_portrait(node, photo)


async def test_a_replaced_local_file_s_old_outputs_do_not_come_back_from_the_shared_tier(node_factory, tmp_path, s3):
    """A node that found a file replaced dropped its outputs of the old one, and then read them back from the
    fleet's shared tier, fresh by their own check time: the old image at the sizes made before, until
    `original_ttl`. A shared copy made from another version than the one the node confirmed since is a miss."""
    s3.client().create_bucket(Bucket="revalidation")
    photo = landscape_photo(tmp_path)
    node = await node_factory(write_config(tmp_path, local_config(photo.parent, after=shared_cache_table(
        s3.url, "revalidation"))))
    assert (await node.fetch("/tr:w-100/photo.jpg")).headers["X-Cache"] == "MISS"

    async def shared():
        return len(s3.client().list_objects_v2(Bucket="revalidation").get("Contents", [])) == 1
    await until(shared, "the output in the shared tier")
    await replace_with_portrait(node, photo)


async def test_an_original_not_kept_s_old_outputs_do_not_come_back_from_the_shared_tier(origin, node_factory,
                                                                                         tmp_path, s3):
    """With `original_size = 0` the node recorded no version of a web original, so the shared tier's copy of an
    old size, made before the original changed, was fresh to it: the old image beside the new one. The newest
    output the node keeps of the original is the record it is compared with."""
    s3.client().create_bucket(Bucket="notkept")
    origin.files["photo.jpg"] = photo_jpeg(400, 300)
    node = await node_factory(write_config(tmp_path, web_config(origin.url, f"""
[cache]
dir = "cache"
original_size = 0
original_ttl = "1h"
{shared_cache_table(s3.url, "notkept")}""")))
    assert (await node.fetch("/tr:w-100/photo.jpg")).headers["X-Cache"] == "MISS"

    async def shared():
        return len(s3.client().list_objects_v2(Bucket="notkept").get("Contents", [])) == 1
    await until(shared, "the output in the shared tier")
    origin.files["photo.jpg"] = photo_jpeg(300, 400)
    assert decode(await node.fetch("/tr:w-200/photo.jpg")).height == 267  # the new original, upright
    await node.node.settle()  # its output stored: the record
    again = await node.fetch("/tr:w-100/photo.jpg")
    assert again.headers["X-Cache"] == "MISS" and (decode(again).width, decode(again).height) == (100, 133)
    assert origin.requests["photo.jpg"] == 3


async def test_an_untouched_local_file_keeps_its_outputs_and_writes_its_version_once(node_factory, tmp_path):
    """The version of a local file goes into the originals tier once, with no bytes: new sizes of an
    unchanged file neither drop the outputs made before nor write it again."""
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "photo.jpg").write_bytes(photo_jpeg(4000, 3000))
    node = await node_factory(write_config(tmp_path, local_config(folder)))
    await node.fetch("/tr:w-300/photo.jpg")
    (key,) = list(node.node.caches.originals._handles[1].iterkeys())
    record = node.node.caches.originals.get(key)
    assert (record.kept, record.body) == (False, b"")
    written = node.node.caches.version(key)
    for width in (301, 302, 303):
        assert (await node.fetch(f"/tr:w-{width}/photo.jpg")).headers["X-Cache"] == "MISS"
    assert (await node.fetch("/tr:w-300/photo.jpg")).headers["X-Cache"] == "HIT"
    assert node.node.caches.version(key) == written  # nothing stored under the original's key since


async def test_an_original_that_turns_stale_while_its_output_is_made_labels_it_a_miss(origin, node_factory, tmp_path):
    """`X-Cache`, the metrics' `cache` label and a provisional `Cache-Control` say whether the output's original
    was fresh when the request began: one that turned stale while the output was being made (a slow render,
    here a slow layer's fetch) was labelled `STALE`, with `max-age=<not_found_ttl>`, though no origin had
    failed (seen under churn with a short `original_ttl`: a 12 MP render straddling the boundary)."""
    origin.files["logo.png"] = solid(10, 10, colour(3), "png")
    node = await node_factory(write_config(tmp_path, web_config(origin.url, """
[cache]
dir = "cache"
original_ttl = "100s"
""")))
    assert (await node.fetch("/tr:w-40/shoe.jpg")).code == 200  # the original, confirmed now
    origin.behaviour.hold, origin.behaviour.held_paths = asyncio.Event(), frozenset({"logo.png"})
    layered = asyncio.ensure_future(node.fetch("/tr:w-30:l-image,i-logo.png,l-end/shoe.jpg"))

    async def at_the_origin():
        return origin.requests["logo.png"] == 1
    await until(at_the_origin, "the layer's fetch reaching the origin")
    later(node, 101)  # the shoe's original turns stale while the layer is fetched
    origin.behaviour.hold.set()
    response = await layered
    assert (response.code, response.headers["X-Cache"]) == (200, "MISS")
    assert response.headers["Cache-Control"] == "public, max-age=31536000"
    assert decode(response).width == 30 and origin.requests["shoe.jpg"] == 1
    assert metric(node, "edge_http_request_duration_seconds_count", cache="stale") == 0
