"""Two versions of the node side by side: miss throughput and CPU per miss under load, or single cold
misses, A against B.

    .venv/bin/python -m benchmarks.side_by_side B [A] [--rounds 6] [--misses 240] [--source 2000x1333]
    .venv/bin/python -m benchmarks.side_by_side B [A] --cold 30 [--gap 1.0] [--source 1224x816]

A and B are git revisions of this repository (`.` is the working tree, A's default). Alternating runs
of one node cannot resolve a change of less than ~10 % on a shared 2-core machine: its speed drifts by
more than that between runs (one node alone: 88–130 img/s from run to run). Loaded at once, both
nodes see the same drift, so their ratio can: each round writes `--misses` new originals (the same
photo, other bytes: `compare.unique_jpeg`) into each node's folder and asks both for them at 300 px
JPEG at the same time, 4 at a time each, who starts first alternating. Each node runs 2 workers from
its own checkout (`git archive`; its `plugins/` as `edge_builtin_origins`) with this Python and its
installed dependencies. Per round and as medians: misses a second, and CPU per miss (the node's
process tree, read from /proc, including its stores after the answers); and in how many rounds B
took less CPU a miss than A.
On a loaded machine B has come out ahead of the same code as A (less CPU in 7 of 10 rounds, twice, by up
to 0.4 ms a miss): a change of a few per cent is judged run both ways, B and A.

`--cold N`: instead, N single cold misses on each node, one at a time, a new connection each, `--gap`
seconds apart (the machine idle in between, as a node between two requests often is: every hand-off
between threads then wakes a sleeping one), A and B alternating; the client's time, medians and
quartiles, and in how many of the N pairs B answered first.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pyvips

from benchmarks.common import median
from benchmarks.compare import fetch_all, tree_cpu, unique_jpeg
from edge.testing import NodeProcess, write_config
from tests.imagecorpus import photo_jpeg
from tests.nodes import local_config

ROOT = Path(__file__).resolve().parent.parent
WIDTH = 300
CONCURRENCY = 4
#: after a round, until a node's stores (after its answers) are done: counted in its CPU
SETTLE_SECONDS = 1.5


def checkout(revision: str, into: Path) -> Path:
    """The repository at `revision` (`.`: the working tree), importable as `edge` and
    `edge_builtin_origins` from the returned folder."""
    tree = ROOT
    if revision != ".":
        tree = into / "tree"
        tree.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    path = into / "path"
    path.mkdir()
    (path / "edge").symlink_to(tree / "edge")
    (path / "edge_builtin_origins").symlink_to(tree / "plugins")
    return path


def main(b: str, a: str, rounds: int, misses: int, source: tuple[int, int], cold: int, gap: float) -> None:
    photo = photo_jpeg(*source)
    with tempfile.TemporaryDirectory() as work:
        nodes: dict[str, tuple[NodeProcess, Path]] = {}
        try:
            for name, revision in (("A", a), ("B", b)):
                folder = Path(work) / name
                folder.mkdir()
                corpus = folder / "originals"
                corpus.mkdir()
                # `python -m edge` imports from its working folder first (before PYTHONPATH and the install)
                node = NodeProcess(write_config(folder, local_config(corpus)), "--workers", "2",
                                   cwd=checkout(revision, folder), stdout=subprocess.DEVNULL)
                nodes[name] = (node, corpus)
            for name, (node, corpus) in nodes.items():  # warm: workers started, threads made
                paths = []
                for k in range(8):
                    (corpus / f"warm-{k}.jpg").write_bytes(unique_jpeg(photo, f"warm-{k}"))
                    paths.append(f"/tr:w-{WIDTH}/warm-{k}.jpg")
                fetch_all(node.url, paths, CONCURRENCY)
            if cold:
                return _cold(nodes, photo, cold, gap, f"A = {a}, B = {b}")
            results: dict[str, list[tuple[float, float]]] = {name: [] for name in nodes}
            print(f"A = {a}, B = {b}; {misses} new {source[0]}x{source[1]} JPEGs a round and node → {WIDTH} px JPEG, "
                  f"both at once, concurrency {CONCURRENCY} each")
            for number in range(rounds):
                results_now = _round(nodes, photo, number, misses)
                for name, result in results_now.items():
                    results[name].append(result)
                print(f"  round {number + 1}: " + ", ".join(
                    f"{name} {rate:.1f} img/s {cpu:.2f} ms" for name, (rate, cpu) in results_now.items()), flush=True)
        finally:
            for node, _ in nodes.values():
                node.stop()
    for name, values in results.items():
        rate, cpu = median([rate for rate, _ in values]), median([cpu for _, cpu in values])
        print(f"{name}: median {rate:.1f} img/s, {cpu:.2f} ms CPU a miss")
    lower = sum(b_cpu < a_cpu for (_, a_cpu), (_, b_cpu) in zip(results["A"], results["B"]))
    print(f"B took less CPU a miss than A in {lower} of {rounds} rounds")


def _cold(nodes: dict[str, tuple[NodeProcess, Path]], photo: bytes, count: int, gap: float, title: str) -> None:
    """`count` single cold misses on each node, alternating, `gap` seconds apart; the client's time."""
    times: dict[str, list[float]] = {name: [] for name in nodes}
    for number in range(count):
        for name in nodes if number % 2 == 0 else reversed(nodes):
            node, corpus = nodes[name]
            (corpus / f"cold-{number}.jpg").write_bytes(unique_jpeg(photo, f"cold-{name}-{number}"))
            time.sleep(gap)  # a bound, not a synchronisation: the machine idle between requests
            started = time.perf_counter()
            answers = fetch_all(node.url, [f"/tr:w-{WIDTH}/cold-{number}.jpg"], 1)
            times[name].append((time.perf_counter() - started) * 1e3)
            _check(name, answers)
    print(f"{title}; {count} single cold misses each, {len(photo) // 1000} kB JPEG → {WIDTH} px JPEG, {gap} s apart, "
          "a new connection each")
    for name, values in times.items():
        low, middle, high = statistics.quantiles(values, n=4)
        print(f"{name}: median {middle:.2f} ms, quartiles {low:.2f}-{high:.2f}")
    first = sum(b < a for a, b in zip(times["A"], times["B"]))
    print(f"B answered first in {first} of {count} pairs")


def _check(name: str, answers: list[tuple[int, str, bytes]]) -> None:
    """Every answer a 200 miss, the first one a JPEG of the asked width: a revision that answers fast
    but wrong must not look faster."""
    if any(status != 200 or cache != "MISS" for status, cache, _ in answers):
        raise RuntimeError(f"node {name}: an answer was not a 200 miss")
    first = pyvips.Image.new_from_buffer(answers[0][2], "")
    if first.width != WIDTH or first.get("vips-loader") != "jpegload_buffer":
        raise RuntimeError(f"node {name} answered a wrong image: {first.width} px, {first.get('vips-loader')}")


def _round(nodes: dict[str, tuple[NodeProcess, Path]], photo: bytes, number: int,
           misses: int) -> dict[str, tuple[float, float]]:
    """One round: both nodes asked for `misses` new originals at once; (img/s, CPU ms a miss) each."""
    paths: dict[str, list[str]] = {}
    for name, (_, corpus) in nodes.items():
        paths[name] = []
        for k in range(misses):
            (corpus / f"r{number}-{k}.jpg").write_bytes(unique_jpeg(photo, f"{name}-{number}-{k}"))
            paths[name].append(f"/tr:w-{WIDTH}/r{number}-{k}.jpg")
    started_cpu = {name: tree_cpu([node.process.pid]) for name, (node, _) in nodes.items()}
    rates: dict[str, float] = {}
    failures: list[str] = []

    def load(name: str) -> None:
        started = time.perf_counter()
        answers = fetch_all(nodes[name][0].url, paths[name], CONCURRENCY)
        rates[name] = misses / (time.perf_counter() - started)
        try:
            _check(name, answers)
        except RuntimeError as failure:
            failures.append(str(failure))

    order = list(nodes) if number % 2 == 0 else list(reversed(nodes))
    threads = [threading.Thread(target=load, args=(name,)) for name in order]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError("; ".join(failures))
    time.sleep(SETTLE_SECONDS)  # a bound, not a synchronisation: the stores' CPU is the node's too
    return {name: (rates[name], (tree_cpu([node.process.pid]) - started_cpu[name]) / misses * 1e3)
            for name, (node, _) in nodes.items()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("b", help="the git revision to measure (`.`: the working tree)")
    parser.add_argument("a", nargs="?", default=".", help="the git revision to measure it against (default: `.`)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--misses", type=int, default=240, help="new originals per node and round")
    parser.add_argument("--source", default="2000x1333", help="the originals' size, WIDTHxHEIGHT")
    parser.add_argument("--cold", type=int, default=0, help="single cold misses per node instead of rounds")
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between two cold misses")
    arguments = parser.parse_args()
    width, height = (int(side) for side in arguments.source.split("x"))
    main(arguments.b, arguments.a, arguments.rounds, arguments.misses, (width, height), arguments.cold, arguments.gap)
