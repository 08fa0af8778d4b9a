"""What `edge serve` would trip on before it serves a request, checked up front so that `serve` fails
in one line naming the problem, and `edge check-config` can say so before a deploy.
"""

from __future__ import annotations

import errno
import socket
import tempfile
from pathlib import Path

import tornado.netutil

from .config import Config
from .errors import StartupError


def usable_cache_dir(directory: Path, *, create: bool) -> None:
    """The cache folder exists (or, with `create`, is created) and this user can write files in it.
    Without `create`, a folder that does not exist yet passes when its nearest existing parent is
    writable (serve will create it)."""
    if create:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StartupError(f"cache folder {directory}: cannot create it: {exc.strerror}") from None
    target = directory
    while not target.exists():
        target = target.parent
    if not target.is_dir():
        raise StartupError(f"cache folder {directory}: {target} is not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=target, prefix=".edge-check-"):
            pass
    except OSError as exc:
        raise StartupError(f"cache folder {directory}: cannot write in {target}: {exc.strerror}") from None


def bind(host: str, port: int, *, reuse_port: bool = False) -> list[socket.socket]:
    """The listening sockets, or a `StartupError` naming the address."""
    try:
        return tornado.netutil.bind_sockets(port, host, reuse_port=reuse_port)
    except OSError as exc:
        reason = "already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        raise StartupError(f"cannot listen on {host}:{port}: {reason}") from None


def bind_per_worker(host: str, port: int, workers: int) -> list[list[socket.socket]]:
    """`workers` sets of listening sockets on one port (`SO_REUSEPORT`), one set per worker: the kernel
    spreads new connections evenly over them by a hash of the client's address and port. (One shared
    socket lets the first worker awake accept a whole burst of connections.) The port is first taken
    without `SO_REUSEPORT`, so that a port another process listens on is still "already in use"
    rather than silently shared with it; port 0 picks one free port for all sets."""
    probe = bind(host, port)
    port = probe[0].getsockname()[1]
    for sock in probe:
        sock.close()
    return [bind(host, port, reuse_port=True) for _ in range(workers)]


def bindable(host: str, port: int) -> None:
    for sock in bind(host, port):
        sock.close()


def check(config: Config, *, bind_check: bool) -> list[str]:
    """`edge check-config`'s checks beyond the file itself; the problems found (empty: none)."""
    problems = []
    try:
        usable_cache_dir(config.cache.dir, create=False)
    except StartupError as error:
        problems.append(str(error))
    if bind_check:
        addresses = [config.server.port] + ([config.server.metrics_port] if config.server.metrics_port else [])
        for port in addresses:
            try:
                bindable(config.server.host, port)
            except StartupError as error:
                problems.append(str(error))
    return problems
