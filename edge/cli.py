"""The `edge` command: `edge serve`, `edge check-config`, `edge purge`, `edge plugins`, `edge new-plugin`.

`serve` binds the listening socket in the parent, then forks the workers, which all accept on that
socket. The parent only supervises (`edge.supervisor`): restarts, SIGHUP reloads, SIGTERM drains.
libvips and the metrics values are only touched after the fork.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import tornado.netutil

from .config import Config, load_config
from .errors import ConfigError, EdgeError
from .pluginmanager import Plugins, load_plugins
from .purge import parse_target, purge_offline
from .scaffold import new_plugin
from .supervisor import Supervisor

log = logging.getLogger("edge")


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
        return _purge(config, {"url": args.url} if args.url is not None else {"prefix": args.prefix})
    workers = (os.cpu_count() or 1) if args.workers == 0 else args.workers

    def load() -> Config:  # at start and on SIGHUP: the file again, the command line's flags on top
        return load_config(args.config, load_plugins()).with_overrides(host=args.host, port=args.port,
                                                                       workers=workers)
    return run(config.with_overrides(host=args.host, port=args.port, workers=workers), load)


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


def run(config: Config, reload_config: Callable[[], Config]) -> int:
    """Serve until SIGTERM/SIGINT (exit status 0), or until the workers keep dying (1). SIGHUP calls
    `reload_config` (see `edge.supervisor`)."""
    from .httpserver import raise_fd_limit

    config.cache.dir.mkdir(parents=True, exist_ok=True)
    raise_fd_limit()  # before the fork: the workers inherit it
    metrics_dir = None
    multiprocess_metrics = config.server.workers > 1
    if multiprocess_metrics:
        # /metrics must describe every worker. Set before prometheus-client is imported: it picks
        # its value store then. (One process keeps the faster in-memory values.)
        metrics_dir = tempfile.mkdtemp(prefix="edge-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        sockets = tornado.netutil.bind_sockets(config.server.port, config.server.host)
        port = sockets[0].getsockname()[1]

        def announce(serving: Config) -> None:  # once the first workers serve
            log.info("listening on http://%s:%d with %d worker(s), config %s",
                     serving.server.host, port, serving.server.workers, serving.source)

        supervisor = Supervisor(config, sockets, reload_config, announce,
                                multiprocess_metrics)
        return supervisor.run()
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
