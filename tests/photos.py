"""Real-size photos, made once per test session into a temporary folder (never committed).

A sample photo upscaled to 12 MP with grain added, so that it compresses like a photo (a 12 MP JPEG
of about 3.6 MB), with a red marker in its upright top-left corner: where the marker ends up says how
an output was turned or flipped. Made in a few seconds.

Use the `photos` fixture (`from tests.photos import photos` in a test module).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pytest
import pyvips

from tests.imagecorpus import stored_with_orientation

SAMPLE = Path(__file__).resolve().parent.parent / "edge" / "samples" / "chelsea.jpg"
#: upright size of the 12 MP photos (JPEG, PNG and the EXIF-rotated JPEGs)
SIZE = (4240, 2832)
MEDIUM_SIZE = (3000, 2000)
#: the marker: a red square in the upright top-left corner, this fraction of the height a side
MARKER = 0.2
RED = (255, 0, 0)
#: EXIF orientations of the turned photos: 180°, 90° clockwise, 90° anticlockwise
ORIENTATIONS = (3, 6, 8)


@dataclass(frozen=True)
class Photos:
    folder: Path
    jpeg: str  # names within `folder`, which a local origin serves
    png: str
    medium: str
    #: EXIF orientation → a 12 MP JPEG stored turned, displaying upright
    oriented: dict[int, str]

    def path(self, name: str) -> Path:
        return self.folder / name

    def read(self, name: str) -> bytes:
        return self.path(name).read_bytes()


def upright_photo(width: int, height: int) -> pyvips.Image:
    sample = pyvips.Image.new_from_file(str(SAMPLE))
    image = sample.resize(width / sample.width, vscale=height / sample.height, kernel="linear")
    grain = pyvips.Image.gaussnoise(509, 499, sigma=8, seed=3).copy_memory()  # tiled: fast to make
    grain = grain.replicate(width // 509 + 1, height // 499 + 1).crop(0, 0, width, height)
    side = round(height * MARKER)
    marker = pyvips.Image.black(side, side, bands=3) + list(RED)
    return (image + grain).insert(marker, 0, 0).cast("uchar").copy(interpretation="srgb").copy_memory()


def make_photos(folder: Path) -> Photos:
    folder.mkdir(parents=True, exist_ok=True)
    upright = upright_photo(*SIZE)
    files = {
        "photo.jpg": upright.jpegsave_buffer(Q=88, keep="none"),
        "photo.png": upright.pngsave_buffer(compression=1, keep="none"),
        "medium.jpg": upright.thumbnail_image(MEDIUM_SIZE[0], height=MEDIUM_SIZE[1], size="force")
        .jpegsave_buffer(Q=88, keep="none"),
    }
    for orientation in ORIENTATIONS:
        files[f"exif-{orientation}.jpg"] = stored_with_orientation(upright, orientation, quality=88)
    for name, body in files.items():
        (folder / name).write_bytes(body)
    return Photos(folder, "photo.jpg", "photo.png", "medium.jpg",
                  {orientation: f"exif-{orientation}.jpg" for orientation in ORIENTATIONS})


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> Photos:
    return make_photos(tmp_path_factory.mktemp("photos"))


def marker_corner(image: pyvips.Image) -> str:
    """Which corner of `image` the red marker is in: `top_left`, `top_right`, `bottom_left` or
    `bottom_right` (fails if it is in none, or in several)."""
    corners = {"top_left": (0, 0), "top_right": (image.width - 1, 0), "bottom_left": (0, image.height - 1),
               "bottom_right": (image.width - 1, image.height - 1)}
    inset = max(1, min(image.width, image.height) // 40)  # inside the marker, clear of any edge effect
    red = [name for name, (x, y) in corners.items()
           if _is_red(image.getpoint(min(max(x, inset), image.width - 1 - inset),
                                     min(max(y, inset), image.height - 1 - inset)))]
    assert len(red) == 1, f"the red marker is in {red or 'no corner'}"
    return red[0]


def _is_red(values: list[float]) -> bool:
    r, g, b = values[:3]
    return r > 180 and g < 90 and b < 90


def heic_bytes(image: pyvips.Image, icc_profile: bytes | None = None) -> bytes:
    """`image` (8-bit sRGB, alpha or not) as a HEIC: HEVC by x265 through pillow-heif (the node only
    decodes HEIC), at its fastest preset (a 12 MP photo in ~1.2 s)."""
    pillow_heif = pytest.importorskip("pillow_heif", reason="pillow-heif (the test extra) makes the HEIC photos")
    mode = "RGBA" if image.bands == 4 else "RGB"
    heif = pillow_heif.from_bytes(mode, (image.width, image.height), image.write_to_memory())
    out = io.BytesIO()
    heif.save(out, format="HEIF", quality=50, enc_params={"preset": "ultrafast"},
              **({"icc_profile": icc_profile} if icc_profile else {}))
    return out.getvalue()


@pytest.fixture(scope="session")
def heic_photo(photos) -> str:
    """The 12 MP photo as a HEIC, beside the others in `photos.folder`: its name."""
    photos.path("photo.heic").write_bytes(heic_bytes(pyvips.Image.new_from_file(str(photos.path(photos.png)))))
    return "photo.heic"
