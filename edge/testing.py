"""Testing an origin plugin (or the node itself) against a real node: part of the public plugin API.

    from edge.testing import running_node, solid_image

    def test_serves_a_resized_image(tmp_path):
        (tmp_path / "originals").mkdir()
        (tmp_path / "originals" / "red.png").write_bytes(solid_image(64, 48, (200, 0, 0), "png"))
        with running_node(CONFIG, tmp_path) as node:
            status, headers, body = node.get("/tr:w-32/red.png")
        assert status == 200

`running_node` starts `edge serve` in a child process, on a free port of 127.0.0.1, with the plugins
installed in (or on the `PYTHONPATH` of) the current environment, exactly as an operator runs it.
Every wait is bounded; the node is stopped (SIGTERM, then SIGKILL) when the block ends.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import resource
import signal
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pyvips
from prometheus_client.parser import text_string_to_metric_families

#: seconds a node may take to start, or to stop after SIGTERM
START_TIMEOUT = 30
#: seconds one request may take
REQUEST_TIMEOUT = 30


def write_config(directory: Path, text: str, name: str = "edge.toml") -> Path:
    """Write a config file; `[cache] dir` defaults to `cache/` beside it when the text has no [cache]."""
    text = textwrap.dedent(text)
    if "[cache]" not in text:
        text = '[cache]\ndir = "cache"\n' + text
    path = directory / name
    path.write_text(text)
    return path


class NodeProcess:
    """`edge serve` in a child process. Its stderr is read by a thread into `log`, so a busy node
    never blocks on a full pipe."""

    #: the nodes started in this process and still referenced: a test harness shows their logs when a
    #: test fails (`tests/conftest.py`)
    instances: weakref.WeakSet[NodeProcess] = weakref.WeakSet()

    def __init__(self, config_path: Path | None, *args: str, env: Mapping[str, str] | None = None,
                 stdout=None, nofile: tuple[int, int] | None = None,
                 edge: Sequence[str] = (sys.executable, "-m", "edge"), cwd: Path | None = None):
        """`nofile`: the (soft, hard) RLIMIT_NOFILE the node starts with; `edge`: the command to run
        (default: the `edge` package this Python imports)."""
        command = [*edge, "serve", "--port", "0", *args]
        if config_path is not None:
            command += ["--config", str(config_path)]
        self.config_path = config_path
        limit = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, nofile)) if nofile else None
        self.process = subprocess.Popen(command, stdout=stdout, stderr=subprocess.PIPE, text=True,
                                        env={**os.environ, **(env or {})}, cwd=cwd, preexec_fn=limit)
        self.log: list[str] = []
        self.started_at = time.monotonic()
        NodeProcess.instances.add(self)
        self._log_changed = threading.Condition()
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        try:
            self.url = self.wait_for_log(r"listening on (http://\S+)").group(1)
        except BaseException:
            self.stop()
            raise

    def _read_log(self) -> None:
        for line in self.process.stderr:
            with self._log_changed:
                self.log.append(line)
                self._log_changed.notify_all()
        self.process.stderr.close()
        with self._log_changed:
            self.log.append("")  # EOF: the process has exited
            self._log_changed.notify_all()

    def wait_for_log(self, pattern: str, timeout: float = START_TIMEOUT, start: int = 0) -> re.Match:
        """The first log line from index `start` on that matches `pattern`; bounded by `timeout`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._log_changed:
            while True:
                for line in self.log[start:]:
                    if match := regex.search(line):
                        return match
                    start += 1
                if self.log and self.log[-1] == "":
                    raise RuntimeError(f"edge serve exited without logging {pattern!r}:\n" + "".join(self.log))
                if not self._log_changed.wait(deadline - time.monotonic()):
                    raise TimeoutError(f"edge serve did not log {pattern!r} in {timeout}s")

    def worker_pids(self) -> list[int]:
        """The serving processes (`edge serve` supervises its workers)."""
        pid = self.process.pid
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]

    def stop(self, timeout: float = START_TIMEOUT) -> int:
        """SIGTERM, and the exit status; SIGKILL when it has not exited within `timeout`."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(timeout)
        self._reader.join(timeout)
        return code


@dataclass(frozen=True)
class Scrape:
    """One read of `/metrics`, as Prometheus parses it."""

    text: str

    def samples(self, name: str, **labels: str) -> dict[tuple, float]:
        return samples(self.text, name, **labels)

    def total(self, name: str, **labels: str) -> float:
        return total(self.text, name, **labels)


def samples(text: str, name: str, **labels: str) -> dict[tuple, float]:
    """The samples called `name` whose labels include `labels`: {sorted label items: value}."""
    return {tuple(sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == name and labels.items() <= s.labels.items()}


def total(text: str, name: str, **labels: str) -> float:
    return sum(samples(text, name, **labels).values())


class ServingNode:
    """A node started by `running_node`."""

    def __init__(self, process: NodeProcess):
        self._process = process
        self.base_url = process.url

    @property
    def log(self) -> list[str]:
        """What the node has logged so far, one line per item."""
        return list(self._process.log)

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
        """`GET path` → (status, headers (case-insensitive), body). Redirects are not followed."""
        parts = urlsplit(self.base_url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=REQUEST_TIMEOUT)
        try:
            connection.request("GET", path, headers=dict(headers or {}))
            response = connection.getresponse()
            return response.status, response.headers, response.read()
        finally:
            connection.close()

    def metrics(self) -> Scrape:
        status, _, body = self.get("/metrics")
        if status != 200:
            raise AssertionError(f"GET /metrics answered {status}")
        return Scrape(body.decode())

    def wait_for_log(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match:
        return self._process.wait_for_log(pattern, timeout)


@contextlib.contextmanager
def running_node(config_text: str, tmp_path: Path, *, env: Mapping[str, str] | None = None,
                 args: tuple[str, ...] = ()) -> Iterator[ServingNode]:
    """Write `config_text` to `tmp_path/edge.toml` (with `[cache] dir = "cache"` when it has no
    `[cache]`), run `edge serve` on it, yield the node, stop it. `env` adds environment variables;
    `args` are extra `edge serve` options (`"--workers", "2"`). Raises if the node does not start,
    with its log in the message."""
    process = NodeProcess(write_config(Path(tmp_path), config_text), *args, env=env)
    try:
        yield ServingNode(process)
    finally:
        process.stop()


# -- test images ------------------------------------------------------------------------------------
def solid_image(width: int, height: int, rgb: tuple[int, int, int], fmt: str = "jpg") -> bytes:
    """An image of one colour, encoded as `fmt` ("jpg", "png", "webp", …): what was served can be
    told by its colour, even after a resize."""
    image = (pyvips.Image.black(width, height) + list(rgb)).cast("uchar").copy(interpretation="srgb")
    return image.write_to_buffer(f".{fmt}")


def photo_image(width: int = 4000, height: int = 3000, fmt: str = "jpg") -> bytes:
    """A photo-sized image with detail everywhere (gradients and noise), so that it encodes to about
    the size of a real photo: 12 MP by default."""
    x = pyvips.Image.xyz(width, height)
    gradient = (x[0] * (255 / width)).bandjoin([x[1] * (255 / height), (x[0] + x[1]) * (255 / (width + height))])
    noise = pyvips.Image.gaussnoise(width, height, sigma=24, mean=0)
    image = (gradient + noise).cast("uchar").copy(interpretation="srgb")
    return image.write_to_buffer(f".{fmt}")


def centre_colour(body: bytes | pyvips.Image) -> tuple[int, int, int]:
    """The RGB colour at the centre of an encoded image (or a decoded one)."""
    image = body if isinstance(body, pyvips.Image) else pyvips.Image.new_from_buffer(body, "")
    rgb = image.colourspace("srgb")[0:3] if image.bands >= 3 else image.colourspace("srgb")
    return tuple(int(round(v)) for v in rgb.getpoint(image.width // 2, image.height // 2)[:3])


def image_size(body: bytes) -> tuple[int, int]:
    """(width, height) of an encoded image; fails if `body` is not one."""
    image = pyvips.Image.new_from_buffer(body, "")
    return image.width, image.height
