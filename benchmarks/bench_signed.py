"""Signed cache hits: what verifying `ik-s` (and `ik-t`) adds to a cache hit.

One node, its default endpoint with a `private_key` (not `signed_only`, so the unsigned URL is served
too); the same cached output asked for unsigned, signed, and signed with an expiry, by the same wrk
load in alternating rounds. The baseline is the unsigned hit on the same node in the same run (with a
query string of its own, as a signed URL has); the figures that matter are ratios of medians, CPU per
request the steadier one on a shared machine. Goal: a signed hit at ≥ 0.95 of the unsigned hit's.

    .venv/bin/python -m benchmarks.bench_signed [--rounds 5] [--seconds 3]
"""

from __future__ import annotations

import tempfile
import time
import timeit
import urllib.request
from pathlib import Path

from benchmarks.common import LoadResult, load_arguments, print_load_ratios, start_node_process, wrk_load
from edge import signing
from edge.config import load_config
from edge.pluginmanager import load_plugins
from edge.routing import Router
from tests.nodes import local_config, write_config

KEY = "bench-signing-key"
UNSIGNED = "tr:w-300/astronaut.jpg"
BASELINE = "unsigned, ?v=1"
CONFIG = local_config(after=f'private_key = "{KEY}"')


def route_costs(config_dir: Path) -> dict[str, float]:
    """µs per `Router.route` call (best of 7 repeats, in this process): the check alone, without HTTP."""
    config_dir.mkdir()
    config = load_config(write_config(config_dir, CONFIG), load_plugins())
    router = Router(config.endpoints)
    uris = {BASELINE: f"/{UNSIGNED}?v=1", "signed": "/" + signing.sign(KEY, UNSIGNED),
            "signed, expiring": "/" + signing.sign(KEY, UNSIGNED, int(time.time()) + 3600)}
    return {name: min(timeit.repeat(lambda: router.route("127.0.0.1", uri), number=20_000, repeat=7)) / 20_000 * 1e6
            for name, uri in uris.items()}


def main() -> None:
    args = load_arguments(__doc__)

    with tempfile.TemporaryDirectory() as tmp:
        node = start_node_process(Path(tmp), CONFIG)
        try:
            targets = {
                "unsigned": f"{node.url}/{UNSIGNED}",
                # Tornado decodes a query string only when there is one: the fair baseline for a signed URL
                BASELINE: f"{node.url}/{UNSIGNED}?v=1",
                "signed": f"{node.url}/{signing.sign(KEY, UNSIGNED)}",
                "signed, expiring": f"{node.url}/{signing.sign(KEY, UNSIGNED, int(time.time()) + 3600)}",
            }
            for url in targets.values():  # the first is the miss: then all are hits on one entry
                urllib.request.urlopen(url, timeout=30).read()
            results: dict[str, list[LoadResult]] = {name: [] for name in targets}
            for _ in range(args.rounds):
                for name, url in targets.items():
                    results[name].append(wrk_load(url, node.process.pid, args.seconds))
        finally:
            node.stop()

        costs = route_costs(Path(tmp) / "router")

    print(f"signed cache hits, {args.rounds} rounds of {args.seconds}s, medians:")
    print_load_ratios(results, BASELINE)
    print("Router.route, µs per call (best of 7):")
    for name, cost in costs.items():
        print(f"  {name:18s} {cost:6.1f} µs (+{cost - costs[BASELINE]:.1f})")


if __name__ == "__main__":
    main()
