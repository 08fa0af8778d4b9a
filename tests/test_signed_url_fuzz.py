"""Random signed and unsigned URLs against a running node (`edge serve` in a child process) with a
`signed_only` endpoint and a `named_only` one: random `ik-s`, `ik-t`, `tr` and other query values (huge,
negative, not hex, percent-encoded junk), URLs signed with the endpoint's key, with expiries past and
future, and the same URLs unsigned. Never a 500; and the `signed_only` endpoint serves no URL the test did
not sign, whatever its query says."""

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge import signing
from tests.fuzzing import exchange, fuzz_settings, one_worker
from tests.nodes import SAMPLES, write_config

EXAMPLES = 150
KEY = "private_signed_fuzz_key_0123456789"
STATUSES = {200, 400, 401, 404, 422}
PATHS = ["/astronaut.jpg", "/tr:w-100/astronaut.jpg", "/tr:n-card/astronaut.jpg", "/missing.jpg", "/"]
values = st.one_of(st.text(max_size=50), st.integers(-10**20, 10**20).map(str),
                   st.sampled_from(["", "0", "9999999999", "nan", "1e3", "-1", "0x10", "a" * 40, "A" * 40, "%00",
                                    "%ff", "+1", " 1", "w-100", "n-card"]))


@pytest.fixture(scope="module")
def signing_node(tmp_path_factory):
    config = write_config(tmp_path_factory.mktemp("signed-fuzz"), f"""
[server]
access_log = false
[named_transformations]
card = "w-100"
[[origins]]
name = "samples"
type = "local"
root = "{SAMPLES}"
[[endpoints]]
id = ""
origins = ["samples"]
private_key = "{KEY}"
signed_only = true
[[endpoints]]
id = "named"
origins = ["samples"]
private_key = "{KEY}"
named_only = true
""")
    with one_worker(config) as address:
        yield address


def test_random_signatures_never_open_a_signed_only_endpoint_nor_get_a_500(signing_node):
    signed_answers = []

    @fuzz_settings(EXAMPLES)
    @given(endpoint=st.sampled_from(["", "/named"]), path=st.sampled_from(PATHS),
           query=st.lists(st.tuples(st.sampled_from(["ik-s", "ik-t", "tr", "ik-attachment", "x"]), values), max_size=4),
           sign=st.booleans(),  # no expiry, one long past, one far ahead
           expires=st.one_of(st.none(), st.integers(1, 1_500_000_000), st.integers(2_500_000_000, 10**11 - 1)))
    def one(endpoint, path, query, sign, expires):
        text = "&".join(f"{name}={quote(value)}" for name, value in query)
        unsigned = path + ("?" + text if text else "")
        target = f"{endpoint}/{signing.sign(KEY, unsigned.lstrip('/'), expires)}" if sign else endpoint + unsigned
        status, _, _ = exchange(signing_node, "GET", target, timeout=30)
        assert status in STATUSES, (target, status)
        if endpoint == "" and not sign:
            assert status != 200, target  # an unsigned URL, whatever `ik-s` it carries
        if sign:
            signed_answers.append(status)

    one()
    assert 200 in signed_answers and 401 in signed_answers, signed_answers  # signed URLs served; expired refused
