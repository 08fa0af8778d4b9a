"""The image engines alone, one thread, no HTTP: where a miss's CPU goes.

    .venv/bin/python -m benchmarks.engines [--rounds N]

For each source (the miss-throughput 2000x1333 JPEG and the 12 MP 4000x3000 JPEG, both to 300 px JPEG,
quality 80), the CPU milliseconds per image of:
- the node's render (`render_image`, as a miss runs it: probe, shrink on load, resize, encode);
- bare pyvips (`thumbnail_buffer` + save, compare.py's baseline);
- Pillow as thumbor's PIL engine calls it (`draft`, LANCZOS `resize`, `save` with `optimize`);
- the JPEG decode alone, by libvips (`jpegload` with `shrink`) and by Pillow (`draft`), at the same scale
  (the largest of 1/8, 1/4, 1/2 that still gives 300 px: the one both the node and Pillow pick).
Each runs in its own process (libvips with one thread, as the node runs it; Pillow from thumbor's
virtualenv, see compare.py), in alternating rounds; medians. compare.py runs this too and subtracts
it from each system's CPU per miss, which splits a miss into the engine's cost and the service's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import median

ROOT = Path(__file__).resolve().parent.parent
WIDTH = 300
QUALITY = 80
SOURCES = {"2000×1333": (2000, 1333), "4000×3000": (4000, 3000)}
#: images per process: enough for a stable CPU reading, bounded
ITERATIONS = {"2000×1333": 20, "4000×3000": 8}
NODE_RENDER, BARE_PYVIPS, PILLOW_RENDER = "node render", "bare pyvips", "Pillow as thumbor"
VIPS_DECODE, PILLOW_DECODE = "libvips decode", "Pillow decode"
LIBVIPS_ENGINES = (NODE_RENDER, BARE_PYVIPS, VIPS_DECODE)
PILLOW_ENGINES = (PILLOW_RENDER, PILLOW_DECODE)
ENGINES = (NODE_RENDER, BARE_PYVIPS, PILLOW_RENDER, VIPS_DECODE, PILLOW_DECODE)

#: `python -c WORKER ENGINE SOURCE_FILE SCALE ITERATIONS`: prints the CPU ms per image
WORKER = r"""
import io, sys, time
engine, path, scale, iterations = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
body = open(path, "rb").read()
WIDTH, QUALITY = %(width)d, %(quality)d
if engine in %(pillow)r:
    from PIL import Image
    def pillow_render():
        image = Image.open(io.BytesIO(body))
        size = (WIDTH, round(WIDTH * image.height / image.width))
        image.draft(None, size)
        output = io.BytesIO()
        image.resize(size, Image.Resampling.LANCZOS).save(output, "JPEG", quality=QUALITY, optimize=True)
        return output.getvalue()
    from benchmarks.decoders import pillow_decode
    work = {%(pillow_render)r: pillow_render, %(pillow_decode)r: lambda: pillow_decode(body, scale)}[engine]
else:
    import pyvips
    from benchmarks.baselines import bare_save, encoder_options
    from benchmarks.decoders import libvips_decode
    from edge.config import Defaults, Limits
    from edge.transform.options import parse_transformation
    from edge.transform.render import render_image  # sets one libvips thread per render, as the node runs
    defaults = Defaults(quality=QUALITY)
    transformation = parse_transformation(f"w-{WIDTH}")
    work = {
        %(node_render)r: lambda: render_image(body, transformation, "jpg", defaults, Limits()),
        %(bare_pyvips)r: lambda: bare_save(pyvips.Image.thumbnail_buffer(body, WIDTH), "jpg",
                                           encoder_options(defaults)),
        %(vips_decode)r: lambda: libvips_decode(body, scale),
    }[engine]
for _ in range(2):
    work()
started = time.process_time()
for _ in range(iterations):
    work()
print((time.process_time() - started) / iterations * 1e3)
""" % {"width": WIDTH, "quality": QUALITY, "pillow": PILLOW_ENGINES, "pillow_render": PILLOW_RENDER,
       "pillow_decode": PILLOW_DECODE, "node_render": NODE_RENDER, "bare_pyvips": BARE_PYVIPS,
       "vips_decode": VIPS_DECODE}


def decode_scale(width: int, height: int) -> int:
    """The largest libjpeg scale that still gives WIDTH px across (and the matching height)."""
    for scale in (8, 4, 2):
        if width // scale >= WIDTH and height // scale >= round(WIDTH * height / width):
            return scale
    return 1


def cpu_ms_per_image(python: Path, engine: str, path: Path, scale: int, iterations: int) -> float:
    """One process of `engine` over the JPEG at `path`: its CPU ms per image."""
    out = subprocess.run([str(python), "-c", WORKER, engine, str(path), str(scale), str(iterations)],
                         capture_output=True, text=True, cwd=ROOT, timeout=300, check=True)
    return float(out.stdout)


def measure(pillow_python: Path, rounds: int, folder: Path) -> dict[tuple[str, str], float]:
    """{(engine, source): median CPU ms per image}; `pillow_python` has Pillow (thumbor's venv)."""
    from tests.imagecorpus import photo_jpeg

    samples: dict[tuple[str, str], list[float]] = {}
    for label, (width, height) in SOURCES.items():
        path = folder / f"engines-{width}x{height}.jpg"
        path.write_bytes(photo_jpeg(width, height))
        for number in range(rounds):
            shift = number % len(ENGINES)
            for engine in ENGINES[shift:] + ENGINES[:shift]:
                python = pillow_python if engine in PILLOW_ENGINES else Path(sys.executable)
                samples.setdefault((engine, label), []).append(
                    cpu_ms_per_image(python, engine, path, decode_scale(width, height), ITERATIONS[label]))
    return {key: median(values) for key, values in samples.items()}


def table(results: dict[tuple[str, str], float]) -> str:
    lines = ["| source → 300 px JPEG | " + " | ".join(ENGINES) + " | libvips decode ÷ Pillow decode |",
             "| --- |" + " --- |" * (len(ENGINES) + 1)]
    for label in SOURCES:
        cells = [f"{results[(engine, label)]:.1f}" for engine in ENGINES]
        ratio = results[(VIPS_DECODE, label)] / results[(PILLOW_DECODE, label)]
        lines.append(f"| {label} (decoded at 1/{decode_scale(*SOURCES[label])}) | " + " | ".join(cells)
                     + f" | {ratio:.2f} |")
    return "\n".join(lines)


def main() -> int:
    from benchmarks.compare import thumbor_venv

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edge-engines-") as tmp:
        results = measure(thumbor_venv() / "bin" / "python", args.rounds, Path(tmp))
    print("CPU ms per image, one thread, medians:\n" + table(results))
    print(json.dumps({f"{engine} / {label}": round(value, 2) for (engine, label), value in results.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
