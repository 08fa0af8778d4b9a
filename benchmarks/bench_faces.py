"""`fo-face`: how fast and how accurate OpenCV's frontal-face cascades are, on what the node searches.

    .venv/bin/python -m benchmarks.bench_faces [--rounds 7] [--skimage-data DIR]

Speed: the CPU time of one search of the reduced copy the node makes (`faces.DETECT_PIXELS`) of the
12 MP scene of tests/test_faces.py, per cascade, against libvips' attention search (`fo-auto`) of
the 1 MP copy it makes, in the same round; medians over alternating rounds.

Accuracy, on public images from the scikit-image wheel (`--skimage-data` is its `skimage/data`
folder; without it, the wheel is fetched with pip into a temporary folder; nothing is kept): the 100
faces and 100 non-faces of `lfw_subset.npy` (25×25 crops, scaled to 100 px with a border, since a
cascade needs context), and 19 photos and textures without faces (brick, coins, cells, the cat...).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import cv2
import numpy
import pyvips

from benchmarks.common import median
from edge.transform import faces
from tests.test_faces import scene

CASCADES = ("default", "alt", "alt2")
SKIMAGE = "scikit-image==0.26.0"
NO_FACES = ("brick", "grass", "gravel", "coins", "coffee", "chelsea", "text", "page", "moon", "rocket",
            "motorcycle_left", "hubble_deep_field", "retina", "logo", "color", "ihc", "cell", "horse", "clock_motion")


def grey(image: pyvips.Image, pixels: float | None = None) -> numpy.ndarray:
    if pixels:
        image = image.resize(min(1.0, (pixels / (image.width * image.height)) ** 0.5))
    if image.hasalpha():
        image = image.flatten()
    image = image.colourspace("b-w").extract_band(0).cast("uchar")
    return numpy.ndarray((image.height, image.width), numpy.uint8, image.write_to_memory())


def detector(name: str):
    cascade = cv2.CascadeClassifier(f"{cv2.data.haarcascades}haarcascade_frontalface_{name}.xml")
    return lambda pixels: len(cascade.detectMultiScale(pixels, scaleFactor=faces.SCALE_FACTOR, minNeighbors=
                                                       faces.MIN_NEIGHBOURS, minSize=(faces.MIN_FACE,) * 2))


def skimage_data(given: str | None, temporary: str) -> Path:
    if given:
        return Path(given)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", SKIMAGE,
                    "-d", temporary], check=True)
    wheel = next(Path(temporary).glob("scikit_image-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(temporary, [n for n in archive.namelist() if n.startswith("skimage/data/")])
    return Path(temporary) / "skimage" / "data"


def accuracy(data: Path) -> None:
    lfw = numpy.load(data / "lfw_subset.npy")
    crops = [cv2.copyMakeBorder(cv2.resize((a * 255).astype(numpy.uint8), (100, 100), interpolation=cv2.INTER_CUBIC),
                                30, 30, 30, 30, cv2.BORDER_REPLICATE) for a in lfw]
    photos = {name: grey(pyvips.Image.new_from_file(str(next(data.glob(f"{name}.*"))))) for name in NO_FACES}
    print("| cascade | LFW faces found | LFW non-faces flagged | photos without faces flagged |")
    print("| --- | --- | --- | --- |")
    for name in CASCADES:
        found = detector(name)
        flagged = [photo for photo, pixels in photos.items() if found(pixels)]
        print(f"| {name} | {sum(found(c) > 0 for c in crops[:100])}/100 | {sum(found(c) > 0 for c in crops[100:])}/100 "
              f"| {len(flagged)}/{len(photos)} {', '.join(flagged)} |")


def speed(rounds: int) -> None:
    cv2.setNumThreads(1)
    image = pyvips.Image.new_from_buffer(scene(), "")
    search, attention = grey(image, faces.DETECT_PIXELS), image.resize((1e6 / (image.width * image.height)) ** 0.5)
    attention = attention.copy_memory()
    times: dict[str, list[float]] = {name: [] for name in (*CASCADES, "attention")}
    detectors = {name: detector(name) for name in CASCADES}
    for _ in range(rounds):
        for name in times:
            started = time.process_time()
            if name == "attention":
                attention.smartcrop(300, 600, interesting="attention")
            else:
                detectors[name](search)
            times[name].append(time.process_time() - started)
    base = median(times["attention"])
    print(f"| search | CPU ms (median of {rounds}) | × attention |")
    print("| --- | --- | --- |")
    for name, values in times.items():
        print(f"| {name} | {median(values) * 1000:.0f} | {median(values) / base:.1f} |")
    print(f"load average: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--skimage-data", help="skimage/data of an unpacked scikit-image wheel")
    args = parser.parse_args()
    speed(args.rounds)
    with tempfile.TemporaryDirectory() as temporary:
        accuracy(skimage_data(args.skimage_data, temporary))


if __name__ == "__main__":
    main()
