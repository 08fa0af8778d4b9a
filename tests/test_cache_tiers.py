"""The two cache tiers: each LRU within its own budget, evicting least-recently-used entries and
nothing else, counting what it evicts, and surviving a restart."""

import asyncio
import fcntl
import hashlib
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import diskcache
import pytest

from edge.cache import MAX_ENTRY_SHARE, CachedOutput, Caches, SourceInfo, StoredOriginal, path_key, strong_etag
from edge.cache.caches import ADMISSION_SHARE
from edge.cache.tiers import TOUCH_CHUNK
from edge.cache.versions import SharedVersions
from tests.nodes import SAMPLES, decode, local_config, polled, start_node, web_config, write_config
from tests.photos import photos  # noqa: F401 - a fixture
from tests.scrape import samples
from tests.servers import HTTPOrigin

ENTRY = 100_000  # above diskcache's 32 kB threshold: stored as a file, like real images
SOURCE = SourceInfo(origin="web", version='"v1"', checked_at=0.0)


def output(fill: int) -> CachedOutput:
    body = bytes([fill]) * ENTRY
    return CachedOutput(body=body, content_type="image/jpeg", etag=strong_etag(body), source=SOURCE)


def stored_original(body: bytes) -> StoredOriginal:
    return StoredOriginal(SourceInfo(origin="web", version=strong_etag(body), checked_at=0.0), body)


@pytest.fixture
def small_outputs(tmp_path):
    """Caches whose output tier holds ten entries and then some, but not eleven."""
    probe = Caches(tmp_path, 10**9, 10**9)
    empty = probe.outputs.volume()
    probe.close()
    evicted: list[tuple[str, int]] = []
    caches = Caches(tmp_path, empty + 10 * ENTRY + ENTRY // 2, 10**9,
                    evicted=lambda tier, count: evicted.append((tier, count)))
    yield caches, evicted
    caches.close()


def test_filling_past_the_budget_evicts_the_least_recently_used_and_nothing_else(small_outputs):
    caches, evicted = small_outputs
    original = stored_original(b"original bytes")
    caches.originals.put(path_key("", "a.jpg"), original)
    for n in range(10):
        caches.outputs.put(f"k{n}", output(n))
    assert evicted == [] and len(caches.outputs) == 10

    assert caches.outputs.get("k0").body == output(0).body  # read: now the most recently used
    assert caches.outputs.get("k1") is not None
    caches.flush_touches()
    caches.outputs.put("k10", output(10))
    caches.outputs.put("k11", output(11))

    kept = {f"k{n}" for n in range(12) if caches.outputs.get(f"k{n}") is not None}
    assert kept == {f"k{n}" for n in range(12)} - {"k2", "k3"}
    assert evicted == [("output", 1), ("output", 1)]
    assert caches.outputs.volume() <= caches.outputs.budget
    assert caches.originals.get(path_key("", "a.jpg")) == original  # another tier, another budget


def test_entries_touched_while_the_clock_ran_ahead_are_evicted_in_their_turn_once_it_is_back(small_outputs):
    """A node run 400 days ahead (a bad NTP step) left access times in the future: after the clock came back, those
    entries sorted after every other in the LRU, evicted last for 400 days however long nobody asked for them.
    The worker's tidy (at its start, then hourly) brings them back to now."""
    caches, evicted = small_outputs
    for n in range(10):
        caches.outputs.put(f"k{n}", output(n))
    database = sqlite3.connect(caches.outputs.directory / "cache.db")
    with database:
        database.execute("UPDATE Cache SET access_time = access_time + 400 * 86400 WHERE key IN ('k0', 'k1')")
    database.close()
    caches.tidy()
    for n in range(2, 10):  # asked for since: more recently used than k0 and k1, untouched since the clock was back
        assert caches.outputs.get(f"k{n}") is not None
    caches.flush_touches()
    for n in range(10, 12):
        caches.outputs.put(f"k{n}", output(n))  # evicts the two least recently used
    assert {f"k{n}" for n in range(12) if caches.outputs.get(f"k{n}") is not None} == {f"k{n}" for n in range(2, 12)}
    assert evicted == [("output", 1), ("output", 1)]


def test_version_records_that_push_a_tier_past_its_budget_count_what_they_evict(tmp_path):
    probe = Caches(tmp_path, 10**9, 10**9)
    empty = probe.originals.volume()
    probe.close()
    evicted: list[tuple[str, int]] = []
    caches = Caches(tmp_path, 10**9, empty + 2 * ENTRY + ENTRY // 2,
                    evicted=lambda tier, count: evicted.append((tier, count)))
    try:
        for n in range(2):
            caches.originals.put(f"o{n}", stored_original(bytes([n]) * ENTRY))
        for n in range(3000):  # a `local` file's version: a record without bytes, a few hundred bytes each
            caches.originals.put_version_later(f"local-{n}", SOURCE)
        caches.originals.flush_versions()
        assert caches.originals.get("o0") is None  # the least recently used went for the records
        assert evicted and {tier for tier, _ in evicted} == {"original"}
        assert caches.originals.volume() <= caches.originals.budget
    finally:
        caches.close()


async def test_hits_from_the_memory_tier_keep_their_entries_from_eviction(tmp_path):
    # memory-tier hits never read SQLite: their keys are marked as used in the batched flush
    probe = Caches(tmp_path, 10**9, 10**9)
    empty = probe.outputs.volume()
    probe.close()
    caches = Caches(tmp_path, empty + 10 * ENTRY + ENTRY // 2, 10**9, memory_size=10**8, touch_interval=0)
    try:
        for n in range(10):
            caches.outputs.put(f"k{n}", output(n))
        for n in range(10):
            assert (await caches.output(f"k{n}")).body == output(n).body  # from disk, now in memory
        caches.flush_touches()
        for n in (7, 3, 5, 1, 9):
            for _ in range(3):
                assert caches.output_in_memory(f"k{n}") is not None
        caches.flush_touches()
        for n in range(10, 15):
            caches.outputs.put(f"k{n}", output(n))
        kept = {n for n in range(15) if caches.outputs.get(f"k{n}") is not None}
        assert kept == {1, 3, 5, 7, 9, 10, 11, 12, 13, 14}
    finally:
        caches.close()


def test_a_key_is_marked_as_used_at_most_once_per_interval(tmp_path):
    caches = Caches(tmp_path, 10**9, 10**9, touch_interval=3600)
    writer = caches.outputs._handles[0]

    def access_time(key: str) -> float:
        return writer._sql("SELECT access_time FROM Cache WHERE key = ?", (key,)).fetchone()[0]

    try:
        caches.outputs.put("hot", output(1))
        caches.outputs.put("cold", output(2))
        stored = access_time("hot")
        caches.outputs.get("hot")
        caches.flush_touches()
        marked = access_time("hot")
        assert marked > stored
        caches.outputs.get("hot")
        caches.outputs.get("cold")
        caches.flush_touches()
        assert access_time("hot") == marked  # within the interval: not written again
        assert access_time("cold") > access_time("hot")
    finally:
        caches.close()


def test_a_flush_marks_every_key_read_however_many_chunks_they_take(tmp_path):
    caches = Caches(tmp_path, 10**9, 10**9, touch_interval=3600)
    writer = caches.outputs._handles[0]
    keys = [f"k{n}/photo.jpg" for n in range(2 * TOUCH_CHUNK + 3)]  # two whole chunks and a part
    small = CachedOutput(body=b"x", content_type="image/jpeg", etag=strong_etag(b"x"), source=SOURCE)
    try:
        for key in [*keys, "unread"]:
            caches.outputs.put(key, small)
        stored = dict(writer._sql("SELECT key, access_time FROM Cache").fetchall())
        for key in keys:
            caches.outputs.get(key)
        caches.flush_touches()
        marked = dict(writer._sql("SELECT key, access_time FROM Cache").fetchall())
        assert [key for key in keys if marked[key] <= stored[key]] == []
        assert marked["unread"] == stored["unread"]
    finally:
        caches.close()


def test_an_entry_too_large_for_its_tier_is_not_kept_and_evicts_nothing(small_outputs):
    caches, evicted = small_outputs
    caches.outputs.put("small", output(1))
    body = b"x" * (caches.outputs.budget // MAX_ENTRY_SHARE + 1)
    huge = CachedOutput(body=body, content_type="image/png", etag=strong_etag(body), source=SOURCE)
    caches.outputs.put("huge", huge)
    assert caches.outputs.get("huge") is None
    assert caches.outputs.get("small") is not None and evicted == []


async def test_a_large_output_is_stored_on_its_kth_render(tmp_path):
    """An output over `budget / ADMISSION_SHARE` is stored on its k-th render, k its size over that share: a
    render adds that share to the tier at most on average, and those not stored are counted as too large."""
    too_large: list[str] = []
    caches = Caches(tmp_path, ADMISSION_SHARE * ENTRY, 10**9, too_large=too_large.append)  # the share: ENTRY
    try:
        body = b"x" * (3 * ENTRY)
        large = CachedOutput(body=body, content_type="image/png", etag=strong_etag(body), source=SOURCE)
        for _ in range(2):
            await caches.store("large", large)
            assert caches.outputs.get("large") is None
        await caches.store("large", large)
        assert caches.outputs.get("large").body == body
        await caches.store("small", output(1))  # at the share: stored when first made
        assert caches.outputs.get("small") is not None and too_large == ["output", "output"]
    finally:
        caches.close()


async def test_heads_of_new_large_outputs_leave_the_hot_ones_cached(node_factory, tmp_path, photos):
    """One client's HEADs of new large outputs (nothing to download) had flushed the default 2 GB tier in 27
    requests: here 20 of a megabyte each, in a 16 MB tier, leave the output asked for all along in it."""
    config = local_config(photos.folder, before='[cache]\ndir = "cache"\noutput_size = "16MB"\nmemory_size = 0\n')
    node = await node_factory(write_config(tmp_path, config))
    assert (await node.fetch("/tr:w-200/photo.jpg")).headers["X-Cache"] == "MISS"
    for width in range(1000, 1020):
        head = await node.fetch(f"/tr:w-{width},f-png/photo.jpg", method="HEAD")
        assert head.code == 200 and int(head.headers["Content-Length"]) > 16 * 10**6 // ADMISSION_SHARE
    assert (await node.fetch("/tr:w-200/photo.jpg")).headers["X-Cache"] == "HIT"


async def test_stores_past_the_pending_budget_are_skipped_and_counted(tmp_path, monkeypatch):
    """Answered bodies wait in memory to be stored: a slow disk must not pile them up without bound."""
    monkeypatch.setattr("edge.cache.caches.PENDING_STORE_BYTES", ENTRY + ENTRY // 2)
    dropped: list[str] = []
    caches = Caches(tmp_path, 10**9, 10**9, dropped=dropped.append)
    try:
        original_key = path_key("", "a.jpg")
        # the first store is still pending when the others come: they do not fit beside it
        await asyncio.gather(caches.store("k0", output(0)), caches.store("k1", output(1)),
                             caches.store(original_key, stored_original(b"o" * ENTRY)))
        assert caches.outputs.get("k0") is not None
        assert caches.outputs.get("k1") is None and caches.originals.get(original_key) is None
        assert dropped == ["output", "original"]
        await caches.store("k1", output(1))  # nothing pending any more
        assert caches.outputs.get("k1") is not None
    finally:
        caches.close()


def test_no_originals_are_kept_with_a_zero_budget(tmp_path):
    caches = Caches(tmp_path, 10**9, 0)
    caches.originals.put(path_key("", "a.jpg"), stored_original(b"bytes"))
    assert caches.originals.get(path_key("", "a.jpg")) is None
    caches.close()


def test_an_original_s_outputs_say_the_version_seen_last_and_those_of_others_are_dropped(tmp_path):
    """With nothing recorded of an original, its outputs say which version the node saw last: the one confirmed
    last, wherever its key sorts; another original's outputs, and metadata the node did not write, count for
    nothing. New bytes drop the outputs made from other versions (an output drawn with layers by its original's
    own), those the node did not write, and no other original's."""
    caches = Caches(tmp_path, 10**9, 10**9)
    original, other = path_key("", "a.jpg"), path_key("", "a.jpg.png")
    assert caches.outputs.newest_source(original) is None
    for name, version, checked_at in (("w-1", '"v1"', 10.0), ("w-2", '"v2"', 30.0), ("w-3", '"v1"', 20.0)):
        caches.outputs.put(f"{original}{name}", replace(output(1), source=replace(SOURCE, version=version,
                                                                                 checked_at=checked_at)))
    caches.outputs.put(f"{other}w-1", replace(output(2), source=replace(SOURCE, version='"v3"', checked_at=99.0)))
    writer = diskcache.Cache(str(caches.outputs.directory))
    writer.set(f"{original}w-4", b"foreign", tag="not json")
    writer.close()
    newest = caches.outputs.newest_source(original)
    assert (newest.version, newest.checked_at) == ('"v2"', 30.0)
    caches.outputs.put(f"{original}w-5", replace(output(3), source=replace(SOURCE, version='"layers"',
                                                                          original_version='"v2"')))
    assert caches.outputs.delete_made_from_others(original, '"v2"') == 3
    assert [key for key in (f"{original}w-{n}" for n in range(1, 6)) if caches.outputs.get(key)] == [
        f"{original}w-2", f"{original}w-5"]
    assert caches.outputs.get(f"{other}w-1") is not None
    caches.close()


def cached_web_config(origin: HTTPOrigin, cache: str = "") -> str:
    return web_config(origin.url, f'[cache]\ndir = "cache"\n{cache}')


@pytest.fixture
async def origin():
    server = await HTTPOrigin(files={"camera.jpg": (SAMPLES / "camera.jpg").read_bytes(),
                                     "coffee.jpg": (SAMPLES / "coffee.jpg").read_bytes(),
                                     "astronaut.jpg": (SAMPLES / "astronaut.jpg").read_bytes()}).start()
    yield server
    await server.stop()


async def test_both_tiers_survive_a_restart(origin, node_factory, tmp_path):
    config = write_config(tmp_path, cached_web_config(origin))
    first = await start_node(config)  # stopped here, not by the fixture
    miss = await first.fetch("/tr:w-100/camera.jpg")
    assert miss.headers["X-Cache"] == "MISS"
    await first.stop()

    second = await node_factory(config)
    hit = await second.fetch("/tr:w-100/camera.jpg")
    assert (hit.headers["X-Cache"], hit.body) == ("HIT", miss.body)
    other_size = await second.fetch("/tr:w-60/camera.jpg")  # made from the kept original
    assert other_size.headers["X-Cache"] == "MISS" and decode(other_size).width == 60
    assert origin.requests == {"camera.jpg": 1}


async def test_ten_sizes_of_one_image_cost_one_origin_fetch(origin, node_factory, tmp_path):
    node = await node_factory(write_config(tmp_path, cached_web_config(origin)))
    for width in range(40, 140, 10):
        response = await node.fetch(f"/tr:w-{width}/coffee.jpg")
        assert response.headers["X-Cache"] == "MISS" and decode(response).width == width
    assert origin.requests == {"coffee.jpg": 1}
    lookups = samples(node.node.metrics.exposition().decode(), "edge_cache_requests_total", tier="original")
    assert lookups == {(("result", "hit"), ("tier", "original")): 9, (("result", "miss"), ("tier", "original")): 1,
                       (("result", "stale"), ("tier", "original")): 0}


async def test_evictions_are_counted_in_the_metrics(origin, node_factory, tmp_path, monkeypatch):
    monkeypatch.setattr("edge.cache.caches.ADMISSION_SHARE", 8)  # each output stored when first made
    node = await node_factory(write_config(tmp_path, cached_web_config(origin, 'output_size = "1MB"')))
    widths = range(200, 216)  # PNGs of about 100 kB each: the tier holds nine or so
    for width in widths:
        assert (await node.fetch(f"/tr:w-{width},f-png/astronaut.jpg")).code == 200
    tier = node.node.caches.outputs
    assert 0 < len(tier) < len(widths) and tier.volume() <= tier.budget
    evicted = samples(node.node.metrics.exposition().decode(), "edge_cache_evictions_total", tier="output")
    assert evicted == {(("tier", "output"),): len(widths) - len(tier)}


STORE_ON_A_FULL_DISK = """
import logging, resource, signal, sys
from pathlib import Path
from edge.cache import CachedOutput, Caches, SourceInfo, strong_etag
logging.basicConfig()
caches = Caches(Path(sys.argv[1]), 10**9, 10**9)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (500_000, 500_000))
source = SourceInfo(origin="web", version='"v1"', checked_at=0.0)
body = b"x" * 1_000_000
caches.outputs.put("big", CachedOutput(body=body, content_type="image/png", etag=strong_etag(body), source=source))
print("stored" if caches.outputs.get("big") else "not stored")
"""


def test_a_store_that_fails_is_logged_and_the_caller_carries_on(tmp_path):
    result = subprocess.run([sys.executable, "-c", STORE_ON_A_FULL_DISK, str(tmp_path)], capture_output=True,
                            text=True, timeout=60)
    assert (result.returncode, result.stdout) == (0, "not stored\n"), result.stderr
    assert "cache (output): cannot store" in result.stderr


def test_an_entry_in_an_older_format_is_a_miss_and_is_replaced(tmp_path):
    old = diskcache.Cache(str(tmp_path / "outputs"))  # as the node wrote outputs before it kept versions
    old.set("k", b"body", tag='{"content_type": "image/jpeg", "etag": "\\"e\\"", "origin": "web"}')
    old.close()
    caches = Caches(tmp_path, 10**9, 10**9)
    assert caches.outputs.get("k") is None
    caches.outputs.put("k", output(1))
    assert caches.outputs.get("k") == output(1)
    caches.close()


def test_version_bumps_from_threads_of_one_process_are_never_lost(tmp_path):
    """The cache's I/O threads bump the shared versions concurrently: every bump must count, or a
    memory copy read between two writes would look current after the second."""
    versions = SharedVersions(tmp_path / "versions.bin")
    assert os.stat(tmp_path / "versions.bin").st_blocks * 512 >= SharedVersions.SIZE  # allocated, not sparse
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=lambda: [versions.bump(7) for _ in range(5_000)]) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        sys.setswitchinterval(interval)
    assert versions.read(7) - versions.read(8) == 20_000  # bucket 8 was never bumped
    versions.close()


BUMP_FROM_A_PROCESS = """
import sys
from pathlib import Path
from edge.cache.versions import SharedVersions
versions = SharedVersions(Path(sys.argv[1]))
print("ready", flush=True)
sys.stdin.readline()  # both processes bump at once
for _ in range(int(sys.argv[2])):
    versions.bump(7)
"""


def test_version_bumps_from_two_processes_are_never_lost(tmp_path):
    """Every worker of the node bumps the same versions file: a bump read and written between another
    process's read and write would merge two bumps into one (the file lock keeps them apart)."""
    bumps = 20_000
    workers = [subprocess.Popen([sys.executable, "-c", BUMP_FROM_A_PROCESS, str(tmp_path / "versions.bin"), str(bumps)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        for worker in workers:
            assert worker.stdout.readline() == "ready\n"
        for worker in workers:
            worker.stdin.write("go\n")
            worker.stdin.flush()
        assert [worker.wait(30) for worker in workers] == [0, 0]
    finally:
        for worker in workers:
            worker.kill()
            worker.communicate()
    versions = SharedVersions(tmp_path / "versions.bin")
    assert versions.read(7) - versions.read(8) == 2 * bumps  # bucket 8 was never bumped
    versions.close()


async def test_a_versions_file_truncated_under_the_node_is_no_crash_and_no_stale_copy(tmp_path):
    """A memory-mapped versions file that someone truncated killed the next reader with SIGBUS (and
    a crash loop of workers stopped the node): a read that comes up short now turns the memory tier
    off until the file is opened again, of a new generation, in every process."""
    caches = Caches(tmp_path, 10**9, 10**9, memory_size=10**7)
    other_worker = Caches(tmp_path, 10**9, 10**9, memory_size=10**7)
    try:
        caches.outputs.put("k", output(1))
        assert (await caches.output("k")).body == output(1).body and caches.output_in_memory("k") is not None
        before = caches.version("k")

        os.truncate(tmp_path / "versions.bin", 0)
        assert caches.output_in_memory("k") is None  # a short read, not a SIGBUS
        assert "memory: corrupt" in caches.health.degraded()
        after = caches.version("k")  # opened again: allocated whole, of a new generation
        assert after is not None and after != before
        assert os.stat(tmp_path / "versions.bin").st_size == caches._versions.SIZE
        assert caches.output_in_memory("k") is None  # the copy read before is not current

        other_worker.check_versions()  # its job of every second: another generation now
        assert other_worker.version("k") == after
        caches.bump("k")
        assert other_worker.version("k") == caches.version("k") != after
    finally:
        caches.close()
        other_worker.close()


def test_processes_agree_again_on_a_versions_file_deleted_under_them(tmp_path):
    """A process still holding a deleted file would miss every bump of a process that opened the new
    one (a worker restarted after the cache folder was wiped): purged copies served on."""
    caches = Caches(tmp_path, 10**9, 10**9, memory_size=10**7)
    other_worker = Caches(tmp_path, 10**9, 10**9, memory_size=10**7)
    try:
        before = other_worker.version("k")
        os.unlink(tmp_path / "versions.bin")
        caches.check_versions()
        other_worker.check_versions()
        assert caches.version("k") != before  # made again
        caches.bump("k")
        assert other_worker.version("k") == caches.version("k")
    finally:
        caches.close()
        other_worker.close()


def test_a_versions_file_copied_over_or_cut_short_is_replaced_for_a_process_holding_it(tmp_path):
    """A copy moved over the file keeps its generation but is another file, whose bumps the process holding the
    old one would never see; a file cut short by a word keeps its generation but no longer holds every counter."""
    path = tmp_path / "versions.bin"
    versions = SharedVersions(path)
    try:
        assert not versions.replaced()
        shutil.copyfile(path, tmp_path / "copy.bin")
        os.replace(tmp_path / "copy.bin", path)
        assert SharedVersions(path).generation == versions.generation  # the same generation, another file
        assert versions.replaced()
    finally:
        versions.close()
    versions = SharedVersions(path)
    try:
        os.truncate(path, SharedVersions.SIZE - 1)  # the generation word is still there, whole
        assert versions.replaced()
    finally:
        versions.close()


OPEN_FROM_A_PROCESS = """
import sys
from pathlib import Path
from edge.cache.versions import SharedVersions
print(SharedVersions(Path(sys.argv[1])).generation, flush=True)
"""


def test_a_process_opening_the_versions_file_waits_for_the_one_giving_it_its_generation(tmp_path):
    """Two workers opening a new versions file at once must agree on its generation: one that read no generation
    yet while the other was writing its own would write another, and the first would drop the memory tier."""
    path = tmp_path / "versions.bin"
    with open(path, "wb") as file:
        file.truncate(SharedVersions.SIZE)
    with open(path, "r+b") as held:
        fcntl.lockf(held, fcntl.LOCK_EX)  # as the other worker does, between its read and its write
        with subprocess.Popen([sys.executable, "-c", OPEN_FROM_A_PROCESS, str(path)], stdout=subprocess.PIPE,
                              text=True) as opening:
            try:
                waiter = re.compile(rf"-> POSIX +ADVISORY +WRITE {opening.pid} ")
                # (Linux: /proc/locks lists the locks held and waited for)
                polled(lambda: waiter.search(Path("/proc/locks").read_text()) or opening.poll() is not None,
                       "the process waiting for the lock", 30)
                assert opening.poll() is None, "it opened the file without waiting for the lock"
                os.pwrite(held.fileno(), (12345).to_bytes(8, "little"), SharedVersions.BUCKETS * 8)
                fcntl.lockf(held, fcntl.LOCK_UN)
                assert opening.communicate(timeout=30)[0] == "12345\n"
            finally:
                opening.kill()


def test_entries_hashed_by_an_earlier_node_stay_valid_and_damage_is_still_seen(tmp_path):
    """Earlier nodes hashed with BLAKE2b: their outputs and originals are served as stored, not
    taken for damaged (which would drop a whole cache on upgrade); bytes that match neither hash are, an output
    or a kept original alike (the corruption fuzz's `local` origin keeps no original bytes: mutation audit)."""
    caches = Caches(tmp_path, 10**9, 10**9)
    try:
        body = b"bytes stored by an earlier node" * 2000
        blake = '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'
        assert blake != strong_etag(body)
        caches.outputs.put("old", CachedOutput(body=body, content_type="image/jpeg", etag=blake, source=SOURCE))
        caches.originals.put("old", StoredOriginal(SourceInfo(origin="web", version=blake, checked_at=0.0), body))
        caches.outputs.put("bad", CachedOutput(body=body, content_type="image/jpeg", etag='"0' + blake[2:],
                                               source=SOURCE))
        # an original of a web or S3 origin, kept to render from (a local one's bytes are never kept)
        caches.originals.put("bad", StoredOriginal(SourceInfo(origin="web", version='"0' + blake[2:], checked_at=0.0),
                                                   body))
        assert caches.outputs.get("old").body == body and caches.originals.get("old").body == body
        assert caches.outputs.get("bad") is None and len(caches.outputs) == 1  # damaged: deleted
        assert caches.originals.get("bad") is None and caches.originals.get("old") is not None  # fetched again
    finally:
        caches.close()


def test_an_entry_of_exactly_its_tier_s_share_of_the_budget_is_kept(tmp_path):
    caches = Caches(tmp_path, MAX_ENTRY_SHARE * ENTRY, 10**9)
    try:
        caches.outputs.put("at the share", output(1))
        assert caches.outputs.get("at the share").body == output(1).body
    finally:
        caches.close()


def test_a_tier_exactly_at_its_budget_evicts_nothing(tmp_path):
    probe = Caches(tmp_path, 10**9, 10**9)
    for n in range(3):
        probe.outputs.put(f"k{n}", output(n))
    full = probe.outputs.volume()
    probe.close()
    evicted: list[tuple[str, int]] = []
    caches = Caches(tmp_path, full, 10**9, evicted=lambda tier, count: evicted.append((tier, count)))
    try:
        caches.tidy()
        assert evicted == [] and len(caches.outputs) == 3 and caches.outputs.volume() == full
    finally:
        caches.close()


def test_no_version_of_a_local_file_is_recorded_with_a_zero_budget(tmp_path):
    """With `original_size = 0` nothing is kept: a version recorded would be evicted as soon as written, counted as
    an eviction every second for nothing."""
    evicted: list[tuple[str, int]] = []
    caches = Caches(tmp_path, 10**9, 0, evicted=lambda tier, count: evicted.append((tier, count)))
    try:
        caches.originals.put_version_later(path_key("", "a.jpg"), SOURCE)
        assert caches.originals.get(path_key("", "a.jpg")) is None
        caches.flush_touches()
        assert caches.originals.get(path_key("", "a.jpg")) is None and evicted == []
    finally:
        caches.close()


async def test_originals_not_kept_with_a_zero_budget_are_not_counted_as_too_large(tmp_path):
    """`original_size = 0` turns the tier off, as asked: its originals are not "too large" for it."""
    too_large: list[str] = []
    caches = Caches(tmp_path, 10**9, 0, too_large=too_large.append)
    try:
        await caches.store(path_key("", "a.jpg"), stored_original(b"o" * ENTRY))
        assert caches.originals.get(path_key("", "a.jpg")) is None and too_large == []
    finally:
        caches.close()


async def test_a_store_that_fills_the_pending_budget_exactly_is_made(tmp_path, monkeypatch):
    monkeypatch.setattr("edge.cache.caches.PENDING_STORE_BYTES", ENTRY)
    dropped: list[str] = []
    caches = Caches(tmp_path, 10**9, 10**9, dropped=dropped.append)
    try:
        await caches.store("k0", output(0))
        assert caches.outputs.get("k0") is not None and dropped == []
    finally:
        caches.close()


def test_a_not_found_record_past_its_expiry_leaves_the_tier_at_the_next_record(tmp_path):
    caches = Caches(tmp_path, 10**9, 10**9)
    try:
        caches.not_found.put(path_key("", "gone.jpg"), 0.0, 60)
        with sqlite3.connect(tmp_path / "not-found" / "cache.db") as index:  # as if stored over a minute ago
            assert index.execute("UPDATE Cache SET expire_time = expire_time - 120").rowcount == 1
        index.close()
        caches.not_found.put(path_key("", "missing.jpg"), 0.0, 60)
        assert len(caches.not_found) == 1
    finally:
        caches.close()
