"""The purge journal (edge/purge_journal.py), against moto's S3 server and nodes on real sockets: a
purge reaches the nodes of a fleet that it could not call (cut off, down, not listed) through the
shared tier, and a shared object made from an original confirmed before a purge is never served."""

import asyncio
import base64
import json

import pytest
from tornado.httpclient import AsyncHTTPClient

from edge.purge_journal import APPLIED_FILE, FOLDER, MAX_KEY_BYTES, PurgeJournal
from tests.assets import centre_colour, colour, same_colour, solid
from tests.fleet import AUTH, TOKEN
from tests.nodes import decode, until, web_config, write_config
from tests.s3server import shared_cache_table
from tests.servers import HTTPOrigin

BUCKET = "journal-shared"
OLD, NEW = colour(1), colour(2)
URL = "/tr:w-40/img.jpg"


@pytest.fixture
async def origin():
    server = await HTTPOrigin(files={"img.jpg": solid(120, 80, OLD)}).start()
    yield server
    await server.stop()


@pytest.fixture
async def bucket(s3):
    client = s3.client()
    client.create_bucket(Bucket=BUCKET)
    yield client
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


@pytest.fixture
def start(node_factory, origin, s3, bucket, tmp_path):
    """`await start(name)`: a node with its own cache folder (`tmp_path/name`, kept across restarts),
    the shared tier, the admin token and no peers: no purge reaches it but through the journal."""
    async def start(name: str):
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        shared = f'[admin]\ntoken = "{TOKEN}"\n' + shared_cache_table(s3.url, BUCKET, more='purge_journal_every = "0.2s"')
        return await node_factory(write_config(folder, web_config(origin.url, before="[server]\naccess_log = false\n",
                                                                  after=shared)))
    return start


async def purge(node, target: dict) -> dict:
    response = await node.fetch("/_edge/purge", method="POST", headers=AUTH, body=json.dumps(target).encode())
    assert response.code == 200, response.body
    return json.loads(response.body)


def cached_as(response) -> tuple[str, bool]:
    """X-Cache and whether the image is the new one."""
    assert response.code == 200, response.body
    return response.headers["X-Cache"], same_colour(centre_colour(decode(response)), NEW)


def outputs(bucket) -> list[str]:
    return [item["Key"] for item in bucket.list_objects_v2(Bucket=BUCKET).get("Contents", [])
            if not item["Key"].startswith("outputs/" + FOLDER)]


async def until_written(bucket, count: int) -> None:
    async def there() -> bool:
        return len(outputs(bucket)) == count
    await until(there, "the shared tier's background write")


async def test_a_node_the_purge_could_not_call_applies_it_from_the_journal(start, origin, bucket):
    sender, cut_off = await start("sender"), await start("cut-off")
    assert cached_as(await cut_off.fetch(URL)) == ("MISS", False)
    assert cached_as(await cut_off.fetch(URL)) == ("HIT", False)
    await until_written(bucket, 1)
    origin.files["img.jpg"] = solid(120, 80, NEW)

    answer = await purge(sender, {"url": "/img.jpg"})
    assert answer["shared"] == {"removed": 1, "journal": "written"}
    journal = [item["Key"] for item in bucket.list_objects_v2(Bucket=BUCKET, Prefix="outputs/" + FOLDER)["Contents"]]
    assert len(journal) == 1

    applied = cut_off.config.cache.dir / APPLIED_FILE
    async def read() -> bool:
        return applied.exists()
    await until(read, "the cut-off node's reading of the journal")
    assert cached_as(await cut_off.fetch(URL)) == ("MISS", True)
    assert origin.requests["img.jpg"] == 2


async def test_a_node_down_during_a_purge_applies_it_before_it_serves_again(start, origin, bucket):
    sender, away = await start("sender"), await start("away")
    assert cached_as(await away.fetch(URL)) == ("MISS", False)
    await until_written(bucket, 1)
    await away.stop()
    origin.files["img.jpg"] = solid(120, 80, NEW)
    await purge(sender, {"prefix": "/"})

    back = await start("away")  # the same cache folder: it still holds the old output and original
    assert cached_as(await back.fetch(URL)) == ("MISS", True)
    # and a restart after that applies nothing again: the output made since stays
    await back.stop()
    again = await start("away")
    assert cached_as(await again.fetch(URL)) == ("HIT", True)


async def test_a_shared_object_made_before_a_purge_is_never_served(start, origin, bucket):
    """A write that lands after the purge (started before it, or by a node the purge missed, from the
    original it kept) holds an output made from an original confirmed before the purge."""
    maker = await start("maker")
    assert cached_as(await maker.fetch(URL)) == ("MISS", False)
    await until_written(bucket, 1)
    key, = outputs(bucket)
    late = bucket.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    origin.files["img.jpg"] = solid(120, 80, NEW)
    await purge(maker, {"url": "/img.jpg"})
    assert outputs(bucket) == []
    bucket.put_object(Bucket=BUCKET, Key=key, Body=late)  # the late write

    newcomer = await start("newcomer")  # an empty disk: it would take the shared tier's copy
    assert cached_as(await newcomer.fetch(URL)) == ("MISS", True)
    assert origin.requests["img.jpg"] == 2
    # what is made from the new original after the purge is shared as before
    await until_written(bucket, 1)
    third = await start("third")
    assert cached_as(await third.fetch(URL)) == ("SHARED", True)


async def test_the_journal_purges_more_never_less_and_trusts_no_clock_but_the_stores(start, bucket):
    node = await start("node")
    store = node.node.shared.store
    now = [1_000_000.0]  # long before the node's own readings look: they ignore these entries

    def journal(name: str, lag: float = 0.0, retention: float = 3600) -> PurgeJournal:
        return PurgeJournal(store, retention, node.config.cache.dir / name, clock=lambda: now[0] + lag)
    writer = journal("writer-mark")

    long_prefix = "\0" + "a/" * 1000  # a path prefix too long for an object key: shortened, so broader
    await writer.record(long_prefix)
    assert all(len(key.encode()) <= MAX_KEY_BYTES for key, _ in await store.list_objects(store.key_for(FOLDER)))
    shortened, = await writer.read()
    assert long_prefix.startswith(shortened) and len(shortened) < len(long_prefix)
    assert writer.covers("\0" + "a/" * 1000 + "x.jpg\0r2:w-40\0", checked_at=now[0] - 1)
    assert not writer.covers("\0b.jpg\0r2:w-40\0", checked_at=now[0] - 1)
    assert not writer.covers("\0" + "a/" * 1000 + "x.jpg\0r2:w-40\0", checked_at=now[0] + 1)

    # someone else's objects in the folder are not purges; an entry from the future purges from now on;
    # a writer whose clock is a year ahead deletes no entry early (the store's clock decides)
    bucket.put_object(Bucket=BUCKET, Key="outputs/" + FOLDER + "not-an-entry", Body=b"")
    now[0] += 1
    await writer.record("\0c.jpg\0")
    await journal("ahead-mark", lag=86400 * 365).record("\0e.jpg\0")
    reader = journal("reader-mark", lag=30)
    assert await reader.read() == [shortened, "\0c.jpg\0", "\0e.jpg\0"]
    assert reader.covers("\0e.jpg\0r2:w-40\0", checked_at=now[0] + 29)
    assert not reader.covers("\0e.jpg\0r2:w-40\0", checked_at=now[0] + 31)

    # whatever is older than the retention in the journal's folder, by the store's clock, is deleted by
    # the next purge
    await asyncio.sleep(2.1)  # the store's clock moves on (S3 lists its times to the second)
    await journal("short-mark", retention=1.0).record("\0f.jpg\0")
    names = [key.removeprefix("outputs/" + FOLDER) for key, _ in await store.list_objects(store.key_for(FOLDER))]
    assert len(names) == 1 and names[0].endswith(base64.urlsafe_b64encode(b"\0f.jpg\0").decode().rstrip("="))


async def test_a_journal_that_cannot_be_read_is_counted_and_read_again(start, s3, bucket):
    node = await start("node")
    s3.faults.status, s3.faults.only_gets = 500, False
    await node.node.apply_purges()
    s3.reset()
    failures = {tuple(s.labels.values()): s.value for family in node.node.metrics.shared_cache_failures.collect()
                for s in family.samples if s.name.endswith("_total")}
    assert failures[("journal", "server_error")] >= 1
    response = await AsyncHTTPClient().fetch(node.url + URL, raise_error=False)
    assert response.code == 200
