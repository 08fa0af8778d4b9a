"""Every worked example in conf/ is a valid config (with its ${ENV} names set)."""

import re
from pathlib import Path

import pytest

from edge.config import load_config
from edge.pluginmanager import load_plugins

CONF = Path(__file__).resolve().parent.parent / "conf"


@pytest.mark.parametrize("example", sorted(CONF.glob("*.toml")), ids=lambda p: p.name)
def test_example_config_loads(example):
    names = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", example.read_text()))
    config = load_config(example, load_plugins(), environ={name: f"value-of-{name}" for name in names})
    assert config.origins and config.endpoints
    assert "value-of-" not in str(config.describe())  # every secret masked


def test_one_example_per_built_in_origin_type():
    types = {re.search(r'^type = "(\w+)"', text, re.M).group(1) for text in
             (p.read_text() for p in CONF.glob("*.toml"))}
    assert {"local", "web", "s3", "cloudinary_backup"} <= types
