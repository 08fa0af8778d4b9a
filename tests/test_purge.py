"""Purge: `POST /_edge/purge` with the admin token, by URL or by path prefix, and `edge purge`."""

import json
import signal
import sqlite3
import subprocess
import sys

import pytest
import pyvips

from edge.config import load_config
from edge.errors import BadRequest, ConfigError
from edge.pluginmanager import load_plugins
from edge.purge import forget_here, key_prefixes
from edge.routing import Router
from tests.assets import centre_colour, colour, same_colour, solid
from tests.nodes import SAMPLES, decode, write_config
from tests.scrape import scrape, scrape_when, total
from tests.servers import HTTPOrigin

TOKEN = "purge-token-7f3a9c2e51d84b06"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def origin():
    files = {name: solid(60, 40, colour(i)) for i, name in
             enumerate(["shoes/red.jpg", "shoes/blue.jpg", "shirts/white.jpg"])}
    server = await HTTPOrigin(files=files).start()
    yield server
    await server.stop()


def config_text(origin: HTTPOrigin, admin: str = f'[admin]\ntoken = "{TOKEN}"\n') -> str:
    return f"""
[cache]
dir = "cache"

{admin}

[[origins]]
name = "web"
type = "web"
base_url = "{origin.url}"

[[endpoints]]
id = "shop"
origins = ["web"]

[[endpoints]]
id = "outlet"
origins = ["web"]
"""


@pytest.fixture
def config(origin, tmp_path):
    return write_config(tmp_path, config_text(origin))


@pytest.fixture
async def node(config, node_factory):
    return await node_factory(config)


async def purge_request(node, target: dict, headers=AUTH):
    return await node.fetch("/_edge/purge", method="POST", headers=headers, body=json.dumps(target).encode())


async def cached(node, path: str) -> bool:
    """Requests `path`; whether it was answered from the cache."""
    response = await node.fetch(path)
    assert response.code == 200, (path, response.code)
    return response.headers["X-Cache"] == "HIT"


async def warm(node) -> None:
    for path in ("/shop/tr:w-30/shoes/red.jpg", "/shop/tr:w-20/shoes/red.jpg", "/shop/tr:w-30/shoes/blue.jpg",
                 "/shop/tr:w-30/shirts/white.jpg", "/outlet/tr:w-30/shoes/red.jpg"):
        assert not await cached(node, path)


async def test_purge_by_url_removes_every_variant_and_the_original(origin, node):
    await warm(node)
    response = await purge_request(node, {"url": "https://img.example.com/shop/tr:w-999/shoes/red.jpg?x=1"})
    assert (response.code, response.headers["Content-Type"]) == (200, "application/json")
    assert json.loads(response.body) == {"removed": 3, "by_tier": {"output": 2, "original": 1, "not_found": 0}}

    fetched = origin.requests["shoes/red.jpg"]
    assert not await cached(node, "/shop/tr:w-30/shoes/red.jpg")
    assert origin.requests["shoes/red.jpg"] == fetched + 1  # the original went too
    assert not await cached(node, "/shop/tr:w-20/shoes/red.jpg")
    for untouched in ("/shop/tr:w-30/shoes/blue.jpg", "/outlet/tr:w-30/shoes/red.jpg"):
        assert await cached(node, untouched)


async def test_a_path_with_doubled_slashes_is_the_entry_a_purge_of_the_path_takes(origin, node):
    """A web server reads `shoes//red.jpg` as `shoes/red.jpg` (nginx's `merge_slashes`): each spelling had been a
    cache entry of its own, which a client could make and a purge of `/shop/shoes/red.jpg` kept, serving the
    image taken down for a year (cache-poisoning probe). The node merges the slashes of such an endpoint's
    paths: one entry, one fetch."""
    assert not await cached(node, "/shop/tr:w-30/shoes/red.jpg")
    for alias in ("/shop/tr:w-30/shoes//red.jpg", "/shop/tr:w-30/shoes%2F%2Fred.jpg", "/shop/tr:w-30//shoes///red.jpg"):
        assert await cached(node, alias), alias
    assert origin.requests == {"shoes/red.jpg": 1}
    origin.files["shoes/red.jpg"] = solid(60, 40, colour(9))
    assert json.loads((await purge_request(node, {"url": "/shop/shoes/red.jpg"})).body)["removed"] == 2
    response = await node.fetch("/shop/tr:w-30/shoes//red.jpg")
    assert response.headers["X-Cache"] == "MISS" and same_colour(centre_colour(decode(response)), colour(9))


async def test_a_web_server_that_tells_doubled_slashes_apart_gets_the_path_as_it_is(origin, node_factory, tmp_path):
    """`merge_slashes = false` (an S3 bucket's HTTP URL: `a//b.jpg` is a key of its own), as for S3 origins."""
    config = config_text(origin).replace('type = "web"\n', 'type = "web"\nmerge_slashes = false\n')
    node = await node_factory(write_config(tmp_path, config))
    assert (await node.fetch("/shop/tr:w-30/shoes//red.jpg")).code == 404
    assert origin.requests == {"shoes//red.jpg": 1}


async def test_purge_by_prefix_removes_everything_under_it_in_its_endpoint(node):
    await warm(node)
    response = await purge_request(node, {"prefix": "/shop/shoes/"})
    assert json.loads(response.body)["removed"] == 5  # three outputs, two originals
    assert not await cached(node, "/shop/tr:w-30/shoes/red.jpg")
    assert not await cached(node, "/shop/tr:w-30/shoes/blue.jpg")
    assert await cached(node, "/shop/tr:w-30/shirts/white.jpg")
    assert await cached(node, "/outlet/tr:w-30/shoes/red.jpg")

    # leading slashes name nothing, as in an image request's path: not a host (`urlsplit` had taken `shop` for
    # one, and purged the default endpoint's `shirts/white.jpg`)
    doubled = await purge_request(node, {"url": "//shop/tr:w-30/shirts/white.jpg"})
    assert json.loads(doubled.body)["removed"] == 2
    assert not await cached(node, "//shop/tr:w-30/shirts/white.jpg")

    whole_endpoint = await purge_request(node, {"prefix": "/shop/"})
    assert json.loads(whole_endpoint.body)["removed"] == 6
    assert await cached(node, "/outlet/tr:w-30/shoes/red.jpg")


async def test_purge_clears_a_remembered_not_found(origin, node):
    assert (await node.fetch("/shop/tr:w-30/new.jpg")).code == 404
    origin.files["new.jpg"] = solid(60, 40, colour(7))
    assert (await node.fetch("/shop/tr:w-30/new.jpg")).code == 404
    answer = json.loads((await purge_request(node, {"url": "/shop/new.jpg"})).body)
    assert answer["by_tier"]["not_found"] == 1
    response = await node.fetch("/shop/tr:w-30/new.jpg")
    assert response.code == 200 and same_colour(centre_colour(decode(response)), colour(7))


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong-token"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": "Bearer "},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Bearer {TOKEN[:1]}"},  # a token's start is no token (a mutation taking one survived)
    {"Authorization": f"Bearer {TOKEN[:-1]}"},
])
async def test_without_the_token_purge_is_a_401_and_removes_nothing(node, headers, capsys):
    await warm(node)
    response = await purge_request(node, {"prefix": "/shop/"}, headers=headers)
    assert (response.code, response.headers["WWW-Authenticate"]) == (401, 'Bearer realm="edge purge"')
    assert response.headers["X-Edge-Error"] == "unauthorized"  # and in the access log (it had been none)
    assert await cached(node, "/shop/tr:w-30/shoes/red.jpg")
    node.node.access_log.flush()
    assert node.node.access_log.written(10)
    assert TOKEN not in capsys.readouterr().out


@pytest.mark.parametrize("scheme", ["bearer", "BEARER"])
async def test_the_bearer_scheme_is_read_in_any_case(node, scheme):
    """RFC 9110 11.1: an authentication scheme is case-insensitive; clients and scripts write `bearer` too."""
    await warm(node)
    response = await purge_request(node, {"prefix": "/shop/"}, headers={"Authorization": f"{scheme} {TOKEN}"})
    assert response.code == 200, response.body
    assert not await cached(node, "/shop/tr:w-30/shoes/red.jpg")


@pytest.mark.parametrize("body, message", [
    (b"not json", b'expected a JSON body: {"url": "..."} or {"prefix": "..."}\n'),
    (b'{"url": "/shop/a.jpg", "prefix": "/shop/"}', b'expected exactly one of "url" or "prefix"\n'),
    (b'{"path": "/shop/a.jpg"}', b'expected exactly one of "url" or "prefix"\n'),
    (b'{"url": "/shop/a.jpg", "url": "/shop/b.jpg"}', b'expected exactly one of "url" or "prefix"\n'),
    (b'{"url": 7}', b"url: expected a URL or a path\n"),
    # an empty prefix routes to the default endpoint and had emptied it (a mutation audit: letting it by survived)
    (b'{"prefix": ""}', b"prefix: expected a URL or a path\n"),
    (b'{"url": "/shop/"}', b"url: names no image\n"),
    (b'{"url": "http://[::1/shop/a.jpg"}', b"url: not a URL or a path\n"),  # was a 500 (urlsplit's ValueError)
    (b'{"prefix": "https://[/shop/"}', b"prefix: not a URL or a path\n"),
    # as an image request's target: the router had taken `user` for the host and purged the default endpoint
    (b'{"url": "https://user:pw@img.example.com/a.jpg"}', b"url: a URL with user information names no image\n"),
    (b'{"prefix": "https://img.example.com@other/shop/"}', b"prefix: a URL with user information names no image\n"),
    # URL parsing drops tabs and newlines and strips the ends: each had purged another target than written
    (b'{"prefix": "/shop/shoes\\n"}', b"prefix: holds the control character '\\n' (a path's own is percent-encoded)\n"),
    (b'{"prefix": "/shop/sho\\tes/"}',
     b"prefix: holds the control character '\\t' (a path's own is percent-encoded)\n"),
    (b'{"prefix": "/shop/sho\\res/"}',  # every control character, not just tab and newline (a mutation audit)
     b"prefix: holds the control character '\\r' (a path's own is percent-encoded)\n"),
    (b'{"url": "/shop/shoes/r\\u0000ed.jpg"}',
     b"url: holds the control character '\\x00' (a path's own is percent-encoded)\n"),
    (b'{"url": "/shop/shoes/red.jpg\\u007f"}',
     b"url: holds the control character '\\x7f' (a path's own is percent-encoded)\n"),
    (b'{"prefix": " /shop/shoes/"}', b"prefix: starts or ends with white space\n"),
    (b'{"url": "/shop/shoes/red.jpg "}', b"url: starts or ends with white space\n"),
    (b'{"prefix": "/shop/../"}', b"prefix: a . or .. segment (no path the node serves has one)\n"),
    (b'{"prefix": "/shop/shoes/%2e%2e/"}', b"prefix: a . or .. segment (no path the node serves has one)\n"),
    (b'{"url": "/shop/./shoes/red.jpg"}', b"url: a . or .. segment (no path the node serves has one)\n"),
    # had emptied the whole endpoint (the transformation dropped, an empty path left)
    (b'{"prefix": "/shop/tr:w-30/"}', b"prefix: a transformation names no originals' paths: purge by the originals' "
                                      b"path prefix, which takes every output of them\n"),
])
async def test_a_malformed_purge_is_a_400_naming_the_problem(node, body, message):
    await warm(node)
    response = await node.fetch("/_edge/purge", method="POST", headers=AUTH, body=body)
    assert (response.code, response.body) == (400, message)
    for path in ("/shop/tr:w-30/shoes/red.jpg", "/shop/tr:w-30/shirts/white.jpg"):
        assert await cached(node, path)  # nothing purged


async def test_purges_are_counted_by_status_and_the_entries_they_removed(node):
    """An SRE had no purge in Prometheus: a token being guessed, a purge script failing, showed in the access log
    alone (SRE probe)."""
    before = await scrape(node.url)
    assert {status: total(before, "edge_purge_requests_total", status=status)
            for status in ("200", "400", "401", "502")} == {"200": 0, "400": 0, "401": 0, "502": 0}
    await warm(node)
    assert (await purge_request(node, {"prefix": "/shop/"}, headers={"Authorization": "Bearer guess"})).code == 401
    assert (await purge_request(node, {"prefix": "/shop/"}, headers={})).code == 401
    assert (await node.fetch("/_edge/purge", method="POST", headers=AUTH, body=b"not json")).code == 400
    answer = json.loads((await purge_request(node, {"prefix": "/shop/shoes/"})).body)
    assert answer["removed"] == 5  # three outputs, two originals
    text = await scrape_when(node.url, "edge_purge_requests_total", 1, status="200")
    assert {status: total(text, "edge_purge_requests_total", status=status) for status in ("200", "400", "401")} \
        == {"200": 1, "400": 1, "401": 2}
    assert total(text, "edge_purged_entries_total") == 5


async def test_the_purge_api_is_off_without_a_token(origin, node_factory, tmp_path):
    node = await node_factory(write_config(tmp_path, config_text(origin, admin="")))
    response = await purge_request(node, {"prefix": "/shop/"})
    assert response.code == 404


async def test_edge_purge_works_on_the_cache_of_a_running_node(config, node):
    await warm(node)
    assert await cached(node, "/shop/tr:w-30/shoes/red.jpg")  # now in the worker's memory tier too
    result = subprocess.run([sys.executable, "-m", "edge", "purge", "--config", str(config),
                             "--url", "/shop/shoes/red.jpg"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["removed"] == 3
    assert not await cached(node, "/shop/tr:w-30/shoes/red.jpg")

    prefix = subprocess.run([sys.executable, "-m", "edge", "purge", "--config", str(config),
                             "--prefix", "/nowhere/"], capture_output=True, text=True, timeout=60)
    assert (prefix.returncode, prefix.stderr) == (2, "edge: prefix: no endpoint of this node serves '/nowhere/'\n")


#: `edge purge`, killed (SIGKILL) as it is about to delete the second value file of a cache entry
KILLED_AT_THE_SECOND_FILE = """
import os, signal, sys
removed = []
def kill_at_the_second_value_file(event, args):
    if event == "os.remove" and str(args[0]).endswith(".val"):
        removed.append(args[0])
        if len(removed) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
sys.addaudithook(kill_at_the_second_value_file)
from edge.cli import main
sys.exit(main(sys.argv[1:]))
"""


def noisy_png() -> bytes:
    """An original whose outputs are files of their own (over diskcache's 32 KB)."""
    noise = pyvips.Image.gaussnoise(600, 400, sigma=40, mean=128)
    return noise.bandjoin([noise, noise]).cast("uchar").copy(interpretation="srgb").pngsave_buffer()


def entries(tier) -> list[tuple[str, str | None]]:
    """(key, value file) of every entry of a tier, read from its database as it is on disk."""
    with sqlite3.connect(f"file:{tier / 'cache.db'}?mode=ro", uri=True) as database:
        return database.execute("SELECT key, filename FROM Cache").fetchall()


async def test_a_purge_killed_mid_way_leaves_no_entry_naming_a_file_it_deleted(origin, config, node):
    """diskcache deletes a value's file with its row, inside the purge's one transaction: a purge killed
    before the commit had its rows rolled back, naming files it had deleted (counted in the tier's size, and
    `edge cache stats`, until evicted). Now the files go once the rows are committed: a kill in between leaves
    files no entry names, which the orphan sweep deletes."""
    origin.files["big.png"] = noisy_png()
    urls = [f"/shop/tr:w-{width},f-png/big.png" for width in (300, 400, 500)]
    for url in urls:
        assert not await cached(node, url)
    outputs = node.config.cache.dir / "outputs"
    assert len([name for _, name in entries(outputs) if name]) == 3
    killed = subprocess.run([sys.executable, "-c", KILLED_AT_THE_SECOND_FILE, "purge", "--config", str(config),
                             "--url", "/shop/big.png"], capture_output=True, text=True, timeout=60)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert [key for key, name in entries(outputs) if name and not (outputs / name).exists()] == []
    assert entries(outputs) == []  # the deletes were committed
    assert node.node.caches.outputs.remove_orphans(older_than=0) == 2  # what the kill left
    assert not await cached(node, urls[0])
    assert origin.requests["big.png"] == 1  # the purge never reached the originals tier: purge again


def test_edge_purge_on_a_cache_folder_that_does_not_exist_says_so_and_makes_none(origin, tmp_path):
    """A config that is not the node's (no --config, the unit's EDGE_CONFIG not in the shell: the embedded
    default's folder) had purged nothing, answered `"removed": 0` with exit status 0 as if done, and
    created the empty folder."""
    config = write_config(tmp_path, config_text(origin).replace('dir = "cache"', 'dir = "elsewhere"'))
    result = subprocess.run([sys.executable, "-m", "edge", "purge", "--config", str(config), "--url", "/shop/a.jpg"],
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (1, ""), result
    assert result.stderr == (f"edge: config error: {config}: [cache] dir: {tmp_path / 'elsewhere'} does not exist: "
                             f"nothing was purged (is this the node's config?)\n")
    assert not (tmp_path / "elsewhere").exists()


def test_an_empty_token_is_a_config_error_not_an_open_door(origin, tmp_path):
    path = write_config(tmp_path, config_text(origin, admin='[admin]\ntoken = " "\n'))
    with pytest.raises(ConfigError, match=r"\[admin\] token: is empty"):
        load_config(path, load_plugins())


ROUTED = f"""
[[origins]]
name = "samples"
type = "local"
root = "{SAMPLES}"
[[origins]]
name = "backup"
type = "cloudinary_backup"
bucket = "b"
folder = "/res/demo/"
region = "us-east-1"
endpoint_url = "http://127.0.0.1:9"
[[endpoints]]
id = ""
origins = ["samples"]
[[endpoints]]
id = "shop"
origins = ["samples"]
[[endpoints]]
id = "cld"
origins = ["backup"]
url_style = "cloudinary"
[[endpoints]]
id = "hosts"
hosts = ["img.example.com"]
origins = ["samples"]
"""


@pytest.mark.parametrize("target, prefixes", [
    # leading slashes name nothing, as in an image request: not a host (`urlsplit` had taken `shop` for one)
    ({"url": "//shop/a.jpg"}, ["shop\0a.jpg\0"]),
    ({"url": "///shop/a.jpg"}, ["shop\0a.jpg\0"]),
    # but a scheme-relative URL (`<img src="//img.example.com/a.jpg">`) of a host with an endpoint is that URL
    ({"url": "//img.example.com/a.jpg"}, ["hosts\0a.jpg\0"]),
    ({"url": "//Img.Example.com:8443/a.jpg"}, ["hosts\0a.jpg\0"]),  # as a `Host` header is read: port and case apart
    ({"url": "//elsewhere.example.com/a.jpg"}, ["\0elsewhere.example.com/a.jpg\0"]),
    # a Cloudinary-style prefix (leaving-cloudinary.md#purging): its routing fills in an empty transformation,
    # which a first version of the check below took for one and answered 400
    ({"prefix": "/cld/demo/image/upload/products/"}, ["cld\0image/upload/products/"]),
    ({"prefix": "/cld/image/upload/products/shoe"}, ["cld\0image/upload/products/shoe"]),
    # ImageKit's still of an image is an output of its original: the URL a page shows purges them all (it had
    # purged the path `a.gif/ik-thumbnail.jpg`, which holds nothing, and answered 200)
    ({"url": "/shop/tr:w-60/a.gif/ik-thumbnail.jpg"}, ["shop\0a.gif\0"]),
    ({"url": "/shop/clip.mp4/ik-thumbnail.jpg"}, ["shop\0clip.mp4\0"]),  # never served: nothing to refuse
])
def test_purge_targets_name_what_an_image_request_would(tmp_path, target, prefixes):
    config = load_config(write_config(tmp_path, ROUTED), load_plugins())
    assert key_prefixes(Router(config.endpoints), target) == prefixes


def test_doubled_slashes_are_merged_only_where_every_origin_of_the_endpoint_merges_them(tmp_path):
    """A web origin with `merge_slashes = false` (S3 behind it: `a//b.jpg` is a key of its own) beside a local one:
    the path stays as sent, or the purge misses what that origin served (a mutation audit: merging where any
    origin merges survived)."""
    config = load_config(write_config(tmp_path, ROUTED + """
[[origins]]
name = "keys"
type = "web"
base_url = "http://127.0.0.1:9"
merge_slashes = false
[[endpoints]]
id = "mixed"
origins = ["samples", "keys"]
"""), load_plugins())
    router = Router(config.endpoints)
    assert key_prefixes(router, {"url": "/mixed/a//b.jpg"}) == ["mixed\0a//b.jpg\0"]
    assert key_prefixes(router, {"url": "/shop/a//b.jpg"}) == ["shop\0a/b.jpg\0"]
    assert router.route("", "/mixed/tr:w-60/a//b.jpg").path == "a//b.jpg"


@pytest.mark.parametrize("target, prefixes", [({"url": "/locked/tr:w-60/a.jpg"}, ["locked\0a.jpg\0"]),
                                              ({"prefix": "/locked/shoes/"}, ["locked\0shoes/"])])
def test_a_signed_only_endpoints_images_are_purged_by_their_unsigned_url_or_prefix(tmp_path, target, prefixes):
    """A purge names what to remove, not an image to serve: no signature is asked for, even where every image
    request needs one (a purge's URL is the page's, whose `ik-s` the admin does not have)."""
    config = load_config(write_config(tmp_path, ROUTED + """
[[endpoints]]
id = "locked"
origins = ["samples"]
private_key = "purge-test-key-not-a-secret"
signed_only = true
"""), load_plugins())
    assert key_prefixes(Router(config.endpoints), target) == prefixes


@pytest.mark.parametrize("prefix", ["/shop/tr:w-30/", "///shop/tr:w-30/", "/shop/tr%3Aw-30/",
                                    "http://img.example.com/tr:w-30/"])
def test_a_prefix_with_a_transformation_is_a_400(tmp_path, prefix):
    """It had emptied the whole endpoint, fleet-wide: the transformation dropped, an empty path left."""
    config = load_config(write_config(tmp_path, ROUTED), load_plugins())
    with pytest.raises(BadRequest, match="a transformation names no originals' paths"):
        key_prefixes(Router(config.endpoints), {"prefix": prefix})


class TiersAnswering:
    """Stands in for `Caches` in `forget_here`: `forget` answers each prefix's counts per tier in turn."""

    def __init__(self, *answers: dict):
        self.answers = list(answers)

    def forget(self, prefix: str, made_at: float | None) -> dict:
        return self.answers.pop(0)


def test_a_tier_that_could_not_forget_one_prefix_is_failed_whatever_it_removed_for_the_next():
    """A Cloudinary-style URL's 15 prefixes: a tier busy for the first and not for the second is still not purged (a
    mutation audit: adding the next count to the failure survived, a 500)."""
    caches = TiersAnswering({"output": None, "original": 1}, {"output": 2, "original": 3})
    assert forget_here(caches, ["a", "b"], "purge of a test") == {"output": None, "original": 4}
