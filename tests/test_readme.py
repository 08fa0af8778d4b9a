"""The README's "Running it for real", run as written on a fresh clone of this repository, in a
virtualenv of its own (the dependencies and setuptools come from this checkout's environment, so
only the node itself is built and installed, without a download). One change: `edge serve` gets `--port 0`, since port 8080 may be
taken on a shared machine."""

import importlib.util
import os
import re
import shlex
import subprocess
import sys
import venv
from pathlib import Path
from urllib.request import urlopen

import pytest

from tests.nodes import NodeProcess

ROOT = Path(__file__).resolve().parent.parent
SECRETS = {"PRODUCT_IMAGES_KEY_ID": "AKIAEXAMPLE", "PRODUCT_IMAGES_SECRET": "example-secret"}


def readme_commands() -> list[list[str]]:
    section = ROOT.joinpath("README.md").read_text().split("## Running it for real", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"\n\n((?:    .*\n)+)", section).group(1)
    return [shlex.split(line.strip(), comments=True) for line in block.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing to clone")
    tmp = tmp_path_factory.mktemp("readme")
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(tmp / "edge")], check=True, timeout=120)
    venv.create(tmp / "venv", with_pip=True)
    # the dependencies this checkout already has, behind the new virtualenv's own packages
    site = next((tmp / "venv" / "lib").glob("python3*/site-packages"))
    site.joinpath("dependencies.pth").write_text("\n".join(p for p in sys.path if p.endswith("site-packages")))
    environ = {**os.environ, "PATH": f"{tmp / 'venv' / 'bin'}{os.pathsep}{os.environ['PATH']}", **SECRETS,
               "PIP_NO_BUILD_ISOLATION": "1"}  # build with the setuptools at hand: no download
    environ.pop("EDGE_CONFIG", None)
    environ.pop("VIRTUAL_ENV", None)
    return tmp / "edge", environ


def test_running_it_for_real(clone):
    checkout, environ = clone
    commands = readme_commands()
    assert [c[:2] for c in commands] == [["pip", "install"], ["edge", "check-config"], ["edge", "check-config"],
                                         ["edge", "serve"]]
    *setup, serve = commands
    for command in setup:
        result = subprocess.run(command, cwd=checkout, env=environ, capture_output=True, text=True, timeout=600)
        if command[0] == "pip" and result.returncode != 0 and "No matching distribution" in result.stderr:
            pytest.skip("pip cannot reach a package index for the build dependencies")
        assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-2000:])
    installed = subprocess.run(["python", "-c", "import edge; print(edge.__file__)"], cwd="/", env=environ,
                               capture_output=True, text=True, timeout=60)
    assert installed.stdout.startswith(str(checkout.parent / "venv")), installed  # not this checkout's edge

    node = NodeProcess(None, *serve[2:], edge=[str(checkout.parent / "venv" / "bin" / "edge")], cwd=checkout,
                       env=environ)
    try:
        with urlopen(node.url + "/_edge/ready", timeout=30) as ready:
            assert ready.status == 200
        assert node.wait_for_log(r"with (\d+) worker").group(1) == "4"
    finally:
        assert node.stop() == 0


def test_docs_transformations_md_is_what_its_generator_writes(tmp_path, monkeypatch):
    """docs/transformations.md is written by scripts/make_transformation_docs.py ("edit the script, not this
    file"): its text must be the script's, or the next regeneration undoes an edit made to the Markdown
    alone (three had been). The example rows are left out: their sizes are the encoder's at hand."""
    spec = importlib.util.spec_from_file_location("make_transformation_docs",
                                                  ROOT / "scripts" / "make_transformation_docs.py")
    generator = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, generator)  # for its dataclasses
    spec.loader.exec_module(generator)
    monkeypatch.setattr(generator, "PICTURES", tmp_path)  # the pictures it renders for the rows
    written = generator.HEADER + "\n" + "\n".join(generator.section_markdown(s) for s in generator.SECTIONS)

    def text(markdown: str) -> list[str]:
        return [line for line in markdown.splitlines() if not line.startswith("| `/")]

    assert text(written) == text(ROOT.joinpath("docs", "transformations.md").read_text())
