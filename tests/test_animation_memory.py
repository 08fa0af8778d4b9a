"""An animation's frames are made one after the other, each into memory, before they are joined: joined
lazily, their pipelines ran all at once, each holding its operations' buffers, and a `cr` on 100 frames of
480×270 (13 megapixels in all, well within the budget) took a worker to 1.1 GB. A real node, in its own process."""

import pyvips

from edge.testing import NodeProcess, ServingNode, write_config
from tests.nodes import SAMPLES, local_config
from tests.test_server_limits import memory_kb

FRAMES = 100


def test_an_effect_on_every_frame_of_a_long_animation_holds_little_memory(tmp_path):
    root = tmp_path / "files"
    root.mkdir()
    still = pyvips.Image.new_from_file(str(SAMPLES / "chelsea.jpg")).thumbnail_image(480, height=270, crop="centre")
    frames = [still.embed(i % 7, i % 5, 480, 270, extend="mirror") for i in range(FRAMES)]
    strip = pyvips.Image.arrayjoin(frames, across=1).copy(interpretation="srgb")
    strip.set_type(pyvips.GValue.gint_type, "page-height", 270)
    strip.webpsave(str(root / "cat.webp"), Q=60, effort=0)
    config = write_config(tmp_path, local_config(root, before='[cache]\ndir = "cache"\nmemory_size = 0'))
    process = NodeProcess(config, "--workers", "1")
    try:
        node, worker = ServingNode(process), process.worker_pids()[0]
        before = memory_kb(worker, "VmHWM")
        status, body = node.get("/tr:cr-green,f-webp/cat.webp")[::2]
        assert status == 200 and pyvips.Image.new_from_buffer(body, "").get_n_pages() == FRAMES
        grown = (memory_kb(worker, "VmHWM") - before) // 1024
        # the frames decoded, the frames made, one frame's pipeline and the encoder's own: about 205 MB here,
        # where it was 1056
        assert grown <= 320, f"the worker's peak grew by {grown} MB"
    finally:
        process.stop()
