"""`edge warm`: request a list of URLs from a node so that its cache holds them before the traffic does.

The list is a text file, one URL a line (`#` comments and blank lines skipped): a path
(`/tr:w-300/shoes/red.jpg`), or a full URL (`https://img.example.com/shop/tr:w-300/red.jpg`), whose
path and query are asked from `--base-url` with its host in the `Host` header, so host-routed
endpoints warm too. Bounded: `--concurrency` requests at a time, each with a timeout; bodies are
counted, not kept.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from .settings import is_web_url, without_userinfo

MAX_CONCURRENCY = 64
#: seconds one request may take, at most
MAX_TIMEOUT = 3600.0
#: a longer line is not a URL anyone serves: counted as failed, not requested
MAX_LINE = 8192
PROGRESS_SECONDS = 0.5
BAR_WIDTH = 30


@dataclass
class Summary:
    total: int
    ok: int = 0
    client_errors: int = 0
    server_errors: int = 0
    failed: int = 0  # no HTTP answer: connection refused, timeout, a line that is not a URL
    bytes: int = 0
    seconds: float = 0.0
    done: int = field(init=False, default=0)
    #: why the first URL without an answer had none (a node down or the wrong port look alike otherwise)
    first_failure: str | None = field(init=False, default=None)

    def count(self, status: int | None, body_bytes: int, line: str = "", failure: str = "") -> None:
        self.done += 1
        self.bytes += body_bytes
        if status is None:
            self.failed += 1
            if self.first_failure is None:  # the line without its query, which may hold a signature
                self.first_failure = f"{line.partition('?')[0][:200]!r}: {failure}"
        elif status >= 500:
            self.server_errors += 1
        elif status >= 400:
            self.client_errors += 1
        else:
            self.ok += 1

    def line(self) -> str:
        return (f"{self.done} URLs in {self.seconds:.1f} s: {self.ok} ok, {self.client_errors} 4xx, "
                f"{self.server_errors} 5xx, {self.failed} failed; {self.bytes} bytes")


def url_lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8-sig", errors="replace") as lines:  # -sig: a Windows editor's byte-order mark
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#"):
                yield line


def target(base_url: str, line: str) -> tuple[str, dict[str, str]] | None:
    """The URL to request from the node and the headers to send, or None for a line that is no URL."""
    if len(line) > MAX_LINE or any(c.isspace() for c in line):
        return None
    headers = {}
    try:
        if "://" in line:
            parts = urlsplit(line)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                return None
            headers["Host"] = parts.netloc
        else:  # a path (`tr:w-300/a.jpg` has no scheme, whatever urlsplit thinks)
            parts = urlsplit("/" + line.lstrip("/"))
    except ValueError:  # `http://[::1`: an unclosed IPv6 literal
        return None
    path = parts.path if parts.path.startswith("/") else "/" + parts.path
    return base_url.rstrip("/") + path + (f"?{parts.query}" if parts.query else ""), headers


async def warm(urls: Path, base_url: str, *, concurrency: int, timeout: float, accept: str | None,
               progress: TextIO) -> Summary:
    summary = Summary(total=sum(1 for _ in url_lines(urls)))
    client = AsyncHTTPClient(force_instance=True, max_clients=concurrency)
    lines = url_lines(urls)
    started = time.monotonic()
    shown = [0.0]

    async def fetch(line: str) -> None:
        found = target(base_url, line)
        if found is None:
            summary.count(None, 0, line, "not a URL")
            return
        url, headers = found
        if accept:
            headers["Accept"] = accept
        received = [0]

        def count_chunk(chunk: bytes) -> None:
            received[0] += len(chunk)

        try:
            response = await client.fetch(HTTPRequest(url, headers=headers, request_timeout=timeout,
                                                      streaming_callback=count_chunk, follow_redirects=False),
                                          raise_error=False)  # Tornado 6: a failure with no HTTP answer is raised
            summary.count(response.code, received[0])
        except (OSError, HTTPClientError, ValueError) as error:
            summary.count(None, received[0], line, str(error))

    async def worker() -> None:
        for line in lines:  # shared iterator: each line goes to one worker
            await fetch(line)
            now = time.monotonic()
            if now - shown[0] >= PROGRESS_SECONDS:
                shown[0] = now
                summary.seconds = now - started
                _show(summary, progress, final=False)

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        client.close()
    summary.seconds = time.monotonic() - started
    _show(summary, progress, final=True)
    return summary


def _show(summary: Summary, progress: TextIO, *, final: bool) -> None:
    filled = BAR_WIDTH * summary.done // summary.total if summary.total else BAR_WIDTH
    text = (f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {summary.done}/{summary.total}  ok {summary.ok}  "
            f"4xx {summary.client_errors}  5xx {summary.server_errors}  failed {summary.failed}")
    if progress.isatty():
        progress.write("\r" + text + ("\n" if final else ""))
    else:
        progress.write(text + "\n")
    progress.flush()


def run(urls: str, base_url: str, concurrency: int, timeout: float, accept: str | None) -> int:
    """`edge warm`: exit status 0 when every URL had an answer under 500, 1 otherwise, 2 for bad usage."""
    path = Path(urls)
    try:
        if not path.is_file():  # a folder, or a pipe (`<(…)`): the list is read twice, its length first
            reason = "not a regular file (write the list to a file)" if path.exists() else "no such file"
            print(f"edge: --urls {urls}: {reason}", file=sys.stderr)
            return 2
        path.open("rb").close()
    except OSError as exc:  # another user's file: had been a traceback once the warm-up began
        print(f"edge: --urls {urls}: cannot read it: {exc.strerror}", file=sys.stderr)
        return 2
    if not is_web_url(base_url):
        print(f"edge: --base-url {without_userinfo(base_url)!r}: expected an http:// or https:// URL without a query",
              file=sys.stderr)
        return 2
    if not 0 < timeout <= MAX_TIMEOUT:  # also false for nan
        print(f"edge: --timeout: expected more than 0 and at most {MAX_TIMEOUT:g} seconds", file=sys.stderr)
        return 2
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        print(f"edge: --concurrency: expected 1 to {MAX_CONCURRENCY}", file=sys.stderr)
        return 2
    if accept is not None and any(ord(c) < 32 or ord(c) == 127 for c in accept):  # no header may hold one
        print("edge: --accept: holds a control character (a line break?)", file=sys.stderr)
        return 2
    summary = asyncio.run(warm(path, base_url, concurrency=concurrency, timeout=timeout, accept=accept,
                               progress=sys.stderr))
    print(summary.line())
    if summary.first_failure is not None:
        print(f"edge: {summary.failed} URL(s) had no answer; the first: {summary.first_failure}", file=sys.stderr)
    return 0 if summary.server_errors == 0 and summary.failed == 0 else 1
