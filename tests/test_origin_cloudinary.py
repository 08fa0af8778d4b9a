"""The `cloudinary_backup` origin against a bucket laid out exactly as Cloudinary's backup writes it.

Every object is a flat colour of its own (see tests/assets.py), so a test can tell from the decoded
response WHICH version was served, even after a resize or a format change.
"""

import json

import pytest

from edge.transform.formats import path_format
from edge_builtin_origins.cloudinary_backup import ResolutionCache, Versions, parse_asset_path
from tests.assets import centre_colour, colour, same_colour, solid
from tests.nodes import EVERY_MISS_TO_ORIGIN, decode, loader, write_config

BUCKET = "acme-cloudinary-backup"
DEMO = "res/demo/image/upload/"
#: every object in the bucket: key → (width, height); the colour is `colour(index in this list)`
OBJECTS = {
    DEMO + "products/shoe/1570979139.jpg": (40, 30),
    DEMO + "products/shoe/1600000000.jpg": (42, 30),
    DEMO + "products/shoe/1700000000.jpg": (44, 30),  # newest shoe
    DEMO + "products/shoe/latest.jpg": (46, 30),  # not a version: ignored
    DEMO + "products/shoe/notes.txt": None,
    DEMO + "products/shoe-red/1750000000.jpg": (48, 30),  # newer, but another public ID
    DEMO + "2024/summer.sale/hero/1650000000.jpg": (50, 30),
    DEMO + "logo.v2/1600000001.png": (52, 30),
    DEMO + "banner/1600000002.png": (54, 30),  # a PNG original, requested as .webp
    DEMO + "numeric/999999999.jpg": (56, 30),
    DEMO + "numeric/1000000000.jpg": (58, 30),  # newest by number, not by string order
    DEMO + "a/b/c/d/deep/1000000001.jpg": (60, 30),
    DEMO + "a/b/c/d/deep/1000000002.jpg": (62, 30),
    DEMO + "a/b/c/d/deep/1000000003.jpg": (64, 30),
    DEMO + "a/b/c/d/deep/1000000004.jpg": (66, 30),
    DEMO + "a/b/c/d/deep/1000000005.jpg": (68, 30),
    DEMO + "image%2Bexample/1600000004.jpg": (70, 30),  # an uploader that encoded its public IDs
    "res/other/image/upload/products/shoe/1800000000.jpg": (72, 30),  # another cloud's shoe
    "res/other/image/upload/products/shoe/1800000001.jpg": (74, 30),
}
INDEX = {key: i for i, key in enumerate(OBJECTS)}


@pytest.fixture(scope="module")
def backup_bucket(s3_server):
    client = s3_server.client()
    client.create_bucket(Bucket=BUCKET)
    for key, size in OBJECTS.items():
        body = b"backup notes" if size is None else solid(*size, colour(INDEX[key]), key.rsplit(".", 1)[1])
        client.put_object(Bucket=BUCKET, Key=key, Body=body)
    return BUCKET


def served(response) -> str:
    """The key of the object whose colour the response shows."""
    assert response.code == 200, (response.code, response.body)
    shown = centre_colour(decode(response))
    matches = [key for key, i in INDEX.items() if OBJECTS[key] and same_colour(shown, colour(i))]
    assert len(matches) == 1, (shown, matches)
    return matches[0]


def config(s3, folder="/res/demo/", extra="") -> str:
    return s3.origin_table("Product images bucket", BUCKET, type="cloudinary_backup", folder=folder,
                           extra=extra) + '\n[[endpoints]]\nid = ""\norigins = ["Product images bucket"]\n'


@pytest.fixture
async def demo(s3, backup_bucket, node_factory, tmp_path):
    return await node_factory(write_config(tmp_path, config(s3)))


@pytest.mark.parametrize("path, expected", [
    ("image/upload/products/shoe.jpg", "products/shoe/1700000000.jpg"),
    ("image/upload/products/shoe", "products/shoe/1700000000.jpg"),
    ("image/upload/v1600000000/products/shoe.jpg", "products/shoe/1600000000.jpg"),  # pinned, though older
    ("image/upload/v1570979139/products/shoe.jpg", "products/shoe/1570979139.jpg"),
    ("image/upload/v1/products/shoe.jpg", "products/shoe/1700000000.jpg"),  # the SDKs' placeholder
    ("image/upload/v1234567/products/shoe.jpg", "products/shoe/1700000000.jpg"),  # not in the folder
    ("image/upload/products/shoe-red.jpg", "products/shoe-red/1750000000.jpg"),
    ("image/upload/2024/summer.sale/hero.jpg", "2024/summer.sale/hero/1650000000.jpg"),
    ("image/upload/logo.v2.png", "logo.v2/1600000001.png"),
    ("image/upload/logo.v2", "logo.v2/1600000001.png"),
    ("image/upload/numeric.jpg", "numeric/1000000000.jpg"),
    ("image/upload/a/b/c/d/deep.jpg", "a/b/c/d/deep/1000000005.jpg"),
    ("image/upload/v1000000002/a/b/c/d/deep.jpg", "a/b/c/d/deep/1000000002.jpg"),
])
async def test_resolves_the_version_cloudinary_would_serve(demo, path, expected):
    response = await demo.fetch(f"/tr:w-20/{path}")
    assert served(response) == DEMO + expected
    assert decode(response).width == 20


@pytest.mark.parametrize("path", [
    "image/upload/products/sho.jpg",  # a prefix of `shoe`: listing with the delimiter finds nothing
    "image/upload/products.jpg",
    "image/upload/products/shoe/latest.jpg",  # objects inside a public ID folder are not public IDs
    "image/upload/products/shoe/1700000000.jpg",
    "image/upload/",
    "video/upload/products/shoe.jpg",
    "image/upload/v" + "9" * 5000 + "/products/shoe.jpg",  # past int()'s digit limit: was a 502 and a traceback
    "image/upload/v%D9%A1/products/shoe.jpg",  # an Arabic-Indic 1: part of the public ID, not version 1
])
async def test_not_found(demo, path):
    assert (await demo.fetch(f"/{path}")).code == 404


async def test_the_request_extension_names_the_output_format(demo):
    webp = await demo.fetch("/image/upload/banner.webp")
    assert (loader(webp), webp.headers["Content-Type"]) == ("webpload", "image/webp")
    assert served(webp) == DEMO + "banner/1600000002.png"
    assert (decode(webp).width, decode(webp).height) == (54, 30)

    stored = await demo.fetch("/image/upload/banner")
    assert loader(stored) == "pngload"


async def test_the_folder_selects_the_cloud_and_may_start_deeper(s3, backup_bucket, node_factory, tmp_path):
    other = await node_factory(write_config(tmp_path, config(s3, folder="/res/other/"), "other.toml"))
    assert served(await other.fetch("/image/upload/products/shoe.jpg")) == \
        "res/other/image/upload/products/shoe/1800000001.jpg"
    upload = await node_factory(write_config(tmp_path, config(s3, folder="res/demo/image/upload"), "up.toml"))
    assert served(await upload.fetch("/products/shoe.jpg")) == DEMO + "products/shoe/1700000000.jpg"
    assert served(await upload.fetch("/v1600000000/products/shoe.jpg")) == DEMO + "products/shoe/1600000000.jpg"


async def test_lists_once_per_public_id_then_only_gets(s3, backup_bucket, node_factory, tmp_path):
    demo = await node_factory(write_config(tmp_path, EVERY_MISS_TO_ORIGIN + config(s3)))
    first = await demo.fetch("/tr:w-20/image/upload/products/shoe.jpg")
    assert served(first) == DEMO + "products/shoe/1700000000.jpg"
    assert [(c.query["prefix"], c.query["delimiter"]) for c in s3.lists(BUCKET)] == \
        [([DEMO + "products/shoe/"], ["/"])]
    assert [c.key for c in s3.gets(BUCKET)] == [DEMO + "products/shoe/1700000000.jpg"]

    # another size, another format, a pinned version of the same asset: no listing at all
    for path in ("/tr:w-30/image/upload/products/shoe.jpg", "/tr:w-30/image/upload/products/shoe.webp",
                 "/tr:w-30/image/upload/v1600000000/products/shoe.jpg"):
        assert (await demo.fetch(path)).code == 200
    assert len(s3.lists(BUCKET)) == 1
    assert [c.key for c in s3.gets(BUCKET)][1:] == [DEMO + "products/shoe/1700000000.jpg"] * 2 + \
        [DEMO + "products/shoe/1600000000.jpg"]

    # an output cache hit touches the bucket not at all
    assert (await demo.fetch("/tr:w-20/image/upload/products/shoe.jpg")).headers["X-Cache"] == "HIT"
    assert (len(s3.lists(BUCKET)), len(s3.gets(BUCKET))) == (1, 4)


async def test_zero_ttl_lists_every_time(s3, backup_bucket, node_factory, tmp_path):
    node = await node_factory(write_config(tmp_path, EVERY_MISS_TO_ORIGIN + config(s3, extra='resolution_ttl = "0s"')))
    for width in (20, 30):
        assert (await node.fetch(f"/tr:w-{width}/image/upload/logo.v2.png")).code == 200
    assert len(s3.lists(BUCKET)) == 2


async def test_a_version_deleted_after_listing_is_listed_again(s3, backup_bucket, node_factory, tmp_path):
    client = s3.client()
    client.put_object(Bucket=BUCKET, Key=DEMO + "fleeting/1000000001.jpg", Body=solid(40, 30, colour(90)))
    client.put_object(Bucket=BUCKET, Key=DEMO + "fleeting/1000000002.jpg", Body=solid(40, 30, colour(91)))
    node = await node_factory(write_config(tmp_path, EVERY_MISS_TO_ORIGIN + config(s3)))
    first = await node.fetch("/tr:w-20/image/upload/fleeting.jpg")
    assert same_colour(centre_colour(decode(first)), colour(91))
    client.delete_object(Bucket=BUCKET, Key=DEMO + "fleeting/1000000002.jpg")
    second = await node.fetch("/tr:w-30/image/upload/fleeting.jpg")
    assert same_colour(centre_colour(decode(second)), colour(90))
    assert len(s3.lists(BUCKET)) == 2


async def test_a_url_pinning_a_newer_version_than_listed_lists_again(s3, backup_bucket, node_factory, tmp_path):
    client = s3.client()
    client.put_object(Bucket=BUCKET, Key=DEMO + "reuploaded/1000000001.jpg", Body=solid(40, 30, colour(92)))
    node = await node_factory(write_config(tmp_path, EVERY_MISS_TO_ORIGIN + config(s3)))
    assert same_colour(centre_colour(decode(await node.fetch("/image/upload/reuploaded.jpg"))), colour(92))
    client.put_object(Bucket=BUCKET, Key=DEMO + "reuploaded/1000000002.jpg", Body=solid(40, 30, colour(93)))

    # the unversioned URL keeps the listed version until resolution_ttl; older pins and `v1` list nothing
    for path in ("/tr:w-20/image/upload/reuploaded.jpg", "/tr:w-20/image/upload/v1/reuploaded.jpg"):
        assert same_colour(centre_colour(decode(await node.fetch(path))), colour(92))
    assert len(s3.lists(BUCKET)) == 1
    pinned = await node.fetch("/image/upload/v1000000002/reuploaded.jpg")
    assert same_colour(centre_colour(decode(pinned)), colour(93))
    assert len(s3.lists(BUCKET)) == 2
    unpinned = await node.fetch("/tr:w-30/image/upload/reuploaded.jpg")
    assert same_colour(centre_colour(decode(unpinned)), colour(93))  # the new listing serves all
    assert len(s3.lists(BUCKET)) == 2


async def test_a_url_pinning_a_version_not_backed_up_yet_is_not_found_until_it_is(s3, backup_bucket, node_factory,
                                                                                    tmp_path):
    """Cloudinary's backup copies an upload some time after it: the SDK's URL of the new version had been
    answered with the newest version backed up, an older image, cached for a year under the new one's URL."""
    client = s3.client()
    client.put_object(Bucket=BUCKET, Key=DEMO + "lagging/1000000001.jpg", Body=solid(40, 30, colour(96)))
    node = await node_factory(write_config(tmp_path, EVERY_MISS_TO_ORIGIN + config(s3)))
    pinned = "/tr:w-20/image/upload/v1000000002/lagging.jpg"
    assert (await node.fetch(pinned)).code == 404
    assert len(s3.lists(BUCKET)) == 1
    assert same_colour(centre_colour(decode(await node.fetch("/image/upload/v1/lagging.jpg"))), colour(96))
    client.put_object(Bucket=BUCKET, Key=DEMO + "lagging/1000000002.jpg", Body=solid(40, 30, colour(97)))
    assert same_colour(centre_colour(decode(await node.fetch(pinned))), colour(97))  # backed up now
    assert len(s3.lists(BUCKET)) == 2


async def test_a_version_from_the_future_is_not_found_without_a_listing(s3, backup_bucket, node_factory, tmp_path):
    """A version is its upload's Unix time: made-up ones (`v999999999999`) had each cost a listing."""
    node = await node_factory(write_config(tmp_path, EVERY_MISS_TO_ORIGIN + config(s3)))
    for version in ("999999999999", "4102444800"):  # the year 33658, and 2100
        assert (await node.fetch(f"/image/upload/v{version}/products/shoe.jpg")).code == 404
    assert len(s3.lists(BUCKET)) == 0


async def test_a_purge_after_an_upload_serves_the_new_version_at_once(s3, backup_bucket, node_factory, tmp_path):
    client = s3.client()
    client.put_object(Bucket=BUCKET, Key=DEMO + "replaced/1000000001.jpg", Body=solid(40, 30, colour(94)))
    admin = '[admin]\ntoken = "cloudinary-purge-token-93"\n'
    node = await node_factory(write_config(tmp_path, admin + config(s3)))
    assert same_colour(centre_colour(decode(await node.fetch("/tr:w-20/image/upload/replaced.jpg"))), colour(94))
    client.put_object(Bucket=BUCKET, Key=DEMO + "replaced/1000000002.jpg", Body=solid(40, 30, colour(95)))
    purged = await node.fetch("/_edge/purge", method="POST", body=b'{"url": "/image/upload/replaced.jpg"}',
                              headers={"Authorization": "Bearer cloudinary-purge-token-93"})
    assert purged.code == 200
    # the listing made before the purge is not trusted after it (it is younger than resolution_ttl)
    for path in ("/tr:w-20/image/upload/replaced.jpg", "/tr:w-30/image/upload/replaced.jpg"):
        assert same_colour(centre_colour(decode(await node.fetch(path))), colour(95)), path
    assert len(s3.lists(BUCKET)) == 2


async def test_a_purge_of_a_cloudinary_url_takes_every_url_that_shows_the_asset_unpinned(s3, backup_bucket,
                                                                                        node_factory, tmp_path):
    """After an upload, a purge of `…/products/shoe.jpg` had left the SDKs' `v1/products/shoe.jpg` (their
    default for a public ID in a folder), `shoe.webp` and `shoe` serving the old version; as Cloudinary's
    invalidation, it takes them all, and only a URL pinned to a version keeps what that version shows."""
    client = s3.client()
    client.put_object(Bucket=BUCKET, Key=DEMO + "resent/1000000001.jpg", Body=solid(40, 30, colour(96)))
    text = config(s3) + 'url_style = "cloudinary"\n[admin]\ntoken = "cloudinary-purge-token-93"\n'
    node = await node_factory(write_config(tmp_path, text))
    unpinned = [f"/demo/image/upload/w_20/{form}" for form in ("resent.jpg", "v1/resent.jpg", "resent.webp", "resent")]
    pinned = "/demo/image/upload/w_20/v1000000001/resent.jpg"
    for path in (*unpinned, pinned):
        assert same_colour(centre_colour(decode(await node.fetch(path))), colour(96)), path
    client.put_object(Bucket=BUCKET, Key=DEMO + "resent/1000000002.jpg", Body=solid(40, 30, colour(97)))
    purged = await node.fetch("/_edge/purge", method="POST", body=b'{"url": "/demo/image/upload/resent.jpg"}',
                              headers={"Authorization": "Bearer cloudinary-purge-token-93"})
    assert purged.code == 200
    assert json.loads(purged.body)["by_tier"]["output"] == 4
    for path in unpinned:
        response = await node.fetch(path)
        assert (response.headers["X-Cache"], same_colour(centre_colour(decode(response)), colour(97))) == \
            ("MISS", True), path
    response = await node.fetch(pinned)
    assert (response.headers["X-Cache"], same_colour(centre_colour(decode(response)), colour(96))) == ("HIT", True)


@pytest.mark.parametrize("encode_keys, status", [(False, 404), (True, 200)])
async def test_encoded_public_ids(s3, backup_bucket, node_factory, tmp_path, encode_keys, status):
    node = await node_factory(write_config(tmp_path, config(s3, extra=f"encode_keys = {str(encode_keys).lower()}")))
    response = await node.fetch("/image/upload/image+example.jpg")
    assert response.code == status
    if encode_keys:
        assert served(response) == DEMO + "image%2Bexample/1600000004.jpg"
        assert s3.lists(BUCKET)[0].query["prefix"] == [DEMO + "image%2Bexample/"]


async def test_get_object_and_list_bucket_are_all_it_needs(s3, backup_bucket, node_factory, tmp_path):
    key_id, secret = s3.create_reader(BUCKET, "s3:GetObject", "s3:ListBucket")
    text = s3.origin_table("backup", BUCKET, type="cloudinary_backup", folder="/res/demo/", key_id=key_id,
                           secret=secret) + '\n[[endpoints]]\nid = ""\norigins = ["backup"]\n'
    node = await node_factory(write_config(tmp_path, text))
    s3.require_auth(True)  # moto now checks signatures and the user's policy
    assert served(await node.fetch("/image/upload/products/shoe.jpg")) == DEMO + "products/shoe/1700000000.jpg"
    assert (await node.fetch("/image/upload/products/missing.jpg")).code == 404


def test_parse_asset_path():
    assert parse_asset_path("image/upload/v12/a.b/c.d.JPG") == parse_asset_path("image/upload/v12/a.b/c.d")
    assert parse_asset_path("image/upload/v12/a.b/c.d").public_id == "image/upload/a.b/c.d"
    assert parse_asset_path("v12/shoe.webp").version == 12
    assert parse_asset_path("products/v12/shoe.jpg").version is None  # a folder named v12, not a version
    assert parse_asset_path("v12.jpg") == parse_asset_path("v12")  # the last segment is the public ID
    assert parse_asset_path("v12").version is None
    assert path_format("image/upload/shoe.tiff") is None  # known image extension, not an output format
    assert parse_asset_path("image/upload/shoe.tiff").public_id == "image/upload/shoe"
    assert parse_asset_path("v" + "9" * 13 + "/shoe").version is None  # a version is at most 12 digits
    assert parse_asset_path("v١٢/shoe").version is None  # and ASCII


def test_versions_and_resolution_cache():
    versions = Versions.from_keys("f/", ["f/20.jpg", "f/3.png", "f/abc.jpg", "f/.jpg", "f/١٢.jpg",
                                         "f/" + "9" * 5000 + ".jpg", "f/2024.summer/hero/1690000000.jpg",
                                         "f/7.jpg/8.jpg", "g/9.jpg", "f/5.jpg." + "x" * 1000])
    assert versions.found == ((3, "3.png"), (20, "20.jpg"))
    assert (versions.choose(None), versions.choose(3), versions.choose(4)) == ("f/20.jpg", "f/3.png", "f/20.jpg")
    assert Versions.from_keys("f/", []).choose(None) is None

    now = [0.0]
    cache = ResolutionCache(ttl=300, max_entries=2, clock=lambda: now[0])
    cache.put("a/", versions)
    cache.put("b/", versions)
    assert cache.get("a/") is versions  # and now `b/` is the least recently used
    cache.put("c/", versions)
    assert (cache.get("b/"), cache.get("a/")) == (None, versions)
    now[0] = 300.0
    assert cache.get("a/") is None
