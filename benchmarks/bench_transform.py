"""Transformation throughput: the node's Renderer against a bare pyvips loop, same run, same threads.

    .venv/bin/python -m benchmarks.bench_transform [--rounds 5] [--batch 24]

For JPEG, WebP and AVIF output at 300 px wide from a 3000x2000 photo-like JPEG, each round renders a
batch of images through `Renderer.render` (the request path's code: header probe, limits, the step
pipeline, colour and metadata handling, the encoder, the bounded thread pool) and the same batch
with `thumbnail_buffer` + save on a plain thread pool of the same size, with the same encoder
options. Rounds alternate between the two (and which goes first); the figure is the median throughput of the rounds, and
the ratio node / bare (goal: at least 0.85).

The `overlay` case draws the 256 px sample logo (PNG with transparency), shrunk to 60 px, 10 px from
the bottom-right corner of the 300 px JPEG (`l-image,i-logo.png,w-60,lx-N10,ly-N10,l-end`); bare pyvips
does the same with two `thumbnail_buffer`s and a `composite2`.

The `heic` case renders the same photo stored as a HEIC (HEVC by x265 through pillow-heif, of the test
extra, at quality 80: skipped without it) to a 300 px JPEG; bare is pi-heif's decode, the pixels wrapped
as a libvips image in place, `thumbnail_image` and the save. Its node figure against `JPEG→jpg`'s is what
a phone's photo costs a miss beyond a JPEG's.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pyvips

from benchmarks.baselines import bare_save, encoder_options
from benchmarks.common import median
from edge.config import Defaults, Limits
from edge.transform.options import parse_transformation
from edge.transform.render import Renderer
from tests.imagecorpus import photo_jpeg
from tests.nodes import SAMPLES

WIDTH = 300
GOAL = 0.85
LOGO, LOGO_WIDTH, MARGIN = "logo.png", 60, 10
CASES = ("jpg", "webp", "avif", "overlay", "heic")
OVERLAY = f"l-image,i-{LOGO},w-{LOGO_WIDTH},lx-N{MARGIN},ly-N{MARGIN},l-end"


def bare_render(body: bytes, case: str, options: SimpleNamespace, logo: bytes) -> bytes:
    if case == "heic":
        import pi_heif
        decoded = pi_heif.open_heif(body)
        assert decoded.stride == decoded.size[0] * 3
        image = pyvips.Image.new_from_memory(decoded.data, *decoded.size, 3, "uchar")
        return bare_save(image.thumbnail_image(WIDTH), "jpg", options)
    image = pyvips.Image.thumbnail_buffer(body, WIDTH)
    if case != "overlay":
        return bare_save(image, case, options)
    layer = pyvips.Image.thumbnail_buffer(logo, LOGO_WIDTH)
    composite = image.composite2(layer, "over", x=image.width - layer.width - MARGIN,
                                 y=image.height - layer.height - MARGIN)
    return bare_save(composite.extract_band(0, n=3), "jpg", options)


async def node_round(renderer: Renderer, body: bytes, case: str, batch: int, logo: bytes) -> float:
    fmt = case if case in ("webp", "avif") else "jpg"
    layers = f",{OVERLAY}" if case == "overlay" else ""
    transformation = parse_transformation(f"w-{WIDTH}{layers},f-{fmt}")
    overlays = {LOGO: logo} if case == "overlay" else None
    started = time.perf_counter()
    results = await asyncio.gather(*(renderer.render(body, transformation, fmt, overlays) for _ in range(batch)))
    elapsed = time.perf_counter() - started
    assert all(r.width == WIDTH and r.format == fmt for r in results)
    return batch / elapsed


def bare_round(pool: ThreadPoolExecutor, body: bytes, case: str, batch: int, options: SimpleNamespace,
               logo: bytes) -> float:
    started = time.perf_counter()
    results = list(pool.map(lambda _: bare_render(body, case, options, logo), range(batch)))
    elapsed = time.perf_counter() - started
    assert all(results)
    return batch / elapsed


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--batch", type=int, default=24)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cases", nargs="+", default=CASES, choices=CASES)
    args = parser.parse_args()

    jpeg = photo_jpeg(3000, 2000)
    bodies = dict.fromkeys(args.cases, jpeg)
    if "heic" in bodies:
        bodies["heic"] = heic_of(jpeg)
        if bodies["heic"] is None:
            print("heic: skipped, pillow-heif (the test extra) makes the HEIC")
            del bodies["heic"]
    logo = (SAMPLES / "logo-transparent.png").read_bytes()
    defaults = Defaults()
    options = encoder_options(defaults)
    renderer = Renderer(defaults, Limits(), threads=args.threads, queue=args.batch)
    pool = ThreadPoolExecutor(max_workers=args.threads)
    print(f"source 3000x2000 JPEG ({len(jpeg) // 1024} KB) -> {WIDTH} px wide; {args.threads} threads, "
          f"{args.rounds} rounds of {args.batch}; libvips {pyvips.version(0)}.{pyvips.version(1)}")
    print(f"{'output':13} {'node img/s':>11} {'bare img/s':>11} {'ratio':>6}")
    worst = float("inf")
    try:
        rates = {}
        for case, body in bodies.items():
            await node_round(renderer, body, case, args.threads, logo)  # warm-up: libvips' first calls load codecs
            bare_round(pool, body, case, args.threads, options, logo)
            node, bare = [], []
            for round_number in range(args.rounds):  # alternate which goes first: drifts hit both
                if round_number % 2:
                    bare.append(bare_round(pool, body, case, args.batch, options, logo))
                node.append(await node_round(renderer, body, case, args.batch, logo))
                if not round_number % 2:
                    bare.append(bare_round(pool, body, case, args.batch, options, logo))
            ratio = median(node) / median(bare)
            worst = min(worst, ratio)
            rates[case] = median(node)
            label = "HEIC→jpg" if case == "heic" else f"JPEG→{case}"
            print(f"{label:13} {median(node):11.1f} {median(bare):11.1f} {ratio:6.2f}")
        if {"heic", "jpg"} <= rates.keys():
            size = len(bodies["heic"]) // 1024
            print(f"a HEIC miss costs {rates['jpg'] / rates['heic']:.1f} × a JPEG's ({size} KB)")
    finally:
        renderer.shutdown()
        pool.shutdown()
    print(f"lowest ratio {worst:.2f} (goal ≥ {GOAL})")
    return 0 if worst >= GOAL else 1


def heic_of(jpeg: bytes) -> bytes | None:
    try:
        import pillow_heif
    except ImportError:
        return None
    image = pyvips.Image.new_from_buffer(jpeg, "")
    out = io.BytesIO()
    pillow_heif.from_bytes("RGB", (image.width, image.height), image.write_to_memory()).save(out, quality=80)
    return out.getvalue()


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
