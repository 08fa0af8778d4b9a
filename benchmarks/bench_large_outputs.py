"""Memory and CPU of one render of a large output, the node's against bare pyvips.

    .venv/bin/python -m benchmarks.bench_large_outputs [--rounds 3]

Each case renders a 12 MP photo-like JPEG (tests/imagecorpus.py) to a large output, once in a fresh
process, and reads the process' peak resident memory before and after: what the render added (MB above
the peak of the imports and the read, so a render that streams shows 0). The
node's render is `render_image` (the pipeline's own function, no server); the baseline, in the same run,
is bare pyvips: `thumbnail_buffer` to the same size and a plain `jpegsave_buffer`, one libvips thread, as
the node renders. Cases alternate with their baseline each round; medians of `--rounds`. A JPEG encoder
that makes optimised tables or progressive scans holds the whole image's coefficients (~5.5 bytes a
pixel): the node does that only up to `JPEG_WHOLE_IMAGE_MAX_PIXELS` (edge/transform/encode.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import median
from edge.config import Defaults
from tests.imagecorpus import photo_jpeg

PHOTO = (4240, 2832)
#: (name, the node's transformation, the baseline's width and height)
CASES = [
    ("w-4000 (10.7 MP)", "w-4000", (4000, 2671)),
    ("w-4000,pr-true (10.7 MP)", "w-4000,pr-true", (4000, 2671)),
    ("w-8192 (44.8 MP)", "w-8192", (8192, 5471)),
    ("w-8192,pr-true (44.8 MP)", "w-8192,pr-true", (8192, 5471)),
    ("w-8192,h-8192,c-force (67 MP)", "w-8192,h-8192,c-force", (8192, 8192)),
]

_CHILD = """
import json, resource, sys, time
import pyvips
kind, transformation, width, height, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
body = open(path, "rb").read()
if kind == "node":
    from edge.config import Defaults, Limits
    from edge.transform.options import parse_transformation
    from edge.transform.render import render_image
    render = lambda: render_image(body, parse_transformation(transformation), "jpg", Defaults(), Limits()).body
else:
    pyvips.cache_set_max(0)
    pyvips.concurrency_set(1)
    render = lambda: pyvips.Image.thumbnail_buffer(body, width, height=height, size="force").jpegsave_buffer(Q={quality})
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
cpu = time.process_time()
out = render()
print(json.dumps({{"added_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024,
                  "cpu_s": time.process_time() - cpu, "bytes": len(out)}}))
""".format(quality=Defaults().quality)


def measure(kind: str, transformation: str, size: tuple[int, int], photo: Path) -> dict:
    answer = subprocess.run([sys.executable, "-c", _CHILD, kind, transformation, *map(str, size), str(photo)],
                            capture_output=True, text=True, timeout=300, check=True)
    return json.loads(answer.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    photo = Path(tempfile.mkdtemp(prefix="bench_large_outputs_")) / "photo.jpg"
    photo.write_bytes(photo_jpeg(*PHOTO))
    print(f"{'case':32} {'node MB':>8} {'bare MB':>8} {'node s':>7} {'bare s':>7} {'CPU ratio':>9} "
          f"{'bytes ratio':>11}")
    for name, transformation, size in CASES:
        node, bare = [], []
        for _ in range(rounds):
            node.append(measure("node", transformation, size, photo))
            bare.append(measure("bare", transformation, size, photo))
        mb = [median([run["added_mb"] for run in runs]) for runs in (node, bare)]
        cpu = [median([run["cpu_s"] for run in runs]) for runs in (node, bare)]
        size_ratio = median([run["bytes"] for run in node]) / median([run["bytes"] for run in bare])
        print(f"{name:32} {mb[0]:8.0f} {mb[1]:8.0f} {cpu[0]:7.2f} {cpu[1]:7.2f} {cpu[0] / cpu[1]:9.2f} "
              f"{size_ratio:11.3f}")


if __name__ == "__main__":
    main()
