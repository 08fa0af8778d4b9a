"""What an alpha band costs against its price (`edge/transform/cost.py`: a render's steps weigh `ALPHA_WEIGHT`
times as much once the original's header shows one): the same URLs on a 12 MP photo as an RGB PNG and as an RGBA PNG
(the same pixels with an alpha ramp), both written as PNG.

    .venv/bin/python -m benchmarks.bench_alpha_cost [--rounds 3]

Each URL is rendered by `render_image` in this thread (one libvips thread), its least CPU time of the rounds divided
by its units as the budget counts them (the steps, times `ALPHA_WEIGHT` for the RGBA original, plus the PNG decode
and encode), in ms a unit. The RGBA rows should cost about what the RGB rows do a unit: a budget probe had found
upscales of an RGBA original at 1.3-1.8 times the CPU of the RGB photo's for the same price.
"""

from __future__ import annotations

import time

from benchmarks.common import render_arguments
from edge.config import Defaults, Limits
from edge.transform.cost import ALPHA_WEIGHT, DECODE_WEIGHT, encode_cost, transformation_cost
from edge.transform.options import parse_transformation
from edge.transform.render import render_image
from tests.imagecorpus import _photo, png_with_alpha

SOURCE = (4000, 3000)
URLS = ["w-300", "w-6000", "w-4000,bl-10", "e-sharpen", "rt-45", "e-contrast"]


def units(text: str, output: tuple[int, int], alpha: bool) -> float:
    """The budget's units of rendering `text` of a `SOURCE` PNG to a PNG of `output`."""
    steps = transformation_cost(parse_transformation(text).steps, SOURCE)
    encode = encode_cost("png", output, Defaults().quality, False, Defaults().avif_effort)
    return steps * (ALPHA_WEIGHT if alpha else 1) + encode + DECODE_WEIGHT * SOURCE[0] * SOURCE[1] / 1e6


def main() -> None:
    arguments = render_arguments(__doc__)
    sources = {"RGB": _photo(*SOURCE).pngsave_buffer(keep="none"), "RGBA": png_with_alpha(*SOURCE)}
    limits = Limits(max_cost=10**6)
    print(f"{SOURCE[0]}x{SOURCE[1]} PNG to PNG, one libvips thread; ALPHA_WEIGHT = {ALPHA_WEIGHT:g}")
    print("| transformation | RGB units | RGB ms a unit | RGBA units | RGBA ms a unit | RGBA / RGB CPU |")
    print("| --- | --- | --- | --- | --- | --- |")
    for text in URLS:
        transformation = parse_transformation(f"{text},f-png")
        row, spent_by_source = [], {}
        for name, body in sources.items():
            spent = []
            for _ in range(arguments.rounds):
                started = time.process_time()
                rendered = render_image(body, transformation, "png", Defaults(), limits)
                spent.append(time.process_time() - started)
            spent_by_source[name] = min(spent)
            cost = units(text, (rendered.width, rendered.height), name == "RGBA")
            row += [f"{cost:.0f}", f"{min(spent) / cost * 1000:.1f}"]
        print(f"| `{text}` | " + " | ".join(row) + f" | {spent_by_source['RGBA'] / spent_by_source['RGB']:.2f} |")


if __name__ == "__main__":
    main()
