"""`edge warm` against a running node, then `edge cache stats` reading its cache folder while it runs
(read-only: nothing in the folder changes)."""

import json
import os
import shutil
import socketserver
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from tornado.httpclient import AsyncHTTPClient

from edge.cachestats import TIER_FOLDERS
from edge.cache import CachedOutput, Caches, SourceInfo, strong_etag
from edge.cache.keys import original_key, output_key
from edge.testing import ServingNode
from tests.nodes import SAMPLES, NodeProcess, local_config, until_stored, write_config
from tests.servers import RawServer

HOSTED = '[[endpoints]]\nid = "shop"\nhosts = ["img.example.com"]\norigins = ["samples"]\n'
URLS = """# exported from the access log
/tr:w-40/coffee.jpg
/tr:w-50/coffee.jpg
tr:w-40/camera.jpg

https://img.example.com/tr:w-30/chelsea.jpg?ik-attachment=true
/tr:w-40/no-such-image.jpg
ftp://nowhere/x.jpg
"""


def edge_command(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True, timeout=timeout,
                          env={k: v for k, v in os.environ.items() if k != "EDGE_CONFIG"})


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("warm")
    config = write_config(tmp_path, local_config(after=HOSTED))
    running = NodeProcess(config)
    yield running, config, tmp_path
    running.stop()


def snapshot_of(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file's mtime and size, but SQLite's -shm (the shared-memory index of the write-ahead log,
    which every reader maps and marks, no data)."""
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.endswith("-shm")}


async def test_warm_then_every_url_is_a_hit_and_cache_stats_sees_them(node):
    running, config, tmp_path = node
    urls = tmp_path / "urls.txt"
    urls.write_text(URLS, encoding="utf-8-sig")  # as Windows editors save: the mark is no part of a URL
    warmed = edge_command("warm", "--urls", str(urls), "--base-url", running.url, "--concurrency", "2")
    assert warmed.returncode == 1, warmed.stderr  # one line was not a URL: counted as failed
    client = AsyncHTTPClient(force_instance=True)
    try:
        answers = [await client.fetch(running.url + path, raise_error=False, headers=headers) for path, headers in (
            ("/tr:w-40/coffee.jpg", {}), ("/tr:w-50/coffee.jpg", {}), ("/tr:w-40/camera.jpg", {}),
            ("/tr:w-30/chelsea.jpg?ik-attachment=true", {"Host": "img.example.com"}))]
    finally:
        client.close()
    assert [a.headers["X-Cache"] for a in answers] == ["HIT"] * 4
    body_bytes = sum(len(a.body) for a in answers) + len(b"not found\n")
    summary = warmed.stdout.strip()
    assert summary.startswith("6 URLs in ") and summary.endswith(
        f"s: 4 ok, 1 4xx, 0 5xx, 1 failed; {body_bytes} bytes"), summary
    assert warmed.stderr.splitlines()[-2].startswith("[##############################] 6/6  ok 4  4xx 1  5xx 0  failed 1")

    # cache stats, while the node runs, once the files' versions are recorded (flushed every second)
    await until_stored(tmp_path / "cache", 3, tier="originals")
    stats = edge_command("cache", "stats", "--json", "--config", str(config))
    assert stats.returncode == 0, stats.stderr
    found = json.loads(stats.stdout)
    tiers = {t["tier"]: t for t in found["tiers"]}
    # a local origin's originals are read from its folder, never copied into the originals tier: it
    # keeps their versions alone (coffee, camera, chelsea)
    assert (tiers["output"]["entries"], tiers["original"]["entries"], tiers["not_found"]["entries"]) == (4, 3, 1)
    assert tiers["output"]["bytes"] > sum(len(a.body) for a in answers)
    assert tiers["output"]["budget"] == 2 * 10**9 and tiers["output"]["oldest_stored"] <= tiers["output"]["least_recently_used"] + 5
    assert found["top_originals"] == [{"endpoint": "", "path": "coffee.jpg", "host": None, "outputs": 2},
                                      {"endpoint": "", "path": "camera.jpg", "host": None, "outputs": 1},
                                      {"endpoint": "shop", "path": "chelsea.jpg", "host": None, "outputs": 1}]

    # read-only: with the node stopped (a running node writes by itself), nothing in the folder changes
    running.stop()
    cache = tmp_path / "cache"
    before = snapshot_of(cache)
    text = edge_command("cache", "stats", "--config", str(config), "--top", "1")
    assert text.returncode == 0 and "       2  /coffee.jpg" in text.stdout and "camera" not in text.stdout
    assert snapshot_of(cache) == before


def test_warm_counts_a_node_that_does_not_answer_as_failed(tmp_path):
    urls = tmp_path / "urls.txt"
    # the second is no URL (an unclosed IPv6 literal): failed too. Both signed: whichever fails first is printed
    # without its query (a mutation printing it survived)
    signed = "?tr=w-10&ik-s=5f0c9d1e2b3a4c5d6e7f8091a2b3c4d5e6f70819"
    urls.write_text(f"/a.jpg{signed}\nhttp://[::1/b.jpg{signed}\n")
    warmed = edge_command("warm", "--urls", str(urls), "--base-url", "http://127.0.0.1:9", "--timeout", "5",
                          "--concurrency", "1")
    assert warmed.returncode == 1 and warmed.stdout.strip().endswith("0 ok, 0 4xx, 0 5xx, 2 failed; 0 bytes")
    assert "Traceback" not in warmed.stderr and "5f0c9d1e" not in warmed.stderr + warmed.stdout
    # why: a node down and a wrong port had looked alike, the summary saying only "failed"; the first in the list
    # (one at a time: a mutation audit naming the last survived)
    assert warmed.stderr.splitlines()[-1] == \
        "edge: 2 URL(s) had no answer; the first: '/a.jpg': [Errno 111] Connection refused"


class _StatusInPath(socketserver.StreamRequestHandler):
    """Answers `GET /<status>[?…]` with that status and a 4-byte body; a 3xx sends to `/500`. `GET /query?<status>`:
    the status in the query. `GET /accept`: 200 when the request accepts `image/avif`, else 406."""

    def handle(self) -> None:
        path, _, query = self.rfile.readline().split()[1][1:].decode().partition("?")
        status = query if path == "query" else path
        accept = b""
        while (header := self.rfile.readline()) not in (b"\r\n", b""):
            if header.lower().startswith(b"accept:"):
                accept = header.partition(b":")[2].strip()
        if status == "accept":
            status = "200" if accept == b"image/avif" else "406"
        location = "Location: /500\r\n" if status.startswith("3") else ""
        self.wfile.write(f"HTTP/1.1 {status} X\r\nContent-Length: 4\r\n{location}Connection: close\r\n\r\n"
                         f"{status}\n".encode())


def test_warm_counts_each_answer_by_its_status_and_fails_on_a_5xx(tmp_path):
    """Every boundary of the summary's classes (a mutation audit: one counting a 500 as a 4xx, and exiting 0,
    survived)."""
    urls = tmp_path / "urls.txt"
    with RawServer(_StatusInPath).serving() as server:
        for statuses, ok, client, server_errors, code in (
                ("200 301 399", 3, 0, 0, 0), ("200 400 499", 1, 2, 0, 0), ("200 500", 1, 0, 1, 1), ("503", 0, 0, 1, 1)):
            urls.write_text("".join(f"/{status}\n" for status in statuses.split()))
            warmed = edge_command("warm", "--urls", str(urls), "--base-url", server.url, "--concurrency", "1")
            n = len(statuses.split())
            assert (warmed.returncode, warmed.stdout.split(": ", 1)[1]) == (
                code, f"{ok} ok, {client} 4xx, {server_errors} 5xx, 0 failed; {4 * n} bytes\n"), statuses


def test_warm_counts_a_line_over_max_line_as_failed_without_asking_it(tmp_path):
    """A mutation audit: one asking it, whatever its length, survived."""
    from edge.warm import MAX_LINE
    urls = tmp_path / "urls.txt"
    with RawServer(_StatusInPath).serving() as server:
        for length, summary in ((MAX_LINE, "1 ok, 0 4xx, 0 5xx, 0 failed; 4 bytes"),
                                (MAX_LINE + 1, "0 ok, 0 4xx, 0 5xx, 1 failed; 0 bytes")):
            urls.write_text("/200?" + "a" * (length - 5) + "\n")
            warmed = edge_command("warm", "--urls", str(urls), "--base-url", server.url)
            assert warmed.stdout.split(": ", 1)[1] == summary + "\n", length
    assert warmed.stderr.splitlines()[-1] == "edge: 1 URL(s) had no answer; the first: '/200': not a URL"


def warm_summary(tmp_path, lines: str, *args: str) -> tuple[int, str]:
    """`edge warm` of `lines` against a `_StatusInPath` server: its exit status and its summary line."""
    urls = tmp_path / "urls.txt"
    urls.write_text(lines)
    with RawServer(_StatusInPath).serving() as server:
        warmed = edge_command("warm", "--urls", str(urls), "--base-url", server.url, *args)
    return warmed.returncode, warmed.stdout.split(": ", 1)[1]


def test_warm_counts_a_redirect_as_its_answer_without_following_it(tmp_path):
    """The 3xx is what the node answers for that URL; following it warms another URL, maybe another site's (a
    mutation audit: following redirects survived)."""
    assert warm_summary(tmp_path, "/301\n") == (0, "1 ok, 0 4xx, 0 5xx, 0 failed; 4 bytes\n")


def test_warm_asks_a_url_with_its_query(tmp_path):
    """The query may be the transformation (`?tr=w-300`): without it, the original is warmed instead (a mutation
    audit: dropping it survived)."""
    assert warm_summary(tmp_path, "/query?404\nhttp://img.example.com/query?503\n") == (
        1, "0 ok, 1 4xx, 1 5xx, 0 failed; 8 bytes\n")


def test_warm_asks_with_the_accept_header_it_was_given(tmp_path):
    """`--accept` picks the format a node negotiates: without it, the cache holds another variant than the traffic
    asks for (a mutation audit: not sending it survived)."""
    for accept, summary in ((["--accept", "image/avif"], "1 ok, 0 4xx"), ([], "0 ok, 1 4xx")):
        assert warm_summary(tmp_path, "/accept\n", *accept)[1].startswith(summary + ","), accept


def test_warm_counts_a_line_with_white_space_inside_as_failed_without_asking_it(tmp_path):
    """A URL holds no white space (a path's own is percent-encoded): `/200 x` had been asked as `/200`, counted
    ok (a mutation audit: asking it survived)."""
    assert warm_summary(tmp_path, "/200 x\n/200\tx\n") == (1, "0 ok, 0 4xx, 0 5xx, 2 failed; 0 bytes\n")


def test_warm_takes_the_largest_concurrency_and_timeout_it_allows(tmp_path):
    """The bounds are inclusive, as the usage errors say (a mutation audit: refusing them survived)."""
    from edge.warm import MAX_CONCURRENCY, MAX_TIMEOUT
    assert warm_summary(tmp_path, "/200\n", "--concurrency", str(MAX_CONCURRENCY), "--timeout", f"{MAX_TIMEOUT:g}") \
        == (0, "1 ok, 0 4xx, 0 5xx, 0 failed; 4 bytes\n")


@pytest.mark.parametrize("args, message", [
    (["--urls", "/no/such/file", "--base-url", "http://127.0.0.1:9"], "--urls /no/such/file: no such file"),
    (["--base-url", "127.0.0.1:9"], "--base-url '127.0.0.1:9': expected an http:// or https:// URL without a query"),
    (["--base-url", "http://127.0.0.1:9", "--concurrency", "1000"], "--concurrency: expected 1 to 64"),
    (["--base-url", "http://[::1"], "--base-url 'http://[::1': expected an http:// or https:// URL without a query"),
    (["--base-url", "http://"], "--base-url 'http://': expected an http:// or https:// URL without a query"),  # no host
    (["--base-url", "http://127.0.0.1:9", "--timeout", "nan"], "--timeout: expected more than 0 and at most 3600 seconds"),
    (["--base-url", "http://127.0.0.1:9", "--timeout", "0"], "--timeout: expected more than 0 and at most 3600 seconds"),
    # each URL had then failed, "no answer" (exit 1), not the argument
    (["--base-url", "http://127.0.0.1:9", "--accept", "image/webp\r\nX: y"],
     "--accept: holds a control character (a line break?)"),
    (["--base-url", "http://127.0.0.1:9", "--accept", "image/webp\x7f"],
     "--accept: holds a control character (a line break?)"),  # DEL too (a mutation audit: letting it by survived)
])
def test_warm_usage_errors(tmp_path, args, message):
    (tmp_path / "urls.txt").write_text("/a.jpg\n")
    if "--urls" not in args:
        args = ["--urls", str(tmp_path / "urls.txt"), *args]
    result = edge_command("warm", *args)
    assert (result.returncode, result.stderr.strip()) == (2, f"edge: {message}")


def test_warm_refuses_a_list_it_cannot_read_in_one_line(tmp_path):
    """A folder (or a pipe: the list is read twice) is not a list, and another user's file had been a
    PermissionError traceback once the warm-up began."""
    result = edge_command("warm", "--urls", str(tmp_path), "--base-url", "http://127.0.0.1:9")
    assert (result.returncode, result.stderr) == (2, f"edge: --urls {tmp_path}: not a regular file (write the list "
                                                     "to a file)\n")
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (util-linux) to run as another uid")
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o755)
        urls = Path(folder) / "urls.txt"
        urls.write_text("/a.jpg\n")
        urls.chmod(0o600)
        result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                                 "edge", "warm", "--urls", str(urls), "--base-url", "http://127.0.0.1:9"],
                                capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (2, f"edge: --urls {urls}: cannot read it: Permission denied\n")


def test_cache_stats_of_an_empty_or_missing_folder(tmp_path):
    config = write_config(tmp_path, local_config())
    missing = edge_command("cache", "stats", "--config", str(config))
    assert (missing.returncode, missing.stderr.strip()) == (1, f"edge: cache folder {tmp_path / 'cache'} does not exist")
    (tmp_path / "cache").mkdir()
    empty = json.loads(edge_command("cache", "stats", "--json", "--config", str(config)).stdout)
    assert [(t["tier"], t["entries"], t["bytes"]) for t in empty["tiers"]] == [
        ("output", 0, 0), ("original", 0, 0), ("not_found", 0, 0)]
    assert empty["top_originals"] == [] and sorted(os.listdir(tmp_path / "cache")) == []
    negative = edge_command("cache", "stats", "--top", "-1", "--config", str(config))
    assert (negative.returncode, negative.stdout, negative.stderr) == (2, "", "edge: --top: expected 0 or more\n")


def test_cache_stats_names_the_oldest_entry_and_the_least_recently_used_one(tmp_path):
    """Two remembered 404s, one stored 3 days ago and read 10 s ago, the other stored and read 90 min ago: the
    least recently used is the second (a mutation audit: one naming the most recently used survived)."""
    config = write_config(tmp_path, local_config())
    caches = Caches(tmp_path / "cache", 10**6, 10**6)
    try:
        for key in ("\0old.jpg", "\0idle.jpg"):
            caches.not_found.put(key, time.time(), 3600)
    finally:
        caches.close()
    now = time.time()
    with sqlite3.connect(tmp_path / "cache" / TIER_FOLDERS["not_found"] / "cache.db") as index:
        for key, stored, used in (("\0old.jpg", now - 3 * 86400, now - 10), ("\0idle.jpg", now - 5400, now - 5400)):
            assert index.execute("UPDATE Cache SET store_time = ?, access_time = ? WHERE key = ?",
                                 (stored, used, key)).rowcount == 1
    index.close()
    found = json.loads(edge_command("cache", "stats", "--json", "--config", str(config)).stdout)
    tier = next(t for t in found["tiers"] if t["tier"] == "not_found")
    assert (tier["entries"], tier["oldest_stored"], tier["least_recently_used"]) == (2, now - 3 * 86400, now - 5400)
    text = edge_command("cache", "stats", "--config", str(config)).stdout
    used = f"{100 * tier['bytes'] / tier['budget']:.0f}%"
    assert f"not_found           2 {tier['bytes']:>14} {tier['budget']:>14} {used:>6}  3.0d ago    1.5h ago\n" in text


def test_cache_stats_names_the_host_an_original_was_fetched_for_and_lists_none_with_top_0(tmp_path):
    """An endpoint forwarding the `Host` keeps one original per host: the listing names it, or the two would read as
    one path listed twice. `--top 0` asks for the tiers alone (a mutation audit: dropping the host, and refusing
    `--top 0`, both survived)."""
    config = write_config(tmp_path, local_config())
    body = b"not an image: cache stats reads keys and sizes"
    stored = CachedOutput(body=body, content_type="image/jpeg", etag=strong_etag(body),
                          source=SourceInfo(origin="web", version='"v1"', checked_at=0.0))
    caches = Caches(tmp_path / "cache", 10**6, 10**6)
    try:
        for host, transformation in (("img.example.com", "w-300"), ("img.example.com", "w-400"), (None, "w-300")):
            caches.outputs.put(output_key(original_key("", "a.jpg", host), transformation, ""), stored)
    finally:
        caches.close()
    found = json.loads(edge_command("cache", "stats", "--json", "--config", str(config)).stdout)
    assert found["top_originals"] == [{"endpoint": "", "path": "a.jpg", "host": "img.example.com", "outputs": 2},
                                      {"endpoint": "", "path": "a.jpg", "host": None, "outputs": 1}]
    text = edge_command("cache", "stats", "--config", str(config)).stdout
    assert "       2  /a.jpg  (Host img.example.com)\n       1  /a.jpg" in text
    none = edge_command("cache", "stats", "--json", "--top", "0", "--config", str(config))
    assert none.returncode == 0 and json.loads(none.stdout)["top_originals"] == [], none.stderr
    assert [t["entries"] for t in json.loads(none.stdout)["tiers"]] == [3, 0, 0]


def test_purge_and_cache_stats_run_without_the_secrets_they_do_not_use(tmp_path):
    """An operator's shell in an incident has not the service's secrets (systemd's EnvironmentFile): `edge purge`
    and `cache stats` refused to run until every `${NAME}` of the config was exported, the origins' keys included.
    `--fleet` sends the admin token to the peers: it still needs it."""
    config = write_config(tmp_path, local_config(before='[admin]\ntoken = "${EDGE_TOKEN_UNSET}"\n'
                                                        '[fleet]\npeers = ["http://127.0.0.1:9", "http://127.0.0.1:10"]\n'
                                                        'self_url = "http://127.0.0.1:10"\n'))
    (tmp_path / "cache").mkdir()
    stats = edge_command("cache", "stats", "--json", "--config", str(config))
    assert stats.returncode == 0 and json.loads(stats.stdout)["top_originals"] == [], stats.stderr
    purge = edge_command("purge", "--url", "/photo.jpg", "--config", str(config))
    assert (purge.returncode, json.loads(purge.stdout)["removed"]) == (0, 0), purge.stderr
    fleet = edge_command("purge", "--fleet", "--url", "/photo.jpg", "--config", str(config))
    assert (fleet.returncode, fleet.stdout) == (1, "") and "EDGE_TOKEN_UNSET is not set" in fleet.stderr


def test_cache_stats_of_a_folder_this_user_cannot_read_is_one_line(tmp_path):
    """An operator's own account against the service user's 0700 folder: a PermissionError traceback."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (util-linux) to run as another uid")
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o777)  # the config readable by the other uid; the cache folder not
        Caches(Path(folder) / "cache", 10**6, 10**6).close()
        os.chmod(Path(folder) / "cache", 0o700)
        config = write_config(Path(folder), local_config(before=f'[cache]\ndir = "{folder}/cache"\n'))
        result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                                 "edge", "cache", "stats", "--config", str(config)],
                                capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (
        1, "", f"edge: cannot read the cache in {folder}/cache: Permission denied\n")


def test_the_tier_folders_are_where_the_node_keeps_them(tmp_path):
    caches = Caches(tmp_path, 10**6, 10**6)
    try:
        assert {tier.name: tier.directory.name for tier in caches.tiers} == TIER_FOLDERS
    finally:
        caches.close()


def test_an_output_key_names_its_original_whatever_follows_and_only_in_this_render_version():
    from edge.cache.keys import RENDER_VERSION, original_key, original_of, output_key
    assert original_of(output_key(original_key("e", "a/b.jpg", None), "w-300", "avif", "w600")) == "e\0a/b.jpg"
    assert original_of(output_key(original_key("", "b.jpg", "img.example.com"), "", "")) == "\0b.jpg\0img.example.com"
    assert original_of("e\0a/b.jpg\0w-300\0jpg") is None  # an earlier release's: never served, not counted
    assert original_of(output_key(original_key("e", "a.jpg", None), "w-300", "", settings="q30")) == "e\0a.jpg"
    assert f"\0{RENDER_VERSION}:w-300\0" in output_key(original_key("e", "a.jpg", None), "w-300", "")


async def test_cache_stats_escapes_what_clients_named(tmp_path):
    """A path is the client's choice: an ESC or a line break in one must not drive the operator's terminal
    nor forge a line of the listing."""
    root = tmp_path / "files"
    root.mkdir()
    name = "x\x1b[2J\x1b]0;pwned\x07\r\n     999  /fake.jpg"
    (root / name).parent.mkdir()
    shutil.copy(SAMPLES / "coffee.jpg", root / name)
    config = write_config(tmp_path, local_config(root))
    running = NodeProcess(config)
    try:
        status = ServingNode(running).get("/tr:w-20/" + quote(name))[0]
        assert status == 200
        await until_stored(tmp_path / "cache", 1, tier="originals")
    finally:
        running.stop()
    stats = edge_command("cache", "stats", "--config", str(config))
    assert stats.returncode == 0, stats.stderr
    assert all(line.isprintable() for line in stats.stdout.splitlines())
    assert "/x\\x1b[2J\\x1b]0;pwned\\x07\\r\\n     999  /fake.jpg" in stats.stdout
