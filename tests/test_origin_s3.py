"""The `s3` origin against moto's S3 API on 127.0.0.1: key mapping, special characters with
`encode_keys` off and on, conditional reads, one client per origin, real IAM credentials."""

import gzip
import socket
from pathlib import Path

import pytest

from edge.config import load_config
from edge.errors import ConfigError
from edge.origin import NotModified, OriginFailure, OriginRequest, OriginSettings, SourceTooLarge, Validators
from edge.pluginmanager import load_plugins
from edge.settings import ConfigTable
from edge_builtin_origins.s3 import S3Origin
from tests.assets import centre_colour, colour, same_colour, solid
from tests.nodes import SAMPLES, decode, write_config

BUCKET = "edge-s3-origin"
ASTRONAUT = (SAMPLES / "astronaut.jpg").read_bytes()
#: key → the colour index it is drawn in (its identity once served)
COLOURED = {
    "images/image+example.jpg": 1,
    "images/image%2Bexample.jpg": 2,
    "only-encoded/image%2Bexample.jpg": 3,
    "images/a b.jpg": 4,
    "images/folder/ü.jpg": 5,
    "encoded/image%2Bexample.jpg": 6,
    "encoded/a%20b.jpg": 7,
    "encoded/folder/%C3%BC.jpg": 8,
    "at-root.jpg": 9,
}


@pytest.fixture(scope="module")
def bucket(s3_server):
    client = s3_server.client()
    client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key="images/astronaut.jpg", Body=ASTRONAUT)
    for key, index in COLOURED.items():
        client.put_object(Bucket=BUCKET, Key=key, Body=solid(24, 16, colour(index)))
    return BUCKET


def node_config(s3, folder: str, extra: str = "", endpoint_extra: str = "") -> str:
    return s3.origin_table("bucket", BUCKET, folder=folder, extra=extra) + f"""
[[endpoints]]
id = ""
origins = ["bucket"]
{endpoint_extra}
"""


def table(s3, **keys) -> ConfigTable:
    data = {"bucket": BUCKET, "endpoint_url": s3.url, "access_key_id": "AKIATESTINGKEY000000",
            "secret_access_key": "test-secret-not-a-real-one", **keys}
    return ConfigTable(data, file="test.toml", table="origins[0]", base_dir=Path("."))


async def test_a_store_that_cannot_be_reached_is_named_by_its_address(s3):
    """It had been `cannot connect to the endpoint`: which one, and a region's typo in its host, unsaid."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    origin = S3Origin.from_config(OriginSettings("store", "s3", timeout=5.0),
                                  table(s3, endpoint_url=f"http://127.0.0.1:{port}"))
    await origin.open()
    try:
        with pytest.raises(OriginFailure) as failure:
            await origin.fetch(OriginRequest("a.jpg", 10**6))
    finally:
        await origin.close()
    assert (failure.value.kind, str(failure.value)) == ("refused",
                                                        f"GetObject 'a.jpg': cannot connect to http://127.0.0.1:{port}")


async def test_serves_folder_plus_path_and_the_bucket_root(s3, bucket, node_factory, tmp_path):
    node = await node_factory(write_config(tmp_path, node_config(s3, "/images/")))
    response = await node.fetch("/tr:orig-true/astronaut.jpg")
    assert response.code == 200
    assert response.body == ASTRONAUT
    assert [call.key for call in s3.gets(BUCKET)] == ["images/astronaut.jpg"]

    resized = await node.fetch("/tr:w-100/astronaut.jpg")
    assert (decode(resized).width, decode(resized).height) == (100, 100)

    # its own cache: the first node's originals tier already holds /astronaut.jpg
    root = await node_factory(write_config(tmp_path, '[cache]\ndir = "root-cache"\n' + node_config(s3, "/"),
                                           "root.toml"))
    assert same_colour(centre_colour(decode(await root.fetch("/at-root.jpg"))), colour(9))
    assert (await root.fetch("/astronaut.jpg")).code == 404


@pytest.mark.parametrize("encode_keys, folder, request_path, expected", [
    # off (default): the path is decoded once and looked up as it is; `+` is never a space
    (False, "/images/", "/image+example.jpg", 1),
    (False, "/images/", "/image%2Bexample.jpg", 1),
    (False, "/only-encoded/", "/image%2Bexample.jpg", None),
    (False, "/only-encoded/", "/image%252Bexample.jpg", 3),
    (False, "/images/", "/a%20b.jpg", 4),
    (False, "/images/", "/a+b.jpg", None),
    (False, "/images/", "/folder/%C3%BC.jpg", 5),
    # on: the decoded path is percent-encoded (RFC 3986, `/` kept) before the lookup
    (True, "/encoded/", "/image+example.jpg", 6),
    (True, "/encoded/", "/image%2Bexample.jpg", 6),
    (True, "/encoded/", "/a%20b.jpg", 7),
    (True, "/encoded/", "/folder/%C3%BC.jpg", 8),
    (True, "/images/", "/image+example.jpg", 2),
])
async def test_special_characters(s3, bucket, node_factory, tmp_path, encode_keys, folder, request_path, expected):
    config = node_config(s3, folder, extra=f"encode_keys = {str(encode_keys).lower()}")
    node = await node_factory(write_config(tmp_path, config))
    response = await node.fetch(request_path)
    if expected is None:
        assert response.code == 404
    else:
        assert response.code == 200, response.body
        assert same_colour(centre_colour(decode(response)), colour(expected))


async def test_canonical_link_names_the_requested_path(s3, bucket, node_factory, tmp_path):
    config = node_config(s3, "/images/", extra='canonical_base_url = "https://cdn.example.com/img/"')
    node = await node_factory(write_config(tmp_path, config))
    response = await node.fetch("/tr:w-50/astronaut.jpg")
    assert response.headers["Link"] == '<https://cdn.example.com/img/astronaut.jpg>; rel="canonical"'


async def test_keys_from_the_environment_and_masked_in_the_summary(s3, bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_TEST_KEY_ID", "AKIATESTINGKEY000000")
    monkeypatch.setenv("EDGE_TEST_SECRET", "test-secret-not-a-real-one")
    config = node_config(s3, "/images/").replace('"AKIATESTINGKEY000000"', '"${EDGE_TEST_KEY_ID}"') \
        .replace('"test-secret-not-a-real-one"', '"${EDGE_TEST_SECRET}"')
    loaded = load_config(write_config(tmp_path, config), load_plugins())
    origin = loaded.origins[0]
    assert origin.secret_access_key.reveal() == "test-secret-not-a-real-one"
    summary = str(loaded.describe())
    assert "test-secret-not-a-real-one" not in summary and "AKIATESTINGKEY000000" not in summary
    assert "'secret_access_key': '****'" in summary


@pytest.mark.parametrize("keys, message", [
    ({"bucket": ""}, "bucket: expected a bucket name"),
    ({"secret_access_key": None}, "secret_access_key: set access_key_id and secret_access_key together"),
    ({"endpoint_url": "s3.example.com"}, "endpoint_url: expected an http:// or https:// URL"),
    ({"bucket": "s3://images"}, "bucket: expected a bucket's name alone, got 's3://images'"),
    ({"bucket": "arn:aws:s3:::images"}, "bucket: expected a bucket's name alone"),
    ({"access_key_id": ""}, "access_key_id: is empty"),
    ({"secret_access_key": " "}, "secret_access_key: is empty"),
    # a bucket or folder in the URL: every image had been a 404, the log silent
    ({"endpoint_url": "https://s3.eu-west-1.amazonaws.com/my-bucket"},
     "endpoint_url: expected the store's address alone \\(scheme, host, port\\), got '/my-bucket' after it: the "
     "bucket goes in `bucket`"),
    ({"path_style": "yes"}, "path_style: expected true or false"),
    ({"folder_name": "x"}, "folder_name: unknown key"),
])
def test_config_errors_name_the_key(s3, keys, message):
    bad = table(s3, **keys)
    bad._data = {k: v for k, v in bad._data.items() if v is not None}
    with pytest.raises(ConfigError, match=f"test.toml: \\[origins\\[0\\]\\] {message}"):
        S3Origin.from_config(OriginSettings("bucket", "s3"), bad)


async def test_conditional_fetch_and_one_client_for_the_origins_life(s3, bucket):
    origin = S3Origin.from_config(OriginSettings("bucket", "s3"), table(s3, folder="images"))
    await origin.open()
    client = origin._client
    try:
        original = await origin.fetch(OriginRequest("astronaut.jpg", 10**7))
        assert original.body == ASTRONAUT and original.etag and original.last_modified
        with pytest.raises(NotModified):
            await origin.fetch(OriginRequest("astronaut.jpg", 10**7, validators=original.validators))
        for _ in range(5):
            await origin.fetch(OriginRequest("image+example.jpg", 10**7))
        gets = s3.gets(BUCKET)
        assert len(gets) == 7 and gets[0].key == "images/astronaut.jpg"
        assert origin._client is client  # (moto's server closes every connection, so reuse shows only here)
    finally:
        await origin.close()
    assert origin._client is None


async def test_an_object_stored_gzipped_is_read_inflated_and_held_to_max_bytes_inflated(s3, bucket):
    """An object with `Content-Encoding: gzip` (as tools that sync a site's files store them) had been served as
    stored: a 422, where a browser, a CDN and the `web` origin inflate it (probe of S3 keys)."""
    client = s3.client()
    png = solid(40, 30, colour(3), "png")
    objects = {"gzip.png": (gzip.compress(png), "gzip"), "x-gzip.png": (gzip.compress(png), "x-gzip"),
               "chunked.png": (png, "aws-chunked"),  # what some uploads leave: no coding of the stored bytes
               "bomb.png": (gzip.compress(bytes(20_000_000)), "gzip"),  # 20 kB inflating to 20 MB
               "not-gzip.png": (png, "gzip"), "cut.png": (gzip.compress(png)[:-40], "gzip")}
    for key, (body, encoding) in objects.items():
        client.put_object(Bucket=BUCKET, Key=f"encoded-objects/{key}", Body=body, ContentEncoding=encoding,
                          ContentType="image/png")
    origin = S3Origin.from_config(OriginSettings("bucket", "s3"), table(s3, folder="encoded-objects"))
    await origin.open()
    try:
        for key in ("gzip.png", "x-gzip.png", "chunked.png"):
            assert (await origin.fetch(OriginRequest(key, 10**6))).body == png, key
        with pytest.raises(SourceTooLarge):
            await origin.fetch(OriginRequest("bomb.png", 10**6))
        for key, said in (("not-gzip.png", "Error -3 while decompressing data"), ("cut.png", "cut short")):
            with pytest.raises(OriginFailure) as failed:
                await origin.fetch(OriginRequest(key, 10**6))
            assert failed.value.kind == "bad_response" and said in str(failed.value), (key, str(failed.value))
    finally:
        await origin.close()


async def test_an_original_known_by_its_date_alone_is_asked_for_if_modified_since(s3, bucket):
    """Validators without an ETag (what a store that sends none leaves) still make the fetch conditional: not
    modified since the date it was read at, and read again when the date is older than the object."""
    origin = S3Origin.from_config(OriginSettings("bucket", "s3"), table(s3, folder="images"))
    await origin.open()
    try:
        original = await origin.fetch(OriginRequest("astronaut.jpg", 10**7))
        with pytest.raises(NotModified):
            await origin.fetch(OriginRequest("astronaut.jpg", 10**7,
                                             validators=Validators(last_modified=original.last_modified)))
        older = Validators(last_modified="Wed, 21 Oct 2015 07:28:00 GMT")
        assert (await origin.fetch(OriginRequest("astronaut.jpg", 10**7, validators=older))).body == ASTRONAUT
    finally:
        await origin.close()


async def test_a_reader_allowed_only_get_object_is_enough(s3, bucket, node_factory, tmp_path):
    key_id, secret = s3.create_reader(BUCKET, "s3:GetObject")
    config = s3.origin_table("bucket", BUCKET, folder="/images/", key_id=key_id, secret=secret) \
        + '[[endpoints]]\nid = ""\norigins = ["bucket"]\n'
    node = await node_factory(write_config(tmp_path, config))
    s3.require_auth(True)  # moto now checks signatures and the user's policy
    assert (await node.fetch("/tr:orig-true/astronaut.jpg")).body == ASTRONAUT
    assert {call.key_id for call in s3.gets(BUCKET)} == {key_id}


@pytest.mark.parametrize("status", [302, 307])
async def test_a_redirect_from_the_endpoint_is_refused_never_followed(node_factory, tmp_path, status):
    """aiohttp follows a Location to any host unless told not to: an endpoint (or anyone on a plain-HTTP
    path to it) answering a redirect made the node fetch another address and cache what came back."""
    from tests.servers import HTTPOrigin

    elsewhere = await HTTPOrigin(files={"secret.jpg": (SAMPLES / "coffee.jpg").read_bytes()}).start()
    endpoint = await HTTPOrigin(redirects={"bkt/photos/a.jpg": f"{elsewhere.url}/secret.jpg"}).start()
    endpoint.redirect_status = status
    try:
        node = await node_factory(write_config(tmp_path, f"""
[[origins]]
name = "store"
type = "s3"
bucket = "bkt"
folder = "/photos/"
region = "us-east-1"
endpoint_url = "{endpoint.url}"
access_key_id = "AKIAEXAMPLEKEY"
secret_access_key = "example-secret"
[[endpoints]]
id = ""
origins = ["store"]
"""))
        response = await node.fetch("/tr:w-10/a.jpg")
        assert (response.code, response.headers["X-Edge-Error"]) == (502, "store: redirect_refused")
        assert endpoint.requests["bkt/photos/a.jpg"] == 1 and sum(elsewhere.requests.values()) == 0
    finally:
        await endpoint.stop()
        await elsewhere.stop()


@pytest.mark.parametrize("raised", ["ReadTimeoutError", "ConnectTimeoutError"])
def test_a_timeout_botocore_reports_is_a_timeout(s3, raised):
    """botocore's ReadTimeoutError is also an HTTPClientError: it was reported as `error`."""
    import botocore.exceptions

    from edge.origin import OriginFailure

    origin = S3Origin.from_config(OriginSettings("bucket", "s3"), table(s3))
    with pytest.raises(OriginFailure) as failure, origin.classified("GetObject", "a.jpg"):
        raise getattr(botocore.exceptions, raised)(endpoint_url="http://127.0.0.1:1", error="read timeout")
    assert failure.value.kind == "timeout"
