"""The grammar: what parses, its canonical form (the cache key), and the 400 for what does not."""

import pytest

from edge.errors import InvalidTransformation
from edge.transform.colours import parse_colour, write_colour
from edge.transform.options import parse_transformation
from tests.transform_node import fetch_image, image_node, image_root  # noqa: F401

NAMED = {"thumb": "w-200,h-200,c-at_max", "webp_thumb": "w-100:f-webp"}


def canonical(*texts, **options) -> str:
    return parse_transformation(*texts, named=NAMED, **options).canonical()


@pytest.mark.parametrize("first, second", [
    ("w-300,h-200", "h-200,w-300"),  # order within a step
    ("w-300,c-maintain_ratio,fo-center,q-80", "w-300,q-80"),  # defaults
    ("f-jpeg", "f-jpg"),
    ("rt-N90", "rt-270"),
    ("rt-auto,w-10", "w-10"),  # EXIF orientation is always applied
    ("fo-face,w-10,h-10", "h-10,w-10,fo-face"),
    ("bg-red", "bg-FF0000"),
    ("bg-ff000050", "bg-FF000050"),  # ImageKit: the last two digits are an opacity in percent
    ("ar-4_3,w-10", "ar-4-3,w-10"),
    ("w-10,ar-4:3", "ar-4-3,w-10"),  # what the SDK writes for aspect_ratio "4:3": not two steps
    ("w-10,ar-16.5:9:rt-90", "ar-16.5-9,w-10:rt-90"),
    ("ar-1.5,w-10", "ar-1.5-1,w-10"),
    ("r-7_7_7_7", "r-7"),
    ("e-usm", "e-usm-2-1-1-0.05"),
    ("e-shadow-true", "e-shadow-bl-10_st-30_x-2_y-2"),
    ("e-gradient-ld-top", "e-gradient-ld-0_from-FFFFFF00_to-00000066_sp-1"),
    ("e-gradient-ld-topleft", "e-gradient-ld-315_from-FFFFFF00_to-00000066_sp-1"),  # as ImageKit's table spells it
    ("bg-blurred_auto", "bg-blurred"),
    ("rt-N12.5", "rt-347.5"),
    ("rt--90", "rt-270"),  # the ImageKit SDK's `rotation: -90`
    ("rt--12.5", "rt-347.5"),
    ("rt-450", "rt-90"),  # ImageKit: "any number" of degrees, so one turn and a quarter
    ("rt-N720.5", "rt-359.5"),
    ("b-5_white", "b-5_FFFFFF"),
    ("e-sharpen", "e-sharpen-10"),
    ("t-true", "t-10"),
    ("e-grayscale-true", "e-grayscale"),
    ("e-distort-a-0,w-10", "w-10"),  # no bend
    ("e-distort-p-N5_0_100_10_90_90_5_100", "e-distort-p-N5_0_100_10_90_90_5_100"),
    ("e-colorize", "e-colorize-co-808080_in-100"),
    ("e-colorize-in-15_co-red", "e-colorize-co-FF0000_in-15"),
    ("cr-blue", "cr-0000FF_50"),  # Cloudinary's default tolerance
    ("cr-blue_30_red", "cr-0000FF_30_FF0000"),
    ("fl-v_h", "fl-h_v"),
    ("w-300,h-200,ar-4-3", "w-300,h-200"),  # ar is ignored with both sides
    ("w-300.0", "w-300"),
    ("w-100.6,h-49.5", "w-101,h-50"),  # a decimal size is rounded to the nearest pixel, not cut down
    ("w-0.50", "w-0.5"),
    ("pr-True", "pr-true"),
    ("lo-false,md-false,cp-false,o-100,z-1,dpr-1,w-5", "w-5"),
    ("n-thumb", "w-200,h-200,c-at_max"),
    ("n-thumb,q-50", "q-50,c-at_max,w-200,h-200"),
    ("w-300,f-webp:rt-90", "w-300:rt-90,f-webp"),  # output parameters belong to the whole result
    ("di-a@@b.png,w-3", "w-3,di-@@a@@@@b.png"),
    ("w-300::", "w-300"),
    ("w-9,h-9,z-0.5", "w-9,h-9"),  # zooming out changes nothing but around faces
    ("w-auto,dpr-auto,h-9", "h-9,dpr-auto,w-auto"),
    ("", "c-maintain_ratio"),
    ("if-ar_gt_1.0,w-200.0,if-else,h-300,rt-N90,if-end", "if-ar_gt_1,w-200,if-else,rt-270,h-300,if-end"),
    ("if-ar_lt_4-3.0,w-1:rt-90,if-end", "if-ar_lt_4-3,w-1:rt-90,if-end"),  # a chain in a branch
    ("c-pad_resize,w-9,h-9", "cm-pad_resize,w-9,h-9"),
    ("md-Copyright", "md-copyright"),
])
def test_synonyms_order_and_defaults_are_one_cache_key(first, second):
    assert canonical(first) == canonical(second)


@pytest.mark.parametrize("first, second", [
    ("w-300,ar-4-3", "w-300,ar-4-5"),  # each side of the ratio is in the key: 300x225 is not 300x375
    ("w-300,ar-4-3", "w-300,ar-4"),
    ("h-200,ar-16_9", "h-200,ar-16_10"),
    ("e-shadow-x-N5", "e-shadow-x-5"),  # `N`: the shadow falls left, not right
    ("w-9,h-9,cm-pad_resize,bg-blurred_20_N30", "w-9,h-9,cm-pad_resize,bg-blurred_20_30"),  # darker, not lighter
])
def test_different_transformations_are_different_cache_keys(first, second):
    assert canonical(first) != canonical(second)


def test_canonical_form():
    assert canonical("w-300,h-200:rt-N90,bg-red,f-jpeg,q-70") == "h-200,w-300:bg-FF0000,rt-270,f-jpg,q-70"
    assert canonical("orig-true,w-10") == "orig-true"
    assert canonical("e-usm-2-2-0.8-0.024") == "e-usm-2-2-0.8-0.024"
    assert canonical("n-webp_thumb,q-40") == "w-100,f-webp,q-40"
    # after an if block the output parameters are a step of their own: `if-end,f-png` would not parse back
    assert canonical("f-png:if-w_gt_1,w-1,if-end") == "if-w_gt_1,w-1,if-end:f-png"
    assert canonical("if-w_gt_1,w-1,if-end:f-png") == "if-w_gt_1,w-1,if-end:f-png"


def test_a_colours_last_two_digits_are_its_opacity_in_percent_and_names_have_no_case():
    """`RRGGBBOO`: OO % of 255, rounded to the nearest alpha (50: 127.5, made 128; 01: 2.55, made 3), and written
    back as the same two digits; `Red`, `RED` and `red` are one CSS name."""
    assert parse_colour("FF000050") == (255, 0, 0, 128) and parse_colour("00800001") == (0, 128, 0, 3)
    assert all(write_colour(parse_colour(f"12AB34{percent:02d}")) == f"12AB34{percent:02d}" for percent in range(100))
    assert parse_colour("Red") == parse_colour("RED") == parse_colour("red") == (255, 0, 0, 255)


def test_path_and_query_forms_chain_path_first():
    assert canonical("w-300", "rt-90") == "w-300:rt-90"
    assert parse_transformation("w-300", "rt-90").steps == parse_transformation("w-300:rt-90").steps


def test_default_image_path():
    assert parse_transformation("di-folder@@sub@@default.jpg").default_image == "folder/sub/default.jpg"


@pytest.mark.parametrize("text, param, reason", [
    ("w-abc", "w-abc", "expected a number"),
    # it had said "expected a number"
    ("e-gradient-ld-upleft", "e-gradient-ld-upleft", "ld: expected degrees (0-359) or a side: top, top_right, right, "
                                                     "bottom_right, bottom, bottom_left, left, top_left, topleft"),
    ("w-0", "w-0", "positive number"),
    ("w--5", "w--5", "expected a number"),
    ("w-0.1234567891", "w-0.1234567891", "expected a number of at most 9 digits before and after the point"),
    ("w-1234567890", "w-1234567890", "expected a number of at most 9 digits before and after the point"),
    ("w-1e3", "w-1e3", "number"),
    ("w-70000", "w-70000", "65500"),
    ("q-0", "q-0", "from 1 to 100"),
    ("q-101", "q-101", "from 1 to 100"),
    # past it, a radius holds a render thread to the deadline (a 503; a new width, a new URL): a mutation audit
    ("bl-101", "bl-101", "from 0.1 to 100"),
    ("bl-0", "bl-0", "from 0.1 to 100"),
    ("zz-1", "zz-1", "unknown parameter"),
    ("e-tint", "e-tint", "unknown parameter"),
    ("tr:w-300", "tr", "unknown parameter: `tr:` starts the path form only"),
    ("c-fill", "c-fill", "must be one of"),
    ("cm-pad", "cm-pad", "must be one of"),
    ("fo-middle", "fo-middle", "must be one of"),
    ("fo-person", "fo-person", "not supported (object-aware AI cropping)"),
    ("fo-custom", "fo-custom", "not supported (the focus area ImageKit keeps"),
    ("f-bmp", "f-bmp", "must be one of"),
    ("rt-1e3", "rt-1e3", "number"),
    ("rt-N", "rt-N", "number"),
    ("rt--", "rt--", "number"),
    ("rt-N-90", "rt-N-90", "number"),
    ("ar-4-", "ar-4-", "ar-4-3"),
    ("bg-FF0000AA", "bg-FF0000AA", "opacity 00-99"),
    ("r-0_0_0_0", "r-0_0_0_0", "above 0"),
    ("r-1_2_3", "r-1_2_3", "four radii"),
    ("e-shadow-st-101", "e-shadow-st-101", "from 0 to 100"),
    ("e-shadow-zz-1", "e-shadow-zz-1", "bl-<value>"),
    ("e-distort-p-0_0_10_0_10_10", "e-distort-p-0_0_10_0_10_10", "p-x1_y1_x2_y2_x3_y3_x4_y4"),
    ("e-distort-p-10_0_0_0_10_10_0_10", "e-distort-p-10_0_0_0_10_10_0_10", "convex shape, clockwise"),
    ("e-distort-p-0_0_10_0_5_5_0_10", "e-distort-p-0_0_10_0_5_5_0_10", "convex shape, clockwise"),  # a dart
    # convex and clockwise, but the top-right corner left of the bottom-left one (each corner held to its side)
    ("e-distort-p-0_0_10_0_100_100_20_100", "e-distort-p-0_0_10_0_100_100_20_100", "convex shape, clockwise"),
    ("e-distort-p-0_0_10_0_10_10_-1_10", "e-distort-p-0_0_10_0_10_10_-1_10", "N for minus"),
    ("e-distort-a-361", "e-distort-a-361", "from N360 to 360"),
    ("e-distort-s-10", "e-distort-s-10", "or a-<degrees>"),
    ("e-colorize-in-101", "e-colorize-in-101", "from 0 to 100"),
    ("cr-FF000050", "cr-FF000050", "must be opaque"),
    ("cr-red_101", "cr-red_101", "from 0 to 100"),
    ("cr-red_5_blue_green", "cr-red_5_blue_green", "cr-<to colour>[_<tolerance>[_<from colour>]]"),
    ("e-colorize-co-FF0000_tint-5", "e-colorize-co-FF0000_tint-5", "co-<value>, in-<value>"),
    ("bg-genfill", "bg-genfill", "not supported"),
    ("e-bgremove", "e-bgremove", "not supported (AI generation and removal)"),
    ("if-w_gt_300", "if-w_gt_300", "an if block is a step of its own"),
    ("h-100,if-h_eq_200,w-100,if-end", "h-100", "an if block is a step of its own"),  # ImageKit's invalid example
    ("if-h_eq_200,w-100,if-end,bl-10", "if-h_eq_200", "a step of its own"),
    ("if-x_gt_1,w-1,if-end", "if-x_gt_1", "if-<w|h|ar|iw|ih|iar|fc>_<eq|ne|gt|gte|lt|lte>_"),
    ("if-w_gt_1_xor_h_lt_2,w-1,if-end", "if-w_gt_1_xor_h_lt_2", "joined by _and_ or _or_"),
    ("if-ar_lt_4-0,w-1,if-end", "if-ar_lt_4-0", "above 0"),
    ("if-w_gt_1,f-png,if-end", "f-png", "cannot depend on a condition"),
    ("if-w_gt_1,w-auto,if-end", "w-auto", "client hints"),
    ("if-w_gt_1,l-text,i-a,l-end,if-end", "l-text", "layers are not supported within an if block"),
    ("if-w_gt_1,if-w_gt_2,w-1,if-end,if-end", "if-w_gt_2", "do not nest"),
    ("if-w_gt_1,w-1,if-else,w-2,if-else,w-3,if-end", "if-else", "one if-else"),
    ("w-10:if-end", "if-end", "without an if"),
    ("vc-h264", "vc-h264", "not supported (video)"),
    ("pg-0", "pg-0", "from 1 to 1000"),
    ("ar-0-3", "ar-0-3", "positive"),
    ("dpr-6,w-10", "dpr-6", "0.1 to 5"),
    ("dpr-2", "dpr-2", "needs w or h"),
    ("bg-notacolour", "bg-notacolour", "CSS colour name"),
    ("bg-FF00", "bg-FF00", "RRGGBB"),
    ("b-5", "b-5", "RRGGBB"),
    ("b-x_FF0000", "b-x_FF0000", "integer"),
    ("r-0", "r-0", "integer"),
    ("o-101", "o-101", "from 0 to 100"),
    ("e-usm-1-2-3", "e-usm-1-2-3", "e-usm-<radius>"),
    ("e-grayscale-5", "e-grayscale-5", "takes no value"),
    ("t-100", "t-100", "from 1 to 99"),
    ("pr-yes", "pr-yes", "true or false"),
    ("di-@@", "di-@@", "path"),
    ("di-..@@secret.jpg", "di-..@@secret.jpg", "path"),
    ("x-10,w-5", "x-10", "cm-extract"),
    ("cm-extract,x-1,xc-2", "xc", "not both"),
    ("n-nope", "n-nope", "unknown named transformation"),
    ("n-thumb,n-thumb", "n-thumb", "one named transformation per step"),
    ("bg-blurred_10_5_3", "bg-blurred_10_5_3", "must be blurred[_<radius 0-100>[_<brightness"),
    ("e-brightness-N100", "e-brightness-N100", "from N99 to 100"),
    ("e-usm-2-0-1-0.05", "e-usm-2-0-1-0.05", "sigma in (0, 100]"),
    ("e-region-0_0_0_10,bl-5", "e-region-0_0_0_10", "width and height from 1"),
    ("cr-red_5_FF000050", "cr-red_5_FF000050", "must be opaque"),  # the colour replaced, as the one it becomes
    ("di-a\x01.jpg", "di-a\x01.jpg", "path"),  # a control character in the default image's path
])
def test_invalid_parameters_name_themselves(text, param, reason):
    with pytest.raises(InvalidTransformation) as caught:
        parse_transformation(text, named=NAMED)
    assert caught.value.status == 400
    assert caught.value.message.startswith(f"invalid transformation: {param}: ")
    assert reason in caught.value.message


def test_named_only():
    assert parse_transformation("n-thumb", named=NAMED, named_only=True).canonical() == canonical("n-thumb")
    with pytest.raises(InvalidTransformation, match="only named transformations"):
        parse_transformation("n-thumb,w-10", named=NAMED, named_only=True)
    with pytest.raises(InvalidTransformation, match="n-thumb: this endpoint serves one named transformation at a time"):
        parse_transformation("n-thumb:n-thumb", named=NAMED, named_only=True)


# URLs as the ImageKit SDKs build them (`imagekitio`: transformation dicts → `tr:` / `?tr=`)
SDK_URLS = [
    ("/tr:h-300,w-400/photo.jpg", (400, 300)),
    ("/photo.jpg?tr=h-300,w-400", (400, 300)),
    ("/tr:h-300,w-400:rt-90/photo.jpg", (300, 400)),
    ("/tr:w-400,ar-4-3,c-maintain_ratio,fo-auto,q-80,f-jpg,pr-true/photo.jpg", (400, 300)),
    ("/tr:w-100,h-100,cm-pad_resize,bg-F3F3F3,b-5_FFFFFF/photo.jpg", (110, 110)),
    ("/tr:e-sharpen,e-contrast,e-grayscale,e-usm-2-2-0.8-0.024,w-50/photo.jpg", (50, 33)),
    ("/tr:w-120,h-120,r-max,bl-2,t-true,lo-true,md-false,cp-false,f-webp/photo.jpg", (120, 120)),
    ("/tr:w-150,dpr-2,rt-N90,n-thumb/photo.jpg", (200, 300)),  # w-150 overrides the named w-200
    ("/tr:cm-extract,x-10,y-20,w-100,h-50/photo.jpg", (100, 50)),
    ("/tr:w-300.0,h-200.0/photo.jpg?ik-sdk-version=python-4.0.0", (300, 200)),
]


@pytest.mark.parametrize("path, size", SDK_URLS)
async def test_sdk_built_urls(image_node, path, size):
    _, image = await fetch_image(image_node, path)
    assert (image.width, image.height) == size


@pytest.mark.parametrize("path", ["/tr:w-abc/photo.jpg", "/photo.jpg?tr=q-1000", "/tr:w-10,,h-%ZZ/photo.jpg",
                                  "/tr:%F0%9F%92%A5/photo.jpg", "/photo.jpg?tr=w-%00", "/tr:n-/photo.jpg"])
async def test_junk_over_the_socket_is_a_400(image_node, path):
    response = await image_node.fetch(path)
    assert response.code == 400 and response.headers["Content-Type"].startswith("text/plain")
