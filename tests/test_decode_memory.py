"""`[limits] max_decode_memory` and `[server] decode_memory`: originals whose loaders decode them whole (AVIF/HEIF,
interlaced PNG, GIF, a progressive JPEG, a still WebP) are held to a per-render maximum (400) and a per-worker
budget (wait, then 503), estimated from their headers before decoding, each layer's as often as it is drawn;
originals that stream (a baseline JPEG, a non-interlaced PNG) are not counted. And each decode's CPU counts in
the cost budget."""

import asyncio
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pyvips

from edge.config import Defaults, Limits, load_config
from edge.errors import BadRequest, ConfigError, DecodeMemoryExhausted
from edge.pluginmanager import load_plugins
from edge.testing import NodeProcess, ServingNode
from edge.transform.encode import EncodeOptions, encode, encoder_memory
from edge.transform.held import DecodeBudget, accounted, charge, charge_encoding, mark, release_since
from edge.transform.options import parse_transformation
from edge.transform.render import Renderer, probe, render_image
from tests.nodes import decode, local_config, until, write_config
from tests.photos import photos  # noqa: F401 - a fixture
from tests.test_server_limits import held_mb, memory_kb

#: 8000x8000, flat: 1.3 kB that libheif decodes into ~0.94 GB (15 bytes a pixel, 960 MB estimated)
AVIF_SIDE = 8000
#: an interlaced 16-bit RGBA PNG of 8000x8000: ~5 MB that libpng decodes into 512 MB, 1.4 s or more
PNG_BYTES = 8000 * 8000 * 8
PHOTO_PIXELS = 4240 * 2832
#: seconds a worker may take to give back what a render held
FREED_WITHIN = 4


@pytest.fixture(scope="module")
def bombs(tmp_path_factory, photos):  # noqa: F811
    folder = tmp_path_factory.mktemp("bombs")
    pyvips.Image.black(AVIF_SIDE, AVIF_SIDE, bands=3).heifsave(str(folder / "flat.avif"), compression="av1", effort=0)
    (pyvips.Image.black(8000, 8000, bands=4) + 1).cast("ushort").copy(interpretation="rgb16").pngsave(
        str(folder / "interlaced.png"), interlace=True, compression=1)
    for name in ("photo.jpg", "photo.png"):
        shutil.copyfile(photos.path(name), folder / name)  # a local origin serves no link out of its root
    photo = pyvips.Image.new_from_file(str(photos.path("photo.jpg")))
    photo.jpegsave(str(folder / "progressive.jpg"), Q=85, interlace=True)
    photo.webpsave(str(folder / "photo.webp"), Q=80)
    return folder


def config(tmp_path: Path, folder: Path, wait: str) -> Path:
    return write_config(tmp_path, local_config(folder, before=f"""[server]
transform_threads = 2
decode_memory = "600MB"
decode_memory_wait = "{wait}"
[limits]
max_decode_memory = "600MB"
max_cost = 1000
"""))


def test_the_estimate_counts_only_loaders_that_decode_whole(bombs):
    limits = Limits()
    assert probe((bombs / "flat.avif").read_bytes(), limits).decode_memory == AVIF_SIDE ** 2 * 15
    assert probe((bombs / "interlaced.png").read_bytes(), limits).decode_memory == PNG_BYTES
    for streamed in ("photo.jpg", "photo.png"):  # 12 MP, read in strips
        assert probe((bombs / streamed).read_bytes(), limits).decode_memory == 0
    # decoded whole: a progressive JPEG's coefficients (2 bytes a sample, whatever the shrink on load: a 100 MP
    # one took 710 MB for `w-10`), a still WebP's pixels; both had been counted 0
    assert probe((bombs / "progressive.jpg").read_bytes(), limits).decode_memory == PHOTO_PIXELS * 7
    assert probe((bombs / "photo.webp").read_bytes(), limits).decode_memory == PHOTO_PIXELS * 4


def layers(count: int, name: str = "progressive.jpg") -> str:
    return "".join(f",l-image,i-{name},w-{10 + n},l-end" for n in range(count))


async def test_each_layer_s_decode_counts_as_often_as_it_is_drawn(node_factory, tmp_path, bombs):
    """Ten layers of one progressive JPEG are ten whole decodes at once (one URL had peaked at 1.3 GB), and ten
    decodes of CPU that nothing stops (10 layers of a 100 MP JPEG at `w-1` had cost 0.001 units, 3.6 s)."""
    node = await node_factory(write_config(tmp_path, local_config(bombs), name="defaults.toml"))
    served = await node.fetch(f"/tr:w-300{layers(6)}/photo.jpg")  # 6 × 84 MB, 6 × 30 units: within both
    assert served.code == 200 and decode(served).width == 300
    costly = await node.fetch(f"/tr:w-300{layers(7)}/photo.jpg")  # 7 × 30 units of decodes
    assert costly.code == 400 and costly.body.startswith(b"transformation too costly: about 2"), costly.body
    node = await node_factory(config(tmp_path, bombs, "1s"))  # 600 MB, and a budget of work that lets it by
    refused = await node.fetch(f"/tr:w-300{layers(8)}/photo.jpg")  # 672 MB
    assert (refused.code, refused.body) == (400, b"source too large: decoding it takes 672 MB, over"
                                                 b" max_decode_memory (600 MB)\n")


async def test_a_render_over_max_decode_memory_is_refused_before_decoding(node_factory, tmp_path, bombs):
    node = await node_factory(config(tmp_path, bombs, "1s"))
    started = time.monotonic()
    refused = await node.fetch("/tr:w-100/flat.avif")
    assert (refused.code, refused.body) == (400, b"source too large: decoding it takes 960 MB, over"
                                                 b" max_decode_memory (600 MB)\n")
    assert time.monotonic() - started < 1  # no decode (1.5 s and 0.94 GB before)
    assert node.node.renderer.decode_budget.in_use == 0


async def test_renders_beyond_the_budget_get_503_while_it_holds_and_streamed_ones_are_served(node_factory, tmp_path,
                                                                                            bombs):
    node = await node_factory(config(tmp_path, bombs, "0.3s"))
    budget = node.node.renderer.decode_budget
    first = asyncio.ensure_future(node.fetch("/tr:w-100/interlaced.png"))

    async def decoding() -> bool:
        return budget.in_use >= PNG_BYTES  # and what its encode holds

    await until(decoding, "the interlaced PNG decoding")
    refused = await node.fetch("/tr:w-101/interlaced.png")  # 2 x 512 MB: over 600 MB
    assert (refused.code, refused.headers["Retry-After"], refused.headers["X-Edge-Error"], refused.body) == \
        (503, "1", "decode_memory", b"node overloaded, retry later\n")
    for name in ("photo.jpg", "photo.png"):  # on the other render thread, not counted
        served = await node.fetch(f"/tr:w-300/{name}")
        assert served.code == 200 and decode(served).width == 300
    assert decode(await first).width == 100
    assert budget.in_use == 0  # everything taken was given back
    assert decode(await node.fetch("/tr:w-101/interlaced.png")).width == 101  # and the budget serves again


async def test_a_render_waits_for_the_budget_without_a_thread_then_runs(node_factory, tmp_path, bombs):
    node = await node_factory(config(tmp_path, bombs, "10s"))  # within transform_queue_timeout (10 s)
    budget = node.node.renderer.decode_budget
    first = asyncio.ensure_future(node.fetch("/tr:w-100/interlaced.png"))

    async def decoding() -> bool:
        return budget.in_use >= PNG_BYTES  # and what its encode holds

    await until(decoding, "the interlaced PNG decoding")
    second = asyncio.ensure_future(node.fetch("/tr:w-101/interlaced.png"))

    async def waiting() -> bool:
        return len(budget._waiters) == 1

    await until(waiting, "the second render waiting for the budget")
    assert decode(await first).width == 100
    assert decode(await second).width == 101
    assert budget.in_use == 0 and not budget._waiters


def test_the_budget_holds_at_least_one_render(tmp_path):
    with pytest.raises(ConfigError, match=r"\[server\] decode_memory: expected at least \[limits\] max_decode_memory"):
        load_config(write_config(tmp_path, local_config(tmp_path, before="[server]\ndecode_memory = \"500MB\"")),
                    load_plugins())


#: a 12 MP 8-bit RGB photo made in memory
PHOTO_BYTES = PHOTO_PIXELS * 3


@pytest.fixture(scope="module")
def rotated_layers(tmp_path_factory, photos):  # noqa: F811
    """The 12 MP photo as a JPEG base and, under five names, as PNG layers (streamed: no whole decode)."""
    folder = tmp_path_factory.mktemp("layers")
    shutil.copyfile(photos.path("photo.jpg"), folder / "photo.jpg")
    for n in range(5):
        shutil.copyfile(photos.path("photo.png"), folder / f"p{n}.png")
    return folder


def rotated(count: int) -> str:
    """`count` layers of the photo at full size, turned: each made in memory twice (turned out of order, then
    kept as the layer), the first copy freed once the layer is made."""
    return "w-300" + "".join(f",l-image,i-p{n}.png,rt-90,l-end" for n in range(count))


def small_budget(tmp_path: Path, folder: Path, wait: str) -> Path:
    return write_config(tmp_path, local_config(folder, before=f"""[server]
decode_memory = "200MB"
decode_memory_wait = "{wait}"
[limits]
max_decode_memory = "200MB"
max_cost = 1000
"""), name=f"small-{wait}.toml")


async def test_images_a_render_makes_in_memory_count_as_its_decodes_do(node_factory, tmp_path, rotated_layers):
    """Layers, steps and out-of-order reads are made in memory: counted with the decodes, to the render's
    maximum (400) and the worker's budget. Counting the decodes alone, eight turned 16-bit layers had held 612 MB
    uncounted, and two such URLs at once 1.6 GB on a 1 GB budget."""
    node = await node_factory(small_budget(tmp_path, rotated_layers, "1s"))
    served = await node.fetch(f"/tr:{rotated(4)}/photo.jpg")  # at most 5 copies at once: 180 MB
    assert served.code == 200 and decode(served).width == 300
    refused = await node.fetch(f"/tr:{rotated(5)}/photo.jpg")  # 6 copies: 216 MB
    assert (refused.code, refused.body) == (400, b"invalid transformation: i-p4.png: source too large: decoding and"
                                                 b" transforming it takes 216 MB, over max_decode_memory (200 MB)\n")
    budget = node.node.renderer.decode_budget
    assert budget.in_use == 0
    budget.try_take(150 * 10**6)  # other renders hold 150 MB of the 200
    busy = await node.fetch(f"/tr:{rotated(1)}/photo.jpg")  # 2 copies: 72 MB (it had been counted nothing)
    assert (busy.code, busy.headers["X-Edge-Error"]) == (503, "decode_memory")
    assert budget.in_use == 150 * 10**6  # what it took before it stopped was given back
    budget.give_back(150 * 10**6)
    assert decode(await node.fetch(f"/tr:{rotated(1)}/photo.jpg")).width == 300


async def test_a_render_that_needs_more_than_it_waited_for_waits_again(node_factory, tmp_path, rotated_layers):
    """A render stopped for want of memory waits for all it counted, then runs again holding it; when it needs
    more still and that does not fit either, it gives back what it holds and waits for the whole."""
    node = await node_factory(small_budget(tmp_path, rotated_layers, "10s"))
    budget = node.node.renderer.decode_budget
    budget.try_take(150 * 10**6)
    first = asyncio.ensure_future(node.fetch(f"/tr:{rotated(4)}/photo.jpg"))  # 180 MB at most

    async def waiting() -> bool:
        return len(budget._waiters) == 1

    await until(waiting, "the render waiting for 72 MB")  # its first layer: 2 copies
    budget.give_back(150 * 10**6)
    budget.try_take(100 * 10**6)  # 72 MB fit now, 180 will not
    await until(waiting, "the render waiting again, for 108 MB more")
    assert budget.in_use == 100 * 10**6  # it waits holding nothing
    budget.give_back(100 * 10**6)
    served = await first
    assert served.code == 200 and decode(served).width == 300
    assert budget.in_use == 0 and not budget._waiters


def test_what_a_layer_was_made_from_is_given_back_and_the_layer_kept(photos):  # noqa: F811
    """A layer trimmed, then shrunk, is made from a copy of its original at full size (36 MB of the 12 MP photo) and
    is itself small: once it is made, the copy is freed and the layer alone stays counted to the render's end. Three
    such layers hold one copy at a time (36 MB), not one a layer (over a 64 MB render's limit at the second)."""
    png = photos.read(photos.png)
    trimmed = "w-300" + "".join(f",l-image,i-p{n}.png,t-10,w-{100 + n},l-end" for n in range(3))
    budget = DecodeBudget(64 * 10**6, 1)
    rendered = render_image(photos.read(photos.jpeg), parse_transformation(trimmed), "jpg", Defaults(),
                            Limits(max_decode_memory=64 * 10**6, max_cost=1000),
                            {f"p{n}.png": png for n in range(3)}, budget=budget)
    assert (rendered.width, rendered.height) == (300, 200) and budget.in_use == 0


def test_what_a_step_keeps_stays_counted_once_what_it_was_made_from_is_freed():
    """`release_since` frees a step's working images but counts those it keeps (made in memory since the mark): a
    kept 1000×1000 RGB image holds 3 MB to the end, and a 7.2 MB image more is over a 10 MB render's limit."""
    kept = pyvips.Image.black(1000, 1000, bands=3)
    with accounted(None, 0, 10 * 10**6, 1000) as account:
        start = mark()
        charge(pyvips.Image.black(2000, 1000, bands=3))  # the step's 6 MB working copy
        charge(kept)
        release_since(start, [kept])
        assert account.held == 1000 + 3 * 10**6
        with pytest.raises(BadRequest, match=r"takes 10 MB, over max_decode_memory \(10 MB\)$"):
            charge(pyvips.Image.black(2400, 1000, bands=3))


def test_a_render_s_layers_take_what_is_counted_and_are_freed_with_it(tmp_path, photos):  # noqa: F811
    """Ten turned 12 MP layers (each 36 MB in memory, counted 11 × 36 = 396 MB at most) on a real worker: the
    turned copies a layer was made from had stayed held by the render's stop switch to its end (+360 MB), and
    the layers by a cycle with their drawer until Python's collector ran, seldom in a worker (the next render
    beside them: 2 GB on a 1 GB budget)."""
    root = tmp_path / "files"
    root.mkdir()
    for n in range(10):
        shutil.copyfile(photos.path("photo.jpg"), root / f"p{n}.jpg")
    config = write_config(tmp_path, local_config(root, before='[cache]\ndir = "cache"\nmemory_size = 0',
                                                  after="[limits]\nmax_cost = 1000"))
    process = NodeProcess(config, "--workers", "1")
    try:
        node, worker = ServingNode(process), process.worker_pids()[0]
        assert node.get("/tr:w-32/p0.jpg")[0] == 200
        resident, peak = memory_kb(worker, "VmRSS"), memory_kb(worker, "VmHWM")
        turned = "w-300" + "".join(f",l-image,i-p{n}.jpg,rt-90,l-end" for n in range(10))
        status, _, body = node.get(f"/tr:{turned}/p0.jpg")
        assert status == 200 and pyvips.Image.new_from_buffer(body, "").width == 300
        added = (memory_kb(worker, "VmHWM") - max(peak, resident)) // 1024
        assert 300 < added < 500, f"the render's peak added {added} MB"  # 418 MB here
        # freed as the render ends; the heap's small rest at the worker's next idle trim (1 s). The cycle had been
        # collected some 10 s later, when Python's collector ran
        held = held_mb(worker, resident, 60, FREED_WITHIN)
        assert held <= 60, f"{held} MB still held after the render"
    finally:
        process.stop()


#: renders run twice in a process of their own (its peak is theirs alone), printing the MB they held
RUNS_AGAIN = '''
import asyncio, gc, resource, sys
from pathlib import Path
from edge.config import Defaults, Limits
from edge.transform.held import DecodeBudget
from edge.transform.options import parse_transformation
from edge.transform.render import Renderer
from tests.imagecorpus import extraneous_bytes_jpeg

gc.disable()  # as in a worker, where the collector seldom runs (`gc.freeze`)
photo = Path(sys.argv[1]).read_bytes()
MB = 2**20


def resident() -> int:
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS:")) // 1024


async def main(case: str) -> None:
    budget = DecodeBudget(200 * 10**6, 10)
    renderer = Renderer(Defaults(), Limits(max_cost=1000), 1, 4, decode_budget=budget)
    await renderer.render(photo, parse_transformation("w-10"), "jpg")  # the decoders' own memory, once
    if case == "warning":  # two turned layers, then a layer whose JPEG warns harmlessly: the render runs twice
        tr = parse_transformation("w-100,l-image,i-a.jpg,rt-90,l-end,l-image,i-b.jpg,rt-180,l-end,"
                                  "l-image,i-c.jpg,w-50,l-end")
        await renderer.render(photo, tr, "jpg", {"a.jpg": photo, "b.jpg": photo, "c.jpg": photo})  # once: its peak
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        await renderer.render(photo, tr, "jpg", {"a.jpg": photo, "b.jpg": photo, "c.jpg": extraneous_bytes_jpeg(photo)})
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024 - before)  # what running again added
    else:  # a turned layer on a budget others hold: the render stops, and waits
        budget.try_take(150 * 10**6)
        before = resident()
        waiting = asyncio.ensure_future(renderer.render(photo, parse_transformation("w-100,l-image,i-a.jpg,rt-90,"
                                                                                    "l-end"), "jpg", {"a.jpg": photo}))
        while not budget._waiters:
            await asyncio.sleep(0.01)
        print(resident() - before)
        budget.give_back(150 * 10**6)
        await waiting

asyncio.run(main(sys.argv[2]))
'''


@pytest.mark.parametrize("case, at_most", [("warning", 30), ("budget", 20)])
def test_a_render_that_runs_again_holds_nothing_of_its_first_attempt(photos, case, at_most):  # noqa: F811
    """A render runs again when a JPEG's warning turns out harmless (strict, then not), and when it stopped for want
    of decode memory (it waits, then runs holding it). The first attempt's images had stayed: the retry ran in the
    warning's handler, its images held by it and by the stop switch (+67 MB over one attempt's peak, now +0), and
    the stopped attempt's error carried its frames through a cycle, held while it waited (42 MB, now 6)."""
    run = subprocess.run([sys.executable, "-c", RUNS_AGAIN, str(photos.path("photo.jpg")), case],
                         capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parent.parent)
    assert run.returncode == 0, run.stderr
    assert int(run.stdout) <= at_most, f"{run.stdout.strip()} MB held"


def test_what_an_encode_holds_is_counted(photos):  # noqa: F811
    """An encoder holds its own buffers beside the output (measured: a 12 MP JPEG at 4:4:4 +145 MB, an AVIF +248 MB),
    which no budget counted: a container's workers were OOM-killed on encodes under budgets that fit its limit. A
    whole 12 MP photo at q-90 (4:4:4) is now over a 64 MB render's limit, said so; a 2000 px one is within it."""
    limits = Limits(max_decode_memory=64 * 10**6)
    body = photos.read(photos.jpeg)
    refused = r"^output too large: decoding, transforming and encoding it takes 1[0-9]{2} MB, over max_decode_memory"
    with pytest.raises(BadRequest, match=refused + r" \(64 MB\)$"):
        render_image(body, parse_transformation("q-90"), "jpg", Defaults(), limits)
    budget = DecodeBudget(64 * 10**6, 1)
    within = render_image(body, parse_transformation("w-2000"), "jpg", Defaults(), limits, budget=budget)
    assert within.width == 2000 and budget.in_use == 0  # taken while it encoded, given back


def test_a_jpeg_is_counted_at_4_4_4_from_the_quality_libvips_encodes_it_so(photos):  # noqa: F811
    """libvips' `auto` subsampling is 4:2:0 below q-90, 4:4:4 from it, with twice the coefficients held: q-90 is
    counted as a JPEG without chroma subsampling is, q-89 as one with it."""
    image = pyvips.Image.new_from_file(str(photos.path(photos.jpeg))).crop(0, 0, 2000, 1500).copy_memory()

    def held(quality: int, subsampled: bool = True) -> int:
        return encoder_memory(image, "jpg", EncodeOptions(quality, 2, chroma_subsampling=subsampled), image.height)

    def sampling(quality: int) -> str:
        return pyvips.Image.new_from_buffer(encode(image, "jpg", EncodeOptions(quality, 2)), "").get(
            "jpeg-chroma-subsample")

    assert (sampling(89), sampling(90)) == ("4:2:0", "4:4:4")
    assert held(90) - held(89) == held(89, subsampled=False) - held(89) > 2000 * 1500 * 4


def test_a_lossless_output_is_counted_as_large_as_its_pixels_whatever_the_quality(photos):  # noqa: F811
    """`lo-true` keeps every pixel: noise does not compress, its WebP or AVIF holds as many bytes as its pixels (a
    lossy output at q-50 0.4 times them); the quality does not lower it."""
    image = pyvips.Image.new_from_file(str(photos.path(photos.jpeg))).crop(0, 0, 2000, 1500).copy_memory()
    raw = 2000 * 1500 * 3
    for fmt in ("webp", "avif"):
        lossless, lossy = (encoder_memory(image, fmt, EncodeOptions(50, 2, lossless=kept), image.height)
                           for kept in (True, False))
        assert abs(lossless - lossy - raw * 0.6) <= 1, fmt
        assert encoder_memory(image, fmt, EncodeOptions(100, 2, lossless=True), image.height) == lossless, fmt


async def test_an_endpoint_under_its_share_renders_past_a_decode_budget_another_filled(photos):  # noqa: F811
    """Renders are not taken back: four renders of 100 MP PNGs on one endpoint had another endpoint's progressive
    JPEGs wait 5 s, then get 503 (noisy-tenant re-probe). An endpoint within its share of the budget (the budget
    over the endpoints holding any, itself included) takes past a budget another filled, up to twice it in all."""
    budget = DecodeBudget(100 * 10**6, 0.5)
    renderer = Renderer(Defaults(), Limits(), 1, 4, decode_budget=budget)
    body, turned = photos.read(photos.jpeg), parse_transformation("w-1500,rt-90")
    assert budget.try_take(100 * 10**6, "a")  # the noisy endpoint holds it all
    rendered = await renderer.render(body, turned, "jpg", lane="b")
    assert (rendered.width, rendered.height) == (1002, 1500) and budget.in_use == 100 * 10**6  # turned
    for lane in ("a", None):  # the endpoint over its share, and work of no endpoint, wait for the budget
        with pytest.raises(DecodeMemoryExhausted):
            await renderer.render(body, turned, "jpg", lane=lane)
    budget.give_back(100 * 10**6, "a")
    assert budget.in_use == 0 and not budget.shares
    renderer.shutdown()


def test_endpoint_shares_bound_what_is_taken_past_the_budget():
    budget = DecodeBudget(100, 1)
    assert budget.try_take(100, "a") and not budget.try_take(1, "a")  # alone, the budget holds
    assert budget.try_take(50, "b") and not budget.try_take(1, "b")  # half of it while a holds some
    assert budget.try_take(33, "c") and not budget.try_take(1, "c")  # a third, with three
    assert not budget.try_take(18, "d")  # within a quarter, but past twice the budget in all
    assert budget.try_take(17, "d")
    for endpoint, size in ("a", 100), ("b", 50), ("c", 33), ("d", 17):
        budget.give_back(size, endpoint)
    assert budget.in_use == 0 and not budget.shares


def test_a_render_holds_up_to_max_decode_memory_and_its_thread_nothing_once_it_ended():
    budget = DecodeBudget(100, 1)
    with accounted(budget, 0, 100, 60, "a"):
        charge_encoding(40)  # the render's limit exactly
        assert budget.in_use == 100
        with pytest.raises(BadRequest, match=r"^output too large: .* over max_decode_memory"):
            charge_encoding(1)
    assert budget.in_use == 0 and not budget.shares
    charge_encoding(10**9)  # the thread's next work is no render's: counted on none
    assert budget.in_use == 0


async def test_a_wait_for_the_budget_that_ends_unanswered_leaves_no_waiter_behind():
    """A wait that timed out (503) or whose request left stays no waiter: while the budget stays full, each refused
    render had left one more."""
    budget = DecodeBudget(100, 1)
    assert budget.try_take(100, "a")
    with pytest.raises(DecodeMemoryExhausted):
        await budget.take(1, 0.05, "a")
    assert not budget._waiters
    leaving = asyncio.ensure_future(budget.take(1, 60, "a"))

    async def waiting() -> bool:
        return len(budget._waiters) == 1

    await until(waiting, "the render waiting for the budget")
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert not budget._waiters and budget.in_use == 100


async def test_waiting_for_the_budget_is_bounded_by_what_is_left_of_the_queue_timeout(photos):  # noqa: F811
    """Waiting for decode memory is waiting to start: a budget that waits longer than `transform_queue_timeout` does
    not hold the render past it (else past `flight.wait_bound`, the node's longest answer)."""
    budget = DecodeBudget(100 * 10**6, 60)
    renderer = Renderer(Defaults(), Limits(), 1, 4, queue_timeout=0.3, decode_budget=budget)
    try:
        assert budget.try_take(100 * 10**6, "a")
        turned = parse_transformation("w-1500,rt-90")  # made in memory: it needs the budget
        with pytest.raises(DecodeMemoryExhausted):
            await asyncio.wait_for(renderer.render(photos.read(photos.jpeg), turned, "jpg", lane="a"), 10)
        budget.give_back(100 * 10**6, "a")
        assert budget.in_use == 0 and not budget._waiters
    finally:
        renderer.shutdown()
