"""What a strong blur costs against its price (`edge/transform/cost.py`, `bl-N` weighs N/30 per output megapixel):
on an image the step has just resized (streamed) and on one already in memory, which the price is measured on.

    .venv/bin/python -m benchmarks.bench_blur_cost [--rounds 3]

Each URL is rendered by `render_image` in this thread (one libvips thread), its least CPU time of the rounds
divided by its estimated cost, in ms a unit: the streamed cases should cost what the in-memory one does. A cost
probe found `w-8192,h-4500,c-force,bl-100` of a 200×150 JPEG at 2.5× its price: the blur's wide window had
the upscale made again for each strip of output (`effects.BLUR_IN_MEMORY`).
"""

from __future__ import annotations

import time

from benchmarks.common import render_arguments
from edge.config import Defaults, Limits
from edge.transform.cost import estimated_cost
from edge.transform.options import parse_transformation
from edge.transform.render import render_image
from tests.imagecorpus import photo_jpeg

#: (source, transformation); the last is the reference: a blur of an image already in memory
CASES = [
    ("200x150", "w-8192,h-4500,c-force,bl-100"),
    ("200x150", "w-4000,h-3000,c-force,bl-30"),
    ("4000x3000", "w-6000,h-6000,c-force,bl-50"),
    ("4000x3000", "bl-100:bl-100"),
]


def main() -> None:
    arguments = render_arguments(__doc__)
    sources = {"200x150": photo_jpeg(200, 150), "4000x3000": photo_jpeg(4000, 3000)}
    limits = Limits(max_cost=10**6)
    print("| source | transformation | cost (units) | CPU s | ms a unit |")
    print("| --- | --- | --- | --- | --- |")
    for name, text in CASES:
        transformation = parse_transformation(text)
        width, height = map(int, name.split("x"))
        cost = estimated_cost(transformation, (width, height), formats=("jpg",), defaults=Defaults())
        spent = []
        for _ in range(arguments.rounds):
            started = time.process_time()
            render_image(sources[name], transformation, "jpg", Defaults(), limits)
            spent.append(time.process_time() - started)
        print(f"| {name} | `{text}` | {cost:.0f} | {min(spent):.2f} | {min(spent) / cost * 1000:.1f} |")


if __name__ == "__main__":
    main()
