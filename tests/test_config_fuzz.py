"""Random values for every key the config reads, in every table, on a config that is otherwise whole (every
origin type, an endpoint, the fleet and shared tier, fonts, named transformations): the file loads, or
`load_config` raises `ConfigError` (the message `edge serve` and `edge check-config` print, naming the
key); never another exception, which an operator would see as a traceback."""

from __future__ import annotations

import json
import math
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.config import load_config
from edge.errors import ConfigError
from edge.pluginmanager import load_plugins
from edge.settings import Secret
from tests.nodes import SAMPLES

EXAMPLES = 300
ROOT = Path(__file__).resolve().parent.parent
#: every key the node and the built-in origin types read (`<table>.<kind>("key"` in their source)
KEYS = sorted({key for source in [ROOT / "edge" / "config.py", *sorted((ROOT / "plugins").glob("*.py"))]
               for key in re.findall(r'\.(?:str|int|bool|duration|size|number|path|secret|str_list|float)\("([a-z_]+)"',
                                     source.read_text())})
TABLES = ["server", "cache", "limits", "defaults", "fleet", "shared_cache", "admin", "fonts",
          "named_transformations", "origins", "endpoints"]
S3_KEYS = {"bucket": "b", "region": "us-east-1", "endpoint_url": "http://127.0.0.1:9",
           "access_key_id": "AKIDEXAMPLE", "secret_access_key": "secret-example-key"}
BASE = {
    "server": {"port": 0, "access_log": False},
    "cache": {},
    "limits": {},
    "defaults": {},
    "fleet": {"peers": ["http://127.0.0.1:9"]},
    "shared_cache": dict(S3_KEYS),
    "admin": {"token": "a-long-random-admin-token"},
    "named_transformations": {"card": "w-100"},
    "origins": [
        {"name": "local", "type": "local", "root": str(SAMPLES)},
        {"name": "web", "type": "web", "base_url": "http://127.0.0.1:9/"},
        {"name": "s3", "type": "s3", **S3_KEYS},
        {"name": "backup", "type": "cloudinary_backup", "folder": "/res/demo/", **S3_KEYS},
    ],
    "endpoints": [{"id": "", "origins": ["local", "web", "s3"]},
                  {"id": "cld", "origins": ["backup"], "url_style": "cloudinary"}],
}


def _table_keys() -> dict[str, list[str]]:
    """The keys each table takes: those of the loaded base config's summary (`Config.describe`)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "edge.toml"
        path.write_text(toml(BASE))
        described = load_config(path, load_plugins(), environ={}).describe()
    keys = {table: sorted(content) for table, content in described.items() if isinstance(content, dict)}
    keys["origins"] = sorted({key for origin in described["origins"] for key in origin} | {"timeout", "headers"})
    keys["endpoints"] = sorted(described["endpoints"][0]) + ["watermark"]
    keys["fonts"] = ["sans", "DejaVuSans"]
    keys["named_transformations"] = ["card", "thumb"]
    return keys


scalars = st.one_of(
    st.integers(-2**63, 2**63 - 1), st.sampled_from([0, -1, 1, 2**31, 2**53 + 1, 10**18]),
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
    st.sampled_from(["", " ", "0", "-1s", "1x", "10QB", "1e309s", "nan", "inf", "5 s", "1ms", "100h", "1 GB",
                     "0.5", "true", "*", "/", "../..", "/etc/passwd", "\x00", "é", "http://", "https://[::1",
                     "${UNSET_VARIABLE}", "${HOME}", "w-100", "jpg", "text", "json", "debug", "cloudinary"]),
    st.text(max_size=20))
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.sampled_from(KEYS), scalars, max_size=2))


def toml_value(value) -> str:
    """`value` in TOML (JSON's forms of strings, numbers and arrays are TOML's, but for inf and nan)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(map(toml_value, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key} = {toml_value(item)}" for key, item in value.items()) + "}"
    return json.dumps(value)


def toml(config: dict) -> str:
    lines = []
    for table, content in config.items():
        if isinstance(content, list):
            for entry in content:
                lines += [f"[[{table}]]", *(f"{key} = {toml_value(value)}" for key, value in entry.items())]
        else:
            lines += [f"[{table}]", *(f"{key} = {toml_value(value)}" for key, value in content.items())]
    return "\n".join(lines) + "\n"


TABLE_KEYS = _table_keys()


@st.composite
def configs(draw) -> str:
    """The base with one to three keys set to random values: mostly keys of their table, else any key."""
    config = json.loads(json.dumps(BASE))
    for _ in range(draw(st.integers(1, 3))):
        table = draw(st.sampled_from(TABLES))
        key = draw(st.sampled_from(TABLE_KEYS.get(table) or KEYS) if draw(st.integers(0, 4)) else st.sampled_from(KEYS))
        value = draw(values)
        if table in ("origins", "endpoints"):
            entries = config[table]
            entries[draw(st.integers(0, len(entries) - 1))][key] = value
        else:
            config.setdefault(table, {})[key] = value
    return toml(config)


@pytest.fixture(autouse=True)
def _fuzzed_secrets_forgotten():
    """Every secret a config names is masked in every later log line of the process (`settings.redact`): a
    fuzzed admin token of `http://` had every URL in the logs of the tests after this one read `****127.0.0.1`
    (and a test of a log line failed). The values drawn here are forgotten once the test is done."""
    before = set(Secret._every)
    yield
    Secret._every.intersection_update(before)


def test_the_base_config_loads(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_text(toml(BASE))
    load_config(path, load_plugins(), environ={})
    assert len(KEYS) > 60, KEYS  # the source's keys were found


def test_any_value_of_any_key_loads_or_is_a_config_error(tmp_path):
    path = tmp_path / "edge.toml"
    outcomes = {"loaded": 0, "refused": 0}

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(text=configs())
    def one(text):
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            load_config(path, load_plugins(), environ={"HOME": "/root"})
        except ConfigError as error:
            assert str(error).strip() and "Traceback" not in str(error), text
            outcomes["refused"] += 1
        else:
            outcomes["loaded"] += 1

    one()
    assert outcomes["loaded"] and outcomes["refused"], outcomes
