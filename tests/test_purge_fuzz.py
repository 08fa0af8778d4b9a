"""Random bodies to the purge API (`POST /_edge/purge`) of a running node (`edge serve` in a child process)
with an ImageKit-style, a host-named and a Cloudinary-style endpoint (over a backup bucket in moto):
`url`s and `prefix`es drawn from the URL fuzzers (`tests/test_url_fuzz.py`, `tests/test_cloudinary_fuzz.py`)
with and without a scheme and host, values of every JSON type, JSON that is not an object or not JSON,
lone surrogates, deep nesting, with and without the token. Always 200, 400, 401, 404 or 413: never a 500."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzzing import exchange, fuzz_settings, one_worker
from tests.nodes import SAMPLES, write_config
from tests.test_cloudinary_fuzz import delivery_urls
from tests.test_url_fuzz import urls

EXAMPLES = 150
TOKEN = "purge-fuzz-admin-token-0123456789"
BUCKET = "purge-fuzz"
STATUSES = {200, 400, 401, 404, 413}

targets = st.one_of(
    urls(), delivery_urls(), delivery_urls().map(lambda path: "/cld" + path), st.text(max_size=40),
    st.sampled_from(["http://img.example.com/a.jpg", "https://[::1/a", "//x/y", "/", "*", "http://", "cld/", "/cld"]),
    st.tuples(st.sampled_from(["http://", "https://", "", "//"]),
              st.sampled_from(["img.example.com", "127.0.0.1", "x", "[::1]", ""]), urls()).map("".join))
other_values = st.one_of(st.integers(), st.none(), st.floats(), st.booleans(), st.lists(st.text(max_size=3), max_size=2))
bodies = st.one_of(
    st.tuples(st.sampled_from(["url", "prefix"]), targets).map(lambda kv: json.dumps({kv[0]: kv[1]})),
    st.tuples(st.sampled_from(["url", "prefix", "x"]), other_values).map(lambda kv: json.dumps({kv[0]: kv[1]})),
    st.sampled_from(["", "{", "[]", "null", '{"url": "/a.jpg", "prefix": "/"}', '{"url": "\\ud800"}', "[" * 5000]),
    st.text(max_size=50))


@pytest.fixture(scope="module")
def purge_node(s3_server, tmp_path_factory):
    client = s3_server.client()
    client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key="res/demo/image/upload/sample/1700000000.jpg",
                      Body=(SAMPLES / "astronaut.jpg").read_bytes())
    config = write_config(tmp_path_factory.mktemp("purge-fuzz"), f"""
[server]
access_log = false
[admin]
token = "{TOKEN}"
[[origins]]
name = "samples"
type = "local"
root = "{SAMPLES}"
{s3_server.origin_table("Cloudinary backup", BUCKET, type="cloudinary_backup", folder="/res/demo/")}
[[endpoints]]
id = ""
origins = ["samples"]
[[endpoints]]
id = "cld"
origins = ["Cloudinary backup"]
url_style = "cloudinary"
[[endpoints]]
id = "hosts"
hosts = ["img.example.com"]
origins = ["samples"]
""")
    with one_worker(config) as address:
        yield address


def test_random_purge_bodies_get_a_clear_answer_and_never_a_500(purge_node):
    answered = []

    @fuzz_settings(EXAMPLES)
    @given(body=bodies, authorization=st.sampled_from([f"Bearer {TOKEN}"] * 4 + ["", "Bearer x", "Basic eA=="]),
           content_type=st.sampled_from(["application/json", "", "text/plain"]))
    def one(body, authorization, content_type):
        headers = {name: value for name, value in (("Authorization", authorization), ("Content-Type", content_type))
                   if value}
        status, _, _ = exchange(purge_node, "POST", "/_edge/purge", timeout=30, headers=headers,
                             body=body.encode("utf-8", "surrogatepass"))
        assert status in STATUSES, (body[:300], authorization, content_type, status)
        answered.append(status)

    one()
    assert {200, 400, 401} <= set(answered), sorted(answered)
