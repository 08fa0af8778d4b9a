"""What an AVIF encode costs by content and quality, against the weights the cost budget prices it at
(edge/transform/cost.py): libaom never looks at libvips' kill flag, so the weight must bound the
slowest content, not the typical photo.

    .venv/bin/python -m benchmarks.bench_avif_cost [--size 1732x1155] [--rounds 2]

Each image is made in memory at `--size` (the cost per megapixel is the same at 2 and 12 MP), then
encoded as AVIF at `[defaults] avif_effort` 2 with one libvips thread; figures are the least CPU time of
the rounds, in units of 20 ms a megapixel (the budget's unit), beside JPEG q-75's bits per pixel (how
much detail the content holds). The last row is the weight; a ratio over 1 would be an encode the
budget underprices.
"""

from __future__ import annotations

import argparse
import time

import pyvips

from edge.transform.cost import AVIF_FINE_QUALITY, AVIF_FINE_WEIGHT, AVIF_LOSSLESS_WEIGHT, AVIF_WEIGHT
from tests.imagecorpus import _photo
from tests.photos import SAMPLE, upright_photo

#: AVIF's own qualities (libvips' `Q`: a URL's q-80 is 56, its q-90 78; `encode.avif_quality`)
QUALITIES = (50, 56, 78, 80, 85, 90, 95, 100)
UNIT_SECONDS = 0.020


def _noise(width: int, height: int, sigma: float, seed: int) -> pyvips.Image:
    bands = [pyvips.Image.gaussnoise(width, height, sigma=sigma, mean=0, seed=seed + band) for band in range(3)]
    return bands[0].bandjoin(bands[1:])


def _srgb(image: pyvips.Image) -> pyvips.Image:
    return image.cast("uchar").copy(interpretation="srgb").copy_memory()


def images(width: int, height: int) -> dict[str, pyvips.Image]:
    sample = pyvips.Image.new_from_file(str(SAMPLE))
    upscaled = sample.resize(width / sample.width, vscale=height / sample.height, kernel="linear")
    grey = pyvips.Image.black(width, height, bands=3) + 128
    return {
        "photo (tests/photos.py)": _srgb(upright_photo(width, height)),
        "photo-like (imagecorpus)": _srgb(_photo(width, height)),
        "upscaled photo": _srgb(upscaled),
        "grainy photo (σ 16)": _srgb(upscaled + _noise(width, height, 16, 5)),
        "very grainy photo (σ 32)": _srgb(upscaled + _noise(width, height, 32, 5)),
        "grainy photo, overexposed": _srgb(upscaled + 128 + _noise(width, height, 16, 5)),
        "noise (σ 40)": _srgb(grey + _noise(width, height, 40, 1)),
        "noise (σ 80)": _srgb(grey + _noise(width, height, 80, 1)),
        "blurred noise": _srgb((grey + _noise(width, height, 40, 1)).gaussblur(1)),
    }


def units(image: pyvips.Image, rounds: int, **options) -> float:
    spent = []
    for _ in range(rounds):
        started = time.process_time()
        image.heifsave_buffer(compression="av1", effort=2, **options)
        spent.append(time.process_time() - started)
    return min(spent) / (image.width * image.height / 1e6) / UNIT_SECONDS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1732x1155")
    parser.add_argument("--rounds", type=int, default=2)
    arguments = parser.parse_args()
    width, height = (int(side) for side in arguments.size.split("x"))
    pyvips.cache_set_max(0)
    pyvips.concurrency_set(1)
    print(f"{width}x{height}, avif_effort 2, one libvips thread; units of {UNIT_SECONDS * 1000:.0f} ms a megapixel")
    print("| content | JPEG q-75 bpp | " + " | ".join(f"AVIF {q}" for q in QUALITIES) + " | lossless |")
    print("| --- | --- | " + " | ".join("---" for _ in QUALITIES) + " | --- |")
    worst = {q: 0.0 for q in QUALITIES} | {"lossless": 0.0}
    for name, image in images(width, height).items():
        bpp = len(image.jpegsave_buffer(Q=75)) * 8 / (width * height)
        row = {q: units(image, arguments.rounds, Q=q) for q in QUALITIES}
        row["lossless"] = units(image, arguments.rounds, lossless=True)
        worst = {key: max(worst[key], value) for key, value in row.items()}
        print(f"| {name} | {bpp:.2f} | " + " | ".join(f"{value:.1f}" for value in row.values()) + " |")
    weights = {q: AVIF_FINE_WEIGHT if q > AVIF_FINE_QUALITY else AVIF_WEIGHT for q in QUALITIES}
    weights["lossless"] = AVIF_LOSSLESS_WEIGHT
    print("| weight (cost.py) | | " + " | ".join(f"{weights[key]:g}" for key in worst) + " |")
    print("| most measured / weight | | " + " | ".join(f"{worst[key] / weights[key]:.2f}" for key in worst) + " |")


if __name__ == "__main__":
    main()
