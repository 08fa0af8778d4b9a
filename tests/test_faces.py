"""`fo-face` over a real socket, on a 12 MP scene made at test time: the NASA astronaut photo (public
domain, edge/samples/LICENSES.md) on the left of a grainy grey field, and a large checkerboard of
black and a skin-like tone far to the right, which libvips' attention (`fo-auto`) prefers (strong
edges, skin hue). The face must be in the crop; `z` below 1 shows more around it.
"""

import sys

import pytest
import pyvips

from edge.transform import faces
from tests.nodes import SAMPLES, local_config, write_config

SCENE = (4240, 2832)
#: where the astronaut photo goes in the scene, and its side there (the sample is 512 px)
PHOTO_AT, PHOTO_SIDE = (300, 900), 1000
#: the colour of the middle of the astronaut's face (a 16 px patch of the sample)
FACE = (213, 179, 152)
CHECKS_AT, CHECKS_SIZE, CHECK, CHECK_COLOUR = (2800, 200), (1300, 2400), 200, (230, 150, 110)


def scene() -> bytes:
    width, height = SCENE
    grain = (pyvips.Image.gaussnoise(509, 499, sigma=10, seed=7, mean=110).copy_memory()
             .replicate(width // 509 + 1, height // 499 + 1).crop(0, 0, width, height))
    field = grain.bandjoin([grain, grain]).cast("uchar").copy(interpretation="srgb")
    astronaut = pyvips.Image.new_from_file(str(SAMPLES / "astronaut.jpg")).resize(PHOTO_SIDE / 512)
    square = pyvips.Image.black(CHECK, CHECK, bands=3) + list(CHECK_COLOUR)
    tile = pyvips.Image.black(2 * CHECK, 2 * CHECK, bands=3).insert(square, 0, 0).insert(square, CHECK, CHECK)
    checks = tile.replicate(*(side // (2 * CHECK) + 1 for side in CHECKS_SIZE)).crop(0, 0, *CHECKS_SIZE)
    checks = checks.cast("uchar")
    return field.insert(astronaut, *PHOTO_AT).insert(checks, *CHECKS_AT).jpegsave_buffer(Q=88, keep="none")


@pytest.fixture(scope="module")
def scene_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("faces")
    (root / "scene.jpg").write_bytes(scene())
    pyvips.Image.new_from_file(str(root / "scene.jpg")).pngsave(str(root / "scene.png"), compression=1)
    (root / "astronaut.jpg").write_bytes((SAMPLES / "astronaut.jpg").read_bytes())
    return root


@pytest.fixture
async def node(node_factory, scene_root, tmp_path):
    return await node_factory(write_config(tmp_path, local_config(scene_root)))


def face_width(body: bytes) -> int:
    image = pyvips.Image.new_from_buffer(body, "")
    found = faces.find_faces(image)
    assert found, "no face in the output"
    return found[0][2]


def patch(image: pyvips.Image, x: int, y: int, side: int = 16) -> tuple[int, ...]:
    """The mean colour of the `side`-px square centred on (x, y)."""
    region = image.crop(x - side // 2, y - side // 2, side, side)
    return tuple(round(region.extract_band(band).avg()) for band in range(3))


def near(colour: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 25) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(colour, expected))


async def test_fo_face_keeps_the_face_where_attention_picks_something_else(node):
    auto = await node.fetch("/tr:w-300,h-600,fo-auto/scene.jpg")
    face = await node.fetch("/tr:w-300,h-600,fo-face/scene.jpg")
    assert auto.code == face.code == 200
    auto_image, face_image = (pyvips.Image.new_from_buffer(r.body, "") for r in (auto, face))
    assert (face_image.width, face_image.height) == (300, 600)
    grid = [(x, y) for x in range(10, 300, 20) for y in range(10, 600, 20)]
    on_checks = [near(patch(auto_image, x, y, 4), CHECK_COLOUR, 40) or max(patch(auto_image, x, y, 4)) < 50
                 for x, y in grid]
    assert sum(on_checks) > len(grid) / 2  # attention went to the checkerboard
    assert near(patch(face_image, 150, 300), FACE)  # the face, at the centre of its frame
    assert not near(patch(auto_image, 150, 300), FACE)
    assert 60 < face_width(face.body) < 300  # one face, large in the frame


@pytest.mark.parametrize("scene", ["scene.jpg", "scene.png"])
async def test_ffr_false_centres_the_covering_crop_on_the_face_without_closing_in(node, scene):
    """`ffr-false` (the node's own, for Cloudinary's `c_fill,g_face`, which scales to cover and keeps the face in
    the middle, where its `c_thumb` closes in): the scene scaled as `c-maintain_ratio` scales it, the face at the
    middle of the crop's width."""
    framed = await node.fetch(f"/tr:w-300,h-600,fo-face/{scene}")
    covering = await node.fetch(f"/tr:w-300,h-600,fo-face,ffr-false/{scene}")
    assert framed.code == covering.code == 200
    image = pyvips.Image.new_from_buffer(covering.body, "")
    assert (image.width, image.height) == (300, 600)
    found = faces.find_faces(image)
    assert found and abs(found[0][0] + found[0][2] / 2 - 150) < 20  # the face in the middle of the width
    # the whole height: the scene scaled to cover, no closer (the sample's face, as large as the scene has it)
    in_sample = faces.find_faces(pyvips.Image.new_from_file(str(SAMPLES / "astronaut.jpg")))[0][2]
    expected = in_sample * PHOTO_SIDE / 512 * 600 / SCENE[1]
    assert 0.7 < found[0][2] / expected < 1.4 and found[0][2] < face_width(framed.body) / 2
    refused = await node.fetch(f"/tr:w-300,ffr-false/{scene}")
    assert refused.body == b"invalid transformation: ffr-false: needs fo-face\n"


async def test_zoom_out_shows_more_around_the_face_and_zoom_in_less(node):
    widths = {}
    for zoom in ("0.5", "1", "2"):
        response = await node.fetch(f"/tr:w-240,h-240,fo-face,z-{zoom}/scene.jpg")
        assert response.code == 200
        widths[zoom] = face_width(response.body)
    assert 0.35 < widths["0.5"] / widths["1"] < 0.65
    assert 1.6 < widths["2"] / widths["1"] < 2.4


async def test_fo_face_frames_a_small_photo_without_enlarging_it(node):
    """Zoomed out past the photo (`z-0.2`): a 300×200 window of the photo scaled to 300 px wide, not the whole
    photo squashed into the box; zoomed in past the box (`z-5`): the face at the photo's own size."""
    response = await node.fetch("/tr:w-300,h-200,fo-face,z-0.2,f-png/astronaut.jpg")
    image = pyvips.Image.new_from_buffer(response.body, "")
    assert (image.width, image.height) == (300, 200)  # zoomed out to the whole width at most
    whole = pyvips.Image.new_from_buffer((await node.fetch("/tr:w-300,f-png/astronaut.jpg")).body, "")
    # a window of it to the pixel (squashed: 60 apart on average; scaled a pixel past the box, 5)
    assert min((image - whole.crop(0, top, 300, 200)).abs().max() for top in range(101)) == 0
    close_up = await node.fetch("/tr:w-300,h-200,fo-face,z-5/astronaut.jpg")
    assert close_up.code == 200
    in_sample = faces.find_faces(pyvips.Image.new_from_file(str(SAMPLES / "astronaut.jpg")))[0][2]
    assert 0.8 < face_width(close_up.body) / in_sample < 1.25


async def test_an_extracted_region_is_centred_on_the_face(node):
    response = await node.fetch("/tr:cm-extract,w-120,h-120,fo-face/astronaut.jpg")
    image = pyvips.Image.new_from_buffer(response.body, "")
    assert (image.width, image.height) == (120, 120) and near(patch(image, 60, 60), FACE)


@pytest.mark.parametrize("path", ["/tr:e-pixelatefaces-40/scene.jpg", "/tr:e-blurfaces-60,f-jpg/scene.png"])
async def test_faces_pixelated_or_blurred_alone_on_the_12_megapixel_scene(node, path):
    """`e-pixelatefaces`, `e-blurfaces` (Cloudinary's `e_pixelate_faces`, `e_blur_faces`) at full size, from
    the JPEG and from a PNG of it: no face is left to find, the face's patch changed, and the rest of the
    scene (the grey field, the checkerboard) is what the plain render has."""
    plain = pyvips.Image.new_from_buffer((await node.fetch("/tr:f-jpg/scene.png")).body, "")
    response = await node.fetch(path)
    assert response.code == 200, response.body[:200]
    image = pyvips.Image.new_from_buffer(response.body, "")
    assert (image.width, image.height) == SCENE
    [(left, top, width, height)] = faces.find_faces(plain)
    assert faces.find_faces(image) == []
    eyes = left + width // 3, top + height * 2 // 5  # the left eye: dark on skin, averaged away either way
    assert not near(patch(image, *eyes, 8), patch(plain, *eyes, 8), 4)
    for x, y in ((100, 100), (3400, 1400), (2000, 2700), (PHOTO_AT[0] + PHOTO_SIDE // 2, PHOTO_AT[1] + 900)):
        assert near(patch(image, x, y), patch(plain, x, y), 2), (x, y)


async def test_a_crowd_s_faces_are_hidden_in_one_pass(node, scene_root):
    """24 astronauts in a grid (1536×1024): every face the detector finds in it is pixelated (through one
    mask of them all), and what lies outside the faces is as it was."""
    crowd = pyvips.Image.new_from_file(str(scene_root / "astronaut.jpg")).resize(0.5).replicate(6, 4)
    (scene_root / "crowd.jpg").write_bytes(crowd.jpegsave_buffer(Q=90))
    plain = pyvips.Image.new_from_buffer((await node.fetch("/crowd.jpg")).body, "")
    found = faces.find_faces(plain)
    response = await node.fetch("/tr:e-pixelatefaces-6/crowd.jpg")
    assert response.code == 200 and len(found) >= 12
    image = pyvips.Image.new_from_buffer(response.body, "")
    assert faces.find_faces(image) == []
    for left, top, width, height in found:  # each found face changed; the top-left corner of its tile did not
        eyes = left + width // 3, top + height * 2 // 5
        assert not near(patch(image, *eyes, 6), patch(plain, *eyes, 6), 3), (left, top)
        corner = left - left % 256 + 8, top - top % 256 + 8
        assert near(patch(image, *corner, 6), patch(plain, *corner, 6), 2), corner


@pytest.mark.parametrize("source", ["scene.jpg", "scene.png"])
async def test_a_condition_counts_the_faces_where_it_stands(node, source):
    """`if-fc_…` (the node's own, for Cloudinary's `if_fc_…`) on the 12 MP scene (one face), as a JPEG and
    a PNG: the faces of the image at the block's step, so the checkerboard cut from the scene has none."""
    cases = {
        "if-fc_gt_0,w-200,if-else,w-100,if-end": 200,
        "if-fc_eq_1_and_w_gt_4000,w-200,if-else,w-100,if-end": 200,
        "if-fc_gt_1,w-200,if-else,w-100,if-end": 100,
        f"cm-extract,x-{CHECKS_AT[0]},y-{CHECKS_AT[1]},w-{CHECKS_SIZE[0]},h-{CHECKS_SIZE[1]}"
        ":if-fc_gt_0,w-200,if-else,w-100,if-end": 100,
        "w-1000:if-fc_eq_0,w-200,if-end": 1000,  # the face found in the 1000 px step too: no change
    }
    for transformation, width in cases.items():
        response = await node.fetch(f"/tr:{transformation}/{source}")
        assert response.code == 200, (transformation, response.body[:200])
        assert pyvips.Image.new_from_buffer(response.body, "").width == width, transformation


@pytest.mark.parametrize("transformation, named", [
    ("w-301,h-299,fo-face", "fo-face"), ("w-301,e-blurfaces-5", "e-blurfaces-5"),  # texts no other test parsed
    ("w-301,e-pixelatefaces-7", "e-pixelatefaces-7"), ("if-fc_gt_0,w-301,if-end", "if-fc_gt_0")])
async def test_without_the_extra_faces_are_a_400_naming_it(node, monkeypatch, transformation, named):
    monkeypatch.setattr(faces, "_installed", lambda: False)
    response = await node.fetch(f"/tr:{transformation}/scene.jpg")
    assert response.code == 400
    assert response.body == (f"invalid transformation: {named}: needs a face detector: install the node with its "
                             "[faces] extra (pip install 'edge-image-node[faces]')\n").encode()


async def test_an_extra_that_does_not_load_is_a_400_saying_so_not_a_500(node, monkeypatch):
    """OpenCV installed but failing to import (a system library missing): the first face search logs why
    and answers 400; from then on the URLs that need faces are refused before the fetch, as without the
    extra, and the others are served."""
    monkeypatch.setattr(faces, "_broken", None)
    monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` raises ImportError
    reason = b"needs a face detector: the node's [faces] extra is installed but does not load (its log says why)\n"
    first = await node.fetch("/tr:w-302,h-298,fo-face/scene.jpg")
    assert (first.code, first.body) == (400, reason)
    later = await node.fetch("/tr:w-303,e-blurfaces-5/scene.jpg")
    assert (later.code, later.body) == (400, b"invalid transformation: e-blurfaces-5: " + reason)
    assert (await node.fetch("/tr:w-304,h-296,fo-auto/scene.jpg")).code == 200


async def test_an_extract_of_the_face_without_a_size_is_the_face_zoom_and_ratio_applied(node):
    """`cm-extract,fo-face` with no w or h (Cloudinary's `c_crop,g_face`, `ar_1.0,c_crop,g_face,z_2.0`):
    the faces' box, divided by `z`, at `ar` when given, on the 12 MP scene."""
    sizes = {}
    for zoom in ("0.5", "1", "2"):
        response = await node.fetch(f"/tr:cm-extract,fo-face,z-{zoom}/scene.jpg")
        assert response.code == 200
        image = pyvips.Image.new_from_buffer(response.body, "")
        sizes[zoom] = image.width, image.height
        assert near(patch(image, image.width // 2, image.height // 2), FACE)
    assert sizes["1"][0] < PHOTO_SIDE  # the face, not the photo around it, nor the scene
    assert 1.8 < sizes["0.5"][0] / sizes["1"][0] < 2.2 and 1.8 < sizes["1"][0] / sizes["2"][0] < 2.2
    square = pyvips.Image.new_from_buffer((await node.fetch("/tr:cm-extract,fo-face,ar-1-1,z-2/scene.jpg")).body, "")
    assert square.width == square.height == max(sizes["2"])


async def test_an_extract_of_the_face_at_a_ratio_wider_than_the_photo_keeps_the_ratio(node):
    """`cm-extract,fo-face,ar-4-1,z-0.5` on the 512 px photo: the face's box widened to 4:1 is wider than the
    photo, so the region is the photo's whole width at 4:1 (512×128), not cut to the photo's width alone."""
    response = await node.fetch("/tr:cm-extract,fo-face,ar-4-1,z-0.5/astronaut.jpg")
    assert response.code == 200
    image = pyvips.Image.new_from_buffer(response.body, "")
    assert (image.width, image.height) == (512, 128)


async def test_a_padded_region_larger_than_the_photo_is_centred_on_the_face(node):
    """`cm-pad_extract,w-800,h-800,fo-face` on the 512 px photo: the face in the middle of the region, the
    background around the photo (not the photo centred in the region)."""
    response = await node.fetch("/tr:cm-pad_extract,w-800,h-800,fo-face,bg-FF0000/astronaut.jpg")
    assert response.code == 200
    image = pyvips.Image.new_from_buffer(response.body, "")
    assert (image.width, image.height) == (800, 800) and near(patch(image, 400, 400), FACE)
    assert near(patch(image, 20, 780), (255, 0, 0), 10)  # below and left of the photo


async def test_a_face_in_the_background_is_left_out_of_the_frame(node, scene_root):
    """A 2000×1400 scene with the astronaut large on the left and small (a fifth of the large face's area, less
    than `FACE_MIN_SHARE`) to the right, both found: `fo-face` frames the large face alone, one face in the crop."""
    astronaut = pyvips.Image.new_from_file(str(scene_root / "astronaut.jpg"))
    field = (pyvips.Image.black(2000, 1400, bands=3) + 110).cast("uchar").copy(interpretation="srgb")
    two = field.insert(astronaut.resize(2), 40, 320).insert(astronaut.resize(420 / 512), 1480, 300)
    (scene_root / "two.jpg").write_bytes(two.jpegsave_buffer(Q=90))
    counted = await node.fetch("/tr:if-fc_eq_2,w-200,if-else,w-100,if-end/two.jpg")
    assert pyvips.Image.new_from_buffer(counted.body, "").width == 200  # both faces found where fo-face looks
    response = await node.fetch("/tr:w-300,h-600,fo-face/two.jpg")
    assert response.code == 200
    image = pyvips.Image.new_from_buffer(response.body, "")
    assert near(patch(image, 150, 300), FACE) and len(faces.find_faces(image)) == 1


async def test_an_extract_with_a_position_keeps_it_whatever_the_focus(node):
    """`cm-extract,fo-face,x-300,y-300`: the region from (300, 300), as before faces were cut out."""
    with_face = await node.fetch("/tr:cm-extract,fo-face,x-300,y-300/astronaut.jpg")
    without = await node.fetch("/tr:cm-extract,x-300,y-300/astronaut.jpg")
    assert pyvips.Image.new_from_buffer(with_face.body, "").width == 212 and with_face.body == without.body


async def test_an_animation_s_faces_are_cut_out_where_the_first_frame_has_them(node, scene_root):
    """`cm-extract,fo-face` on an animation whose face moves (the photo, then mirrored): every frame is the
    region of the first frame's face, so the frames stay of one size (each frame's own region was of
    its own size, and that was refused)."""
    frame = pyvips.Image.new_from_file(str(scene_root / "astronaut.jpg"))
    strip = pyvips.Image.arrayjoin([frame, frame.flip("horizontal")], across=1).copy()
    strip.set_type(pyvips.GValue.gint_type, "page-height", frame.height)
    (scene_root / "moving.gif").write_bytes(strip.gifsave_buffer())
    (scene_root / "first.gif").write_bytes(frame.gifsave_buffer())
    response = await node.fetch("/tr:cm-extract,fo-face/moving.gif")
    still = pyvips.Image.new_from_buffer((await node.fetch("/tr:cm-extract,fo-face/first.gif")).body, "")
    frames = pyvips.Image.new_from_buffer(response.body, "", n=-1)
    assert response.code == 200 and frames.get("n-pages") == 2
    assert (frames.width, frames.get("page-height")) == (still.width, still.height) < (frame.width, frame.height)
    [box] = faces.find_faces(frame)  # at 512 px the search is on the frame itself: the first frame's region
    second = frames.crop(0, still.height, still.width, still.height).extract_band(0, n=3)
    assert (second - frame.flip("horizontal").crop(*box)).abs().avg() < 8  # the mirrored frame, at that region
    sized = await node.fetch("/tr:cm-extract,fo-face,w-120,h-120/moving.gif")
    assert sized.code == 200 and pyvips.Image.new_from_buffer(sized.body, "", n=-1).get("n-pages") == 2


async def test_a_fallback_focus_plays_no_part_where_a_face_is_found(node):
    """`fof-top` (Cloudinary's `g_face`: the top without a face) on the scene, which has one: the face's crop,
    to the byte. Without `fo-face`, or naming `face`, a 400."""
    face = await node.fetch("/tr:w-300,h-600,fo-face/scene.jpg")
    top = await node.fetch("/tr:w-300,h-600,fo-face,fof-top/scene.jpg")
    assert face.code == top.code == 200 and top.body == face.body
    alone = await node.fetch("/tr:w-300,h-600,fof-top/scene.jpg")
    assert (alone.code, alone.body) == (400, b"invalid transformation: fof-top: needs fo-face\n")
    itself = await node.fetch("/tr:w-300,h-600,fo-face,fof-face/scene.jpg")
    assert itself.code == 400 and itself.body.startswith(b"invalid transformation: fof-face: must be one of center")


@pytest.mark.parametrize("mode", ["fill", "lfill"])
def test_cloudinarys_fill_with_a_face_gravity_covers_where_its_thumb_closes_in(mode):
    """Cloudinary's zoom "controls how much of the original image surrounding the face to keep when using
    either the 'crop' or 'thumb' cropping modes": `c_fill,g_face` scales to cover and keeps the face in the
    middle; it had closed in on the face as `c_thumb,g_face` does, the same image to the byte (Cloudinary
    probe)."""
    from edge.cloudinary_urls import translate
    from edge.transform.options import parse_transformation
    fill = translate((f"c_{mode},g_face,w_300,h_300",), {}, False).canonical()
    crop = "c-maintain_ratio" if mode == "fill" else "c-maintain_ratio_no_enlarge"
    assert fill == parse_transformation(f"w-300,h-300,{crop},fo-face,fof-top,ffr-false").canonical()
    thumb = translate(("c_thumb,g_face,w_300,h_300",), {}, False).canonical()
    assert thumb == parse_transformation("w-300,h-300,fo-face,fof-top").canonical()


def test_the_faces_found_on_a_cut_out_are_the_same_whatever_lies_under_its_transparent_pixels():
    """The scene cut through the face, its right part wholly transparent: the detector's copy had been shrunk with
    the colour under the transparent pixels averaged into the face's edge, and the box moved with it (a face
    pixelated 104 levels differently over black than over white; transparency probe)."""
    photo = pyvips.Image.new_from_buffer(scene(), "")
    [(left, _, width, _)] = faces.find_faces(photo)
    for share in (75, 85, 90, 100, 105, 115):  # cuts through the face's box, and past it
        shown = pyvips.Image.black(*SCENE).insert(pyvips.Image.black(left + width * share // 100, SCENE[1]) + 255, 0, 0)
        found = [faces.find_faces((shown > 0).ifthenelse(photo, [value] * 3).bandjoin(shown).cast("uchar")
                                  .copy(interpretation="srgb")) for value in (0, 255)]
        assert found[0] and found[0] == found[1], (share, found)
