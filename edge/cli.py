"""The `edge` command: `edge serve`, `edge check-config`, `edge purge`, `edge plugins`, `edge new-plugin`;
`edge warm` and `edge cache stats` live in `edge.warm` and `edge.cachestats`.

`serve` binds the listening socket in the parent, then (with `workers > 1`) forks the workers, which
all accept on that socket. The parent only supervises: it restarts a worker that dies, and on
SIGTERM/SIGINT stops them all and waits for them, so no worker outlives it. libvips and the metrics
values are only touched after the fork.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import dataclasses
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from . import __version__, cachestats, checks
from . import warm as warm_command
from .config import Config, WithoutEnvironment, load_config
from .errors import ConfigError, EdgeError
from .logs import configure_logging
from .pluginmanager import Plugins, load_plugins
from .purge import parse_target, purge_offline
from .scaffold import new_plugin

log = logging.getLogger("edge")

SHUTDOWN_GRACE_SECONDS = 10
RESTART_WINDOW_SECONDS = 60
MAX_RESTARTS_IN_WINDOW = 10


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edge", description="A self-hosted image edge node.")
    parser.add_argument("--version", action="version", version=f"edge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the node")
    serve.add_argument("--config", help="TOML config file (default: $EDGE_CONFIG, else the embedded default)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, help="worker processes (0 = one per core)")
    check = commands.add_parser("check-config", help="validate a config and print it, secrets masked")
    check.add_argument("--config")
    check.add_argument("--no-env", action="store_true",
                       help="do not read the environment: every ${NAME} stands for a placeholder")
    check.add_argument("--bind-check", action="store_true", help="also check that the listening address is free")
    purge_command = commands.add_parser(
        "purge", help="remove every cached output and original of a URL's path, or of a path prefix "
                      "(on the cache folder: works whether or not the node runs)")
    purge_command.add_argument("--config")
    target = purge_command.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="a URL the node serves, or its path: all its transformations go")
    target.add_argument("--prefix", help="a URL or path prefix: everything under it goes")
    warm = commands.add_parser("warm", help="request a list of URLs from a node, so that its cache holds them")
    warm.add_argument("--urls", required=True, help="a file with one URL or path a line")
    warm.add_argument("--base-url", required=True, help="the node, e.g. http://127.0.0.1:8080")
    warm.add_argument("--concurrency", type=int, default=4, help="requests at a time (default 4, at most 64)")
    warm.add_argument("--timeout", type=float, default=60, help="seconds for one request (default 60)")
    warm.add_argument("--accept", help="the Accept header to send (f-auto outputs are cached per format)")
    cache_command = commands.add_parser("cache", help="look at the cache folder")
    cache_commands = cache_command.add_subparsers(dest="cache_command", required=True)
    cache_stats = cache_commands.add_parser(
        "stats", help="entries and bytes per tier, oldest entries, originals with the most outputs "
                      "(read-only: works whether or not the node runs)")
    cache_stats.add_argument("--config")
    cache_stats.add_argument("--top", type=int, default=10, help="originals to list (default 10)")
    cache_stats.add_argument("--json", action="store_true", help="print JSON")
    plugins_command = commands.add_parser(
        "plugins", help="list the installed plugins, the origin types each provides, and those that "
                        "failed to load with the reason (exit status 1 when any failed)")
    plugins_command.add_argument("--json", action="store_true", help="print JSON")
    scaffold = commands.add_parser("new-plugin", help="create an origin plugin package to start from")
    scaffold.add_argument("name", help="the origin type it provides, e.g. sqlite")
    scaffold.add_argument("--dir", default=".", help="where to create its folder (default: here)")
    args = parser.parse_args(argv)

    configure_logging("info", "text")
    if args.command == "warm":  # a client of a node: no config
        return warm_command.run(args.urls, args.base_url, args.concurrency, args.timeout, args.accept)
    if args.command == "plugins":
        return _list_plugins(load_plugins(), as_json=args.json)
    if args.command == "new-plugin":
        return _new_plugin(args.name, Path(args.dir))
    try:
        config = load_config(args.config or os.environ.get("EDGE_CONFIG") or None, load_plugins(),
                             environ=WithoutEnvironment() if getattr(args, "no_env", False) else None)
    except ConfigError as error:
        print(f"edge: config error: {error}", file=sys.stderr)
        return 1
    configure_logging(config.server.log_level, config.server.log_format)
    if args.command == "check-config":
        problems = checks.check(config, bind_check=args.bind_check)
        print(json.dumps(config.describe(), indent=2, default=str))
        for problem in problems:
            print(f"edge: {problem}", file=sys.stderr)
        return 1 if problems else 0
    if args.command == "cache":
        return cachestats.run(config, args.top, args.json)
    if args.command == "purge":
        return _purge(config, {"url": args.url} if args.url is not None else {"prefix": args.prefix})
    workers = (os.cpu_count() or 1) if args.workers == 0 else args.workers
    try:
        return run(config.with_overrides(host=args.host, port=args.port, workers=workers))
    except checks.StartupError as error:
        print(f"edge: {error}", file=sys.stderr)
        return 1


def _list_plugins(plugins: Plugins, *, as_json: bool) -> int:
    if as_json:
        print(json.dumps([dataclasses.asdict(plugin) for plugin in plugins.loaded], indent=2))
    else:
        print(plugins.report())
    return 1 if plugins.failed else 0


def _new_plugin(name: str, parent: Path) -> int:
    try:
        folder = new_plugin(name, parent)
    except ValueError as error:
        print(f"edge: {error}", file=sys.stderr)
        return 2
    print(f"created {folder}\n  pip install -e '{folder}[test]' && pytest {folder}")
    return 0


def _purge(config: Config, target: dict[str, str | None]) -> int:
    try:
        print(json.dumps(purge_offline(config, parse_target(target))))
    except EdgeError as error:
        print(f"edge: {error.message}", file=sys.stderr)
        return 2
    return 0


def run(config: Config) -> int:
    """Serve until SIGTERM/SIGINT."""
    checks.usable_cache_dir(config.cache.dir, create=True)
    metrics_dir = None
    if config.server.workers > 1:
        # /metrics must describe every worker. Set before prometheus-client is imported: it picks
        # its value store then. (One process keeps the faster in-memory values.)
        metrics_dir = tempfile.mkdtemp(prefix="edge-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        sockets = checks.bind(config.server.host, config.server.port)
        port = sockets[0].getsockname()[1]
        metrics_sockets = ([] if config.server.metrics_port is None
                           else checks.bind(config.server.host, config.server.metrics_port))

        def announce() -> None:  # once signals are handled and the workers exist
            log.info("listening on http://%s:%d with %d worker(s), config %s",
                     config.server.host, port, config.server.workers, config.source)
            if metrics_sockets:
                log.info("metrics on http://%s:%d/metrics", config.server.host,
                         metrics_sockets[0].getsockname()[1])

        if config.server.workers == 1:
            _serve_worker(config, sockets, announce, metrics_sockets)
        else:
            _supervise(config, sockets, announce, metrics_sockets)
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _serve_worker(config: Config, sockets: list, announce=lambda: None, metrics_sockets: list = ()) -> None:
    from tornado.httpserver import HTTPServer

    from .server import Node, make_app, make_metrics_app  # imports libvips: only in the serving process

    async def serve() -> None:
        node = Node(config)
        await node.start()
        server = HTTPServer(make_app(node))
        server.add_sockets(sockets)
        if metrics_sockets:
            HTTPServer(make_metrics_app(node)).add_sockets(metrics_sockets)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        announce()
        await stopping.wait()
        server.stop()
        try:
            await asyncio.wait_for(server.close_all_connections(), SHUTDOWN_GRACE_SECONDS)
        except TimeoutError:
            log.warning("connections still open after %ss; closing anyway", SHUTDOWN_GRACE_SECONDS)
        await node.stop()

    asyncio.run(serve())


def _supervise(config: Config, sockets: list, announce, metrics_sockets: list) -> None:
    from prometheus_client import multiprocess

    children: dict[int, int] = {}  # pid → worker number
    restarts: list[float] = []
    stopping = False

    handled = {signal.SIGTERM, signal.SIGINT, signal.SIGALRM}

    def spawn(number: int) -> None:
        # Signals wait until the child has dropped the supervisor's handlers.
        signal.pthread_sigmask(signal.SIG_BLOCK, handled)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                for signum in handled:
                    signal.signal(signum, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, handled)
                _die_with_parent()
                _serve_worker(config, sockets, metrics_sockets=metrics_sockets)
            except BaseException:
                log.exception("worker %d crashed", number)
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        children[pid] = number
        signal.pthread_sigmask(signal.SIG_UNBLOCK, handled)

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        if signum == signal.SIGALRM:  # the grace period is over
            for pid in children:
                _kill(pid, signal.SIGKILL)
            return
        if not stopping:
            stopping = True
            log.info("stopping %d worker(s)", len(children))
            for pid in children:
                _kill(pid, signal.SIGTERM)
            signal.alarm(SHUTDOWN_GRACE_SECONDS + 5)

    for signum in handled:
        signal.signal(signum, stop)
    for number in range(config.server.workers):
        spawn(number)
    announce()
    while children:
        pid, status = os.wait()
        number = children.pop(pid, None)
        if number is None:
            continue
        multiprocess.mark_process_dead(pid)
        if stopping:
            continue
        now = time.monotonic()
        restarts[:] = [t for t in restarts if now - t < RESTART_WINDOW_SECONDS] + [now]
        if len(restarts) > MAX_RESTARTS_IN_WINDOW:
            log.critical("workers keep dying; stopping the node")
            stop(signal.SIGTERM, None)
            continue
        spawn(number)
        log.error("worker %d (pid %d) exited with status %d; restarted", number, pid, status)
    signal.alarm(0)


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _die_with_parent() -> None:
    """Linux: a worker gets SIGTERM if the supervisor dies, even by SIGKILL, so none is orphaned."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main())
