"""Random Cloudinary delivery URLs against a running node (`edge serve` in a child process) whose endpoint
reads them (`url_style = "cloudinary"`) from a Cloudinary backup bucket (moto's S3 server): components made
of every word the mapping knows and junk, with real and junk values, signatures, versions, SEO and root
forms, public IDs and extensions, percent-encoded or not. Never a 500, never an answer outside the statuses
the spec names, every answer within the render deadline plus a margin (as `test_url_fuzz.py` holds the
node's own URLs to)."""

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.cloudinary_urls import (CROP_MODES, FLAGS, FORMATS, GRAVITIES, KNOWN_KEYS, PROGRESSIVE_MODES, QUALITY_LEVELS,
                                  SENSITIVE_LEVELS, translate)
from edge.errors import BadRequest
from edge.transform.options import parse_transformation
from tests.fuzzing import fuzz_settings, one_worker, sound_answer
from tests.nodes import SAMPLES, write_config
from tests.photos import photos  # noqa: F401 - a fixture
from tests.test_url_fuzz import BOUND, RENDER_TIMEOUT, STATUSES, numbers, words

EXAMPLES = 150
BUCKET = "fuzz-cloudinary"
#: public ID → (version, extension) of what the bucket holds (`res/demo/image/upload/<id>/<version>.<ext>`)
STORED = {"sample": (1700000000, "jpg"), "shop/logo": (1600000000, "png"), "photos/medium": (1650000000, "jpg")}
PUBLIC_IDS = [*STORED, "missing", "shop", "a:b", "sample.jpg", ""]
EXTENSIONS = ["", ".jpg", ".png", ".webp", ".avif", ".gif", ".jpeg", ".bmp", ".pdf", ".mp4", ".x"]

#: the flags the mapping reads besides `FLAGS`
OTHER_FLAGS = [f"progressive:{mode}" for mode in PROGRESSIVE_MODES] + ["lossy"]
colours = st.one_of(st.sampled_from(["red", "rgb:ff0000", "rgb:F00", "rgb:ff000080", "rgb:zz", "transparent",
                                     "auto", "auto:predominant", "rgb:", "white"]), words)
known_values = st.one_of(
    st.sampled_from([*CROP_MODES, *GRAVITIES, *FORMATS, *QUALITY_LEVELS, *SENSITIVE_LEVELS, *FLAGS, *OTHER_FLAGS,
                     "hflip", "vflip", "exif", "max", "auto", "blur", "blur:300", "sharpen:2000", "grayscale",
                     "contrast", "trim:5", "auto_contrast", "16:9", "1.5", "0.5", "2.0", "5px_solid_red", "card",
                     "-90", "10:20:30", "sample", "shop:logo", "iw_div_2", "ih_mul_0.5", "auto:100", "auto:50",
                     "auto:100:400"]),
    numbers, colours)
#: a `key_value` word: a known key with a value it may take, or anything
any_word = st.one_of(
    st.tuples(st.sampled_from(sorted(KNOWN_KEYS)), known_values).map("_".join),
    st.tuples(st.sampled_from(sorted(KNOWN_KEYS) + ["", "w", "zz", "🙂"]), st.one_of(words, numbers)).map("_".join),
    words)
small = st.integers(1, 600).map(str)
valid = st.one_of(  # words each key accepts, so that many URLs get as far as a render
    st.tuples(st.sampled_from(["w", "h", "x", "y", "r", "o", "q"]), small).map("_".join),
    st.sampled_from([f"c_{mode}" for mode in CROP_MODES] + [f"g_{gravity}" for gravity in GRAVITIES]
                    + [f"f_{fmt}" for fmt in FORMATS] + [f"q_{level}" for level in [*QUALITY_LEVELS, *SENSITIVE_LEVELS]]
                    + [f"fl_{flag}" for flag in [*FLAGS, *OTHER_FLAGS]]
                    + ["a_90", "a_-45", "a_hflip", "a_vflip", "a_exif", "e_blur:300", "e_sharpen", "e_grayscale",
                       "e_brightness:-30", "e_saturation", "e_sepia:50", "e_negate", "e_pixelate:9", "e_unsharp_mask",
                       "e_blur_faces", "e_pixelate_faces:7", "e_vibrance:-40", "e_blackwhite",
                       "e_improve", "e_improve:indoor:40", "e_auto_color", "e_auto_brightness:50",
                       "e_hue", "e_red:40", "e_green:-20", "e_blur_region", "e_pixelate_region:9",
                       "e_trim", "e_auto_contrast", "e_contrast:-40", "e_contrast:level_120;type_linear",
                       "e_gamma:40", "e_brightness_hsb", "e_colorize:30", "co_rgb:336699", "e_vignette:60",
                       "e_opacity_threshold", "if_w_gt_400", "if_ar_lt_3:4_or_iw_gte_1000", "if_else", "if_end",
                       "b_rgb:ff000080", "b_white", "bo_3px_solid_red", "r_max",
                       "r_10:20", "ar_16:9", "ar_1.5", "dpr_2.0", "z_1.5", "t_card", "d_sample", "w_0.5"]))
word = st.one_of(valid, valid, any_word)
components = st.lists(st.lists(word, min_size=1, max_size=4).map(",".join), max_size=3)


@st.composite
def delivery_urls(draw) -> str:
    """`/<cloud>/image/<type>/[s--SIGNATURE--/]<components>/[v<version>/]<public_id>[.<ext>]`, its private-CDN
    form (no cloud) or its SEO form (`/<cloud>/images/<components>/<public_id>/<seo name>.<ext>`). One URL in
    three is made of valid words only, for a stored image: those get as far as a render."""
    if draw(st.integers(0, 2)) == 0:
        words_of = st.lists(st.lists(valid, min_size=1, max_size=3).map(",".join), max_size=3)
        segments = ["demo", "image", "upload", *draw(words_of), *draw(st.sampled_from(list(STORED))).split("/")]
        return "/" + "/".join(segments) + draw(st.sampled_from(["", ".jpg", ".png", ".webp", ".avif"]))
    form = draw(st.sampled_from(["full", "full", "full", "private CDN", "SEO"]))
    delivery_type = draw(st.sampled_from(["upload"] * 5 + ["private", "fetch", "x"]))
    head = {"full": ["demo", "image", delivery_type], "private CDN": ["image", "upload"],
            "SEO": ["demo", "images"]}[form]
    signature = [draw(st.sampled_from(["s--abcdefgh--", "s--" + "A" * 32 + "--", "s----", "s--x--"]))] \
        if draw(st.integers(0, 7)) == 0 and form != "SEO" else []
    version = [draw(st.sampled_from(["v1700000000", "v1", "v0", "v" + "9" * 13]))] \
        if draw(st.booleans()) and form != "SEO" else []
    stored = st.sampled_from(list(STORED))
    public_id = draw(st.one_of(stored, stored, st.sampled_from(PUBLIC_IDS), st.text(max_size=16)))
    seo_name = [draw(st.sampled_from(["my-photo", "x", ""]))] if form == "SEO" else []
    segments = [*head, *signature, *draw(components), *version, *public_id.split("/"), *seo_name]
    safe = draw(st.sampled_from([",:_-.~/", "", "_"]))  # how much of the path is percent-encoded
    extension = draw(st.sampled_from(["", ".jpg", *EXTENSIONS]))
    return "/" + "/".join(quote(segment, safe=safe) for segment in segments) + extension


@pytest.fixture(scope="module")
def cloudinary_node(photos, s3_server, tmp_path_factory):
    client = s3_server.client()
    client.create_bucket(Bucket=BUCKET)
    bodies = {"sample": (SAMPLES / "astronaut.jpg").read_bytes(),
              "shop/logo": (SAMPLES / "logo-transparent.png").read_bytes(),
              "photos/medium": photos.path(photos.medium).read_bytes()}
    for public_id, (version, extension) in STORED.items():
        client.put_object(Bucket=BUCKET, Key=f"res/demo/image/upload/{public_id}/{version}.{extension}",
                          Body=bodies[public_id])
    config = write_config(tmp_path_factory.mktemp("cloudinary-fuzz"), f"""
[server]
access_log = false
[named_transformations]
card = "w-100"
[limits]
render_timeout = "{RENDER_TIMEOUT}s"
max_cost = 20
{s3_server.origin_table("Cloudinary backup", BUCKET, type="cloudinary_backup", folder="/res/demo/")}
[[endpoints]]
id = ""
origins = ["Cloudinary backup"]
url_style = "cloudinary"
private_key = "fuzz-api-secret"
""")
    with one_worker(config) as address:
        yield address


def test_random_cloudinary_urls_get_a_bounded_answer_and_never_a_500(cloudinary_node):
    answered = []

    @fuzz_settings(EXAMPLES)
    @given(url=delivery_urls(), accept=st.sampled_from(["", "image/avif,image/webp", "*/*"]))
    def answer(url, accept):
        answered.append(sound_answer(cloudinary_node, "GET", url, statuses=STATUSES, bound=BOUND,
                                     headers={"Accept": accept} if accept else {}, context=url))

    answer()
    # the strategies reach a render, not only refusals: else the test would hold nothing of the renderer
    assert answered.count(200) >= EXAMPLES // 30, sorted(answered)


conditions = st.sampled_from(["if_w_gt_400", "if_ar_lt_3:4_or_iw_gte_1000", "if_h_lte_100_and_w_gt_1"])
#: a condition on one component's words, or a block of components with or without `if_else`
conditioned = st.one_of(
    st.tuples(conditions, st.lists(word, min_size=1, max_size=3)).map(lambda c: [",".join([c[0], *c[1]])]),
    st.tuples(conditions, components, st.one_of(st.none(), components)).map(
        lambda c: [c[0], *c[1], *(["if_else", *c[2]] if c[2] is not None else []), "if_end"]))


@fuzz_settings(1000)
@given(st.one_of(components, st.tuples(components, conditioned, components).map(lambda c: [*c[0], *c[1], *c[2]])))
def test_a_translation_s_canonical_form_is_a_transformation_of_its_own(words):
    """The cache key of a Cloudinary URL is our canonical form: it parses again to itself (an if block
    written last once left the outputs behind its `if-end`, which did not)."""
    named = {"card": "w-100"}
    try:
        canonical = translate(tuple(words), named, False).canonical()
    except BadRequest:
        return
    assert parse_transformation(canonical, named=named).canonical() == canonical
