"""The `edge` command: `edge serve`, `edge check-config`, `edge purge`, `edge plugins`, `edge new-plugin`.

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

import tornado.netutil

from .config import Config, load_config
from .errors import ConfigError, EdgeError
from .pluginmanager import Plugins, load_plugins
from .purge import parse_target, purge_offline
from .scaffold import new_plugin

log = logging.getLogger("edge")

SHUTDOWN_GRACE_SECONDS = 10
RESTART_WINDOW_SECONDS = 60
MAX_RESTARTS_IN_WINDOW = 10


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edge", description="A self-hosted image edge node.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the node")
    serve.add_argument("--config", help="TOML config file (default: the embedded default)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, help="worker processes (0 = one per core)")
    check = commands.add_parser("check-config", help="validate a config and print it, secrets masked")
    check.add_argument("--config")
    purge_command = commands.add_parser(
        "purge", help="remove every cached output and original of a URL's path, or of a path prefix "
                      "(on the cache folder: works whether or not the node runs)")
    purge_command.add_argument("--config")
    target = purge_command.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="a URL the node serves, or its path: all its transformations go")
    target.add_argument("--prefix", help="a URL or path prefix: everything under it goes")
    purge_command.add_argument("--fleet", action="store_true",
                               help="also purge every other node of [fleet] peers through its purge API "
                                    "(exit status 3 when one, or the shared cache, was not purged)")
    plugins_command = commands.add_parser(
        "plugins", help="list the installed plugins, the origin types each provides, and those that "
                        "failed to load with the reason (exit status 1 when any failed)")
    plugins_command.add_argument("--json", action="store_true", help="print JSON")
    scaffold = commands.add_parser("new-plugin", help="create an origin plugin package to start from")
    scaffold.add_argument("name", help="the origin type it provides, e.g. sqlite")
    scaffold.add_argument("--dir", default=".", help="where to create its folder (default: here)")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("pyvips").setLevel(logging.WARNING)  # libvips narrates every thumbnail at INFO
    if args.command == "plugins":
        return _list_plugins(load_plugins(), as_json=args.json)
    if args.command == "new-plugin":
        return _new_plugin(args.name, Path(args.dir))
    try:
        config = load_config(args.config, load_plugins())
    except ConfigError as error:
        print(f"edge: config error: {error}", file=sys.stderr)
        return 1
    if args.command == "check-config":
        print(json.dumps(config.describe(), indent=2, default=str))
        return 0
    if args.command == "purge":
        return _purge(config, {"url": args.url} if args.url is not None else {"prefix": args.prefix}, args.fleet)
    workers = (os.cpu_count() or 1) if args.workers == 0 else args.workers
    return run(config.with_overrides(host=args.host, port=args.port, workers=workers))


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


def _purge(config: Config, target: dict[str, str | None], fleet: bool) -> int:
    try:
        status, answer = purge_offline(config, parse_target(target), fleet)
    except EdgeError as error:
        print(f"edge: {error.message}", file=sys.stderr)
        return 2
    except ConfigError as error:
        print(f"edge: config error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(answer))
    return 0 if status == 200 else 3


def run(config: Config) -> int:
    """Serve until SIGTERM/SIGINT."""
    config.cache.dir.mkdir(parents=True, exist_ok=True)
    metrics_dir = None
    if config.server.workers > 1:
        # /metrics must describe every worker. Set before prometheus-client is imported: it picks
        # its value store then. (One process keeps the faster in-memory values.)
        metrics_dir = tempfile.mkdtemp(prefix="edge-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        sockets = tornado.netutil.bind_sockets(config.server.port, config.server.host)
        port = sockets[0].getsockname()[1]

        def announce() -> None:  # once signals are handled and the workers exist
            log.info("listening on http://%s:%d with %d worker(s), config %s",
                     config.server.host, port, config.server.workers, config.source)

        if config.server.workers == 1:
            _serve_worker(config, sockets, announce)
        else:
            _supervise(config, sockets, announce)
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _serve_worker(config: Config, sockets: list, announce=lambda: None) -> None:
    from tornado.httpserver import HTTPServer

    from .server import Node, make_app  # imports libvips: only in the serving process

    async def serve() -> None:
        node = Node(config)
        await node.start()
        server = HTTPServer(make_app(node))
        server.add_sockets(sockets)
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


def _supervise(config: Config, sockets: list, announce) -> None:
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
                _serve_worker(config, sockets)
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
