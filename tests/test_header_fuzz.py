"""Random request headers against a running node (`edge serve` in a child process): the ones it reads (client
hints, `Accept`, `If-None-Match`, `If-Match`, `If-Unmodified-Since`, CORS, `X-Request-Id`, `X-Forwarded-For`,
`Authorization`) and others a client sends, with numbers out of every range (`1e309`, `nan`, `-0`), junk, lists and long values, on image
URLs with and without client hints, HEAD and preflights included. Never a 500, only the statuses the spec
names, every answer within the render deadline plus a margin. (The framing headers, `Content-Length`,
`Transfer-Encoding` and `Expect`, are `tests/test_server_limits.py`'s.)"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzzing import copy_samples, fuzz_settings, one_worker, sound_answer
from tests.nodes import local_config, write_config
from tests.test_url_fuzz import BOUND, RENDER_TIMEOUT

EXAMPLES = 150
#: what an answer may be: the fuzz's image statuses, a preflight's 204, a plain `OPTIONS`' 405 and a failed
#: `If-Match`'s or `If-Unmodified-Since`'s 412
STATUSES = {200, 204, 304, 400, 404, 405, 412, 503}
NAMES = ["Accept", "Sec-CH-Width", "Width", "Sec-CH-DPR", "DPR", "Sec-CH-Viewport-Width", "Viewport-Width",
         "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range", "Range", "Origin",
         "Access-Control-Request-Method", "Access-Control-Request-Headers", "X-Request-Id", "X-Forwarded-For",
         "Authorization", "Cookie", "Referer", "User-Agent", "Accept-Encoding", "Cache-Control", "Save-Data"]
PATHS = ["/tr:w-auto/astronaut.jpg", "/tr:w-auto,dpr-auto/astronaut.jpg", "/tr:dpr-auto,w-300/coffee.jpg",
         "/tr:w-auto-400/astronaut.jpg", "/tr:w-300,f-auto/astronaut.jpg", "/astronaut.jpg",
         "/tr:orig-true/logo-transparent.png", "/tr:w-100/missing.jpg", "/"]
values = st.one_of(
    st.sampled_from(["1e309", "nan", "inf", "-inf", "-0", "0", "-1", "99999999999999999999", "1.5", "0.0001",
                     "5.0000001", "", " ", "*", '"abc"', 'W/"x"', '"a", W/"b", *', "*/*", "image/avif;q=0",
                     "image/*;q=nan", "bytes=0-10", "bytes=-5", "GET", "x, y, z", "https://shop.example.com",
                     "null", "Bearer x", "Wed, 21 Oct 2015 07:28:00 GMT", "1.2.3.4, 10.0.0.1, ::1",
                     "image/webp,image/avif,image/jxl,image/heic,*/*;q=0.1" * 20]),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60),
    st.integers(-10**6, 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str))


@pytest.fixture(scope="module")
def header_node(tmp_path_factory):
    folder = tmp_path_factory.mktemp("header-fuzz-images")
    copy_samples(folder)
    config = write_config(tmp_path_factory.mktemp("header-fuzz-node"), local_config(
        folder, before='[server]\naccess_log = false\ncors_origin = "*"\n',
        after=f'[limits]\nrender_timeout = "{RENDER_TIMEOUT}s"\n'))
    with one_worker(config) as address:
        yield address


def test_random_headers_get_a_bounded_answer_and_never_a_500(header_node):
    answered = []

    @fuzz_settings(EXAMPLES)
    @given(path=st.sampled_from(PATHS), headers=st.dictionaries(st.sampled_from(NAMES), values, max_size=5),
           method=st.sampled_from(["GET", "GET", "HEAD", "OPTIONS"]))
    def answer(path, headers, method):
        answered.append(sound_answer(header_node, method, path, statuses=STATUSES, bound=BOUND, headers=headers))

    answer()
    assert answered.count(200) >= EXAMPLES // 10, sorted(answered)  # many get as far as an image
