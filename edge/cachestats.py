"""`edge cache stats`: what the cache folder holds, read offline and read-only (each tier's SQLite index
is opened read-only, beside a running node or not; nothing is created, no data changed — a reader
of a write-ahead log only marks SQLite's shared-memory index, the -shm file).

Per tier: entries, bytes on disk (as the node counts them: stored files plus the index), budget,
the oldest entry and the least recently used one; for the outputs tier, the originals with the most
outputs (transformations × negotiated formats), which is where a purge or a new URL scheme costs most.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .cache.caches import NOT_FOUND_BUDGET, TIER_FOLDERS
from .cache.keys import original_of
from .config import Config
from .errors import one_line


@dataclass
class TierStats:
    tier: str
    entries: int
    bytes: int
    budget: int
    oldest_stored: float | None
    least_recently_used: float | None


def _open(folder: Path) -> sqlite3.Connection | None:
    database = folder / "cache.db"
    if not database.exists():
        return None
    # With the node running, its write-ahead log exists and a read-only connection shares it. Without
    # one, `mode=ro` would still create the -wal and -shm files: `immutable` reads the file as it is.
    running = database.with_name("cache.db-wal").exists()
    return sqlite3.connect(f"{database.resolve().as_uri()}?{'mode=ro' if running else 'immutable=1'}",
                           uri=True, timeout=10)


def tier_stats(name: str, folder: Path, budget: int) -> TierStats:
    connection = _open(folder)
    if connection is None:
        return TierStats(name, 0, 0, budget, None, None)
    try:
        entries, stored, oldest, used = connection.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0), MIN(store_time), MIN(access_time) FROM Cache").fetchone()
        (pages,), (page_size,) = (connection.execute(f"PRAGMA {p}").fetchone() for p in ("page_count", "page_size"))
    finally:
        connection.close()
    return TierStats(name, entries, stored + pages * page_size, budget, oldest, used)


def top_originals(folder: Path, count: int) -> list[tuple[str, str, str | None, int]]:
    """(endpoint id, path, forwarded host or None, number of outputs) for the `count` originals with
    the most outputs."""
    connection = _open(folder)
    if connection is None:
        return []
    outputs: Counter[str] = Counter()
    try:
        for (key,) in connection.execute("SELECT key FROM Cache WHERE raw = 1"):
            if isinstance(key, str) and (original := original_of(key)) is not None:  # else an earlier release's
                outputs[original] += 1
    finally:
        connection.close()
    found = []
    for original, n in outputs.most_common(count):
        endpoint, path, *host = original.split("\0", 2)  # endpoint \0 path [\0 forwarded host]
        found.append((endpoint, path, host[0] if host else None, n))
    return found


def stats(config: Config, top: int) -> dict[str, Any]:
    budgets = {"output": config.cache.output_size, "original": config.cache.original_size,
               "not_found": NOT_FOUND_BUDGET}
    directory = config.cache.dir
    return {
        "dir": str(directory),
        "tiers": [asdict(tier_stats(name, directory / folder, budgets[name])) for name, folder in TIER_FOLDERS.items()],
        "top_originals": [{"endpoint": e, "path": p, "host": h, "outputs": n}
                          for e, p, h, n in top_originals(directory / TIER_FOLDERS["output"], top)],
    }


def run(config: Config, top: int, as_json: bool) -> int:
    if top < 0:
        print("edge: --top: expected 0 or more", file=sys.stderr)
        return 2
    if not config.cache.dir.is_dir():
        print(f"edge: cache folder {config.cache.dir} does not exist", file=sys.stderr)
        return 1
    try:
        found = stats(config, top)
    except sqlite3.Error as exc:
        print(f"edge: cannot read the cache in {config.cache.dir}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # another user's folder (the service's, mode 0700)
        print(f"edge: cannot read the cache in {config.cache.dir}: {exc.strerror}", file=sys.stderr)
        return 1
    print(json.dumps(found, indent=2) if as_json else _text(found))
    return 0


def _text(found: dict[str, Any]) -> str:
    now = time.time()
    lines = [f"cache folder {found['dir']}", "",
             f"{'tier':<10} {'entries':>10} {'bytes':>14} {'budget':>14} {'used':>6}  oldest      least recently used"]
    for t in found["tiers"]:
        used = f"{100 * t['bytes'] / t['budget']:.0f}%" if t["budget"] else "-"
        lines.append(f"{t['tier']:<10} {t['entries']:>10} {t['bytes']:>14} {t['budget']:>14} {used:>6}  "
                     f"{_age(now, t['oldest_stored']):<11} {_age(now, t['least_recently_used'])}")
    if found["top_originals"]:
        lines += ["", "originals with the most outputs:"]
        # paths and hosts are the clients' (an ESC in a URL would drive the operator's terminal): escaped
        lines += [f"{o['outputs']:>8}  /{o['endpoint'] + '/' if o['endpoint'] else ''}{one_line(o['path'])}"
                  + (f"  (Host {one_line(o['host'])})" if o["host"] else "") for o in found["top_originals"]]
    return "\n".join(lines)


def _age(now: float, then: float | None) -> str:
    if then is None:
        return "-"
    seconds = max(0.0, now - then)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit} ago"
    return f"{seconds:.0f}s ago"
