"""The per-process memory tier: a byte-bounded LRU of outputs in front of the output tier.

Owned by the IOLoop thread: only code running on the loop reads or changes it (it has no lock).
Worker threads never touch it; what they change on disk reaches it through the shared version
counters, which make a copy unusable as soon as its key is written or deleted by any process.
"""

from __future__ import annotations

from collections import OrderedDict

from .entries import CachedOutput

#: outputs larger than this share of the tier are not kept: a few large ones must not flush the rest
MEMORY_ENTRY_SHARE = 16
#: bytes an entry costs beyond its body and key (the output's object, its headers and version, the
#: table's slot: about 800 measured): counted, so that many tiny outputs (1-pixel thumbnails, a
#: hostile client's variants) cannot hold several times `memory_size`
ENTRY_OVERHEAD = 1024


def _cost(key: str, output: CachedOutput) -> int:
    return len(output.body) + len(key) + ENTRY_OVERHEAD


class MemoryTier:
    def __init__(self, size_limit: int):
        self.size_limit = size_limit
        self._entries: OrderedDict[str, tuple[int, CachedOutput]] = OrderedDict()
        self._size = 0

    def get(self, key: str, version: int) -> CachedOutput | None:
        """The copy of `key` read at `version`, or None (absent, or written since)."""
        found = self._entries.get(key)
        if found is None or found[0] != version:
            return None
        self._entries.move_to_end(key)
        return found[1]

    def put(self, key: str, version: int, output: CachedOutput) -> None:
        """Remember `output` as read at `version` (read the version before reading the disk)."""
        if len(output.body) > self.size_limit // MEMORY_ENTRY_SHARE:
            return
        found = self._entries.pop(key, None)
        if found is not None:
            self._size -= _cost(key, found[1])
        self._entries[key] = (version, output)
        self._size += _cost(key, output)
        while self._size > self.size_limit:
            evicted_key, (_, evicted) = self._entries.popitem(last=False)
            self._size -= _cost(evicted_key, evicted)
