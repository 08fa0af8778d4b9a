"""The node's cache, by concern:

- `keys`: how entries are named (endpoint, path, forwarded Host, transformation, format);
- `entries`: what is stored (outputs, originals, versions of an original);
- `tiers`: the disk tiers (`outputs`, `originals`, `not_found`), blocking, LRU within budgets,
  failures reported rather than raised;
- `memory`: the per-process memory tier in front of the outputs, owned by the IOLoop thread;
- `versions`: the counters shared by all workers that keep memory copies current;
- `purges`: the purges of the last minutes, so that work begun before one stores nothing it covers;
- `health`: failures counted, logged once, reported by `/_edge/ready`;
- `caches`: all of it together, with the async methods the request path awaits.
"""

from .caches import Caches, checkpoint_left_logs
from .entries import CachedOutput, SourceInfo, StoredOriginal, UnreadOutput, hashes_to, header_value, strong_etag
from .health import CacheHealth
from .keys import original_key, output_key, path_key, path_prefix_key
from .tiers import MAX_ENTRY_SHARE, BeforeReading

__all__ = ["MAX_ENTRY_SHARE", "BeforeReading", "CacheHealth", "CachedOutput", "Caches", "SourceInfo",
           "checkpoint_left_logs", "StoredOriginal", "UnreadOutput", "hashes_to", "header_value", "original_key", "output_key", "path_key",
           "path_prefix_key", "strong_etag"]
