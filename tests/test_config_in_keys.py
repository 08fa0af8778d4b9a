"""The config settings that change what a URL renders to (`[defaults] quality`, `avif_effort`, `[limits]
max_cost`, for text layers `max_output_side` and the font files) are part of its output's key: a reload
or a restart with other values makes new outputs rather than serving the old ones beside new sizes made
with the new values, going back finds the old ones, and nodes of a fleet with different values never
serve each other's outputs. A purge of a path still removes its outputs under every config."""

import asyncio
import json
import signal
from dataclasses import replace
from pathlib import Path

import diskcache
from tornado.httpclient import AsyncHTTPClient

from edge.cache import original_key, output_key
from edge.config import Defaults, Limits
from edge.transform.fonts import read_font, shipped_fonts
from edge.transform.options import parse_transformation
from edge.transform.render import SettingsTag
from tests.nodes import NodeProcess, decode, local_config, until, until_stored, write_config
from tests.s3server import shared_cache_table
from tests.test_signals import gone

URL = "/tr:w-300/coffee.jpg"
TOKEN = "purge-token-5be1c0d93a7f4e62"
BUCKET = "config-keys"


def config(quality: int | None = None, more: str = "") -> str:
    defaults = f"[defaults]\nquality = {quality}\n" if quality is not None else ""
    return local_config(before=f'[server]\nworkers = 1\n[cache]\ndir = "cache"\n[admin]\ntoken = "{TOKEN}"\n{defaults}',
                        after=more)


def output_keys(cache_dir) -> set[str]:
    with diskcache.Cache(str(cache_dir / "outputs")) as cache:
        return set(cache)


async def test_a_reload_with_another_quality_makes_new_outputs_and_one_back_finds_the_old(tmp_path):
    path = write_config(tmp_path, config())
    node = NodeProcess(path)
    try:
        client = AsyncHTTPClient()
        first = await client.fetch(node.url + URL)
        await until_stored(tmp_path / "cache", 1)
        assert (await client.fetch(node.url + URL)).headers["X-Cache"] == "HIT"

        await reload(node, path, config(quality=30))
        low = await client.fetch(node.url + URL)
        assert low.headers["X-Cache"] == "MISS"
        assert (decode(low).width, decode(low).height) == (decode(first).width, decode(first).height)
        assert len(low.body) < 0.6 * len(first.body) and low.headers["ETag"] != first.headers["ETag"]
        await until_stored(tmp_path / "cache", 2)
        assert (await client.fetch(node.url + URL)).headers["X-Cache"] == "HIT"

        await reload(node, path, config())
        back = await client.fetch(node.url + URL)
        assert (back.headers["X-Cache"], back.headers["ETag"], back.body) == ("HIT", first.headers["ETag"], first.body)
    finally:
        assert node.stop() == 0


async def reload(node: NodeProcess, path, text: str) -> None:
    """SIGHUP with `text` as the config, once every worker serves it."""
    old_workers = set(node.worker_pids())
    path.write_text(text)
    mark = len(node.log)
    node.process.send_signal(signal.SIGHUP)
    await asyncio.to_thread(node.wait_for_log, "config reloaded", 60, mark)
    await asyncio.to_thread(gone, node, old_workers)


async def test_the_default_config_keeps_its_keys_and_a_purge_removes_the_outputs_of_every_config(
        tmp_path, node_factory):
    default = await node_factory(write_config(tmp_path, config()))
    first = await default.fetch(URL)
    await default.stop()
    key = output_key(original_key("", "coffee.jpg", None), "w-300", "")
    assert key == "\0coffee.jpg\0r3:w-300\0" and output_keys(tmp_path / "cache") == {key}

    low = await node_factory(write_config(tmp_path, config(quality=30)))
    second = await low.fetch(URL)
    assert second.headers["X-Cache"] == "MISS" and len(second.body) < 0.6 * len(first.body)
    assert output_keys(tmp_path / "cache") == {key, "\0coffee.jpg\0r3+q30:w-300\0"}

    purged = await low.fetch("/_edge/purge", method="POST", headers={"Authorization": f"Bearer {TOKEN}"},
                             body=json.dumps({"url": "/coffee.jpg"}).encode())
    assert json.loads(purged.body)["by_tier"]["output"] == 2 and output_keys(tmp_path / "cache") == set()


async def test_nodes_of_a_fleet_share_outputs_only_with_nodes_of_the_same_settings(s3, tmp_path, node_factory):
    client = s3.client()
    client.create_bucket(Bucket=BUCKET)
    shared = shared_cache_table(s3.url, BUCKET)

    def objects() -> int:
        return len([item for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])
                    if not item["Key"].startswith("outputs/_purges/")])

    async def node(name: str, quality: int | None):
        (tmp_path / name).mkdir()
        return await node_factory(write_config(tmp_path / name, config(quality, more=shared)))

    async def written(count: int) -> None:
        async def there() -> bool:
            return objects() == count
        await until(there, f"{count} objects in the shared tier")

    try:
        made = await (await node("a", None)).fetch(URL)
        await written(1)
        other = await (await node("b", 30)).fetch(URL)
        assert other.headers["X-Cache"] == "MISS" and len(other.body) < 0.6 * len(made.body)
        await written(2)
        same = await (await node("c", None)).fetch(URL)
        assert (same.headers["X-Cache"], same.body) == ("SHARED", made.body)
    finally:
        for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
            client.delete_object(Bucket=BUCKET, Key=item["Key"])
        client.delete_bucket(Bucket=BUCKET)


def test_the_tag_names_the_settings_that_change_the_bytes_and_only_those():
    plain = parse_transformation("w-300")
    with_text = parse_transformation("w-300,l-image,i-a.png,l-text,i-Hi,l-end,l-end")  # nested in an image layer
    changed = SettingsTag(Defaults(quality=30, avif_effort=4, chroma_subsampling=False), Limits(max_cost=300),
                          shipped_fonts())
    assert changed.of(plain) == changed.of(with_text) == "q30,e4,j0,c300"
    # every value its own tag (`:g` would have written both as c1.23457e+06)
    assert {SettingsTag(Defaults(), Limits(max_cost=cost), shipped_fonts()).of(plain)
            for cost in (1234567, 1234568, 1e6, 1000000.4)} == {"c1234567", "c1234568", "c1000000", "c1000000.4"}
    wraps = SettingsTag(Defaults(), Limits(max_output_side=4000), shipped_fonts())  # where a line of text wraps
    assert (wraps.of(plain), wraps.of(with_text)) == ("", "s4000")
    assert wraps.of(parse_transformation("f-webp")) == "s4000"  # what a larger original is fitted to
    # the shipped defaults, and settings that change the plan (in the key already) or refuse
    for defaults, limits in ((Defaults(), Limits()),
                             (Defaults(auto_format=True, auto_format_smallest=True, cache_control_max_age=60),
                              Limits(max_source_bytes=10**6, max_frames=2, render_timeout=5.0))):
        unchanged = SettingsTag(defaults, limits, shipped_fonts())
        assert unchanged.of(plain) == unchanged.of(with_text) == ""
    # SVGs served as documents rather than drawn or refused: every output's key, an SVG's being known only once read
    assert SettingsTag(Defaults(quality=30), Limits(allow_svg=True), shipped_fonts()).of(plain) == "q30,svg"


def test_a_font_file_other_than_the_shipped_one_is_named_where_it_is_drawn(tmp_path):
    shipped = shipped_fonts()
    (name, font), = shipped.items()
    brand = tmp_path / "brand.ttf"
    brand.write_bytes(Path(font.file).read_bytes())
    before = SettingsTag(Defaults(), Limits(), {**shipped, "Brand": read_font(brand)})
    brand.write_bytes(brand.read_bytes() + b"\0")  # the file replaced under the same name
    fonts = {**shipped, "Brand": read_font(brand)}
    after = SettingsTag(Defaults(), Limits(), fonts)
    assert after.of(parse_transformation("w-300")) == after.of(parse_transformation("l-text,i-Hi,l-end")) == ""
    brand_text = parse_transformation("l-text,i-Hi,ff-Brand,l-end")
    assert after.of(brand_text) == f"ff-Brand={fonts['Brand'].digest[:16]}" != before.of(brand_text)
    replaced = SettingsTag(Defaults(), Limits(), {**shipped, name: read_font(brand)})  # the default font's file
    assert replaced.of(parse_transformation("l-text,i-Hi,l-end")) == f"ff-{name}={fonts['Brand'].digest[:16]}"
    # a face of its own, which the releases before drew as its family's regular one: outputs of their own
    bold = SettingsTag(Defaults(), Limits(), {**shipped, "Brand": replace(fonts["Brand"], face="Bold")})
    assert bold.of(brand_text) == f"ff2-Brand={fonts['Brand'].digest[:16]}"
