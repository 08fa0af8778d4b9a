"""A third-party origin type, installed as an operator would install it (pip), found by `edge serve`
through its `edge.plugins` entry point alone — nothing registers it by hand."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
import pyvips

from tests.assets import centre_colour, colour, same_colour, solid
from tests.nodes import NodeProcess, write_config

EXAMPLE_PLUGIN = Path(__file__).resolve().parent / "example_plugin"
SHOE = solid(64, 48, colour(7), "png")
DAMAGED = solid(40, 40, colour(8), "png")


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """`pip install` of tests/example_plugin into a folder of its own (the test venv stays as it is)."""
    source = tmp_path_factory.mktemp("source") / "example_plugin"
    shutil.copytree(EXAMPLE_PLUGIN, source)  # building writes into the source tree
    site = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                           str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return site


@pytest.fixture
def config(tmp_path) -> Path:
    archive = tmp_path / "originals.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as writer:
        writer.writestr("products/shoe.png", SHOE)
        writer.writestr("damaged.png", DAMAGED)
    data = archive.read_bytes()
    at = data.index(DAMAGED) + 100
    archive.write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:])  # the CRC no longer matches
    return write_config(tmp_path, """
        [[origins]]
        name = "archive"
        type = "zip"
        archive = "originals.zip"

        [[endpoints]]
        id = ""
        origins = ["archive"]
        """)


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_the_installed_plugin_serves_through_its_entry_point(plugin_site, config):
    node = NodeProcess(config, env={"PYTHONPATH": str(plugin_site)})
    try:
        status, headers, body = get(f"{node.url}/tr:w-32/products/shoe.png")
        assert (status, headers["Content-Type"]) == (200, "image/png")
        image = pyvips.Image.new_from_buffer(body, "")
        assert (image.width, image.height) == (32, 24)
        assert same_colour(centre_colour(image), colour(7))

        assert get(f"{node.url}/products/missing.png")[0] == 404
        status, headers, _ = get(f"{node.url}/damaged.png")
        assert (status, headers["X-Edge-Error"]) == (502, "archive: bad_response")
    finally:
        assert node.stop() == 0


def test_without_the_package_the_type_is_unknown(plugin_site, config):
    def check(env: dict[str, str]) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "edge", "check-config", "--config", str(config)],
                              capture_output=True, text=True, timeout=60, env=env)

    without = check({k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert without.returncode == 1
    assert "unknown origin type 'zip'; installed types: cloudinary_backup, local, s3, web" in without.stderr
    assert check({**os.environ, "PYTHONPATH": str(plugin_site)}).returncode == 0


def test_the_walk_through_quotes_the_working_plugin():
    """Every Python excerpt in docs/writing-an-origin-plugin.md is a verbatim part of the example plugin."""
    doc = (EXAMPLE_PLUGIN.parent.parent / "docs" / "writing-an-origin-plugin.md").read_text()
    source = (EXAMPLE_PLUGIN / "edge_zip_origin" / "__init__.py").read_text()
    excerpts = re.findall(r"```python\n(.*?)```", doc, re.S)
    assert len(excerpts) >= 8
    for excerpt in excerpts:
        assert excerpt in source, excerpt
