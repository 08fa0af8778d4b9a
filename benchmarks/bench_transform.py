"""Transformation throughput: the node's Renderer against a bare pyvips loop, same run, same threads.

    .venv/bin/python -m benchmarks.bench_transform [--rounds 5] [--batch 24]

For JPEG, WebP and AVIF output at 300 px wide from a 3000x2000 photo-like JPEG, each round renders a
batch of images through `Renderer.render` (the request path's code: header probe, limits, the step
pipeline, colour and metadata handling, the encoder, the bounded thread pool) and the same batch
with `thumbnail_buffer` + save on a plain thread pool of the same size, with the same encoder
options. Rounds alternate between the two (and which goes first); the figure is the median throughput of the rounds, and
the ratio node / bare (goal: at least 0.85).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pyvips

from benchmarks.baselines import bare_save
from benchmarks.common import median
from edge.config import Defaults, Limits
from edge.transform.options import parse_transformation
from edge.transform.render import Renderer
from tests.imagecorpus import photo_jpeg

WIDTH = 300
GOAL = 0.85


def bare_render(body: bytes, fmt: str, defaults: Defaults) -> bytes:
    return bare_save(pyvips.Image.thumbnail_buffer(body, WIDTH), fmt, defaults)


async def node_round(renderer: Renderer, body: bytes, fmt: str, batch: int) -> float:
    transformation = parse_transformation(f"w-{WIDTH},f-{fmt}")
    started = time.perf_counter()
    results = await asyncio.gather(*(renderer.render(body, transformation, fmt) for _ in range(batch)))
    elapsed = time.perf_counter() - started
    assert all(r.width == WIDTH and r.format == fmt for r in results)
    return batch / elapsed


def bare_round(pool: ThreadPoolExecutor, body: bytes, fmt: str, batch: int, defaults: Defaults) -> float:
    started = time.perf_counter()
    results = list(pool.map(lambda _: bare_render(body, fmt, defaults), range(batch)))
    elapsed = time.perf_counter() - started
    assert all(results)
    return batch / elapsed


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--batch", type=int, default=24)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    body = photo_jpeg(3000, 2000)
    defaults = Defaults()
    renderer = Renderer(defaults, Limits(), threads=args.threads, queue=args.batch)
    pool = ThreadPoolExecutor(max_workers=args.threads)
    print(f"source 3000x2000 JPEG ({len(body) // 1024} KB) -> {WIDTH} px wide; {args.threads} threads, "
          f"{args.rounds} rounds of {args.batch}; libvips {pyvips.version(0)}.{pyvips.version(1)}")
    print(f"{'output':8} {'node img/s':>11} {'bare img/s':>11} {'ratio':>6}")
    worst = float("inf")
    try:
        for fmt in ("jpg", "webp", "avif"):
            await node_round(renderer, body, fmt, args.threads)  # warm-up: libvips' first calls load codecs
            bare_round(pool, body, fmt, args.threads, defaults)
            node, bare = [], []
            for round_number in range(args.rounds):  # alternate which goes first: drifts hit both
                if round_number % 2:
                    bare.append(bare_round(pool, body, fmt, args.batch, defaults))
                node.append(await node_round(renderer, body, fmt, args.batch))
                if not round_number % 2:
                    bare.append(bare_round(pool, body, fmt, args.batch, defaults))
            ratio = median(node) / median(bare)
            worst = min(worst, ratio)
            print(f"{'JPEG→' + fmt:8} {median(node):11.1f} {median(bare):11.1f} {ratio:6.2f}")
    finally:
        renderer.shutdown()
        pool.shutdown()
    print(f"lowest ratio {worst:.2f} (goal ≥ {GOAL})")
    return 0 if worst >= GOAL else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
