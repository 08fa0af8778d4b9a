"""The `edge` command: `edge serve`, `edge check-config`, `edge purge`, `edge url`, `edge plugins`,
`edge new-plugin`, `edge cloudinary-check`; `edge warm` and `edge cache stats` live in `edge.warm` and
`edge.cachestats`.

`serve` binds the listening sockets in the parent (one per worker, on one port), then forks the
workers, each accepting on its own. The parent only supervises (`edge.supervisor`): restarts, SIGHUP
reloads, SIGTERM drains.
The parent imports what the workers serve with before forking (`edge.supervisor.preload`), so they share
it; libvips renders and the metrics values are only touched after the fork.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from . import __version__, cachestats, checks, cloudinary_check, origin_check, signing
from . import warm as warm_command
from .config import Config, Placeholders, load_config, per_core
from .cores import usable_cores
from .errors import BadRequest, ConfigError, EdgeError
from .logs import configure_logging
from .pluginmanager import DISTRIBUTION, load_plugins
from .purge import parse_target, purge_offline
from .scaffold import new_plugin
from .settings import host_in_url, is_web_url, listen_host, redact
from .supervisor import Supervisor, threads_before_fork
from .transform.options import parse_transformation

log = logging.getLogger("edge")


def main(argv: list[str] | None = None) -> int:
    _open_standard_streams()
    args = _parser().parse_args(argv)
    configure_logging("info", "text")
    try:
        return args.run(args)
    except BrokenPipeError:
        # the reader of stdout went away (`edge plugins --json | head`): nothing left to say. stdout goes to
        # /dev/null so that the interpreter's last flush of it does not fail again on the way out
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _open_standard_streams() -> None:
    """Standard input, output and error on /dev/null where they were closed (`edge serve <&- >&- 2>&-`,
    a careless init script): else the first files the node opens take their numbers, and the access log
    and diagnostics are written into the listening socket, a pipe, or a cache database."""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
        except OSError:
            opened = os.open(os.devnull, os.O_RDWR)  # the lowest free number: `fd`, lower ones being open
            if opened != fd:
                os.dup2(opened, fd)
                os.close(opened)
        if getattr(sys, name) is None:  # Python found it closed at start
            setattr(sys, name, open(fd, mode, closefd=False, encoding="utf-8", errors="backslashreplace"))


def _configured(command: Callable[[Config, argparse.Namespace], int], *, secrets_unused: bool = False
                ) -> Callable[[argparse.Namespace], int]:
    """`command` given the config its `--config` names (else `$EDGE_CONFIG`, else the embedded default),
    logging as that config says; a config error is exit status 1. `secrets_unused`: a variable the shell has
    not set is a placeholder (`Placeholders`), not an error."""
    def run(args: argparse.Namespace) -> int:
        environ = (Placeholders() if getattr(args, "no_env", False)
                   else Placeholders(os.environ) if secrets_unused else None)
        try:
            config = load_config(_config_path(args), load_plugins(), environ=environ)
        except ConfigError as error:
            print(f"edge: config error: {error}", file=sys.stderr)
            return 1
        configure_logging(config.server.log_level, config.server.log_format)
        return command(config, args)
    return run


def _config_path(args: argparse.Namespace) -> str | None:
    if args.config == "":  # a script's unset variable (`--config "$CONF"`): never the embedded default
        raise ConfigError("--config: an empty path (leave --config out for $EDGE_CONFIG or the embedded default)")
    return args.config or os.environ.get("EDGE_CONFIG") or None


def _int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer within the bounds the same `[server]` key has in the file."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer from {low} to {high}, got {value}")
        return value
    return parse


def _listen_host(text: str) -> str:
    """An argparse type: `[server] host`'s rules (`listen_host`)."""
    try:
        return listen_host(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _parser() -> argparse.ArgumentParser:
    """The command line: each subcommand's options, and the function that runs it (`run`)."""
    parser = argparse.ArgumentParser(prog="edge", description="A self-hosted image edge node.")
    parser.add_argument("--version", action="version", version=f"edge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the node")
    serve.add_argument("--config", help="TOML config file (default: $EDGE_CONFIG, else the embedded default)")
    serve.add_argument("--host", type=_listen_host)
    serve.add_argument("--port", type=_int_in(0, 65535))
    serve.add_argument("--workers", type=_int_in(0, 256), help="worker processes (0 = one per usable core)")
    serve.set_defaults(run=_configured(_serve))
    check = commands.add_parser("check-config", help="validate a config and print it, secrets masked")
    check.add_argument("--config")
    check.add_argument("--no-env", action="store_true",
                       help="do not read the environment: every ${NAME} stands for a placeholder")
    check.add_argument("--bind-check", action="store_true", help="also check that the listening address is free")
    check.add_argument("--fetch", action="append", metavar="URL", default=[],
                       help="also ask the origins of the URL's endpoint for its original, in order, and say what "
                            "each answered, and use the shared cache's bucket (repeatable; exit status 1 when an "
                            "original is not found or not an image, or the bucket fails)")
    check.set_defaults(run=_configured(_check_config_command))
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
    purge_command.set_defaults(run=_configured(_purge, secrets_unused=True))
    warm = commands.add_parser("warm", help="request a list of URLs from a node, so that its cache holds them")
    warm.add_argument("--urls", required=True, help="a file with one URL or path a line")
    warm.add_argument("--base-url", required=True, help="the node, e.g. http://127.0.0.1:8080")
    warm.add_argument("--concurrency", type=int, default=4, help="requests at a time (default 4, at most 64)")
    warm.add_argument("--timeout", type=float, default=60, help="seconds for one request (default 60)")
    warm.add_argument("--accept", help="the Accept header to send (f-auto outputs are cached per format)")
    warm.set_defaults(run=_warm)  # a client of a node: no config
    cache_command = commands.add_parser("cache", help="look at the cache folder")
    cache_commands = cache_command.add_subparsers(dest="cache_command", required=True)
    cache_stats = cache_commands.add_parser(
        "stats", help="entries and bytes per tier, oldest entries, originals with the most outputs "
                      "(read-only: works whether or not the node runs)")
    cache_stats.add_argument("--config")
    cache_stats.add_argument("--top", type=int, default=10, help="originals to list (default 10; 0: none)")
    cache_stats.add_argument("--json", action="store_true", help="print JSON")
    cache_stats.set_defaults(run=_configured(_cache_stats, secrets_unused=True))
    plugins_command = commands.add_parser(
        "plugins", help="list the installed plugins, the origin types each provides, and those that "
                        "failed to load with the reason (exit status 1 when any failed)")
    plugins_command.add_argument("--json", action="store_true", help="print JSON")
    plugins_command.set_defaults(run=_list_plugins)
    scaffold = commands.add_parser("new-plugin", help="create an origin plugin package to start from")
    scaffold.add_argument("name", help="the origin type it provides, e.g. sqlite")
    scaffold.add_argument("--dir", default=".", help="where to create its folder (default: here)")
    scaffold.set_defaults(run=_new_plugin)
    url_command = commands.add_parser(
        "url", help="build an image URL for an endpoint, signed with its private_key when it has one")
    url_command.add_argument("--config")
    url_command.add_argument("--endpoint", default="", help="endpoint id (default: the default endpoint)")
    url_command.add_argument("--path", required=True, help="the original's path, unencoded (encoded as the SDKs do)")
    url_command.add_argument("--tr", help="transformation, e.g. w-300,h-200")
    url_command.add_argument("--tr-position", choices=("path", "query"), default="path",
                             help="a tr: path segment (default) or ?tr=")
    expiry = url_command.add_mutually_exclusive_group()
    expiry.add_argument("--expires-in", type=int, metavar="SECONDS", help="the URL expires this many seconds from now")
    expiry.add_argument("--expires-at", type=int, metavar="UNIX", help="the URL expires at this unix time")
    url_command.add_argument("--base-url", help="the node's public URL (default: https://<the endpoint's first "
                                                "host>, else the [server] address); /<id> is added unless it "
                                                "is one of the endpoint's hosts")
    url_command.set_defaults(run=_configured(_url))
    cloudinary = commands.add_parser(
        "cloudinary-check", help="whether this node serves a list of existing Cloudinary URLs, and which "
                                 "words stop the others")
    cloudinary.add_argument("--config")
    cloudinary.add_argument("--urls", required=True, help="a file of URLs, one a line, or - for stdin")
    cloudinary.add_argument("--base-url", help="also fetch each from the node running there; the answer must decode")
    cloudinary.set_defaults(run=_configured(_cloudinary_check))
    return parser


def _serve(config: Config, args: argparse.Namespace) -> int:
    workers = None if args.workers is None else per_core(args.workers)

    def load() -> Config:  # on SIGHUP: the file again, the command line's flags on top
        loaded = load_config(_config_path(args), load_plugins()).with_overrides(host=args.host, port=args.port,
                                                                                workers=workers)
        if (reason := threads_before_fork()) is not None:  # the threads stay: the workers replaced from now on hang
            raise ConfigError(f"{loaded.source}: reading it started threads in the supervisor, restart the node once "
                              f"the plugin is mended: {reason}")
        try:  # checked as at start: a folder the new workers cannot use is refused, not served uncached
            checks.usable_cache_dir(loaded.cache.dir, create=True)
        except checks.StartupError as error:
            if not checks.owns(loaded.cache.dir):
                raise ConfigError(loaded.masked(f"{loaded.source}: [cache] dir: {error}")) from None
            # but the folder the node serves from, failing since (a disk gone read-only): its running workers
            # serve uncached where they must, and a reload refused for it had blocked every change meanwhile
            log.warning("SIGHUP: [cache] dir: %s: the new workers serve without it where they must, as the running "
                        "ones do", loaded.masked(str(error)))
        try:
            checks.own_cache_dir(loaded.cache.dir)
        except checks.StartupError as error:
            raise ConfigError(loaded.masked(f"{loaded.source}: [cache] dir: {error}")) from None
        return loaded
    try:
        return run(config.with_overrides(host=args.host, port=args.port, workers=workers), load)
    except checks.StartupError as error:
        print(f"edge: {config.masked(str(error))}", file=sys.stderr)
        return 1


def _check_config_command(config: Config, args: argparse.Namespace) -> int:
    """`edge check-config`: `_check_config`, told whether this process, its plugins imported and its config read,
    runs threads that `edge serve` would refuse to fork its workers beside."""
    return _check_config(config, args, threads_before_fork())


def _check_config(config: Config, args: argparse.Namespace, threads: str | None = None) -> int:
    problems = checks.check(config, bind_check=args.bind_check)
    if threads is not None:
        problems.append(f"edge serve would not start its workers: {threads}")
    # a `Secret` prints masked; a plugin's public attribute that holds a revealed one (an `Authorization`
    # header made up front) would not be: masked here as in the logs
    print(config.masked(redact(json.dumps(config.describe(), indent=2, default=str))))
    for problem in problems:
        print(f"edge: {config.masked(redact(str(problem)))}", file=sys.stderr)
    for warning in checks.warnings(config):
        print(f"edge: warning: {config.masked(warning)}", file=sys.stderr)
    if problems:
        return 1
    if args.fetch:
        served, report = origin_check.check(config, args.fetch)
        print(report, end="")
        return 0 if served else 1
    return 0


def _warm(args: argparse.Namespace) -> int:
    return warm_command.run(args.urls, args.base_url, args.concurrency, args.timeout, args.accept)


def _cache_stats(config: Config, args: argparse.Namespace) -> int:
    return cachestats.run(config, args.top, args.json)


@contextmanager
def _left_to_the_cache_folders_owner(config: Config) -> Iterator[None]:
    """Run as root (`sudo edge purge`), give what the block made in the cache folder to the folder's owner, the
    node's user: a pending purge left there was root's, and the node's workers could not open it (never tried
    again, nor removed); so was a tier's database the command made. The folder's entries and theirs are looked at
    (a tier's values lie deeper, and a command writes none). Not by running as that user instead: a module a
    command imports late may be readable by root alone (a Python installed in root's home)."""
    try:
        owner = config.cache.dir.stat()
    except OSError:  # absent: the command makes nothing there
        owner = None
    if owner is None or owner.st_uid == 0 or os.geteuid() != 0:
        yield
        return
    folder = config.cache.dir.resolve()
    before = _roots_entries(folder)
    try:
        yield
    finally:
        _roots_entries(folder, give_to=owner, spare=before)


def _roots_entries(folder: Path, give_to: os.stat_result | None = None,
                   spare: frozenset[tuple[int, int]] = frozenset()) -> frozenset[tuple[int, int]]:
    """The (device, inode) of root's folders and files in `folder` and its folders; those not in `spare` given to
    `give_to`'s owner. The folder belongs to the node's user, who may have put links there: each entry is opened
    without following a symbolic link and changed through that descriptor (a path could be a link to /etc by the
    time of the change), and a file with another name elsewhere (a hard link) is left as it is."""
    found = set()

    def visit(directory: int, depth: int) -> None:
        for name in os.listdir(directory):
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
                             dir_fd=directory)
            except OSError:  # a symbolic link, a socket, gone meanwhile
                continue
            try:
                entry = os.fstat(fd)
                made = (entry.st_dev, entry.st_ino)
                if entry.st_uid == 0 and (stat.S_ISDIR(entry.st_mode)
                                          or (stat.S_ISREG(entry.st_mode) and entry.st_nlink == 1)):
                    found.add(made)
                    if give_to is not None and made not in spare:
                        os.fchown(fd, give_to.st_uid, give_to.st_gid)
                if depth == 1 and stat.S_ISDIR(entry.st_mode):
                    visit(fd, 2)
            except OSError:
                pass
            finally:
                os.close(fd)

    try:
        top = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return frozenset()
    try:
        visit(top, 1)
    finally:
        os.close(top)
    return frozenset(found)


def _list_plugins(args: argparse.Namespace) -> int:
    plugins = load_plugins()
    if args.json:
        print(json.dumps([dataclasses.asdict(plugin) for plugin in plugins.loaded], indent=2))
    else:
        print(plugins.report())
    return 1 if plugins.failed or plugins.conflicts else 0


def _new_plugin(args: argparse.Namespace) -> int:
    # a type an installed plugin provides: what a second provider would come to (`why`)
    taken = {name: plugin for plugin in load_plugins().loaded for name in plugin.origin_types}
    if (plugin := taken.get(args.name)) is not None:
        provider = f"{plugin.distribution or plugin.module} {plugin.version or ''}".strip()
        built_in = plugin.distribution == DISTRIBUTION
        why = ("a plugin providing a built-in type is skipped, and the built-in serves" if built_in
               else "two plugins with one type name are refused wherever it is used")
        print(f"edge: origin type {args.name!r} is already provided by {provider}: {why}; choose another name",
              file=sys.stderr)
        return 2
    try:
        folder = new_plugin(args.name, Path(args.dir))
    except ValueError as error:
        print(f"edge: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # --dir a file, or in a folder this user cannot write
        print(f"edge: --dir: cannot write {error.filename}: {error.strerror}", file=sys.stderr)
        return 1
    print(f"created {folder}\n  pip install -e '{folder}[test]' && pytest {folder}")
    return 0


def _purge(config: Config, args: argparse.Namespace) -> int:
    target = {"url": args.url} if args.url is not None else {"prefix": args.prefix}
    try:
        if args.fleet or config.shared_cache is not None:  # the peers' token, the shared tier's keys: every secret
            config = load_config(_config_path(args), load_plugins())
        with _left_to_the_cache_folders_owner(config):
            status, answer = purge_offline(config, parse_target(target), args.fleet)
    except EdgeError as error:
        print(f"edge: {error.message}", file=sys.stderr)
        return 2
    except ConfigError as error:
        print(f"edge: config error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(answer))
    return 0 if status == 200 else 3


#: the furthest expiry `edge url` signs, in seconds from now (ten years)
MAX_EXPIRES_IN = 10 * 365 * 86400


def _url(config: Config, args: argparse.Namespace) -> int:
    endpoint = next((e for e in config.endpoints if e.id == args.endpoint), None)
    if endpoint is None:
        print(f"edge: no endpoint has id {args.endpoint!r}", file=sys.stderr)
        return 2
    if not args.path.strip("/"):
        print("edge: --path must name an original", file=sys.stderr)
        return 2
    if any(not part.isprintable() for part in (args.path, args.tr or "")):
        print("edge: --path and --tr may not hold control characters (CR, LF, …)", file=sys.stderr)
        return 2
    if any(segment in (".", "..") for segment in args.path.split("/")):
        print("edge: --path may not hold . or .. segments (the node never serves them)", file=sys.stderr)
        return 2
    if args.tr:
        try:  # what the node would answer 400 for is no URL to hand out
            # a signed URL may ask for any transformation, on a `named_only` endpoint too
            parse_transformation(args.tr, named=config.named_transformations,
                                 named_only=endpoint.named_only and endpoint.private_key is None)
        except BadRequest as error:
            print(f"edge: --tr: {error.message}", file=sys.stderr)
            return 2
    if args.expires_in is not None and not 0 < args.expires_in <= MAX_EXPIRES_IN:
        print(f"edge: --expires-in must be from 1 to {MAX_EXPIRES_IN} seconds (ten years)", file=sys.stderr)
        return 2
    expires_at = int(time.time()) + args.expires_in if args.expires_in is not None else args.expires_at
    if expires_at is not None and expires_at > time.time() + MAX_EXPIRES_IN:
        print("edge: --expires-at is more than ten years away", file=sys.stderr)
        return 2
    if args.base_url is not None and not is_web_url(args.base_url):
        print("edge: --base-url: expected an http:// or https:// URL without a query", file=sys.stderr)
        return 2
    if endpoint.private_key is None and expires_at is not None:
        print(f"edge: endpoint {args.endpoint!r} has no private_key: an expiry needs a signed URL", file=sys.stderr)
        return 2
    server = config.server
    listening = f"http://{host_in_url(server.host)}:{server.port}"
    base = signing.endpoint_base(endpoint, args.base_url, listening)
    url = signing.unsigned_url(args.path, args.tr, in_query=args.tr_position == "query")
    if endpoint.private_key is not None:
        url = signing.sign(endpoint.private_key.reveal(), url, expires_at)
    print(f"{base}/{url}")
    return 0


def _cloudinary_check(config: Config, args: argparse.Namespace) -> int:
    if args.base_url is not None and not is_web_url(args.base_url):
        print("edge: --base-url: expected an http:// or https:// URL without a query", file=sys.stderr)
        return 2
    urls = args.urls
    try:
        source = sys.stdin if urls == "-" else open(urls, encoding="utf-8-sig", errors="replace")
    except OSError as error:
        print(f"edge: {urls}: {error.strerror}", file=sys.stderr)
        return 2
    with source:
        verdicts, text = cloudinary_check.check(config, source, args.base_url)
    sys.stdout.write(text)
    return 0 if all(v.served for v in verdicts) else 1


def run(config: Config, reload_config: Callable[[], Config]) -> int:
    """Serve until SIGTERM/SIGINT (exit status 0), or until the workers keep dying (1). SIGHUP calls
    `reload_config` (see `edge.supervisor`)."""
    from .httpserver import raise_fd_limit

    if (reason := threads_before_fork()) is not None:
        raise checks.StartupError(f"cannot start workers: {reason}")
    checks.usable_cache_dir(config.cache.dir, create=True)
    checks.own_cache_dir(config.cache.dir)
    for warning in checks.warnings(config):
        log.warning("%s", config.masked(warning))
    cores = usable_cores()  # what `workers = 0` and `transform_threads = 0` counted: said, as a limit can be a surprise
    log.info("usable cores: %d (%s); %d worker(s) of %d transform thread(s)", cores.count, cores.source,
             config.server.workers, config.server.transform_threads)
    if (warning := checks.too_few_descriptors(config, raise_fd_limit())) is not None:  # before the fork: inherited
        log.warning("%s", warning)
    metrics_dir = None
    multiprocess_metrics = config.server.workers > 1
    if multiprocess_metrics:
        # /metrics must describe every worker. Set before prometheus-client is imported: it picks
        # its value store then. (One process keeps the faster in-memory values.)
        metrics_dir = _make_metrics_dir()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        sockets = checks.bind_per_worker(config.server.host, config.server.port, config.server.workers)
        port = sockets[0][0].getsockname()[1]
        metrics_sockets = ([] if config.server.metrics_port is None
                           else checks.bind(config.server.metrics_address, config.server.metrics_port))

        def announce(serving: Config) -> None:  # once the first workers serve
            log.info("listening on http://%s:%d with %d worker(s), config %s",
                     host_in_url(serving.server.host), port, serving.server.workers, serving.source)
            if metrics_sockets:
                log.info("metrics on http://%s:%d/metrics", host_in_url(serving.server.metrics_address),
                         metrics_sockets[0].getsockname()[1])

        supervisor = Supervisor(config, sockets, reload_config, announce, multiprocess_metrics,
                                metrics_sockets)
        return supervisor.run()
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


#: the multiprocess metrics folder's name in the temporary folder: this, the supervisor's pid, `-`
METRICS_DIR_PREFIX = "edge-metrics-"


def _make_metrics_dir() -> str:
    """The workers' metrics folder, in the temporary folder (a read-only container without a tmpfs on
    /tmp has none: a one-line startup error, not a traceback)."""
    try:
        _remove_orphan_metrics_dirs()
        folder = tempfile.mkdtemp(prefix=f"{METRICS_DIR_PREFIX}{os.getpid()}-")
    except OSError as error:
        raise checks.StartupError(
            f"no writable temporary folder for the workers' metrics files ({error.strerror or error}): mount a "
            "tmpfs on /tmp (docker run --tmpfs /tmp) or set TMPDIR to a writable folder") from None
    asked = os.environ.get("TMPDIR")
    if asked and Path(asked).resolve() != Path(folder).parent.resolve():  # Python's `tempfile` passes over it
        log.warning("TMPDIR=%s is not a folder this user can write in: the workers' metrics files are in %s", asked,
                    folder)
    return folder


def _remove_orphan_metrics_dirs() -> None:
    """Remove the metrics folders of supervisors that are gone without removing theirs (killed by
    SIGKILL or the OOM killer: their `finally` never ran), as far as this user may."""
    for folder in Path(tempfile.gettempdir()).glob(f"{METRICS_DIR_PREFIX}*-*"):
        pid = folder.name.removeprefix(METRICS_DIR_PREFIX).partition("-")[0]
        try:
            if pid.isdigit() and folder.stat().st_uid == os.getuid() and _gone(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue  # gone meanwhile


def _gone(pid: int) -> bool:
    """Whether no process `pid` runs. This process's own pid counts as gone: its folder is not made
    yet, so one named so is a restarted container's, whose supervisor was pid 1 too. (A folder of
    another pid namespace sharing the temporary folder looks gone when its pid is free here: give
    such containers a `TMPDIR` of their own.)"""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):
        return False  # alive, under another user
    return False


if __name__ == "__main__":
    sys.exit(main())
