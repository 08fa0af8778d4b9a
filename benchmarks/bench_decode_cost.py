"""What decoding an original costs by format and content, against the weights the cost budget prices each
decode at (`edge/transform/cost.py`, `DECODE_WEIGHTS`): a URL that shrinks a large original to a few
pixels costs almost nothing else, and ten image layers are ten decodes.

    .venv/bin/python -m benchmarks.bench_decode_cost [--side 4000] [--rounds 2]

Each original is made in memory (noise, the slowest content, and a photo-like image), encoded in each
format, then decoded to 10 px as a render does (`thumbnail_buffer`: the largest shrink on load), one
libvips thread; figures are the least CPU time of the rounds per source megapixel, in units of 20 ms.
"""

from __future__ import annotations

import argparse
import time

import pyvips

from edge.transform.cost import DECODE_WEIGHT, DECODE_WEIGHTS, PROGRESSIVE_DECODE_WEIGHT
from tests.imagecorpus import _photo

UNIT_SECONDS = 0.020


def encodings(image: pyvips.Image) -> dict[str, tuple[bytes, float]]:
    """Each format's file of `image`, with the weight the budget prices its decode at."""
    return {
        "JPEG": (image.jpegsave_buffer(Q=90), DECODE_WEIGHTS["jpegload_source"]),
        "progressive JPEG": (image.jpegsave_buffer(Q=90, interlace=True), PROGRESSIVE_DECODE_WEIGHT),
        "PNG": (image.pngsave_buffer(compression=1), DECODE_WEIGHT),
        "WebP": (image.webpsave_buffer(Q=80), DECODE_WEIGHTS["webpload_source"]),
        "lossless WebP": (image.webpsave_buffer(lossless=True, effort=0), DECODE_WEIGHTS["webpload_source"]),
        "TIFF": (image.tiffsave_buffer(compression="deflate"), DECODE_WEIGHT),
        "GIF": (image.gifsave_buffer(effort=1), DECODE_WEIGHT),
    }


def units(body: bytes, megapixels: float, rounds: int) -> float:
    spent = []
    for _ in range(rounds):
        started = time.process_time()
        pyvips.Image.thumbnail_buffer(body, 10).copy_memory()
        spent.append(time.process_time() - started)
    return min(spent) / megapixels / UNIT_SECONDS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=2)
    arguments = parser.parse_args()
    side = arguments.side
    pyvips.cache_set_max(0)
    pyvips.concurrency_set(1)
    bands = [pyvips.Image.gaussnoise(side, side, sigma=60, mean=128, seed=seed) for seed in (1, 2, 3)]
    contents = {"noise": bands[0].bandjoin(bands[1:]), "photo-like": _photo(side, side)}
    megapixels = side * side / 1e6
    print(f"{side}x{side}, decoded to 10 px, one libvips thread; units of {UNIT_SECONDS * 1000:.0f} ms a megapixel")
    print("| format | noise | photo-like | weight (cost.py) | noise / weight |")
    print("| --- | --- | --- | --- | --- |")
    made = {name: encodings(image.cast("uchar").copy(interpretation="srgb").copy_memory())
            for name, image in contents.items()}
    for fmt, (_, weight) in made["noise"].items():
        noise, photo = (units(made[name][fmt][0], megapixels, arguments.rounds) for name in contents)
        print(f"| {fmt} | {noise:.2f} | {photo:.2f} | {weight:g} | {noise / weight:.2f} |")


if __name__ == "__main__":
    main()
