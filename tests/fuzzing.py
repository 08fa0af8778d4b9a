"""What the fuzz tests share: a node of one worker in a child process, Hypothesis' settings for a test
that talks to it, one request on a connection of its own, and the rule most hold its answer to
(`sound_answer`)."""

from __future__ import annotations

import http.client
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple
from urllib.parse import SplitResult, urlsplit

import pyvips
from hypothesis import HealthCheck, settings

from tests.nodes import SAMPLES, NodeProcess

#: the samples the fuzzed nodes serve from a `local` folder
SAMPLE_NAMES = ("astronaut.jpg", "logo-transparent.png", "coffee.jpg")


@contextmanager
def one_worker(config: Path) -> Iterator[SplitResult]:
    """`edge serve` on `config` with one worker, in a child process: its address, until the block ends."""
    node = NodeProcess(config, "--workers", "1")
    try:
        yield urlsplit(node.url)
    finally:
        node.stop()


def copy_samples(folder: Path) -> Path:
    for name in SAMPLE_NAMES:
        shutil.copy(SAMPLES / name, folder / name)
    return folder


def fuzz_settings(examples: int) -> settings:
    """`examples` random inputs, no per-example deadline (a render may take seconds) and no example
    database (each run draws afresh); a module-scoped node fixture is fine to share."""
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


class Answer(NamedTuple):
    status: int
    body: bytes
    seconds: float


def exchange(node: SplitResult, method: str, target: str, *, timeout: float, headers: dict[str, str] | None = None,
             body: bytes | None = None) -> Answer:
    """Send one request on a new connection and read the whole answer, timed."""
    connection = http.client.HTTPConnection(node.hostname, node.port, timeout=timeout)
    started = time.monotonic()
    try:
        connection.request(method, target, body=body, headers=headers or {})
        response = connection.getresponse()
        return Answer(response.status, response.read(), time.monotonic() - started)
    finally:
        connection.close()


def decoded(body: bytes) -> pyvips.Image:
    """`body` decoded whole, every pixel read, refusing any warning: what the node rendered from a fuzzed
    input must be a sound image (never bytes it was given damaged, cached for a year)."""
    image = pyvips.Image.new_from_buffer(body, "", fail_on="warning")
    image.avg()
    return image


def sound_answer(node: SplitResult, method: str, target: str, *, statuses: set[int], bound: float,
                 headers: dict[str, str] | None = None, context: object = None) -> int:
    """One request's status, held to the fuzz tests' rule: one of `statuses` (never a 500) within `bound`
    seconds (never a hang), and a 200 GET's body a sound image (`decoded`). `context` names the input in a failure."""
    status, body, seconds = exchange(node, method, target, timeout=bound, headers=headers)
    context = context or (method, target, headers)
    assert status in statuses, (context, status)
    assert seconds < bound, context
    if status == 200 and method == "GET":
        decoded(body)
    return status
