"""What reading out of order costs on a 12 MP photo: rotations and flips (decoded to memory first)
against the same output size made as a stream.

    .venv/bin/python -m benchmarks.bench_random_access [--rounds 5]

Each round renders a 4240x2832 JPEG in-process, one libvips thread, once per transformation, in
alternating order; figures are medians of the CPU time per render (steadier than wall time on a
shared machine), and the ratio to the streamed render of the same output size.
"""

from __future__ import annotations

import argparse
import time

from benchmarks.common import median
from edge.config import Defaults, Limits
from edge.transform.options import parse_transformation
from edge.transform.render import render_image
from tests.photos import SIZE, upright_photo

#: (transformation, the streamed transformation of the same output size it is compared with)
CASES = [
    ("rt-90", ""), ("rt-180", ""), ("fl-v", ""), ("fl-h", ""), ("rt-45", ""),
    ("w-1000,rt-90", "w-1000"), ("w-1000,fl-v", "w-1000"), ("t-true", ""), ("w-1000,h-1000,fo-auto", "w-1000,h-1000"),
]


def cpu_seconds(body: bytes, transformation: str) -> float:
    started = time.process_time()
    render_image(body, parse_transformation(transformation), "jpg", Defaults(), Limits())
    return time.process_time() - started


def main(rounds: int) -> None:
    body = upright_photo(*SIZE).jpegsave_buffer(Q=88, keep="none")
    names = sorted({name for case in CASES for name in case})
    times: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        for name in names if index % 2 == 0 else reversed(names):
            times[name].append(cpu_seconds(body, name))
    print(f"CPU per render, {SIZE[0]}x{SIZE[1]} JPEG ({len(body) / 1e6:.1f} MB) -> JPEG, {rounds} rounds:")
    for transformation, streamed in CASES:
        cost, baseline = median(times[transformation]), median(times[streamed])
        print(f"  {transformation:24} {cost * 1000:7.0f} ms   vs {streamed or '(none)':14} {baseline * 1000:7.0f} ms"
              f"   {cost / baseline:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    main(parser.parse_args().rounds)
