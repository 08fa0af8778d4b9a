"""The pieces of benchmarks/compare.py that decide what it reports (the run itself is not part of CI:
it needs thumbor, nginx and wrk, and takes minutes)."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pyvips

from benchmarks import engines
from benchmarks.baselines import BARE_SERVICE_SERVER
from benchmarks.common import ForkedServer
from benchmarks.compare import Row, process_tree, tree_cpu, tree_pss, tree_rss, unique_jpeg, verdicts, wrk_latency
from edge.transform.render import ImageHeader, jpeg_shrink
from tests.imagecorpus import photo_jpeg

WRK_OUTPUT = """Running 1s test @ http://127.0.0.1:8080/
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.61ms  806.87us  14.52ms   91.02%
    Req/Sec     9.90k     1.08k   10.78k    90.00%
  Latency Distribution
     50%  812.00us
     75%    1.70ms
     90%    2.24ms
     99%    1.20s
  9851 requests in 1.00s, 19.04MB read
Requests/sec:   9846.85
Transfer/sec:     19.03MB
"""


def test_wrk_percentiles_are_read_in_milliseconds_whatever_wrk_prints():
    assert wrk_latency(WRK_OUTPUT, "50%") == 0.812
    assert wrk_latency(WRK_OUTPUT, "99%") == 1200.0


def test_a_missed_goal_is_held_to_the_stack_alone_and_says_whose_the_gap_is():
    stack_misses = Row("cold miss, 1 MP", {}, [("node/bare", 1.48, "≤ 1.1", False), ("node/service", 1.23, "", None)],
                       [("node/bare", "service/bare", 1.20, False)])
    stack_meets = Row("miss, JPEG", {},
                      [("node/bare", 1.07, "≥ 0.95", True), ("node/thumbor", 0.9, "≥ 1.2", False)],
                      [("node/thumbor", "service/thumbor", 1.25, True), ("node/thumbor", "bare/thumbor", 0.84, False)])
    met = Row("cache hit", {}, [("node/Tornado req/s", 1.28, "≥ 0.9", True)], [("node/x", "service/x", 0.5, False)])
    assert stack_misses.verdict() == (
        "- cold miss, 1 MP: node/bare 1.48 (goal ≤ 1.1); the stack alone misses it too (service/bare 1.20 ✗): "
        "out of reach of the least service built on Tornado and libvips; the node's own work on top: "
        "node/service 1.23.")
    assert stack_meets.verdict() == (
        "- miss, JPEG: node/thumbor 0.90 (goal ≥ 1.2); the stack alone meets it (service/thumbor 1.25 ✓, "
        "bare/thumbor 0.84 ✗): the gap is the node's own work.")
    assert met.verdict() is None
    both = Row("miss, AVIF", {}, [("node/bare", 0.94, "≥ 0.95", False), ("node/thumbor", 0.96, "≥ 1.2", False)],
               [("node/thumbor", "service/thumbor", 1.07, False), ("node/bare", "service/bare", 1.02, True)])
    assert both.verdict() == (
        "- miss, AVIF: node/bare 0.94 (goal ≥ 0.95); the stack alone meets it (service/bare 1.02 ✓): the gap is "
        "the node's own work — node/thumbor 0.96 (goal ≥ 1.2); the stack alone misses it too (service/thumbor "
        "1.07 ✗): out of reach of the least service built on Tornado and libvips.")
    memory = Row("PSS peak", {}, [("node/thumbor", 1.81, "≤ 1", False), ("node/service", 1.32, "", None)],
                 [("node/thumbor", "bare/thumbor peak", 0.99, True),
                  ("node/thumbor", "service/thumbor peak", 1.37, False)])
    assert memory.verdict() == (
        "- PSS peak: node/thumbor 1.81 (goal ≤ 1); the stack alone misses it too (bare/thumbor peak 0.99 ✓, "
        "service/thumbor peak 1.37 ✗): out of reach of the least service built on Tornado and libvips; libvips "
        "alone, with no HTTP server, meets it: the rest is Tornado's; the node's own work on top: node/service 1.32.")
    assert verdicts([met]) == "Every goal met."
    assert verdicts([met, stack_misses]).endswith(stack_misses.verdict())
    assert stack_meets.ratio_text().endswith(
        "; stack alone: service/thumbor **1.25** ✓; stack alone: bare/thumbor **0.84** ✗")


def test_unique_copies_differ_in_bytes_and_decode_to_the_same_pixels():
    body = photo_jpeg(160, 120)
    first, second = unique_jpeg(body, "miss/a-0.jpg"), unique_jpeg(body, "miss/a-1.jpg")
    assert len({body, first, second}) == 3
    original = pyvips.Image.new_from_buffer(body, "")
    for copy in (first, second):
        image = pyvips.Image.new_from_buffer(copy, "", fail=True)
        assert (image.width, image.height) == (160, 120)
        assert (image - original).abs().max() == 0


def test_a_process_tree_sums_its_children():
    holder = "import sys; b = bytearray(64 << 20); print('ready', flush=True); sys.stdin.read()"
    child = subprocess.Popen([sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"  # it holds 64 MB (zeroed: resident) until stdin closes
        assert child.pid in process_tree(os.getpid())
        assert tree_rss([child.pid]) >= 64
        assert tree_rss([os.getpid()]) >= tree_rss([child.pid]) + 10  # this process counts too
        assert tree_cpu([os.getpid()]) >= tree_cpu([child.pid])
    finally:
        child.stdin.close()
        child.wait(30)
        child.stdout.close()


def test_pss_counts_what_a_fork_shares_once_and_rss_in_each_process():
    holder = ("import os, sys; b = bytearray(64 << 20); parent = os.fork(); "
              "parent and print('ready', flush=True); sys.stdin.read()")  # both hold the same 64 MB
    child = subprocess.Popen([sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        assert len(process_tree(child.pid)) == 2
        assert tree_rss([child.pid]) >= 128
        assert 64 <= tree_pss([child.pid]) < 100
    finally:
        child.stdin.close()
        child.wait(30)
        child.stdout.close()

def test_the_engines_decode_at_the_scale_the_node_shrinks_on_load_at():
    for width, height in engines.SOURCES.values():
        header = ImageHeader("jpegload_source", width, height, has_alpha=False)
        assert engines.decode_scale(width, height) == jpeg_shrink(header, engines.WIDTH, 1)


def test_each_libvips_engine_runs_and_reports_its_cpu(tmp_path):
    path = tmp_path / "source.jpg"
    path.write_bytes(photo_jpeg(1200, 800))
    for engine in engines.LIBVIPS_ENGINES:
        assert engines.cpu_ms_per_image(Path(sys.executable), engine, path, scale=4, iterations=1) > 0


def test_the_bare_tornado_service_renders_the_width_and_format_asked(tmp_path):
    """The misses' baseline answers like the node: the width and format asked, from the folder's file."""
    (tmp_path / "photo.jpg").write_bytes(photo_jpeg(2000, 1333))
    service = ForkedServer.start(BARE_SERVICE_SERVER, [str(tmp_path), "1", "1", "80", "56", "2"], 1)
    try:
        for fmt, loader in (("jpg", "jpegload"), ("webp", "webpload"), ("avif", "heifload")):
            with urllib.request.urlopen(f"{service.url}{fmt}/300/photo.jpg", timeout=30) as response:
                image = pyvips.Image.new_from_buffer(response.read(), "")
            assert image.width == 300 and image.get("vips-loader").startswith(loader)
    finally:
        service.stop()


def test_side_by_side_runs_each_node_from_its_own_checkout(tmp_path):
    """benchmarks/side_by_side.py: a node started in a revision's folder imports that revision (not the
    installed working tree), its built-in origins included."""
    from benchmarks.side_by_side import ROOT, checkout

    imported = "import edge, edge_builtin_origins; print(edge.__file__); print(edge_builtin_origins.__file__)"
    for revision, name in (("HEAD", "head"), (".", "working")):
        folder = tmp_path / name
        folder.mkdir()
        tree = (folder / "tree" if revision == "HEAD" else ROOT).resolve()
        files = subprocess.run([sys.executable, "-c", imported], cwd=checkout(revision, folder), check=True,
                               capture_output=True, text=True).stdout.split()
        assert [Path(file).resolve() for file in files] == [tree / "edge" / "__init__.py",
                                                              tree / "plugins" / "__init__.py"]
