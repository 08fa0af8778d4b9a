"""The purge journal (edge/purge_journal.py), against moto's S3 server and nodes on real sockets: a
purge reaches the nodes of a fleet that it could not call (cut off, down, not listed) through the
shared tier, and a shared object made from an original confirmed before a purge is never served."""

import asyncio
import base64
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from tornado.httpclient import AsyncHTTPClient

from edge import purge as purge_module
from edge import purge_journal, shared_cache
from edge.origin import OriginFailure
from edge.purge_journal import APPLIED_FILE, FOLDER, PurgeJournal, _entry_name, _read_applied
from tests.assets import centre_colour, colour, same_colour, solid
from tests.fleet import AUTH, TOKEN, start_fleet
from tests.nodes import NodeProcess, decode, until, web_config, write_config
from tests.s3server import Faults, shared_cache_table
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
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        if keys := [{"Key": item["Key"]} for item in page.get("Contents", [])]:
            client.delete_objects(Bucket=BUCKET, Delete={"Objects": keys, "Quiet": True})
    client.delete_bucket(Bucket=BUCKET)


@pytest.fixture
def start(node_factory, origin, s3, bucket, tmp_path):
    """`await start(name)`: a node with its own cache folder (`tmp_path/name`, kept across restarts),
    the shared tier, the admin token and no peers: no purge reaches it but through the journal."""
    async def start(name: str, more: str = ""):
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        shared = f'[admin]\ntoken = "{TOKEN}"\n' + shared_cache_table(s3.url, BUCKET,
                                                                     more='purge_journal_every = "0.2s"\n' + more)
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


async def test_with_a_signing_key_only_the_fleets_entries_are_applied(start, origin, bucket, caplog, monkeypatch):
    """Whoever could write the bucket could have the fleet purge anything, each entry costing every worker of every
    node milliseconds (attack probe: 1000 entries, 4 s of a worker's CPU). With `signing_key`, an entry's tag is
    its HMAC (in the 8 hex digits of the tag every release reads): one without is ignored, said once a minute."""
    monkeypatch.setattr(purge_journal, "_UNSIGNED_LINES", purge_journal.Sparse(60.0))
    signed = f'signing_key = "{"5f0c" * 8}"\n'
    sender = await start("sender", signed)
    cut_off = await start("cut-off", signed + f'previous_signing_keys = ["{"9e7d" * 8}"]\n')
    origin.files["other.jpg"] = origin.files["third.jpg"] = solid(120, 80, OLD)
    for url in (URL, "/tr:w-40/other.jpg", "/tr:w-40/third.jpg"):
        await cut_off.fetch(url)
        assert (await cut_off.fetch(url)).headers["X-Cache"] == "HIT"
    forged = _entry_name(time.time() - 1, "\0other.jpg\0")  # a random tag
    guessed = _entry_name(time.time() - 1, "\0other.jpg\0", b"guessed-key")
    rotated = _entry_name(time.time(), "\0third.jpg\0", ("9e7d" * 8).encode())  # the previous key's
    put_all(bucket, [JOURNAL + forged, JOURNAL + guessed, JOURNAL + rotated])
    origin.files["img.jpg"] = solid(120, 80, NEW)

    assert (await purge(sender, {"url": "/img.jpg"}))["shared"]["journal"] == "written"
    applied = cut_off.config.cache.dir / APPLIED_FILE
    async def read() -> bool:  # both signed entries: a reading may apply the rotated one before the purge is sent
        return len(_read_applied(applied)[1]) == 2
    await until(read, "the cut-off node's reading of the journal")
    assert cached_as(await cut_off.fetch(URL)) == ("MISS", True)  # the sender's entry, signed
    assert (await cut_off.fetch("/tr:w-40/other.jpg")).headers["X-Cache"] == "HIT"  # neither forgery
    assert (await cut_off.fetch("/tr:w-40/third.jpg")).headers["X-Cache"] == "MISS"  # signed with a previous key
    assert caplog.text.count("not signed with the fleet's signing_key is ignored") == 1
    # and counted, for an alert: the two forgeries
    assert cut_off.node.metrics.shared_cache_failures.labels("journal", "unsigned")._value.get() == 2


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
    # what is made from the new original after the purge is shared as before (once it replaced the late write)
    async def replaced() -> bool:
        return bucket.get_object(Bucket=BUCKET, Key=key)["Body"].read() != late
    await until(replaced, "the newcomer's write to the shared tier")
    third = await start("third")
    assert cached_as(await third.fetch(URL)) == ("SHARED", True)


async def test_a_purge_of_a_file_leaves_the_folder_of_the_same_name_and_the_reverse(start, origin, bucket):
    """The objects of `a` are `outputs/_default/a/<hash>`, those of `a/b.jpg` `outputs/_default/a/b.jpg/<hash>`:
    one key prefix. A purge of `a` had deleted both, and one of the prefix `/a/` both too."""
    origin.files.update({"a": solid(120, 80, OLD), "a/b.jpg": solid(120, 80, OLD)})
    node = await start("node")
    for url in ("/tr:w-40/a", "/tr:w-40/a/b.jpg"):
        assert cached_as(await node.fetch(url)) == ("MISS", False)
    await until_written(bucket, 2)
    mine, = [key for key in outputs(bucket) if "/b.jpg/" not in key]

    assert (await purge(node, {"url": "/a"}))["shared"] == {"removed": 1, "journal": "written"}
    left, = outputs(bucket)
    assert left.startswith("outputs/_default/a/b.jpg/")
    newcomer = await start("newcomer")  # an empty disk: what is left in the shared tier is all it has
    assert cached_as(await newcomer.fetch("/tr:w-40/a/b.jpg")) == ("SHARED", False)
    assert cached_as(await newcomer.fetch("/tr:w-40/a")) == ("MISS", False)
    assert origin.requests == {"a": 2, "a/b.jpg": 1}

    await until_written(bucket, 2)  # `a` made again
    assert (await purge(node, {"prefix": "/a/"}))["shared"] == {"removed": 1, "journal": "written"}
    assert outputs(bucket) == [mine]


async def test_a_write_under_way_across_a_purge_is_never_served_by_its_node(origin, s3, bucket, tmp_path):
    """The write of an output made before a purge, still under way (a slow store), lands after the purge
    has emptied the shared tier. The journal holds it back once a worker has read it (within
    `purge_journal_every`); until then the node's next miss took it as `SHARED`, kept it on disk and sent it
    with a year's max-age. The node's own purge records hold it back at once, in every worker."""
    shared = shared_cache_table(s3.url, BUCKET, more='purge_journal_every = "1h"')
    two_workers = f'[server]\nworkers = 2\n[admin]\ntoken = "{TOKEN}"\n'
    node = NodeProcess(write_config(tmp_path, web_config(origin.url, two_workers, after=shared)))
    try:
        s3.faults.held_puts = "outputs/_default/"
        assert cached_as(await AsyncHTTPClient().fetch(node.url + URL)) == ("MISS", False)

        async def writing() -> bool:
            return any(call.method == "PUT" and call.key.startswith("outputs/_default/") for call in s3.calls)
        await until(writing, "the write to the shared tier")
        origin.files["img.jpg"] = solid(120, 80, NEW)
        answer = await purge_process(node, {"url": "/img.jpg"})
        assert answer["shared"] == {"removed": 0, "journal": "written"}  # not there yet
        s3.faults.hold.set()
        await until_written(bucket, 1)  # the old output lands

        for _ in range(6):  # either worker
            response = await AsyncHTTPClient().fetch(node.url + URL, raise_error=False)
            assert cached_as(response)[1], response.headers["X-Cache"]
        assert origin.requests["img.jpg"] == 2
    finally:
        node.stop()


async def purge_process(node: NodeProcess, target: dict) -> dict:
    response = await AsyncHTTPClient().fetch(node.url + "/_edge/purge", method="POST", headers=AUTH,
                                             body=json.dumps(target).encode(), raise_error=False)
    assert response.code == 200, response.body
    return json.loads(response.body)


async def test_the_journal_purges_more_never_less_and_trusts_no_clock_but_the_stores(start, bucket):
    node = await start("node")
    store = node.node.shared.store
    now = [1_000_000.0]  # long before the node's own readings look: they ignore these entries

    def journal(name: str, lag: float = 0.0, retention: float = 3600) -> PurgeJournal:
        return PurgeJournal(store, retention, node.config.cache.dir / name, clock=lambda: now[0] + lag)
    writer = journal("writer-mark")

    long_prefix = "\0" + "a/" * 1000  # a path prefix too long for an object key: shortened, so broader
    await writer.record(long_prefix)
    listed = await store.list_objects(store.key_for(FOLDER))
    assert all(len(key.encode()) <= store.max_key_bytes == 1024 for key, _ in listed)
    shortened, = await writer.read()
    assert long_prefix.startswith(shortened) and len(shortened) < len(long_prefix)
    assert writer.covers("\0" + "a/" * 1000 + "x.jpg\0r3:w-40\0", checked_at=now[0] - 1)
    assert not writer.covers("\0b.jpg\0r3:w-40\0", checked_at=now[0] - 1)
    assert not writer.covers("\0" + "a/" * 1000 + "x.jpg\0r3:w-40\0", checked_at=now[0] + 1)

    # someone else's objects in the folder are not purges; an entry from a clock a little ahead purges
    # from now on, one from a clock a year ahead is ignored; and a writer whose clock is a year ahead
    # deletes no entry early (the store's clock decides)
    bucket.put_object(Bucket=BUCKET, Key="outputs/" + FOLDER + "not-an-entry", Body=b"")
    now[0] += 1
    await writer.record("\0c.jpg\0")
    await journal("ahead-mark", lag=120).record("\0e.jpg\0")
    ahead = journal("year-ahead-mark", lag=86400 * 365)
    await ahead.expire(await ahead.record("\0y.jpg\0"))
    reader = journal("reader-mark", lag=30)
    assert await reader.read() == [shortened, "\0c.jpg\0", "\0e.jpg\0"]
    assert reader.covers("\0e.jpg\0r3:w-40\0", checked_at=now[0] + 29)
    assert not reader.covers("\0e.jpg\0r3:w-40\0", checked_at=now[0] + 31)

    # whatever is older than the retention in the journal's folder, by the store's clock, is deleted
    # after the next purge
    await asyncio.sleep(2.1)  # the store's clock moves on (S3 lists its times to the second)
    short = journal("short-mark", retention=1.0)
    await short.expire(await short.record("\0f.jpg\0"))
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


# --- what a bucket anyone may write to, a lagging clock or a busy cache must not do ---------------------

JOURNAL = "outputs/" + FOLDER


def put_all(bucket, keys: list[str]) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: bucket.put_object(Bucket=BUCKET, Key=key, Body=b""), keys))


async def test_keys_that_are_not_entries_are_skipped_and_never_stop_a_node(start, bucket):
    running = await start("running")
    stamp = f"{int(time.time() * 1e9):020d}"
    for name in ("²" * 20 + "-abcdef01/AA", f"{stamp}-zzzzzzzz/AA", f"{stamp}-abcdef01/%%%",  # unicode digits,
                 f"{stamp}-abcdef01/YWJj", f"{'1' * 20}-abcdef01/AA", "x" * 30):  # a bad tag, not base64, no
        bucket.put_object(Bucket=BUCKET, Key=JOURNAL + name, Body=b"")  # endpoint, from the year 2322: all of "/"
    fresh = await start("fresh")  # starts, and serves
    assert (await fresh.fetch(URL)).code == 200
    for node in (running, fresh):
        shared = node.node.shared
        assert await shared.read_purges() == [] and not shared.journal.covers("\0img.jpg\0r3:w-40\0", 0)


async def test_a_mark_file_that_cannot_be_read_means_applying_again(start):
    node = await start("n")
    await node.stop()
    (node.config.cache.dir / APPLIED_FILE).write_bytes(b"\xff\xfe not text\n")
    assert (await (await start("n")).fetch(URL)).code == 200


async def test_an_entry_landing_late_behind_a_burst_of_purges_is_applied(start, bucket, monkeypatch):
    """The lookback listed one page: with more than 1000 entries of the last minutes (a bulk purge), one that
    landed after a reading had passed its time (a slow write, a clock a second behind) sorted past that page,
    and a running node never applied it. Each reading now lists a page (here) on from where the last stopped:
    every page at once, each reading, had timed the readings out for minutes on a slow store."""
    monkeypatch.setattr(purge_journal, "LOOKBACK_PAGES", 1)
    node = await start("n")
    store = node.node.shared.store
    now = [3_000_000.0]
    reader = PurgeJournal(store, 3600, node.config.cache.dir / "burst-reader", clock=lambda: now[0])
    put_all(bucket, [JOURNAL + _entry_name(now[0] - 60 + i / 100, f"\0bulk{i}\0") for i in range(1200)])
    assert len(await reader.read()) == 1200
    reader.applied(1200)
    # made 1 s before the newest read, written only now: sorts among them
    bucket.put_object(Bucket=BUCKET, Key=JOURNAL + _entry_name(now[0] - 60 + 11.5, "\0late.jpg\0"), Body=b"")
    now[0] += 10
    assert await reader.read() == []  # the lookback's first page: the burst's first 1000
    now[0] += 10
    assert await reader.read() == ["\0late.jpg\0"]


async def test_a_reading_goes_on_from_where_the_last_one_stopped(start, bucket, monkeypatch):
    """More entries than a reading lists (a burst of purges, or keys that are not entries) delay the
    newer ones by a reading, never for good; a reading cut short keeps what it read."""
    node = await start("n")
    store = node.node.shared.store
    monkeypatch.setattr(purge_journal, "PAGES", 1)  # a page of 1000 stands for 20
    monkeypatch.setattr(purge_journal, "START_PAGES", 1)
    now = [2_000_000.0]
    reader = PurgeJournal(store, 3600, node.config.cache.dir / "reader-mark", clock=lambda: now[0])
    put_all(bucket, [JOURNAL + _entry_name(now[0] - 1 + i / 2000, f"\0burst{i}\0") for i in range(1000)]
            + [JOURNAL + f"{int((now[0] - 0.4) * 1e9):020d}-x{i:04d}" for i in range(500)])  # and garbage
    bucket.put_object(Bucket=BUCKET, Key=JOURNAL + _entry_name(now[0] + 30, "\0later.jpg\0"), Body=b"")
    now[0] += 300
    assert len(await reader.read()) == 1000
    reader.applied(1000)
    assert await reader.read() == ["\0later.jpg\0"]
    assert reader.covers("\0later.jpg\0r3:w-40\0", checked_at=now[0] - 300)

    cut = PurgeJournal(store, 3600, node.config.cache.dir / "cut-mark", clock=lambda: now[0])
    real, calls = store.list_objects, []

    reading = asyncio.current_task()  # not the node's own readings, which share the store

    async def failing_second_page(prefix, start_after="", pages=1):
        if asyncio.current_task() is not reading:
            return await real(prefix, start_after, pages)
        calls.append(start_after)
        if len(calls) == 2:
            raise OriginFailure("timeout", "the store did not answer")
        return await real(prefix, start_after, pages)
    monkeypatch.setattr(store, "list_objects", failing_second_page)
    monkeypatch.setattr(purge_journal, "START_PAGES", 2)
    with pytest.raises(OriginFailure):
        await cut.read()  # its first page (1000 entries) read, the second failed
    assert len(await cut.read()) == 1001  # on from the first page: the burst and later.jpg, to apply
    assert calls[2] == calls[1]


class ListedJournal:
    """A store's listing of journal keys held in memory (what is under test is the reading, not S3): 30 000 entries
    would take moto minutes to hold."""

    max_key_bytes = 1024

    def __init__(self, keys: list[tuple[str, float]]):
        self.keys = sorted(keys)
        self.deleted: list[str] = []

    def key_for(self, key: str) -> str:
        return key

    async def list_objects(self, prefix: str, start_after: str = "", pages: int = 1) -> list[tuple[str, float]]:
        after = [(key, at) for key, at in self.keys if key > (start_after or "") and key.startswith(prefix)]
        return after[:1000 * pages]

    async def delete_keys(self, keys: list[str]) -> None:
        self.deleted += keys
        self.keys = [(key, at) for key, at in self.keys if key not in keys]


async def test_expire_deletes_the_entries_older_than_the_retention_by_the_stores_clock_and_no_younger_one(tmp_path):
    """An hour's retention, by the time the store wrote the new entry: one written 3601 s before it is deleted, one
    1900 s before it kept (a mutation expiring at half the retention survived: its other test's entries are all
    older than the whole)."""
    now = 5_000_000.0
    old, younger, new = (FOLDER + _entry_name(now - age, f"\0{age}.jpg\0") for age in (3601, 1900, 0))
    store = ListedJournal([(old, now - 3601), (younger, now - 1900), (new, now)])
    journal = PurgeJournal(store, 3600.0, tmp_path / "mark", clock=lambda: now)
    assert await journal.expire(new) == 0.0  # the node's clock is the store's
    assert store.deleted == [old] and [key for key, _ in store.keys] == [younger, new]


async def test_a_journal_of_more_entries_than_a_worker_holds_forgets_the_oldest_tenth_at_once(tmp_path, monkeypatch):
    """Past `MAX_ENTRIES`, each entry listed had forgotten the oldest by its time plus 1e-9, which at today's times is
    the same float: none was forgotten, and each cost a pass over them all (24 ms each beyond 100 000, on the
    IOLoop: a bucket writer could stall every worker of the fleet). One pass forgets the oldest tenth."""
    monkeypatch.setattr(purge_journal, "MAX_ENTRIES", 1000)
    now = time.time()
    store = ListedJournal([(FOLDER + _entry_name(now - 100 + i / 1000, f"\0p{i}\0"), now - 50) for i in range(5000)])
    reader = PurgeJournal(store, 86400.0, tmp_path / "mark", clock=lambda: now)
    passes = []
    forget = reader._forget_before
    monkeypatch.setattr(reader, "_forget_before", lambda cutoff: passes.append(cutoff) or forget(cutoff))
    while (await reader.read()) and reader._cursor < store.keys[-1][0]:
        reader.applied(len(reader._pending))
    assert 900 <= len(reader._entries) <= 1000
    assert reader.covers("\0p4999\0r:w-40\0", checked_at=now - 200)  # the newest, held
    assert not reader.covers("\0p0\0r:w-40\0", checked_at=now - 200)  # the oldest, forgotten
    assert len(passes) <= 5000 // 100 + 10  # a pass per hundred entries beyond, and one per reading


async def test_a_reading_forgets_the_entries_older_than_the_retention(tmp_path):
    """A worker holds the purges of the last `original_ttl` only: an output confirmed longer ago is checked with its
    origin anyway. Each reading forgets the older ones: held on, a fleet purging all day would grow every worker's
    memory up to `MAX_ENTRIES`."""
    now = [5_000_000.0]
    old, recent = FOLDER + _entry_name(now[0] - 10, "\0old.jpg\0"), FOLDER + _entry_name(now[0], "\0recent.jpg\0")
    store = ListedJournal([(old, now[0] - 10), (recent, now[0])])
    reader = PurgeJournal(store, 3600, tmp_path / "mark", clock=lambda: now[0])
    assert await reader.read() == ["\0old.jpg\0", "\0recent.jpg\0"]
    reader.applied(2)
    now[0] += 3595  # old.jpg's purge is now 3605 s old, recent.jpg's 3595 s
    assert await reader.read() == []
    assert reader.made_at("\0old.jpg\0") is None and reader.made_at("\0recent.jpg\0") == now[0] - 3595
    assert list(reader._entries) == [recent.removeprefix(FOLDER)]


async def test_an_entry_the_store_wrote_just_before_the_applied_mark_is_still_applied(tmp_path):
    """The mark names the entries of its lookback it applied; one the store wrote in that lookback but that no reading
    listed before the mark (it landed late, behind a newer one) is applied after a restart, not taken as done."""
    now = 5_000_000.0
    newer = (FOLDER + _entry_name(now, "\0newer.jpg\0"), now - 10)
    store = ListedJournal([newer])
    first = PurgeJournal(store, 3600, tmp_path / "mark", clock=lambda: now)
    assert await first.read() == ["\0newer.jpg\0"]
    first.applied(1)
    store.keys = sorted([newer, (FOLDER + _entry_name(now - 30, "\0landed-late.jpg\0"), now - 40)])
    restarted = PurgeJournal(store, 3600, tmp_path / "mark", clock=lambda: now + 60)
    assert await restarted.read() == ["\0landed-late.jpg\0"]


async def test_an_entry_naming_no_endpoint_is_not_a_purge(tmp_path):
    """Every key prefix ends its endpoint with \\0: an entry without one (a bucket writer's `sho`) would purge the keys
    of every endpoint starting so, which no purge names."""
    now = 5_000_000.0
    store = ListedJournal([(FOLDER + _entry_name(now, "sho"), now), (FOLDER + _entry_name(now, "shop\0a.jpg\0"), now)])
    reader = PurgeJournal(store, 3600, tmp_path / "mark", clock=lambda: now)
    assert await reader.read() == ["shop\0a.jpg\0"]
    assert not reader.covers("shop\0b.jpg\0r3:w-40\0", checked_at=now - 1)


async def test_an_entry_made_further_ahead_than_clocks_may_disagree_purges_nothing(tmp_path):
    """Clocks may disagree by `FUTURE_SECONDS`: an entry made 200 s ahead of the reader purges from now on, one made
    400 s ahead (a broken clock, or a forgery) is ignored: it covers nothing."""
    now = 5_000_000.0
    store = ListedJournal([(FOLDER + _entry_name(now + 200, "\0near.jpg\0"), now),
                           (FOLDER + _entry_name(now + 400, "\0far.jpg\0"), now)])
    reader = PurgeJournal(store, 3600, tmp_path / "mark", clock=lambda: now)
    assert await reader.read() == ["\0near.jpg\0"]
    assert reader.covers("\0near.jpg\0r:w-40\0", checked_at=now - 1)
    assert not reader.covers("\0far.jpg\0r:w-40\0", checked_at=now - 1)


async def test_the_entries_a_worker_ignores_are_held_in_a_bounded_set(tmp_path, monkeypatch):
    """An entry from too far ahead (or not signed) is held by name, so that it is said once and not parsed at every
    reading; a bucket writer's endless stream of them would otherwise grow every worker's memory: past `MAX_ENTRIES`
    the set starts again."""
    monkeypatch.setattr(purge_journal, "MAX_ENTRIES", 10)
    now = 5_000_000.0
    store = ListedJournal([(FOLDER + _entry_name(now + 400 + n, f"\0far{n}.jpg\0"), now) for n in range(11)])
    reader = PurgeJournal(store, 3600, tmp_path / "mark", clock=lambda: now)
    assert await reader.read() == []
    assert 1 <= len(reader._ignored) <= 10


async def test_the_applied_mark_names_a_bounded_number_of_entries(tmp_path, monkeypatch):
    """A burst of purges within the lookback: the mark file names the newest `MAX_MARKED` of them, never all."""
    monkeypatch.setattr(purge_journal, "MAX_MARKED", 5)
    now = 5_000_000.0
    store = ListedJournal([(FOLDER + _entry_name(now - 20 + n, f"\0p{n}\0"), now - 20 + n) for n in range(20)])
    reader = PurgeJournal(store, 3600, tmp_path / "mark", clock=lambda: now)
    assert len(await reader.read()) == 20
    reader.applied(20)
    at, names = _read_applied(tmp_path / "mark")
    assert at == now - 1 and sorted(names) == sorted(key.removeprefix(FOLDER) for key, _ in store.keys[-5:])


async def test_a_restart_applies_what_it_missed_and_nothing_twice(start, bucket):
    node = await start("n")
    store = node.node.shared.store
    mark = node.config.cache.dir / "restart-mark"
    now = [4_000_000.0]

    def worker() -> PurgeJournal:
        return PurgeJournal(store, 3600, mark, clock=lambda: now[0])
    first = worker()
    bucket.put_object(Bucket=BUCKET, Key=JOURNAL + _entry_name(now[0], "\0a.jpg\0"), Body=b"")
    bucket.put_object(Bucket=BUCKET, Key=JOURNAL + _entry_name(now[0] + 200, "\0ahead.jpg\0"), Body=b"")
    assert await first.read() == ["\0a.jpg\0", "\0ahead.jpg\0"]  # from a clock 200 s ahead: taken as now
    first.applied(2)
    # while this node is down: a purge by a node whose clock lags 30 s, and two ordinary ones
    bucket.put_object(Bucket=BUCKET, Key=JOURNAL + _entry_name(now[0] + 10 - 30, "\0lagging.jpg\0"), Body=b"")
    for name in ("b", "c"):
        bucket.put_object(Bucket=BUCKET, Key=JOURNAL + _entry_name(now[0] + 100, f"\0{name}.jpg\0"), Body=b"")
    now[0] += 600
    assert sorted(await worker().read()) == ["\0b.jpg\0", "\0c.jpg\0", "\0lagging.jpg\0"]


async def test_a_purge_from_a_node_whose_clock_lags_minutes_is_applied(start):
    """Clocks of a fleet may disagree by minutes (`CLOCK_SKEW_SECONDS`): an entry from a node 3 minutes
    behind sorts before where the readers have read to."""
    node = await start("n")
    store = node.node.shared.store
    now = [5_000_000.0]
    reader = PurgeJournal(store, 3600, node.config.cache.dir / "skew-reader", clock=lambda: now[0])
    lagging = PurgeJournal(store, 3600, node.config.cache.dir / "skew-writer", clock=lambda: now[0] - 180)
    await reader.record("\0first.jpg\0")
    assert await reader.read() == ["\0first.jpg\0"]  # read up to it: the next reading goes on from there
    reader.applied(1)
    now[0] += 10
    await lagging.record("\0lagging.jpg\0")  # made after the first, stamped 170 s before it
    now[0] += 10
    assert await reader.read() == ["\0lagging.jpg\0"]


async def test_a_purge_the_cache_could_not_apply_is_applied_at_the_next_reading(start, origin, bucket):
    sender, other = await start("sender"), await start("other")
    assert cached_as(await other.fetch(URL)) == ("MISS", False)
    await until_written(bucket, 1)
    origin.files["img.jpg"] = solid(120, 80, NEW)
    tier = other.node.caches.tiers[0]
    real, calls = tier.delete_prefix, []

    def busy_once(prefix):  # the database busy past SQLITE_BUSY_SECONDS, once
        calls.append(prefix)
        return None if len(calls) == 1 else real(prefix)
    tier.delete_prefix = busy_once
    await purge(sender, {"url": "/img.jpg"})

    async def applied() -> bool:
        return len(calls) >= 2 and (other.config.cache.dir / APPLIED_FILE).exists()
    await until(applied, "the purge applied at a later reading")
    assert cached_as(await other.fetch(URL)) == ("MISS", True)


async def test_the_journals_housekeeping_never_decides_the_purge(start, origin, bucket, monkeypatch):
    node = await start("n")
    assert cached_as(await node.fetch(URL)) == ("MISS", False)
    await until_written(bucket, 1)
    origin.files["img.jpg"] = solid(120, 80, NEW)
    store = node.node.shared.store
    real = store.list_objects

    async def lagging(prefix, start_after="", pages=1):  # a store whose listings lag its writes
        return [] if prefix.startswith(JOURNAL) and prefix != JOURNAL else await real(prefix, start_after, pages)
    monkeypatch.setattr(store, "list_objects", lagging)
    answer = await purge(node, {"url": "/img.jpg"})
    assert answer["shared"] == {"removed": 1, "journal": "written"}
    assert cached_as(await node.fetch(URL)) == ("MISS", True)


async def test_an_entry_from_the_future_does_not_hide_the_entries_made_after_it(start, bucket, caplog):
    """Entries sort by their time: one from a clock ahead (or a forgery) sorts after the ones made
    since; readings never go on past the reader's now, so those are read, and the ignored one is said once."""
    node = await start("n")
    now = [8_000_000.0]
    reader = PurgeJournal(node.node.shared.store, 3600, node.config.cache.dir / "future-mark", clock=lambda: now[0])
    bucket.put_object(Bucket=BUCKET, Key=JOURNAL + _entry_name(now[0] + 120, "\0ahead.jpg\0"), Body=b"")
    bucket.put_object(Bucket=BUCKET, Key=JOURNAL + _entry_name(now[0] + 86400, "\0forged.jpg\0"), Body=b"")
    assert await reader.read() == ["\0ahead.jpg\0"]
    reader.applied(1)
    for step in range(1, 4):  # readings minutes apart (purge_journal_every = "200s"): not from the lookback
        now[0] += 200
        bucket.put_object(Bucket=BUCKET, Key=JOURNAL + _entry_name(now[0] - 100, f"\0after{step}.jpg\0"), Body=b"")
        assert await reader.read() == [f"\0after{step}.jpg\0"]
        reader.applied(1)
    assert sum("ahead of this node's clock is ignored" in r.message for r in caplog.records) == 1


async def test_a_node_stops_though_a_journal_reading_swallowed_its_cancellation(start):
    """Python 3.11's `asyncio.wait_for` returns the answer of a call that ends as the cancellation comes, and the
    cancellation is lost: the reading's loop went on every 0.2 s and the node's stop never ended (seen once in CI)."""
    node = await start("stopping")
    readings = []
    async def read_purges() -> list[str]:
        readings.append(None)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            if len(readings) > 1:
                raise
        return []  # the first cancellation swallowed, as wait_for does
    node.node.shared.read_purges = read_purges
    async def reading() -> bool:
        return bool(readings)
    await until(reading, "a reading of the journal")
    await asyncio.wait_for(node.stop(), 10)
    assert len(readings) <= 2


async def test_a_node_whose_clock_was_ahead_applies_the_purges_made_since(start, bucket, caplog):
    """A machine booted an hour ahead (its clock set by NTP later) applied its own purge: the applied mark, then by
    its clock, was an hour ahead, and every other node's purge was skipped until then, restarted or not (fleet
    probe). The mark is by the store's clock; the others' entries made meanwhile, sorting before its own, are
    listed again once its clock is back."""
    node = await start("n")
    store, mark = node.node.shared.store, node.config.cache.dir / "ahead-mark"
    now, ahead_by = [9_000_000.0], [3600]
    ahead = PurgeJournal(store, 7200, mark, clock=lambda: now[0] + ahead_by[0])
    other = PurgeJournal(store, 7200, node.config.cache.dir / "other-mark", clock=lambda: now[0])
    await ahead.record("\0own.jpg\0")
    assert await ahead.read() == ["\0own.jpg\0"]
    ahead.applied(1)
    now[0] += 30
    await other.record("\0unlisted.jpg\0")  # sorts before the own entry: no reading lists it
    assert await ahead.read() == []
    now[0], ahead_by[0] = now[0] + 30, 0  # NTP sets the clock back; another node purges
    await other.record("\0other.jpg\0")
    now[0] += 1
    assert await ahead.read() == ["\0unlisted.jpg\0", "\0other.jpg\0"]  # the running worker
    assert sum("this node's clock went back by more than 300 s" in r.message for r in caplog.records) == 1
    restarted = PurgeJournal(store, 7200, mark, clock=lambda: now[0])  # its mark left before those two applied
    assert await restarted.read() == ["\0unlisted.jpg\0", "\0other.jpg\0"]  # the own entry: from ahead


async def test_the_purge_answer_counts_what_each_nodes_tiers_removed(node_factory, origin, s3, bucket, tmp_path):
    """The nodes' tiers were purged after the shared tier: their workers' reading of the journal (every 0.2 s
    here) had applied the new entry while the store took its time, and the answer said `removed: 0`, for the
    node asked and its peers (fleet probe). They are purged first now: their purge records hold back the shared
    objects meanwhile."""
    shared = shared_cache_table(s3.url, BUCKET, more='purge_journal_every = "0.2s"')
    nodes = await start_fleet(node_factory, tmp_path, web_config(origin.url, after=shared), size=2)
    assert cached_as(await nodes[0].fetch(URL)) == ("MISS", False)
    await until_written(bucket, 1)
    # the peer's copy from the shared tier, one entry (asked before the write had landed, it rendered its own: two)
    assert cached_as(await nodes[1].fetch(URL)) == ("SHARED", False)
    origin.files["img.jpg"] = solid(120, 80, NEW)
    s3.faults = Faults(delay=0.5, only_gets=False)  # every call of the shared tier, the journal's reading too
    try:
        answer = await purge(nodes[0], {"url": "/img.jpg"})
    finally:
        s3.faults = Faults()
    assert (answer["removed"], answer["by_tier"]["output"], answer["shared"]) == (
        2, 1, {"removed": 1, "journal": "written"})
    assert [(peer["outcome"], peer["removed"]) for peer in answer["peers"]] == [("ok", 1)]  # its copy, SHARED
    assert cached_as(await nodes[0].fetch(URL)) == ("MISS", True)
    assert cached_as(await nodes[1].fetch(URL)) in (("MISS", True), ("SHARED", True))  # the first's new copy


async def test_a_mark_written_ahead_by_this_nodes_clock_is_not_kept(start, bucket, caplog):
    """A mark file written before marks were the store's times holds this node's time: one written while its clock
    ran ahead would have held every other node's purge back until then, the upgrade notwithstanding (review)."""
    node = await start("n")
    store, mark = node.node.shared.store, node.config.cache.dir / "old-mark"
    now = time.time()
    mark.write_text(f"{int((now + 86400) * 1e9):020d}\n")
    other = PurgeJournal(store, 7200, node.config.cache.dir / "other-mark")
    await other.record("\0made-since.jpg\0")
    assert await PurgeJournal(store, 7200, mark).read() == ["\0made-since.jpg\0"]
    assert any("applied mark is 86" in r.message for r in caplog.records)


@pytest.mark.parametrize("skew, said", [(-400, "behind"), (400, "ahead of")])
async def test_a_purge_from_a_node_whose_clock_is_off_past_the_lookback_is_applied(start, origin, bucket, caplog,
                                                                                   skew, said):
    """A node whose clock lags the store's by more than the readers look back (5 minutes) named its entries where
    running nodes no longer read: a node the purge could not call kept the old image, and nothing said why. One
    ahead by as much named entries every reader ignores (as a forgery's), and the node it could not call served the
    purged image for good. The skew, seen by the store's time of the entry, is said, and the entries written again
    by the store's time."""
    sender, cut_off = await start("sender"), await start("cut-off")
    sender.node.shared.journal._clock = lambda: time.time() + skew
    assert cached_as(await cut_off.fetch(URL)) == ("MISS", False)
    await until_written(bucket, 1)
    origin.files["img.jpg"] = solid(120, 80, NEW)
    assert (await purge(sender, {"url": "/img.jpg"}))["shared"] == {"removed": 1, "journal": "written"}
    lag = re.search(rf"this node's clock is ([0-9]+) s {said} the shared cache's", caplog.text)
    assert lag and 395 <= int(lag.group(1)) <= 405  # S3 lists whole seconds

    async def applied() -> bool:
        return cached_as(await cut_off.fetch(URL)) == ("MISS", True)
    await until(applied, "the cut-off node applying the lagging node's purge")


async def test_a_store_that_hangs_delays_a_starting_worker_by_a_bounded_reading(start, s3, monkeypatch, caplog):
    """A worker reads the journal before it serves, for 5 × `[shared_cache] timeout` at most: with the 20 s of this
    test's tables, 100 s before serving while the store hung (past a balancer's checks and a reload's 60 s). Now
    `JOURNAL_READ_SECONDS` at most; the next reading goes on from there."""
    monkeypatch.setattr(shared_cache, "JOURNAL_READ_SECONDS", 1.0)
    s3.faults = Faults(delay=30, only_gets=False)
    try:
        started = time.monotonic()
        node = await start("starting")
        assert time.monotonic() - started < 10
    finally:
        s3.faults = Faults()
    assert "shared cache journal skipped (timeout)" in caplog.text
    assert cached_as(await node.fetch(URL)) == ("MISS", False)  # and it serves


async def test_a_purge_answers_within_its_bound_when_the_store_hangs(start, s3, monkeypatch):
    """The shared tier's steps followed the peers' with their own timeouts: about 13 × `[shared_cache] timeout` of a
    store that hangs (260 s with this test's 20 s), past the balancers' 30 s, which then sent the purge to another
    node. Now the answer comes within `ANSWER_SECONDS`, saying what is left to be tried again."""
    monkeypatch.setattr(purge_module, "ANSWER_SECONDS", 1.0)
    node = await start("purging")
    s3.faults = Faults(delay=30, only_gets=False)
    try:
        started = time.monotonic()
        response = await node.fetch("/_edge/purge", method="POST", headers=AUTH, body=b'{"url": "/img.jpg"}')
        assert time.monotonic() - started < 10
    finally:
        s3.faults = Faults()
    assert response.code == 502
    assert json.loads(response.body)["shared"] == {"error": "timeout", "journal": {"error": "timeout"},
                                                   "retrying": True}
