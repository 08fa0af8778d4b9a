"""What `[defaults] auto_format_smallest` costs: `f-auto` encoding AVIF, WebP and JPEG and keeping the
smallest, against plain `f-auto` (AVIF) for a browser accepting both, and the bytes it saves.

    .venv/bin/python -m benchmarks.bench_auto_smallest [--rounds 5]

Each round renders a 3000x2000 JPEG photo in-process, one libvips thread, to each output width with
both plans, in alternating order; figures are medians of the CPU time per render (steadier than wall
time on a shared machine) and of the output size.
"""

from __future__ import annotations

import argparse
import os
import time

from benchmarks.common import median
from edge.config import Defaults, Limits
from edge.transform.formats import plan_format
from edge.transform.options import parse_transformation
from edge.transform.render import render_image
from tests.photos import MEDIUM_SIZE, upright_photo

WIDTHS = (300, 1000)
ACCEPT = "image/avif,image/webp,*/*"


def render(body: bytes, width: int, smallest: bool) -> tuple[float, int, str]:
    transformation = parse_transformation(f"w-{width},f-auto")
    planned, _ = plan_format("auto", "photo.jpg", ACCEPT, smallest=smallest)
    started = time.process_time()
    rendered = render_image(body, transformation, planned, Defaults(), Limits())
    return time.process_time() - started, len(rendered.body), rendered.format


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    body = upright_photo(*MEDIUM_SIZE).jpegsave_buffer(Q=88, keep="none")
    print(f"load average {os.getloadavg()[0]:.2f}; {rounds} rounds; 3000x2000 JPEG; Accept: {ACCEPT}")
    print("| output | f-auto CPU | smallest CPU | ratio | f-auto bytes | smallest bytes (format) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for width in WIDTHS:
        runs: dict[bool, list[tuple[float, int, str]]] = {False: [], True: []}
        for index in range(rounds):
            for smallest in ((False, True) if index % 2 == 0 else (True, False)):
                runs[smallest].append(render(body, width, smallest))
        plain, smallest = (median([r[0] for r in runs[s]]) for s in (False, True))
        sizes = {s: median([r[1] for r in runs[s]]) for s in (False, True)}
        print(f"| w-{width} | {plain * 1000:.0f} ms | {smallest * 1000:.0f} ms | {smallest / plain:.2f} | "
              f"{sizes[False] / 1024:.1f} KB | {sizes[True] / 1024:.1f} KB ({runs[True][0][2]}) |")


if __name__ == "__main__":
    main()
