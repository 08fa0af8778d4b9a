"""An animation's frames are made one after the other, each into memory, before they are joined: joined
lazily, their pipelines ran all at once, each holding its operations' buffers, and a `cr` on 100 frames of
480×270 (13 megapixels in all, well within the budget) took a worker to 1.1 GB. And each step's frames are let go
once the next step's are made: the render's stop switch held them all to the end (534 MB for 6 steps). A real node,
in its own process."""

import pytest
import pyvips

from edge.testing import NodeProcess, ServingNode, write_config
from edge.transform import stopping
from edge.transform.geometry import in_memory
from tests.nodes import SAMPLES, local_config
from tests.test_server_limits import memory_kb

FRAMES = 100
#: an effect, then steps that each read the previous one's frames
CHAINED = ":".join(["cr-green"] + [f"w-{470 - 5 * i}" for i in range(5)])


def test_chained_steps_on_every_frame_of_a_long_animation_hold_little_memory(tmp_path):
    root = tmp_path / "files"
    root.mkdir()
    still = pyvips.Image.new_from_file(str(SAMPLES / "chelsea.jpg")).thumbnail_image(480, height=270, crop="centre")
    frames = [still.embed(i % 7, i % 5, 480, 270, extend="mirror") for i in range(FRAMES)]
    strip = pyvips.Image.arrayjoin(frames, across=1).copy(interpretation="srgb")
    strip.set_type(pyvips.GValue.gint_type, "page-height", 270)
    strip.webpsave(str(root / "cat.webp"), Q=60, effort=0)
    config = write_config(tmp_path, local_config(root, before='[cache]\ndir = "cache"\nmemory_size = 0',
                                                  after="[limits]\nmax_cost = 1000"))
    process = NodeProcess(config, "--workers", "1")
    try:
        node, worker = ServingNode(process), process.worker_pids()[0]
        before = memory_kb(worker, "VmHWM")
        status, body = node.get(f"/tr:{CHAINED},f-webp/cat.webp")[::2]
        assert status == 200 and pyvips.Image.new_from_buffer(body, "").get_n_pages() == FRAMES
        grown = (memory_kb(worker, "VmHWM") - before) // 1024
        # the frames decoded, two steps' frames, one frame's pipeline and the encoder's own: about 215 MB here,
        # where it was 1056 (frames joined lazily) and then 534 (every step's frames held)
        assert grown <= 320, f"the worker's peak grew by {grown} MB"
    finally:
        process.stop()


def test_a_stop_reaches_what_reads_the_steps_kept():
    """What a render computes after letting a step's makers go reads the step's results: stopping them stops it."""
    switch = stopping.StopSwitch()
    with stopping.stoppable(switch):
        mark = stopping.mark()
        made = in_memory(in_memory((pyvips.Image.black(1000, 1000) + 100).cast("uchar")).gaussblur(2))
        stopping.forget_since(mark, [made])
        assert len(switch) == 1
        switch.stop(lambda: TimeoutError("stopped"))
        with pytest.raises(pyvips.Error, match="killed"):
            made.gaussblur(3).avg()
