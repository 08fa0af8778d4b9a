"""The cache folder under churn, as an operator sees it: what a stopped node leaves behind."""

import contextlib
import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import diskcache

from edge.cache import Caches, checkpoint_left_logs
from edge.cache.health import CacheHealth
from edge.cache.tiers import JOURNAL_SIZE_LIMIT, OutputTier
from edge.testing import START_TIMEOUT, NodeProcess, ServingNode, image_size, photo_image, running_node, write_config
from tests.nodes import local_config, polled

TOKEN = "churn-token-5b1e0c7d93a2"


def test_a_stopped_node_leaves_no_write_ahead_log_after_purges_and_failures(tmp_path):
    """Every SQLite database under `[cache] dir` is checkpointed when the node stops, also those a purge
    and a recorded failure wrote: their connections belong to threads that close them. (Purges ran in
    asyncio's default threads, whose connections were never closed: a -wal of up to 4 MB stayed beside
    each tier's database, and `edge cache stats` took the stopped node for a running one.)"""
    config = local_config(before=f'[server]\nworkers = 2\n[admin]\ntoken = "{TOKEN}"\n')
    with running_node(config, tmp_path) as node:
        for width in (100, 120, 140):
            status, _, _ = node.get(f"/tr:w-{width}/astronaut.jpg")
            assert status == 200
        assert node.get("/tr:w-100/no-such.jpg")[0] == 404  # recorded as the flight's failure
        for _ in range(4):  # enough to reach both workers
            request = urllib.request.Request(f"{node.base_url}/_edge/purge", method="POST",
                                             data=json.dumps({"url": "/astronaut.jpg"}).encode(),
                                             headers={"Authorization": f"Bearer {TOKEN}"})
            with urllib.request.urlopen(request, timeout=30) as answer:
                assert answer.status == 200
    databases = sorted(str(path.relative_to(tmp_path)) for path in (tmp_path / "cache").rglob("cache.db"))
    assert "cache/outputs/cache.db" in databases and "cache/purges/cache.db" in databases
    assert "cache/flights/outputs/failures/cache.db" in databases
    assert sorted(str(path.relative_to(tmp_path)) for path in (tmp_path / "cache").rglob("*-wal")) == []


def test_the_supervisor_folds_the_write_ahead_logs_two_workers_closing_at_once_left(tmp_path):
    """Two workers closing their last connections at the same moment may each see the other's still
    open, and neither checkpoints (CI once found `outputs/cache.db-wal` after a stop): the supervisor
    folds what is left once no worker is. Such a log is made here by a process that exits without
    closing its connection; a folder moved aside as corrupt is left as it is."""
    folders = [tmp_path / "outputs", tmp_path / "flights" / "outputs" / "failures",
               tmp_path / "outputs.corrupt-1-2"]
    for folder in folders:
        folder.mkdir(parents=True)
        database = folder / "cache.db"
        with contextlib.closing(sqlite3.connect(database)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE t (x)")
        subprocess.run([sys.executable, "-c", "import os, sqlite3; db = sqlite3.connect(os.environ['DB']); "
                        "db.execute('INSERT INTO t VALUES (1)'); db.commit(); os._exit(0)"],
                       env={**os.environ, "DB": str(database)}, check=True, timeout=60)
        assert (folder / "cache.db-wal").stat().st_size > 0
    checkpoint_left_logs(tmp_path)
    assert sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*-wal")) == [
        "outputs.corrupt-1-2/cache.db-wal"]
    for folder in folders[:2]:
        with contextlib.closing(sqlite3.connect(folder / "cache.db")) as db:
            assert db.execute("SELECT x FROM t").fetchall() == [(1,)]


def _value_files(tier: Path) -> dict[Path, int]:
    return {path: path.stat().st_size for path in tier.rglob("*.val")} if tier.exists() else {}


def _kill_while_storing(node: NodeProcess, tier: Path, url: str) -> int | None:
    """Ask for `url` (a large uncached output) and SIGKILL the worker as soon as it holds a value file of
    `tier` open for writing; the pid killed, or None when the store was over before it was seen."""
    before = set(_value_files(tier))
    answered = threading.Thread(target=_ask, args=(node.url, url), daemon=True)
    answered.start()
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and answered.is_alive():
            if set(_value_files(tier)) - before:
                for pid in node.worker_pids():
                    for fd in Path(f"/proc/{pid}/fd").iterdir():
                        with contextlib.suppress(OSError):
                            if os.readlink(fd).endswith(".val"):
                                os.kill(pid, signal.SIGKILL)
                                return pid
            time.sleep(0.0005)  # polling a file being written: there is nothing to wait on
        return None
    finally:
        answered.join(30)


def _ask(base_url: str, path: str) -> None:
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    with contextlib.suppress(OSError, http.client.HTTPException):  # the worker answering it is killed
        connection.request("GET", path)
        connection.getresponse().read()
    connection.close()


def test_a_value_file_left_by_a_worker_killed_while_storing_is_removed(tmp_path):
    """diskcache writes a value's file before its row: a worker killed in between (SIGKILL, the OOM killer, the
    supervisor's kill of a hung worker) left the file, which no budget counted and no eviction deleted, for
    good: up to an eighth of the tier per crash. Never served (no row names it), but the folder outgrew its
    budget crash by crash. A worker deletes such files once they are `ORPHAN_SECONDS` old, as it starts and
    every hour."""
    (tmp_path / "originals").mkdir()
    (tmp_path / "originals" / "photo.jpg").write_bytes(photo_image(4000, 3000))
    config = write_config(tmp_path, local_config(tmp_path / "originals", before=(  # 16 GB: each PNG stored at once
        '[server]\nworkers = 2\n[cache]\ndir = "cache"\noutput_size = "16GB"\nmemory_size = 0\n')))
    outputs = tmp_path / "cache" / "outputs"
    node = NodeProcess(config)
    try:
        killed = None
        for width in (4000, 3990, 3980):  # the store is caught mid-write at once in practice
            if (killed := _kill_while_storing(node, outputs, f"/tr:w-{width},f-png/photo.jpg")) is not None:
                break
        assert killed is not None, "the store was never caught in progress"
        node.wait_for_log(rf"pid {killed}\) exited with status -9; restarted")
        status, _, body = ServingNode(node).get("/tr:w-200,f-png/photo.jpg")  # stored whole, kept
        assert status == 200 and image_size(body) == (200, 150)
    finally:
        node.stop()
    with sqlite3.connect(outputs / "cache.db") as database:
        named = {outputs / name for (name,) in database.execute("SELECT filename FROM Cache WHERE filename NOT NULL")}
    orphans = set(_value_files(outputs)) - named
    assert orphans and named
    for orphan in orphans:  # as if the crash had been an hour ago
        os.utime(orphan, (time.time() - 3600, time.time() - 3600))

    node = NodeProcess(config)
    try:
        node.wait_for_log(r"cache output tier: removed \d+ value file\(s\) that no entry names")
        assert set(_value_files(outputs)) == named
        status, headers, body = ServingNode(node).get("/tr:w-200,f-png/photo.jpg")
        assert (status, headers["X-Cache"], image_size(body)) == (200, "HIT", (200, 150))
    finally:
        node.stop()


def test_a_budget_lowered_across_a_restart_holds_before_any_store(tmp_path):
    """A node restarted on its cache folder with a lower `output_size` (an operator freeing disk) evicts down
    to it as it starts, counting the evictions: before, the tier stayed over the new budget until the next
    store, which an idle node or one serving hits only never made."""
    (tmp_path / "originals").mkdir()
    (tmp_path / "originals" / "photo.jpg").write_bytes(photo_image(800, 600))

    def config(output_size: str) -> str:
        return local_config(tmp_path / "originals", before=(
            f'[server]\nworkers = 2\n[cache]\ndir = "cache"\noutput_size = "{output_size}"\n'))

    with running_node(config("400MB"), tmp_path) as node:  # 1.3 MB under its admission share: stored at once
        for width in range(500, 800, 20):  # 15 outputs of 0.5-1.3 MB
            assert node.get(f"/tr:w-{width},f-png/photo.jpg")[0] == 200
    outputs = tmp_path / "cache" / "outputs"
    with diskcache.Cache(str(outputs)) as tier:
        stored, volume = len(tier), tier.volume()
    assert stored == 15 and volume > 8_000_000

    with running_node(config("4MB"), tmp_path) as node:
        node.wait_for_log(r"listening on")
        # the workers evict as they start: nothing to wait on from here
        polled(lambda: node.metrics().total("edge_cache_evictions_total", tier="output") > 0, "an eviction",
               START_TIMEOUT)
        evicted = node.metrics().total("edge_cache_evictions_total", tier="output")
        with diskcache.Cache(str(outputs)) as tier:
            assert tier.volume() <= 4_000_000 and len(tier) == stored - evicted


def test_an_empty_value_file_left_behind_is_removed_and_told(tmp_path, caplog):
    """A process killed right after diskcache created a value's file leaves it empty: it is an orphan all the
    same, and the line saying so counts files (a count of bytes freed, 0, had said nothing)."""
    caches = Caches(tmp_path / "cache", 10**8, 10**8)
    try:
        folder = tmp_path / "cache" / "outputs" / "ab" / "cd"
        folder.mkdir(parents=True)
        (folder / "0123456789abcdef0123456789ab.val").write_bytes(b"")
        an_hour_ago = time.time() - 3600
        os.utime(folder / "0123456789abcdef0123456789ab.val", (an_hour_ago, an_hour_ago))
        with caplog.at_level("WARNING"):
            assert caches.outputs.remove_orphans() == 1
        assert not (folder / "0123456789abcdef0123456789ab.val").exists()
        assert "cache output tier: removed 1 value file(s) that no entry names, 0 bytes" in caplog.text
    finally:
        caches.close()


def test_a_write_ahead_log_grown_by_evictions_under_readers_is_cut_back(tmp_path):
    """Evictions while another connection reads (two workers evicting after a budget was lowered) cannot be
    checkpointed as they go, and SQLite keeps the log at the largest size it reached: 50 MB beside a 6 MB output
    tier for good in the soak probe. Once checkpointed, the log is cut back to `JOURNAL_SIZE_LIMIT`."""
    tier = OutputTier("output", tmp_path / "outputs", 10**9, CacheHealth())
    try:
        for n in range(600):
            tier._put(f"\0{n}.jpg\0r3:w-1\0", os.urandom(20_000), {})  # values kept in the database's rows
        wal = tmp_path / "outputs" / "cache.db-wal"
        with contextlib.closing(sqlite3.connect(tmp_path / "outputs" / "cache.db", isolation_level=None)) as reader:
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM Cache").fetchall()  # a snapshot the log must keep for it
            tier.budget = 1_000_000
            tier.evict_to_budget()
            grown = wal.stat().st_size
            reader.execute("COMMIT")
        assert grown > 4 * JOURNAL_SIZE_LIMIT
        for n in range(50):  # the next writes checkpoint it and start it again from its beginning
            tier._put(f"\0new-{n}.jpg\0r3:w-1\0", b"x" * 100, {})
        assert wal.stat().st_size <= JOURNAL_SIZE_LIMIT
    finally:
        tier.close()
