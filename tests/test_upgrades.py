"""Upgrades and downgrades on a kept cache folder (docs/operations.md, "Upgrades and downgrades"): an output
an earlier release rendered under the same URL is never served once what the URL renders to changed
(`RENDER_VERSION` in every output key), and the renders that version names are pinned, so that a change
to them cannot land without raising it."""

import asyncio
import json
from dataclasses import replace

import diskcache
import pytest

from edge.cache import Caches, SourceInfo, strong_etag
from edge.cache.keys import RENDER_VERSION, output_key, revision_marks
from edge.config import load_config
from edge.metrics import Metrics
from edge.pluginmanager import load_plugins
from edge.purge_journal import APPLIED_FILE
from edge.shared_cache import SharedTier
from edge.testing import solid_image
from edge.transform.options import parse_transformation
from tests.nodes import decode, local_config, until, write_config
from tests.s3server import shared_cache_table

TOKEN = "upgrade-token-5e0c1d2b3a49"
#: a colour block with r-max on the base's corner: the release before r3 drew it square (red at 2,2)
CANVAS = "/tr:w-200,h-200,l-image,i-ik_canvas,bg-FF0000,w-100,h-100,r-max,lx-0,ly-0,l-end,f-png/astronaut.jpg"
RED = (255, 0, 0)


def config() -> str:
    return local_config(before=f'[cache]\ndir = "cache"\n[admin]\ntoken = "{TOKEN}"\n')


def near(pixel, rgb, tolerance: float = 8) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, rgb))


async def test_an_output_of_the_previous_render_version_is_never_served_after_an_upgrade(tmp_path, node_factory):
    path = write_config(tmp_path, config())
    node = await node_factory(path)
    made = await node.fetch(CANVAS)
    assert made.code == 200 and not near(decode(made)(2, 2), RED)  # the corner is round: the base shows
    await node.stop()

    # The folder as the release before r3 left it: its output of the URL (a square red corner) under
    # the key it read it by, fresh and whole.
    caches = Caches(tmp_path / "cache", 10**8, 10**8)
    try:
        [key] = _keys_in(tmp_path / "cache")
        current = caches.outputs.get(key)
        square = solid_image(200, 200, RED, "png")
        caches.outputs.delete(key)
        previous_key = key.replace(f"\0{RENDER_VERSION}", "\0r2", 1)
        caches.outputs.put(previous_key, replace(current, body=square, etag=strong_etag(square)))
    finally:
        caches.close()

    upgraded = await node_factory(path)
    served = await upgraded.fetch(CANVAS)
    assert (served.code, served.headers["X-Cache"]) == (200, "MISS")
    assert served.body == made.body and not near(decode(served)(2, 2), RED)
    assert (await upgraded.fetch(CANVAS)).headers["X-Cache"] == "HIT"

    # the earlier release's output is not lost to the budget: a purge of its path deletes it too
    purged = await upgraded.fetch("/_edge/purge", method="POST", headers={"Authorization": f"Bearer {TOKEN}"},
                                  body=json.dumps({"url": "/astronaut.jpg"}).encode())
    assert json.loads(purged.body)["by_tier"]["output"] == 2


#: `cr-<to>` without a source colour: before cr2 the padding, the step's result's dominant colour, was replaced
REPLACED = "/tr:w-200,h-200,cm-pad_resize,bg-white,cr-00A000,f-png/coffee.jpg"
WHITE = (255, 255, 255)


def test_what_an_output_is_made_from_is_stored_as_the_releases_before_wrote_it_unless_it_has_layers():
    """`original_version` (an output drawn with image layers: its original's own version) is written only when
    set: the releases before it take an entry with a field they do not know for a miss, and would have
    rendered every output of the cache folder again after a rollback."""
    plain = SourceInfo("origin", "v1", 1.0)
    assert set(plain.as_stored()) == {"origin", "version", "checked_at", "etag", "last_modified", "content_type"}
    drawn = replace(plain, version="v1 and its layers", original_version="v1")
    assert SourceInfo(**drawn.as_stored()) == drawn and drawn.version_of_original == plain.version_of_original


async def test_a_revised_parameter_s_earlier_outputs_are_never_served_and_the_others_still_are(tmp_path,
                                                                                                 node_factory):
    """A release that revises one parameter (`REVISED_PARAMETERS`) renders again the outputs that use it and
    keeps serving the others from the same cache."""
    path = write_config(tmp_path, config())
    node = await node_factory(path)
    made = await node.fetch(REPLACED)
    assert made.code == 200 and decode(made)(2, 2) == list(WHITE)
    plain = await node.fetch("/tr:w-200,f-png/coffee.jpg")
    await node.stop()

    caches = Caches(tmp_path / "cache", 10**8, 10**8)  # the revised output as the release before cr2 keyed it
    try:
        [key] = [key for key in _keys_in(tmp_path / "cache") if f"\0{RENDER_VERSION}+cr2,op2,pn2:" in key]
        current = caches.outputs.get(key)
        green = solid_image(200, 200, (0, 160, 0), "png")
        caches.outputs.delete(key)
        caches.outputs.put(key.replace("+cr2,op2,pn2:", "+pn2:", 1),
                           replace(current, body=green, etag=strong_etag(green)))
    finally:
        caches.close()

    upgraded = await node_factory(path)
    served = await upgraded.fetch(REPLACED)
    assert (served.code, served.headers["X-Cache"], served.body) == (200, "MISS", made.body)
    kept = await upgraded.fetch("/tr:w-200,f-png/coffee.jpg")
    assert (kept.headers["X-Cache"], kept.body) == ("HIT", plain.body)


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><rect width="40" height="20" fill="red"/></svg>'
SVG_URLS = ("/drawing.svg", "/tr:w-20/drawing.svg")


async def test_svg_documents_and_the_drawings_of_the_releases_before_are_never_served_for_each_other(
        tmp_path, node_factory):
    """With `allow_svg` an SVG is served as its document since a release that kept the render version: the
    drawings the releases before made under the same keys were served after an upgrade, and the documents (their
    scripts sandboxed only by this release's header) after a rollback. The `svg` settings' tag parts them; a node
    without `allow_svg` is keyed as those releases are, and refuses."""
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "drawing.svg").write_bytes(SVG)
    path = write_config(tmp_path, local_config(folder, before='[cache]\ndir = "cache"\n',
                                               after="[limits]\nallow_svg = true\n"))
    node = await node_factory(path)
    assert [(await node.fetch(url)).body for url in SVG_URLS] == [SVG, SVG]
    await node.stop()
    path.write_text(path.read_text().replace("allow_svg = true", "allow_svg = false"))
    refusing = await node_factory(path)  # keyed as the releases before: the documents are not its outputs
    for url in SVG_URLS:
        response = await refusing.fetch(url)
        assert (response.code, response.body.decode().split(",")[0]) == (422, "unsupported source: an SVG document")
    await refusing.stop()

    caches = Caches(tmp_path / "cache", 10**8, 10**8)  # each output as a release before drew it, under its key
    try:
        keys = _keys_in(tmp_path / "cache")
        assert len(keys) == 2 and all(f"\0{RENDER_VERSION}+svg" in key for key in keys)
        drawn = solid_image(40, 20, RED, "png")
        for key in keys:  # the plain URL's key has the as-is mark too (`+svg,as2:`)
            caches.outputs.put(key.replace("+svg,", "+", 1).replace("+svg:", ":", 1),
                               replace(caches.outputs.get(key), body=drawn, content_type="image/png",
                                       etag=strong_etag(drawn)))
    finally:
        caches.close()
    path.write_text(path.read_text().replace("allow_svg = false", "allow_svg = true"))
    upgraded = await node_factory(path)
    for url in SVG_URLS:
        served = await upgraded.fetch(url)
        assert (served.code, served.headers["Content-Type"], served.body) == (200, "image/svg+xml", SVG), url


#: URLs whose renders changed in a release (each a reason for a render version), and what this render
#: version makes of them: (size, the pixels at 2,2 and at 50,50). A change of what they render to fails
#: here: raise RENDER_VERSION (edge/cache/keys.py) with it and record the new pixels, or every node
#: upgraded on a kept cache folder serves the old renders beside the new for as long as they last.
RENDERS_OF = "r3"
RENDERS = [
    (CANVAS, (200, 200), (196, 190, 184), RED),  # rounded corners clear
    ("/tr:w-200,h-200,l-image,i-ik_canvas,bg-FF000050,al-9,w-100,h-100,lx-0,ly-0,l-end,f-png/astronaut.jpg",
     (200, 200), (225, 94, 91), (225, 92, 91)),  # the colour's own opacity, not al's
    ("/tr:w-200,h-200,l-image,i-logo-transparent.png,lx-0,ly-0,l-end,f-png/astronaut.jpg",
     (200, 200), (196, 190, 184), (54, 121, 227)),  # an image layer untrimmed by default
    (REPLACED, (200, 200), WHITE, (40, 169, 27)),  # cr2: the wood green, the padding white
]
#: bd2: a colour block's later step with `bg-dominant` fills its turn's corners with the block's colour (they
#: were clear: the base at 47,56); (pixel, colour) pairs
BLOCK_TURNED = "/tr:w-200,h-200,l-image,i-ik_canvas,bg-FF0000,w-100,h-50:rt-30,bg-dominant,l-end,f-png/astronaut.jpg"


async def test_a_colour_block_s_later_dominant_background_is_the_block_s_colour(samples_node):
    assert revision_marks(parse_transformation(BLOCK_TURNED.split("/")[1][3:]).canonical()) == "bd2,op2"
    image = decode(await samples_node.fetch(BLOCK_TURNED))
    assert near(image(47, 56), RED, 3) and near(image(2, 2), (196, 190, 184), 3)


#: lt2: an opaque image layer turned without `bg` opens clear corners, the base at 2,2 (they were white)
LAYER_TURNED = "/tr:w-200,h-200,l-image,i-coffee.jpg,w-100,rt-45,lx-0,ly-0,l-end,f-png/astronaut.jpg"


@pytest.mark.parametrize("transformation, marked", [
    ("l-image,i-a.jpg,rt-45,l-end", True),
    ("w-300,l-image,i-a.jpg,w-50:e-distort-a-30,l-end", True),
    ("l-image,i-ik_canvas,bg-red,w-9,l-end,l-image,i-b.jpg,rt-30,l-end", True),
    ("l-image,i-ik_canvas,bg-red,w-9,rt-45,l-end", False),  # a block's corners were always clear
    ("rt-30,l-image,i-a.jpg,w-50,l-end", False),  # the base's turn, before any layer
    ("w-300," + "l-image,i-a.jpg,w-10,l-end," * 10 + "q-80", False),
])
def test_outputs_of_an_image_layer_that_turns_or_bends_are_marked(transformation, marked):
    assert ("lt2" in revision_marks(parse_transformation(transformation).canonical()).split(",")) == marked


async def test_an_opaque_image_layer_s_turn_opens_clear_corners(samples_node):
    assert revision_marks(parse_transformation(LAYER_TURNED.split("/")[1][3:]).canonical()) == "lt2,op2"
    image = decode(await samples_node.fetch(LAYER_TURNED))
    assert near(image(2, 2), (196, 190, 184), 3) and not near(image(60, 60), (196, 190, 184), 30)


@pytest.mark.parametrize("transformation, marked", [("h-2000,dpr-2", True), ("w-300:w-100,dpr-1.5", True),
                                                     ("w-300", False), ("l-text,i-dpr-2,l-end", False)])
def test_outputs_of_dpr_are_marked(transformation, marked):
    """dp2: a side left to the image's aspect counts in dpr's 5000 px rule (tests/test_real_size.py pins the
    renders)."""
    assert (revision_marks(parse_transformation(transformation).canonical()) == "dp2") == marked


@pytest.mark.parametrize("transformation, marked", [
    ("w-2600,c-at_max,dpr-2", True), ("w-300:h-100,dpr-1.5,c-maintain_ratio_no_enlarge,t-true", True),
    ("w-300,dpr-auto,c-at_max", True), ("w-300,dpr-2", False), ("w-300,dpr-2,c-at_max_enlarge", False),
    ("w-300,c-at_max:w-100,dpr-2", False), ("l-image,i-a.jpg,c-at_max,w-5,dpr-2,l-end", True)])
def test_outputs_of_dpr_in_a_mode_that_never_enlarges_are_marked(transformation, marked):
    """dp3: with `c-at_max` or `c-maintain_ratio_no_enlarge`, dpr's 5000 px rule is on the output
    (tests/test_real_size.py pins the renders)."""
    assert ("dp3" in revision_marks(parse_transformation(transformation).canonical()).split(",")) == marked


@pytest.mark.parametrize("transformation, marked", [("w-300,e-region-10_10,bl-5", True),
                                                     ("e-pixelate-9,e-region-0_0_10_10:w-50", True), ("bl-5", False)])
def test_outputs_of_e_region_are_marked(transformation, marked):
    """rg2: a region starting outside its step's image is a 400, no longer the image unblurred (tests/test_real_size.py
    pins the refusal)."""
    assert ("rg2" in revision_marks(parse_transformation(transformation).canonical()).split(",")) == marked


@pytest.mark.parametrize("transformation, marked", [("w-300,e-contrast", True), ("e-autocolor-50", True),
                                                     ("w-1:e-autobrightness", True), ("bl-5", True),
                                                     ("e-sharpen", True), ("e-usm-2-1-1-0", True),
                                                     ("e-linearcontrast-20", False), ("e-shadow-bl-5", False)])
def test_outputs_of_the_effects_that_read_under_transparent_pixels_are_marked(transformation, marked):
    """tp2: the levels and blurs of what shows (tests/test_transform_look.py pins the renders)."""
    assert (revision_marks(parse_transformation(transformation).canonical()) == "tp2") == marked


@pytest.mark.parametrize("transformation, marked", [("t-true", True), ("w-100,t-20", True), ("e-pixelatefaces-8", True),
                                                     ("e-blurfaces-10", True), ("l-image,i-a.png,t-true,l-end", True),
                                                     ("w-100", False), ("e-shadow-st-30", False)])
def test_outputs_of_trims_and_faces_found_on_a_shrunk_copy_are_marked(transformation, marked):
    """ht2: the trim box and the faces are found on a copy flattened before its shrink (tests/test_faces.py and
    tests/test_transform_look.py pin them)."""
    assert (revision_marks(parse_transformation(transformation).canonical()) == "ht2") == marked


@pytest.mark.parametrize("transformation, marks", [
    ("w-300,bg-0000ff50,f-jpg", "bt2"), ("w-300,bg-0000FF", ""), ("l-image,i-a.png,bg-FF000050,l-end", "bt2"),
    ("w-300,md-true", "md5"), ("w-300,md-copyright", "mc2"), ("w-300,cp-true", "cp2"), ("l-text,i-md-true,l-end", ""),
    ("e-grayscale,cp-true", "cp2,gy2"), ("e-grayscale:w-300,cp-true", "cp2,gy2"), ("e-grayscale", ""),
])
def test_outputs_of_a_translucent_bg_and_md_true_are_marked(transformation, marks):
    """bt2, md5, mc2, cp2: a greyscale image flattened on a translucent colour gets that colour; `md-true`'s XMP
    states the upright orientation, in any of XMP's encodings, and keeps no field over a megabyte nor an EXIF
    thumbnail; `md-copyright`
    keeps no EXIF thumbnail; `cp-true` keeps no profile past 4 MB (tests/test_real_size.py and tests/test_png_chunks.py
    pin the renders)."""
    assert revision_marks(parse_transformation(transformation).canonical()) == marks


@pytest.mark.parametrize("transformation, negotiated, planned, marks", [
    ("w-300,f-avif", "", "avif", "av2"), ("w-300", "", "avif", "av2"),  # `f-avif`, a `.avif` path
    ("w-300,f-auto", "avif|webp", "avif|webp", "av2"), ("w-300,f-auto", "avif|gif", "avif|gif", "av2"),
    ("w-300,f-auto", "smallest:avif|webp|auto", "smallest:avif|webp|auto", "fa2,av2"),
    ("w-300,f-auto", "webp|webp", "webp|webp", ""), ("w-300,f-orig", "", "orig", ""),
    ("w-300,f-png", "", "png", "pn2"), ("w-300", "", "png", "pn2"), ("w-300,md-true", "", "png", "md5,pn2"),
    ("w-300", "", "jpg", ""), ("l-text,i-f-avif,l-end", "", "jpg", ""),
])
def test_outputs_planned_as_avif_or_png_are_marked(transformation, negotiated, planned, marks):
    """av2: AVIF is encoded at `avif_quality` of the URL's quality; pn2: an indexed original's PNG is indexed
    (tests/test_real_size.py pins both)."""
    key = output_key("e\0p\0", parse_transformation(transformation).canonical(), negotiated, planned_format=planned)
    assert key.partition(":")[0].partition("+")[2] == marks


@pytest.mark.parametrize("transformation, negotiated, planned, marks", [
    ("", "", "gif", "as2"), ("f-gif", "", "gif", "as2"), ("", "", "webp", "as2"), ("", "", "orig", "as2"),
    ("f-auto", "avif|webp", "avif|webp", "av2,as2"), ("", "webp|webp", "webp|webp", "as2"),  # `auto_format`
    ("", "", "jpg", ""), ("w-300", "", "gif", ""), ("md-true", "", "gif", "md5"), ("f-png", "", "png", "pn2"),
])
def test_outputs_an_animation_may_have_been_served_as_it_is_by_are_marked(transformation, negotiated, planned, marks):
    """as2: an animation served as it is goes out without its metadata (tests/test_as_is.py pins it)."""
    key = output_key("e\0p\0", parse_transformation(transformation).canonical(), negotiated, planned_format=planned)
    assert key.partition(":")[0].partition("+")[2] == marks


@pytest.mark.parametrize("negotiated, marked", [
    ("auto", True),  # `f-auto` for a browser taking neither WebP nor AVIF
    ("smallest:webp|auto", True),  # the smallest's candidates include that one's
    ("avif|webp", False),
    ("", False),  # not negotiated: the format the URL or the original names
])
def test_outputs_of_f_auto_that_picks_by_alpha_are_marked(negotiated, marked):
    """fa2: JPEG where an alpha band hides nothing, not PNG (tests/test_real_size.py pins the renders)."""
    assert ("+fa2:" in output_key("e\0p\0", "w-300,f-auto", negotiated)) == marked


@pytest.fixture
async def samples_node(tmp_path, node_factory):
    return await node_factory(write_config(tmp_path, config()))


@pytest.mark.parametrize("url, size, corner, inside", RENDERS)
async def test_the_renders_the_render_version_names_are_unchanged(samples_node, url, size, corner, inside):
    assert RENDER_VERSION == RENDERS_OF, "record what the new render version makes of these URLs"
    image = decode(await samples_node.fetch(url))
    assert (image.width, image.height) == size
    assert near(image(2, 2), corner, 3) and near(image(50, 50), inside, 3), (image(2, 2), image(50, 50))


async def test_a_node_of_the_next_render_version_never_serves_the_previous_ones_from_the_shared_tier(
        s3, tmp_path, node_factory):
    """A rolling deploy: the fleet's shared tier holds a render of the previous version (an older node's)."""
    client = s3.client()
    client.create_bucket(Bucket="upgrades")
    shared = shared_cache_table(s3.url, "upgrades")
    upgraded = None
    try:
        (tmp_path / "a").mkdir()
        first = await node_factory(write_config(tmp_path / "a", local_config(after=shared)))
        made = await first.fetch(CANVAS)
        await first.stop()
        config = load_config(tmp_path / "a" / "edge.toml", load_plugins())
        tier = SharedTier(config.shared_cache, Metrics(), 10**7, 86400.0, tmp_path / APPLIED_FILE)
        await tier.open()
        try:
            [key] = _keys_in(tmp_path / "a" / "cache")
            await until(lambda: tier.get(key), "the first node's shared write")
            current = await tier.get(key)
            for item in client.list_objects_v2(Bucket="upgrades")["Contents"]:
                client.delete_object(Bucket="upgrades", Key=item["Key"])
            square = solid_image(200, 200, RED, "png")
            tier.put_later(key.replace(f"\0{RENDER_VERSION}", "\0r2", 1),
                           replace(current, body=square, etag=strong_etag(square)))
            await asyncio.wait_for(asyncio.gather(*tier._writes), 30)
        finally:
            await tier.close()

        (tmp_path / "b").mkdir()
        upgraded = await node_factory(write_config(tmp_path / "b", local_config(after=shared)))
        served = await upgraded.fetch(CANVAS)
        assert (served.code, served.headers["X-Cache"], served.body) == (200, "MISS", made.body)
    finally:
        if upgraded is not None:  # its shared write, after the answer, lands before the bucket is emptied
            await upgraded.stop()
        for item in client.list_objects_v2(Bucket="upgrades").get("Contents", []):
            client.delete_object(Bucket="upgrades", Key=item["Key"])
        client.delete_bucket(Bucket="upgrades")


def _keys_in(cache_dir) -> list[str]:
    with diskcache.Cache(str(cache_dir / "outputs")) as cache:
        return list(cache)
