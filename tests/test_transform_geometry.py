"""Geometry over a real socket: sizes, crops, focus, extraction, zoom, rotation, flips, trim.

`card.png` is 200x100 in quadrants: red top-left, green top-right, blue bottom-left, yellow
bottom-right, so where each part of the image went can be read from a few pixels.
"""

import pytest

from tests.assets import close, pixel
from tests.transform_node import fetch_image, image_node, image_root  # noqa: F401

RED, GREEN, BLUE, YELLOW = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)
MAGENTA = (255, 0, 255)


@pytest.mark.parametrize("tr, size", [
    ("w-100", (100, 50)),
    ("h-50", (100, 50)),
    ("w-0.5", (100, 50)),
    ("h-0.25", (50, 25)),
    ("w-0.333", (67, 34)),  # a fraction's pixels are rounded (66.6 px: 67), not cut down
    ("w-1", (1, 1)),  # 1 is a pixel, not the whole side: fractions are below 1
    ("h-1", (2, 1)),
    ("w-400", (400, 200)),
    ("w-100,ar-1-1", (100, 100)),
    ("h-40,ar-2-1", (80, 40)),
    ("w-100,h-100,ar-3-1", (100, 100)),  # ar is ignored when both sides are given
    ("ar-1-1", (100, 100)),  # alone: the largest box of that ratio
    ("w-50,dpr-2", (100, 50)),
    ("w-2500,dpr-2", (5000, 2500)),  # 5000 px is within DPR_MAX_SIDE: the dpr is applied
    ("w-2501,dpr-2", (2501, 1250)),  # over it: the box as given (ImageKit)
    ("w-50,h-50,dpr-1.5", (75, 75)),
    ("w-100,h-100,c-force", (100, 100)),
    ("w-100,h-100,c-at_max", (100, 50)),
    ("w-400,h-400,c-at_max", (200, 100)),
    ("w-400,c-at_max", (200, 100)),
    ("w-400,h-400,c-at_max_enlarge", (400, 200)),
    ("w-100,h-100,c-at_least", (200, 100)),
    ("w-100,h-20,c-at_least", (100, 50)),
    ("w-400,h-50,c-maintain_ratio_no_enlarge", (200, 50)),
    ("w-400,c-maintain_ratio_no_enlarge", (200, 100)),
    ("w-100,h-100", (100, 100)),
    ("w-100,h-50,cm-pad_extract_no_shrink", (200, 100)),  # a box smaller than the image: never cut
    ("w-300,h-50,cm-pad_extract_no_shrink", (300, 100)),
])
async def test_sizes(image_node, tr, size):
    _, image = await fetch_image(image_node, f"/tr:{tr}/card.png")
    assert (image.width, image.height) == size


async def test_force_stretches_the_whole_image(image_node):
    _, image = await fetch_image(image_node, "/tr:w-100,h-100,c-force/card.png")
    assert close(pixel(image, 5, 5), RED) and close(pixel(image, 95, 95), YELLOW)
    assert close(pixel(image, 95, 5), GREEN) and close(pixel(image, 5, 95), BLUE)


@pytest.mark.parametrize("tr, first, last", [
    # 100x100 out of 200x100: the crop is horizontal; pixels (5, 5) and (94, 5)
    ("w-100,h-100,fo-center", RED, GREEN),
    ("w-100,h-100,fo-left", RED, RED),
    ("w-100,h-100,fo-right", GREEN, GREEN),
    # 200x40: the crop is vertical; pixels (5, 2) and (5, 37)
    ("w-200,h-40,fo-top", RED, RED),
    ("w-200,h-40,fo-bottom", BLUE, BLUE),
    ("w-200,h-40,fo-center", RED, BLUE),
])
async def test_maintain_ratio_crops_by_focus(image_node, tr, first, last):
    _, image = await fetch_image(image_node, f"/tr:{tr}/card.png")
    horizontal = image.height == 100
    assert (image.width, image.height) == ((100, 100) if horizontal else (200, 40))
    second = (94, 5) if horizontal else (5, 37)
    assert close(pixel(image, 5, 5 if horizontal else 2), first) and close(pixel(image, *second), last)


@pytest.mark.parametrize("focus, colour", [
    ("top_left", RED), ("top_right", GREEN), ("bottom_left", BLUE), ("bottom_right", YELLOW),
])
async def test_corner_focus_with_zoom_keeps_that_corner(image_node, focus, colour):
    # z-2 doubles the scale, so a 100x50 box at a corner holds one quadrant only
    _, image = await fetch_image(image_node, f"/tr:w-100,h-50,fo-{focus},z-2/card.png")
    assert (image.width, image.height) == (100, 50)
    assert all(close(pixel(image, x, y), colour) for x in (2, 97) for y in (2, 47))


async def test_without_zoom_the_box_holds_every_quadrant(image_node):
    _, image = await fetch_image(image_node, "/tr:w-100,h-50,fo-top_left/card.png")
    assert close(pixel(image, 2, 2), RED) and close(pixel(image, 97, 47), YELLOW)


async def test_fo_auto_finds_the_busy_patch(image_node):
    # busy.png: flat grey 300x100, one red/white checkerboard at x 220-280
    _, image = await fetch_image(image_node, "/tr:w-100,h-100,fo-auto/busy.png")
    assert (image.width, image.height) == (100, 100)
    centre = pixel(image, 50, 50)
    assert centre != (128, 128, 128) and not close(centre, (128, 128, 128), 20)
    _, centred = await fetch_image(image_node, "/tr:w-100,h-100/busy.png")
    assert close(pixel(centred, 50, 50), (128, 128, 128))


async def test_fo_face_without_a_face_falls_back_to_auto(image_node):
    auto, _ = await fetch_image(image_node, "/tr:w-100,h-100,fo-auto/busy.png")
    face, _ = await fetch_image(image_node, "/tr:w-100,h-100,fo-face/busy.png")
    assert face.body == auto.body
    assert face.headers["X-Cache"] == "MISS"  # its own cache entry: another image may have a face


async def test_zooming_out_without_a_face_changes_nothing(image_node):
    """`z` below 1 shows more around faces only: with `fo-face` and no face found, the crop is `fo-face`'s without
    it (the cover not shrunk below the box and stretched)."""
    face, _ = await fetch_image(image_node, "/tr:w-100,h-100,fo-face/busy.png")
    zoomed, _ = await fetch_image(image_node, "/tr:w-100,h-100,fo-face,z-0.5/busy.png")
    assert zoomed.code == 200 and zoomed.body == face.body


@pytest.mark.parametrize("tr, size, checks", [
    ("w-100,h-100,cm-pad_resize,bg-FF00FF", (100, 100),
     [((50, 5), MAGENTA), ((50, 94), MAGENTA), ((10, 30), RED), ((90, 70), YELLOW)]),
    ("w-100,h-100,cm-pad_resize,bg-FF00FF,fo-top", (100, 100),
     [((10, 5), RED), ((10, 45), BLUE), ((50, 60), MAGENTA), ((50, 94), MAGENTA)]),
    ("w-100,h-100,cm-pad_resize,bg-FF00FF,fo-bottom", (100, 100),
     [((50, 5), MAGENTA), ((50, 45), MAGENTA), ((10, 60), RED), ((90, 94), YELLOW)]),
    ("w-300,h-100,cm-pad_resize,bg-magenta,fo-left", (300, 100),
     [((5, 5), RED), ((195, 95), YELLOW), ((250, 50), MAGENTA)]),
    ("w-300,h-100,cm-pad_resize,bg-FF00FF,fo-right", (300, 100),
     [((50, 50), MAGENTA), ((105, 5), RED), ((295, 95), YELLOW)]),
    # the 200x100 card is not enlarged: padded around at its own size
    ("w-400,h-400,cm-pad_resize_no_enlarge,bg-FF00FF", (400, 400),
     [((50, 180), MAGENTA), ((105, 155), RED), ((295, 245), YELLOW), ((350, 260), MAGENTA)]),
])
async def test_pad_resize(image_node, tr, size, checks):
    _, image = await fetch_image(image_node, f"/tr:{tr}/card.png")
    assert (image.width, image.height) == size
    for (x, y), colour in checks:
        assert close(pixel(image, x, y), colour), (x, y, pixel(image, x, y), colour)


async def test_pad_resize_pads_transparent_images_with_transparency(image_node):
    _, image = await fetch_image(image_node, "/tr:w-64,h-100,cm-pad_resize/alpha.png")
    assert (image.width, image.height, image.bands) == (64, 100, 4)
    assert pixel(image, 63, 2)[3] == 0 and pixel(image, 63, 50)[3] == 255


@pytest.mark.parametrize("tr, size, colour", [
    ("cm-extract,x-10,y-10,w-50,h-30", (50, 30), RED),
    ("cm-extract,x-120,y-60,w-50,h-30", (50, 30), YELLOW),
    ("cm-extract,xc-150,yc-75,w-20,h-20", (20, 20), YELLOW),
    ("cm-extract,xc-50,yc-25,w-20,h-20", (20, 20), RED),
    ("cm-extract,w-50,h-50,fo-bottom_right", (50, 50), YELLOW),
    ("cm-extract,w-50,h-50,fo-top_right", (50, 50), GREEN),
    ("cm-extract,x-110,y-5,w-0.25,h-0.25", (50, 25), GREEN),
    ("cm-extract,x-150,w-50,h-50,fo-bottom", (50, 50), GREEN),  # x given, y is 0: fo does not place it
])
async def test_extract_cuts_at_the_original_scale(image_node, tr, size, colour):
    _, image = await fetch_image(image_node, f"/tr:{tr}/card.png")
    assert (image.width, image.height) == size
    assert all(close(pixel(image, x, y), colour) for x in (0, size[0] - 1) for y in (0, size[1] - 1))


async def test_extract_centre_given_on_one_axis_is_the_middle_of_the_other(image_node):
    """`yc` alone: the region is centred across the image's width (x 100 of card.png, between the blue and
    the yellow quadrant), not at half its height."""
    _, image = await fetch_image(image_node, "/tr:cm-extract,yc-75,w-20,h-20/card.png")
    assert (image.width, image.height) == (20, 20)
    assert close(pixel(image, 2, 10), BLUE) and close(pixel(image, 17, 10), YELLOW)


@pytest.mark.parametrize("tr, size", [("cm-extract,x-150,y-50,w-50,h-50", (50, 50)),
                                      ("cm-extract,x-0,y-0,w-200,h-100", (200, 100))])
async def test_extract_up_to_the_image_edge(image_node, tr, size):
    _, image = await fetch_image(image_node, f"/tr:{tr}/card.png")
    assert (image.width, image.height) == size


@pytest.mark.parametrize("tr, region", [("cm-extract,x-151,y-0,w-50,h-50", b"50x50 at (151, 0)"),
                                        ("cm-extract,x-0,y-51,w-50,h-50", b"50x50 at (0, 51)")])
async def test_extract_one_pixel_past_the_edge_is_a_400(image_node, tr, region):
    response, _ = await fetch_image(image_node, f"/tr:{tr}/card.png", status=400)
    assert b"cm-extract: the region " + region + b" leaves the 200x100 image" in response.body


async def test_extract_with_fo_auto_takes_the_busy_patch(image_node):
    _, image = await fetch_image(image_node, "/tr:cm-extract,w-60,h-60,fo-auto/busy.png")
    assert (image.width, image.height) == (60, 60)
    assert {pixel(image, x, 30) for x in range(0, 60, 3)} & {(255, 0, 0), (255, 255, 255)}


@pytest.mark.parametrize("tr", [
    "cm-extract,x-180,y-0,w-50,h-50",
    "cm-extract,x-0,y-80,w-50,h-50",
    "cm-extract,xc-10,yc-50,w-50,h-50",
    "cm-extract,w-300,h-50",
    "cm-extract,x-250",
])
async def test_extract_region_outside_the_image_is_a_400(image_node, tr):
    response, _ = await fetch_image(image_node, f"/tr:{tr}/card.png", status=400)
    assert b"cm-extract" in response.body


async def test_pad_extract_pads_where_the_region_leaves_the_image(image_node):
    _, image = await fetch_image(image_node, "/tr:cm-pad_extract,w-300,h-100,bg-FF00FF/card.png")
    assert (image.width, image.height) == (300, 100)
    assert close(pixel(image, 10, 50), MAGENTA) and close(pixel(image, 290, 50), MAGENTA)
    assert close(pixel(image, 55, 5), RED) and close(pixel(image, 245, 95), YELLOW)
    _, image = await fetch_image(image_node, "/tr:cm-pad_extract,x-150,y-0,w-100,h-100,bg-FF00FF/card.png")
    assert close(pixel(image, 10, 10), GREEN) and close(pixel(image, 10, 90), YELLOW)
    assert close(pixel(image, 90, 50), MAGENTA)


async def test_pad_extract_wholly_outside_the_image_is_all_background(image_node):
    _, image = await fetch_image(image_node, "/tr:cm-pad_extract,x-500,y-0,w-40,h-30,bg-FF00FF/card.png")
    assert (image.width, image.height) == (40, 30)
    assert close(pixel(image, 0, 0), MAGENTA) and close(pixel(image, 39, 29), MAGENTA)


async def test_pad_extract_region_over_the_output_limit_is_a_400(image_node):
    response, _ = await fetch_image(image_node, "/tr:cm-pad_extract,w-9000,h-10/card.png", status=400)
    assert b"output too large" in response.body


async def test_extract_coordinates_need_an_extract_mode(image_node):
    response, _ = await fetch_image(image_node, "/tr:x-10,w-50/card.png", status=400)
    assert b"x-10" in response.body


@pytest.mark.parametrize("tr, size, top_left, top_right", [
    ("rt-90", (100, 200), BLUE, RED),
    ("rt-N270", (100, 200), BLUE, RED),
    ("rt-N90", (100, 200), GREEN, YELLOW),
    ("rt-270", (100, 200), GREEN, YELLOW),
    ("rt-180", (200, 100), YELLOW, BLUE),
    ("rt-auto", (200, 100), RED, GREEN),
    ("rt-0", (200, 100), RED, GREEN),
    ("fl-h", (200, 100), GREEN, RED),
    ("fl-v", (200, 100), BLUE, YELLOW),
    ("fl-h_v", (200, 100), YELLOW, BLUE),
    ("rt-90,fl-h", (100, 200), RED, BLUE),
    ("rt-450", (100, 200), BLUE, RED),  # ImageKit takes any number of degrees: 450 is a quarter turn
    ("rt-N450", (100, 200), GREEN, YELLOW),
])
async def test_rotation_and_flip(image_node, tr, size, top_left, top_right):
    _, image = await fetch_image(image_node, f"/tr:{tr}/card.png")
    assert (image.width, image.height) == size
    assert close(pixel(image, 3, 3), top_left) and close(pixel(image, image.width - 4, 3), top_right)


async def test_rotation_follows_the_resize(image_node):
    _, image = await fetch_image(image_node, "/tr:w-100,h-40,rt-90/card.png")
    assert (image.width, image.height) == (40, 100)


async def test_free_angle_fills_the_corners_with_bg(image_node):
    _, image = await fetch_image(image_node, "/tr:rt-45,bg-FF00FF/card.png")
    assert (image.width, image.height) in ((213, 213), (212, 212), (214, 214))
    assert close(pixel(image, 1, 1), MAGENTA)


async def test_a_free_angle_turns_clockwise(image_node):
    """`rt-30` turns the card clockwise, as `rt-90` does: its red top-left corner rises to the top of the
    223×187 box, 50 px from its left, and its green top-right corner comes down to the right edge."""
    _, image = await fetch_image(image_node, "/tr:rt-30,bg-FF00FF/card.png")
    assert (image.width, image.height) in ((223, 187), (224, 187), (223, 186), (224, 186))
    assert close(pixel(image, 50, 8), RED) and close(pixel(image, 173, 8), MAGENTA)
    assert close(pixel(image, 214, 110), GREEN) and close(pixel(image, 8, 80), BLUE)


async def test_exif_orientation_comes_before_rt(image_node):
    # exif-6.jpg is stored turned; upright it is 64x32 with red top-left, green top-right, blue below
    _, image = await fetch_image(image_node, "/tr:rt-90/exif-6.jpg")
    assert (image.width, image.height) == (32, 64)
    assert close(pixel(image, 28, 3), RED, 30) and close(pixel(image, 3, 3), BLUE, 30)


@pytest.mark.parametrize("tr", ["t-true", "t-10", "t-50"])
async def test_trim_removes_the_uniform_frame(image_node, tr):
    _, image = await fetch_image(image_node, f"/tr:{tr}/framed.png")
    assert (image.width, image.height) == (60, 40)
    assert close(pixel(image, 0, 0), RED) and close(pixel(image, 59, 39), RED)


async def test_trim_then_resize_in_one_step(image_node):
    _, image = await fetch_image(image_node, "/tr:t-true,w-30/framed.png")
    assert (image.width, image.height) == (30, 20)
    assert close(pixel(image, 0, 0), RED)


async def test_chained_steps_apply_in_order(image_node):
    # crop the left half, then rotate: the red quadrant ends up top-right
    _, image = await fetch_image(image_node, "/tr:w-100,h-100,fo-left:rt-90/card.png")
    assert (image.width, image.height) == (100, 100)
    assert close(pixel(image, 95, 5), RED) and close(pixel(image, 5, 5), BLUE)
    _, image = await fetch_image(image_node, "/tr:w-100,h-100,fo-left/card.png?tr=rt-90")
    assert close(pixel(image, 95, 5), RED)


@pytest.mark.parametrize("tr", ["w-9000", "h-8193", "w-100,h-100,cm-pad_resize,dpr-5:w-5000,h-9000,c-force",
                                "w-8000,b-200_FF0000"])
async def test_output_side_over_the_limit_is_a_400(image_node, tr):
    response, _ = await fetch_image(image_node, f"/tr:{tr}/card.png", status=400)
    assert b"output too large" in response.body


async def test_a_transparent_image_on_blurred_padding_shows_the_backdrop_not_white(image_node):
    # alpha.png: 64×64, transparent at its left edge; padded to 128 wide, it starts at x = 32
    _, image = await fetch_image(image_node, "/tr:w-128,h-64,cm-pad_resize,bg-blurred,f-png/alpha.png")
    assert (image.width, image.height, image.bands) == (128, 64, 3)
    assert close(pixel(image, 33, 32), pixel(image, 30, 32), tolerance=8)  # seamless with the padding
    assert pixel(image, 33, 32) != (255, 255, 255)


async def test_blurred_padding_takes_a_blur_intensity_of_0(image_node):
    """ImageKit's blur intensity is `auto` or 0–100: `bg-blurred_0` pads with the image unblurred
    (it was a 400). card.png's red top-left quadrant scaled to cover 400×100 fills the padding's top left."""
    _, image = await fetch_image(image_node, "/tr:w-400,h-100,cm-pad_resize,bg-blurred_0/card.png")
    assert (image.width, image.height) == (400, 100)
    assert close(pixel(image, 4, 4), RED, 40) and close(pixel(image, 395, 95), YELLOW, 40)


async def test_distort_perspective_moves_the_corners_and_foreshortens(image_node):
    """`e-distort-p`: card.png's corners to a trapezoid, its top edge 100 px wide, its bottom the whole 200;
    the canvas keeps the image's size, the rest is `bg` (white for an image without alpha). The split
    between the top and bottom quadrants, halfway down the image, lies a third of the way down: a
    perspective's far half is shorter (v = 2y / (100 + y)), where an affine or bilinear map puts it halfway."""
    _, image = await fetch_image(image_node, "/tr:e-distort-p-50_0_150_0_200_100_0_100,f-png/card.png")
    assert (image.width, image.height) == (200, 100)
    assert close(pixel(image, 2, 2), (255, 255, 255)) and close(pixel(image, 197, 2), (255, 255, 255))
    assert close(pixel(image, 60, 3), RED) and close(pixel(image, 140, 3), GREEN)
    assert close(pixel(image, 5, 96), BLUE) and close(pixel(image, 194, 96), YELLOW)
    assert close(pixel(image, 90, 29), RED) and close(pixel(image, 90, 38), BLUE)
    _, magenta = await fetch_image(image_node, "/tr:e-distort-p-50_0_150_0_200_100_0_100,bg-FF00FF,f-png/card.png")
    assert close(pixel(magenta, 2, 2), MAGENTA) and close(pixel(magenta, 60, 3), RED)
    _, clear = await fetch_image(image_node, "/tr:e-distort-p-50_0_150_0_200_100_0_100,bg-00000000,f-png/card.png")
    assert clear.bands == 4 and pixel(clear, 2, 2)[3] == 0 and close(pixel(clear, 60, 3), (*RED, 255))


async def test_distort_grows_the_canvas_to_hold_a_corner_past_the_edge(image_node):
    """A corner 20 px left of the image, another 30 px below it: the canvas grows on those sides (220×130),
    the corners lie where they say once it has (the top left at the canvas' corner); nothing is cut off."""
    _, image = await fetch_image(image_node, "/tr:e-distort-p-N20_0_200_0_200_130_0_100,f-png/card.png")
    assert (image.width, image.height) == (220, 130)
    assert close(pixel(image, 3, 3), RED) and close(pixel(image, 216, 3), GREEN)
    assert close(pixel(image, 23, 97), BLUE) and close(pixel(image, 216, 125), YELLOW)
    assert close(pixel(image, 3, 126), (255, 255, 255)) and close(pixel(image, 200, 3), GREEN)


async def test_distort_with_the_corners_in_place_is_the_image(image_node):
    plain, image = await fetch_image(image_node, "/tr:f-png/card.png")
    _, same = await fetch_image(image_node, "/tr:e-distort-p-0_0_200_0_200_100_0_100,f-png/card.png")
    assert same.write_to_memory() == image.write_to_memory()


async def test_distort_beyond_the_horizon_is_background(image_node):
    """Sides that meet 10 px above the top edge: the map's horizon crosses the canvas there, and what lies
    above it is `bg`, not the image coming back upside down."""
    _, image = await fetch_image(image_node, "/tr:e-distort-p-95_20_105_20_200_100_0_100,bg-FF00FF,f-png/card.png")
    assert all(close(pixel(image, x, y), MAGENTA) for x in (2, 60, 100, 140, 197) for y in (1, 8, 15))
    assert close(pixel(image, 40, 95), BLUE) and close(pixel(image, 160, 95), YELLOW)


@pytest.mark.parametrize("tr, top, bottom", [
    # 251×123: the middle row (127 px from the circle's centre) keeps its 200 px over 90°; the top edge's
    # middle at the canvas' top, the bottom edge's 100 px below it; the ends of the arc go down at 45°
    ("e-distort-a-90", (3, (RED, GREEN)), (97, (BLUE, YELLOW))),
    # downwards: the image upright, its bottom edge's middle at the canvas' bottom
    ("e-distort-a-N90", (26, (RED, GREEN)), (120, (BLUE, YELLOW))),
])
async def test_distort_arc_bends_the_image_around_a_circle(image_node, tr, top, bottom):
    _, image = await fetch_image(image_node, f"/tr:{tr},f-png/card.png")
    assert (image.width, image.height) == (251, 123)
    for y, (left, right) in (top, bottom):
        assert close(pixel(image, 115, y), left) and close(pixel(image, 135, y), right), (tr, y)
    upwards = tr == "e-distort-a-90"
    assert close(pixel(image, 2, 120 if upwards else 2), (255, 255, 255))  # beyond the arc's ends: bg
    # at 40° left of the middle, 150 and 100 px from the centre: the top and bottom halves of the left edge
    for radius, colour in ((150, RED), (100, BLUE)) if upwards else ((150, BLUE), (100, RED)):
        x = round(125.4 - radius * 0.643)
        y = round(177.3 - radius * 0.766) if upwards else round(122 - (177.3 - radius * 0.766))
        assert close(pixel(image, x, y), colour), (tr, radius, pixel(image, x, y))


async def test_a_distortion_over_the_budget_is_a_400(image_node):
    """A full circle of a 6000 px wide image: a 6000×6000 canvas at 5.5 a megapixel, on top of the resize, the
    decode and the PNG it asks for (a PNG the URL does not name falls back to JPEG, within the budget)."""
    response, _ = await fetch_image(image_node, "/tr:w-6000,e-distort-a-N360,f-png/card.png", status=400)
    assert response.body == b"transformation too costly: about 307 megapixels of work exceed [limits] max_cost = 200\n"
