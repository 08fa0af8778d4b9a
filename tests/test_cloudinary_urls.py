"""Cloudinary delivery URLs, built by the official `cloudinary` SDK, served by a real node from a bucket laid
out as Cloudinary's backup writes it (moto's S3 server). Sizes are the ones Cloudinary documents for each
word; where the node has its own equivalent (an ImageKit-style endpoint `/ik` on the same bucket), the
answer must be the very same bytes.
"""

import asyncio
import subprocess
import sys
from dataclasses import dataclass
from urllib.parse import quote
from pathlib import Path

import cloudinary
import pytest
import pyvips
from cloudinary import CloudinaryImage

from edge.cloudinary_urls import mapping_markdown
from edge.config import load_config
from edge.pluginmanager import load_plugins
from edge.transform import faces
from tests.assets import centre_colour, close, colour, pixel, same_colour, solid
from tests.imagecorpus import ANIMATION_COLOURS, animated_gif, cmyk_jpeg
from tests.nodes import SAMPLES, decode, loader, write_config
from tests.photos import heic_bytes, heic_photo, marker_corner, photos  # noqa: F401 - the fixtures
from tests.scrape import scrape, total
from tests.servers import HTTPOrigin
from tests.test_faces import scene as face_scene

BUCKET = "acme-cloudinary-urls"
DEMO = "res/demo/image/upload/"
API_SECRET = "test-api-secret-not-real"
PHOTO = "photos/landscape"  # 3000×2000 JPEG


@dataclass(frozen=True)
class Backup:
    """What the router reads of a Cloudinary backup origin, for the tests that route without a node."""
    folder: str = "res/demo/"
    merges_slashes: bool = False


@pytest.fixture(scope="module")
def cloud():
    """The SDK configured as a team's app would be (the test cloud `demo`)."""
    cloudinary.config(cloud_name="demo", api_key="123456789", api_secret=API_SECRET, secure=False)
    yield
    cloudinary.reset_config()


def photo_3000x2000() -> bytes:
    import pyvips
    return pyvips.Image.new_from_file(str(SAMPLES / "coffee.jpg")).resize(5).jpegsave_buffer(Q=85)


@pytest.fixture(scope="module")
def bucket(s3_server):
    client = s3_server.client()
    client.create_bucket(Bucket=BUCKET)
    objects = {
        f"{PHOTO}/1700000000.jpg": photo_3000x2000(),
        "shop/summer.sale/shoe/1600000000.jpg": solid(400, 300, colour(1)),
        "shop/summer.sale/shoe/1700000000.jpg": solid(400, 300, colour(2)),  # the newest
        "logo/1600000000.png": (SAMPLES / "logo-transparent.png").read_bytes(),
        "avatar/1500000000.png": solid(50, 50, colour(3), "png"),
        "shop/v2/boot/1650000000.jpg": solid(400, 300, colour(5)),  # a folder named like a version
        "my folder/crème brûlée/1650000000.jpg": solid(40, 30, colour(6)),  # as a CMS export writes it, unescaped
        "credited/1650000000.jpg": photo_with_metadata(),
        "images/hero/1650000000.jpg": solid(40, 30, colour(7)),  # a folder named like the SEO form's segment
        f"{BALLOON_PHOTO}/1700000000.jpg": photo_with_a_balloon(),
        f"{KITE_PHOTO}/1700000000.jpg": photo_with_a_balloon(kite=True),
        f"{FRAMED_PHOTO}/1700000000.jpg": photo_with_a_frame(),
        f"{CUTOUT_PHOTO}/1700000000.png": photo_cut_out(),
        f"{FACE_PHOTO}/1700000000.jpg": face_scene(),
    }
    for key, body in objects.items():
        client.put_object(Bucket=BUCKET, Key=DEMO + key, Body=body)
    client.put_object(Bucket=BUCKET, Key="res/demo/image/private/secret/1600000000.jpg", Body=solid(40, 30, colour(4)))
    return objects


BALLOON_PHOTO = "photos/balloon"  # 4240×2832 (12 MP) JPEG
FACE_PHOTO = "photos/astronaut"  # tests.test_faces' 12 MP scene: one face on the left, a checkerboard on the right
CUTOUT_PHOTO = "photos/cutout"  # the same as a PNG, transparent but for its middle quarter
ORANGE = (255, 140, 0)
BALLOON = (3900, 1000, 300)  # centre and radius: right of a centred square crop (x 704–3536)
KITE_PHOTO = "photos/kite"  # the balloon photo with a black kite at the top, in the middle: 4240×2832, no face
BLACK = (15, 15, 15)  # not what attention looks for (no saturation, no skin tone), unlike the balloon
KITE = (2120, 250, 200)


def photo_with_a_balloon(kite: bool = False) -> bytes:
    """A 12 MP photo of a grey, grainy field with an orange balloon far off-centre: what content-aware
    cropping must keep (and a kite at the top: what a crop to the top keeps)."""
    import pyvips
    width, height = 4240, 2832
    grain = pyvips.Image.gaussnoise(width // 8, height // 8, mean=128, sigma=24, seed=5).resize(8)
    grain = grain.embed(0, 0, width, height, extend="copy")
    field = grain.bandjoin([grain, grain]).cast("uchar").copy(interpretation="srgb")
    field = field.draw_circle(list(ORANGE), *BALLOON, fill=True)
    return (field.draw_circle(list(BLACK), *KITE, fill=True) if kite else field).jpegsave_buffer(Q=88)


def photo_cut_out() -> bytes:
    """The balloon photo as a 12 MP PNG (10 MB) with an alpha channel: opaque in the middle half of each
    side, transparent around it."""
    import pyvips
    photo = pyvips.Image.new_from_buffer(photo_with_a_balloon(), "")
    width, height = photo.width, photo.height
    alpha = pyvips.Image.black(width, height).draw_rect(255, width // 4, height // 4, width // 2, height // 2,
                                                        fill=True)
    return photo.bandjoin(alpha).copy(interpretation="srgb").pngsave_buffer(compression=6)


def orange_pixels(image, orange: tuple[int, int, int] = ORANGE) -> int:
    """How many pixels of `image` are the balloon's orange (or another colour), up to JPEG's noise."""
    inside = ((image[:3] - list(orange)).abs() < 30).bandand()
    return round(inside.avg() / 255 * image.width * image.height)


FRAMED_PHOTO = "photos/framed"  # 4240×2832: red within a green frame 280 px deep, the red the most common colour
RED, FRAME = (200, 30, 30), (40, 140, 70)


def photo_with_a_frame() -> bytes:
    import pyvips
    width, height, depth = 4240, 2832, 280
    framed = (pyvips.Image.black(width, height, bands=3) + list(FRAME)).cast("uchar").copy(interpretation="srgb")
    return framed.draw_rect(list(RED), depth, depth, width - 2 * depth, height - 2 * depth, fill=True).jpegsave_buffer()


def photo_with_metadata() -> bytes:
    """A JPEG whose EXIF holds copyright fields, and a camera and its serial number, which are not."""
    import pyvips
    image = pyvips.Image.new_from_file(str(SAMPLES / "coffee.jpg")).copy()
    for field, value in METADATA.items():
        image.set_type(pyvips.GValue.gstr_type, field, value)
    return image.jpegsave_buffer(keep=pyvips.enums.ForeignKeep.EXIF)


METADATA = {"exif-ifd0-Copyright": "(c) Acme", "exif-ifd0-Artist": "Jane Doe", "exif-ifd0-Make": "Canon",
            "exif-ifd2-BodySerialNumber": "SN-1234"}


#: an ordinary (ImageKit-style) endpoint on the same origin
IK_ENDPOINT = """
[[endpoints]]
id = "ik"
origins = ["Cloudinary backup"]
"""


def config(s3, endpoint: str = "", ik: str = IK_ENDPOINT) -> str:
    return f"""
[named_transformations]
card = "w-120,h-80,c-at_max"
square = "w-40,h-40"
{s3.origin_table("Cloudinary backup", BUCKET, type="cloudinary_backup", folder="/res/demo/")}
[[endpoints]]
id = ""
origins = ["Cloudinary backup"]
url_style = "cloudinary"
private_key = "{API_SECRET}"
{endpoint}
{ik}"""


@pytest.fixture
async def node(s3, bucket, cloud, node_factory, tmp_path):
    return await node_factory(write_config(tmp_path, config(s3)))


def url(public_id: str, **options) -> str:
    """The SDK's URL, as a path on the node."""
    return CloudinaryImage(public_id).build_url(**options).removeprefix("http://res.cloudinary.com")


async def get(node, path: str, accept: str = "image/jpeg"):
    response = await node.fetch(path, headers={"Accept": accept})
    assert response.code == 200, (path, response.code, response.body)
    return response


def size(response) -> tuple[int, int]:
    image = decode(response)
    return image.width, image.height


# --- crop modes on a 3000×2000 photo: the sizes Cloudinary's documentation gives ----------------------

CROP_MODES = [
    (dict(width=300), (300, 200)),  # no crop mode: scale, keeping the ratio
    (dict(width=300, height=300), (300, 300)),  # no crop mode: scale, stretched
    (dict(width=300, height=300, crop="scale"), (300, 300)),
    (dict(height=100, crop="scale"), (150, 100)),
    (dict(width=0.1, crop="scale"), (300, 200)),  # a fraction of the original
    (dict(width=300, height=300, crop="fit"), (300, 200)),
    (dict(width=300, height=300, crop="limit"), (300, 200)),
    (dict(width=4000, height=4000, crop="limit"), (3000, 2000)),  # never upscales
    (dict(width=300, height=300, crop="mfit"), (3000, 2000)),  # already larger than the minimum: unchanged
    (dict(width=300, height=300, crop="fill"), (300, 300)),
    (dict(width=300, aspect_ratio="16:9", crop="fill"), (300, 169)),
    (dict(width=300, height=300, crop="lfill"), (300, 300)),
    (dict(width=300, height=300, crop="pad"), (300, 300)),
    (dict(width=300, height=300, crop="lpad"), (300, 300)),
    (dict(width=300, height=200, x=100, y=50, crop="crop"), (300, 200)),  # no scaling: a region
    (dict(width=300, height=200, gravity="south_east", crop="crop"), (300, 200)),
    (dict(width=200, height=200, gravity="face", crop="thumb"), (200, 200)),
    (dict(width=100, dpr=2.0, crop="scale"), (200, 133)),
    (dict(aspect_ratio="1:1", crop="fill"), (2000, 2000)),  # the largest square
    (dict(width=300, aspect_ratio="1.0"), (300, 300)),  # scale: stretched to the ratio
    (dict(width=300, aspect_ratio=1.5, crop="fill"), (300, 200)),  # a decimal ratio is width over height
    (dict(aspect_ratio="1:1", crop="thumb"), (2000, 2000)),  # the largest square, as c_fill's
]


async def test_crop_modes_give_cloudinarys_sizes(node):
    # one node for all (a node per case would cost more than the cases): every mismatch is reported
    answers = [(options, size(await get(node, url(PHOTO, **options)))) for options, _ in CROP_MODES]
    assert [(options, got) for (options, got), (_, expected) in zip(answers, CROP_MODES) if got != expected] == []


async def test_auto_crop_keeps_the_most_interesting_part_of_a_12_mp_photo(node):
    """Cloudinary's `c_auto` "automatically determines the best crop based on the gravity", downscaled to
    the size asked: the balloon, off-centre, is in the square; a centred `c_fill` misses it."""
    balloon_area = 3.14159 * (BALLOON[2] * 400 / 2832) ** 2  # at the scale of the 400 px square
    response = await get(node, f"/demo/image/upload/c_auto,g_auto,w_400,h_400/{BALLOON_PHOTO}.jpg")
    image = decode(response)
    assert ((image.width, image.height), loader(response)) == ((400, 400), "jpegload")
    assert orange_pixels(image) > 0.9 * balloon_area
    assert orange_pixels(decode(await get(node, f"/demo/image/upload/c_fill,w_400,h_400/{BALLOON_PHOTO}.jpg"))) == 0
    # the node's own content-aware crop, to the byte
    assert response.body == (await get(node, f"/ik/tr:w-400,h-400,fo-auto/image/upload/{BALLOON_PHOTO}.jpg")).body
    # Cloudinary's example, `c_auto,g_auto,ar_16:9,h_150`; and a compass gravity, which c_auto takes too
    assert size(await get(node, f"/demo/image/upload/c_auto,g_auto,ar_16:9,h_150/{BALLOON_PHOTO}.jpg")) == (267, 150)
    east = decode(await get(node, f"/demo/image/upload/c_auto,g_east,w_400,h_400/{BALLOON_PHOTO}.png"))
    assert ((east.width, east.height), orange_pixels(east) > 0.9 * balloon_area) == ((400, 400), True)
    # a blog's banners, as its pages write them (three sizes, one of them redundant, and the other words)
    for words in ("f_auto,q_auto:good,c_auto,w_1200,h_300,g_auto,fl_progressive",
                  "f_auto,q_auto:good,c_auto,w_1200,h_300,g_auto,ar_4.0,fl_progressive"):
        response = await get(node, f"/demo/image/upload/{words}/{BALLOON_PHOTO}.jpg", accept="*/*")
        banner = decode(response)
        assert ((banner.width, banner.height), loader(response), banner.get("interlaced")) == \
            ((1200, 300), "jpegload", 1), words
        assert orange_pixels(banner) > 0.9 * 3.14159 * (BALLOON[2] * 1200 / 4240) ** 2, words


async def test_face_gravity_falling_back_to_auto(node):
    """`g_face:auto`, `g_faces:auto`: "Same as face gravity, but defaults to auto" when no face is found, which
    is what the node's `fo-face` does. A 12 MP photo without a face: the crop keeps the balloon, as `g_auto`'s."""
    for gravity in ("face:auto", "faces:auto"):
        path = f"/demo/image/upload/c_thumb,g_{gravity},w_400,h_400/{BALLOON_PHOTO}.jpg"
        response = await get(node, path)
        image = decode(response)
        assert ((image.width, image.height), loader(response)) == ((400, 400), "jpegload"), gravity
        assert orange_pixels(image) > 0.9 * 3.14159 * (BALLOON[2] * 400 / 2832) ** 2, gravity
        assert response.body == (await get(node, f"/ik/tr:w-400,h-400,fo-face/image/upload/{BALLOON_PHOTO}.jpg")).body
    # no positional effect of x/y, and zooming out, around faces as with g_face
    zoomed = await get(node, f"/demo/image/upload/c_thumb,g_face:auto,w_400,h_400,z_0.8/{BALLOON_PHOTO}.jpg")
    assert size(zoomed) == (400, 400)


async def test_fill_with_a_face_gravity_covers_with_the_face_in_the_middle(node):
    """`c_fill,g_face` on a photo with a face, through the node: the node's `fo-face,fof-top,ffr-false` to the
    byte, the face in the middle of the width and as large as the scene scaled to cover has it, where
    `c_thumb,g_face` closes in on it."""
    fill = await get(node, f"/demo/image/upload/c_fill,g_face,w_300,h_600/{FACE_PHOTO}.jpg")
    own = await get(node, f"/ik/tr:w-300,h-600,fo-face,fof-top,ffr-false/image/upload/{FACE_PHOTO}.jpg")
    thumb = await get(node, f"/demo/image/upload/c_thumb,g_face,w_300,h_600/{FACE_PHOTO}.jpg")
    assert size(fill) == size(thumb) == (300, 600) and fill.body == own.body
    [(left, _, width, _)] = faces.find_faces(decode(fill))
    assert abs(left + width / 2 - 150) < 20 and 2 * width < faces.find_faces(decode(thumb))[0][2]


async def test_face_gravity_without_a_face_keeps_the_top_or_the_centre(node):
    """Cloudinary: `g_face`/`g_faces` without a face "defaults to north gravity", `g_face:center` "Same as face
    gravity, but defaults to center". A 12 MP photo without a face, a kite at the top and a balloon lower right,
    cropped to a wide strip: `g_face` keeps the kite (the node's `fo-top` crop, to the byte), `g_face:center`
    the middle (neither), `g_face:auto` neither kite nor the top."""
    kite_area = 3.14159 * (KITE[2] * 400 / 4240) ** 2  # at the scale of the 400 px wide strip

    async def strip(gravity: str):
        response = await get(node, f"/demo/image/upload/c_fill,g_{gravity},w_400,h_100/{KITE_PHOTO}.jpg")
        image = decode(response)
        assert (image.width, image.height) == (400, 100), gravity
        return response, orange_pixels(image, BLACK)

    for gravity, same_as in (("face", "top"), ("faces", "top"), ("face:center", "center"),
                             ("faces:center", "center")):
        response, kite = await strip(gravity)
        assert (kite > 0.9 * kite_area) == (same_as == "top"), (gravity, kite)
        own = await get(node, f"/ik/tr:w-400,h-100,fo-{same_as}/image/upload/{KITE_PHOTO}.jpg")
        assert response.body == own.body, gravity
    # the most interesting part: around the balloon, below the kite (its lowest pixel at most at the edge)
    assert (await strip("face:auto"))[1] < 0.05 * kite_area
    # a region cut by `c_crop` without a face: at the top too, in the middle of the width
    region = decode(await get(node, f"/demo/image/upload/c_crop,g_face,w_600,h_600/{KITE_PHOTO}.png"))
    assert ((region.width, region.height), orange_pixels(region, BLACK) > 0.9 * 3.14159 * KITE[2] ** 2) == \
        ((600, 600), True)


async def test_padding_in_the_predominant_colour(node):
    """`b_auto:predominant`: padding in "the predominant color while taking all pixels in the image into account",
    what the node's `bg-dominant` finds; only with a pad.
    A 12 MP photo of a grey field, padded to a square: grey bands above and below the photo, whole."""
    response = await get(node, f"/demo/image/upload/b_auto:predominant,c_pad,w_400,h_400/{BALLOON_PHOTO}.jpg")
    image = decode(response)
    assert ((image.width, image.height), loader(response)) == ((400, 400), "jpegload")
    for x, y in ((10, 10), (390, 10), (200, 390)):  # the bands: 400×267 of photo, centred
        red, green, blue = pixel(image, x, y)
        assert max(red, green, blue) - min(red, green, blue) <= 6 and 96 <= red <= 160, (x, y, pixel(image, x, y))
    assert orange_pixels(image) > 0.9 * 3.14159 * (BALLOON[2] * 400 / 4240) ** 2
    own = await get(node, f"/ik/tr:w-400,h-400,cm-pad_resize,bg-dominant/image/upload/{BALLOON_PHOTO}.jpg")
    assert response.body == own.body
    refused = [await node.fetch(f"/demo/image/upload/{words}/{BALLOON_PHOTO}.jpg")
               for words in ("b_auto,c_fill,w_400,h_400", "b_auto:predominant,c_fill,w_400,h_400")]
    assert [(r.code, r.body.decode().split(": ")[1]) for r in refused] == [(400, "b_auto"), (400, "b_auto:predominant")]


async def test_padding_in_the_colour_of_the_border(node):
    """`b_auto`, `b_auto:border`: "the predominant color while taking only the image border pixels into account"
    (the node's `bg-dominant_border`). A 12 MP photo, mostly red within a green frame a tenth of its height deep,
    padded to a square: green bands, where `b_auto:predominant` pads in red."""
    for words in ("b_auto,c_pad", "b_auto:border,c_pad", "b_auto,c_lpad"):
        response = await get(node, f"/demo/image/upload/{words},w_400,h_400/{FRAMED_PHOTO}.jpg")
        image = decode(response)
        assert (image.width, image.height) == (400, 400), words
        for x, y in ((10, 10), (390, 10), (200, 390)):  # the bands: 400×267 of photo, centred
            assert close(pixel(image, x, y), FRAME, 12), (words, x, y, pixel(image, x, y))
        assert close(pixel(image, 200, 200), RED, 12)  # the photo itself, whole
        own = await get(node, f"/ik/tr:w-400,h-400,cm-pad_resize,bg-dominant_border/image/upload/{FRAMED_PHOTO}.jpg")
        assert response.body == own.body or words.endswith("lpad"), words
    predominant = decode(await get(node, f"/demo/image/upload/b_auto:predominant,c_pad,w_400,h_400/{FRAMED_PHOTO}.jpg"))
    assert close(pixel(predominant, 10, 10), RED, 12)


@pytest.mark.parametrize("options, expected", [
    (dict(width=400, height=500, crop="mfit"), (400, 400)),  # smaller: enlarged to fit
    (dict(width=400, height=400, crop="lfill"), (256, 256)),  # never enlarged
    (dict(width=400, crop="lfill"), (256, 256)),  # one side given: never enlarged either
    (dict(height=400, crop="lpad"), (256, 256)),  # nor padded
    (dict(width=400, height=300, crop="lpad", background="red"), (400, 300)),  # padded at its own size
])
async def test_modes_that_depend_on_a_small_original(node, options, expected):
    logo = decode(await get(node, url("logo.png")))
    assert (logo.width, logo.height) == (256, 256)
    answer = decode(await get(node, url("logo", format="png", **options)))
    assert (answer.width, answer.height) == expected
    if options["crop"] == "lpad" and "width" in options:
        assert close(pixel(answer, 20, 150)[:3], (255, 0, 0))  # the padding, left of the unscaled logo


EQUIVALENTS = [
    (dict(width=300, height=100, crop="fill", gravity="north"), "w-300,h-100,fo-top"),
    (dict(width=300, height=100, crop="fill", gravity="south_west"), "w-300,h-100,fo-bottom_left"),
    (dict(width=300, height=100, crop="fill", gravity="auto"), "w-300,h-100,fo-auto"),
    (dict(width=300, height=300, crop="pad", background="rgb:1E293B", gravity="west"),
     "w-300,h-300,cm-pad_resize,bg-1E293B,fo-left"),
    (dict(width=300, height=200, x=100, y=50, crop="crop"), "cm-extract_within,w-300,h-200,x-100,y-50"),
    # a position as a fraction of the input, as crop tools that store percentages write it (x_0.5: half-way)
    (dict(width=0.4, height=0.4, x=0.5, y=0.35, crop="crop"), "cm-extract_within,w-1200,h-800,x-1500,y-700"),
    # Cloudinary: "x and y with c_crop,g_face have no positional effect" (the face stays centred)
    (dict(width=300, height=200, x=50, y=50, crop="crop", gravity="face"),
     "cm-extract_within,w-300,h-200,fo-face,fof-top"),
    (dict(width=300, quality=40), "w-300,q-40"),
    (dict(width=300, quality="auto:low"), "w-300,q-50"),
    (dict(width=300, angle=90), "w-300,rt-90"),
    (dict(width=300, angle=-90), "w-300,rt-N90"),
    (dict(width=300, angle="hflip"), "w-300,fl-h"),
    # modes joined with a dot (the SDKs' angle=["hflip", 90]), in turn: flipped, then turned
    (dict(width=300, angle=["hflip", 90]), "w-300:fl-h:rt-90"),
    (dict(width=300, effect="blur:300"), "w-300,bl-15"),
    (dict(width=300, effect="grayscale"), "w-300,e-grayscale"),
    (dict(width=300, effect="sharpen"), "w-300,e-sharpen-5"),
    (dict(width=300, effect="unsharp_mask"), "w-300,e-usm"),
    (dict(width=300, effect="unsharp_mask:250"), "w-300,e-usm-2-1-2.5-0.05"),
    (dict(width=300, effect="brightness:-40"), "w-300,e-brightness-N40"),
    (dict(width=300, effect="saturation"), "w-300,e-saturation-80"),
    (dict(width=300, effect="sepia:50"), "w-300,e-sepia-50"),
    (dict(width=300, effect="negate"), "w-300,e-negate"),
    (dict(width=300, effect="pixelate"), "w-300,e-pixelate-5"),
    (dict(width=300, effect="vibrance"), "w-300,e-vibrance-20"),
    (dict(width=300, effect="blackwhite:30"), "w-300,e-blackwhite-30"),
    (dict(width=300, effect="auto_contrast:60"), "w-300,e-contrast-60"),
    (dict(width=300, effect="auto_color"), "w-300,e-autocolor"),
    (dict(width=300, effect="hue"), "w-300,e-hue-80"),
    (dict(width=300, effect="red:-30"), "w-300,e-red-N30"),
    (dict(width=300, effect="contrast"), "w-300"),  # Cloudinary's default level, 0, changes nothing
    (dict(width=300, effect="contrast:-40"), "w-300,e-sigmoidcontrast-N40"),
    (dict(width=300, effect="contrast:level_150;type_linear"), "w-300,e-linearcontrast-150"),
    (dict(width=300, effect="contrast:level_30;type_sigmoidal"), "w-300,e-sigmoidcontrast-30"),
    (dict(width=300, effect="gamma:50"), "w-300,e-gamma-50"),
    (dict(width=300, effect="brightness_hsb"), "w-300,e-brightnesshsb-80"),
    (dict(width=300, effect="vignette"), "w-300,e-vignette-20"),
    (dict(width=300, effect="colorize"), "w-300,e-colorize-co-gray_in-100"),
    (dict(width=300, effect="colorize:40", color="rgb:FF6600"), "w-300,e-colorize-co-FF6600_in-40"),
    (dict(width=300, effect="distort:arc:90"), "w-300,e-distort-a-90"),
    (dict(width=300, effect="replace_color:maroon"), "w-300,cr-800000_50"),
    (dict(width=300, effect="replace_color:blue:80:2b38aa"), "w-300,cr-0000FF_80_2B38AA"),
    (dict(width=300, effect="distort:arc:-45"), "w-300,e-distort-a-N45"),
    (dict(width=300, effect="distort:-10:5:290:0:300:200:0:190"), "w-300,e-distort-p-N10_5_290_0_300_200_0_190"),
    (dict(width=300, effect="opacity_threshold"), "w-300,e-opacitythreshold-50"),
    (dict(transformation=[dict(width=300, crop="scale"),
                          dict(effect="pixelate_region:12", width=100, height=80, x=40, y=30)]),
     "w-300:e-pixelate-12,e-region-40_30_100_80"),
    (dict(transformation=[dict(width=300, crop="scale"), dict(effect="blur_region", x=150)]),
     "w-300:bl-5,e-region-150_0"),
    # the faces as the region: pixelated alone, not the whole image
    (dict(transformation=[dict(width=300, crop="scale"), dict(effect="pixelate_region:8", gravity="faces")]),
     "w-300:e-pixelatefaces-8"),
    (dict(width=300, effect="auto_brightness:80"), "w-300,e-autobrightness-80"),
    (dict(width=300, effect="improve"), "w-300,e-autocolor,e-autobrightness"),
    (dict(width=300, effect="improve:indoor:50"), "w-300,e-autocolor-50,e-autobrightness-50"),
    (dict(width=300, effect="blur_faces"), "w-300,e-blurfaces-25"),
    (dict(width=300, effect="pixelate_faces:9"), "w-300,e-pixelatefaces-9"),
    (dict(width=300, radius=20, background="white"), "w-300,r-20,bg-white"),
    (dict(width=300, border="4px_solid_rgb:FF6600"), "w-300,b-4_FF6600"),
    (dict(width=300, height=300, crop="pad", background="rgb:FF000080"),  # hex alpha 0x80 → 50 %
     "w-300,h-300,cm-pad_resize,bg-FF000050"),
    (dict(width=300, flags="progressive"), "w-300,pr-true"),
    # conditions: on one component's words, or on the components up to if_else and if_end
    (dict(transformation=[{"if": "w_gt_1000", "width": 300, "crop": "scale"}]), "if-w_gt_1000,w-300,if-end"),
    (dict(transformation=[{"if": "face_count > 0", "width": 300}]), "if-fc_gt_0,w-300,if-end"),
    (dict(transformation=[{"if": "ar_gt_3:4"}, dict(width=400, height=300, crop="fill"), {"if": "else", "width": 100},
                          {"if": "end"}]), "if-ar_gt_3-4,w-400,h-300,if-else,w-100,if-end"),
    # the SDKs' block with its first words beside the condition (it had been a 400: `if_else` with no condition)
    (dict(transformation=[{"if": "w_gt_1000", "crop": "scale", "width": 500}, {"if": "else", "width": 200},
                          {"if": "end"}]), "if-w_gt_1000,w-500,if-else,w-200,if-end"),
    (dict(transformation=[{"if": "w_gt_1000", "width": 500}, {"angle": 90}, {"if": "end"}]),
     "if-w_gt_1000,w-500:rt-90,if-end"),
    (dict(transformation=[dict(width=300, crop="scale"), dict(angle=90)]), "w-300:rt-90"),
]


async def test_ignore_aspect_ratio_scales_one_side_of_a_12_mp_photo(node):
    """`fl_ignore_aspect_ratio` with one side ("Scale in one dimension ignoring the aspect ratio", Cloudinary's
    resize modes): the other side stays as it is. It had been a 400."""
    for options, expected in ((dict(height=150), (4240, 150)), (dict(width=300), (300, 2832)),
                              (dict(width=300, crop="scale"), (300, 2832))):
        answer = await get(node, url(BALLOON_PHOTO, flags="ignore_aspect_ratio", format="jpg", **options))
        assert (answer.code, loader(answer), size(answer)) == (200, "jpegload", expected), options
    refused = await node.fetch(url(BALLOON_PHOTO, flags="ignore_aspect_ratio", width=300, crop="fill"))
    assert (refused.code, refused.body) == (400, b"invalid transformation: fl_ignore_aspect_ratio: ignore_aspect_ratio "
                                                 b"only with c_scale and one of w_ or h_\n")


async def test_a_crop_region_leaving_the_image_is_cut_to_the_part_inside(node):
    """`c_crop` with a region larger than the image or past its edge (a template URL over a catalogue of
    sizes): the part of the region inside the image, as Cloudinary crops, where `cm-extract` is a 400."""
    for options, inside in ((dict(width=5000, height=1000), "x-0,y-916,w-4240,h-1000"),  # centred, wider
                            (dict(width=2000, height=2000, x=3000, y=2000), "x-3000,y-2000,w-1240,h-832")):
        answer = await get(node, url(BALLOON_PHOTO, crop="crop", format="jpg", **options))
        own = await get(node, f"/ik/tr:cm-extract,{inside}/image/upload/{BALLOON_PHOTO}.jpg")
        assert (answer.code, size(answer)) == (200, size(own)) and answer.body == own.body, options
    small = await get(node, url("logo", crop="crop", width=300, height=100, format="png"))
    assert size(small) == (256, 100)
    outside = await node.fetch(url(BALLOON_PHOTO, crop="crop", width=100, height=100, x=5000, y=0, format="jpg"))
    assert (outside.code, outside.body) == (400, b"invalid transformation: cm-extract_within: the region 100x100 at "
                                                 b"(5000, 0) leaves the 4240x2832 image\n")


async def test_words_do_what_the_nodes_own_parameters_do(node):
    different = []
    for cloudinary_options, ours in EQUIVALENTS:
        cloudinary_answer = await get(node, url(PHOTO, format="jpg", **cloudinary_options))
        own_answer = await get(node, f"/ik/tr:{ours}/image/upload/{PHOTO}.jpg")
        if cloudinary_answer.body != own_answer.body:
            different.append((cloudinary_options, ours))
    assert different == []


async def test_angles_and_borders_change_the_size_as_documented(node):
    assert size(await get(node, url(PHOTO, width=300, angle=90))) == (200, 300)
    assert size(await get(node, url(PHOTO, width=300, border="5px_solid_red"))) == (310, 210)
    rounded = decode(await get(node, url(PHOTO, width=300, radius="max", format="png")))
    assert rounded.hasalpha() and pixel(rounded, 0, 0)[3] == 0


async def test_dpr_multiplies_every_size_of_the_url_wherever_it_is_written(node):
    """The SDKs write `dpr_` in a component of its own (`c_fill,w_300,h_200/dpr_2.0`); Cloudinary
    multiplies whatever the product (no 5000 px rule, as ImageKit has)."""
    assert size(await get(node, url(PHOTO, transformation=[dict(width=300, crop="scale"), dict(dpr=2.0)]))) == (600, 400)
    assert size(await get(node, f"/demo/image/upload/c_fill,w_300,h_200/q_auto/f_auto/dpr_3.0/{PHOTO}.jpg")) == (900, 600)
    assert size(await get(node, url(PHOTO, width=2560, dpr=2.0, crop="scale"))) == (5120, 3413)
    assert size(await get(node, url(PHOTO, width=2000, dpr=3.0, crop="limit"))) == (3000, 2000)  # never upscales
    assert size(await get(node, url(PHOTO, transformation=[dict(dpr=2.0)], format="jpg"))) == (3000, 2000)  # no size
    # fractions of an input its pixels sizes: only those are multiplied, else the factor compounds
    assert size(await get(node, f"/demo/image/upload/w_1000/w_0.5/dpr_2.0/{PHOTO}.jpg")) == (1000, 666)
    # of two `dpr_` components, the last multiplies (each checked)
    assert size(await get(node, f"/demo/image/upload/c_scale,w_300/dpr_1.0/dpr_2.0/{PHOTO}.jpg")) == (600, 400)
    # a half pixel rounds up, as Cloudinary's: 25 × 0.5 is 13 px, and 50 × 0.25 too (not to the even 12)
    for path in ("c_scale,w_25,dpr_0.5", "c_scale,w_50,dpr_0.25", "c_scale,w_25/dpr_0.5"):
        assert size(await get(node, f"/demo/image/upload/{path}/{PHOTO}.jpg"))[0] == 13, path


async def test_seo_suffixes_and_root_paths(node):
    """`images/…/<public_id>/<seo name>.<ext>` and `<cloud>/…/<public_id>`: both `image/upload`."""
    seo = await get(node, f"/demo/images/w_300/{PHOTO}/summer-landscape.webp")
    assert (loader(seo), size(seo)) == ("webpload", (300, 200))
    assert size(await get(node, f"/demo/w_300/{PHOTO}.jpg")) == (300, 200)
    assert size(await get(node, f"/demo/images/v1700000000/{PHOTO}/landscape.jpg")) == (3000, 2000)
    assert (await node.fetch(f"/demo/images/w_300/{PHOTO}.jpg")).code == 404  # the SEO name is not the public ID


async def test_short_hex_colours_and_radii_per_corner(node):
    padded = decode(await get(node, url(PHOTO, width=300, height=300, crop="pad", background="rgb:fff")))
    assert close(pixel(padded, 150, 10), (255, 255, 255))
    cornered = decode(await get(node, f"/demo/image/upload/w_300,r_40:0:40:0/{PHOTO}.png"))
    assert [pixel(cornered, x, y)[3] for x, y in ((0, 0), (299, 0), (299, 199), (0, 199))] == [0, 255, 0, 255]
    assert size(await get(node, f"/demo/image/upload/w_300,r_0:0/{PHOTO}.png")) == (300, 200)  # as r_0
    diagonals = decode(await get(node, f"/demo/image/upload/w_300,r_0:40/{PHOTO}.png"))
    assert [pixel(diagonals, x, y)[3] for x, y in ((0, 0), (299, 0), (299, 199), (0, 199))] == [255, 0, 255, 0]
    # a colour it cannot read is named in Cloudinary's words, not ImageKit's `RRGGBBOO`
    refused = await node.fetch(f"/demo/image/upload/w_300,c_pad,h_300,b_rgb:zzz/{PHOTO}.jpg")
    assert (refused.code, refused.body) == (400, b"invalid transformation: b_rgb:zzz: must be rgb:RRGGBB, "
                                                 b"rgb:RRGGBBAA, rgb:RGB, rgb:RGBA or a CSS colour name\n")


# --- formats, qualities, versions, folders --------------------------------------------------------------

async def test_an_untransformed_url_serves_the_stored_bytes(node, bucket):
    for public_id, stored in ((PHOTO, f"{PHOTO}/1700000000.jpg"), ("logo", "logo/1600000000.png")):
        extension = stored.rsplit(".", 1)[1]
        assert (await get(node, url(public_id, format=extension))).body == bucket[stored]
        assert (await get(node, url(public_id))).body == bucket[stored]  # no extension: the stored format


async def test_the_extension_or_f_names_the_output_format(node):
    webp = await get(node, url("shop/summer.sale/shoe", format="webp"))  # a stored JPEG, converted
    assert (loader(webp), size(webp)) == ("webpload", (400, 300))
    assert loader(await get(node, url(PHOTO, width=100, format="png"))) == "pngload"
    assert loader(await get(node, url(PHOTO, width=100, fetch_format="webp"))) == "webpload"
    auto = await get(node, url(PHOTO, width=100, fetch_format="auto", quality="auto"), accept="image/avif,image/webp")
    assert (loader(auto), auto.headers["Vary"]) == ("heifload", "Accept")
    assert loader(await get(node, url(PHOTO, width=100, fetch_format="auto"), accept="image/webp")) == "webpload"
    assert loader(await get(node, url(PHOTO, width=100, fetch_format="auto"), accept="*/*")) == "jpegload"
    # `.jpe`, JPEG's third extension (Cloudinary's "Formats supported"): had been part of the public ID, a 404
    for path in (f"/demo/image/upload/w_100/{PHOTO}.jpe", f"/demo/image/upload/{PHOTO}.jpe",
                 f"/demo/image/upload/f_jpe,w_100/{PHOTO}.png"):
        jpe = await get(node, path)
        assert (jpe.code, loader(jpe)) == (200, "jpegload"), path


async def test_f_auto_image_is_f_auto_on_an_image(node):
    """`f_auto[:media type]`: the media type (`image`, what some SDK helpers write) only says what to deliver
    when the URL has no extension: on an image, `f_auto:image` is `f_auto`, for a 12 MP photo as for any."""
    path = f"/demo/image/upload/c_scale,w_1200/f_auto:image/{BALLOON_PHOTO}"
    expected = {"image/avif,image/webp": "heifload", "image/webp": "webpload", "*/*": "jpegload"}
    for accept, decoder in expected.items():
        response = await get(node, path, accept=accept)
        image = decode(response)
        assert ((image.width, image.height), loader(response), response.headers["Vary"]) == \
            ((1200, 802), decoder, "Accept"), accept
        assert orange_pixels(image) > 0.9 * 3.14159 * (BALLOON[2] * 1200 / 4240) ** 2  # the balloon, whole
        assert response.body == (await get(node, path.replace("f_auto:image", "f_auto"), accept=accept)).body
    refused = await node.fetch(path.replace("f_auto:image", "f_auto:video"))
    assert (refused.code, refused.body.decode().split(":")[:2]) == (400, ["invalid transformation", " f_auto"])


async def test_an_extension_over_the_work_budget_falls_back_where_f_is_refused(node):
    """A 12 MP photo as `.gif` is over `max_cost` as GIF: the extension names the format as a URL without `f_` does,
    and falls back to JPEG; `f_gif` names it and is a 400 (the docs had said the extension was a 400 too)."""
    response = await get(node, f"/demo/image/upload/{BALLOON_PHOTO}.gif")
    image = decode(response)
    assert (loader(response), image.width, image.height) == ("jpegload", 4240, 2832)
    refused = await node.fetch(f"/demo/image/upload/f_gif/{BALLOON_PHOTO}.jpg")
    assert (refused.code, refused.body.decode().split(":")[0]) == (400, "transformation too costly")


async def test_progressive_modes(node):
    """`fl_progressive[:<mode>]`: `semi` and `steep` are progressive JPEGs (their scans tuned by Cloudinary,
    the encoder's standard ones here), `none` is "Do not deliver a progressive image"."""
    def path(flag: str) -> str:
        return f"/demo/image/upload/c_scale,w_2000/{flag}/{BALLOON_PHOTO}.jpg".replace("//", "/")
    answers = {flag: await get(node, path(flag)) for flag in
               ("fl_progressive", "fl_progressive:semi", "fl_progressive:steep", "fl_progressive:none", "")}
    images = {flag: decode(response) for flag, response in answers.items()}
    assert {flag: (image.width, image.height, loader(answers[flag]), "interlaced" in image.get_fields())
            for flag, image in images.items()} == {
        "fl_progressive": (2000, 1336, "jpegload", True), "fl_progressive:semi": (2000, 1336, "jpegload", True),
        "fl_progressive:steep": (2000, 1336, "jpegload", True), "fl_progressive:none": (2000, 1336, "jpegload", False),
        "": (2000, 1336, "jpegload", False)}
    assert all(orange_pixels(image) > 0.9 * 3.14159 * (BALLOON[2] * 2000 / 4240) ** 2 for image in images.values())
    assert answers["fl_progressive:semi"].body == answers["fl_progressive:steep"].body == answers["fl_progressive"].body
    assert answers["fl_progressive:none"].body == answers[""].body


async def test_w_auto_with_the_default_rounding_step(node):
    """`w_auto[:<rounding step>][:<fallback width>]`: "rounded up to the nearest rounding step (every 100
    pixels by default)", so `w_auto:100` is `w_auto`, which the node rounds so; other steps and fallbacks are
    400s naming the word. A 12 MP photo, for a browser whose layout gives the image 750 device pixels."""
    path = f"/demo/image/upload/c_limit,w_auto:100/{BALLOON_PHOTO}.jpg"
    hints = {"Sec-CH-Width": "750", "Accept": "image/jpeg"}
    hinted = await node.fetch(path, headers=hints)
    assert hinted.code == 200, hinted.body
    image = decode(hinted)
    assert ((image.width, image.height), loader(hinted), hinted.headers["Vary"]) == \
        ((800, 534), "jpegload", "Sec-CH-Width, Width")
    assert orange_pixels(image) > 0.9 * 3.14159 * (BALLOON[2] * 800 / 4240) ** 2
    assert hinted.body == (await node.fetch(path.replace("w_auto:100", "w_auto"), headers=hints)).body
    assert size(await get(node, path)) == (4240, 2832)  # no hint (Firefox, Safari): the photo's own width
    refused = [await node.fetch(path.replace("w_auto:100", word)) for word in ("w_auto:50", "w_auto:50:400")]
    assert [(r.code, r.body.decode().split(": ")[1]) for r in refused] == [(400, "w_auto:50"), (400, "w_auto:50:400")]
    assert refused[0].body == b"invalid transformation: w_auto:50: only w_auto, w_auto:100 and w_auto:100:<fallback " \
        b"width> are supported (a rounding step of 100 px; no breakpoints)\n"  # not "automatic sizes": w_auto is


async def test_w_auto_with_a_fallback_width(node):
    """`w_auto:100:<fallback width>`: "The width to use in the case the actual width cannot be retrieved from the
    Client-Hints header". A music site's album covers, as its pages write them, from a 12 MP photo: the
    largest square around the most interesting part, then the hinted width, else 250 (times the DPR hint)."""
    path = f"/demo/image/upload/ar_1:1,c_fill,g_auto/w_auto:100:250/dpr_auto/f_auto,q_auto/{BALLOON_PHOTO}.jpg"
    for hints, side in (({}, 250), ({"Sec-CH-DPR": "2"}, 500), ({"Sec-CH-Width": "700", "Sec-CH-DPR": "2"}, 700)):
        response = await node.fetch(path, headers={**hints, "Accept": "*/*"})
        assert response.code == 200, response.body
        image = decode(response)
        assert ((image.width, image.height), loader(response)) == ((side, side), "jpegload"), hints
        assert response.headers["Vary"] == "Accept, Sec-CH-Width, Width, Sec-CH-DPR, DPR", hints
        assert orange_pixels(image) > 0.9 * 3.14159 * (BALLOON[2] * side / 2832) ** 2, hints


async def test_dpr_auto_takes_the_dpr_hint(node):
    """`dpr_auto` in a component of its own, as the SDKs write it: the sizes of the URL times the `Sec-CH-DPR`
    hint (rounded up to a tenth, as for `dpr-auto`); without the hint, 1. A 12 MP photo."""
    path = f"/demo/image/upload/c_fill,g_auto,w_400,h_300/dpr_auto/{BALLOON_PHOTO}.jpg"
    for hints, width, height in (({"Sec-CH-DPR": "2.625"}, 1080, 810), ({}, 400, 300)):
        response = await node.fetch(path, headers={**hints, "Accept": "image/jpeg"})
        assert response.code == 200, response.body
        image = decode(response)
        assert ((image.width, image.height), loader(response), response.headers["Vary"]) == \
            ((width, height), "jpegload", "Sec-CH-DPR, DPR"), hints
        assert orange_pixels(image) > 0.9 * 3.14159 * (BALLOON[2] * height / 2832) ** 2, hints


async def test_lossy_flag_on_lossy_outputs(node):
    """`fl_lossy` makes an animated GIF lossy, or a PNG without transparency a JPEG ("Use with f_gif | f_png"):
    with `f_auto`, whose choices are already lossy or a PNG with transparency, and with JPEG, WebP or AVIF, it
    changes nothing; with a PNG or GIF output it is a 400. A recipe site's URL, as its pages write it, on a 12 MP
    photo (Firefox: no client hint, so the fallback width)."""
    path = f"/demo/image/upload/f_auto,fl_lossy,q_80,w_auto:100:1280/{BALLOON_PHOTO}.jpg"
    for accept, decoder in (("*/*", "jpegload"), ("image/webp,*/*", "webpload")):
        response = await get(node, path, accept=accept)
        image = decode(response)
        assert ((image.width, image.height), loader(response)) == ((1280, 855), decoder), accept
        assert orange_pixels(image) > 0.9 * 3.14159 * (BALLOON[2] * 1280 / 4240) ** 2, accept
        assert response.body == (await get(node, path.replace("fl_lossy,", ""), accept=accept)).body
    jpeg = f"/demo/image/upload/c_scale,w_1280,fl_lossy/{BALLOON_PHOTO}.jpg"
    assert (await get(node, jpeg)).body == (await get(node, jpeg.replace(",fl_lossy", ""))).body
    refused = [await node.fetch(jpeg.replace(".jpg", extension)) for extension in (".png", ".gif", "")]
    assert [(r.code, r.body.decode().split(": ")[1]) for r in refused] == [(400, "fl_lossy")] * 3


async def test_keep_attribution_keeps_the_copyright_fields_only(node):
    """Cloudinary: `fl_keep_attribution` "Keeps the copyright related fields when stripping meta-data";
    `fl_keep_iptc` "Keeps all meta-data"; without either, none is kept."""
    def fields(response) -> set[str]:
        image = decode(response)
        return {field for field in METADATA if field in image.get_fields()}
    expected = {"keep_attribution": {"exif-ifd0-Copyright", "exif-ifd0-Artist"}, "keep_iptc": set(METADATA),
                None: set()}
    kept = {(flags, fmt): fields(await get(node, url("credited", width=100, flags=flags, format=fmt)))
            for flags in expected for fmt in ("jpg", "webp")}
    assert kept == {(flags, fmt): expected[flags] for flags in expected for fmt in ("jpg", "webp")}


async def test_quality_levels(node):
    low = await get(node, url(PHOTO, width=600, quality="auto:low"))
    best = await get(node, url(PHOTO, width=600, quality="auto:best"))
    assert len(low.body) < len(best.body)


async def test_sensitive_quality_levels_lie_between_the_levels(node):
    """`q_auto[:<quality type>][:sensitive]`: ":sensitive raises the quality level slightly": `q_auto:good:sensitive`
    is "above good, but not as good as best", and `q_auto:sensitive` is `q_auto:good:sensitive`. A 12 MP photo."""
    async def answer(quality: str):
        response = await get(node, f"/demo/image/upload/c_scale,w_1500/{quality}/{BALLOON_PHOTO}.jpg")
        image = decode(response)
        assert ((image.width, image.height), loader(response)) == ((1500, 1002), "jpegload"), quality
        assert orange_pixels(image) > 0.9 * 3.14159 * (BALLOON[2] * 1500 / 4240) ** 2, quality
        return response.body
    levels = ["low", "low:sensitive", "eco", "eco:sensitive", "good", "good:sensitive", "best", "best:sensitive"]
    sizes = [len(await answer(f"q_auto:{level}")) for level in levels]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes), list(zip(levels, sizes))
    assert await answer("q_auto:sensitive") == await answer("q_auto:good:sensitive")
    assert await answer("q_auto:best:sensitive") != await answer("q_100")  # above best, not the top


async def test_versions_and_folders_with_dots(node):
    newest = decode(await get(node, url("shop/summer.sale/shoe", width=40, format="jpg")))  # the SDK writes v1
    assert same_colour(centre_colour(newest), colour(2))
    pinned = decode(await get(node, url("shop/summer.sale/shoe", width=40, format="jpg", version=1600000000)))
    assert same_colour(centre_colour(pinned), colour(1))


async def test_a_folder_named_like_a_version_is_part_of_the_public_id(node, bucket):
    """The version is the segment right after the components: `shop/v2/boot` without a `v1` (the SDKs
    with `force_version` off write it so, and the Java SDK did before 2021) is that public ID, plain,
    transformed or signed, not version 2 of `boot` behind a component `shop`."""
    plain = url("shop/v2/boot", format="jpg", force_version=False)
    assert plain.endswith("/upload/shop/v2/boot.jpg")
    assert (await get(node, plain)).body == bucket["shop/v2/boot/1650000000.jpg"]
    options = dict(width=30, crop="scale", format="jpg", force_version=False)
    boot = decode(await get(node, url("shop/v2/boot", **options)))
    assert ((boot.width, boot.height), same_colour(centre_colour(boot), colour(5))) == ((30, 22), True)
    assert size(await get(node, url("shop/v2/boot", sign_url=True, **options))) == (30, 22)
    assert size(await get(node, url("shop/v2/boot", **{**options, "force_version": True}))) == (30, 22)  # v1/…


async def test_named_and_default_image(node):
    assert size(await get(node, url(PHOTO, transformation="card"))) == (120, 80)
    several = url(PHOTO, transformation=["card", "square"], format="png")  # the SDKs write a list as t_card.square
    assert "/t_card.square/" in several
    assert size(await get(node, several)) == (40, 40)
    missing = await get(node, url("no/such/asset", width=20, default_image="avatar.png", format="png"))
    assert (size(missing), same_colour(centre_colour(decode(missing)), colour(3))) == ((20, 20), True)


async def test_private_cdn_paths_have_no_cloud_name(node):
    path = CloudinaryImage(PHOTO).build_url(width=150, private_cdn=True, secure=True, sign_url=True)
    assert path.startswith("https://demo-res.cloudinary.com/image/upload/s--")
    assert size(await get(node, path.removeprefix("https://demo-res.cloudinary.com"))) == (150, 100)


async def test_seo_and_short_forms_with_and_without_the_cloud_name(node):
    """The SDKs write the SEO suffix form (`url_suffix`) on a private CDN or custom domain, where paths have
    no cloud name (`/images/…`), `iu` for `image/upload` with their `shorten` option (`/demo/iu/…`, and
    `/iu/…` on a private CDN), and the root path there with `use_root_path` (`/c_scale,w_150/v1/…`)."""
    def path(**options):
        full = CloudinaryImage(PHOTO).build_url(width=150, crop="scale", format="jpg", secure=True, **options)
        return full.split(".cloudinary.com", 1)[1]
    forms = [path(url_suffix="summer", private_cdn=True), path(url_suffix="summer", private_cdn=True, sign_url=True),
             path(shorten=True), path(shorten=True, private_cdn=True), path(use_root_path=True, private_cdn=True)]
    assert [form.split("/")[1] for form in forms] == ["images", "images", "demo", "iu", "c_scale,w_150"]
    assert forms[1].startswith("/images/s--") and "/demo/iu/c_scale,w_150/" in forms[2]  # signed: the SEO name is not
    assert [size(await get(node, form)) for form in forms] == [(150, 100)] * 5
    assert (await node.fetch(url(PHOTO, width=150, cloud_name="other", use_root_path=True))).code == 404
    # the root path of a public ID in a folder named `images`: its version names no cloud (it had been a 404)
    hero = CloudinaryImage("images/hero").build_url(format="jpg", private_cdn=True, use_root_path=True, secure=True)
    assert hero.endswith(".cloudinary.com/v1/images/hero.jpg")
    assert size(await get(node, hero.split(".cloudinary.com", 1)[1])) == (40, 30)


async def test_the_query_does_not_add_a_transformation(node, bucket):
    assert (await get(node, url("logo.png") + "?tr=w-10")).body == bucket["logo/1600000000.png"]
    # nor ImageKit's download word: `fl_attachment` is Cloudinary's (it had added the header, Cloudinary probe)
    response = await get(node, url("logo.png") + "?ik-attachment=true")
    assert response.body == bucket["logo/1600000000.png"] and "Content-Disposition" not in response.headers


# --- what is refused --------------------------------------------------------------------------------------

UNSUPPORTED = [
    (dict(underlay="logo"), "u_logo"),
    # with nothing to multiply the factor changes nothing, but a word no URL with a size takes is no other URL's
    # spelling (each had been a cache entry of the whole image)
    (dict(transformation=[{"dpr": "abc"}]), "dpr_abc"),
    (dict(transformation=[{"effect": "grayscale", "dpr": "6.0"}]), "dpr_6.0"),
    (dict(transformation=[{"width": 100}, {"dpr": "abc"}, {"dpr": "2.0"}]), "dpr_abc"),  # only the last multiplies
    (dict(effect="cartoonify"), "e_cartoonify"),
    (dict(effect="hue:140"), "e_hue:140"),
    (dict(effect="brightness:-100"), "e_brightness:-100"),  # out of Cloudinary's range
    (dict(effect="pixelate:0"), "e_pixelate:0"),
    (dict(effect="negate:5"), "e_negate:5"),
    (dict(effect="shear:20:0"), "e_shear:20:0"),  # another effect's value: "effect not supported", not "takes no value"
    (dict(effect="distort:10p:10p:90p:0:100p:100p:0:90p"), "e_distort:10p:10p:90p:0:100p:100p:0:90p"),
    (dict(effect="distort:300:0:0:0:300:200:0:200"), "e_distort:300:0:0:0:300:200:0:200"),  # not clockwise
    (dict(effect="replace_color"), "e_replace_color"),  # the colour to replace with is required
    (dict(effect="replace_color:blue:120"), "e_replace_color:blue:120"),
    (dict(effect="contrast:120"), "e_contrast:120"),  # out of the sigmoidal level's range
    (dict(effect="contrast:level_0;type_linear"), "e_contrast:level_0;type_linear"),  # linear: 1–200
    (dict(effect="contrast:type_log"), "e_contrast:type_log"),
    (dict(effect="gamma:-60"), "e_gamma:-60"),
    (dict(effect="colorize:40", color="nosuchcolour"), "co_nosuchcolour"),
    (dict(effect="improve:sunny"), "e_improve:sunny"),
    (dict(effect="pixelate_region", x=0.5), "x_0.5"),  # a region in whole pixels
    (dict(effect="blur_region", gravity="north"), "g_north"),  # a region is a rectangle or the faces
    (dict(width=100, crop="imagga_crop"), "c_imagga_crop"),
    (dict(width="auto:50", crop="scale"), "w_auto:50"),
    (dict(width=100, height=100, crop="fill", zoom=0.5), "z_0.5"),
    (dict(fetch_format="jxl"), "f_jxl"),
    (dict(quality="auto:good:sensitive:x"), "q_auto:good:sensitive:x"),
    (dict(angle="auto_right"), "a_auto_right"),
    (dict(flags="tiled"), "fl_tiled"),
    (dict(color="red"), "co_red"),  # a colour for no effect of this node's
    (dict(transformation="nosuch"), "t_nosuch"),
    (dict(width=300, x=10, crop="fill"), "x_10"),
    # an overlay's offset from an edge is into the image: a negative one had been counted from the far edge
    (dict(overlay="avatar", gravity="north_west", x=-10), "x_-10"),
    (dict(aspect_ratio="1:1", crop="pad"), "ar_1:1"),
    (dict(width=400, height=400, crop="pad", background="auto:border_contrast"), "b_auto:border_contrast"),
    (dict(width=400, height=400, crop="auto"), "c_auto"),  # without its required gravity
    # c_pad places the image by a compass gravity: neither the faces nor the most interesting part place it
    (dict(width=400, height=400, crop="pad", gravity="face"), "g_face"),
    (dict(width=400, height=400, crop="pad", gravity="auto"), "g_auto"),
    (dict(width=400, height=400, crop="fill_pad", gravity="auto"), "c_fill_pad"),
    (dict(width=400, height=400, crop="auto_pad", gravity="auto"), "c_auto_pad"),
    (dict(transformation=[{"if": "page_count > 1", "effect": "blur"}]), "if_pc_gt_1"),
    (dict(transformation=[{"if": "w_gt_1000", "quality": 50}]), "if_w_gt_1000,q_50"),  # an output, chosen by size
    (dict(transformation=[{"if": "else", "width": 100}]), "if_else"),
    (dict(transformation=[{"if": "w_gt_1000"}, {"width": 100}]), "if_w_gt_1000"),  # no if_end
    (dict(transformation=[{"if": "w_gt_1000"}, {"if": "h_gt_10"}, {"if": "end"}]), "if_h_gt_10"),  # nested
]


async def test_unsupported_words_are_400s_naming_them(node):
    answers = [(await node.fetch(url(PHOTO, **options)), word) for options, word in UNSUPPORTED]
    assert [(word, response.code, response.body) for response, word in answers
            if response.code != 400 or not response.body.decode().startswith(f"invalid transformation: {word}: ")] == []


async def test_another_cloud_or_resource_type_is_not_found(node):
    assert (await node.fetch(url(PHOTO, cloud_name="other"))).code == 404
    assert (await node.fetch(url(PHOTO).replace("/image/", "/video/", 1))).code == 404
    assert (await node.fetch(url(PHOTO).replace("/upload/", "/private/", 1))).code == 404


# --- signed URLs --------------------------------------------------------------------------------------------

async def test_signed_urls(s3, bucket, cloud, node_factory, tmp_path):
    node = await node_factory(write_config(tmp_path, config(s3, "signed_only = true", ik="")))
    signed = url(PHOTO, width=120, crop="scale", sign_url=True)
    assert "/s--" in signed
    assert size(await get(node, signed)) == (120, 80)
    long_signed = url("shop/summer.sale/shoe", width=30, sign_url=True, long_url_signature=True, format="jpg")
    assert size(await get(node, long_signed)) == (30, 22)
    tampered = signed.replace("w_120", "w_121")
    refusals = [await node.fetch(tampered), await node.fetch(url(PHOTO, width=120, crop="scale")),
                await node.fetch(url(PHOTO, width=120, sign_url=True, api_secret="another"))]
    assert [(r.code, r.body) for r in refusals] == [
        (401, b"invalid signature\n"), (401, b"missing signature\n"), (401, b"invalid signature\n")]
    metrics = await scrape(node.url)  # counted as an ImageKit-style endpoint's refusals are
    assert total(metrics, "edge_signature_refusals_total", endpoint="default", reason="invalid") == 2
    assert total(metrics, "edge_signature_refusals_total", endpoint="default", reason="missing") == 1
    private = url("secret", type="private", sign_url=True, format="jpg")
    assert same_colour(centre_colour(decode(await get(node, private))), colour(4))


async def test_on_a_signed_only_endpoint_the_version_pins_nothing(s3, bucket, cloud, node_factory, tmp_path):
    """The version is not signed: on an endpoint that serves only signed URLs it selects nothing, as on
    Cloudinary, and the newest upload is served. It had pinned the backup's older upload, so a URL signed for
    the asset opened every image the asset had been (one replaced to take something down included)."""
    client = s3.client()
    client.put_object(Bucket=BUCKET, Key=DEMO + "shop/shoe/1570979139.jpg", Body=solid(40, 30, colour(11)))
    client.put_object(Bucket=BUCKET, Key=DEMO + "shop/shoe/1700000000.jpg", Body=solid(40, 30, colour(22)))
    node = await node_factory(write_config(tmp_path, config(s3, "signed_only = true", ik="")))
    for version in ("1570979139", "1700000000", None):
        signed = url("shop/shoe", width=20, sign_url=True, format="jpg", version=version)
        assert same_colour(centre_colour(decode(await get(node, signed))), colour(22)), signed
    pinned = url("shop/shoe", width=20, format="jpg", version="1570979139")  # unsigned, elsewhere: pins
    (tmp_path / "open").mkdir()
    open_node = await node_factory(write_config(tmp_path / "open", config(s3, ik="")))
    assert same_colour(centre_colour(decode(await get(open_node, pinned))), colour(11))


async def test_signed_overlays_and_defaults_verify_as_a_browser_sends_what_the_sdk_wrote(s3, bucket, cloud,
                                                                                            node_factory, tmp_path):
    """The SDK signs and writes the components as given, `l_brand:my badge é` with its space and `é`; a
    browser sends them escaped (`my%20badge%20%C3%A9`), which the node had refused as an invalid signature.
    The public ID is signed escaped, as the SDK writes it."""
    s3.client().put_object(Bucket=BUCKET, Key=DEMO + "brand/my badge é/1600000000.png",
                           Body=solid(50, 50, (255, 0, 0), "png"))
    node = await node_factory(write_config(tmp_path, config(s3, "signed_only = true", ik="")))
    for options in ({"overlay": "brand:my badge é", "gravity": "north_west"},
                    {"default_image": "brand:my badge é.png"}):
        written = url(PHOTO, width=300, crop="scale", sign_url=True, format="jpg", **options)
        assert " " in written  # as the SDK writes it
        sent = quote(written, safe="/:,@!$&'()*+;=-._~%")  # as a browser sends it
        image = decode(await get(node, sent))
        if "overlay" in options:  # `w_300` sizes the badge, in its component: drawn 300 px wide on the photo
            assert image.width == 3000 and same_colour(centre_colour(image.crop(0, 0, 300, 300)), (255, 0, 0))
        else:  # the original is there: no default needed
            assert image.width == 300
        refused = await node.fetch(sent.replace("badge", "badges"))
        assert (refused.code, refused.body) == (401, b"invalid signature\n")


def test_a_cloudinary_style_endpoint_may_be_both_signed_only_and_named_only(s3, tmp_path):
    """Only an ImageKit-style endpoint refuses the pair (docs/configuration.md)."""
    loaded = load_config(write_config(tmp_path, config(s3, "signed_only = true\nnamed_only = true")), load_plugins())
    assert (loaded.endpoints[0].signed_only, loaded.endpoints[0].named_only) == (True, True)


async def test_named_only_accepts_t_and_signed_urls(s3, bucket, cloud, node_factory, tmp_path):
    node = await node_factory(write_config(tmp_path, config(s3, "named_only = true")))
    assert size(await get(node, url(PHOTO, transformation="card"))) == (120, 80)
    assert size(await get(node, url(PHOTO, width=60, sign_url=True))) == (60, 40)
    for options, word in ((dict(width=60), b"w_60"), (dict(transformation=[{"dpr": "2.0"}]), b"dpr_2.0")):
        refused = await node.fetch(url(PHOTO, **options))
        assert (refused.code, refused.body) == (
            400, b"invalid transformation: " + word + b": this endpoint accepts only named transformations "
                 b"(t_<name>)\n")
    # a chain, as components or as the SDKs write a list of names (unsigned, `t_card.card.card…` had made any
    # number of renders of one name)
    for chain, word in (([{"transformation": "card"}, {"transformation": "card"}], b"t_card"),
                        (["card", "card"], b"t_card.card")):
        chained = await node.fetch(url(PHOTO, transformation=chain))
        refusal = b": this endpoint serves one named transformation (t_<name>) at a time, not a chain of them\n"
        assert (chained.code, chained.body) == (400, b"invalid transformation: " + word + refusal)


async def test_a_watermarked_endpoint_marks_an_untransformed_url_too(s3, bucket, cloud, node_factory, tmp_path):
    """A URL without components is the stored original's bytes, but not on an endpoint with a watermark:
    those are the image without it (it had been served so, to anyone asking for the plain URL)."""
    watermark = 'watermark = "l-image,i-image@@upload@@avatar.png,w-40,lx-N0,ly-N0,l-end"'
    node = await node_factory(write_config(tmp_path, config(s3, watermark)))
    stored = bucket["shop/summer.sale/shoe/1700000000.jpg"]
    for path in (url("shop/summer.sale/shoe", format="jpg"), url("shop/summer.sale/shoe"),
                 url("shop/summer.sale/shoe", format="png")):
        response = await get(node, path)
        image = decode(response)
        assert (image.width, image.height) == (400, 300) and response.body != stored
        assert close(pixel(image, 395, 295), colour(3)) and close(pixel(image, 200, 150), colour(2)), path
    assert loader(response) == "pngload"


async def test_private_assets_need_a_signed_only_endpoint(node):
    assert (await node.fetch(url("secret", type="private", sign_url=True, format="jpg"))).code == 404


def test_private_and_authenticated_urls_are_read_on_signed_only_endpoints_alone(cloud):
    """Refused when the URL is read, not only by the origin: 404 on an endpoint that also serves unsigned URLs."""
    from edge.cloudinary_urls import read
    from edge.errors import NothingToServe

    def served(kind: str, signed_only: bool) -> str:
        path = url("secret", type=kind, sign_url=True, format="jpg").lstrip("/").split("/")
        return read(path, lambda s: s, frozenset({"demo"}), (API_SECRET,), signed_only=signed_only, named={},
                    named_only=False).path
    for kind in ("private", "authenticated"):
        assert served(kind, signed_only=True) == f"image/{kind}/secret.jpg"
        with pytest.raises(NothingToServe):
            served(kind, signed_only=False)


async def test_private_assets_are_not_served_by_an_origin_that_an_unsigned_endpoint_uses(
        s3, bucket, cloud, node_factory, tmp_path):
    """An ordinary endpoint over the backup (docs/cloudinary-backup.md) had served Cloudinary's `private` assets,
    which Cloudinary serves to signed URLs only, to anyone: `/image/private/secret.jpg`. Outputs are cached by
    URL, not by signature: a `signed_only` endpoint sharing the origin with it gets none either."""
    node = await node_factory(write_config(tmp_path, config(s3, "signed_only = true")))
    private = ["/ik/image/private/secret.jpg", "/ik/tr:w-10/image/private/v1600000000/secret.jpg",
               "/ik/image/authenticated/secret.jpg", url("secret", type="private", sign_url=True, format="jpg")]
    for path in private:
        response = await node.fetch(path)
        assert (response.code, response.body) == (404, b"not found\n"), path
    layered = await node.fetch("/ik/tr:l-image,i-image@@private@@secret.jpg,l-end/image/upload/avatar.png")
    assert (layered.code, layered.body) == (400, b"invalid transformation: i-image/private/secret.jpg: "
                                                 b"no such image on this endpoint\n")
    assert size(await get(node, "/ik/image/upload/avatar.png")) == (50, 50)
    assert not [call for call in s3.calls if "/private/" in call.key or "private/" in str(call.query)]


def test_a_backup_origin_no_endpoint_uses_serves_no_private_asset(s3, tmp_path):
    """An origin serves `private` and `authenticated` assets only when the endpoints using it are all `signed_only`;
    one no endpoint lists (kept for later, or a rename half done) has none to be signed: `check-config` is not to
    say that it serves them."""
    unused = s3.origin_table("Unused backup", BUCKET, type="cloudinary_backup", folder="/res/demo/")
    loaded = load_config(write_config(tmp_path, config(s3, "signed_only = true", ik="") + unused), load_plugins())
    serving = {origin.name: origin.serves_signed_types for origin in loaded.origins}
    assert serving == {"Cloudinary backup": True, "Unused backup": False}
    assert [origin["serves_signed_types"] for origin in loaded.describe()["origins"]] == [True, False]


def test_the_docs_print_the_mapping_table():
    docs = (Path(__file__).resolve().parent.parent / "docs" / "leaving-cloudinary.md").read_text()
    assert mapping_markdown() in docs


async def test_cloudinary_check(s3, bucket, cloud, node, tmp_path):
    urls = tmp_path / "urls.txt"
    urls.write_text("\n".join([
        "http://res.cloudinary.com" + url(PHOTO, width=300, crop="fill", format="jpg"),
        "https://img.acme.test" + url("logo.png"),
        "# a comment",
        "http://res.cloudinary.com" + url(PHOTO, underlay="badge", format="jpg"),
        "http://res.cloudinary.com" + url("logo", effect="cartoonify", format="png"),
        "http://res.cloudinary.com" + url("logo", underlay="badge", width=20, format="png"),
        "http://res.cloudinary.com" + url(PHOTO, cloud_name="other"),
        "http://res.cloudinary.com" + url("no/such/asset", width=20, format="jpg"),
        "https://[::1" + url(PHOTO),  # an IPv6 host without its `]`: no request could carry it
        "res.cloudinary.com" + url(PHOTO),  # no scheme: had been read as a path of the default endpoint, "OK"
        # spaces as a CMS export writes them: http.client refused the request line, and the run ended in a traceback
        "https://res.cloudinary.com/demo/image/upload/w_20/v1/my folder/crème brûlée.jpg",
        # a document Cloudinary delivers as an asset, which the node reads as none: had been "OK"
        "https://res.cloudinary.com/demo/image/upload/docs/manual.PDF",
    ]) + "\n")
    config_path = tmp_path / "edge.toml"  # the node's own config, written by the fixture
    command = [sys.executable, "-m", "edge", "cloudinary-check", "--config", str(config_path), "--urls", str(urls)]
    offline = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=60)
    assert offline.returncode == 1, offline.stderr
    assert offline.stdout.count("\nOK ") + offline.stdout.startswith("OK ") == 4  # the missing asset parses
    assert "unsupported words (URLs):\n  u_badge  2\n  e_cartoonify  1\n" in offline.stdout
    assert "  404 not found  1\n" in offline.stdout
    assert "  400 not a URL (Invalid IPv6 URL)  1\n" in offline.stdout
    assert "  400 not a URL: write it whole (https://…) or as a path starting with /  1\n" in offline.stdout
    assert "  .pdf  1\n" in offline.stdout
    assert "11 URLs: 4 served, 7 not" in offline.stdout

    online = await asyncio.to_thread(subprocess.run, [*command, "--base-url", node.url], capture_output=True,
                                     text=True, timeout=120)
    assert "fetched: OK jpeg 300x200" in online.stdout
    assert "fetched: OK png 256x256" in online.stdout
    assert "fetched: FAILED 404" in online.stdout
    assert "fetched: OK jpeg 20x15" in online.stdout
    assert "11 URLs: 3 served, 8 not" in online.stdout, online.stdout + online.stderr
    # those that parse but fail on the asset are summed too: a long list's summary had left them out
    assert "failed when fetched (URLs):\n  404 not found  1\n" in online.stdout, online.stdout


async def test_cloudinary_check_decodes_each_answer_whole(node, tmp_path):
    """A server answering a JPEG cut in half (not the node: it refuses one, 422) had been reported "OK": its
    header alone was read."""
    photo, gif = solid(400, 300, colour(2)), animated_gif(10)
    heic = heic_bytes(pyvips.Image.new_from_buffer(photo, ""))  # whole: decoded as the node does (libvips has no HEVC)
    server = await HTTPOrigin(files={"demo/image/upload/half.jpg": photo[:len(photo) // 2],
                                     "demo/image/upload/whole.jpg": photo, "demo/image/upload/phone": heic,
                                     "demo/image/upload/half.gif": gif[:len(gif) * 2 // 3]}).start()
    try:
        urls = tmp_path / "urls.txt"
        urls.write_text("".join(f"https://res.cloudinary.com/demo/image/upload/{name}\n"
                                for name in ("half.jpg", "whole.jpg", "phone", "half.gif")))
        command = [sys.executable, "-m", "edge", "cloudinary-check", "--config", str(tmp_path / "edge.toml"),
                   "--urls", str(urls), "--base-url", server.url]
        online = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=60)
        assert "half.jpg\n    fetched: FAILED the answer is cut short" in online.stdout, online.stdout
        assert "whole.jpg\n    fetched: OK jpeg 400x300" in online.stdout, online.stdout
        assert "phone\n    fetched: OK heif 400x300" in online.stdout, online.stdout  # as stored, no extension
        assert "half.gif\n    fetched: FAILED the answer is cut short" in online.stdout, online.stdout
    finally:
        await server.stop()


@pytest.mark.parametrize("path", ["/demo/image/upload/..%5C..%5Cadmin.jpg", "/demo/image/upload/w_20/v1/a%5C..%5C..%5Cadmin.jpg",
                                  "/demo/image/upload/.%5Cadmin.jpg"])
async def test_a_backslash_dot_segment_never_reaches_a_web_fallback(s3, bucket, cloud, node_factory, tmp_path, path):
    """An ImageKit-style path's rule: a server on Windows reads `..%5C` as `../`. A Cloudinary path checked only
    for NUL, and `..\\..\\admin.jpg` was asked of the web fallback, outside its base URL."""
    fallback = await HTTPOrigin(files={"admin.jpg": solid(40, 30, colour(1))}).start()
    try:
        node = await node_factory(write_config(tmp_path, f"""
{s3.origin_table("Cloudinary backup", BUCKET, type="cloudinary_backup", folder="/res/demo/")}
[[origins]]
name = "Cloudinary (fallback)"
type = "web"
base_url = "{fallback.url}/res/demo"

[[endpoints]]
id = ""
origins = ["Cloudinary backup", "Cloudinary (fallback)"]
url_style = "cloudinary"
"""))
        response = await node.fetch(path)
        assert (response.code, response.body) == (404, b"not found\n")
        assert sum(fallback.requests.values()) == 0
    finally:
        await fallback.stop()


async def test_cloudinary_check_fetches_with_the_url_s_host(s3, bucket, cloud, node_factory, tmp_path):
    """A Cloudinary endpoint chosen by its `hosts`, beside a default ImageKit one: the check routed by the URL's
    host and then fetched without it, from the default endpoint (served offline, 404 online)."""
    config_path = write_config(tmp_path, f"""
{s3.origin_table("Cloudinary backup", BUCKET, type="cloudinary_backup", folder="/res/demo/")}
[[endpoints]]
id = ""
origins = ["Cloudinary backup"]

[[endpoints]]
id = "cld"
hosts = ["img.acme.test"]
origins = ["Cloudinary backup"]
url_style = "cloudinary"
""")
    node = await node_factory(config_path)
    urls = tmp_path / "urls.txt"
    urls.write_text("https://img.acme.test" + url(PHOTO, width=300, crop="scale", format="jpg") + "\n")
    command = [sys.executable, "-m", "edge", "cloudinary-check", "--config", str(config_path), "--urls", str(urls),
               "--base-url", node.url]
    online = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=60)
    assert "fetched: OK jpeg 300x200" in online.stdout and "1 URLs: 1 served, 0 not" in online.stdout, online.stdout


@pytest.mark.parametrize("path, components, origin_path", [
    ("demo/image/upload/w_300,c_fill/f_auto/products/shoe.jpg", ("w_300,c_fill", "f_auto"),
     "image/upload/products/shoe.jpg"),
    ("demo/image/upload/w_300/my_photos/shoe.jpg", ("w_300",), "image/upload/my_photos/shoe.jpg"),  # `my` is no key
    ("demo/image/upload/w_300/v12/w_10/shoe", ("w_300",), "image/upload/v12/w_10/shoe"),  # after v: public ID
    ("demo/image/upload/v12.jpg", (), "image/upload/v12.jpg"),  # the last segment is the public ID
    ("demo/image/upload/s--abcdefgh--/l_x/a/b.c.png", ("l_x",), "image/upload/a/b.c.png"),
    # a key the node does not serve (bl_: a baseline) is still a component, named by its 400
    ("demo/image/upload/bl_base/w_300/v1/a/b.jpg", ("bl_base", "w_300"), "image/upload/v1/a/b.jpg"),
    ("demo/image/upload/w_300/shop/v2/boot.jpg", ("w_300",), "image/upload/shop/v2/boot.jpg"),  # v2: a folder
    # the last segment is the public ID even when it reads as a component (a file named `ar_2023.jpg`)
    ("demo/image/upload/w_300/ar_2023.jpg", ("w_300",), "image/upload/ar_2023.jpg"),
])
def test_split_path(path, components, origin_path):
    from edge.cloudinary_urls import split_path
    split = split_path(path.split("/"), lambda segment: segment)
    assert (split.components, split.origin_path) == (components, origin_path)


def test_an_extension_names_the_output_format_in_any_case():
    """`shoe.JPG`, as cameras and some CMSs name files: a JPEG, as `shoe.jpg` is."""
    from edge.cloudinary_urls import split_path
    for extension, output in (("JPG", "jpg"), ("Png", "png"), ("webp", "webp")):
        split = split_path(f"demo/image/upload/w_100/shoe.{extension}".split("/"), lambda segment: segment)
        assert (split.public_id, split.extension_format) == (f"shoe.{extension}", output), extension


def test_a_transformation_longer_than_the_node_takes_is_refused_before_it_is_translated():
    """As the node's own form: 400 naming the limit, not a translation of every component whose 400 quotes them all
    (48 kB of components had made a 51 kB answer: a mutation audit)."""
    from edge.cloudinary_urls import translate
    from edge.errors import InvalidTransformation
    with pytest.raises(InvalidTransformation) as raised:
        translate(("w_10",) * 700, {}, named_only=False)
    assert str(raised.value).endswith("longer than 2000 characters") and len(str(raised.value)) < 120


#: Cloudinary words whose translation no image shows apart (a face-less photo, a value at a bound, a side left out)
TRANSLATIONS = [
    ("e_blur_faces", "e-blurfaces-25"),  # Cloudinary's default strength, 500 of 2000
    ("e_pixelate_region", "e-pixelate-5"),  # Cloudinary's default squares, 5 px
    ("e_blur:2000", "bl-100"),  # the strongest blur Cloudinary takes is ours
    ("e_sharpen:2000", "e-sharpen-100"),
    ("r_10:20:30", "r-10_20_30_20"),  # as CSS: the bottom left takes the top right's radius
    ("c_fill,ar_1.5,w_300", "w-300,ar-1.5-1"),  # a decimal ratio is width over height
    ("b_rgb:FF0000FF,c_pad,w_300,h_300", "w-300,h-300,cm-pad_resize,bg-FF0000"),  # alpha FF: opaque, not 99 %
    ("e_blur_region,x_10,w_300", "bl-5,e-region-10_0_300_65500"),  # the side not given: to the image's edge
    ("e_pixelate_region,y_20,h_100", "e-pixelate-5,e-region-0_20_65500_100"),
    ("w_300,e_contrast", "w-300"),  # the default level changes nothing: no cache entry of its own
    # a text's opacity to the nearest tenth; placed in the middle, Cloudinary's default gravity
    ("l_text:DejaVuSans_20:hi,o_55", "l-text,i-hi,fs-20,al-6,lxc-bw_div_2,lyc-bh_div_2,l-end"),
    # Cloudinary's line spacing is between the lines, ours from one line's top to the next's
    ("l_text:DejaVuSans_20_line_spacing_10:hi", "l-text,i-hi,fs-20,lh-30,lxc-bw_div_2,lyc-bh_div_2,l-end"),
]


@pytest.mark.parametrize("words, ours", TRANSLATIONS)
def test_defaults_bounds_and_sides_left_out_translate_as_the_mapping_says(words, ours):
    from edge.cloudinary_urls import translate
    from edge.transform.options import parse_transformation
    assert translate((words,), {}, False).canonical() == parse_transformation(ours).canonical()


def test_a_key_given_twice_in_one_component_is_a_400_naming_the_second():
    """`w_100,w_200`: which one Cloudinary applies is not for the node to guess (the last had silently won)."""
    from edge.cloudinary_urls import translate
    from edge.errors import InvalidTransformation
    with pytest.raises(InvalidTransformation) as raised:
        translate(("c_scale,w_100,w_200",), {}, False)
    assert str(raised.value) == "invalid transformation: w_200: w_ given twice in one component"


def test_a_purge_names_origin_paths():
    from edge.cloudinary_urls import read
    def purge(path):
        return read(path.split("/"), lambda s: s, frozenset({"demo"}), (), signed_only=False, named={},
                    named_only=False, prefix=True).path
    assert purge("demo/image/upload/c_fill,w_300/v1/products/shoe.jpg") == "image/upload/v1/products/shoe.jpg"
    assert purge("demo/image/upload/products/") == "image/upload/products/"
    assert purge("demo/images/w_300/v1/products/shoe/red-shoe.jpg") == "image/upload/v1/products/shoe.jpg"  # SEO
    assert purge("demo/w_300/v1/products/shoe.jpg") == "image/upload/v1/products/shoe.jpg"  # root path
    assert purge("demo/products/") == purge("demo/images/products/") == "image/upload/products/"
    assert purge("demo/iu/w_300/v1/products/shoe.jpg") == purge("iu/v1/products/shoe.jpg") \
        == purge("images/w_300/v1/products/shoe/red-shoe.jpg") == "image/upload/v1/products/shoe.jpg"  # short forms
    assert purge("demo/iu/products/") == "image/upload/products/"


def test_seo_urls_are_signed_as_the_sdks_sign_them(cloud):
    """The SDKs sign `<components>/<public_id>.<ext>`: not the SEO name, nor the version; a plain URL's
    signature does not carry over to the SEO form, where it would name another public ID."""
    from edge.cloudinary_urls import read
    from edge.errors import SignatureRefused

    def served(url: str) -> str:
        path = url.removeprefix("http://res.cloudinary.com/").split("/")
        return read(path, lambda s: s, frozenset({"demo"}), (API_SECRET,), signed_only=True, named={},
                    named_only=True).path
    options = dict(width=300, crop="scale", sign_url=True, format="jpg")
    # (the SDK's `v1` pins nothing on a signed_only endpoint)
    seo = CloudinaryImage("shop/shoe").build_url(url_suffix="red-shoe", **options)
    assert served(seo) == "image/upload/shop/shoe.jpg"
    plain = CloudinaryImage("shop/shoe").build_url(**options)
    assert served(plain) == "image/upload/shop/shoe.jpg"
    with pytest.raises(SignatureRefused):
        served(plain.replace("/image/upload/", "/images/"))


def test_signatures_cover_the_escaped_public_id(cloud):
    from edge.config import Endpoint
    from edge.errors import Unauthorized
    from edge.routing import Router
    from edge.settings import Secret

    router = Router((Endpoint(id="", origins=(Backup(),), url_style="cloudinary", private_key=Secret(API_SECRET),
                              signed_only=True),))
    signed = url("shop/ü shoe+1 (2)", width=50, sign_url=True, format="jpg")
    assert "%C3%BC%20shoe" in signed
    assert router.route("", signed).path == "image/upload/shop/ü shoe+1 (2).jpg"  # signed_only: no version
    with pytest.raises(Unauthorized):
        router.route("", signed.replace("shoe", "shoes"))


def test_a_signature_is_compared_whole_and_at_its_full_length(cloud):
    """A signature one character off (its last), or cut short, is refused: compared on a prefix, or read at any
    length up to 8, a forger had had to guess a character or two of it (one in 64 for one)."""
    from edge.cloudinary_urls import read
    from edge.errors import SignatureRefused

    def served(url: str) -> str:
        return read(url.lstrip("/").split("/"), lambda s: s, frozenset({"demo"}), (API_SECRET,), signed_only=True,
                    named={}, named_only=False).path
    signed = url("shop/shoe", width=300, crop="scale", sign_url=True, format="jpg")
    assert served(signed) == "image/upload/shop/shoe.jpg"
    given = signed.split("/s--")[1].split("--/")[0]
    assert len(given) == 8
    other = "A" if given[-1] != "A" else "B"
    for forged, reason in [(given[:-1] + other, "invalid"), (given[:1], "missing"), (given[:4], "missing"),
                           (given[:7], "missing")]:
        with pytest.raises(SignatureRefused) as refused:
            served(signed.replace(f"/s--{given}--/", f"/s--{forged}--/"))
        assert str(refused.value) == f"{reason} signature", forged


def test_short_signatures_of_sha256_verify_as_those_of_sha1(cloud):
    """The SDKs sign with SHA-256 under `signature_algorithm = "sha256"`, 8 characters as with SHA-1, and Cloudinary
    takes either ("you can use either": delivery URL signatures); such URLs had all been a 401 (Cloudinary probe)."""
    from edge.config import Endpoint
    from edge.errors import Unauthorized
    from edge.routing import Router
    from edge.settings import Secret

    router = Router((Endpoint(id="", origins=(Backup(),), url_style="cloudinary", private_key=Secret(API_SECRET),
                              signed_only=True),))
    for options in ({}, {"signature_algorithm": "sha256"}, {"long_url_signature": True}):
        signed = url("shop/ü shoe", width=50, sign_url=True, format="jpg", **options)
        assert router.route("", signed).path == "image/upload/shop/ü shoe.jpg", options
        with pytest.raises(Unauthorized):
            router.route("", url("shop/ü shoe", width=50, sign_url=True, format="jpg", api_secret="never-ours",
                                 **options))
    sha1, sha256 = (url("shop/shoe", width=50, sign_url=True, signature_algorithm=name) for name in ("sha1", "sha256"))
    assert len({sha1.split("--")[1], sha256.split("--")[1]}) == 2 and len(sha256.split("--")[1]) == 8


def test_urls_signed_with_a_previous_private_key_verify_during_a_rotation(cloud):
    """After the API secret is rotated, the URLs already on pages (signed with the old one, now in
    `previous_private_keys`) still verify; a key the endpoint never had does not."""
    from edge.config import Endpoint
    from edge.errors import Unauthorized
    from edge.routing import Router
    from edge.settings import Secret

    router = Router((Endpoint(id="", origins=(Backup(),), url_style="cloudinary", private_key=Secret("rotated-new"),
                              previous_private_keys=(Secret(API_SECRET),), signed_only=True),))
    for secret in ("rotated-new", API_SECRET):
        signed = url("shop/shoe", width=50, sign_url=True, format="jpg", api_secret=secret)
        assert router.route("", signed).path == "image/upload/shop/shoe.jpg", secret
    with pytest.raises(Unauthorized):
        router.route("", url("shop/shoe", width=50, sign_url=True, format="jpg", api_secret="never-ours"))


def test_without_a_private_key_a_signature_makes_no_url_signed(cloud):
    """An endpoint with no `private_key` checks no signature, so none counts: on a `named_only` one, a made-up
    `s--…--` had opened any transformation (`w_4000`) to everyone."""
    from edge.cloudinary_urls import NAMED_ONLY, read
    from edge.errors import InvalidTransformation

    def served(path: str):
        return read(path.split("/"), lambda s: s, frozenset({"demo"}), (), signed_only=False,
                    named={"card": "w-120"}, named_only=True)
    assert served("demo/image/upload/s--abcdefgh--/t_card/shop/shoe.jpg").path == "image/upload/shop/shoe.jpg"
    with pytest.raises(InvalidTransformation) as refused:
        served("demo/image/upload/s--abcdefgh--/w_4000/shop/shoe.jpg")
    assert (refused.value.param, refused.value.message) == ("w_4000", f"invalid transformation: w_4000: {NAMED_ONLY}")


def test_the_checker_reads_only_cloudinary_s_own_host_names_as_cloudinary_s():
    """`res.cloudinary.com` and `<cloud>-res.cloudinary.com` route by path alone; a look-alike
    (`notcloudinary.com`) is a host of its own, routed by its name."""
    from urllib.parse import urlsplit

    from edge.cloudinary_check import _host
    assert _host(urlsplit("https://res.cloudinary.com/demo/image/upload/a.jpg")) == ""
    assert _host(urlsplit("https://demo-res.cloudinary.com/image/upload/a.jpg")) == ""
    assert _host(urlsplit("https://notcloudinary.com/demo/image/upload/a.jpg")) == "notcloudinary.com"
    assert _host(urlsplit("https://res.notcloudinary.com:8443/a.jpg")) == "res.notcloudinary.com:8443"


def test_the_checker_refuses_a_url_that_reaches_an_endpoint_of_another_style(cloud):
    """A URL whose host routes it to an ImageKit-style endpoint is not served as Cloudinary's: a 404 naming why,
    not "OK" (that endpoint reads `w_300` as a folder)."""
    from edge.cloudinary_check import Verdict, check_url
    from edge.config import Endpoint
    from edge.routing import Router

    router = Router((Endpoint(id="", origins=(Backup(),), url_style="cloudinary"),
                     Endpoint(id="ik", origins=(Backup(),), hosts=("img.acme.test",))))
    path = url(PHOTO, width=300, crop="fill", format="jpg")
    assert check_url(router, "https://res.cloudinary.com" + path) == Verdict("https://res.cloudinary.com" + path)
    assert check_url(router, "https://img.acme.test" + path) == Verdict(
        "https://img.acme.test" + path, 404, 'the endpoint it reaches does not have url_style = "cloudinary"')


def test_the_checker_reads_at_most_max_urls_lines(cloud, monkeypatch):
    """`MAX_URLS` lines are read, comments and blank lines counted, and not one more."""
    from types import SimpleNamespace

    from edge import cloudinary_check
    from edge.config import Endpoint

    monkeypatch.setattr(cloudinary_check, "MAX_URLS", 3)
    endpoint = Endpoint(id="", origins=(Backup(),), url_style="cloudinary")
    config = SimpleNamespace(endpoints=(endpoint,), named_transformations={})
    lines = ["# an export", *(url(f"shoe{n}", width=10, format="jpg") for n in range(3))]
    verdicts, report = cloudinary_check.check(config, lines)
    assert [v.url for v in verdicts] == [url("shoe0", width=10, format="jpg"), url("shoe1", width=10, format="jpg")]
    assert report.endswith("\n2 URLs: 2 served, 0 not\n"), report


async def test_fl_attachment_is_a_download_of_the_same_image(node):
    """`fl_attachment[:<name>]`, as the SDK writes it: `Content-Disposition: attachment`, named after the
    public ID (or the name) with the extension of what is sent, and the same cached image as without the
    flag; a second request, answered from the memory tier below `tornado.web`, says so too."""
    download = url(BALLOON_PHOTO, width=300, crop="scale", format="jpg", flags="attachment")
    named = url(BALLOON_PHOTO, width=300, crop="scale", fetch_format="webp", flags="attachment:summer_sky")
    assert "fl_attachment," in download and "fl_attachment:summer_sky," in named
    as_jpeg = "attachment; filename=\"balloon.jpg\"; filename*=UTF-8''balloon.jpg"
    as_webp = "attachment; filename=\"summer_sky.webp\"; filename*=UTF-8''summer_sky.webp"
    answers = [await get(node, download), await get(node, named, accept="image/webp")]
    plain = await get(node, url(BALLOON_PHOTO, width=300, crop="scale", format="jpg"))
    answers += [await get(node, download), await get(node, named, accept="image/webp")]
    assert [(a.headers["X-Cache"], a.headers["Content-Disposition"], loader(a), size(a)) for a in answers] == [
        ("MISS", as_jpeg, "jpegload", (300, 200)), ("MISS", as_webp, "webpload", (300, 200)),
        ("HIT", as_jpeg, "jpegload", (300, 200)), ("HIT", as_webp, "webpload", (300, 200))]
    assert (plain.headers["X-Cache"], "Content-Disposition" in plain.headers, plain.body) == \
        ("HIT", False, answers[0].body)


@pytest.mark.parametrize("auto_format", [False, True])
async def test_a_url_whose_only_components_are_headers_is_the_stored_image(s3, bucket, cloud, node_factory, tmp_path,
                                                                          auto_format):
    """`fl_attachment`, `fl_immutable_cache` alone (as the SDK writes `flags="attachment"` with nothing else) change
    headers, not the image: the stored bytes, as the URL without components, one entry for every browser. They had
    been re-encoded, a render and an entry of their own, and with `auto_format` one per browser; a URL without
    components had been one entry per browser under `auto_format`, with `Vary: Accept` (Cloudinary probe)."""
    before = "[defaults]\nauto_format = true\n" if auto_format else ""
    node = await node_factory(write_config(tmp_path, before + config(s3)))
    stored = s3.client().get_object(Bucket=BUCKET, Key=f"{DEMO}{BALLOON_PHOTO}/1700000000.jpg")["Body"].read()
    plain = url(BALLOON_PHOTO, format="jpg")
    for path in (plain, url(BALLOON_PHOTO, format="jpg", flags="attachment"),
                 plain.replace("/upload/", "/upload/fl_attachment.immutable_cache/")):
        answers = [await get(node, path, accept=accept) for accept in ("image/avif,image/webp,*/*", "image/jpeg")]
        assert [(a.body == stored, "Vary" in a.headers, a.headers["X-Cache"]) for a in answers] == \
            [(True, False, "MISS" if path == plain else "HIT"), (True, False, "HIT")], path
    assert "attachment" in answers[0].headers["Content-Disposition"]


async def test_pg_is_a_frame_of_an_animation(node, s3_server):
    """`pg_N`, as the SDK writes `page=N`: that frame as a still image; a range is a 400 naming the word."""
    s3_server.client().put_object(Bucket=BUCKET, Key=DEMO + "banners/spin/1700000000.gif", Body=animated_gif(5))
    frames = [await get(node, url("banners/spin", page=page, format="png")) for page in (1, 2, 5)]
    assert [(loader(frame), centre_colour(frame.body)) for frame in frames] == \
        [("pngload", ANIMATION_COLOURS[page - 1]) for page in (1, 2, 5)]
    refused = await node.fetch(url("banners/spin", page="2-4", format="png"))
    assert (refused.code, refused.body.decode().split(": ")[1]) == (400, "pg_2-4")


async def test_a_phones_heic_in_the_backup_is_delivered_in_the_urls_format(node, s3_server, photos, heic_photo):
    """A team's uploads from phones, backed up as HEIC: delivered as the URL's extension or `f_auto` says."""
    s3_server.client().put_object(Bucket=BUCKET, Key=DEMO + "uploads/phone/1700000000.heic",
                                  Body=photos.read(heic_photo))
    jpeg = await get(node, url("uploads/phone", width=300, crop="scale", format="jpg"))
    auto = await get(node, url("uploads/phone", width=300, crop="scale", fetch_format="auto"), accept="image/webp")
    assert [(loader(answer), size(answer), marker_corner(decode(answer))) for answer in (jpeg, auto)] == \
        [("jpegload", (300, 200), "top_left"), ("webpload", (300, 200), "top_left")]


async def test_cs_srgb_and_no_cmyk_are_what_the_node_does_anyway(node, s3_server):
    """`cs_srgb`, `cs_tinysrgb`, `cs_no_cmyk`: an sRGB image, a CMYK original converted; the same cached
    output as without the word. Keeping CMYK or another profile is a 400 naming the word."""
    s3_server.client().put_object(Bucket=BUCKET, Key=DEMO + "print/flyer/1700000000.jpg", Body=cmyk_jpeg(True))
    plain = await get(node, url("print/flyer", width=40, crop="scale", format="jpg"))
    answers = [await get(node, url("print/flyer", width=40, crop="scale", format="jpg", color_space=space))
               for space in ("srgb", "tinysrgb", "no_cmyk")]
    image = decode(plain)
    assert (image.bands, image.interpretation, image.get_typeof("icc-profile-data")) == (3, "srgb", 0)
    assert [(a.headers["X-Cache"], a.body) for a in answers] == [("HIT", plain.body)] * 3
    refused = await node.fetch(url("print/flyer", width=40, crop="scale", format="jpg", color_space="keep_cmyk"))
    assert (refused.code, refused.body.decode().split(": ")[1]) == (400, "cs_keep_cmyk")


@pytest.mark.parametrize("flag", ["any_format", "preserve_transparency", "strip_profile", "force_strip"])
async def test_flags_asking_for_what_the_node_does_anyway_keep_their_urls_working(node, flag):
    """`fl_any_format` and `fl_preserve_transparency` (with `f_auto`), `fl_strip_profile`, `fl_force_strip`:
    the same cached image as without the flag (they were a 400), transparent where the original is, with
    neither profile nor metadata. On the 12 MP photo as a JPEG and as a PNG cut out, and on a logo."""
    for public_id, accept, expected in ((BALLOON_PHOTO, "image/jpeg", ("jpegload", 3)),
                                        (CUTOUT_PHOTO, "image/png", ("pngload", 4)),
                                        ("logo", "image/webp,image/png", ("webpload", 4))):
        plain = await get(node, url(public_id, width=300, crop="scale", fetch_format="auto"), accept=accept)
        flagged = await get(node, url(public_id, width=300, crop="scale", fetch_format="auto", flags=flag),
                            accept=accept)
        assert (flagged.code, flagged.headers["X-Cache"], flagged.body) == (200, "HIT", plain.body)
        image = decode(flagged)
        assert (loader(flagged), image.bands, image.width) == (*expected, 300)
        assert [image.get_typeof(field) for field in ("icc-profile-data", "exif-data", "xmp-data")] == [0, 0, 0]
        if public_id == CUTOUT_PHOTO:  # transparent around the middle, as the original
            assert (image(5, 5)[3], image(150, image.height // 2)[3]) == (0, 255)


async def test_colour_effects_on_the_12_megapixel_photos(node):
    """`e_brightness`, `e_saturation`, `e_sepia`, `e_negate`, `e_vibrance`, `e_blackwhite`, `e_pixelate`,
    `e_unsharp_mask`, `e_improve`, `e_auto_color`, `e_gamma`, `e_contrast`'s levels, `e_colorize`,
    `e_brightness_hsb`, `e_vignette`, `e_opacity_threshold` (they were a 400) on the 12 MP photo (4240×2832) as a
    JPEG and as a PNG cut out (opaque in the middle), made 1000 px wide, as PNG: the colours change by
    CSS's formulas (on the balloon, on the grey middle), the PNG's transparent border stays transparent,
    and the pixelated balloon stays where it was, in whole squares."""
    def path(effect: str, public_id: str) -> str:
        return f"/demo/image/upload/c_scale,w_1000/{effect}/{public_id}.png".replace("//", "/")
    for public_id, (x, y), bands in ((BALLOON_PHOTO, (920, 236), 3), (CUTOUT_PHOTO, (500, 334), 4)):
        plain = decode(await get(node, path("", public_id)))
        r, g, b = pixel(plain, x, y)[:3]
        expected = {
            "e_brightness:-50": (round(r / 2), round(g / 2), round(b / 2)),
            "e_saturation:-100": (round(0.213 * r + 0.715 * g + 0.072 * b),) * 3,
            "e_sepia:100": tuple(min(255, round(a * r + b_ * g + c * b)) for a, b_, c in (
                (0.393, 0.769, 0.189), (0.349, 0.686, 0.168), (0.272, 0.534, 0.131))),
            "e_negate": (255 - r, 255 - g, 255 - b),
            "e_gamma:50": tuple(round(255 * (v / 255) ** (1 / 1.5)) for v in (r, g, b)),
            "e_contrast:level_150;type_linear": tuple(min(255, max(0, round((v - 127.5) * 1.5 + 127.5)))
                                                      for v in (r, g, b)),
            "e_colorize:40,co_red": (round(0.6 * r + 102), round(0.6 * g), round(0.6 * b)),
            "e_brightness_hsb:30": tuple(round(v * min(1.3, 255 / max(r, g, b))) for v in (r, g, b)),
            "e_vignette": tuple(round(v * (1 - 0.2 * (((x + 0.5 - 500) / 500) ** 2 + ((y + 0.5 - 334) / 334) ** 2) / 2))
                                for v in (r, g, b)),
        }
        for effect in (*expected, "e_sepia", "e_vibrance:-60", "e_blackwhite", "e_pixelate:20", "e_unsharp_mask:400",
                   "e_improve", "e_auto_color:50", "e_hue:-30", "e_blue:60", "e_contrast:60", "e_contrast:-60",
                   "e_opacity_threshold:80"):
            image = decode(await get(node, path(effect, public_id)))
            greys = effect == "e_blackwhite"  # a black and white image: one band (and its alpha)
            assert (image.width, image.height, image.bands) == (1000, 668, bands - 2 * greys), effect
            if effect in expected:
                assert close(pixel(image, x, y)[:3], expected[effect], 1), (effect, pixel(image, x, y))
            if public_id == CUTOUT_PHOTO:
                assert (pixel(image, 5, 5)[-1], pixel(image, x, y)[-1]) == (0, 255), effect
    balloon = orange_pixels(decode(await get(node, path("", BALLOON_PHOTO))))
    pixelated = decode(await get(node, path("e_pixelate:20", BALLOON_PHOTO)))
    squares = orange_pixels(pixelated)  # whole 20×20 squares: those the balloon's edge cuts are greyer
    assert balloon > 15_000 and squares % 400 == 0 and 0.7 * balloon < squares < balloon
    assert close(pixel(pixelated, 920, 236), ORANGE, 2)
    assert orange_pixels(decode(await get(node, path("e_negate", BALLOON_PHOTO)))) == 0


async def test_conditions_on_the_12_megapixel_photos(node):
    """`if_` (it was a 400) on the 12 MP photo (4240×2832) as a JPEG and as a PNG: `w` is the width where
    the condition stands (after the components before it), `iw` the original's; a block's branch follows
    the aspect ratio the image has there (a portrait crop of the landscape photo takes the other branch)."""
    for public_id, extension in ((BALLOON_PHOTO, "jpg"), (CUTOUT_PHOTO, "png")):
        cases = [
            ([{"if": "w_gt_2000", "width": 1000, "crop": "scale"}], (1000, 668)),
            ([{"width": 1500, "crop": "scale"}, {"if": "w_gt_2000", "width": 1000, "crop": "scale"}], (1500, 1002)),
            ([{"width": 1500, "crop": "scale"}, {"if": "iw_gt_2000", "width": 1000, "crop": "scale"}], (1000, 668)),
            ([{"if": "w_gt_2000_and_ar_lt_1"}, {"width": 1000, "crop": "scale"}, {"if": "else", "width": 500,
                                                                                    "crop": "scale"}, {"if": "end"}],
             (500, 334)),
        ]
        block = [{"if": "ar_gt_1"}, dict(width=400, height=300, crop="fill"), {"if": "else"},
                 dict(width=300, height=400, crop="fill"), {"if": "end"}, {"effect": "sepia"}]
        cases += [(block, (400, 300)), ([dict(width=1000, height=2000, crop="crop"), *block], (300, 400))]
        for transformation, expected in cases:
            answer = await get(node, url(public_id, transformation=transformation, format=extension))
            assert size(answer) == expected, (public_id, transformation)


async def test_a_decimal_size_of_1_or_more_is_a_multiple_of_the_image_at_its_step(node):
    """`w_1.5`: 1.5 times the width the image has at this component, as `w_0.5` is half of it (they were
    a 400). On the 12 MP photo (4240×2832), as a JPEG and as a PNG: a quarter of it (1060 px), then 1.5
    times that."""
    for public_id, extension in ((BALLOON_PHOTO, "jpg"), (CUTOUT_PHOTO, "png")):
        chained = await get(node, url(public_id, transformation=[{"width": 0.25, "crop": "scale"},
                                                                 {"width": 1.5, "crop": "scale"}], format=extension))
        assert size(chained) == (1590, 1062)
        assert size(await get(node, url(public_id, height=1.0, crop="scale", format=extension))) == (4240, 2832)
    too_large = await node.fetch(url(BALLOON_PHOTO, width=150.0, crop="scale", format="jpg"))
    assert (too_large.code, too_large.body) == (
        400, b"invalid transformation: w-cw_mul_150: evaluates to 636000, above 65500\n")


async def test_arithmetic_in_sizes_and_crop_offsets_on_the_12_megapixel_photos(node):
    """Arithmetic (it was a 400), as the SDK writes it (`iw / 2` → `w_iw_div_2`): `iw`, `ih` the original's sides,
    `w`, `h` the image's where the component stands, multiplication before addition. On the 12 MP photo
    (4240×2832), as a JPEG and as a PNG."""
    for public_id, extension in ((BALLOON_PHOTO, "jpg"), (CUTOUT_PHOTO, "png")):
        half = await get(node, url(public_id, width="iw / 2", crop="scale", format=extension))
        assert size(half) == (2120, 1416)
        chained = [{"width": 1000, "crop": "scale"}, {"width": "w * 0.5 + 10", "crop": "scale"}]
        assert size(await get(node, url(public_id, transformation=chained, format=extension))) == (510, 341)
        fill = await get(node, url(public_id, width="ih / 4", height="iw / 8", crop="fill", format=extension))
        assert size(fill) == (708, 530)
        corner = await get(node, url(public_id, x="iw - 300", y="ih - 200", width=300, height=200, crop="crop",
                                     format=extension))
        assert corner.body == (await get(node, url(public_id, x=3940, y=2632, width=300, height=200, crop="crop",
                                                   format=extension))).body
    zero = await node.fetch(url(BALLOON_PHOTO, width="iw / 0", crop="scale", format="jpg"))
    assert (zero.code, zero.body) == (400, b"invalid transformation: w-iw_div_0: division by zero\n")
    for written in ("w_iw_div", "w_fc_mul_100", "w_iw_div_2_"):
        refused = await node.fetch(f"/demo/image/upload/c_scale,{written}/{BALLOON_PHOTO}.jpg")
        assert (refused.code, refused.body) == (400, f"invalid transformation: {written}: arithmetic alternates "
                                                "numbers or iw, ih, iar, w, h, ar with add, sub, mul, div, mod, pow; "
                                                "variables ($) are not supported\n".encode())


async def test_image_overlays_in_both_syntaxes(node, s3_server):
    """`l_<public ID>` (folders with `:`), as the SDK writes an overlay: its own words in its component
    (the older syntax) or in the components up to `fl_layer_apply`, placed by a compass gravity and
    offsets in pixels into the image; `fl_relative` sizes it on the base. Drawn on the 12 MP photo made
    1000 px wide: a red 50×50 badge, where each URL says."""
    s3_server.client().put_object(Bucket=BUCKET, Key=DEMO + "brand/badge/1600000000.png",
                                  Body=solid(50, 50, (255, 0, 0), "png"))
    base = [{"width": 1000, "crop": "scale"}]
    cases = {  # transformation → the badge's box on the 1000×668 output
        "older syntax, south east": [{"overlay": "brand:badge", "gravity": "south_east", "x": 10, "y": 20}],
        "layer apply, north west": [{"overlay": "brand:badge"}, {"width": 100, "crop": "scale"},
                                    {"flags": "layer_apply", "gravity": "north_west", "x": 30, "y": 40}],
        "relative, centred": [{"overlay": "brand:badge", "width": 0.2, "flags": "relative"}],
        "north, shifted": [{"overlay": "brand:badge", "gravity": "north", "x": -100}],
    }
    boxes = {"older syntax, south east": (940, 598, 50, 50), "layer apply, north west": (30, 40, 100, 100),
             "relative, centred": (400, 234, 200, 200), "north, shifted": (375, 0, 50, 50)}
    for name, overlay in cases.items():
        path = url(BALLOON_PHOTO, transformation=base + overlay, format="jpg")
        image = decode(await get(node, path))
        x, y, width, height = boxes[name]
        assert (image.width, image.height) == (1000, 668), name
        inside = [pixel(image, x + dx, y + dy) for dx in (3, width - 4) for dy in (3, height - 4)]
        outside = [pixel(image, x - 4, y + height // 2), pixel(image, x + width + 3, y + height // 2)]
        assert all(close(p, (255, 0, 0), 40) for p in inside), (name, path, inside)
        assert not any(close(p, (255, 0, 0), 40) for p in outside if p), (name, path, outside)
    for words, named in (("l_fetch:aHR0cDovL2V4YW1wbGUuY29tL2EucG5n", "l_fetch:aHR0cDovL2V4YW1wbGUuY29tL2EucG5n"),
                         ("l_brand:badge,g_auto", "g_auto"),
                         ("l_brand:badge/fl_layer_apply,o_50", "o_50"), ("l_nosuch", "i-image/upload/nosuch")):
        refused = await node.fetch(f"/demo/image/upload/c_scale,w_1000/{words}/{BALLOON_PHOTO}.jpg")
        assert (refused.code, refused.body.decode().split(": ")[1]) == (400, named), words


async def test_text_overlays(node):
    """`l_text:<font>_<size>[_<style>]:<text>`, as the SDK writes a text overlay: drawn in the `[fonts]` entry
    of that name (DejaVuSans ships with the node), in `co_`'s colour, where `g_`, `x_`, `y_` put it; the
    text escaped twice, as Cloudinary asks for a comma. A font the node does not have is a 400 naming it."""
    def text_url(font: str, **options) -> str:
        overlay = {"font_family": font, "font_size": 60, "font_weight": "bold", "text": "© Acme, Inc"}
        return url(BALLOON_PHOTO, transformation=[{"width": 1000, "crop": "scale"},
                                                  {"overlay": overlay, "color": "#FFFFFF", **options}], format="jpg")
    path = text_url("DejaVuSans", gravity="south_east", x=20, y=20)
    assert "l_text:DejaVuSans_60_bold:%C2%A9%20Acme%252C%20Inc" in path
    image = decode(await get(node, path))
    white = ((image[:3] > 235).bandand() / 255)
    corner, rest = white.crop(500, 568, 480, 80), white.crop(0, 0, 500, 568)
    assert corner.avg() > 0.1 and rest.max() == 0  # the text's white, bottom right, and nowhere else
    refused = await node.fetch(text_url("Arial"))
    assert (refused.code, refused.body.decode()) == \
        (400, "invalid transformation: ff-Arial: no such font (the fonts are listed in [fonts])\n")
    # curved text, Cloudinary's own example (`e_distort:arc:-120` in the overlay's component): a smile, its
    # ends higher than its middle, so its white spans more rows than the straight text's
    curved = decode(await get(node, text_url("DejaVuSans", gravity="south_east", x=20, y=20,
                                             effect="distort:arc:-120")))
    def white_rows(picture) -> int:
        rows = ((picture[:3] > 235).bandand() / 255).project()[1]  # each row's white, summed once
        return sum(1 for y in range(rows.height) if rows(0, y)[0])
    assert white_rows(curved) > 1.5 * white_rows(image)


async def test_fl_immutable_cache_says_so_in_cache_control(node):
    """`fl_immutable_cache`: `Cache-Control: …, immutable`, on the miss and on the hit below `tornado.web`;
    the same cached image as without it, whose `Cache-Control` says nothing of it."""
    immutable = url(BALLOON_PHOTO, width=200, crop="scale", format="jpg", flags="immutable_cache")
    answers = [await get(node, immutable), await get(node, immutable)]
    plain = await get(node, url(BALLOON_PHOTO, width=200, crop="scale", format="jpg"))
    assert [(a.headers["X-Cache"], a.headers["Cache-Control"]) for a in answers] == \
        [("MISS", "public, max-age=31536000, immutable"), ("HIT", "public, max-age=31536000, immutable")]
    assert (plain.headers["X-Cache"], plain.headers["Cache-Control"], plain.body) == \
        ("HIT", "public, max-age=31536000", answers[0].body)


async def test_a_auto_right_and_left_turn_only_when_the_box_is_the_other_way(node):
    """`a_auto_right`/`a_auto_left` on the 12 MP landscape photo: into a portrait box it is turned a quarter
    first (as `a_90`/`a_-90` in a component before), into a landscape or square box not at all."""
    def path(components: str) -> str:
        return f"/demo/image/upload/{components}/{BALLOON_PHOTO}.jpg"
    pairs = [("a_auto_right,c_fill,h_400,w_300", "a_90/c_fill,h_400,w_300"),
             ("a_auto_left,c_fill,h_400,w_300", "a_-90/c_fill,h_400,w_300"),
             ("a_auto_right,c_fill,h_300,w_400", "c_fill,h_300,w_400"),
             ("a_auto_left,ar_1:1,c_fill,w_300", "ar_1:1,c_fill,w_300")]
    for auto, explicit in pairs:  # the same pixels, up to the resampling of a decode not shrunk on load
        turned, expected = decode(await get(node, path(auto))), decode(await get(node, path(explicit)))
        assert (turned.width, turned.height) == (expected.width, expected.height), auto
        assert (turned.cast("float") - expected.cast("float")).abs().avg() < 6, auto  # turned: 20 or more
    assert (turned.width, turned.height) == (300, 300)
    wrong = decode(await get(node, path("a_90/c_fill,h_300,w_400")))  # what a turn would have made
    assert (wrong.cast("float") - decode(await get(node, path(pairs[2][0]))).cast("float")).abs().avg() > 20
    refused = await node.fetch(path("a_auto_right,w_300"))
    assert (refused.code, refused.body.decode().split(": ")[1]) == (400, "a_auto_right")


async def test_distortions_on_the_12_megapixel_photo(node):
    """`e_distort` (a 400 before): the corners moved, on the 12 MP photo made 1000 px wide (its canvas
    keeps that size), and an arc of 60°, on a larger canvas (1289×752: the middle row's 1000 px over 60°);
    another effect with a value is a 400 saying the effect is not supported."""
    def path(effect: str) -> str:
        return f"/demo/image/upload/c_scale,w_1000/{effect}/{BALLOON_PHOTO}.png"
    corners = decode(await get(node, path("e_distort:50:0:950:40:1000:668:0:628")))
    assert (corners.width, corners.height) == (1000, 668) and close(pixel(corners, 3, 3)[:3], (255, 255, 255), 2)
    arc = decode(await get(node, path("e_distort:arc:60")))
    assert (arc.width, arc.height) == (1289, 752) and close(pixel(arc, 3, 740)[:3], (255, 255, 255), 2)
    shear = await node.fetch(path("e_shear:20:0"))
    assert (shear.code, shear.body.decode().split(";")[0]) == (
        400, "invalid transformation: e_shear:20:0: effect not supported")


async def test_a_colour_replaced_on_the_12_megapixel_photo(node):
    """`e_replace_color:blue:40:ff8c00` (a 400 before): the orange balloon turns blue, shaded as it was; the
    sky's grey is too far from orange to move."""
    def path(effect: str) -> str:
        return f"/demo/image/upload/c_scale,w_1000/{effect}/{BALLOON_PHOTO}.png".replace("//", "/")
    plain = decode(await get(node, path("")))
    blue = decode(await get(node, path("e_replace_color:blue:40:ff8c00")))
    assert orange_pixels(plain) > 15_000 and orange_pixels(blue) == 0
    r, g, b = pixel(blue, 920, 236)[:3]
    assert b > 200 and r < 60 and g < 60, (r, g, b)
    assert pixel(blue, 20, 20) == pixel(plain, 20, 20)


@pytest.mark.parametrize("path, extension", [("docs/manual.pdf", ".pdf"), ("w_300/v1/docs/Manual.PSD", ".psd")])
async def test_a_document_is_a_422_naming_it(node, path, extension):
    """Cloudinary delivers its documents by their extension; the node reads images only. The URL had been a 404 (the
    public ID looked up with its extension), which sent a team triaging 404s to a backup that had the asset."""
    response = await node.fetch(f"/demo/image/upload/{path}")
    assert (response.code, response.body.decode()) == (
        422, f"unsupported source: a document ({extension}); the node reads JPEG, PNG, WebP, AVIF, HEIC, GIF and "
             "TIFF\n")
