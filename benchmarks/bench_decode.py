"""The JPEG decode alone, libvips against Pillow, at every shrink-on-load scale, with the same decoder
settings.

    .venv/bin/python -m benchmarks.bench_decode [--rounds 3]

thumbor's miss costs less CPU than the node's render alone, and most of the difference is the decode
(`benchmarks/engines.py`). This asks whether that is a setting or the decoder: both libraries decode
the same photo (2000×1333 and 4000×3000, compare.py's miss sources) at 1/1, 1/2, 1/4 and 1/8 into
memory, in this process, one libvips thread. Pillow's `draft` only sets the scale: its decoder keeps
libjpeg's defaults (the accurate integer IDCT, fancy upsampling), as libvips does; Pillow with its
decoder's draft flag on (the fast IDCT, no fancy upsampling) is shown too. Pillow comes with the
`bench` extra (matplotlib needs it). CPU milliseconds per decode, the least of `--rounds` medians.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import pyvips
from PIL import Image, features

from benchmarks.common import median
from benchmarks.decoders import libvips_decode, pillow_decode
from tests.imagecorpus import photo_jpeg

SOURCES = {"2000×1333": (2000, 1333), "4000×3000": (4000, 3000)}
#: decodes per median: enough for a stable CPU reading, bounded
ITERATIONS = {"2000×1333": 30, "4000×3000": 10}
SCALES = (1, 2, 4, 8)


def cpu_ms(decode: Callable[[], None], iterations: int) -> float:
    decode()  # warm: libraries loaded, buffers sized
    samples = []
    for _ in range(iterations):
        started = time.process_time()
        decode()
        samples.append((time.process_time() - started) * 1e3)
    return median(samples)


def main(rounds: int) -> None:
    pyvips.cache_set_max(0)
    pyvips.concurrency_set(1)  # as the node runs it
    print(f"libvips {pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}; Pillow {Image.__version__}"
          f" (libjpeg-turbo {features.version('libjpeg_turbo')}); CPU ms per decode, least of {rounds} medians")
    print("| source | scale | libvips | Pillow | Pillow, draft flag on | libvips ÷ Pillow |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, size in SOURCES.items():
        body = photo_jpeg(*size)
        for scale in SCALES:
            decoders = {"libvips": lambda: libvips_decode(body, scale), "Pillow": lambda: pillow_decode(body, scale),
                        "Pillow fast": lambda: pillow_decode(body, scale, fast=True)}
            costs: dict[str, list[float]] = {name: [] for name in decoders}
            for index in range(rounds):
                for name in decoders if index % 2 == 0 else reversed(decoders):
                    costs[name].append(cpu_ms(decoders[name], ITERATIONS[label]))
            least = {name: min(values) for name, values in costs.items()}
            print(f"| {label} | 1/{scale} | {least['libvips']:.2f} | {least['Pillow']:.2f} | {least['Pillow fast']:.2f}"
                  f" | {least['libvips'] / least['Pillow']:.2f} |", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    main(parser.parse_args().rounds)
