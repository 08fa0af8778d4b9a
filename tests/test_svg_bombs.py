"""SVG originals (`[limits] allow_svg`) are drawn by librsvg, which never looks at libvips' kill flag: a small
document of heavy filters or nested `<use>`s drew for minutes in a render thread, past the render deadline. The
node draws them in a child process it kills at the deadline. A real node, in its own process, over loopback."""

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import pyvips

from benchmarks.common import cpu_seconds
from edge.config import Limits
from edge.errors import BadRequest, RenderTimedOut
from edge.testing import NodeProcess, ServingNode, solid_image, write_config
from edge.transform.render import SVG_CHILD_BASE_BYTES, _svg_child
from tests.nodes import local_config, polled
from tests.test_server_limits import memory_kb

#: 15 kB: 200 full-size rectangles, each blurred over 500 px. librsvg draws the document once per libvips
#: tile: 22 s and more at 2000×2000 for a render thread, past a 1 s deadline
BLURS = (b'<svg xmlns="http://www.w3.org/2000/svg" width="2000" height="2000"><filter id="f">'
         b'<feGaussianBlur stdDeviation="500"/></filter>'
         + b"".join(b'<rect x="%d" width="2000" height="2000" fill="red" filter="url(#f)"/>' % i for i in range(200))
         + b"</svg>")


def _nested_uses(levels: int) -> bytes:
    """4^levels half-transparent rectangles from a 1 kB document (each level uses the one below 4 times)."""
    groups = b"".join(b'<g id="a%d">' % k + b'<use href="#a%d"/>' % (k - 1) * 4 + b"</g>" for k in range(1, levels + 1))
    return (b'<svg xmlns="http://www.w3.org/2000/svg" width="1000" height="1000"><defs>'
            b'<rect id="a0" width="1000" height="1000" fill="red" opacity="0.5"/>' + groups
            + b'</defs><use href="#a%d"/></svg>' % levels)


#: 15 MB of 300 000 small shapes: librsvg parses the whole document to read its header (3 s, ~600 MB)
MANY = (b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
        + b'<rect x="1" y="1" width="5" height="5" fill="red"/>' * 300_000 + b"</svg>")


def _config(root: Path, threads: int = 1, limits: str = 'render_timeout = "1s"') -> str:
    return local_config(root, before=f"[server]\ntransform_threads = {threads}",
                        after=f'[limits]\nallow_svg = true\n{limits}')


def _node_over(tmp_path: Path, files: dict[str, bytes], threads: int, limits: str) -> NodeProcess:
    """A node of one worker over `files`, SVGs allowed."""
    root = tmp_path / "files"
    root.mkdir()
    for name, body in files.items():
        (root / name).write_bytes(body)
    return NodeProcess(write_config(tmp_path, _config(root, threads, limits)), "--workers", "1")


def test_a_costly_svg_is_stopped_at_the_render_deadline(tmp_path):
    root = tmp_path / "files"
    root.mkdir()
    (root / "blurs.svg").write_bytes(BLURS)
    (root / "uses.svg").write_bytes(_nested_uses(11))
    (root / "many.svg").write_bytes(MANY)
    # larger than a pipe holds: the child's stdin is not a pipe (with one, the document waited for ever)
    (root / "commented.svg").write_bytes(b'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><!--'
                                         + b"x" * 300_000 + b'--><rect width="40" height="20" fill="red"/></svg>')
    (root / "photo.jpg").write_bytes(solid_image(64, 48, (0, 0, 200)))
    outside = tmp_path / "secret.png"  # beside the origin's folder, not in it
    outside.write_bytes(solid_image(40, 20, (0, 255, 0), "png"))
    (root / "peek.svg").write_bytes(b'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20">'
                                    b'<image width="40" height="20" href="file://%s"/></svg>' % str(outside).encode())
    process = NodeProcess(write_config(tmp_path, _config(root)), "--workers", "1")
    try:
        node, worker = ServingNode(process), process.worker_pids()[0]
        assert node.get("/tr:w-100,f-png/blurs.svg")[0] == 200  # small, it is cheap
        before = memory_kb(worker, "VmHWM")
        commented = node.get("/tr:w-20,f-png/commented.svg")
        assert commented[0] == 200
        assert pyvips.Image.new_from_buffer(commented[2], "").getpoint(10, 5) == [255, 0, 0, 255]
        for path in ("/tr:f-png/blurs.svg", "/tr:w-1000,f-png/uses.svg", "/tr:w-50,f-png/many.svg"):
            started = time.monotonic()
            status, _, body = node.get(path)
            assert (status, body) == (503, b"rendering took too long\n"), path
            assert time.monotonic() - started < 3, path
            # the render thread is free: the next image is served at once
            started = time.monotonic()
            status, _, body = node.get("/tr:w-32/photo.jpg")
            assert status == 200 and pyvips.Image.new_from_buffer(body, "").width == 32
            assert time.monotonic() - started < 1
        assert memory_kb(worker, "VmHWM") - before < 50 * 1024
        # a file outside the origin is never drawn: the image is left transparent
        status, _, body = node.get("/tr:f-png/peek.svg")
        drawn = pyvips.Image.new_from_buffer(body, "")
        assert status == 200 and (drawn.width, drawn.height, drawn.bands) == (40, 20, 4)
        assert drawn[3].max() == 0
    finally:
        process.stop()


def drawings(worker: int) -> dict[int, float]:
    """The processes drawing an SVG for `worker` (its children running svgraster.py), each with its CPU seconds."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) if entry.name.isdigit() else 0
            if parent == worker and b"svgraster.py" in (entry / "cmdline").read_bytes():
                found[int(entry.name)] = cpu_seconds(int(entry.name))
        except (OSError, IndexError, ValueError):  # a process that ended as it was read
            continue
    return found


def test_a_drawing_nobody_waits_for_any_more_is_stopped(tmp_path):
    """The client gone, the flight's work is cancelled and the drawing (22 s and more) killed at its next poll, long
    before the deadline (60 s here). Without the poll's stop check, a drawing went on to its end or its own CPU
    bound, the deadline and a second more (a mutation audit: the deadline test above allows 3 s for a 1 s one)."""
    process = _node_over(tmp_path, {"blurs.svg": BLURS}, 1, 'render_timeout = "60s"')
    try:
        worker = process.worker_pids()[0]
        with socket.create_connection(("127.0.0.1", int(process.url.rsplit(":", 1)[1]))) as client:
            client.sendall(b"GET /tr:f-png/blurs.svg HTTP/1.1\r\nHost: node\r\n\r\n")
            # drawing, not reading the document's header (a child of its own, ended at once)
            polled(lambda: any(cpu >= 0.3 for cpu in drawings(worker).values()), "the drawing to be under way")
        polled(lambda: not drawings(worker), "the drawing to be stopped")
    finally:
        process.stop()


def test_an_svg_served_as_it_is_is_never_parsed_and_one_drawn_is_held_to_max_decode_memory(tmp_path):
    """Served as it is, an SVG had its whole document parsed at every miss for its header alone (26 MB of shapes:
    4 s and 1.1 GB a child, 4.9 GB for 8 clients); drawn, its child took what the document needed, counted nowhere
    (resource probe). Now the bytes go out untouched, unparsed, and a drawing's child may take `max_decode_memory`."""
    process = _node_over(tmp_path, {"many.svg": MANY}, 1, 'max_decode_memory = "200MB"')
    try:
        node = ServingNode(process)
        for path in ("/many.svg", "/tr:w-50/many.svg", "/tr:orig-true/many.svg"):
            # a parse, past the 200 MB the document's needs, would have been the 400 below
            status, headers, body = node.get(path)
            assert (status, headers["Content-Type"], body == MANY) == (200, "image/svg+xml", True), path
        status, _, body = node.get("/tr:w-50,f-png/many.svg")
        assert (status, body) == (400, b"source too large: drawing it takes over max_decode_memory (200 MB)\n")
    finally:
        process.stop()


def svg_children(worker: int) -> int:
    """The SVG children (`svgraster`) a worker runs now."""
    count = 0
    pids = []
    for task in Path(f"/proc/{worker}/task").iterdir():  # a child is its thread's: the render thread's
        try:
            pids += (task / "children").read_text().split()
        except OSError:  # ended meanwhile
            pass
    for pid in pids:
        try:
            count += b"svgraster" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:  # ended meanwhile
            pass
    return count


def test_a_worker_draws_one_svg_at_a_time(tmp_path):
    """Each child may take `max_decode_memory`; four at once of a 38 MB document had taken 6.8 GB (resource
    probe). Two render threads, two slow SVGs asked at once: never two children."""
    process = _node_over(tmp_path, {"blurs.svg": BLURS}, 2, 'render_timeout = "2s"')
    try:
        node, worker = ServingNode(process), process.worker_pids()[0]
        with ThreadPoolExecutor(2) as clients:
            answers = [clients.submit(node.get, f"/tr:w-{width},f-png/blurs.svg") for width in (1900, 1901)]
            seen = set()
            while not all(answer.done() for answer in answers):  # bounded: each answers at its 2 s deadline
                seen.add(svg_children(worker))
                time.sleep(0.005)  # a sample each 5 ms, the two renders' 2 s
            assert {answer.result()[0] for answer in answers} == {503}
        assert max(seen) == 1
    finally:
        process.stop()


def test_a_drawing_that_reaches_its_own_cpu_bound_is_too_slow_not_corrupt():
    """The child's CPU bound (`render_timeout` + 1 s) can be reached before the render's deadline is seen: that
    answer had been a 422, "unsupported or corrupt source image", for a document that draws, only too slowly
    (resource probe)."""
    with pytest.raises(RenderTimedOut):
        _svg_child(BLURS, 2000, {}, Limits(allow_svg=True), 1, 2 * 10**9)


#: 100 bytes that draw as large as asked: 5000×5000 RGBA is 100 MB, over a child held to 30 MB + its own 64 MB
SQUARE = b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><rect width="50" height="50"/></svg>'


def test_a_drawing_read_back_counts_in_the_render_s_memory(tmp_path):
    """The child's drawing comes back to the worker whole: 3000×3000 RGBA from a 100-byte document is 36 MB there,
    which counted nowhere (w-5000 of a 350-byte SVG took 194 MB). Now it counts as an image the render made (the
    child may take `max_decode_memory` and its own 64 MB: it draws this one). Its PNG encode counts too, at its
    largest: the drawing's bytes again. One too large for the child itself is refused there, the same 400."""
    process = _node_over(tmp_path, {"small.svg": SQUARE}, 1, 'max_decode_memory = "30MB"')
    try:
        node = ServingNode(process)
        status, _, body = node.get("/tr:w-3000,f-png/small.svg")
        assert (status, body) == (400, b"source too large: decoding and transforming it takes 36 MB, over "
                                       b"max_decode_memory (30 MB)\n")
        status, _, body = node.get("/tr:w-1900,f-png/small.svg")  # 14.4 MB, and as much for its encode
        assert status == 200 and pyvips.Image.new_from_buffer(body, "").width == 1900
        status, _, body = node.get("/tr:w-2500,f-png/small.svg")  # 25 MB, and its encode: 50 MB
        assert (status, body) == (400, b"output too large: decoding, transforming and encoding it takes 50 MB, over "
                                       b"max_decode_memory (30 MB)\n")
        status, _, body = node.get("/tr:w-5000,f-png/small.svg")  # 100 MB: the child's own bound refuses it
        assert (status, body) == (400, b"source too large: drawing it takes over max_decode_memory (30 MB)\n")
    finally:
        process.stop()


def test_a_drawing_libvips_refuses_for_memory_is_too_large_not_corrupt():
    """libvips in the child refuses the drawing's buffer ("out of memory") as a pyvips error, not a MemoryError
    nor an abort: that is the document asking more than `max_decode_memory`, a 400 naming it, not a 422 "corrupt"
    for a drawable document (which an operator would chase as a bad original)."""
    limits = Limits(allow_svg=True, max_decode_memory=30 * 10**6)
    with pytest.raises(BadRequest) as refused:
        _svg_child(SQUARE, 5000, {}, limits, 10, limits.max_decode_memory + SVG_CHILD_BASE_BYTES)
    assert refused.value.message == "source too large: drawing it takes over max_decode_memory (30 MB)"
    drawn = _svg_child(SQUARE, 500, {}, limits, 10, limits.max_decode_memory + SVG_CHILD_BASE_BYTES)
    assert (drawn.width, drawn.height) == (500, 500)
