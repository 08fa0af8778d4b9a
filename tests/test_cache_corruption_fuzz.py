"""Random bit flips in the cache folder of a running node (`edge serve` in a child process, memory tier
off, so every hit reads the disk): in value files, in the SQLite databases and their write-ahead logs, in
the shared version counters, while the node serves. After each round of damage every URL is asked
again, and each answer is a 200 with the very bytes it had before: a damaged value is found and made
again, a corrupt database moved aside and rebuilt, and nothing damaged is ever served ("Nothing cached
is lost or served corrupt")."""

import contextlib
import os
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.testing import total
from tests.fuzzing import copy_samples, exchange, fuzz_settings, one_worker
from tests.nodes import local_config, write_config

EXAMPLES = 40
#: small outputs (kept inside SQLite), large ones (files of their own) and an original's own bytes
URLS = [*(f"/tr:w-{width}/astronaut.jpg" for width in (40, 80, 120)),
        *(f"/tr:w-{width},f-png/logo-transparent.png" for width in (300, 400)),
        "/tr:orig-true/coffee.jpg", "/tr:w-900,f-png/coffee.jpg"]
TIMEOUT = 60


@pytest.fixture(scope="module")
def cached_node(tmp_path_factory):
    folder = copy_samples(tmp_path_factory.mktemp("corruption-images"))
    root = tmp_path_factory.mktemp("corruption-node")
    config = write_config(root, local_config(
        folder, before=f'[server]\naccess_log = false\n[cache]\ndir = "{root}/cache"\nmemory_size = 0\n'))
    with one_worker(config) as address:
        yield address, root / "cache"


def test_bits_flipped_in_the_cache_folder_never_reach_a_client(cached_node):
    node, cache = cached_node
    first = {}
    for url in URLS:
        status, body, _ = exchange(node, "GET", url, timeout=TIMEOUT)
        assert status == 200, url
        first[url] = body

    @fuzz_settings(EXAMPLES)
    @given(seed=st.integers(0, 2**32 - 1), flips=st.integers(1, 20), where=st.sampled_from(["values", "db", "any"]))
    def one(seed, flips, where):
        rng = random.Random(seed)
        files = nonempty_files(cache)
        chosen = {"values": [path for path in files if path.suffix == ".val"],
                  "db": [path for path in files if path.name.startswith("cache.db")]}.get(where) or files
        for _ in range(flips):
            path = rng.choice(chosen)
            try:
                damaged = bytearray(path.read_bytes())
                if damaged:
                    damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
                    path.write_bytes(bytes(damaged))
            except OSError:  # replaced or moved aside by the node meanwhile
                continue
        for url in URLS:
            status, body, _ = exchange(node, "GET", url, timeout=TIMEOUT)
            assert (status, body == first[url]) == (200, True), (url, status, len(body), len(first[url]))

    one()
    _, metrics, _ = exchange(node, "GET", "/metrics", timeout=TIMEOUT)
    # the damage was met, not missed: found by the hash checks, or a database rebuilt
    assert total(metrics.decode(), "edge_cache_errors_total", tier="output") > 0


def nonempty_files(folder: Path) -> list[Path]:
    """The files of `folder` with bytes in them, those the node removes meanwhile (a value folder emptied, a
    database moved aside) left out: a listing of a folder gone had failed the test."""
    files = []
    for parent, _, names in os.walk(folder):  # skips what vanishes under it
        for name in names:
            path = Path(parent) / name
            with contextlib.suppress(OSError):
                if path.stat().st_size:
                    files.append(path)
    return files
