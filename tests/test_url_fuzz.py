"""Random URLs against a running node (`edge serve` in a child process): transformation strings made of
real and junk parameters and values, in the path and the query, paths, query strings and
percent-encodings. Never a 500, never an answer outside the statuses the spec names, every answer
within the render deadline plus a margin."""

import shutil
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.transform.options import PARAMS
from tests.fuzzing import copy_samples, fuzz_settings, one_worker, sound_answer
from tests.nodes import local_config, write_config
from tests.photos import photos  # noqa: F401 - a fixture

EXAMPLES = 150
RENDER_TIMEOUT = 2.0
#: what an answer may take: the deadline, plus a fetch and an encode on a busy 2-core machine
BOUND = RENDER_TIMEOUT + 10
STATUSES = {200, 304, 400, 401, 404, 422, 503}

FILES = ["astronaut.jpg", "logo-transparent.png", "coffee.jpg", "medium.jpg", "missing.jpg", "", "a/b/c.png"]
KEYS = sorted(PARAMS) + ["n", "e", "x-", "", "w-", "tr", "🙂", "e-unknown"]
COLOURS = ["red", "FF000080", "skyblue", "transparent", "zzzzzz", "FFF"]

numbers = st.one_of(st.integers(0, 2000).map(str), st.integers(0, 10**12).map(str),
                    st.floats(0, 10, allow_nan=False).map(lambda f: f"{f:.3f}"), st.just("N90"))
words = st.text("abcdefghijklmnopqrstuvwxyz_@.-0123456789", max_size=12)
values = st.one_of(numbers, words, st.sampled_from(COLOURS + ["true", "false", "auto", "max", "thumb"]),
                   st.tuples(numbers, numbers).map("_".join), st.tuples(numbers, numbers).map("-".join))
small = st.integers(1, 600).map(str)
valid = st.one_of(  # values each key accepts, so that many URLs get as far as a render
    st.tuples(st.sampled_from(["w", "h", "x", "y", "xc", "yc", "b", "r"]), small).map("-".join),
    st.sampled_from(["rt-90", "rt-180", "rt-N90", "rt-45", "fl-h", "fl-v", "fl-h_v", "t-true", "e-grayscale",
                     "e-contrast", "e-sharpen", "e-usm-2-2-0.8-0.02", "e-brightness-N30", "e-saturation-60",
                     "e-sepia-80", "e-negate", "e-pixelate-9", "e-pixelatefaces-6", "e-blurfaces-8", "bl-5", "o-50",
                     "e-vibrance-N40", "e-blackwhite-50", "e-autocolor", "e-autobrightness-70", "e-contrast-50",
                     "e-hue-N60", "e-red-40", "e-blue-N20", "bl-3,e-region-10_10_100_80",
                     "e-sigmoidcontrast-N40", "e-linearcontrast-150", "e-gamma-60", "e-brightnesshsb-30",
                     "e-colorize-co-FF6600_in-40", "e-vignette-50", "e-opacitythreshold-50", "e-distort-a-N90",
                     "e-distort-p-5_0_95_10_100_100_0_90", "cr-blue_40_red", "cr-00FF00",
                     "r-max", "z-2", "ar-4-3",
                     "dpr-2", "q-40", "bg-red", "b-3_00FF00", "n-thumb", "orig-true", "di-coffee.jpg", "md-true",
                     "pr-true", "lo-true", "cp-true"]),
    st.sampled_from(["c", "cm", "fo", "f"]).flatmap(
        lambda key: st.sampled_from(["maintain_ratio", "force", "at_max", "at_max_enlarge", "at_least",
                                     "maintain_ratio_no_enlarge", "pad_resize", "extract", "pad_extract",
                                     "center", "top", "bottom_right", "auto", "face", "jpg", "png", "webp",
                                     "avif", "gif", "auto", "orig"]).map(lambda value: f"{key}-{value}")))
anything = st.tuples(st.sampled_from(KEYS), values).map(lambda kv: f"{kv[0]}-{kv[1]}" if kv[1] else kv[0])
params = st.one_of(valid, valid, anything)
steps = st.lists(params, min_size=1, max_size=5).map(",".join)
transformations = st.one_of(st.lists(steps, min_size=1, max_size=4).map(":".join),
                            st.text(max_size=40))  # anything at all


@st.composite
def urls(draw) -> str:
    path = draw(st.one_of(st.sampled_from(FILES), st.sampled_from(FILES), st.sampled_from(FILES),
                          st.text(max_size=20)))
    transformation = draw(transformations)
    form = draw(st.sampled_from(["path", "query", "both", "none"]))
    safe = draw(st.sampled_from(["/:,-_.@", "/", ""]))  # how much of the URL is percent-encoded
    target = "/" + quote(path, safe=safe + "/")
    if form in ("path", "both"):
        target = f"/tr:{quote(transformation, safe=safe)}{target}"
    query = []
    if form in ("query", "both"):
        query.append("tr=" + quote(transformation, safe=safe))
    query += draw(st.lists(st.tuples(words, words).map("=".join), max_size=2))
    return target + ("?" + "&".join(query) if query else "")


@pytest.fixture(scope="module")
def fuzzed_node(photos, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-images")
    copy_samples(folder)
    shutil.copy(photos.path(photos.medium), folder / "medium.jpg")
    config = write_config(tmp_path_factory.mktemp("fuzz-node"), local_config(
        folder, before='[server]\naccess_log = false\n[named_transformations]\nthumb = "w-100"\n',
        after=f'[limits]\nrender_timeout = "{RENDER_TIMEOUT}s"\nmax_cost = 20\n'))
    with one_worker(config) as address:
        yield address


def test_random_urls_get_a_bounded_answer_and_never_a_500(fuzzed_node):
    @fuzz_settings(EXAMPLES)
    @given(url=urls(), accept=st.sampled_from(["", "image/avif,image/webp", "*/*"]))
    def answer(url, accept):
        sound_answer(fuzzed_node, "GET", url, statuses=STATUSES, bound=BOUND,
                     headers={"Accept": accept} if accept else {}, context=url)

    answer()
