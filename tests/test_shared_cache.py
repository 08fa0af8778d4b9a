"""The shared tier on its own, against moto's S3 server: what it writes and reads, how a purge finds
its objects, and that a slow, failing or damaged store is a counted miss, never an error."""

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from edge.cache import (MAX_ENTRY_SHARE, CachedOutput, Caches, SourceInfo, original_key, output_key, path_key,
                        path_prefix_key, strong_etag)
from edge.config import Placeholders, load_config
from edge.errors import ConfigError, SharedCacheFailure
from edge.metrics import Metrics
from edge.pluginmanager import load_plugins
from edge import purge
from edge.purge_journal import APPLIED_FILE
from edge import shared_cache
from edge.shared_cache import SharedTier
from edge.testing import solid_image
from tests.nodes import local_config, until, write_config
from tests.s3server import TEST_SECRET, Faults, shared_cache_table
from tests.scrape import samples, scrape, total

BUCKET = "edge-shared"


def shared_table(endpoint_url: str) -> str:
    return shared_cache_table(endpoint_url, BUCKET, timeout="3s")


@pytest.fixture
async def tier(s3, tmp_path):
    s3.client().create_bucket(Bucket=BUCKET)
    config = load_config(write_config(tmp_path, local_config(after=shared_table(s3.url))), load_plugins())
    tier = SharedTier(config.shared_cache, Metrics(), 10**7, 86400.0, tmp_path / APPLIED_FILE)
    await tier.open()
    yield tier
    await tier.close()
    client = s3.client()

    async def deleted() -> bool:  # a write a test held and then let go may land after a listing (BucketNotEmpty)
        for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
            client.delete_object(Bucket=BUCKET, Key=item["Key"])
        try:
            client.delete_bucket(Bucket=BUCKET)
        except ClientError as error:
            if error.response["Error"]["Code"] != "BucketNotEmpty":
                raise
            return False
        return True
    await until(deleted, "the test's bucket emptied and deleted", timeout=10)


def key(endpoint: str, path: str, host: str | None = None, fmt: str = "") -> str:
    """The cache key of `path`'s `w-300` output."""
    return output_key(original_key(endpoint, path, host), "w-300", fmt)


def output(body: bytes = b"\xff\xd8 not really a jpeg") -> CachedOutput:
    source = SourceInfo("web", '"v1"', 1000.0, etag='"e"', last_modified="Tue, 01 Jan 2030 00:00:00 GMT",
                        content_type="image/jpeg")
    return CachedOutput(body, "image/webp", strong_etag(body), source, vary_accept=True,
                        canonical_link='<https://example.com/a.jpg>; rel="canonical"')


async def written(tier) -> None:
    """Wait (bounded) for the background writes."""
    await asyncio.wait_for(asyncio.gather(*tier._writes), 30)


def counted(tier, name: str) -> dict:
    return {tuple(s.labels.values()): s.value for family in getattr(tier._metrics, name).collect()
            for s in family.samples if s.name.endswith("_total")}


async def test_an_output_comes_back_whole_under_a_key_a_purge_can_find(tier, s3):
    cache_key = key("shop", "shoes/red.jpg", fmt="webp")
    assert await tier.get(cache_key) is None
    tier.put_later(cache_key, output())
    await written(tier)
    stored = [item["Key"] for item in s3.client().list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert len(stored) == 1 and stored[0].startswith("outputs/shop/shoes/red.jpg/")
    assert await tier.get(cache_key) == output()
    assert counted(tier, "cache_requests") == {("shared", "miss"): 1, ("shared", "hit"): 1}


async def test_a_lookup_that_fails_is_a_failure_not_a_miss(tier, s3):
    """With the tier down, every lookup had been a miss too: its hit ratio read 0 % (SRE probe)."""
    s3.faults = Faults(status=500)
    assert await tier.get(key("shop", "shoes/red.jpg")) is None
    assert counted(tier, "cache_requests") == {}
    assert counted(tier, "shared_cache_failures") == {("get", "server_error"): 1}


async def test_a_purge_removes_a_path_or_a_prefix_and_nothing_else(tier):
    keys = [key("shop", path) for path in ("shoes/red.jpg", "shoes/red.jpg2", "shirts/a.jpg")]
    keys.append(key("", "shoes/red.jpg"))
    for cache_key in keys:
        tier.put_later(cache_key, output())
    await written(tier)
    assert await tier.delete_prefix(path_key("shop", "shoes/red.jpg")) == 1
    assert await tier.get(keys[0]) is None and await tier.get(keys[1]) is not None
    assert await tier.delete_prefix(path_prefix_key("shop", "")) == 2  # the whole endpoint
    assert await tier.get(keys[3]) is not None  # the default endpoint is another one


async def test_a_purge_deletes_objects_whose_keys_xml_cannot_carry(tier, s3):
    """An object under a path whose key held a control character (a bucket writer's, or a path's own: a client may
    ask for `%0d`) had DeleteObjects refused for the whole batch, or a CR read as LF: no purge of that path
    deleted anything, for ever."""
    cache_key = key("shop", "a.jpg")
    tier.put_later(cache_key, output())
    await written(tier)
    prefix = tier.object_key(cache_key).rsplit("/", 1)[0] + "/"
    for odd in ("\x01", "x\ry", "\x1f"):
        s3.client().put_object(Bucket=BUCKET, Key=prefix + odd, Body=b"odd")
    assert await tier.delete_prefix(path_key("shop", "a.jpg")) == 4
    assert s3.client().list_objects_v2(Bucket=BUCKET).get("Contents", []) == []


async def test_a_damaged_object_is_a_miss(tier, s3):
    cache_key = key("shop", "a.jpg")
    tier.put_later(cache_key, output())
    await written(tier)
    client = s3.client()
    object_key = tier.object_key(cache_key)
    data = client.get_object(Bucket=BUCKET, Key=object_key)["Body"].read()
    client.put_object(Bucket=BUCKET, Key=object_key, Body=data[:-1] + b"X")  # one byte changed
    assert await tier.get(cache_key) is None
    client.put_object(Bucket=BUCKET, Key=object_key, Body=b"something else")
    assert await tier.get(cache_key) is None
    for field, forged in ((b'"image/webp"', b'"image/webp\\r\\nSet-Cookie: x=1"'),  # a header injected
                          (b'"checked_at":1000.0', b'"checked_at":"soon"'),  # freshness of the wrong type
                          (b'"vary_accept":true', b'"vary_accept":"no"'),  # flags that are not booleans
                          (b'"stand_in":false', b'"stand_in":0')):
        assert field in data
        client.put_object(Bucket=BUCKET, Key=object_key, Body=data.replace(field, forged))
        assert await tier.get(cache_key) is None
    assert counted(tier, "shared_cache_failures") == {("get", "damaged"): 6}


async def test_objects_too_large_to_read_do_not_make_a_worker_skip_the_store(tier, s3):
    """An object too large to read says nothing of the store's health: read `SKIP_AFTER_FAILURES` times in a row, it
    had made the worker skip every read for `SKIP_SECONDS` (misses to the origin), as if the store were down."""
    large, whole = key("shop", "large.jpg"), key("shop", "whole.jpg")
    tier.put_later(whole, output())
    await written(tier)
    too_large = os.urandom(10**7 // MAX_ENTRY_SHARE + 1)  # past the fixture's output tier's share
    s3.client().put_object(Bucket=BUCKET, Key=tier.object_key(large), Body=too_large)
    for _ in range(shared_cache.SKIP_AFTER_FAILURES + 1):
        assert await tier.get(large) is None
    assert await tier.get(whole) == output()
    assert counted(tier, "shared_cache_failures") == {("get", "too_large"): shared_cache.SKIP_AFTER_FAILURES + 1}


async def test_an_object_the_node_did_not_write_for_that_key_is_a_miss(tier, s3):
    """Anyone with access to the bucket can write one: a page as text/html, a copy of another key's
    image, a freshness from the future. None may be served as that key's image (helper 28's probe)."""
    from edge.shared_cache import MAGIC, OLD_MAGIC, encode

    client = s3.client()
    first, other = key("shop", "a.jpg"), key("shop", "b.jpg")
    tier.put_later(first, output())
    await written(tier)
    data = client.get_object(Bucket=BUCKET, Key=tier.object_key(first))["Body"].read()
    client.put_object(Bucket=BUCKET, Key=tier.object_key(other), Body=data)  # copied to another key
    assert await tier.get(other) is None

    page = b"<html><script>alert(document.domain)</script></html>"
    as_html = CachedOutput(page, "text/html", strong_etag(page), output().source)
    client.put_object(Bucket=BUCKET, Key=tier.object_key(first), Body=encode(as_html, tier.object_key(first)))
    assert await tier.get(first) is None
    assert counted(tier, "shared_cache_failures") == {("get", "damaged"): 2}

    # written by an earlier node (no key in its header): a plain miss, made again, not counted
    client.put_object(Bucket=BUCKET, Key=tier.object_key(first), Body=OLD_MAGIC + data[len(MAGIC):])
    assert await tier.get(first) is None and counted(tier, "shared_cache_failures") == {("get", "damaged"): 2}

    # confirmed in the future: by a clock a little ahead, now; further ahead (a clock broken once, a forgery),
    # of unknown age: a miss. Taken as confirmed now, it had escaped every purge's hold-back (fleet probe)
    for ahead, served in ((100, True), (400, False), (1e12, False)):
        stamped = CachedOutput(output().body, "image/webp", output().etag,
                               SourceInfo("web", '"v1"', time.time() + ahead, content_type="image/jpeg"))
        client.put_object(Bucket=BUCKET, Key=tier.object_key(first), Body=encode(stamped, tier.object_key(first)))
        before = time.time()
        found = await tier.get(first)
        assert (found is not None) == served, ahead
        assert found is None or (found.body == output().body and before <= found.source.checked_at <= time.time())
    assert counted(tier, "shared_cache_failures") == {("get", "damaged"): 2}


SIGNING_KEY = "5f0c" * 8


async def signed_tier(s3, tmp_path, signing_key: str, *previous_keys: str) -> SharedTier:
    more = f'signing_key = "{signing_key}"\nprevious_signing_keys = {json.dumps(previous_keys)}'
    table = shared_cache_table(s3.url, BUCKET, timeout="3s", more=more)
    config = load_config(write_config(tmp_path, local_config(after=table), name=f"{signing_key[:4]}.toml"),
                         load_plugins())
    signed = SharedTier(config.shared_cache, Metrics(), 10**7, 86400.0, tmp_path / APPLIED_FILE)
    await signed.open()
    return signed


async def test_with_a_signing_key_the_fleet_reads_only_the_objects_signed_with_it(tier, s3, tmp_path):
    """Whoever could write the bucket (a leaked key, another service's role) could write an object of their own
    making for any URL's key, which every node served for a year (security review): with `signing_key`, an object
    not signed with it is a miss; an unsigned one (written before the fleet had a key) a plain one, uncounted."""
    from edge.shared_cache import encode

    signed = await signed_tier(s3, tmp_path, SIGNING_KEY)
    other = await signed_tier(s3, tmp_path, "a1b2" * 8)
    try:
        first, second = key("shop", "a.jpg"), key("shop", "b.jpg")
        signed.put_later(first, output())
        await written(signed)
        assert await signed.get(first) == output()  # the fleet's own
        assert await other.get(first) is None  # signed with another key
        assert await tier.get(first) == output()  # a node without a key reads it as it reads any

        forged = solid_image(8, 8, (255, 0, 0), "png")
        as_red = replace(output(), body=forged, etag=strong_etag(forged), content_type="image/png")
        s3.client().put_object(Bucket=BUCKET, Key=signed.object_key(second),
                               Body=encode(as_red, signed.object_key(second)))
        assert await tier.get(second) == as_red  # a node without a key cannot tell
        assert await signed.get(second) is None
        s3.client().put_object(Bucket=BUCKET, Key=signed.object_key(second),
                               Body=encode(as_red, signed.object_key(second), b"guessed"))
        assert await signed.get(second) is None
        assert counted(signed, "shared_cache_failures") == {("get", "damaged"): 1}  # the unsigned one: a plain miss
        assert counted(other, "shared_cache_failures") == {("get", "damaged"): 1}
    finally:
        await signed.close()
        await other.close()


async def test_a_rotated_key_s_objects_are_read_and_signed_again_with_the_new_one(s3, tmp_path):
    """Changing `signing_key` had made every object a miss at once, counted damaged, the fleet rendering again all
    it was asked. With the old key in `previous_signing_keys`, its objects are read, and each read is written again
    signed with the new key, once: when the old key is dropped, what the fleet reads is signed with the new."""
    from edge.shared_cache import signed_with

    s3.client().create_bucket(Bucket=BUCKET)
    new_key = "9e7d" * 8
    before = await signed_tier(s3, tmp_path, SIGNING_KEY)
    rotating = await signed_tier(s3, tmp_path, new_key, SIGNING_KEY)
    after = await signed_tier(s3, tmp_path, new_key)
    try:
        first = key("shop", "a.jpg")
        before.put_later(first, output())
        await written(before)
        assert await after.get(first) is None  # without the old key: a miss
        assert await rotating.get(first) == output()
        await written(rotating)
        stored = s3.client().get_object(Bucket=BUCKET, Key=rotating.object_key(first))["Body"].read()
        assert signed_with(stored, new_key.encode()) and not signed_with(stored, SIGNING_KEY.encode())
        assert await after.get(first) == output()
        assert await rotating.get(first) == output()  # signed with the new key: not written again
        await written(rotating)
        assert counted(rotating, "shared_cache_writes") == {(): 1}
        assert counted(rotating, "shared_cache_failures") == {}
    finally:
        for tier in (before, rotating, after):
            await tier.close()


async def test_shared_reads_are_held_to_the_fetch_budget(tier):
    """Reads of the shared tier count against `[server] fetch_memory` as fetches of originals do: four
    200 MB objects read at once had taken a worker to 733 MB against a 200 MB budget."""
    from edge.fetching import fetch_budget

    big = output(b"\xff" * 300_000)
    cache_key = key("shop", "big.jpg")
    tier.put_later(cache_key, big)
    await written(tier)
    saved = fetch_budget.capacity, fetch_budget.wait
    try:
        fetch_budget.configure(200_000, 0.2)
        assert await tier.get(cache_key) is None  # more than the whole budget: never read
        fetch_budget.configure(1_000_000, 0.2)
        await fetch_budget.reserve(900_000)  # fetches in flight hold the rest
        try:
            assert await tier.get(cache_key) is None  # a miss, not a 503
        finally:
            fetch_budget.release(900_000)
        assert (await tier.get(cache_key)).body == big.body
    finally:
        fetch_budget.configure(*saved)
    assert counted(tier, "shared_cache_failures") == {("get", "too_large"): 1, ("get", "busy"): 1}


async def test_a_slow_or_failing_store_is_skipped_and_counted(tier, s3):
    cache_key = key("shop", "a.jpg")
    s3.faults.delay = 60  # far longer than the tier's 3 s (the server's wait ends with the test)
    assert await tier.get(cache_key) is None
    s3.faults.delay, s3.faults.status, s3.faults.only_gets = 0, 500, False
    assert await tier.get(cache_key) is None
    tier.put_later(cache_key, output())
    await written(tier)
    failures = counted(tier, "shared_cache_failures")
    assert failures == {("get", "timeout"): 1, ("get", "server_error"): 1, ("put", "server_error"): 1}
    with pytest.raises(SharedCacheFailure, match="ListObjectsV2"):
        await tier.delete_prefix(path_key("shop", "a.jpg"))
    with pytest.raises(SharedCacheFailure, match="PutObject"):
        await tier.record_purge(path_key("shop", "a.jpg"))
    assert await tier.read_purges() is None
    assert counted(tier, "shared_cache_failures") == {
        **failures, ("delete", "server_error"): 1, ("journal", "server_error"): 2}
    s3.reset()  # the fixture's cleanup needs a working store


def test_paths_an_http_library_could_rewrite_are_not_shared(tmp_path):
    config = load_config(write_config(tmp_path, local_config(after=shared_table("http://127.0.0.1:9"))), load_plugins())
    tier = SharedTier(config.shared_cache, Metrics(), 10**7, 86400.0, tmp_path / APPLIED_FILE)  # keys need no connection
    for path in ("a/../b.jpg", "a//b.jpg", "./b.jpg", "x" * 1100):
        assert tier.object_key(key("shop", path)) is None, path
    assert tier.object_key(key("", "a/b c.jpg")).startswith("outputs/_default/a/b c.jpg/")
    by_host = tier.object_key(key("shop", "a.jpg", host="img.example.com"))  # a web origin forwarding Host
    assert by_host.startswith("outputs/shop/a.jpg/") and by_host != tier.object_key(key("shop", "a.jpg"))
    assert tier.object_prefix(path_prefix_key("shop", "a/b")) == "outputs/shop/a/b"
    longest = tier.store.max_key_bytes  # a key of exactly the longest the store takes is shared, one byte more not
    around_the_path = len(tier.object_key(key("shop", "a.jpg"))) - len("a.jpg")
    path = "a" * (longest - around_the_path - len(".jpg")) + ".jpg"
    assert len(tier.object_key(key("shop", path)).encode()) == longest
    assert tier.object_key(key("shop", "a" + path)) is None


@pytest.mark.parametrize("change, message", [
    (("timeout = \"3s\"", "timeout = \"0s\""), r"\[shared_cache\] timeout: expected a duration above 0"),
    (("timeout = \"3s\"", "max_writes = 0"), r"\[shared_cache\] max_writes: expected an integer from 1 to 256"),
    (("timeout = \"3s\"", "purge_journal_every = \"0s\""),
     r"\[shared_cache\] purge_journal_every: expected a duration from 0.1s to 1h"),
    (("timeout = \"3s\"", "purge_journal_every = \"2h\""),
     r"\[shared_cache\] purge_journal_every: expected a duration from 0.1s to 1h"),
    ((f'bucket = "{BUCKET}"', ""), r"\[shared_cache\] bucket: missing required key"),
    (("timeout = \"3s\"", "size = \"1GB\""), r"\[shared_cache\] size: unknown key"),
    (("timeout = \"3s\"", "signing_key = \"short-KEY-SECRET\""),
     r"\[shared_cache\] signing_key: expected at least 32 characters"),
    (("timeout = \"3s\"", f'signing_key = "{SIGNING_KEY}"\nprevious_signing_keys = ["short-KEY-SECRET"]'),
     r"\[shared_cache\] previous_signing_keys: expected at least 32 characters"),
    (("timeout = \"3s\"", f'previous_signing_keys = ["{SIGNING_KEY}"]'),
     r"\[shared_cache\] previous_signing_keys: needs signing_key"),
    (("timeout = \"3s\"", f'signing_key = "{SIGNING_KEY}"\nprevious_signing_keys = {json.dumps([SIGNING_KEY] * 5)}'),
     r"\[shared_cache\] previous_signing_keys: expected at most 4 keys"),
    (("http://127.0.0.1:9", "https://user:URL-SECRET@127.0.0.1:9"),
     r"\[shared_cache\] endpoint_url: expected no user:password@ in the URL"),
    (("http://127.0.0.1:9", "s3://AKIA:URL-SECRET@host"),
     r"\[shared_cache\] endpoint_url: expected no user:password@ in the URL"),
    (("http://127.0.0.1:9", "AKIA:URL-SECRET@host"),
     r"\[shared_cache\] endpoint_url: expected an http:// or https:// URL, got '…@host'"),
])
def test_shared_cache_config_errors_name_the_key(tmp_path, change, message):
    text = local_config(after=shared_table("http://127.0.0.1:9").replace(*change))
    with pytest.raises(ConfigError, match=message) as raised:
        load_config(write_config(tmp_path, text), load_plugins())
    assert "URL-SECRET" not in str(raised.value)  # a credential in the URL is never quoted


@pytest.mark.parametrize("every, seconds", [('"100ms"', 0.1), ('"1h"', 3600.0)])
def test_the_bounds_of_purge_journal_every_are_taken(tmp_path, every, seconds):
    text = local_config(after=shared_table("http://127.0.0.1:9") + f"purge_journal_every = {every}\n")
    assert load_config(write_config(tmp_path, text), load_plugins()).shared_cache.purge_journal_every == seconds


def test_the_most_previous_signing_keys_taken_load(tmp_path):
    keys = [f"{SIGNING_KEY[:-1]}{i}" for i in range(1, 5)]
    text = local_config(after=shared_table("http://127.0.0.1:9") + f'signing_key = "{SIGNING_KEY}"\n'
                        f"previous_signing_keys = {json.dumps(keys)}\n")
    config = load_config(write_config(tmp_path, text), load_plugins())
    assert [key.reveal() for key in config.shared_cache.previous_signing_keys] == keys


@pytest.mark.parametrize("keys, message", [
    ('signing_key = "${EDGE_TEST_KEY}"', r"\[shared_cache\] signing_key: expected at least 32 characters"),
    (f'signing_key = "{SIGNING_KEY}"\nprevious_signing_keys = ["{SIGNING_KEY[::-1]}", "${{EDGE_TEST_KEY}}"]',
     r"\[shared_cache\] previous_signing_keys: expected at least 32 characters"),
])
def test_a_short_signing_key_from_the_environment_is_refused_and_one_it_does_not_give_stands_in(tmp_path, keys,
                                                                                                  message):
    """`check-config --no-env` checks a config without its secrets: a `${NAME}` the environment does not give stands
    for a key of any length. A value the environment gives is checked as one written in the file."""
    path = write_config(tmp_path, local_config(after=shared_table("http://127.0.0.1:9") + keys))
    with pytest.raises(ConfigError, match=message):
        load_config(path, load_plugins(), environ={"EDGE_TEST_KEY": "short-KEY-SECRET"})
    config = load_config(path, load_plugins(), environ={"EDGE_TEST_KEY": SIGNING_KEY[::-1]})
    assert SIGNING_KEY[::-1] in [key.reveal() for key in (config.shared_cache.signing_key,
                                                          *config.shared_cache.previous_signing_keys)]
    assert load_config(path, load_plugins(), environ=Placeholders()).shared_cache.signing_key is not None


def test_check_config_masks_the_shared_tiers_secret(tmp_path):
    config = load_config(write_config(tmp_path, local_config(after=shared_table("http://127.0.0.1:9"))), load_plugins())
    described = config.describe()["shared_cache"]
    assert (described["bucket"], described["secret_access_key"], described["timeout"]) == (BUCKET, "****", 3.0)
    assert TEST_SECRET not in json.dumps(config.describe(), default=str)
    old_key = "9e7d" * 8
    signed = load_config(write_config(tmp_path, local_config(
        after=shared_table("http://127.0.0.1:9") + f'signing_key = "{SIGNING_KEY}"\n'
                                                   f'previous_signing_keys = ["{old_key}"]\n')), load_plugins())
    described = signed.describe()["shared_cache"]
    assert (described["signing_key"], described["previous_signing_keys"]) == ("****", ["****"])
    assert SIGNING_KEY not in json.dumps(signed.describe(), default=str)
    assert old_key not in json.dumps(signed.describe(), default=str)


async def test_edge_purge_empties_the_shared_tier_too(tier, s3, tmp_path):
    tier.put_later(key("", "a.jpg"), output())
    tier.put_later(key("", "b.jpg"), output())
    await written(tier)
    config = write_config(tmp_path, local_config(after=shared_table(s3.url)), name="purge.toml")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge", "purge", "--config", str(config), "--url", "/a.jpg",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err
    assert json.loads(out)["shared"] == {"removed": 1, "journal": "written"}
    assert await tier.get(key("", "a.jpg")) is None and await tier.get(key("", "b.jpg")) is not None


PURGE_TOKEN = "t0ken-for-the-test"


async def purged_while_the_tier_fails(s3, node) -> dict:
    """The shared part of the answer to a purge of an output stored in the tier, sent while the tier answers 500."""
    assert (await node.fetch("/tr:w-20/coffee.jpg")).code == 200
    await until(partial(output_stored, s3), "the output stored in the shared tier")
    s3.faults = Faults(status=500, only_gets=False)
    answer = await node.fetch("/_edge/purge", method="POST", body=json.dumps({"url": "/coffee.jpg"}),
                              headers={"Authorization": f"Bearer {PURGE_TOKEN}"})
    assert answer.code == 502
    return json.loads(answer.body)["shared"]


async def output_stored(s3) -> bool:
    return await stored(s3, "coffee.jpg")


async def purged(s3) -> bool:
    return not await output_stored(s3) and await stored(s3, "_purges/")


def purging_config(s3, tmp_path) -> Path:
    return write_config(tmp_path, local_config(before=f'[admin]\ntoken = "{PURGE_TOKEN}"\n',
                                               after=shared_table(s3.url)))


async def test_the_shared_tiers_lookups_are_series_at_0_before_the_first(tier, s3, node_factory, tmp_path):
    """`increase()` misses a series' first sample: a node's first shared hit had counted nowhere (docs probe)."""
    node = await node_factory(purging_config(s3, tmp_path))
    exposition = await scrape(node.url)
    assert samples(exposition, "edge_cache_requests_total", tier="shared") == {
        (("result", "hit"), ("tier", "shared")): 0, (("result", "miss"), ("tier", "shared")): 0}


async def test_a_purge_the_shared_tier_failed_is_done_there_once_it_answers(tier, s3, node_factory, tmp_path,
                                                                          monkeypatch):
    """The tier down during a purge: the answer says so (502) and the node tries again until it answers. The
    old image had stayed in the tier, and a node that started with an empty disk served it (`SHARED`)."""
    monkeypatch.setattr(purge, "SHARED_RETRY_SECONDS", 0.1)
    config = purging_config(s3, tmp_path)
    assert await purged_while_the_tier_fails(s3, await node_factory(config)) == {
        "error": "server_error", "journal": {"error": "server_error"}, "retrying": True}
    s3.faults = Faults()
    await until(partial(purged, s3), "the purge done in the tier")


async def test_a_purge_the_shared_tier_failed_is_done_there_by_the_next_worker(tier, s3, node_factory, tmp_path,
                                                                            monkeypatch):
    """The worker that took the purge stops (a reload, a crash) before the tier answers: its tries ended with it,
    and the old image stayed in the tier. What is left to do is in the cache folder, and the next worker does it;
    two workers never both try one (the file's lock)."""
    monkeypatch.setattr(purge, "SHARED_RETRY_SECONDS", 0.1)
    config = purging_config(s3, tmp_path)
    first = await node_factory(config)
    assert (await purged_while_the_tier_fails(s3, first))["retrying"] is True
    await first.stop()
    pending = tmp_path / "cache" / purge.PENDING_FOLDER
    assert len(list(pending.iterdir())) == 1
    await node_factory(config)  # the next worker
    s3.faults = Faults()
    await until(partial(purged, s3), "the purge done in the tier by the next worker")
    async def removed() -> bool:
        return not list(pending.iterdir())
    await until(removed, "the pending purge removed once done")


async def test_edge_purge_leaves_what_the_shared_tier_failed_to_the_node(tier, s3, node_factory, tmp_path, monkeypatch):
    """`edge purge` while the tier fails leaves its part there in the cache folder, as the API does, for the node's
    workers to do: it had only said so (exit 3), and a node started with an empty disk served the old image from the
    tier (`SHARED`), then kept it (fleet probe)."""
    monkeypatch.setattr(purge, "SHARED_RETRY_SECONDS", 0.1)
    config = purging_config(s3, tmp_path)
    node = await node_factory(config)
    assert (await node.fetch("/tr:w-20/coffee.jpg")).code == 200
    await until(partial(output_stored, s3), "the output stored in the shared tier")
    await node.stop()
    s3.faults = Faults(status=500, only_gets=False)
    status, answer = await asyncio.to_thread(purge.purge_offline, load_config(config, load_plugins()),
                                             {"url": "/coffee.jpg"})
    assert (status, answer["shared"]["retrying"]) == (502, True)
    assert len(list((tmp_path / "cache" / purge.PENDING_FOLDER).iterdir())) == 1
    s3.faults = Faults()
    await node_factory(config)  # the node, started again, does it
    await until(partial(purged, s3), "the command's purge done in the tier by the node")


#: the node's user in `test_edge_purge_run_as_root_…`: nobody's
NOBODY = 65534


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root: `sudo edge purge` is tested")
async def test_edge_purge_run_as_root_leaves_what_it_writes_to_the_cache_folders_owner(tier, s3):
    """`sudo edge purge` while the tier fails: the pending purge it leaves in the cache folder, and whatever else it
    writes there, belong to the folder's owner, the node's user. They were root's: the node's workers could not open
    the pending purge, never did it nor removed it (fleet probe)."""
    home = Path(tempfile.mkdtemp())
    try:
        home.chmod(0o755)  # the node's user reaches its folder, as under /var/cache
        cache = home / "cache"
        cache.mkdir()
        os.chown(cache, NOBODY, NOBODY)
        # what the node's user may have put there: a link to root's files, a file root made before (review)
        (home / "roots").mkdir()
        (home / "roots" / "shadow").write_text("root's")
        (cache / "escape").symlink_to(home / "roots")
        os.symlink(home / "roots" / "shadow", cache / "shadow")
        (cache / "earlier").write_text("made by root before")
        config = write_config(home, local_config(after=shared_table(s3.url)))
        s3.faults = Faults(status=500, only_gets=False)
        done = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "edge", "purge", "--config", str(config),
                                                        "--url", "/coffee.jpg"], capture_output=True, text=True,
                                       timeout=120)
        assert done.returncode == 3, done.stderr
        assert json.loads(done.stdout)["shared"]["retrying"] is True
        written = [path for path in cache.rglob("*") if not path.is_symlink() and path.name != "earlier"]
        assert [path.parent.name for path in written if path.suffix == ".json"] == [purge.PENDING_FOLDER]
        assert {path.name: path.stat().st_uid for path in written} == {path.name: NOBODY for path in written}
        assert [(path.stat().st_uid, path.lstat().st_uid) for path in (home / "roots", home / "roots" / "shadow",
                                                                      cache / "earlier")] == [(0, 0)] * 3
    finally:
        s3.faults = Faults()
        shutil.rmtree(home)


async def test_many_pending_purges_hold_no_descriptor_and_say_once_that_the_tier_fails(tier, s3, node_factory,
                                                                                        tmp_path, monkeypatch, caplog):
    """Each pending purge had been held open (and locked) by a worker until done: 1300 purges while the tier was
    down took a worker to its descriptor limit, answering nothing; and each try of each logged a line (200 a
    second). A lock is now held during its try only, a round ends at the first try that gets nothing done, and the
    tier still failing is said once a minute (resource probe)."""
    monkeypatch.setattr(purge, "SHARED_RETRY_SECONDS", 0.1)
    node = await node_factory(purging_config(s3, tmp_path))
    s3.faults = Faults(status=500, only_gets=False)
    caplog.clear()
    for number in range(60):
        answer = await node.fetch("/_edge/purge", method="POST", body=json.dumps({"url": f"/{number}.jpg"}),
                                  headers={"Authorization": f"Bearer {PURGE_TOKEN}"})
        assert answer.code == 502
    opened, calls = len(os.listdir("/proc/self/fd")), len(s3.calls)
    async def rounds() -> bool:  # a few rounds, each ended by its first try
        return len(s3.calls) - calls > 20
    await until(rounds, "rounds of tries")
    assert len(os.listdir("/proc/self/fd")) - opened < 20
    pending_gauge = total(node.node.metrics.exposition().decode(), "edge_purges_pending")
    assert pending_gauge == 60  # "is my purge done fleet-wide?" (SRE probe)
    s3.faults = Faults()
    lines = [r.getMessage() for r in caplog.records]
    assert sum("it still fails" in line for line in lines) == 1
    assert sum("not done in the shared cache:" in line for line in lines) == 60  # the answers', none by tries
    pending = tmp_path / "cache" / purge.PENDING_FOLDER
    async def all_done() -> bool:
        return not list(pending.iterdir())
    await until(all_done, "every pending purge done once the tier answers")
    async def none_pending() -> bool:
        return total(node.node.metrics.exposition().decode(), "edge_purges_pending") == 0
    await until(none_pending, "the gauge back to 0")


async def test_a_purge_left_to_retry_is_counted_pending_at_once(tier, s3, node_factory, tmp_path):
    """`edge_purges_pending` had said 0 until the next round of retries, 10 s after the 502 said `retrying`."""
    node = await node_factory(purging_config(s3, tmp_path))
    s3.faults = Faults(status=500, only_gets=False)
    try:
        answer = await node.fetch("/_edge/purge", method="POST", body=b'{"url": "/a.jpg"}',
                                  headers={"Authorization": f"Bearer {PURGE_TOKEN}"})
    finally:
        s3.faults = Faults()
    assert answer.code == 502 and json.loads(answer.body)["shared"]["retrying"] is True
    assert total(node.node.metrics.exposition().decode(), "edge_purges_pending") == 1


async def test_an_output_read_from_the_shared_tier_is_not_written_back_to_it(tier, s3, node_factory, tmp_path):
    """The tier already holds what a node read from it: writing it back would cost every node a PutObject (and a
    backlog slot) for each URL's first request, and could put back an object a purge removed meanwhile."""
    nodes = []
    for name in ("maker", "reader"):
        (tmp_path / name).mkdir()
        nodes.append(await node_factory(purging_config(s3, tmp_path / name)))
    maker, reader = nodes
    assert (await maker.fetch("/tr:w-20/coffee.jpg")).code == 200
    await written(maker.node.shared)
    response = await reader.fetch("/tr:w-20/coffee.jpg")  # its stores settled: a write back is under way
    assert (response.code, response.headers["X-Cache"]) == (200, "SHARED")
    await written(reader.node.shared)
    assert counted(maker.node.shared, "shared_cache_writes") == {(): 1}
    assert counted(reader.node.shared, "shared_cache_writes") == {(): 0}
    assert len([call for call in s3.calls if call.method == "PUT" and "coffee.jpg" in call.key]) == 1


async def stored(s3, part: str) -> bool:
    """Whether a key of the bucket holds `part`."""
    listed = await asyncio.to_thread(s3.client().list_objects_v2, Bucket=BUCKET)
    return any(part in item["Key"] for item in listed.get("Contents", []))


class BrokenStore:
    """A store whose client raises what it should have classified (as botocore's `ValueError` for a date
    that is not one, `RuntimeError` for one past its range, had escaped the `s3` origin)."""

    max_key_bytes = 1024

    def key_for(self, path: str) -> str:
        return "outputs/" + path

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def get_object(self, *args, **kwargs):
        raise RuntimeError('Unable to calculate correct timezone offset for "99999999999999999999"')

    put_object = delete_prefix = list_objects = get_object


async def test_what_the_store_s_client_raises_unclassified_is_a_counted_failure_never_a_500(tmp_path, caplog):
    """The tier is never a client's error: a read is a miss, a write is dropped (its task had ended in an
    exception nobody retrieved), and a purge or a journal reading fails as the tier's (it had been a 500)."""
    from edge.shared_cache import SharedCacheSettings

    tier = SharedTier(SharedCacheSettings(BrokenStore(), timeout=3), Metrics(), 10**7, 86400.0,
                      tmp_path / APPLIED_FILE)
    cache_key = key("shop", "a.jpg")
    assert await tier.get(cache_key) is None
    tier.put_later(cache_key, output())
    await written(tier)
    with pytest.raises(SharedCacheFailure):
        await tier.delete_prefix(path_key("shop", "a.jpg"))
    with pytest.raises(SharedCacheFailure):
        await tier.record_purge(path_key("shop", "a.jpg"))
    assert await tier.read_purges() is None
    assert counted(tier, "shared_cache_failures") == {("get", "error"): 1, ("put", "error"): 1,
                                                      ("delete", "error"): 1, ("journal", "error"): 2}
    assert "raised an unexpected error" in caplog.text


async def test_a_purge_of_many_prefixes_writes_them_at_once_and_tidies_the_journal_once(tier, s3):
    """A Cloudinary-style URL purges up to 15 prefixes: written one after the other, each followed by the
    journal's housekeeping (two listings and a delete), a store answering in 0.5 s took 28 s, past the load
    balancers' 30 s for the admin side."""
    store, listings = tier.store, []
    real = store.list_objects

    async def counted(prefix, start_after="", pages=1):
        listings.append(prefix)
        return await real(prefix, start_after, pages)
    store.list_objects = counted
    prefixes = [path_key("shop", f"a{n}.jpg") for n in range(15)]
    await tier.record_purge(prefixes)
    journal = [item["Key"] for item in s3.client().list_objects_v2(Bucket=BUCKET, Prefix=tier.journal._folder)
               .get("Contents", [])]
    assert len(journal) == 15 and len(listings) == 2  # its written entry, then the old ones: once


class CountingStore(BrokenStore):
    """A store whose every call takes a while, counting the calls in flight at once."""
    def __init__(self) -> None:
        self.in_flight = self.most_in_flight = 0

    async def _call(self, result):
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.02)
            return result
        finally:
            self.in_flight -= 1

    async def put_object(self, key, body, content_type):
        return await self._call(None)

    async def list_objects(self, prefix, start_after="", pages=1):
        return await self._call([])

    async def delete_prefix(self, prefix, direct=None):
        return await self._call(0)


async def test_purges_at_once_leave_the_tier_s_reads_connections(tmp_path):
    """Five Cloudinary-style purges at once (15 prefixes each: an entry written and a prefix deleted for each)
    had 75 calls in flight on the tier's one client of 64 connections; its reads queued behind them."""
    from edge.purge import _everywhere
    from edge.shared_cache import PURGE_CALLS, SharedCacheSettings

    store = CountingStore()
    tier = SharedTier(SharedCacheSettings(store, timeout=5), Metrics(), 10**7, 86400.0, tmp_path / APPLIED_FILE)
    prefixes = [path_key("cld", f"image/upload/p{n}.jpg") for n in range(15)]
    answers = await asyncio.gather(*(_everywhere(None, prefixes, {"url": "x"}, None, None, tier) for _ in range(5)))
    assert [status for status, _ in answers] == [200] * 5
    assert store.most_in_flight <= PURGE_CALLS + 5  # and each purge's housekeeping, a listing


async def test_a_purge_of_a_slow_store_gets_its_ten_timeouts_for_each_call(s3, tmp_path):
    """`[shared_cache] timeout` bounds a read or write; a purge gets ten times it, as the docs say. The store's
    client had cut every call at `timeout` itself: a store answering each listing in 0.8 s under a 0.5 s timeout
    failed every purge, and every retry of it for 15 minutes (fleet probe)."""
    s3.client().create_bucket(Bucket=BUCKET)
    table = shared_cache_table(s3.url, BUCKET, timeout="0.5s")
    config = load_config(write_config(tmp_path, local_config(after=table)), load_plugins())
    tier = SharedTier(config.shared_cache, Metrics(), 10**7, 86400.0, tmp_path / APPLIED_FILE)
    await tier.open()
    try:
        cache_key = key("shop", "slow.jpg")
        tier.put_later(cache_key, output())
        await written(tier)
        s3.faults = Faults(delay=0.8, only_gets=False)
        assert await tier.delete_prefix(path_key("shop", "slow.jpg")) == 1
        assert await tier.get(cache_key) is None and counted(tier, "shared_cache_failures") == {("get", "timeout"): 1}
    finally:
        s3.faults = Faults()
        await tier.close()
        client = s3.client()
        for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
            client.delete_object(Bucket=BUCKET, Key=item["Key"])
        client.delete_bucket(Bucket=BUCKET)


async def test_reads_the_store_s_client_fails_unclassified_count_toward_skipping_it(tmp_path):
    """A client that raises what it should have classified at every read is as broken as a store that times out:
    after `SKIP_AFTER_FAILURES` such reads in a row, a worker's reads are skipped too."""
    from edge.shared_cache import SKIP_AFTER_FAILURES, SharedCacheSettings

    tier = SharedTier(SharedCacheSettings(BrokenStore(), timeout=3), Metrics(), 10**7, 86400.0,
                      tmp_path / APPLIED_FILE)
    tier.clock = lambda: 1000.0
    for _ in range(SKIP_AFTER_FAILURES + 3):
        assert await tier.get(key("shop", "a.jpg")) is None
    assert counted(tier, "shared_cache_failures") == {("get", "error"): SKIP_AFTER_FAILURES, ("get", "skipped"): 3}


async def test_a_hung_store_is_skipped_after_reads_fail_in_a_row_until_one_succeeds(tier, s3):
    """A hung store added its whole timeout to every miss of every node for as long as it hung (fleet probe):
    after `SKIP_AFTER_FAILURES` reads failed in a row, a worker's reads are misses at once for `SKIP_SECONDS`,
    counted `skipped`; then one read tries the store again."""
    from edge.shared_cache import SKIP_AFTER_FAILURES, SKIP_SECONDS
    cache_key = key("shop", "hung.jpg")
    tier.put_later(cache_key, output())
    await written(tier)
    now = [1000.0]
    tier.clock = lambda: now[0]
    tier.timeout = 0.3
    s3.faults = Faults(delay=2.0)  # reads only
    try:
        for _ in range(SKIP_AFTER_FAILURES):
            assert await tier.get(cache_key) is None
        gets = len(s3.calls)
        started = time.monotonic()
        for _ in range(20):
            assert await tier.get(cache_key) is None
        assert time.monotonic() - started < 0.3 * 2 and len(s3.calls) == gets  # not asked, not waited for
        now[0] += SKIP_SECONDS  # one read tries again (the others meanwhile skipped), fails: skipped again
        assert await asyncio.gather(*(tier.get(cache_key) for _ in range(10))) == [None] * 10
        assert len(s3.calls) == gets + 1
        assert await tier.get(cache_key) is None and len(s3.calls) == gets + 1
    finally:
        s3.faults = Faults()
    now[0] += SKIP_SECONDS
    assert await tier.get(cache_key) == output()  # back: found, and no longer skipped
    assert await tier.get(cache_key) == output()
    assert counted(tier, "shared_cache_failures") == {("get", "timeout"): SKIP_AFTER_FAILURES + 1,
                                                      ("get", "skipped"): 30}


async def test_a_purge_stopped_before_the_shared_tier_leaves_its_part_to_the_others(tier, s3, node_factory, tmp_path):
    """The shared tier's part comes after the nodes' (so that each answer counts what its tiers held): a worker
    stopped in between (a deploy's grace running out) had lost it, and the old image stayed in the tier. It is
    left in the cache folder before the purge begins, locked while this worker tries it, let go if it stops."""
    node = await node_factory(purging_config(s3, tmp_path))
    assert (await node.fetch("/tr:w-20/coffee.jpg")).code == 200
    await until(partial(output_stored, s3), "the output stored in the shared tier")
    s3.faults = Faults(held_puts="outputs/_purges/", only_gets=False)  # the journal's write hangs
    target = {"url": "/coffee.jpg"}
    running = asyncio.ensure_future(purge._everywhere(
        node.node.caches, purge.key_prefixes(node.node.router, target), target, None, None, node.node.shared,
        node.node.pending_purges))
    pending = tmp_path / "cache" / purge.PENDING_FOLDER

    async def left() -> bool:
        return pending.is_dir() and len(list(pending.iterdir())) == 1
    await until(left, "the shared part left before the purge begins")
    held = purge.PendingPurges(pending)  # another worker: the purge's own holds it while it runs
    assert held.take(held.names(), set()) is None
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    s3.faults.hold.set()
    taken = held.take(held.names(), set())  # let go: the others try it
    assert taken is not None and taken[1].target == target and not taken[1].journal_written
    held.tried(*taken)


async def test_background_writes_hold_a_bounded_number_of_bytes(tier, s3, monkeypatch):
    """Writes waiting for a store that does not answer hold their outputs: counted by number alone, 128 outputs of
    up to an eighth of the output tier each. Beyond `BACKLOG_BYTES` a new write is dropped, but the first, alone."""
    monkeypatch.setattr(shared_cache, "BACKLOG_BYTES", 2_500_000)
    s3.faults = Faults(held_puts="outputs/", only_gets=False)  # the store takes the writes, and answers later
    big = output(b"\xff\xd8" + os.urandom(1_200_000))
    for path in ("a.jpg", "b.jpg", "c.jpg"):  # 1.2 MB each: the third would hold 3.6 MB
        tier.put_later(key("shop", path), big)
    assert len(tier._writes) == 2 and counted(tier, "shared_cache_failures") == {("put", "backlog_full"): 1}
    s3.faults.hold.set()
    await written(tier)
    assert tier._pending_bytes == 0 and counted(tier, "shared_cache_writes") == {(): 2}
    monkeypatch.setattr(shared_cache, "BACKLOG_BYTES", 1_000_000)
    tier.put_later(key("shop", "c.jpg"), big)  # over the bound, but alone: written
    await written(tier)
    assert counted(tier, "shared_cache_writes") == {(): 3}


def test_pending_purges_are_bounded_in_number_and_in_time(tmp_path, monkeypatch):
    """A shared tier down for long must not fill the cache folder: past `MAX_PENDING` a purge is not left (its answer
    says it is not retried), and a try of one whose time is over removes it, done or not."""
    monkeypatch.setattr(purge, "MAX_PENDING", 3)
    pending = purge.PendingPurges(tmp_path / purge.PENDING_FOLDER)
    def a_purge(journal_written: bool, until: float) -> purge.PendingPurge:
        return purge.PendingPurge([path_key("shop", "a.jpg")], {"url": "/shop/a.jpg"}, journal_written, False, until)
    try:
        over, current = pending.add(a_purge(False, time.time() - 1)), pending.add(a_purge(False, time.time() + 600))
        assert over is not None and current is not None and pending.add(a_purge(False, time.time() + 600)) is not None
        assert pending.add(a_purge(False, time.time() + 600)) is None and pending.count() == 3
        pending.tried(over, a_purge(True, time.time() - 1))
        pending.tried(current, a_purge(True, time.time() + 600))
        assert over not in pending.names() and current in pending.names() and pending.count() == 2
        taken = pending.take(pending.names(), set())
        assert taken is not None and taken[1].journal_written and not taken[1].objects_removed
    finally:
        pending.close()


class HalfFailingTier:
    """A shared tier whose journal write or object removal fails: the purge's other step succeeds, unless
    `objects_fail` too. `asked`: the prefixes whose objects it was asked to remove, in order."""

    def __init__(self, journal_fails: bool, objects_fail: bool | None = None):
        self.journal_fails = journal_fails
        self.objects_fail = not journal_fails if objects_fail is None else objects_fail
        self.asked: list[str] = []

    async def record_purge(self, prefixes: list[str]) -> None:
        if self.journal_fails:
            raise SharedCacheFailure("server_error", "the journal's write failed")

    async def delete_prefix(self, prefix: str) -> int:
        self.asked.append(prefix)
        if self.objects_fail:
            raise SharedCacheFailure("denied", "the objects' removal failed")
        return 1


def pending_purges_of(tmp_path, *paths: str) -> purge.PendingPurges:
    """Pending purges of `paths` (of the endpoint `shop`), the oldest first, none done in the shared tier."""
    pending = purge.PendingPurges(tmp_path / purge.PENDING_FOLDER)
    for path in paths:
        name = pending.add(purge.PendingPurge([path_key("shop", path)], {"url": f"/shop/{path}"}, False, False,
                                              time.time() + 600))
        pending.tried(name, purge.PendingPurge([path_key("shop", path)], {"url": f"/shop/{path}"}, False, False,
                                               time.time() + 600))
    return pending


async def one_round_of_retries(tmp_path, tier: HalfFailingTier) -> list[bool]:
    """The purges of `a.jpg` and `b.jpg` left pending, then one round of retries with `tier`: for each purge still
    pending, whether its journal entry is written (how far it got, recorded)."""
    pending = pending_purges_of(tmp_path, "a.jpg", "b.jpg")
    try:
        await purge.retry_pending(pending, tier, asyncio.to_thread)
        return [json.loads((tmp_path / purge.PENDING_FOLDER / name).read_text())["journal_written"]
                for name in pending.names()]
    finally:
        pending.close()


async def test_a_round_of_retries_ends_at_the_first_try_that_gets_nothing_done(tmp_path):
    """The tier still failing, the others would fail too, each waiting its timeout (a mutation audit: trying every
    pending purge each round survived)."""
    tier = HalfFailingTier(journal_fails=True, objects_fail=True)
    assert await one_round_of_retries(tmp_path, tier) == [False, False]
    assert tier.asked == [path_key("shop", "a.jpg")]


async def test_a_round_of_retries_tries_each_pending_purge_once(tmp_path):
    """A try that gets a step done goes on to the next purge, not to the same one again (a mutation audit: taking
    again what the round tried survived)."""
    tier = HalfFailingTier(journal_fails=False)  # the journal written, the objects' removal failing
    assert await one_round_of_retries(tmp_path, tier) == [True, True]
    assert tier.asked == [path_key("shop", "a.jpg"), path_key("shop", "b.jpg")]


async def test_a_purge_done_in_the_shared_tier_leaves_nothing_pending(tmp_path):
    """Left before it begins, removed once done: else `edge_purges_pending` counts it and a round does it again (a
    mutation audit: only letting it go survived)."""
    caches = Caches(tmp_path / "cache", 10**9, 10**9)
    pending = purge.PendingPurges(tmp_path / "cache" / purge.PENDING_FOLDER)
    try:
        status, answer = await purge._everywhere(caches, [path_key("shop", "a.jpg")], {"url": "/shop/a.jpg"}, None,
                                                 None, HalfFailingTier(journal_fails=False, objects_fail=False),
                                                 pending)
    finally:
        pending.close()
        caches.close()
    assert (status, answer["shared"], pending.count()) == (200, {"removed": 1, "journal": "written"}, 0)


async def test_a_round_of_retries_tries_at_most_tries_a_round(tmp_path, monkeypatch):
    """The rest wait for the next round (a mutation audit on the bound)."""
    monkeypatch.setattr(purge, "TRIES_A_ROUND", 1)
    tier = HalfFailingTier(journal_fails=False, objects_fail=False)
    assert await one_round_of_retries(tmp_path, tier) == [False]  # b.jpg's, not tried
    assert tier.asked == [path_key("shop", "a.jpg")]


@pytest.mark.parametrize("max_pending, retrying", [(1, True), (0, False)])
async def test_a_purge_says_it_is_retried_only_when_it_could_be_left_to_retry(tmp_path, monkeypatch, max_pending,
                                                                             retrying):
    """Past `MAX_PENDING` nothing is left for the workers to try again: the answer had said `retrying` all the same
    (a mutation audit)."""
    monkeypatch.setattr(purge, "MAX_PENDING", max_pending)
    caches = Caches(tmp_path / "cache", 10**9, 10**9)
    pending = purge.PendingPurges(tmp_path / "cache" / purge.PENDING_FOLDER)
    try:
        status, answer = await purge._everywhere(caches, [path_key("shop", "a.jpg")], {"url": "/shop/a.jpg"}, None,
                                                 None, HalfFailingTier(journal_fails=True), pending)
    finally:
        pending.close()
        caches.close()
    assert (status, answer["shared"]["retrying"], pending.count()) == (502, retrying, max_pending)


@pytest.mark.parametrize("journal_fails", [True, False])
async def test_a_purge_the_shared_tier_did_half_of_is_a_502(journal_fails):
    """Without the journal's entry a node the purge did not reach serves its old outputs again; without the objects'
    removal every node reads them back: either half failing is a 502 saying which, not a 200."""
    target = {"url": "/shop/a.jpg"}
    status, answer = await purge._everywhere(None, [path_key("shop", "a.jpg")], target, None, None,
                                             HalfFailingTier(journal_fails))
    assert status == 502
    if journal_fails:
        assert answer["shared"] == {"removed": 1, "journal": {"error": "server_error"}}
    else:
        assert answer["shared"] == {"error": "denied", "journal": "written"}


async def test_background_writes_hold_a_bounded_number_of_outputs(tier, s3):
    """Tiny outputs stay far below `BACKLOG_BYTES`: a store that does not answer had had every miss of the worker
    add a write task of its own, without bound. Beyond `max_writes × BACKLOG_PER_WRITE` a new write is dropped."""
    bound = shared_cache.SharedCacheSettings(store=None).max_writes * shared_cache.BACKLOG_PER_WRITE  # (the default)
    s3.faults = Faults(held_puts="outputs/", only_gets=False)
    for n in range(bound + 1):
        tier.put_later(key("shop", f"{n}.jpg"), output())
    assert len(tier._writes) == bound and counted(tier, "shared_cache_failures") == {("put", "backlog_full"): 1}
    s3.faults.hold.set()
    await written(tier)
    assert counted(tier, "shared_cache_writes") == {(): bound}


async def test_an_output_larger_than_the_output_tier_keeps_is_not_written(tier, s3):
    """What the node's output tier would not keep (a share of it) is not written either: no read could take it."""
    largest = 10**7 // MAX_ENTRY_SHARE  # the fixture's output tier
    tier.put_later(key("shop", "large.jpg"), output(b"\xff\xd8" + os.urandom(largest - 2)))
    tier.put_later(key("shop", "larger.jpg"), output(b"\xff\xd8" + os.urandom(largest - 1)))
    await written(tier)
    stored = [item["Key"] for item in s3.client().list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert len(stored) == 1 and "/large.jpg/" in stored[0]
    assert counted(tier, "shared_cache_writes") == {(): 1}


async def test_a_write_the_store_does_not_answer_is_given_up_after_the_timeout(tier, s3):
    """A background write holds one of `max_writes` slots and its output: a hung store must not keep them past
    `timeout` (the store's client allows a purge's calls ten times as long)."""
    tier.timeout = 0.3
    s3.faults = Faults(held_puts="outputs/", only_gets=False)
    try:
        tier.put_later(key("shop", "hung.jpg"), output())
        await asyncio.wait_for(asyncio.gather(*tier._writes), 0.3 * 10)  # far below the client's own (30 s)
    finally:
        s3.faults.hold.set()
    assert counted(tier, "shared_cache_failures") == {("put", "timeout"): 1} and tier._pending_bytes == 0
    assert counted(tier, "shared_cache_writes") == {(): 0}
