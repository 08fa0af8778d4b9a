"""Memory that stays bounded: the allocator settings a worker starts with give freed memory back
(edge/memory.py); the memory tier holds what its budget says."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import textwrap
import tracemalloc
import weakref

import pytest

from edge import memory
from edge.cache import CachedOutput, SourceInfo, strong_etag
from edge.cache.memory import MEMORY_ENTRY_SHARE, MemoryTier
from edge.testing import write_config
from tests.nodes import until

glibc_only = pytest.mark.skipif(memory._LIBC is None, reason="glibc's malloc is not in use (musl or jemalloc)")

# Freeing one large block makes glibc raise its thresholds (by default); then 2 MB blocks, as an
# original or a decoded image would be, are carved from the heap, whose free top stays resident.
_AFTER_A_LARGE_BLOCK = textwrap.dedent("""
    import sys
    from edge import memory
    memory.configure_allocator(2, sys.argv[1] == "give-back")
    block = bytes(30 * 2**20)  # glibc then maps only blocks over 30 MB, and trims a free top over 60 MB
    del block
    before = memory.resident_bytes()
    blocks = [b"x" * (2 * 2**20 + n) for n in range(24)]
    del blocks
    print(memory.resident_bytes() - before)
""")


def grown_after_freeing(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", _AFTER_A_LARGE_BLOCK, mode], capture_output=True, text=True,
                            check=True, timeout=60)
    return int(result.stdout)


@glibc_only
def test_memory_freed_by_requests_is_given_back_after_a_large_block():
    assert grown_after_freeing("give-back") < 4 * 2**20
    # glibc's default keeps the freed 48 MB resident: the test tells the two apart
    assert grown_after_freeing("glibc") > 32 * 2**20


@glibc_only
async def test_a_worker_trims_once_idle_after_growing_past_the_threshold_and_again_only_after_growing_more(
        monkeypatch):
    """`trim_after_bursts`, its readings of resident memory made up: no trim while requests are in progress nor
    before the growth passes TRIM_GROWTH_BYTES, one once idle, and the next measured from what the trim left
    (mutations trimming while busy, at any size, or from the first baseline for ever, survived)."""
    resident, busy, readings, trims = [100 * 2**20], [True], [0], []

    def reading() -> int:
        readings[0] += 1
        return resident[0]

    def collect_and_trim() -> None:
        trims.append(resident[0])
        resident[0] -= 4 * 2**20  # what the trim gave back

    async def read_again(times: int = 3) -> None:
        seen = readings[0]

        async def read() -> bool:
            return readings[0] >= seen + times
        await until(read, f"{times} more readings")

    async def trimmed(count: int) -> None:
        async def done() -> bool:
            return len(trims) >= count
        await until(done, f"trim {count}")

    monkeypatch.setattr(memory, "TRIM_CHECK_SECONDS", 0.0)
    monkeypatch.setattr(memory, "resident_bytes", reading)
    monkeypatch.setattr(memory, "_collect_and_trim", collect_and_trim)
    trimming = asyncio.create_task(memory.trim_after_bursts(lambda: not busy[0]))
    try:
        await read_again()
        resident[0] += memory.TRIM_GROWTH_BYTES + 1  # grown past the threshold during a burst
        await read_again()
        assert trims == []  # requests in progress
        busy[0] = False
        await trimmed(1)
        assert trims == [100 * 2**20 + memory.TRIM_GROWTH_BYTES + 1]
        resident[0] += memory.TRIM_GROWTH_BYTES  # the threshold from what the trim left, not passed
        await read_again()
        assert len(trims) == 1
        resident[0] += 1
        await trimmed(2)
        assert len(trims) == 2
    finally:
        trimming.cancel()
        await asyncio.gather(trimming, return_exceptions=True)


def test_a_trim_collects_the_cycles_a_burst_left_first():
    """A request cut short leaves its original held by a cycle through its error's traceback, which the seldom
    run cyclic collector would keep: the trim collects it (a mutation trimming without collecting survived)."""
    class Held:
        pass
    held = Held()
    held.cycle = held
    gone = weakref.ref(held)
    gc.disable()  # no automatic collection between here and the check
    try:
        del held
        assert gone() is not None
        memory._collect_and_trim()
    finally:
        gc.enable()
    assert gone() is None


def test_the_memory_tier_holds_its_budget_in_memory_even_of_tiny_outputs():
    """A client asking for thousands of 1-pixel variants: the tier's memory, objects and all, stays
    within its budget (counting bodies alone let it hold several times its size)."""
    budget = 2 * 10**6
    tier = MemoryTier(budget)
    tracemalloc.start()
    try:
        for n in range(20_000):
            body = b"\xff\xd8" + n.to_bytes(4, "big") + bytes(300)  # a 1x1 JPEG is about this size
            source = SourceInfo("photos", strong_etag(b"original"), 0.0, f'"{n}"', "Mon, 30 Nov 2026 10:00:00 GMT",
                                "image/jpeg")
            tier.put(f"/photo.jpg\0w-1,h-1,q-{n}\0", n, CachedOutput(body, "image/jpeg", strong_etag(body), source))
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held <= budget * 1.1
    assert tier.get("/photo.jpg\0w-1,h-1,q-19999\0", 19_999) is not None  # the newest are kept


def test_an_output_larger_than_a_share_of_the_memory_tier_is_not_kept_there():
    """Past `size_limit / MEMORY_ENTRY_SHARE`, an output stays on disk alone: one large output had flushed every
    hot one (and one larger than the tier, itself too), a mutation keeping it survived every test."""
    budget = 16 * 10**5
    tier = MemoryTier(budget)
    source = SourceInfo("photos", strong_etag(b"original"), 0.0, '"1"', "Mon, 30 Nov 2026 10:00:00 GMT", "image/jpeg")

    def output(size: int) -> CachedOutput:
        body = bytes(size)
        return CachedOutput(body, "image/jpeg", strong_etag(body), source)
    for n in range(10):
        tier.put(f"hot-{n}", 1, output(budget // 20))
    tier.put("large", 1, output(budget // MEMORY_ENTRY_SHARE + 1))
    assert tier.get("large", 1) is None
    assert all(tier.get(f"hot-{n}", 1) is not None for n in range(10))
    tier.put("within", 1, output(budget // MEMORY_ENTRY_SHARE))
    assert tier.get("within", 1) is not None


def test_the_memory_tier_evicts_the_least_recently_read_output_first():
    """A hit keeps an output: the tier evicts what was read longest ago, not what was put first (the hottest
    outputs, put early and read at every request, had been the first to go back to the disk)."""
    budget = 16 * 10**5
    tier = MemoryTier(budget)
    source = SourceInfo("photos", strong_etag(b"original"), 0.0, '"1"', "Mon, 30 Nov 2026 10:00:00 GMT", "image/jpeg")
    body = bytes(budget // 20)
    for n in range(10):
        tier.put(f"k-{n}", 1, CachedOutput(body, "image/jpeg", strong_etag(body), source))
    assert tier.get("k-0", 1) is not None  # the first put, read since
    for n in range(10, 21):  # 21 × (budget / 20 + overhead) is past the budget: evictions
        tier.put(f"k-{n}", 1, CachedOutput(body, "image/jpeg", strong_etag(body), source))
    assert tier.get("k-0", 1) is not None
    assert tier.get("k-1", 1) is None


# What a worker has imported once it serves: the config loaded (as `edge serve`'s supervisor does, which
# imports an origin type's client library then) and the serving code (`preload`, which the workers inherit)
_CLIENT_LIBRARIES_IMPORTED = (
    "import sys; from edge.config import load_config; from edge.pluginmanager import load_plugins; "
    "from edge.supervisor import preload; load_config(sys.argv[1], load_plugins()); preload(); "
    "print(sorted({'aioboto3', 'aiohttp', 'botocore', 'yarl'} & set(sys.modules)))")


@pytest.mark.parametrize("origin, imported", [
    ('type = "local"\nroot = "."', "[]"),
    ('type = "web"\nbase_url = "http://127.0.0.1:9"', "['aiohttp', 'yarl']"),
    ('type = "s3"\nbucket = "photos"\nendpoint_url = "http://127.0.0.1:9"',
     "['aioboto3', 'aiohttp', 'botocore', 'yarl']"),
])
def test_client_libraries_are_imported_only_for_the_origin_types_a_config_uses(tmp_path, origin, imported):
    """aiohttp costs a process ~9 MB, aioboto3 and botocore ~12 MB more: a node whose origins are
    all local imports none of them; one with a web or S3-backed origin imports them while loading its
    config (in the supervisor, before it forks: its workers share them)."""
    config = write_config(tmp_path, f'[[origins]]\nname = "o"\n{origin}\n\n[[endpoints]]\nid = ""\norigins = ["o"]\n')
    result = subprocess.run([sys.executable, "-c", _CLIENT_LIBRARIES_IMPORTED, str(config)], capture_output=True,
                            text=True, timeout=60, check=True)
    assert result.stdout.strip() == imported
