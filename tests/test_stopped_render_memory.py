"""A render stopped at its deadline gives its memory back: the error it raised went through the frames that
awaited the task and the future holding it, a cycle that kept each stopped render's pixels (250 MB for a 44 kB
GIF of 64 megapixels) until Python's cyclic collector ran, seldom in a worker. A real node, in its own process."""

import pyvips

from edge.testing import NodeProcess, ServingNode, solid_image, write_config
from tests.nodes import local_config
from tests.test_server_limits import held_mb, memory_kb

#: seconds the worker may take to give the memory back (it trims its heap when idle after a burst)
SETTLE = 10


def test_renders_stopped_at_the_deadline_leave_no_memory_held(tmp_path):
    root = tmp_path / "files"
    root.mkdir()
    # decoded whole (4 bytes a pixel) before the deadline can stop the render, in its encode
    flat = (pyvips.Image.black(8000, 8000) + [200, 100, 50]).cast("uchar").copy(interpretation="srgb")
    (root / "big.gif").write_bytes(flat.gifsave_buffer(effort=1))
    (root / "photo.jpg").write_bytes(solid_image(64, 48, (0, 0, 200)))
    config = write_config(tmp_path, local_config(root, before='[cache]\ndir = "cache"\nmemory_size = 0',
                                                  after='[limits]\nrender_timeout = "0.2s"'))
    process = NodeProcess(config, "--workers", "1")
    try:
        node, worker = ServingNode(process), process.worker_pids()[0]
        before = memory_kb(worker, "VmRSS")
        for width in range(100, 104):  # other outputs: each a render of its own
            assert node.get(f"/tr:w-{width}/big.gif")[::2] == (503, b"rendering took too long\n")
        assert node.get("/tr:w-32/photo.jpg")[0] == 200
        held = held_mb(worker, before, 100, SETTLE)
        assert held <= 100, f"{held} MB still held after the stopped renders"
    finally:
        process.stop()


def test_a_render_with_image_layers_leaves_their_originals_behind(tmp_path):
    """The layers' originals are let go as the render ends: the functions that drew the layers made a cycle that
    held them until the cyclic collector ran (ten 37 MB PNG layers: 368 MB in an idle worker)."""
    root = tmp_path / "files"
    root.mkdir()
    noise = pyvips.Image.gaussnoise(2900, 2900, mean=128, sigma=60).cast("uchar")
    layer = noise.bandjoin([noise, noise]).pngsave_buffer(compression=0)  # 25 MB that no compression shrinks
    for n in range(4):  # four files, four originals
        (root / f"layer{n}.png").write_bytes(layer)
    (root / "photo.jpg").write_bytes(solid_image(64, 48, (0, 0, 200)))
    config = write_config(tmp_path, local_config(root, before='[cache]\ndir = "cache"\nmemory_size = 0'))
    process = NodeProcess(config, "--workers", "1")
    try:
        node, worker = ServingNode(process), process.worker_pids()[0]
        before = memory_kb(worker, "VmRSS")
        layers = ":".join(f"l-image,i-layer{n}.png,w-10,l-end" for n in range(4))
        assert node.get(f"/tr:w-64,{layers}/photo.jpg")[0] == 200
        # within seconds: the cyclic collector, run at last by the worker's own allocations, freed them in ten
        held = held_mb(worker, before, 40, 3)
        assert held <= 40, f"{held} MB still held after the render"
    finally:
        process.stop()
