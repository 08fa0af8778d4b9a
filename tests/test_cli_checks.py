"""The command line an operator meets first: `--version`, `check-config --no-env` and its checks of what
`serve` would trip on, `EDGE_CONFIG`, routing mistakes as config errors, and `serve` failing to start
in one line (over the real `edge` command)."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import pyvips
from tornado.httpclient import AsyncHTTPClient

import edge
from edge import checks
from edge.config import load_config
from edge.cores import usable_cores
from edge.errors import ConfigError
from edge.pluginmanager import load_plugins
from edge.testing import image_size, running_node
from tests.nodes import NodeProcess, local_config, until, web_config, write_config
from tests.scrape import samples, scrape_when

CONF = Path(__file__).resolve().parent.parent / "conf"
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def edge_command(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
                 timeout: float = 60) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "EDGE_CONFIG"}
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True,
                          env={**environ, **(env or {})}, cwd=cwd, timeout=timeout)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("edge: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_version():
    result = edge_command("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"edge {edge.__version__}"


@pytest.mark.parametrize("command", [("plugins", "--json"), ("plugins",), ("check-config",)])
def test_a_reader_of_stdout_that_went_away_is_no_traceback(command):
    """`edge plugins --json | head`: a reader that stopped before the command wrote (here: gone before it
    started, so that every write fails) ends the command quietly, as other command-line tools end."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        environ = {k: v for k, v in os.environ.items() if k != "EDGE_CONFIG"}
        result = subprocess.run([sys.executable, "-m", "edge", *command], stdout=writer, stderr=subprocess.PIPE,
                                text=True, env=environ, timeout=60)
    finally:
        os.close(writer)
    assert (result.returncode, result.stderr) == (1, "")


@pytest.mark.parametrize("example", sorted(CONF.glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_config_passes_check_config_without_its_secrets(example):
    names = set(ENV_REF.findall(example.read_text()))
    # even with the variables set to something else in the shell, --no-env does not read them
    result = edge_command("check-config", "--no-env", "--config", str(example),
                          env={name: "from-the-shell" for name in names})
    assert result.returncode == 0, result.stderr
    assert "from-the-shell" not in result.stdout
    assert not any(f"<{name}>" in result.stdout for name in names)  # the placeholders of secrets are masked


def test_without_no_env_a_missing_secret_is_an_error_naming_it():
    line = one_line_error(edge_command("check-config", "--config", str(CONF / "s3.toml")))
    assert "PRODUCT_IMAGES_KEY_ID is not set" in line


def test_edge_config_names_the_file_when_config_is_absent(tmp_path):
    config = write_config(tmp_path, local_config(before="[server]\nport = 9123\n"))
    result = edge_command("check-config", env={"EDGE_CONFIG": str(config)})
    assert result.returncode == 0, result.stderr
    assert f'"source": "{config}"' in result.stdout and '"port": 9123' in result.stdout


def test_a_config_file_that_is_not_utf8_is_one_line_naming_it(tmp_path):
    config = tmp_path / "edge.toml"
    config.write_bytes(b"# caf\xe9 (Latin-1)\n" + local_config().encode())
    line = one_line_error(edge_command("check-config", "--config", str(config)))
    assert line == f"edge: config error: {config}: not UTF-8 text (line 1: byte 0xe9); TOML files are UTF-8"


def test_a_config_file_starting_with_a_byte_order_mark_loads(tmp_path):
    """As Notepad and some other Windows editors save UTF-8: the mark had made the file "not valid TOML"."""
    config = tmp_path / "edge.toml"
    config.write_text(local_config(before="[server]\nport = 9124\n"), encoding="utf-8-sig")
    result = edge_command("check-config", "--config", str(config))
    assert result.returncode == 0 and '"port": 9124' in result.stdout, result.stderr


def test_an_empty_config_path_is_an_error_not_the_embedded_default(tmp_path):
    """`--config "$CONF"` with the variable unset had served the embedded default."""
    line = one_line_error(edge_command("check-config", "--config", ""))
    assert line == "edge: config error: --config: an empty path (leave --config out for $EDGE_CONFIG or the " \
                   "embedded default)"


@pytest.mark.parametrize("token", ["purge-token-caf\u00e9-7f3a9c2e", "purge token 7f3a9c2e51d84b06",
                                   "purge-token-7f3a9c2e\t51d84b06"])
def test_an_admin_token_no_authorization_header_can_carry_is_an_error_never_printed(tmp_path, token):
    """An `Authorization` header is ASCII: a token with an accented letter never matched what a client sent,
    and the purge API answered 401 to the right token."""
    config = write_config(tmp_path, local_config(before=f"[admin]\ntoken = {json.dumps(token)}\n"))
    result = edge_command("check-config", "--config", str(config))
    assert one_line_error(result).endswith(
        "[admin] token: holds a character that is not printable ASCII (a space, a tab, a letter with an "
        "accent...): use letters, digits and punctuation")
    assert "7f3a9c2e" not in result.stderr + result.stdout


@pytest.mark.skipif(not socket.has_ipv6, reason="this Python has no IPv6")
@pytest.mark.parametrize("where", ["file", "flag"])
async def test_an_ipv6_host_written_bracketed_as_in_a_url_is_listened_on(tmp_path, where):
    """`host = "[::1]"` had been looked up as a host name: `cannot listen on [::1]:8080: Name or service
    not known`."""
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as error:
        pytest.skip(f"no IPv6 loopback here: {error}")
    before = '[server]\nhost = "[::1]"\n' if where == "file" else ""
    node = NodeProcess(write_config(tmp_path, local_config(before=before)),
                       *(["--host", "[::1]"] if where == "flag" else []))
    try:
        assert node.url.startswith("http://[::1]:")
        response = await AsyncHTTPClient().fetch(node.url + "/tr:w-40/coffee.jpg")
        assert pyvips.Image.new_from_buffer(response.body, "").width == 40
    finally:
        assert node.stop() == 0


@pytest.mark.parametrize("dir_is", ["a file", "in a file"])
def test_new_plugin_into_a_folder_it_cannot_make_is_one_line(tmp_path, dir_is):
    (tmp_path / "a-file").write_text("not a folder")
    folder = tmp_path / "a-file" if dir_is == "a file" else tmp_path / "a-file" / "plugins"
    result = edge_command("new-plugin", "thumbs", "--dir", str(folder))
    assert one_line_error(result) == f"edge: --dir: cannot write {folder / 'edge-thumbs-origin'}: Not a directory"


async def test_serve_with_its_standard_streams_closed_puts_them_on_dev_null(tmp_path):
    """`edge serve <&- >&- 2>&-` (a careless init script): the listening socket had taken number 1 and a
    pipe number 2, and the access log and diagnostics were written into them."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = write_config(tmp_path, local_config(before=f"[server]\nport = {port}\n"))
    process = subprocess.Popen(["sh", "-c", 'exec "$0" "$@" <&- >&- 2>&-', sys.executable, "-m", "edge", "serve",
                                "--config", str(config)])
    client = AsyncHTTPClient()
    try:
        async def serving() -> bool:
            try:
                response = await client.fetch(f"http://127.0.0.1:{port}/tr:w-40/coffee.jpg", raise_error=False)
            except OSError:  # not listening yet
                return False
            return response.code == 200
        await until(serving, "the node serving")
        workers = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        assert workers
        for pid in (process.pid, *map(int, workers)):
            assert [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in (0, 1, 2)] == ["/dev/null"] * 3, pid
    finally:
        process.terminate()
        assert process.wait(timeout=60) == 0


def test_budgets_over_the_cache_disk_are_a_warning_at_check_config_and_at_start(tmp_path):
    """`output_size = "900TB"` (a unit mistaken): the tiers would fill the disk before they evict."""
    disk = shutil.disk_usage(tmp_path).total
    config = write_config(tmp_path, local_config(before=f'[cache]\ndir = "cache"\noutput_size = {disk}\n'))
    warning = (f"[cache] output_size + original_size ({(disk + 10**9) / 10**9:.1f} GB) exceed the filesystem "
               f"holding {tmp_path / 'cache'} ({disk / 10**9:.1f} GB): the tiers will fill it before they evict, "
               f"and stores then fail; lower them below its size, less what else it holds")
    result = edge_command("check-config", "--config", str(config))
    assert (result.returncode, result.stderr) == (0, f"edge: warning: {warning}\n")
    node = NodeProcess(config)
    try:
        assert any(re.search(rf"WARNING edge\[\d+\] {re.escape(warning)}$", line.rstrip()) for line in node.log), \
            node.log
    finally:
        assert node.stop() == 0
    fits = write_config(tmp_path, local_config(before=f'[cache]\ndir = "cache"\noutput_size = {disk // 2}\n'))
    assert edge_command("check-config", "--config", str(fits)).stderr == ""


async def test_a_budget_too_small_for_ordinary_images_is_a_warning_and_what_it_leaves_out_is_counted(tmp_path):
    """`output_size = 2000` (meant as MB; a plain number is bytes): every output was made again on every request,
    without a word from check-config, the log or the metrics."""
    config = write_config(tmp_path, local_config(before='[cache]\ndir = "cache"\noutput_size = 2000\n'
                                                        'original_size = 0\n'))  # 0: off, as asked
    warning = ("[cache] output_size = 2000 bytes: a tier stores no entry over an eighth of its budget, so larger "
               "images are made again on every request (edge_cache_too_large_total); a size is in bytes unless it "
               'names a unit ("2GB")')
    result = edge_command("check-config", "--config", str(config))
    assert (result.returncode, result.stderr) == (0, f"edge: warning: {warning}\n")
    with running_node(config.read_text(), tmp_path) as node:
        for _ in range(3):
            status, headers, body = node.get("/tr:w-300/coffee.jpg")
            assert (status, headers["X-Cache"], image_size(body)) == (200, "MISS", (300, 200))
        scraped = await scrape_when(node.base_url, "edge_cache_too_large_total", 3, tier="output")  # stored after
        assert samples(scraped, "edge_cache_too_large_total") == {(("tier", "original"),): 0,
                                                                  (("tier", "output"),): 3}
    roomy = write_config(tmp_path, local_config(before='[cache]\ndir = "cache"\noutput_size = "8MB"\n'))
    assert edge_command("check-config", "--config", str(roomy)).stderr == ""


def test_output_size_0_is_a_warning(tmp_path):
    """`output_size = 0` (an `${OUTPUT_SIZE}` set to "0") kept no output: every request a MISS, nothing said, not
    even counted as too large. `original_size = 0` keeps no originals, as documented: no warning."""
    config = write_config(tmp_path, local_config(before='[cache]\ndir = "cache"\noutput_size = 0\n'))
    result = edge_command("check-config", "--config", str(config))
    assert (result.returncode, result.stderr) == (0, "edge: warning: [cache] output_size = 0: no output is kept, so "
                                                     "every image is made again on every request; leave the key out "
                                                     "for its default (2GB)\n")
    no_originals = write_config(tmp_path, local_config(before='[cache]\ndir = "cache"\noriginal_size = 0\n'))
    assert edge_command("check-config", "--config", str(no_originals)).stderr == ""


def test_workers_many_times_the_usable_cores_are_a_warning(tmp_path):
    """`workers = 256` on 2 cores (a typo) started without a word: 5.5 GB, and a status page taking 7.5 s."""
    cores = usable_cores()
    config = write_config(tmp_path, local_config(before=f"[server]\nworkers = {4 * cores.count + 1}\n"))
    result = edge_command("check-config", "--config", str(config))
    assert (result.returncode, result.stderr) == (0, (
        f"edge: warning: [server] workers = {4 * cores.count + 1} on {cores.count} usable core(s) ({cores.source}): "
        "each worker holds its own memory, and more than 4 a core serve no faster; workers = 0 starts one a core\n"))
    fits = write_config(tmp_path, local_config(before=f"[server]\nworkers = {4 * cores.count}\n"))
    assert edge_command("check-config", "--config", str(fits)).stderr == ""


@pytest.mark.parametrize("cache", ["photos", "photos/cache", "."])  # ".": the originals under the cache folder
def test_a_cache_folder_among_an_origins_originals_is_a_warning(tmp_path, cache):
    """`[cache] dir` set to a local origin's root, or a folder under it, was accepted without a word: the
    cache's files were written among the originals, and URLs could name them."""
    (tmp_path / "photos").mkdir()
    config = write_config(tmp_path, local_config(tmp_path / "photos", before=f'[cache]\ndir = "{cache}"\n'))
    result = edge_command("check-config", "--config", str(config))
    assert (result.returncode, result.stderr) == (0, (
        f"edge: warning: [cache] dir {tmp_path / cache} and the folder {tmp_path / 'photos'} of origin 'samples' "
        "hold each other: the cache's files are written among the originals, and URLs can name them\n"))
    apart = write_config(tmp_path, local_config(tmp_path / "photos", before='[cache]\ndir = "cache"\n'))
    assert edge_command("check-config", "--config", str(apart)).stderr == ""


@pytest.mark.parametrize("forward_host, warned", [("true", True), ('["shop.example.com"]', False), ("false", False)])
def test_a_signed_only_endpoint_over_an_origin_that_forwards_every_host_is_a_warning(tmp_path, forward_host, warned):
    """A signature does not cover the Host: one signed URL was fetched, rendered and kept once per Host a client
    invented, the open work `signed_only` is to close."""
    config = write_config(tmp_path, web_config("http://127.0.0.1:9", origin=f"forward_host = {forward_host}\n",
                                               after='private_key = "k"\nsigned_only = true\n'))
    result = edge_command("check-config", "--config", str(config))
    warning = ("edge: warning: endpoint '' is signed_only, but origin 'web' forwards every Host: a signature does not "
               "cover the Host, so one signed URL is fetched and kept once per Host a client names; list the hosts "
               '(forward_host = ["shop.example.com", …])\n')
    assert (result.returncode, result.stderr) == (0, warning if warned else "")


def test_check_config_finds_an_unusable_cache_folder(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    config = write_config(tmp_path, local_config(before='[cache]\ndir = "a-file/cache"\n'))
    line = one_line_error(edge_command("check-config", "--config", str(config)))
    assert line == f"edge: cache folder {tmp_path / 'a-file' / 'cache'}: {tmp_path / 'a-file'} is not a folder"
    assert not (tmp_path / "cache").exists()


@pytest.fixture
def busy_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_bind_check_finds_the_address_in_use(tmp_path, busy_port):
    config = write_config(tmp_path, local_config(before=f"[server]\nport = {busy_port}\n"))
    assert edge_command("check-config", "--config", str(config)).returncode == 0  # not asked
    line = one_line_error(edge_command("check-config", "--bind-check", "--config", str(config)))
    assert line == f"edge: cannot listen on 127.0.0.1:{busy_port}: already in use"


def test_bind_check_finds_the_metrics_address_in_use(tmp_path, busy_port):
    config = write_config(tmp_path, local_config(before=f"[server]\nport = 0\nmetrics_port = {busy_port}\n"))
    line = one_line_error(edge_command("check-config", "--bind-check", "--config", str(config)))
    assert line == f"edge: cannot listen on 127.0.0.1:{busy_port}: already in use"


def test_serve_on_a_port_in_use_fails_in_one_line(tmp_path, busy_port):
    config = write_config(tmp_path, local_config())
    line = one_line_error(edge_command("serve", "--config", str(config), "--port", str(busy_port)))
    assert line == f"edge: cannot listen on 127.0.0.1:{busy_port}: already in use"


@pytest.mark.parametrize("flag, value, expected", [
    ("--port", "70000", "expected an integer from 0 to 65535, got 70000"),
    ("--port", "-1", "expected an integer from 0 to 65535, got -1"),
    ("--workers", "-1", "expected an integer from 0 to 256, got -1"),
    ("--workers", "100000", "expected an integer from 0 to 256, got 100000"),
])
def test_serve_refuses_a_port_or_workers_flag_out_of_range(tmp_path, flag, value, expected):
    """As the file's `port` and `workers` are: `--port 70000` had listened on 4464 (70000 - 65536), and
    `--workers -1` ended in a traceback."""
    config = write_config(tmp_path, local_config())
    result = edge_command("serve", "--config", str(config), flag, value, timeout=30)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result
    assert result.stderr.splitlines()[-1] == f"edge serve: error: argument {flag}: {expected}"


def test_a_second_node_on_a_cache_folder_another_node_serves_from_fails_in_one_line(tmp_path):
    """Two configs with one `[cache] dir` (or none: the user's default folder) by mistake: the second node
    had served the first's outputs for its own URLs, made from another origin's files (a red image for
    a blue one). A reload to that folder is refused the same way; once the first node stops, it is free."""
    for name in ("first", "other", "third"):
        (tmp_path / name).mkdir()
    first = NodeProcess(write_config(tmp_path / "first", local_config(before=f'[cache]\ndir = "{tmp_path}/cache"\n')))
    other = write_config(tmp_path / "other", local_config(before=f'[cache]\ndir = "{tmp_path}/cache"\n'))
    try:
        line = one_line_error(edge_command("serve", "--config", str(other), "--port", "0"))
        assert line == (f"edge: cache folder {tmp_path / 'cache'}: another node serves from it (pid "
                        f"{first.process.pid}); give each node its own [cache] dir")
        third = NodeProcess(write_config(tmp_path / "third", local_config(before=f'[cache]\ndir = "{tmp_path}/own"\n')))
        try:
            third.config_path.write_text(other.read_text())
            mark = len(third.log)
            third.process.send_signal(signal.SIGHUP)
            refused = third.wait_for_log("config not reloaded", start=mark)
            assert refused.string.rstrip().endswith("another node serves from it (pid "
                                                    f"{first.process.pid}); give each node its own [cache] dir")
        finally:
            assert third.stop() == 0
    finally:
        assert first.stop() == 0
    second = NodeProcess(other)
    assert second.stop() == 0


def test_a_cache_folder_inside_or_holding_another_nodes_is_refused(tmp_path):
    """Node B on `cache/outputs` inside node A's `cache` had started (check-config silent), and A's hourly sweep
    of its tiers deleted B's value files as left by a killed store. Refused either way round, by `serve` and by
    `check-config`, whichever node started first."""
    inner = tmp_path / "cache" / "outputs"
    for name in ("inner", "outer", "deeper"):
        (tmp_path / name).mkdir()
    first = NodeProcess(write_config(tmp_path / "inner", local_config(before=f'[cache]\ndir = "{inner}"\n')))
    try:
        outer = write_config(tmp_path / "outer", local_config(before=f'[cache]\ndir = "{tmp_path}/cache"\n'))
        deeper = write_config(tmp_path / "deeper", local_config(before=f'[cache]\ndir = "{inner}/b"\n'))
        holds = (f"edge: cache folder {tmp_path / 'cache'}: holds {inner}, another node's cache folder (it holds a "
                 f"node.lock): this node's sweep of its tiers would delete that one's files; give each node a folder "
                 f"apart")
        inside = (f"edge: cache folder {inner / 'b'}: inside {inner}, another node's cache folder (it holds a "
                  f"node.lock): that node's sweep of its tiers would delete this one's files; give each node a "
                  f"folder apart")
        for config, problem in ((outer, holds), (deeper, inside)):
            assert one_line_error(edge_command("serve", "--config", str(config), "--port", "0")) == problem
            assert one_line_error(edge_command("check-config", "--config", str(config))) == problem
    finally:
        assert first.stop() == 0
    assert not (tmp_path / "cache" / "node.lock").exists() and not (inner / "b" / "node.lock").exists()


def test_a_cache_folder_deleted_under_a_node_is_locked_again(tmp_path):
    """The folder deleted and made again under a serving node: its lock was on the deleted file, and a second
    node started on the folder was not refused."""
    for name in ("first", "other"):
        (tmp_path / name).mkdir()
    cache = f'[cache]\ndir = "{tmp_path}/cache"\n'
    first = NodeProcess(write_config(tmp_path / "first", local_config(before=cache)))
    try:
        for away in (lambda: shutil.rmtree(tmp_path / "cache"), lambda: (tmp_path / "cache").rename(tmp_path / "old")):
            mark = len(first.log)
            away()
            first.wait_for_log("its lock file was deleted or moved; locked again", start=mark)
        other = write_config(tmp_path / "other", local_config(before=cache))
        line = one_line_error(edge_command("serve", "--config", str(other), "--port", "0"))
        assert line == (f"edge: cache folder {tmp_path / 'cache'}: another node serves from it (pid "
                        f"{first.process.pid}); give each node its own [cache] dir")
    finally:
        assert first.stop() == 0


def test_serve_with_an_unusable_cache_folder_fails_in_one_line(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    config = write_config(tmp_path, local_config(before='[cache]\ndir = "a-file/cache"\n'))
    line = one_line_error(edge_command("serve", "--config", str(config), "--port", "0"))
    # as check-config says it: "cannot create it: Not a directory" had sent the operator to permissions
    assert line == f"edge: cache folder {tmp_path / 'a-file' / 'cache'}: {tmp_path / 'a-file'} is not a folder"


def test_serve_with_an_origin_type_no_plugin_provides_fails_in_one_line(tmp_path):
    config = write_config(tmp_path, local_config().replace('type = "local"', 'type = "azure_blob"'))
    line = one_line_error(edge_command("serve", "--config", str(config), "--port", "0"))
    assert "[origins[0] 'samples'] type: unknown origin type 'azure_blob'" in line


def routing_error(tmp_path, endpoints: str) -> str:
    text = local_config(after=endpoints).replace('[[endpoints]]\nid = ""\norigins = ["samples"]\n', "", 1)
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, text), load_plugins(), environ={})
    return str(caught.value)


def test_the_same_host_on_two_endpoints_is_an_error_naming_the_key(tmp_path):
    message = routing_error(tmp_path, """
        [[endpoints]]
        id = "shop"
        hosts = ["img.example.com"]
        origins = ["samples"]
        [[endpoints]]
        id = "blog"
        hosts = ["IMG.Example.com"]
        origins = ["samples"]
    """)
    assert message.endswith("[endpoints[1]] hosts: 'img.example.com' is also a host of the endpoint with id 'shop'")


@pytest.mark.parametrize("written", ["https://img.example.com", "img.example.com:443", "img.example.com/shop",
                                     "*.example.com", "img example.com", ""])
def test_a_host_that_could_never_match_is_an_error_naming_the_key(tmp_path, written):
    message = routing_error(tmp_path, f"""
        [[endpoints]]
        id = "shop"
        hosts = ["{written}"]
        origins = ["samples"]
    """)
    assert f"[endpoints[0]] hosts: {written!r} is not a host name" in message


def test_host_names_and_ipv6_literals_are_accepted(tmp_path):
    config = load_config(write_config(tmp_path, local_config(after="""
        [[endpoints]]
        id = "shop"
        hosts = ["Img.Example.com", "localhost", "[::1]", "127.0.0.1"]
        origins = ["samples"]
    """)), load_plugins(), environ={})
    assert config.endpoints[1].hosts == ("img.example.com", "localhost", "[::1]", "127.0.0.1")


def test_json_diagnostics(tmp_path):
    node = NodeProcess(write_config(tmp_path, local_config(before='[server]\nlog_format = "json"\n')))
    assert node.stop() == 0
    lines = [json.loads(line) for line in node.log if line.strip()]
    assert [line["message"].split(" ")[:2] for line in lines[:2]] == [["usable", "cores:"], ["listening", "on"]]
    assert lines[1]["level"] == "info" and lines[1]["logger"] == "edge"
    assert lines[1]["message"].startswith("listening on http://127.0.0.1:") and lines[1]["time"] > 1e9


def test_a_file_descriptor_limit_below_max_connections_is_a_warning_at_start(tmp_path):
    """`ulimit -n 128` under max_connections 1024: past 128 files, fetches failed (the origin blamed), connections
    waited unaccepted, and nothing had said why at the start."""
    node = NodeProcess(write_config(tmp_path, local_config()), nofile=(256, 256))
    try:
        node.wait_for_log(r"listening on")
        warning = node.wait_for_log(r"the file descriptor limit is 256, and a worker may need (\d+) ")
        assert int(warning.group(1)) == 1024 + 64 + 128  # one origin's pool, the cache's files
    finally:
        node.stop()


def test_a_file_descriptor_limit_of_just_what_a_worker_may_need_is_no_warning(tmp_path):
    config = load_config(str(write_config(tmp_path, local_config())), load_plugins())
    needed = 1024 + 64 + 128  # max_connections, one origin's pool, the cache's files
    assert checks.too_few_descriptors(config, needed) is None
    warning = checks.too_few_descriptors(config, needed - 1)
    assert warning.startswith(f"the file descriptor limit is {needed - 1}, and a worker may need {needed} ")


def test_a_tmpdir_the_node_cannot_use_is_said(tmp_path):
    """Python's `tempfile` passes over a TMPDIR it cannot write in (to /tmp, or the working folder) without a word:
    an operator who gave the metrics files a volume of their own was not told it went unused."""
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o555)
    if os.access(read_only, os.W_OK):  # root: a mode stops nobody; a folder that is not there does
        read_only = tmp_path / "missing"
    node = NodeProcess(write_config(tmp_path, local_config()), "--workers", "2",
                       env={**os.environ, "TMPDIR": str(read_only)})
    try:
        node.wait_for_log(rf"TMPDIR={re.escape(str(read_only))} is not a folder this user can write in: the workers' "
                          r"metrics files are in /\S+edge-metrics-")
    finally:
        assert node.stop() == 0
