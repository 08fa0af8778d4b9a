"""Where one cold miss's latency goes, step by step.

    .venv/bin/python -m benchmarks.bench_cold_steps [--misses N]

A node in this process (one worker, one local origin, access log off) answers cold misses one at a time, each a new
original, of 1, 12 and 24 MP JPEGs to 300 px JPEG (compare.py's cold-miss sources). The pipeline's
steps are timed from outside, by wrapping their coroutines: the lookups (`Caches.output_and`: the
output's and, in the same thread, the original's), the original's fetch (`OriginalSource.current`), the render in its pool thread (`Renderer.render`) and the whole
`Pipeline.serve`; `render_image` is also called directly, in this thread, on the same file's bytes. What the
client waits beyond `serve` is HTTP (Tornado's server and client); what `serve` spends beyond its steps
is the single flight, the plan and the hand-offs between threads. Medians, milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import tempfile
import time
from pathlib import Path

from benchmarks.common import median
from benchmarks.compare import unique_jpeg
from edge.cache.caches import Caches
from edge.config import Defaults, Limits
from edge.originals import OriginalSource
from edge.pipeline import Pipeline
from edge.testing import write_config
from edge.transform.options import parse_transformation
from edge.transform.render import Renderer, render_image
from tests.imagecorpus import photo_jpeg
from tests.nodes import local_config, start_node

SOURCES = {"1 MP": (1224, 816), "12 MP": (4000, 3000), "24 MP": (6000, 4000)}
WIDTH = 300
STEPS = {"lookup": (Caches, "output_and"), "original": (OriginalSource, "current"),
         "render (pool)": (Renderer, "render"), "serve": (Pipeline, "serve")}


def timed(samples: dict[str, list[float]]) -> None:
    """Wrap each step's coroutine so that every call adds its milliseconds to `samples[step]`."""
    for step, (cls, name) in STEPS.items():
        original = getattr(cls, name)

        @functools.wraps(original)
        async def wrapper(*args, _original=original, _step=step, **kwargs):
            started = time.perf_counter()
            try:
                return await _original(*args, **kwargs)
            finally:
                samples.setdefault(_step, []).append((time.perf_counter() - started) * 1e3)
        setattr(cls, name, wrapper)


async def measure(misses: int, folder: Path) -> dict[str, dict[str, float]]:
    corpus = folder / "originals"
    corpus.mkdir()
    node = await start_node(write_config(folder, local_config(corpus, before="[server]\naccess_log = false\n")))
    transformation = parse_transformation(f"w-{WIDTH}")
    results: dict[str, dict[str, float]] = {}
    try:
        for label, (width, height) in SOURCES.items():
            body = photo_jpeg(width, height)
            samples: dict[str, list[float]] = {}
            timed(samples)
            for number in range(misses + 1):  # the first warms the path up and is not counted
                name = f"{label.replace(' ', '')}-{number}.jpg"
                (corpus / name).write_bytes(unique_jpeg(body, name))
                started = time.perf_counter()
                response = await node.client.fetch(f"{node.url}/tr:w-{WIDTH}/{name}")
                client = (time.perf_counter() - started) * 1e3
                if response.code != 200 or response.headers.get("X-Cache") != "MISS":
                    raise RuntimeError(f"{name}: {response.code} {response.headers.get('X-Cache')}")
                await node.node.settle()  # the store after the response is not the next miss's cost
                fresh = (corpus / name).read_bytes()  # the bytes the node rendered, read anew as it read them
                started = time.perf_counter()
                render_image(fresh, transformation, "jpg", Defaults(), Limits())
                if number:
                    samples.setdefault("client", []).append(client)
                    samples.setdefault("render_image, direct", []).append((time.perf_counter() - started) * 1e3)
                else:
                    samples.clear()
            for step, (cls, name) in STEPS.items():  # unwrap: the next source wraps afresh
                setattr(cls, name, getattr(cls, name).__wrapped__)
            results[label] = {step: median(values) for step, values in samples.items()}
    finally:
        await node.stop()
    return results


def table(results: dict[str, dict[str, float]]) -> str:
    columns = ["client", "serve", "lookup", "original", "render (pool)", "render_image, direct"]
    lines = ["| cold miss → 300 px JPEG | " + " | ".join(columns) + " | HTTP (client − serve) | flight, plan, "
             "hand-offs (serve − steps) |", "| --- |" + " --- |" * (len(columns) + 2)]
    for label, row in results.items():
        http = row["client"] - row["serve"]
        rest = row["serve"] - row["lookup"] - row["original"] - row["render (pool)"]
        lines.append(f"| {label} | " + " | ".join(f"{row[c]:.2f}" for c in columns) + f" | {http:.2f} | {rest:.2f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--misses", type=int, default=15, help="cold misses per source (default 15)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edge-cold-steps-") as tmp:
        results = asyncio.run(measure(args.misses, Path(tmp)))
    print("milliseconds, medians:\n" + table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
