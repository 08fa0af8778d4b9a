"""A cache that fails degrades to serving uncached: a damaged value is a miss (never a corrupt HIT), a
corrupt database is moved aside and rebuilt, a full filesystem costs the cache and nothing else. Each
is counted in `edge_cache_errors_total{tier,kind}` and reported by `/_edge/ready` (200: the node
still serves)."""

import asyncio
import contextlib
import errno
import fcntl
import itertools
import json
import logging
import os
import pickle
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import pyvips
from tornado.httpclient import AsyncHTTPClient

from edge.cache import Caches, original_key, output_key
from edge import server as server_module
from edge.cache import caches as caches_module
from edge.cache.health import CacheHealth, error_kind
from edge.cache import tiers as tiers_module
from edge.cache.tiers import BoundedCache, OutputTier
from edge.testing import ServingNode
from tests.nodes import NodeProcess, decode, local_config, polled, start_node, until, write_config
from tests.scrape import scrape, total
from tests.test_signals import gone

PNG = "/tr:w-300,f-png/astronaut.jpg"  # ~100 kB: diskcache keeps it in a file of its own


def metric(running, name: str, **labels: str) -> float:
    return total(running.node.metrics.exposition().decode(), name, **labels)


async def test_a_truncated_value_file_is_a_miss_with_correct_pixels_and_is_replaced(node_factory, tmp_path):
    config = write_config(tmp_path, local_config())
    first = await start_node(config)
    made = await first.fetch(PNG)
    assert made.headers["X-Cache"] == "MISS"
    await first.stop()
    (value_file,) = (tmp_path / "cache" / "outputs").rglob("*.val")
    value_file.write_bytes(value_file.read_bytes()[: len(made.body) // 2])  # a crash mid-write, a bad disk

    node = await node_factory(config)
    again = await node.fetch(PNG)
    assert (again.code, again.headers["X-Cache"], again.body) == (200, "MISS", made.body)
    assert (decode(again).width, decode(again).height) == (300, 300)
    assert metric(node, "edge_cache_errors_total", tier="output", kind="damaged") == 1
    hit = await node.fetch(PNG)  # stored again, whole
    assert (hit.headers["X-Cache"], hit.body) == ("HIT", made.body)


async def test_a_head_of_a_truncated_value_file_is_a_miss_with_the_whole_length(node_factory, tmp_path):
    """A HEAD reads no body, so the ETag cannot be checked; the size on disk against the stored length can."""
    config = write_config(tmp_path, local_config())
    first = await start_node(config)
    made = await first.fetch(PNG)
    await first.stop()
    (value_file,) = (tmp_path / "cache" / "outputs").rglob("*.val")
    value_file.write_bytes(value_file.read_bytes()[: len(made.body) // 2])

    node = await node_factory(config)
    head = await node.fetch(PNG, method="HEAD")
    assert (head.code, head.headers["X-Cache"], int(head.headers["Content-Length"])) == (200, "MISS", len(made.body))
    assert metric(node, "edge_cache_errors_total", tier="output", kind="damaged") == 1
    hit = await node.fetch(PNG)  # stored again, whole
    assert (hit.headers["X-Cache"], hit.body) == ("HIT", made.body)


async def test_a_versions_file_truncated_again_and_again_kills_no_worker(tmp_path):
    node = NodeProcess(write_config(tmp_path, local_config(before="[server]\nworkers = 2")))
    try:
        from tornado.httpclient import AsyncHTTPClient
        client = AsyncHTTPClient(force_instance=True)
        versions = tmp_path / "cache" / "versions.bin"
        for width in range(40, 60, 2):
            os.truncate(versions, 0)  # each read of it through a memory map was a SIGBUS
            for _ in range(2):  # a miss, then a hit
                response = await client.fetch(node.url + f"/tr:w-{width}/coffee.jpg", request_timeout=30)
                assert response.code == 200 and decode(response).width == width
        client.close()
    finally:
        assert node.stop() == 0
    log = "".join(node.log)
    assert "exited with status" not in log and "workers keep dying" not in log, log


def corrupt_tables(database: Path) -> None:
    """Overwrite the pages holding diskcache's `Cache` table and its indexes, as a torn write would."""
    with sqlite3.connect(database) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the database file itself
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
        roots = [root for (root,) in con.execute("SELECT rootpage FROM sqlite_master WHERE tbl_name = 'Cache' AND rootpage > 0")]
    con.close()
    with open(database, "r+b") as file:
        for root in roots:
            file.seek((root - 1) * page_size)
            file.write(b"\xa5" * page_size)


async def test_a_corrupt_database_is_moved_aside_and_rebuilt_while_the_node_serves(node_factory, tmp_path):
    config = write_config(tmp_path, local_config())
    first = await start_node(config)
    made = await first.fetch("/tr:w-80/coffee.jpg")
    assert (await first.fetch(PNG)).code == 200  # a value file of its own
    await first.stop()
    outputs = tmp_path / "cache" / "outputs"
    corrupt_tables(outputs / "cache.db")
    other_worker = Caches(tmp_path / "cache", 10**9, 10**9)  # has the corrupt database open too
    for day in (1, 2, 3):  # folders moved aside before: the newest are kept
        (tmp_path / "cache" / f"outputs.corrupt-2026010{day}T000000-1").mkdir()

    node = await node_factory(config)
    served = await node.fetch("/tr:w-80/coffee.jpg")
    assert (served.code, served.headers["X-Cache"], served.body) == (200, "MISS", made.body)
    assert metric(node, "edge_cache_errors_total", tier="output", kind="corrupt") >= 1
    ready = await node.fetch("/_edge/ready")
    assert ready.code == 200 and ready.body.decode().startswith("ready, cache degraded: output: corrupt")

    # kept for inspection: its database alone (it had kept every value file: up to the tier's budget, for good),
    # and the newest three such folders of the tier
    *older, aside = sorted(outputs.parent.glob("outputs.corrupt-*"))
    assert [folder.name for folder in older] == ["outputs.corrupt-20260102T000000-1",
                                                 "outputs.corrupt-20260103T000000-1"]
    assert {path.name for path in aside.rglob("*")} <= {"cache.db", "cache.db-wal", "cache.db-shm"}
    assert (aside / "cache.db").exists()
    with sqlite3.connect(outputs / "cache.db") as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    con.close()
    assert (await node.fetch("/tr:w-80/coffee.jpg")).headers["X-Cache"] == "HIT"  # cached again

    other_worker.flush_touches()  # its job of every second notices the new database and opens it
    key = output_key(original_key("", "coffee.jpg", None), "w-80", "")
    assert other_worker.outputs.get(key).body == made.body
    other_worker.close()


def settings_name_made_a_blob(database: Path) -> None:
    """What a flipped bit in a row's header can make of one of diskcache's settings: its name a BLOB, not
    text (diskcache calls `startswith` on each name whenever a thread opens a connection)."""
    with sqlite3.connect(database) as con:
        con.execute("UPDATE Settings SET key = CAST(key AS BLOB) WHERE key = 'tag_index'")
    con.close()


async def test_a_damaged_setting_is_a_corrupt_cache_not_a_500(node_factory, tmp_path):
    """diskcache trusts the rows it reads: a setting's name that is not text raised a `TypeError` from its
    own code, which the node took for a bug of its own (a 500 when the single flight's failure records
    were opened, found by `test_cache_corruption_fuzz`). Any error raised inside diskcache is now the
    cache's: counted `corrupt`, the database moved aside and rebuilt, the request served."""
    config = write_config(tmp_path, local_config())
    first = await start_node(config)
    await first.fetch("/tr:w-80/coffee.jpg")
    assert (await first.fetch("/nosuch.jpg")).code == 404  # its failure recorded for other workers' waiters
    await first.stop()
    cache = tmp_path / "cache"
    damaged = [cache / "outputs" / "cache.db", *(cache / "flights").glob("*/failures/cache.db")]
    assert len(damaged) >= 2
    for database in damaged:
        settings_name_made_a_blob(database)

    node = await node_factory(config)
    served, missing = await node.fetch("/tr:w-80/coffee.jpg"), await node.fetch("/nosuch.jpg")
    assert (served.code, served.headers["X-Cache"], missing.code) == (200, "MISS", 404)
    assert metric(node, "edge_cache_errors_total", tier="output", kind="corrupt") >= 1
    assert metric(node, "edge_cache_errors_total", tier="flight", kind="corrupt") >= 1
    assert (await node.fetch("/tr:w-80/coffee.jpg")).headers["X-Cache"] == "HIT"  # the rebuilt tier keeps it


class Planted:
    """What a row written into a tier's database unpickles to: its unpickling makes `made` (a process's own code)."""

    def __init__(self, made: Path):
        self.made = made

    def __reduce__(self):
        return os.mkdir, (str(self.made),)


@pytest.mark.parametrize("planted", ["a pickled value", "a value file outside the folder"])
async def test_a_row_planted_in_a_database_runs_nothing_and_reads_nothing_outside(node_factory, tmp_path, planted):
    """diskcache unpickles a value whose row says pickled, and opens the file a row names: whoever could write a
    tier's database had run code as the node's user at the next lookup (security review), or had it read any of its
    files. Neither is a value the node writes: the database is damaged (`corrupt`, rebuilt), the request served."""
    config = write_config(tmp_path, local_config())
    first = await start_node(config)
    made = await first.fetch("/tr:w-80/coffee.jpg")
    await first.stop()
    ran = tmp_path / "ran"
    with sqlite3.connect(tmp_path / "cache" / "outputs" / "cache.db") as con:
        if planted == "a pickled value":
            con.execute("UPDATE Cache SET mode = 4, filename = NULL, value = ?", (pickle.dumps(Planted(ran)),))
        else:
            con.execute("UPDATE Cache SET mode = 2, filename = '../../edge.toml', value = NULL")
    con.close()

    node = await node_factory(config)
    served = await node.fetch("/tr:w-80/coffee.jpg")
    assert (served.code, served.headers["X-Cache"], served.body) == (200, "MISS", made.body)
    assert not ran.exists()
    assert metric(node, "edge_cache_errors_total", tier="output", kind="corrupt") == 1
    assert (await node.fetch("/tr:w-80/coffee.jpg")).headers["X-Cache"] == "HIT"  # the rebuilt tier keeps it


def test_a_row_naming_a_file_outside_its_folder_never_has_it_deleted(tmp_path):
    """diskcache deletes the file a row names when the row goes (a delete, an expiry, a cull): a planted row had
    any file the node's user may remove deleted (review)."""
    victim = tmp_path / "victim"
    victim.write_text("not the cache's")
    tier = BoundedCache(str(tmp_path / "tier"))
    try:
        tier.set("k", b"x" * 100_000)  # a value file of its own
        with sqlite3.connect(tmp_path / "tier" / "cache.db") as con:
            con.execute("UPDATE Cache SET filename = '../victim' WHERE key = 'k'")
        con.close()
        assert tier.delete("k")
    finally:
        tier.close()
    assert victim.read_text() == "not the cache's"


# -- a full filesystem (root only: mounts a small tmpfs) ---------------------------------------------

def mount_tmpfs(mountpoint: Path, options: str):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) to mount a small tmpfs as the cache filesystem")
    mountpoint.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mountpoint)],
                             capture_output=True, text=True, timeout=30)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield mountpoint
    subprocess.run(["umount", "-l", str(mountpoint)], timeout=30, check=False)


@pytest.fixture
def small_tmpfs(tmp_path):
    yield from mount_tmpfs(tmp_path / "tmpfs", "size=8m")


@pytest.fixture
def read_only_tmpfs(tmp_path):
    yield from mount_tmpfs(tmp_path / "read-only", "size=1m,ro")


@pytest.fixture
def few_inodes_tmpfs(tmp_path):
    yield from mount_tmpfs(tmp_path / "few-inodes", "size=8m,nr_inodes=16")


def test_a_value_file_s_folder_not_made_is_said_for_what_stopped_it(few_inodes_tmpfs, read_only_tmpfs):
    """diskcache makes a value file's folders, swallowing the error, then fails to open the file: ENOENT. It was
    counted `io`, saying "No such file or directory", of a filesystem out of inodes (or a folder this user may not
    write): the cause is found by the nearest folder that exists."""
    for number in itertools.count():
        try:
            (few_inodes_tmpfs / f"f{number}").touch()
        except OSError:
            break
    def not_made(root: Path) -> OSError:
        return FileNotFoundError(errno.ENOENT, "No such file or directory", str(root / "cache/outputs/1c/a3/x.val"))
    assert error_kind(not_made(few_inodes_tmpfs)) == "full"
    assert error_kind(not_made(read_only_tmpfs)) == "unwritable"
    assert error_kind(not_made(few_inodes_tmpfs.parent)) == "io"  # a file gone, of a working filesystem


def test_a_filesystem_out_of_space_is_said_full_whether_a_write_or_a_folder_failed(small_tmpfs):
    """A write past the free space fails with ENOSPC; a value file's folder not made there (by diskcache, which
    swallows why) is found by its nearest folder's free blocks: both `full`, for the alert that says to free
    space, not `io`."""
    fill(small_tmpfs)
    with pytest.raises(OSError) as no_space:
        (small_tmpfs / "more").write_bytes(b"\0" * 65536)
    assert no_space.value.errno == errno.ENOSPC and error_kind(no_space.value) == "full"
    assert os.statvfs(small_tmpfs).f_favail > 0  # inodes left: only the space ran out
    gone_folder = FileNotFoundError(errno.ENOENT, "No such file or directory", str(small_tmpfs / "cache/1c/a3/x.val"))
    assert error_kind(gone_folder) == "full"


def test_a_store_a_full_disk_cuts_short_leaves_no_value_file(small_tmpfs):
    """diskcache left the cut file of a store that failed, holding the disk's last space until the hourly sweep, a new
    one at every store (operator probe: 300 kB a store under a file size limit)."""
    tier = BoundedCache(str(small_tmpfs / "tier"))
    try:
        fill(small_tmpfs)
        with open(small_tmpfs / "filler", "r+b") as filler:
            filler.truncate(os.path.getsize(small_tmpfs / "filler") - 256 * 1024)
        with pytest.raises(OSError) as no_space:
            tier.set("key", b"\1" * 1024 * 1024)
        assert no_space.value.errno == errno.ENOSPC
        assert not list((small_tmpfs / "tier").rglob("*.val"))
        assert os.statvfs(small_tmpfs).f_bavail * os.statvfs(small_tmpfs).f_frsize >= 200 * 1024  # its space given back
    finally:
        tier.close()


def test_what_sqlite_raises_of_a_full_or_read_only_database_is_said_for_what_it_is(tmp_path):
    """sqlite says a full disk, a read-only file or a folder it cannot open in words alone, all of them
    `OperationalError`: each is counted by its cause, not as a failure of unknown `io`."""
    database = tmp_path / "cache.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE t (x)")
    connection.execute("PRAGMA max_page_count = 2")  # as a disk with no space left for another page
    with pytest.raises(sqlite3.OperationalError) as full:
        connection.execute("INSERT INTO t VALUES (zeroblob(100000))")
    connection.close()
    read_only = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as not_written:
        read_only.execute("INSERT INTO t VALUES (1)")
    read_only.close()
    with pytest.raises(sqlite3.OperationalError) as not_opened:
        sqlite3.connect(tmp_path / "gone" / "cache.db")
    assert [error_kind(caught.value) for caught in (full, not_written, not_opened)] == ["full", "unwritable",
                                                                                        "unwritable"]


READ_AS_NOBODY = """
import errno, sys
from edge.cache.health import error_kind
print(error_kind(FileNotFoundError(errno.ENOENT, "No such file or directory", sys.argv[1])))
"""


def test_a_value_file_s_folder_not_made_in_a_folder_of_another_user_is_said_unwritable():
    """A cache folder made by a node run once as root, served as another user: the folders diskcache cannot
    make in it are for the user's rights (`unwritable`), on a filesystem that is neither full nor read-only."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv(1) to run as another user")
    folder = Path(tempfile.mkdtemp(prefix="edge-as-nobody-", dir="/tmp"))  # where nobody may go (tmp_path is 0700)
    try:
        folder.chmod(0o755)  # root's: nobody reads it, may not write it
        said = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                               READ_AS_NOBODY, str(folder / "cache/outputs/1c/a3/x.val")], capture_output=True,
                              text=True, timeout=60)
        assert (said.returncode, said.stdout) == (0, "unwritable\n"), said.stderr
    finally:
        shutil.rmtree(folder)


async def test_an_unwritable_cache_folder_costs_the_cache_and_nothing_else(read_only_tmpfs, node_factory,
                                                                           tmp_path):
    text = local_config(before=f'[cache]\ndir = "{read_only_tmpfs / "cache"}"\n')
    node = await node_factory(write_config(tmp_path, text))
    for _ in range(2):
        response = await node.fetch("/tr:w-50/coffee.jpg")
        assert (response.code, response.headers["X-Cache"], decode(response).width) == (200, "MISS", 50)
    ready = await node.fetch("/_edge/ready")
    assert ready.code == 200 and "output: unavailable" in ready.body.decode()
    assert metric(node, "edge_cache_errors_total", tier="output", kind="unwritable") == 1  # tried again in 30 s


def fill(folder: Path) -> None:
    """Write a file until the filesystem has no space left (bounded by its size)."""
    # unbuffered: a buffered file would keep a short write's remainder and raise ENOSPC again on close
    with open(folder / "filler", "wb", buffering=0) as filler:
        try:
            for _ in range(10_000):
                filler.write(b"\0" * 65536)
        except OSError:
            return
    raise AssertionError("the filesystem never filled up")


def config_on(tmp_path: Path, cache: Path) -> Path:
    return write_config(tmp_path, local_config(before=f'[cache]\ndir = "{cache}"\n[server]\nworkers = 2\n'),
                        name=f"{cache.name}.toml")


async def test_a_full_cache_filesystem_costs_the_cache_and_nothing_else(small_tmpfs, tmp_path):
    node = NodeProcess(config_on(tmp_path, small_tmpfs / "cache"))
    try:
        from tornado.httpclient import AsyncHTTPClient
        client = AsyncHTTPClient(force_instance=True)

        async def get(url: str):
            return await client.fetch(url, raise_error=False, request_timeout=60)

        cached = await get(node.url + "/tr:w-64/coffee.jpg")
        assert cached.code == 200
        fill(small_tmpfs)
        # new outputs cannot be stored (and every store bumps the shared versions: no SIGBUS)
        for width in range(100, 140, 4):
            response = await get(node.url + f"/tr:w-{width},f-png/astronaut.jpg")
            assert response.code == 200 and decode(response).width == width
        assert (await get(node.url + "/tr:w-64/coffee.jpg")).body == cached.body
        ready = await get(node.url + "/_edge/ready")
        assert ready.code == 200 and "cache degraded" in ready.body.decode()
        assert total(await scrape(node.url), "edge_cache_errors_total", kind="full") >= 1
        assert not list((small_tmpfs / "cache").glob(".ready-*"))  # its probe file, made but not written: removed

        # a node started on the full filesystem: nothing can be created, everything is served
        fresh = NodeProcess(config_on(tmp_path, small_tmpfs / "fresh"))
        try:
            response = await get(fresh.url + "/tr:w-50/coffee.jpg")
            assert response.code == 200 and decode(response).width == 50
            assert "cache degraded" in (await get(fresh.url + "/_edge/ready")).body.decode()
        finally:
            assert fresh.stop() == 0
        client.close()
    finally:
        code = node.stop()
    assert code == 0
    log = "".join(node.log)
    assert "exited with status" not in log and "crashed" not in log, log
    # logged once per tier and kind in each worker, not once per request
    assert max(Counter(re.findall(r"cache \((\w+)\): .* \[full\]", log)).values()) <= 2, log


@pytest.fixture
def locked_outputs():
    """`lock(folder)`: another process's exclusive lock on a tier's database, held until the test ends."""
    held = []

    def lock(folder: Path) -> None:
        connection = sqlite3.connect(folder / "cache.db", timeout=5, isolation_level=None)
        connection.execute("BEGIN EXCLUSIVE")
        held.append(connection)

    yield lock
    for connection in held:
        connection.rollback()
        connection.close()


async def test_a_locked_database_costs_seconds_not_a_minute_and_a_purge_says_it_was_not_done(
        node_factory, tmp_path, locked_outputs, caplog):
    token = "purge-token-of-this-test-1234"
    node = await node_factory(write_config(tmp_path, local_config(before=f'[admin]\ntoken = "{token}"\n')))
    assert (await node.fetch(PNG)).headers["X-Cache"] == "MISS"
    locked_outputs(tmp_path / "cache" / "outputs")
    started = time.monotonic()
    purged = await node.fetch("/_edge/purge", method="POST", body=json.dumps({"url": PNG}).encode(),
                              headers={"Authorization": f"Bearer {token}"})
    assert time.monotonic() - started < 5  # diskcache's own busy timeout is 60 s
    assert purged.code == 502 and json.loads(purged.body)["by_tier"]["output"] == "error"
    started = time.monotonic()
    missing = await node.fetch("/tr:w-10/no-such.jpg")  # its 404 drops the path's outputs first
    assert missing.code == 404 and time.monotonic() - started < 5
    assert metric(node, "edge_cache_errors_total", tier="output", kind="busy") >= 1
    # said in words (diskcache's Timeout has none: the line was `cannot purge:  [busy]`)
    assert any("the database stayed locked past the busy timeout" in r.getMessage() for r in caplog.records)


async def test_a_node_started_and_a_purge_run_while_a_database_is_locked_wait_seconds_not_minutes(
        tmp_path, locked_outputs):
    """Opening a tier runs statements diskcache retries for 60 s each on a lock: a worker started (or a
    reload's) behind an operator's `sqlite3 cache.db` took minutes to serve, and `edge purge` as long."""
    config = write_config(tmp_path, local_config(before='[cache]\ndir = "cache"\n'))
    (tmp_path / "cache" / "outputs").mkdir(parents=True)
    locked_outputs(tmp_path / "cache" / "outputs")
    started = time.monotonic()
    node = NodeProcess(config)
    try:
        answer = await AsyncHTTPClient().fetch(node.url + PNG)
        assert (decode(answer).width, answer.headers["X-Cache"]) == (300, "MISS")
        assert time.monotonic() - started < 20
        started = time.monotonic()
        purge = subprocess.run([sys.executable, "-m", "edge", "purge", "--config", str(config), "--url", PNG],
                               capture_output=True, text=True, timeout=60)
        assert time.monotonic() - started < 20
        assert purge.returncode == 3, purge.stderr  # a part not purged: a script tries again
        assert json.loads(purge.stdout)["by_tier"]["output"] == "error"
    finally:
        assert node.stop() == 0


async def test_a_deleted_cache_folder_is_made_again_within_seconds(node_factory, tmp_path):
    node = await node_factory(write_config(tmp_path, local_config(before='[cache]\ndir = "cache"\nmemory_size = 0\n')))
    assert (await node.fetch(PNG)).headers["X-Cache"] == "MISS"
    shutil.rmtree(tmp_path / "cache" / "outputs")
    shutil.rmtree(tmp_path / "cache" / "purges")
    await node.node.caches.io(node.node.caches.every_second)  # what each worker does every second
    assert (tmp_path / "cache" / "outputs" / "cache.db").exists()
    assert (tmp_path / "cache" / "purges" / "cache.db").exists()  # purges recorded again (they had been 502s)
    purged = await node.node.caches.io(lambda: node.node.caches.forget("\0nothing/"))
    assert "purges" not in purged, purged
    assert (await node.fetch(PNG)).headers["X-Cache"] == "MISS"
    hit = await node.fetch(PNG)  # kept where everyone (purges, `edge cache stats`) sees it
    assert hit.headers["X-Cache"] == "HIT" and decode(hit).width == 300
    # and the deleted database is closed in every thread (its space given back) by the next second's work
    await node.node.caches.close_replaced()
    assert not [name for name in os.listdir("/proc/self/fd")
                if os.path.realpath(f"/proc/self/fd/{name}").endswith("outputs/cache.db (deleted)")]
    assert Caches(tmp_path / "cache", 10**8, 10**8).outputs.get(output_key(original_key("", "astronaut.jpg", None),
                                                                           "w-300,f-png", "", planned_format="png")) \
        is not None


def test_a_deleted_cache_folder_s_files_are_let_go_by_every_worker(tmp_path):
    """`rm -rf` of the cache folder under a node of 2 workers: within seconds no worker holds a deleted database,
    and the lease files are made again and locked. Each worker had held ~40 descriptors on the deleted databases
    for good, and their space: diskcache's connection in each thread, which the worker's collector never freed
    (frozen at its start), and `flights/` was not made again (scarce-resources probe)."""
    cache = tmp_path / "cache"
    process = NodeProcess(write_config(tmp_path, local_config(
        before='[server]\nworkers = 2\n[cache]\ndir = "cache"\nmemory_size = 0\n')))
    try:
        node = ServingNode(process)

        def held(deleted: bool) -> dict[int, list[str]]:
            """The files of the cache folder each worker holds, deleted ones or the others."""
            files = {}
            for pid in process.worker_pids():
                links = []
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    with contextlib.suppress(FileNotFoundError):  # closed meanwhile
                        links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
                files[pid] = sorted(os.path.relpath(link.removesuffix(" (deleted)"), cache) for link in links
                                    if link.startswith(f"{cache}/") and link.endswith(" (deleted)") == deleted)
            return files

        for width in range(100, 140):  # the cache threads of both workers open their connections
            assert node.get(f"/tr:w-{width}/astronaut.jpg")[0] == 200
        assert all(held(deleted=True)[pid] == [] for pid in process.worker_pids())
        shutil.rmtree(cache)
        for width in range(200, 240):
            assert node.get(f"/tr:w-{width}/astronaut.jpg")[0] == 200
        # but the lock each worker inherited from the supervisor, which took a new one (`keep_cache_dirs_locked`)
        polled(lambda: all(files == ["node.lock"] for files in held(deleted=True).values()),
               "the workers to let go of the deleted files", timeout=20)
        assert all({"flights/originals/leases", "flights/outputs/leases"} <= set(files)
                   for files in held(deleted=False).values())
        assert node.get("/tr:w-240/astronaut.jpg")[1]["X-Cache"] == "MISS"
        polled(lambda: node.get("/tr:w-240/astronaut.jpg")[1]["X-Cache"] == "HIT",
               "the output stored (after the answer)")
    finally:
        assert process.stop() == 0


def test_a_full_temporary_folder_costs_the_metrics_files_and_nothing_else(small_tmpfs, tmp_path):
    """The workers' metrics files (prometheus-client's, in the temporary folder) on a filesystem that fills up
    once the node serves: the new workers' values are kept in memory, an error says so, and every image is
    served. prometheus-client made and grew them sparse, and writing their new pages through its map killed
    each worker with SIGBUS (exit -7), and then, after ten of them, the node. (Files that must grow are
    `test_a_metrics_file_that_must_grow_on_a_full_folder_keeps_its_values_in_memory`'s: whether a few
    requests make the running workers' files grow depends on how many series a node starts with.)"""
    config = write_config(tmp_path, local_config(before='[server]\nworkers = 2\n[cache]\ndir = "cache"\n'))
    process = NodeProcess(config, env={"TMPDIR": str(small_tmpfs)})
    try:
        node = ServingNode(process)
        assert node.metrics().total("edge_metrics_values_lost") == 0
        fill(small_tmpfs)
        first_workers, mark = set(process.worker_pids()), len(process.log)
        process.process.send_signal(signal.SIGHUP)
        process.wait_for_log(r"config reloaded from", 60, mark)
        gone(process, first_workers)
        workers = process.worker_pids()
        for transformation in ("w-100", "w-101,f-webp", "w-102,f-png", "w-103,f-avif", "w-104,f-gif"):
            status, _, body = node.get(f"/tr:{transformation}/coffee.jpg")
            assert status == 200 and pyvips.Image.new_from_buffer(body, "").width == int(transformation[2:5])
        process.wait_for_log(r"no room for this worker's metrics in .*: they are kept in its memory")
        assert process.worker_pids() == workers
        # every worker's text says that values are missing from it: the other's text, without them, had passed
        # for the node's (its counters frozen, its gauges missing), and a 503 from that worker alone made the
        # scrapes flap, which restarted every gauge alert's `for:`
        assert {node.metrics().total("edge_metrics_values_lost") >= 1 for _ in range(20)} == {True}
        status, _, page = node.get("/_edge/status")  # what a person without Grafana is told
        assert status == 200 and b"found no room in the temporary folder" in page
        (small_tmpfs / "filler").unlink()  # room made, then new workers with new files: nothing is missing
        mark = len(process.log)
        process.process.send_signal(signal.SIGHUP)
        process.wait_for_log(r"config reloaded from", 60, mark)
        gone(process, set(workers))  # reaped: their slots' notes cleared
        assert {node.metrics().total("edge_metrics_values_lost") for _ in range(20)} == {0}
    finally:
        process.stop()


def test_a_metrics_file_that_must_grow_on_a_full_folder_keeps_its_values_in_memory(small_tmpfs, monkeypatch, caplog):
    """A worker's values file grown once the folder is full (a new endpoint, a new status): its values so
    far and the new ones move to memory, where the growth had raised ENOSPC into every metrics flush."""
    from edge import metrics
    from edge.metrics import _AllocatedMmapedDict, _NotesCollector, _SupervisorNotes
    # this process is no worker: what it notes is undone after
    monkeypatch.setattr(metrics, "_notes", _SupervisorNotes(0))
    monkeypatch.setattr(metrics, "_slot", 2)
    values = _AllocatedMmapedDict(str(small_tmpfs / "counter_slot0.db"))
    values.write_value("first", 1.0, 0.0)
    fill(small_tmpfs)
    keys = [f"key-{number:04d}-" + "x" * 200 for number in range(400)]  # 90 kB: past its first 64 kB
    for number, key in enumerate(keys):
        values.write_value(key, float(number), 0.0)
    assert values.read_value("first") == (1.0, 0.0) and values.read_value(keys[-1]) == (399.0, 0.0)
    assert {family.name: family.samples[0].value for family in _NotesCollector(0).collect()}[
        "edge_metrics_values_lost"] == 1
    assert f"no room for this worker's metrics in {small_tmpfs} (" in caplog.text
    values.close()


def test_metrics_files_on_a_filesystem_without_fallocate_are_kept_there(tmp_path):
    """ramfs has no fallocate: glibc writes zeros instead, which an append-mode descriptor refuses (EBADF), and
    every worker had kept its values in memory, /metrics counting no request."""
    folder = tmp_path / "ramfs"
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "ramfs", "ramfs", str(folder)], capture_output=True,
                                           timeout=30).returncode != 0:
        pytest.skip("needs root and mount(8) to mount a ramfs")
    try:
        config = write_config(tmp_path, local_config(before='[server]\nworkers = 2\n[cache]\ndir = "cache"\n'))
        process = NodeProcess(config, env={"TMPDIR": str(folder)})
        try:
            node = ServingNode(process)
            assert node.get("/tr:w-100/coffee.jpg")[0] == 200
            # counted at the end of the answering worker's IOLoop turn, after the answer (`Metrics.add`): the other
            # worker's scrape may come first (CI once)
            polled(lambda: node.metrics().total("edge_http_requests_total", status="200") >= 1,
                   "the request to be counted")
            assert "no room for this worker's metrics" not in "".join(process.log)
        finally:
            process.stop()
    finally:
        subprocess.run(["umount", "-l", str(folder)], timeout=30, check=False)


async def test_a_bug_in_the_readiness_check_is_not_ready_with_its_traceback(node_factory, tmp_path, caplog,
                                                                           monkeypatch):
    """Only libvips' and the disk's failures are expected there: a bug had been one `not ready: …` line
    without a traceback, the balancer draining the node for good and the operator seeing no cause."""
    node = await node_factory(write_config(tmp_path, local_config()))

    def broken() -> list[str]:
        raise TypeError("a bug in the check")
    monkeypatch.setattr(node.node.caches, "check", broken)
    ready = await node.fetch("/_edge/ready")
    assert (ready.code, ready.body) == (503, b"not ready\n")
    [record] = [r for r in caplog.records if "readiness check failed" in r.getMessage()]
    assert record.exc_info is not None and "a bug in the check" in str(record.exc_info[1])


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv(1) to run the node as another user")
def test_what_the_nodes_user_may_not_use_is_named_and_costs_only_what_it_holds(tmp_path):
    """A cache folder made by a node run once as root, then served as another user: `flights/` stays root's.
    The lease file's open failing EACCES was taken for a lease another worker held, so every miss waited
    `wait_bound` (40 s) and was answered 504, while /_edge/ready said ready. And a `local` root that user cannot
    read, which had passed check-config and the start."""
    folder = Path(tempfile.mkdtemp(prefix="edge-as-nobody-", dir="/tmp"))  # where nobody may go (tmp_path is 0700)
    try:
        folder.chmod(0o755)
        cache = folder / "cache"
        (cache / "flights").mkdir(parents=True)  # root's, 0755
        os.chown(cache, 65534, 65534)
        config = write_config(folder, local_config(before=f'[server]\nworkers = 2\n[cache]\ndir = "{cache}"\n'))
        as_nobody = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m", "edge")
        checked = subprocess.run([*as_nobody, "check-config", "--config", str(config)], capture_output=True,
                                 text=True, timeout=60)
        assert checked.returncode == 0 and (
            f"cache folder {cache}: this user (uid 65534) cannot write flights (owner uid 0: made by a node run as "
            "another user?): the node serves without what they hold; give the folder to the node's user "
            "(chown -R)") in checked.stderr, checked.stderr
        unreadable = folder / "originals"
        unreadable.mkdir(mode=0o700)  # root's
        denied = subprocess.run([*as_nobody, "check-config", "--config",
                                 str(write_config(folder, local_config(unreadable), name="denied.toml"))],
                                capture_output=True, text=True, timeout=60)
        assert denied.returncode == 1 and denied.stderr.endswith(  # had started, then answered every image 502
            f"[origins[0] 'samples'] root: this user (uid 65534) cannot read the folder {unreadable}\n"), denied.stderr
        process = NodeProcess(config, edge=as_nobody)
        try:
            node = ServingNode(process)
            started = time.monotonic()
            for width in range(100, 108):
                status, headers, body = node.get(f"/tr:w-{width}/coffee.jpg")
                assert (status, pyvips.Image.new_from_buffer(body, "").width) == (200, width), headers
            assert time.monotonic() - started < 20  # no miss waited for a lease
            process.wait_for_log(r"no lease across workers: \[Errno 13\] Permission denied")
            assert node.get("/tr:w-100/coffee.jpg")[1]["X-Cache"] == "HIT"  # the rest of the cache works
        finally:
            assert process.stop() == 0
        os.chown(cache / "node.lock", 0, 0)  # had been "cannot write in it", of a folder it may write in
        # check-config says it as the problem it is (a warning, exit status 0, had passed a deploy's gate)
        checked = subprocess.run([*as_nobody, "check-config", "--config", str(config)], capture_output=True,
                                 text=True, timeout=60)
        assert checked.returncode == 1 and (
            f"edge: cache folder {cache}: this user (uid 65534) cannot open node.lock in it (owner uid 0: made by a "
            "node run as another user?): serve cannot start; give the folder to the node's user (chown -R)\n"
        ) in checked.stderr, checked.stderr
        served = subprocess.run([*as_nobody, "serve", "--port", "0", "--config", str(config)], capture_output=True,
                                text=True, timeout=60)
        assert served.returncode == 1 and served.stderr.endswith(
            f"edge: cache folder {cache}: cannot open node.lock in it: Permission denied\n"), served.stderr
    finally:
        shutil.rmtree(folder)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None,
                    reason="needs root and mount(8) to make the cache folder read-only under the node")
async def test_a_reload_goes_on_while_the_folder_the_node_serves_from_fails(tmp_path):
    """The cache folder gone read-only under a serving node: its workers serve uncached, and a reload (any change:
    a leaked signing key to rotate) had been refused for the folder, blocking every change until it was mended.
    A reload to a folder new to the node that cannot be used is still refused."""
    config = write_config(tmp_path, local_config(before='[server]\nworkers = 1\n[cache]\ndir = "cache"\n'))
    node = NodeProcess(config)
    cache = tmp_path / "cache"
    try:
        subprocess.run(["mount", "--bind", str(cache), str(cache)], check=True, timeout=30)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(cache)], check=True, timeout=30)
        # a store of a value file on it is `unwritable`, as its folder is: it had been `io`, the on-call sent to a
        # failing disk (diskcache's makedirs swallows the EROFS; the file's open then says ENOENT)
        assert (await AsyncHTTPClient().fetch(node.url + "/tr:w-300,f-png/astronaut.jpg")).code == 200
        async def counted() -> bool:
            text = (await AsyncHTTPClient().fetch(node.url + "/metrics")).body.decode()
            return total(text, "edge_cache_errors_total", tier="output", kind="unwritable") >= 1
        await until(counted, "the store's failure counted")
        text = (await AsyncHTTPClient().fetch(node.url + "/metrics")).body.decode()
        assert total(text, "edge_cache_errors_total", tier="output", kind="io") == 0
        config.write_text(local_config(before='[server]\nworkers = 1\n[cache]\ndir = "cache"\n'
                                              '[named_transformations]\nthumb = "w-30"\n'))
        mark = len(node.log)
        node.process.send_signal(signal.SIGHUP)
        warned = await asyncio.to_thread(node.wait_for_log, r"SIGHUP: \[cache\] dir: ", 30, mark)
        assert warned.string.rstrip().endswith(f"SIGHUP: [cache] dir: cache folder {cache}: cannot write in {cache}: "
                                               "Read-only file system: the new workers serve without it where they "
                                               "must, as the running ones do"), warned.string
        await asyncio.to_thread(node.wait_for_log, "config reloaded", 60, mark)
        named = await AsyncHTTPClient().fetch(node.url + "/tr:n-thumb/coffee.jpg")
        assert decode(named).width == 30
        (tmp_path / "a-file").write_text("not a folder")
        config.write_text(local_config(before='[server]\nworkers = 1\n[cache]\ndir = "a-file/cache"\n'))
        mark = len(node.log)
        node.process.send_signal(signal.SIGHUP)
        await asyncio.to_thread(node.wait_for_log, "config not reloaded", 30, mark)
    finally:
        subprocess.run(["umount", "-l", str(cache)], timeout=30, check=False)
        assert node.stop() == 0


#: Python's audit events of calls that may wait for a disk (`stat` has none)
DISK_EVENTS = {"open", "os.mkdir", "os.remove", "os.rename", "os.rmdir", "os.listdir", "os.scandir", "os.truncate",
               "os.utime", "os.chmod", "shutil.rmtree", "shutil.move", "shutil.copyfile"}


async def test_the_ioloop_calls_the_disk_for_no_file_of_the_cache(node_factory, tmp_path):
    """A disk that hangs (frozen, dying, an NFS server away) holds whatever thread calls it: the lease file of the
    single flight, its folder made and the file opened at the first miss on the IOLoop, had held every request of
    the worker, health probes included (the operator probe froze the cache's filesystem: nothing answered, and the
    supervisor's SIGKILL could not end a process waiting on the disk). Python's audit events name every file
    opened, folder made, file removed or renamed, and the thread that asks."""
    cache = tmp_path / "cache"
    loop_thread, watching, on_loop = threading.get_ident(), [], []

    def hook(event: str, args: tuple) -> None:
        if watching and event in DISK_EVENTS and threading.get_ident() == loop_thread \
                and isinstance(args[0], (str, Path)) and str(args[0]).startswith(str(cache)):
            on_loop.append((event, str(args[0])))
    sys.addaudithook(hook)  # for the rest of the run: inert once `watching` is emptied
    try:
        node = await node_factory(write_config(tmp_path, local_config()))
        watching.append(True)  # serving (a starting worker opens its cache before it serves)
        for path in (PNG, PNG, "/tr:w-20/astronaut.jpg", "/no-such.jpg", "/_edge/ready", "/_edge/status"):
            await node.fetch(path)
    finally:
        watching.clear()
    assert on_loop == []


@pytest.mark.parametrize("damage", ["tables", "settings"])
async def test_a_worker_that_finds_the_corrupt_database_moved_aside_opens_the_new_one(tmp_path, damage):
    """Two workers on one corrupt database: the second to take the rebuild lock finds the folder moved aside by the
    first and not yet made again. It took that for a disk's failure (`io`), and when it found the damage as it
    opened the tier (a damaged setting), had no output tier for 30 s."""
    config = write_config(tmp_path, local_config())
    first = await start_node(config)
    await first.fetch("/tr:w-80/coffee.jpg")
    await first.stop()
    outputs = tmp_path / "cache" / "outputs"
    (corrupt_tables if damage == "tables" else settings_name_made_a_blob)(outputs / "cache.db")
    failures: list[tuple[str, str]] = []
    health = CacheHealth(lambda tier, kind: failures.append((tier, kind)))
    loop, tier = asyncio.get_running_loop(), None
    try:
        with open(outputs.with_name(".outputs.rebuild-lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the first worker's, while it moves the folder aside
            if damage == "tables":  # found by a read
                tier = OutputTier("output", outputs, 10**9, health)
                key = output_key(original_key("", "coffee.jpg", None), "w-80", "")
                found = loop.run_in_executor(None, tier.get, key)
            else:  # found as the tier opens
                found = loop.run_in_executor(None, OutputTier, "output", outputs, 10**9, health)

            async def found_corrupt() -> bool:
                return ("output", "corrupt") in failures
            await until(found_corrupt, "the second worker finding the database corrupt")
            outputs.rename(outputs.with_name("outputs.corrupt-first"))
        opened = await found
        tier = tier if damage == "tables" else opened
        assert tier.available and failures == [("output", "corrupt")]
        assert (outputs / "cache.db").exists()
    finally:
        if tier is not None:
            tier.close()


async def test_a_cache_disk_that_hangs_costs_the_cache_not_the_answers(node_factory, tmp_path, monkeypatch):
    """A value file whose read never returns (a FIFO: a frozen disk, an NFS server away) held a cache thread per
    request for it; with the four held, every request of the worker waited for ever, its readiness probe too. Now a
    request waits `IO_WAIT_SECONDS` at most, then goes on without the cache, as the next do at once."""
    monkeypatch.setattr(caches_module, "IO_WAIT_SECONDS", 1.0)
    node = await node_factory(write_config(tmp_path, local_config(before='[cache]\ndir = "cache"\nmemory_size = 0\n')))
    made = await node.fetch(PNG)
    (value_file,) = (tmp_path / "cache" / "outputs").rglob("*.val")
    value_file.unlink()
    os.mkfifo(value_file)
    try:
        # more requests for it than the cache has threads: each holds one, reading the FIFO
        answers = await asyncio.gather(*(_get(node, PNG) for _ in range(caches_module.IO_THREADS + 1)))
        assert {(a.code, a.headers["X-Cache"], a.body) for a in answers} == {(200, "MISS", made.body)}
        started = time.monotonic()
        other = await _get(node, "/tr:w-40/coffee.jpg")  # no wait at all now
        assert (other.code, other.headers["X-Cache"], decode(other).width) == (200, "MISS", 40)
        assert time.monotonic() - started < caches_module.IO_WAIT_SECONDS
        ready = await _get(node, "/_edge/ready")
        assert (ready.code, ready.body) == (200, b"ready, cache degraded: folder: stuck\n")
        assert metric(node, "edge_cache_errors_total", tier="folder", kind="stuck") >= 1
    finally:  # the disk answers: the readers get an end of file
        os.close(os.open(value_file, os.O_WRONLY | os.O_NONBLOCK))
    # and the cache serves again once the wait is over
    await until(lambda: _hit(node, "/tr:w-40/coffee.jpg"), "the cache serving again", timeout=30)


async def test_a_readiness_probe_meeting_a_disk_that_begins_to_hang_is_answered_within_a_balancers_check(
        node_factory, tmp_path, monkeypatch):
    """`/_edge/ready` waited for its check of the cache `IO_WAIT_SECONDS` (5 s) as a disk began to hang: the shipped
    HAProxy's 1 s check marked the node down for seconds, though it served every request (fleet probe)."""
    monkeypatch.setattr(server_module, "READY_SECONDS", 0.0)  # every probe checks
    node = await node_factory(write_config(tmp_path, local_config(before='[cache]\ndir = "cache"\nmemory_size = 0\n')))
    await node.fetch(PNG)
    (value_file,) = (tmp_path / "cache" / "outputs").rglob("*.val")
    value_file.unlink()
    os.mkfifo(value_file)
    readers = [asyncio.ensure_future(_get(node, PNG)) for _ in range(caches_module.IO_THREADS)]
    try:
        answers = []

        async def degraded() -> bool:
            started = time.monotonic()
            ready = await _get(node, "/_edge/ready")
            answers.append((ready.code, ready.body, time.monotonic() - started))
            return ready.body != b"ready\n"
        await until(degraded, "the probe saying the cache is stuck", timeout=10)
        assert answers[-1][:2] == (200, b"ready, cache degraded: folder: stuck\n")
        assert max(seconds for _, _, seconds in answers) < 1.0, answers
    finally:  # the disk answers: the readers get an end of file
        os.close(os.open(value_file, os.O_WRONLY | os.O_NONBLOCK))
        await asyncio.gather(*readers)


async def _get(node, path: str):
    """The answer, without waiting for what it stores (`RunningNode.fetch`): the cache's threads are held."""
    return await node.client.fetch(node.url + path, raise_error=False, request_timeout=30)


async def _hit(node, path: str) -> bool:
    return (await node.fetch(path)).headers["X-Cache"] == "HIT"


def test_a_tier_that_opens_again_says_so(tmp_path, monkeypatch, caplog):
    """Its failure to open was logged; that it works again was not (only the ready body clearing, a minute on)."""
    monkeypatch.setattr(tiers_module, "RETRY_SECONDS", 0.0)
    blocked = tmp_path / "outputs"
    blocked.write_text("a file where the folder goes")
    tier = OutputTier("output", blocked, 10**9, CacheHealth())
    try:
        assert not tier.available and "cannot open" in caplog.text
        blocked.unlink()
        with caplog.at_level(logging.INFO, logger="edge.cache"):
            assert tier.get("a key") is None and tier.available
        assert f"cache output tier: open again in {blocked}" in caplog.text
    finally:
        tier.close()
