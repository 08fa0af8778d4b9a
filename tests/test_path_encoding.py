"""File names as teams leaving ImageKit or Cloudinary have them (spaces, `+`, `%`, `#`, `?`, quotes, NFC and NFD
forms, emoji, upper-case extensions, names that look like transformations), on every built-in origin type, asked
for with the URLs the SDKs build: the right image each time, one cache entry per original whatever the spelling,
never one entry for two originals, and a purge of the client's URL removing what that client gets.

Every original is a flat colour of its own and a size of its own (tests/assets.py), so the decoded answer says
which one was served."""

from __future__ import annotations

import asyncio
import json
import unicodedata
from urllib.parse import quote

import pytest
from cloudinary import CloudinaryImage
from imagekitio import ImageKit

from edge import cloudinary_check
from edge.signing import PATH_SAFE
from tests.assets import centre_colour, colour, same_colour, solid
from tests.nodes import decode, write_config
from tests.s3server import Faults
from tests.servers import HTTPOrigin
from tests.test_http_edges import exchange

KEY = "path-encoding-signing-key"
TOKEN = "path-encoding-admin-token"
NFC, NFD = unicodedata.normalize("NFC", "café.jpg"), unicodedata.normalize("NFD", "café.jpg")
#: the originals, each its own colour and size (index i: 20+i × 10+i pixels); pairs that one decoding too
#: many or too few would confuse: `a b`/`a+b`, `a/b`/`a%2Fb`, NFC/NFD, `%41`/`A`
NAMES = ["a b.jpg", "a+b.jpg", "a/b.jpg", "a%2Fb.jpg", NFC, NFD, "100%.jpg", "50%25.jpg", "hash#1.jpg", "what?.jpg",
         "x&y=z.jpg", "it's \"q\".jpg", "semi;colon.jpg", "co:lon.jpg", "😀.jpg", "UP.JPG", "mixed.Jpeg", "a..b.jpg",
         "L" * 200 + ".jpg", "q%41.jpg", "A.jpg", "dir with space/f(1).jpg", "tr:w-1.jpg"]
BUCKET, BACKUP = "path-encoding", "path-encoding-backup"


def size(name: str) -> tuple[int, int]:
    index = NAMES.index(name)
    return 20 + index, 10 + index


def original(name: str) -> bytes:
    return solid(*size(name), colour(NAMES.index(name)), "jpg")


def public_id(name: str) -> str:
    """Cloudinary's public ID of the name: without its image extension (the backup adds `/<version>.<format>`)."""
    stem, _, extension = name.rpartition(".")
    return stem if extension.lower() in ("jpg", "jpeg") else name


def sdk(name: str) -> str:
    """The path as the ImageKit Python SDK encodes it (RFC 3986's path characters kept)."""
    return quote(name, safe=PATH_SAFE)


def every_character(name: str) -> str:
    """The same path as `encodeURIComponent` per segment writes it: every reserved character encoded."""
    return "/".join(quote(segment, safe="") for segment in name.split("/"))


def every_byte(name: str) -> str:
    """The same path with every byte of every segment percent-encoded, in lower-case hex (`A` as `%41`)."""
    return "/".join("".join(f"%{byte:02x}" for byte in segment.encode()) for segment in name.split("/"))


@pytest.fixture
async def origins(s3, tmp_path):
    """The names in a folder, on a web server, in an S3 bucket and in a Cloudinary backup bucket."""
    for name in NAMES:
        (tmp_path / "files" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "files" / name).write_bytes(original(name))
    client = s3.client()
    for bucket in (BUCKET, BACKUP):
        client.create_bucket(Bucket=bucket)
    for name in NAMES:
        client.put_object(Bucket=BUCKET, Key=name, Body=original(name))
        client.put_object(Bucket=BACKUP, Key=f"res/demo/image/upload/{public_id(name)}/1600000000.jpg",
                          Body=original(name))
    web = await HTTPOrigin(files={name: original(name) for name in NAMES}).start()
    yield f"""
[admin]
token = "{TOKEN}"

[[origins]]
name = "folder"
type = "local"
root = "{tmp_path / 'files'}"

[[origins]]
name = "web"
type = "web"
base_url = "{web.url}"
{s3.origin_table("bucket", BUCKET)}
{s3.origin_table("backup", BACKUP, type="cloudinary_backup", folder="/res/demo/")}
[[endpoints]]
id = "local"
origins = ["folder"]

[[endpoints]]
id = "web"
origins = ["web"]

[[endpoints]]
id = "s3"
origins = ["bucket"]

[[endpoints]]
id = "signed"
origins = ["folder"]
private_key = "{KEY}"

[[endpoints]]
id = "cloudinary"
origins = ["backup"]
url_style = "cloudinary"
private_key = "{KEY}"
""", web
    await web.stop()


@pytest.fixture
async def node(origins, node_factory, tmp_path):
    return await node_factory(write_config(tmp_path, origins[0]))


def shows(response, name: str, width: int | None = None) -> str | None:
    """None when the response is `name`'s image (at its own size, or `width` wide), else what is wrong."""
    if response.code != 200:
        return f"{response.code} {response.body[:100]!r}"
    image = decode(response)
    if not same_colour(centre_colour(image), colour(NAMES.index(name))):
        return f"another original's colour {centre_colour(image)}"
    if (image.width, image.height) != size(name) if width is None else image.width != width:
        return f"{image.width}×{image.height}"
    return None


@pytest.mark.parametrize("endpoint", ["local", "web", "s3"])
async def test_every_name_is_served_by_the_urls_the_imagekit_sdk_builds(node, origins, endpoint):
    """The SDK's URL with the transformation in the path and in the query, and the same path with every reserved
    character encoded, or every byte: the right image each time, one cache entry for the spellings, one origin
    fetch."""
    helper = ImageKit(private_key="unused").helper
    wrong = {}
    for name in NAMES:
        base = f"{node.url}/{endpoint}"
        plain = await node.fetch(f"/{endpoint}/{sdk(name)}")
        other_spelling = await node.fetch(f"/{endpoint}/{every_character(name)}")
        byte_by_byte = await node.fetch(f"/{endpoint}/{every_byte(name)}")
        in_path, in_query = [await node.fetch(helper.build_url(src=name, url_endpoint=base, transformation=[
            {"width": 10}], transformation_position=position).removeprefix(node.url)) for position in ("path", "query")]
        spellings = (("other spelling", other_spelling), ("byte by byte", byte_by_byte))
        for what, response, width in (("plain", plain, None), *((what, r, None) for what, r in spellings),
                                      ("tr: in the path", in_path, 10), ("?tr=", in_query, 10)):
            if problem := shows(response, name, width):
                wrong[f"{name} {what}"] = problem
        for what, response in spellings:
            if (plain.code, response.headers.get("X-Cache")) == (200, "MISS"):
                wrong[f"{name} {what}"] = "a cache entry of its own"
    assert wrong == {}
    if endpoint == "web":  # the originals tier kept each one: both spellings and both sizes cost one fetch
        assert origins[1].requests == {name: 1 for name in NAMES}


async def test_every_name_is_served_through_the_cloudinary_sdks_signed_urls(node):
    """The Cloudinary SDK's URLs, signed: the SDK unquotes a public ID before escaping it, so it cannot write one
    holding `%XX` (`q%41` becomes `qA`), and those names are left out."""
    wrong = {}
    for name in NAMES:
        if "%" in name:
            continue
        for options, width in (({}, None), ({"width": 10, "crop": "scale"}, 10)):
            url = CloudinaryImage(public_id(name)).build_url(cloud_name="demo", api_secret=KEY, sign_url=True,
                                                             format="jpg", **options)
            response = await node.fetch("/cloudinary" + url.removeprefix("http://res.cloudinary.com"))
            if problem := shows(response, name, width):
                wrong[f"{name} {options}"] = problem
    assert wrong == {}


async def test_the_imagekit_sdks_signature_verifies_for_every_name(node):
    helper = ImageKit(private_key=KEY).helper
    wrong = {}
    for name in NAMES:
        for position in ("path", "query"):
            url = helper.build_url(src=name, url_endpoint=f"{node.url}/signed", transformation=[{"width": 12}],
                                   transformation_position=position, signed=True, expires_in=3600)
            if problem := shows(await node.fetch(url.removeprefix(node.url)), name, 12):
                wrong[f"{name} {position}"] = problem
    assert wrong == {}


async def purge(node, url: str):
    return await node.fetch("/_edge/purge", method="POST", body=json.dumps({"url": url}).encode(),
                            headers={"Authorization": f"Bearer {TOKEN}"})


async def test_purging_the_url_a_client_used_removes_what_that_client_gets(node):
    wrong = {}
    for name in NAMES:
        url = f"/local/tr:w-10/{sdk(name)}"
        assert (await node.fetch(url)).code == 200
        assert (await node.fetch(url)).headers["X-Cache"] == "HIT"
        purged = await purge(node, f"http://img.example.com{url}?tr=h-5")
        again = await node.fetch(url)
        if purged.code != 200 or again.headers.get("X-Cache") != "MISS" or shows(again, name, 10):
            wrong[name] = (purged.code, purged.body[:100], again.headers.get("X-Cache"))
    assert wrong == {}


async def test_a_file_named_like_a_transformation_is_served_and_purged(node):
    """`tr:w-1.jpg`, alone after the endpoint: nothing follows it, so it is the file's name (as a transformation
    it left no path: a 404 whatever the folder held, and a purge of it a 400)."""
    assert shows(await node.fetch("/local/tr:w-1.jpg"), "tr:w-1.jpg") is None
    assert shows(await node.fetch("/local/tr:w-1.jpg?tr=w-10"), "tr:w-1.jpg", 10) is None
    assert shows(await node.fetch("/local/tr:w-10/tr:w-1.jpg"), "tr:w-1.jpg", 10) is None
    assert (await node.fetch("/local/tr:w-1.jpg")).headers["X-Cache"] == "HIT"
    purged = await purge(node, "/local/tr:w-1.jpg")
    assert purged.code == 200 and json.loads(purged.body)["removed"] >= 2
    assert (await node.fetch("/local/tr:w-1.jpg")).headers["X-Cache"] == "MISS"
    assert (await node.fetch("/local/tr:w-1.png")).code == 404  # no such file: not found, as before
    assert (await node.fetch("/local/tr:w-10/")).code == 404


@pytest.mark.parametrize("endpoint", ["local", "web", "s3"])
async def test_a_name_sent_unencoded_is_the_path_its_percent_encoding_names(node, endpoint):
    """curl and some proxies send `café.jpg` as typed, its UTF-8 bytes unencoded; Tornado reads the request line as
    Latin-1 (`cafÃ©.jpg`), which had been looked up as it was: a 404 for an image the origin has."""
    for name in (NFC, NFD, "😀.jpg", "dir with space/f(1).jpg"):
        encoded = await node.fetch(f"/{endpoint}/{sdk(name)}")
        assert shows(encoded, name) is None
        unencoded = name.replace(" ", "%20")  # a space would end the target: only what is beyond ASCII is sent as is
        raw = await exchange(node.url, f"GET /{endpoint}/{unencoded} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                             "\r\n".encode())
        assert (raw.status, raw.headers.get("x-cache")) == (200, "HIT"), (name, raw.status, raw.body[:100])
        assert raw.body == encoded.body
    # the SDK writes a `di-` path as it is, into a URL it has already encoded: `tr:di-café.jpg` leaves it unencoded
    default = ImageKit(private_key="unused").helper.build_url(src="no-such.jpg", url_endpoint=f"{node.url}/{endpoint}",
                                                              transformation=[{"default_image": NFC}],
                                                              transformation_position="path")
    assert f"/tr:di-{NFC}/" in default
    raw = await exchange(node.url, f"GET {default.removeprefix(node.url)} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                         "\r\n".encode())
    assert (raw.status, same_colour(centre_colour(raw.body), colour(NAMES.index(NFC)))) == (200, True), raw.body[:100]
    invalid = await exchange(node.url, f"GET /{endpoint}/caf\xe9.jpg HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                             .encode("latin-1"))
    assert (invalid.status, invalid.body) == (400, b"invalid path: not UTF-8 after percent-decoding\n")


async def test_a_purge_names_the_path_as_typed_or_as_encoded(node):
    """A purge's JSON holds text: `café.jpg` as typed removes what `caf%C3%A9.jpg` and the unencoded bytes get."""
    for typed in (f"/local/{NFC}", f"/local/{sdk(NFC)}", f"http://img.example.com/local/tr:w-10/{NFD}"):
        name = NFD if NFD in typed else NFC
        assert (await node.fetch(f"/local/{sdk(name)}")).code == 200
        assert (await node.fetch(f"/local/{sdk(name)}")).headers["X-Cache"] == "HIT"
        purged = await purge(node, typed)
        assert purged.code == 200 and json.loads(purged.body)["removed"] >= 1, (typed, purged.body)
        assert (await node.fetch(f"/local/{sdk(name)}")).headers["X-Cache"] == "MISS"


async def test_a_path_too_long_for_an_s3_key_is_not_found_without_asking_the_bucket(node, s3):
    """S3 keys are at most 1024 bytes of UTF-8; AWS answers a longer one's GetObject `400 KeyTooLongError`, which the
    node took for a broken origin: a 502 for any client's long path, and a warning each time. No object can have
    such a key (nor a Cloudinary version under such a folder): not found, and the bucket is not asked."""
    client = s3.client()
    longest = "é" * 510 + ".jpg"  # 1024 bytes: as long as a key can be
    client.put_object(Bucket=BUCKET, Key=longest, Body=original("a b.jpg"))
    assert shows(await node.fetch(f"/s3/{sdk(longest)}"), "a b.jpg") is None
    s3.faults = Faults(status=400, code="KeyTooLongError", only_gets=False)  # as AWS answers what follows
    for path in (f"/s3/{sdk('é' * 511 + '.jpg')}", f"/cloudinary/demo/image/upload/{'x' * 1010}.jpg"):
        calls = len(s3.calls)
        response = await node.fetch(path)
        assert (response.code, response.body, len(s3.calls)) == (404, b"not found\n", calls), path[:60]


async def test_a_plus_in_a_default_images_path_is_a_plus_in_the_path_and_a_space_in_the_query(node):
    """As docs/origins.md says: `?tr=` is a query string, where `+` is a space; `%2B` is a `+` in both."""
    for url, name in (("/local/tr:di-a+b.jpg/none.jpg", "a+b.jpg"), ("/local/none.jpg?tr=di-a%2Bb.jpg", "a+b.jpg"),
                      ("/local/none.jpg?tr=di-a+b.jpg", "a b.jpg"), ("/local/tr:di-a%20b.jpg/none.jpg", "a b.jpg")):
        assert shows(await node.fetch(url), name) is None, url


async def test_a_path_holding_a_nul_is_not_found_without_asking_any_origin(node, origins, s3):
    """NUL separates the parts of every cache key: `a%00b.jpg` had been read as the path `a` by purges (a purge of
    it emptied the shared tier of everything of `a`), and no origin can hold such a name."""
    web = origins[1]
    for path in ("/local/a%00b.jpg", "/web/a%00b.jpg", "/s3/a%00b.jpg", "/cloudinary/demo/image/upload/a%00b.jpg",
                 "/s3/tr:w-10/%00"):
        calls, fetched = len(s3.calls), sum(web.requests.values())
        response = await node.fetch(path)
        assert (response.code, response.body, len(s3.calls), sum(web.requests.values())) == \
            (404, b"not found\n", calls, fetched), path
    assert (await purge(node, "/local/a%00b.jpg")).code == 400


async def test_cloudinary_check_fetches_a_url_written_with_characters_beyond_ascii(node):
    """A site's export holds URLs as pages show them (`…/café.jpg`); `edge cloudinary-check --base-url` had failed
    them all (`'ascii' codec can't encode`) for images the node serves."""
    for name in (NFC, NFD, "😀.jpg"):
        url = f"https://res.cloudinary.com/demo/image/upload/w_10/{name}"
        fetched = await asyncio.to_thread(cloudinary_check.fetch, f"{node.url}/cloudinary", url)
        assert fetched.startswith("OK jpeg 10x"), (name, fetched)
