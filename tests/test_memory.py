"""The allocator settings a worker starts with give freed memory back (edge/memory.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from edge import memory

pytestmark = pytest.mark.skipif(memory._LIBC is None, reason="glibc's malloc is not in use (musl or jemalloc)")

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


def test_memory_freed_by_requests_is_given_back_after_a_large_block():
    assert grown_after_freeing("give-back") < 4 * 2**20
    # glibc's default keeps the freed 48 MB resident: the test tells the two apart
    assert grown_after_freeing("glibc") > 32 * 2**20
