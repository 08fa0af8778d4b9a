"""Configuration: typed validation, errors naming file/table/key, secrets, the embedded default."""

import dataclasses
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from edge.config import (
    CacheSettings,
    Defaults,
    Endpoint,
    FleetSettings,
    MAX_CONFIG_BYTES,
    Limits,
    ServerSettings,
    Placeholders,
    load_config,
)
from edge.errors import ConfigError
from edge.flight import wait_bound
from edge.pluginmanager import load_plugins
from edge.settings import REDACTED_MIN_CHARS, Secret, parse_duration, parse_size, redact, without_userinfo
from tests.nodes import SAMPLES, write_config
from tests.s3server import shared_cache_table

ORIGIN = f"""
[[origins]]
name = "samples"
type = "local"
root = "{SAMPLES}"
"""
ENDPOINT = """
[[endpoints]]
id = ""
origins = ["samples"]
"""


def load(tmp_path, text, environ=None):
    return load_config(write_config(tmp_path, text), load_plugins(), environ=environ or {})


def config_error(tmp_path, text, environ=None) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, environ)
    return str(caught.value)


def test_full_example_parses_into_typed_values(tmp_path):
    config = load(tmp_path, f"""
        [server]
        port = 9000
        workers = 3
        [cache]
        dir = "var/cache"
        output_size = "2GB"
        original_size = "512MiB"
        original_ttl = "1d"
        not_found_ttl = "90s"
        [defaults]
        quality = 70
        [limits]
        max_source_bytes = "10MB"
        [named_transformations]
        thumb = "w-200,h-200,c-at_max"
        pasted = "tr:w-300,bl-10"
        [admin]
        token = "${{TOKEN}}"
        {ORIGIN}
        [[endpoints]]
        id = "products"
        hosts = ["IMG.example.com", "cdn.example.com."]
        origins = ["samples"]
        """, environ={"TOKEN": "s3cret-admin"})
    assert (config.server.port, config.server.workers) == (9000, 3)
    assert config.cache.dir == (tmp_path / "var" / "cache").resolve()  # relative to the file
    assert (config.cache.output_size, config.cache.original_size) == (2 * 10**9, 512 * 2**20)
    assert (config.cache.original_ttl, config.cache.not_found_ttl) == (86400, 90)
    assert config.defaults.quality == 70 and config.limits.max_source_bytes == 10**7
    # as ImageKit's dashboard shows one, `tr:` first: it had stopped the config
    assert config.named_transformations == {"thumb": "w-200,h-200,c-at_max", "pasted": "w-300,bl-10"}
    assert config.admin_token.reveal() == "s3cret-admin"
    endpoint = config.endpoints[0]
    # the fully qualified form is the same host, as a `Host` header's is
    assert endpoint.hosts == ("img.example.com", "cdn.example.com") and endpoint.origins[0].name == "samples"


@pytest.mark.parametrize("timeout, seconds", [("2.5", 2.5), ('"2.5s"', 2.5), ('"250ms"', 0.25)])
def test_an_origins_timeout_is_a_number_or_a_duration(tmp_path, timeout, seconds):
    assert load(tmp_path, ORIGIN + f"timeout = {timeout}\n" + ENDPOINT).origins[0].settings.timeout == seconds


def test_the_transform_queue_timeout_is_part_of_what_flight_waiters_wait(tmp_path):
    """The node's longest answer: one origin's timeout, the render's wait for a thread and its run."""
    assert wait_bound(load(tmp_path, ORIGIN + ENDPOINT)) == 10 + 10 + 20
    config = load(tmp_path, '[server]\ntransform_queue_timeout = "2.5s"\n' + ORIGIN + ENDPOINT)
    assert (config.server.transform_queue_timeout, wait_bound(config)) == (2.5, 10 + 2.5 + 20)


def test_flight_waiters_wait_for_the_slowest_endpoints_whole_origin_chain_and_the_shared_tiers_lookup(tmp_path):
    """An endpoint's origins are tried one after the other: its chain's timeouts add up, the slowest endpoint's chain
    counts, and the fleet's shared tier is looked in first (a mutation taking the slowest origin alone, or leaving
    the shared tier out, survived)."""
    chains = (ORIGIN + 'timeout = "3s"\n' + ORIGIN.replace('"samples"', '"second"') + 'timeout = "4s"\n'
              + ORIGIN.replace('"samples"', '"third"') + 'timeout = "6s"\n'
              + ENDPOINT.replace('origins = ["samples"]', 'origins = ["samples", "second"]')
              + '[[endpoints]]\nid = "other"\norigins = ["third"]\n')
    assert wait_bound(load(tmp_path, chains)) == 3 + 4 + 10 + 20
    shared = shared_cache_table("http://127.0.0.1:9", "bucket", timeout="5s")
    assert wait_bound(load(tmp_path, shared + chains)) == 5 + 3 + 4 + 10 + 20


@pytest.mark.parametrize("text, expected", [
    ("[server]\nport = \"eighty\"\n" + ORIGIN + ENDPOINT, "[server] port: expected an integer, got a string"),
    ("[server]\nworkers = -1\n" + ORIGIN + ENDPOINT, "[server] workers: expected an integer from 0 to 256"),
    # the socket takes "" for every interface: a script's unset variable must not open the node to all
    ("[server]\nhost = \"\"\n" + ORIGIN + ENDPOINT, "[server] host: an empty host would listen on every interface"),
    ("[server]\nhost = \"[]\"\n" + ORIGIN + ENDPOINT, "[server] host: an empty host would listen on every interface"),
    # `dir = "${CACHE_DIR}"` with the variable empty filled the config's own folder with the cache
    ("[cache]\ndir = \" \"\n" + ORIGIN + ENDPOINT, "[cache] dir: an empty path (leave the key out for its default)"),
    ("[server]\nmax_connections = 0\n" + ORIGIN + ENDPOINT, "[server] max_connections: expected an integer at least 1"),
    # under the 1 s heartbeat, a healthy worker's stacks were written to stderr about once a second
    ("[server]\nworker_timeout = \"500ms\"\n" + ORIGIN + ENDPOINT,
     "[server] worker_timeout: expected at least 2s: a worker's heartbeat comes every second"),
    ("[named_transformations]\n\"a:b\" = \"w-10\"\n" + ORIGIN + ENDPOINT,
     "[named_transformations] a:b: a name is letters, digits, '.', '_', '@' and '-', as URLs write it (n-<name>)"),
    ("[cache]\ndir = \"c\"\noutput_size = \"lots\"\n" + ORIGIN + ENDPOINT, "[cache] output_size: expected a size"),
    ("[cache]\ndir = \"c\"\noutput_size = -5\n" + ORIGIN + ENDPOINT,
     "[cache] output_size: expected a size of 0 or more, got -5"),  # had been "expected must not be negative"
    ("[cache]\ndir = \"c\"\nnot_found_ttl = \"soon\"\n" + ORIGIN + ENDPOINT, "[cache] not_found_ttl: expected a duration"),
    ("[server]\nprot = 1\n" + ORIGIN + ENDPOINT, "[server] prot: unknown key"),
    ("[server]\nheader_timeout = 0\n" + ORIGIN + ENDPOINT, "[server] header_timeout: expected a duration above zero"),
    ("[server]\nsend_timeout = \"0s\"\n" + ORIGIN + ENDPOINT, "[server] send_timeout: expected a duration above zero"),
    ("[server]\ntransform_queue_timeout = 0\n" + ORIGIN + ENDPOINT,
     "[server] transform_queue_timeout: expected a duration above zero"),
    ("[server]\nmax_header_size = 100\n" + ORIGIN + ENDPOINT, "[server] max_header_size: expected at least 1KiB"),
    ("[limits]\nrender_timeout = 0\n" + ORIGIN + ENDPOINT,
     "[limits] render_timeout: must be more than 0s: every render would be stopped at once"),
    ("[server]\nport = 9000\nmetrics_port = 9000\n" + ORIGIN + ENDPOINT,
     "[server] metrics_port: expected another port than port (9000)"),  # `serve` could not bind both
    ('[server]\nmetrics_host = "0.0.0.0"\n' + ORIGIN + ENDPOINT, "[server] metrics_host: needs metrics_port"),
    ('[server]\nmetrics_port = 9100\nmetrics_host = ""\n' + ORIGIN + ENDPOINT,
     "[server] metrics_host: an empty host would listen on every interface"),
    (ORIGIN + 'timeout = "0s"\n' + ENDPOINT, "'samples'] timeout: expected a duration above zero"),
    ("[server]\nfetch_memory = \"10MB\"\n" + ORIGIN + ENDPOINT,
     "[server] fetch_memory: expected at least [limits] max_source_bytes"),
    ("[named_transformations]\nthumb = \"w-abc\"\n" + ORIGIN + ENDPOINT,
     "[named_transformations] thumb: invalid transformation: w-abc"),
    (ORIGIN.replace('type = "local"', 'type = "ftp"') + ENDPOINT, "origins[0] 'samples'] type: unknown origin type 'ftp'"),
    (ORIGIN.replace(f'root = "{SAMPLES}"', 'root = "nowhere"') + ENDPOINT, "root: expected an existing folder"),
    (ORIGIN + ORIGIN + ENDPOINT, "name: another origin is already named 'samples'"),
    (ORIGIN + ENDPOINT.replace('["samples"]', '["missing"]'), "[endpoints[0]] origins: no origin is named 'missing'"),
    (ORIGIN + ENDPOINT.replace('id = ""', 'id = "a/b"'), "[endpoints[0]] id: expected letters, digits and hyphens"),
    (ORIGIN, "edge.toml: endpoints: expected at least one [[endpoints]] table"),
    (ORIGIN + ENDPOINT + '[admin]\ntoken = "${NOT_SET}"\n', "[admin] token: environment variable NOT_SET is not set"),
    ("[server\n", "not valid TOML"),
    (ORIGIN + ENDPOINT + "signed_only = true\n", "[endpoints[0]] signed_only: needs private_key"),
    (ORIGIN + ENDPOINT + 'previous_private_keys = ["old"]\n', "[endpoints[0]] previous_private_keys: needs private_key"),
    (ORIGIN + ENDPOINT + 'private_key = ""\n', "[endpoints[0]] private_key: is empty"),
    # blank: as guessable as none (`private_key = "${KEY}"` with KEY a space)
    (ORIGIN + ENDPOINT + 'private_key = " \\t"\n', "[endpoints[0]] private_key: is empty"),
    (ORIGIN + ENDPOINT + 'private_key = "k"\nprevious_private_keys = [" "]\n',
     "[endpoints[0]] previous_private_keys: contains an empty key"),
    (ORIGIN + ENDPOINT + 'hosts = ["a.example", "A.example."]\n', "[endpoints[0]] hosts: 'a.example' is listed twice"),
    (ORIGIN + ENDPOINT + 'private_key = "k"\nsigned_only = true\nnamed_only = true\n',
     "[endpoints[0]] named_only: cannot be combined with signed_only"),
    (ORIGIN + ENDPOINT + 'private_key = "${NOT_SET}"\n', "[endpoints[0]] private_key: environment variable NOT_SET is not set"),
    (ORIGIN + ENDPOINT + 'url_style = "cloudinary"\n', "[endpoints[0]] url_style: needs an origin with folder = \"/res/<cloud>/\" (a Cloudinary backup bucket): "
     "its cloud name is the first segment of the URLs served"),
])
def test_errors_name_file_table_and_key(tmp_path, text, expected):
    message = config_error(tmp_path, text)
    assert message.startswith(str(tmp_path / "edge.toml"))
    assert expected in message


@pytest.mark.parametrize("text, expected", [
    # each had been reported as what the typo left missing: no [[endpoints]], no origin 'samples', no `root`
    (ORIGIN + ENDPOINT.replace("[[endpoints]]", "[[endpoint]]"), "edge.toml: endpoint: unknown key (did you mean "
                                                                 "`endpoints`?)"),
    (ORIGIN.replace("[[origins]]", "[[origin]]") + ENDPOINT,
     "edge.toml: origin: unknown key (did you mean `origins`?)"),
    (ORIGIN.replace("root =", "rooot =") + ENDPOINT,
     "edge.toml: [origins[0] 'samples'] rooot: unknown key (did you mean `root`?)"),
    (ORIGIN + ENDPOINT + "[server]\nprot = 1\n", "edge.toml: [server] prot: unknown key (did you mean `port`?)"),
    (ORIGIN + ENDPOINT + "[server]\nzzz = 1\n", "edge.toml: [server] zzz: unknown key"),  # nothing like it
])
def test_a_misspelt_table_or_key_is_named_as_the_unknown_key_it_is(tmp_path, text, expected):
    assert config_error(tmp_path, text).endswith(expected)


@pytest.mark.parametrize("key, past, bound, message", [
    ("[server] port", 65536, 65535, "expected an integer from 0 to 65535, got 65536"),
    ("[defaults] quality", 0, 1, "expected an integer from 1 to 100, got 0"),
    ("[defaults] quality", 101, 100, "expected an integer from 1 to 100, got 101"),
    ("[limits] max_output_side", 65501, 65500, "expected an integer from 1 to 65500, got 65501"),
    ("[cache] not_found_ttl", -1, 0, "expected a duration of 0 or more, got -1"),
    ("[server] shutdown_grace", -0.5, 0, "expected a duration of 0 or more, got -0.5"),
    ("[limits] max_cost", 0.5, 1, "expected a number of at least 1, got 0.5"),
    ("[server] max_header_size", 1023, 1024, "expected at least 1KiB (a request line and a Host header)"),
    ("[server] worker_timeout", 1.5, 2, "expected at least 2s: a worker's heartbeat comes every second"),
])
def test_a_value_just_past_its_bound_is_refused_and_the_bound_itself_taken(tmp_path, key, past, bound, message):
    """A port of 65536 failed only when the socket was made, a side over 65500 at a render's encode; libvips
    ignores a quality of 0 (a GLib warning each encode), and a negative duration meant nothing: each is refused
    where the file is read."""
    table, name = key.split()
    text = f"{table}\n{name} = {{}}\n" + ORIGIN + ENDPOINT
    assert config_error(tmp_path, text.format(past)) == f"{tmp_path / 'edge.toml'}: {key}: {message}"
    assert getattr(getattr(load(tmp_path, text.format(bound)), table.strip("[]")), name) == bound


@pytest.mark.parametrize("text, message", [
    ('[server]\nlog_level = "verbose"\n' + ORIGIN + ENDPOINT,
     "[server] log_level: expected one of 'debug', 'info', 'warning', 'error', got 'verbose'"),
    ('[server]\nlog_format = "JSON"\n' + ORIGIN + ENDPOINT,
     "[server] log_format: expected one of 'text', 'json', got 'JSON'"),
    # read as "imagekit" by the router, whatever the operator meant
    (ORIGIN + ENDPOINT + 'url_style = "Cloudinary"\n',
     "[endpoints[0]] url_style: expected one of 'imagekit', 'cloudinary', got 'Cloudinary'"),
])
def test_a_value_outside_a_keys_choices_is_refused_naming_them(tmp_path, text, message):
    assert config_error(tmp_path, text) == f"{tmp_path / 'edge.toml'}: {message}"


def test_a_secret_shows_as_stars_in_the_configs_repr(tmp_path):
    """A config or an endpoint quoted in a message or a debugger's locals shows no credential."""
    config = load(tmp_path, ORIGIN + ENDPOINT + 'private_key = "${KEY}"\nprevious_private_keys = ["${OLD}"]\n'
                  '[admin]\ntoken = "${TOKEN}"\n',
                  environ={"KEY": "private-key-value", "OLD": "older-key-value", "TOKEN": "admin-token-value"})
    endpoint = config.endpoints[0]
    assert (repr(config.admin_token), repr(endpoint.private_key)) == ("Secret('****')", "Secret('****')")
    for value in ("private-key-value", "older-key-value", "admin-token-value"):
        assert value not in repr(config)  # the endpoints' with it


@pytest.fixture
def forget_secrets():
    """Every secret made is masked in every later log line of the process (`settings.redact`): those a test makes
    are forgotten once it is done."""
    before = set(Secret._every)
    yield
    Secret._every.intersection_update(before)


def test_a_secret_of_the_shortest_masked_length_is_masked_and_one_character_less_is_not(forget_secrets):
    six, five = "Qx7vK2", "Wm4pZ"
    assert len(six) == REDACTED_MIN_CHARS and len(five) == REDACTED_MIN_CHARS - 1
    for value in (six, five):
        Secret(value)
    assert redact(f"a {six} b {five} c") == f"a **** b {five} c"


def test_a_secret_holding_another_is_masked_whole(forget_secrets):
    """The longest first: the shorter one replaced first left the rest of the longer one in clear."""
    for value in ("Kp9-token", "Kp9-token-Zr8-rest"):
        Secret(value)
    assert redact("sent Kp9-token-Zr8-rest and Kp9-token") == "sent **** and ****"


def test_an_environment_value_of_the_shortest_masked_length_is_named_in_an_error(tmp_path):
    message = config_error(tmp_path, '[server]\nlog_level = "${LEVEL}"\n' + ORIGIN + ENDPOINT,
                           environ={"LEVEL": "Qx7vK2"})
    assert message.endswith("[server] log_level: expected one of 'debug', 'info', 'warning', 'error', got '${LEVEL}'")


def test_an_environment_value_holding_another_is_named_whole_in_an_error(tmp_path):
    """The longest value first: the shorter one named first wrote `${SHORT}-Zr8-rest`."""
    message = config_error(tmp_path, '[server]\nhost = "${SHORT}"\nlog_level = "${LONG}"\n' + ORIGIN + ENDPOINT,
                           environ={"SHORT": "Kp9-token", "LONG": "Kp9-token-Zr8-rest"})
    assert message.endswith("[server] log_level: expected one of 'debug', 'info', 'warning', 'error', got '${LONG}'")


@pytest.mark.parametrize("written, size", [
    (123, 123), ("123", 123), ("7B", 7), ("1KB", 1000), ("1kb", 1000), ("1KiB", 1024), ("1.5MB", 1_500_000),
    ("2MiB", 2 * 2**20), ("3GB", 3 * 10**9), ("3GiB", 3 * 2**30), ("1TB", 10**12), ("1TiB", 2**40),
    (" 4 MB ", 4 * 10**6),
])
def test_a_size_is_read_in_decimal_or_binary_units(written, size):
    assert parse_size(written) == size


@pytest.mark.parametrize("written", [1.5, 0.5, "1.5", "0.5 B"])
def test_a_size_with_a_fraction_of_a_byte_is_refused_naming_its_key(tmp_path, written):
    """`output_size = 1.5` (a TOML float) had been read as 1 byte, `0.5` as 0: no output tier, without a word."""
    value = written if isinstance(written, float) else f'"{written}"'
    message = config_error(tmp_path, f"[cache]\noutput_size = {value}\n" + ORIGIN + ENDPOINT)
    assert message.endswith(f'[cache] output_size: expected a whole number of bytes or a size such as "500MB", "2GB" '
                            f'or "1GiB", got {written!r}')
    assert parse_size(2e9) == 2 * 10**9 and parse_size("40 MB") == 40 * 10**6  # whole, or with a unit: read


@pytest.mark.parametrize("written, seconds", [
    (90, 90.0), (2.5, 2.5), ("90", 90.0), ("250ms", 0.25), ("45s", 45.0), ("5m", 300.0), ("1.5m", 90.0),
    ("2h", 7200.0), ("1d", 86400.0), (" 3 s ", 3.0),
])
def test_a_duration_is_read_in_its_units(written, seconds):
    assert parse_duration(written) == seconds


def test_embedded_default_serves_the_samples():
    config = load_config(None, load_plugins())
    assert config.source == "<embedded default>"
    assert config.endpoints[0].id == "" and config.origins[0].root == SAMPLES


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True,
                          timeout=60, env=env)


@pytest.mark.parametrize("command, table", [("serve", '[cache]\ndir = "/proc/${SECRET}"'),
                                            ("check-config", '[cache]\ndir = "/proc/${SECRET}"'),
                                            ("check-config", '[server]\nhost = "${SECRET}"')])
def test_a_value_from_the_environment_is_named_not_quoted_at_start_or_in_check_config(tmp_path, command, table):
    """The start-up checks' errors (a cache folder that cannot be made, an address that cannot be listened on)
    and check-config's summary quoted a secret given to the wrong key in clear, where config errors named it."""
    path = write_config(tmp_path, ORIGIN + ENDPOINT + table)
    result = run_cli(command, "--config", str(path), env={"PATH": "/usr/bin:/bin", "SECRET": "SuperSecretValue9x9"})
    assert "SuperSecretValue9x9" not in result.stdout + result.stderr
    assert "${SECRET}" in result.stdout + result.stderr, result.stdout + result.stderr
    assert result.returncode == (0 if "host" in table else 1), result.stderr


def test_check_config_masks_secrets(tmp_path):
    path = write_config(tmp_path, ORIGIN + ENDPOINT + '[admin]\ntoken = "${TOKEN}"\n')
    result = run_cli("check-config", "--config", str(path),
                     env={"PATH": "/usr/bin:/bin", "TOKEN": "admin-token-value"})
    assert result.returncode == 0, result.stderr
    assert "admin-token-value" not in result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["admin"]["token"] == "****"
    assert summary["origins"][0] == {"name": "samples", "type": "local", "timeout": 10.0, "root": str(SAMPLES)}


@pytest.mark.parametrize("table", ['[server]\nheader_timeout = "${SECRET}"',
                                   '[fleet]\npeers = ["http://10.0.0.1:8080", "${SECRET}"]',
                                   # in a table's name, and quoted by another table's error
                                   '[[origins]]\nname = "${SECRET}"\ntype = "nosuchtype"',
                                   '[[endpoints]]\nid = "${SECRET}"\nhosts = ["a.example"]\norigins = ["samples"]\n'
                                   '[[endpoints]]\nid = "other"\nhosts = ["a.example"]\norigins = ["samples"]'])
def test_a_value_from_the_environment_is_named_not_quoted_in_an_error(tmp_path, table):
    """A secret given to a key that takes none, by mistake, was quoted whole in the error that `edge serve` and
    `edge check-config` print; the error writes its `${NAME}`."""
    path = write_config(tmp_path, ORIGIN + ENDPOINT + table)
    result = run_cli("check-config", "--config", str(path),
                     env={"PATH": "/usr/bin:/bin", "SECRET": "SuperSecretValue9x9"})
    assert result.returncode == 1 and "SuperSecretValue9x9" not in result.stdout + result.stderr
    assert "'${SECRET}'" in result.stderr, result.stderr


def test_a_config_that_is_no_regular_file_or_too_large_is_refused_at_once(tmp_path):
    """A FIFO or a device held the supervisor (at start, and in a reload) until a writer came, and `/dev/zero`
    was read until memory ran out."""
    fifo = tmp_path / "edge.toml"
    os.mkfifo(fifo)
    for path, message in ((fifo, "not a regular file"), (Path("/dev/zero"), "not a regular file")):
        with pytest.raises(ConfigError) as error:
            load_config(path, load_plugins())
        assert str(error.value) == f"{path}: {message}"
    large = tmp_path / "large.toml"
    large.write_text("# " + "x" * MAX_CONFIG_BYTES + "\n" + ORIGIN + ENDPOINT)
    with pytest.raises(ConfigError) as error:
        load_config(large, load_plugins())
    assert str(error.value) == f"{large}: larger than {MAX_CONFIG_BYTES} bytes"
    body = (ORIGIN + ENDPOINT).encode()
    largest = tmp_path / "largest.toml"  # the limit itself is taken
    largest.write_bytes(body + b"#" * (MAX_CONFIG_BYTES - len(body)))
    assert load_config(largest, load_plugins()).origins[0].root == SAMPLES


def test_check_config_exits_1_naming_the_problem(tmp_path):
    path = write_config(tmp_path, "[server]\nport = 99999\n" + ORIGIN + ENDPOINT)
    result = run_cli("check-config", "--config", str(path))
    assert result.returncode == 1
    assert "[server] port: expected an integer from 0 to 65535, got 99999" in result.stderr


@pytest.mark.parametrize("url, shown", [
    ("http://user:pw@img.example.com/a?apikey=SECRET", "http://…@img.example.com/a?…"),
    ("http://user:pa?ss@host/x?k=1", "http://…@host/x?…"),  # a `?` in the password: still user information
    ("http://user:pa#ss@host/x", "http://…@host/x"),
    ("https://host/a#token", "https://host/a?…"),
    ("user:pw@host/a@b", "…@b"),
    ("http://host/a@b", "http://host/a@b"),  # an `@` in the path is no user information
])
def test_a_url_quoted_in_a_message_shows_no_user_information_nor_query(url, shown):
    assert without_userinfo(url) == shown


@pytest.mark.parametrize("table, message", [
    ('[cache]\ndir = "cache\\u0000x"', "[cache] dir: 'cache\\x00x' holds a NUL character, which no path can"),
    ('[fleet]\nself_url = "https://[::1"', "[fleet] self_url: expected a node's base URL such as http://10.0.0.11:8080, "
                                           "got 'https://[::1'"),
    ('[fleet]\npeers = ["http://user:pw@[::1:8080"]', "[fleet] peers: expected a node's base URL such as "
                                                      "http://10.0.0.11:8080, got 'http://…@[::1:8080'"),
    # a port out of range had been echoed whole, the password with it
    ('[fleet]\npeers = ["http://user:pw@img:99999"]', "[fleet] peers: expected a node's base URL such as "
                                                      "http://10.0.0.11:8080, got 'http://…@img:99999'"),
    ('[fleet]\npeers = ["http://img:8080/?token=SECRET"]', "[fleet] peers: expected a node's base URL such as "
                                                          "http://10.0.0.11:8080, got 'http://img:8080/?…'"),
])
def test_a_value_the_os_or_urlsplit_refuses_is_an_error_naming_its_key(tmp_path, table, message):
    """A NUL in a path (`ValueError: embedded null byte`) and an IPv6 host without its `]` (`ValueError:
    Invalid IPv6 URL`) had reached the operator as tracebacks (found by tests/test_config_fuzz.py)."""
    with pytest.raises(ConfigError) as error:
        load(tmp_path, ORIGIN + ENDPOINT + table)
    assert str(error.value).endswith(message), str(error.value)


@pytest.mark.parametrize("origin, message", [
    ('type = "web"\nbase_url = "http://[::1/"', "base_url: expected a URL, got 'http://[::1/' (Invalid IPv6 URL)"),
    ('type = "web"\nbase_url = "http://img:99999/"', "base_url: expected a URL, got 'http://img:99999/' "
                                                      "(Port out of range 0-65535)"),
    ('type = "s3"\nbucket = "b"\nendpoint_url = "http://key:secret@[::1"',
     "endpoint_url: expected a URL, got 'http://…@[::1' (Invalid IPv6 URL)"),
])
def test_an_origin_url_urlsplit_refuses_is_an_error_naming_its_key(tmp_path, origin, message):
    with pytest.raises(ConfigError) as error:
        load(tmp_path, f'[[origins]]\nname = "o"\n{origin}\n[[endpoints]]\nid = ""\norigins = ["o"]\n')
    assert str(error.value).endswith(message) and "secret" not in str(error.value), str(error.value)


ROOT = Path(__file__).resolve().parent.parent
CONFIGURATION_MD = (ROOT / "docs" / "configuration.md").read_text()
#: docs/configuration.md's tables whose keys are fields of a settings class, and that class
DOCUMENTED_TABLES = {"server": ServerSettings, "cache": CacheSettings, "defaults": Defaults, "limits": Limits,
                     "fleet": FleetSettings}


def documented_keys(table: str) -> dict[str, str]:
    """`key` → the default column (`"10s"`, `none`, …) of one `### `[table]`` section's table."""
    section = re.search(rf"^### `\[{re.escape(table)}\]`\n(.*?)(?=^### |\Z)", CONFIGURATION_MD, re.S | re.M).group(1)
    return dict(re.findall(r"^\| `(\w+)` \| ([^|]*?) \|", section, re.M))


@pytest.mark.parametrize("table", DOCUMENTED_TABLES)
def test_every_key_docs_configuration_md_names_exists_with_its_documented_default(tmp_path, table):
    """Operators copy keys and defaults from docs/configuration.md: each documented key is accepted, and
    written with its documented default it loads as the key left out does; each field is documented."""
    keys = documented_keys(table)
    assert set(keys) == {f.name for f in dataclasses.fields(DOCUMENTED_TABLES[table])}
    cache_dir = '[cache]\ndir = "cache"\n'
    unset = getattr(load(tmp_path, cache_dir + ORIGIN + ENDPOINT), table)
    for key, default in keys.items():
        if default == "none":
            assert getattr(unset, key) is None, key
        elif default.startswith("`"):
            written = f"[{table}]\n{key} = {default.strip('`')}\n"
            text = written + 'dir = "cache"\n' if table == "cache" else cache_dir + written
            assert getattr(getattr(load(tmp_path, text + ORIGIN + ENDPOINT), table), key) == getattr(unset, key), key


def test_every_endpoint_key_docs_configuration_md_names_exists_with_its_documented_default(tmp_path):
    keys = documented_keys("[endpoints]")
    assert set(keys) == {f.name for f in dataclasses.fields(Endpoint)}
    endpoint = '[cache]\ndir = "cache"\n' + ORIGIN + '[[endpoints]]\norigins = ["samples"]\n'
    unset = load(tmp_path, endpoint).endpoints[0]
    for key, default in keys.items():
        if default == "none":
            assert not getattr(unset, key), key  # None, or no layers for `watermark`
        elif default.startswith("`"):
            written = load(tmp_path, endpoint + f"{key} = {default.strip('`')}\n").endpoints[0]
            assert getattr(written, key) == getattr(unset, key), key


def doc_toml_blocks() -> list[tuple[str, str, dict[str, dict]]]:
    """Every ```toml block of the README, docs/ and contrib/'s READMEs, named by file and line, with the
    origins the file's earlier blocks define (a later block may add to them: "Add … a second origin")."""
    blocks = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted(ROOT.glob("contrib/*/README.md"))]:
        text, earlier = path.read_text(), {}
        for match in re.finditer(r"```toml\n(.*?)```", text, re.S):
            name = f"{path.relative_to(ROOT)}:{text[:match.start()].count(chr(10)) + 1}"
            blocks.append((name, match.group(1), dict(earlier)))
            earlier.update({o["name"]: o for o in tomllib.loads(match.group(1)).get("origins", [])})
    return blocks


@pytest.mark.parametrize("block, earlier", [(text, earlier) for _, text, earlier in doc_toml_blocks()],
                         ids=[name for name, _, _ in doc_toml_blocks()])
def test_every_toml_block_of_the_docs_loads(tmp_path, block, earlier):
    """A block showing part of a config loads once completed the least way: a cache folder, an endpoint
    over its origins, and for each name an endpoint lists that the block does not define, the origin of
    that name an earlier block of the file defines, else a `local` one. Secrets are placeholders, as
    `edge check-config --no-env` makes them."""
    data = tomllib.loads(block)
    if "project" in data:
        pytest.skip("a pyproject.toml table, not a node's config")
    plugins = load_plugins()
    types = {origin["type"] for origin in data.get("origins", [])}
    if not types <= set(plugins.type_names()):
        pytest.skip(f"origin types of a plugin not installed: {sorted(types - set(plugins.type_names()))}")
    names = [origin["name"] for origin in data.get("origins", [])]
    text = ("" if "cache" in data else '[cache]\ndir = "cache"\n') + block
    if "endpoints" not in data:
        text += ORIGIN + ENDPOINT if not names else f'\n[[endpoints]]\nid = ""\norigins = {json.dumps(names)}\n'
    for name in {n for endpoint in data.get("endpoints", []) for n in endpoint["origins"]} - set(names):
        origin = earlier.get(name, {"name": name, "type": "local", "root": str(SAMPLES)})
        text += "\n[[origins]]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in origin.items())
    config = load_config(write_config(tmp_path, text), plugins, environ=Placeholders())
    assert config.origins and config.endpoints
