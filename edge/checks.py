"""What `edge serve` would trip on before it serves a request, checked up front so that `serve` fails
in one line naming the problem, and `edge check-config` can say so before a deploy.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import socket
import tempfile
from itertools import islice
from pathlib import Path

import tornado.netutil

from .chain import given_host
from .config import Config
from .cores import usable_cores
from .errors import StartupError

log = logging.getLogger("edge")


def usable_cache_dir(directory: Path, *, create: bool) -> None:
    """The cache folder exists (or, with `create`, is created) and this user can write files in it.
    Without `create`, a folder that does not exist yet passes when its nearest existing parent is
    writable (serve will create it)."""
    if create:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if not _nearest_existing(directory).is_dir():  # said as check-config says it, not "File exists"
                _not_a_folder(directory)
            raise StartupError(f"cache folder {directory}: cannot create it: {exc.strerror}") from None
    _not_a_folder(directory)
    target = _nearest_existing(directory)
    try:
        with tempfile.NamedTemporaryFile(dir=target, prefix=".edge-check-"):
            pass
    except OSError as exc:
        raise StartupError(f"cache folder {directory}: cannot write in {target}: {exc.strerror}") from None


def _not_a_folder(directory: Path) -> None:
    """A `StartupError` when what is, or would be, `directory`'s nearest existing parent is no folder."""
    target = _nearest_existing(directory)
    if not target.is_dir():
        raise StartupError(f"cache folder {directory}: {target} is not a folder")


def _nearest_existing(directory: Path) -> Path:
    """`directory`, or its nearest parent that exists (where serve would create it)."""
    while not directory.exists():
        directory = directory.parent
    return directory


def warnings(config: Config) -> list[str]:
    """What `edge serve` and `check-config` warn of: the node serves anyway."""
    return [warning for warning in (_budgets_over_the_disk(config), _budget_too_small(config), _no_output_tier(config),
                                    _cache_among_originals(config), _signed_for_any_host(config),
                                    _cache_entries_of_another_user(config), _workers_over_cores(config))
            if warning is not None]


#: file descriptors a worker holds beside its clients' connections: each origin's and the shared tier's connection
#: pool (64 each for the built-in types), and `DESCRIPTORS_BESIDE` for the cache's databases and files, logs, pipes
DESCRIPTORS_A_POOL = 64
DESCRIPTORS_BESIDE = 128


def too_few_descriptors(config: Config, limit: int) -> str | None:
    """A warning when the file descriptor limit in force (`limit`, each worker's) is below what `max_connections`
    and the pools take: past it, fetches failed for want of one, answered 503 (`X-Edge-Error: out_of_descriptors`)
    and new connections waited in the backlog."""
    pools = len(config.origins) + (config.shared_cache is not None)
    needed = config.server.max_connections + DESCRIPTORS_A_POOL * pools + DESCRIPTORS_BESIDE
    if limit >= needed:
        return None
    return (f"the file descriptor limit is {limit}, and a worker may need {needed} ([server] max_connections = "
            f"{config.server.max_connections}, {pools} connection pool(s) of origins and the shared cache, the "
            f"cache's files): raise it (systemd's LimitNOFILE=, ulimit -n) or lower max_connections")


#: workers a usable core past which `_workers_over_cores` warns
WORKERS_A_CORE = 4


def _workers_over_cores(config: Config) -> str | None:
    """A warning when `workers` is many times the usable cores (a typo: 200 for 20): each worker holds its own
    memory (256 on 2 cores: 5.5 GB, a status page taking 7.5 s) for no more speed than one a core gives."""
    cores = usable_cores()
    if config.server.workers <= WORKERS_A_CORE * cores.count:
        return None
    return (f"[server] workers = {config.server.workers} on {cores.count} usable core(s) ({cores.source}): each "
            f"worker holds its own memory, and more than {WORKERS_A_CORE} a core serve no faster; workers = 0 "
            f"starts one a core")


#: a tier whose budget is under this stores no entry over an eighth of it: under 1 MB, some ordinary outputs
SMALL_BUDGET = 8 * 10**6


def _budget_too_small(config: Config) -> str | None:
    """A warning when a disk tier's budget leaves out ordinary images (a unit slip: `output_size = 2000` is 2000
    bytes): each larger one is made or fetched again on every request, which the node serves without a word."""
    small = [f"{key} = {_size(size)}" for key, size in (("output_size", config.cache.output_size),
                                                        ("original_size", config.cache.original_size))
             if 0 < size < SMALL_BUDGET]
    if not small:
        return None
    return (f"[cache] {', '.join(small)}: a tier stores no entry over an eighth of its budget, so larger images "
            f"are made again on every request (edge_cache_too_large_total); a size is in bytes unless it names a "
            f"unit (\"2GB\")")


def _no_output_tier(config: Config) -> str | None:
    """A warning when `output_size = 0`, which keeps no output (as `original_size = 0` keeps no original): every
    image is made again on every request, not counted as too large; an unset `${OUTPUT_SIZE}` written "0" had
    done that without a word."""
    if config.cache.output_size:
        return None
    return ("[cache] output_size = 0: no output is kept, so every image is made again on every request; leave the "
            "key out for its default (2GB)")


def _cache_entries_of_another_user(config: Config) -> str | None:
    """A warning when this user cannot write the cache folder's own files and folders (a node run once as
    root, then as its user): the tiers in them serve uncached. (A `node.lock` stops `serve`:
    `_lock_of_another_user`.)"""
    try:
        entries = list(islice(config.cache.dir.iterdir(), 100))  # its own: a few, unless it holds other things
    except OSError:
        return None  # `usable_cache_dir` says what is wrong with it, or serve makes it
    denied = [entry for entry in sorted(entries)
              if entry.name != NODE_LOCK and not entry.is_symlink() and not os.access(entry, os.W_OK)]
    if not denied:
        return None
    return (f"cache folder {config.cache.dir}: this user (uid {os.geteuid()}) cannot write "
            f"{', '.join(entry.name for entry in denied)} ({_made_by_another(denied)}): the node serves without "
            f"what they hold; give the folder to the node's user (chown -R)")


def _lock_of_another_user(directory: Path) -> str | None:
    """`check-config`'s problem when this user cannot open the cache folder's `node.lock`, which stops `serve`
    (it had been a warning, the exit status 0: a deploy's gate passed a config that could not serve)."""
    lock = directory / NODE_LOCK
    if not lock.exists() or os.access(lock, os.W_OK):
        return None
    return (f"cache folder {directory}: this user (uid {os.geteuid()}) cannot open {NODE_LOCK} in it "
            f"({_made_by_another([lock])}): serve cannot start; give the folder to the node's user (chown -R)")


def _made_by_another(entries: list[Path]) -> str:
    return f"owner uid {', '.join(sorted({_owner(entry) for entry in entries}))}: made by a node run as another user?"


def _owner(entry: Path) -> str:
    try:
        return str(entry.lstat().st_uid)
    except OSError:  # gone since it was listed
        return "?"


#: a name no `forward_host` list holds: an origin that takes it takes every Host
_INVENTED_HOST = "an-invented-host.invalid"


def _signed_for_any_host(config: Config) -> str | None:
    """A warning when a `signed_only` endpoint has an origin that forwards every Host: a signature does not
    cover the Host, so one signed URL fetches its path from every Host a client names, a fetch and an entry
    each, the open work signing is to close."""
    for endpoint in config.endpoints:
        for origin in endpoint.origins if endpoint.signed_only else ():
            if origin.takes_request_host and given_host(origin, _INVENTED_HOST):
                return (f"endpoint {endpoint.id!r} is signed_only, but origin {origin.name!r} forwards every Host: a "
                        "signature does not cover the Host, so one signed URL is fetched and kept once per Host a "
                        "client names; list the hosts (forward_host = [\"shop.example.com\", …])")
    return None


def _cache_among_originals(config: Config) -> str | None:
    """A warning when the cache folder and a folder an origin reads hold each other (`[cache] dir = root`, or a
    `cache` folder under it): the cache's files mixed with the originals, and askable as originals."""
    cache = config.cache.dir
    for origin in config.origins:
        for folder in origin.folders():
            if cache.is_relative_to(folder) or folder.is_relative_to(cache):
                return (f"[cache] dir {cache} and the folder {folder} of origin {origin.name!r} hold each other: "
                        f"the cache's files are written among the originals, and URLs can name them")
    return None


def _budgets_over_the_disk(config: Config) -> str | None:
    """A warning when `output_size` and `original_size` together exceed the filesystem holding the cache
    folder: the tiers then fill the disk before they evict, and stores fail with it full."""
    try:
        disk = shutil.disk_usage(_nearest_existing(config.cache.dir)).total
    except OSError:
        return None  # `usable_cache_dir` says what is wrong with it
    budgets = config.cache.output_size + config.cache.original_size
    if budgets <= disk:
        return None
    return (f"[cache] output_size + original_size ({_size(budgets)}) exceed the filesystem holding "
            f"{config.cache.dir} ({_size(disk)}): the tiers will fill it before they evict, and stores "
            f"then fail; lower them below its size, less what else it holds")


def _size(size: int) -> str:
    """`12.5 GB`; below a gigabyte `1.5 MB`, below a megabyte `2000 bytes`: a small filesystem's size had been
    written `0.0 GB`."""
    if size < 10**6:
        return f"{size} bytes"
    return f"{size / 10**9:.1f} GB" if size >= 10**9 else f"{size / 10**6:.1f} MB"


#: in a cache folder, the file a serving node holds locked (and writes its pid in)
NODE_LOCK = "node.lock"
#: the folders this process holds, and the descriptor of each one's lock (kept open until the exit:
#: the workers inherit it; the kernel drops the lock when the last copy closes, a SIGKILL included)
_owned: dict[Path, int] = {}


def owns(directory: Path) -> bool:
    """Whether this node serves from `directory` already (`own_cache_dir`)."""
    return directory.resolve() in _owned


def own_cache_dir(directory: Path) -> None:
    """Lock `directory` for this node, or a `StartupError` naming the node that holds it. Two nodes on one
    folder serve each other's outputs for their own URLs, whatever their origins (an output's key is
    its endpoint, path and transformation). `edge purge` and `edge cache stats` take no lock."""
    directory = directory.resolve()
    if directory in _owned:
        return
    if (nested := _nested_with_another_node(directory)) is not None:
        raise StartupError(nested)
    try:
        fd = os.open(directory / NODE_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:  # the folder's, or a node.lock another user's node made (chown -R)
        raise StartupError(f"cache folder {directory}: cannot open {NODE_LOCK} in it: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StartupError(f"cache folder {directory}: another node serves from it (pid {holder}); "
                           "give each node its own [cache] dir") from None
    except OSError:  # a filesystem without locks (NFS without its lock manager): not checked
        pass
    else:
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:  # a full disk: the lock holds all the same; the pid only names the holder
            pass
    _owned[directory] = fd


#: how many levels down a cache folder is searched for another node's (`cache/b`, `cache/outputs/b`): further down,
#: each tier's 65536 value folders would be listed at every start
NESTED_DEPTH = 2


def _nested_with_another_node(directory: Path) -> str | None:
    """The problem when `directory` is inside a folder holding a `node.lock`, or holds one in a folder within
    `NESTED_DEPTH` levels: a node serves or served from it, and the outer node's sweep of its tiers deletes the
    inner one's value files as no entry of its own names them (a folder of one's own is checked by its lock)."""
    outer = next((folder for folder in directory.parents if (folder / NODE_LOCK).is_file()), None)
    if outer is not None:
        return (f"cache folder {directory}: inside {outer}, another node's cache folder (it holds a {NODE_LOCK}): "
                f"that node's sweep of its tiers would delete this one's files; give each node a folder apart")
    level = [directory]
    for _ in range(NESTED_DEPTH):
        level = [Path(entry.path) for folder in level for entry in _subfolders(folder)]
        if (inner := next((folder for folder in level if (folder / NODE_LOCK).is_file()), None)) is not None:
            return (f"cache folder {directory}: holds {inner}, another node's cache folder (it holds a {NODE_LOCK}): "
                    f"this node's sweep of its tiers would delete that one's files; give each node a folder apart")
    return None


def _subfolders(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as entries:
            return [entry for entry in entries if entry.is_dir(follow_symlinks=False)]
    except OSError:  # not made yet, or not readable: `usable_cache_dir` says so
        return []


def keep_cache_dirs_locked() -> None:
    """Lock again each folder this node holds whose lock file is not the one it holds: the folder deleted, or
    moved aside, and made again under the node (its tiers follow within a second), the lock was left on the
    old file, and a second node started on the folder was not refused. The supervisor's loop calls it."""
    for directory, fd in list(_owned.items()):
        try:
            held = os.fstat(fd)
            there = os.stat(directory / NODE_LOCK)
            if (there.st_dev, there.st_ino) == (held.st_dev, held.st_ino):
                continue
        except FileNotFoundError:  # the folder moved aside (its lock with it) or deleted, and made again
            if not directory.is_dir():
                continue
        except OSError:
            continue
        del _owned[directory]
        try:
            own_cache_dir(directory)
        except StartupError as error:
            _owned[directory] = fd  # looked at again the next time
            if directory not in _unlocked:
                _unlocked.add(directory)
                log.error("%s", error)
        else:
            os.close(fd)
            _unlocked.discard(directory)
            log.warning("cache folder %s: its lock file was deleted or moved; locked again", directory)


#: the folders whose lock could not be taken again (said once each)
_unlocked: set[Path] = set()


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
    if (locked := _lock_of_another_user(config.cache.dir)) is not None:
        problems.append(locked)
    if (nested := _nested_with_another_node(config.cache.dir.resolve())) is not None:
        problems.append(nested)
    if bind_check:
        addresses = [(config.server.host, config.server.port)]
        if config.server.metrics_port:
            addresses.append((config.server.metrics_address, config.server.metrics_port))
        for host, port in addresses:
            try:
                bindable(host, port)
            except StartupError as error:
                problems.append(str(error))
    return problems
