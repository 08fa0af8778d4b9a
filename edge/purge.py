"""Purge: remove everything cached for a URL's path (every transformed output, the original, a
not-found record), or for every path under a prefix. `POST /_edge/purge` and `edge purge` share it.

A target is written as a URL the node serves (`https://img.example.com/shop/tr:w-300/shoes/red.jpg`)
or just its path (`/shop/shoes/red.jpg`): the host and the first segment pick the endpoint exactly as
for an image request; the transformation and the query are ignored, since all variants go. A prefix
is matched against the decoded path (`/shop/shoes/` removes all of `shoes/`; `/shop/` the endpoint).
A Cloudinary-style URL takes every URL that shows the same asset unpinned (`cloudinary_urls.same_asset`).

In a fleet, a purge received from outside also empties the shared tier (`[shared_cache]`) and is
sent to every peer (`[fleet] peers`, `edge.fanout`); the answer says how each went, and one that
failed makes it a 502 (docs/fleet.md). What the shared tier failed is left in the cache folder, and one
worker of the node tries it there again (`PendingPurges`).

The supervisor purges an endpoint pointed at other origins, by a reload or since the node last ran, as `edge purge`
does (`purge_moved`).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .cache import Caches, path_key, path_prefix_key
from .cache.purges import RECORD_SECONDS
from .cloudinary_urls import same_asset
from .config import MAX_CONFIG_BYTES, Config, Endpoint, origin_identities
from .errors import BadRequest, ConfigError, NothingToServe, SharedCacheFailure
from .fanout import FanOut
from .logs import Sparse
from .routing import Router, as_target
from .settings import Secret, regular_file_bytes
from .shared_cache import SharedTier

log = logging.getLogger("edge.purge")

#: what a purge could not do in the shared tier (the tier down) a running node tries again this often, for as
#: long as the nodes it reached hold the tier's older objects back by their own records (`RECORD_SECONDS`):
#: else a node that started with an empty disk read back what was purged, for a year
SHARED_RETRY_SECONDS = 10.0
#: a purge sent to a node answers within this many seconds: the shipped balancers wait 30 s for the admin listener
#: (then send it to the next node). The peers get `[fleet] timeout`, the shared tier what they leave of it: a store
#: that hangs had taken about 13 × `[shared_cache] timeout` more (31 s with the defaults); what it did not finish is
#: tried again (`retrying`)
ANSWER_SECONDS = 25.0
#: the folder, in the cache folder, of the shared tier's parts of purges still to be done (`PendingPurges`)
PENDING_FOLDER = "purges-pending"
#: the most of a pending purge's file read (its prefixes: 15 for a Cloudinary-style URL, of a path each)
MAX_PENDING_BYTES = 1 << 20
#: pending purges a node keeps (beyond, a purge says it is not retried), and tries in one round
MAX_PENDING = 10_000
TRIES_A_ROUND = 256
#: a round that finds the shared tier still failing says so once in this many seconds
STILL_FAILING_LOG_SECONDS = 60.0
#: the file, in the cache folder, of where each endpoint's originals came from when the node last served them
#: (`origin_identities`): a start on a config that points an endpoint elsewhere purges it (`origins_served`)
ORIGINS_FILE = "origins.json"
#: the most of it read: 64 characters of digest and an id per endpoint, and a config of `MAX_CONFIG_BYTES` has fewer
#: than 40,000 endpoints
MAX_ORIGINS_BYTES = 4 * MAX_CONFIG_BYTES


def parse_body(body: bytes) -> dict[str, str]:
    """`{"url": "..."}` or `{"prefix": "..."}`, or a 400 that says what is wrong."""
    try:
        target = json.loads(body, object_pairs_hook=_once_each)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: arrays or objects nested deeper than Python's recursion limit (`[[[[…`)
        raise BadRequest('expected a JSON body: {"url": "..."} or {"prefix": "..."}') from None
    return parse_target(target)


def _once_each(pairs: list[tuple[str, Any]]) -> dict[str, Any] | None:
    """An object, or None (not a target) when it names a key twice: `{"url": "/a.jpg", "url": "/"}` had purged
    the last, which a proxy or log that reads the first would not show."""
    target = dict(pairs)
    return target if len(target) == len(pairs) else None


def parse_target(target: Any) -> dict[str, str]:
    if not isinstance(target, dict) or len(target) != 1 or not target.keys() <= {"url", "prefix"}:
        raise BadRequest('expected exactly one of "url" or "prefix"')
    (kind, value), = target.items()
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{kind}: expected a URL or a path")
    try:
        value.encode()
    except UnicodeEncodeError:
        # a lone surrogate: JSON's `"\ud800"`, or a command-line byte that is not UTF-8 (`edge purge`);
        # no path the node serves holds one, and the cache's keys (SQLite text) cannot
        raise BadRequest(f"{kind}: not valid UTF-8 (holds a lone surrogate)") from None
    # URL parsing drops tabs and newlines anywhere and strips what surrounds the URL: a target pasted
    # with one purged another path than written (`/shop/shoes\n` every path starting `shoes`)
    control = next((char for char in value if char < " " or char == "\x7f"), None)
    if control is not None:
        raise BadRequest(f"{kind}: holds the control character {control!r} (a path's own is percent-encoded)")
    if value != value.strip():
        raise BadRequest(f"{kind}: starts or ends with white space")
    return target


def key_prefixes(router: Router, target: dict[str, str]) -> list[str]:
    """The cache-key prefixes of everything the target covers: one, but for the URL of a Cloudinary-style endpoint
    those of every URL that shows the same unpinned asset (`cloudinary_urls.same_asset`)."""
    (kind, value), = target.items()
    # a path's leading slashes name nothing, as an image request's (`//shop/x.jpg` is the endpoint shop's):
    # `urlsplit` would take `shop` for a host, and the default endpoint's `x.jpg` was purged instead. Unless
    # they start a scheme-relative URL (`<img src="//img.example.com/x.jpg">`) of a host with an endpoint
    scheme_relative = value[:3] != "///" and value.startswith("//") and router.serves_host(value[2:].split("/")[0])
    if value.startswith("/") and not scheme_relative:
        value = "/" + value.lstrip("/")
    try:
        parts = urlsplit(value)
    except ValueError:  # `http://[::1`: an unclosed IPv6 literal
        raise BadRequest(f"{kind}: not a URL or a path") from None
    if "@" in parts.netloc:  # an image request's target with one is a 400: the router had taken `user` for the host
        raise BadRequest(f"{kind}: a URL with user information names no image")
    if any(segment in (".", "..") for segment in unquote(parts.path).split("/")):
        raise BadRequest(f"{kind}: a . or .. segment (no path the node serves has one)")
    try:
        request = router.route(parts.netloc, as_target("/" + parts.path.lstrip("/")), for_purge=True)
    except NothingToServe:
        raise BadRequest(f"{kind}: no endpoint of this node serves {value!r}") from None
    if kind == "url":
        if not request.path:
            raise BadRequest("url: names no image")
        paths = same_asset(request.path) if request.endpoint.url_style == "cloudinary" else [request.path]
        return [path_key(request.endpoint.id, path) for path in paths]
    if request.path_transformation is not None:  # (a Cloudinary-style prefix has an empty transformation)
        # outputs are purged by their original's path: `/tr:w-30/` as a prefix had emptied the whole endpoint
        raise BadRequest(f"{kind}: a transformation names no originals' paths: purge by the originals' path "
                         "prefix, which takes every output of them")
    return [path_prefix_key(request.endpoint.id, request.path)]


def forget_here(caches: Caches, prefixes: Iterable[str], what: str,
                made_at: Callable[[str], float | None] = lambda prefix: None) -> dict[str, int | None]:
    """Remove every entry under each of `prefixes` from this node's tiers (blocking): the count per tier,
    None for a tier that could not for one of them (unavailable or busy: logged, as `what`). `made_at(prefix)`:
    when its purge was made, if not now (one of the fleet's journal)."""
    removed: dict[str, int | None] = {}
    for prefix in prefixes:
        for tier, count in caches.forget(prefix, made_at(prefix)).items():
            so_far = removed.get(tier, 0)
            removed[tier] = None if count is None or so_far is None else so_far + count
    failed = [tier for tier, count in removed.items() if count is None]
    if failed:
        log.warning("%s not done in the %s tier(s): the cache is unavailable or busy", what, ", ".join(failed))
    return removed


def _forget(caches: Caches, prefixes: list[str], target: dict[str, str]) -> tuple[bool, dict[str, Any]]:
    """`forget_here` of one purge: whether every tier could, and the answer for the caller (a tier that
    could not is `"error"`)."""
    removed = forget_here(caches, prefixes, f"purge of {target}")
    return None not in removed.values(), {
        "removed": sum(count or 0 for count in removed.values()),
        "by_tier": {tier: "error" if count is None else count for tier, count in removed.items()}}


async def purge_serving(caches: Caches, router: Router, target: dict[str, str], token: Secret,
                        fan_out: FanOut | None, shared: SharedTier | None, pending: PendingPurges | None,
                        forwarded: bool) -> tuple[int, dict[str, Any]]:
    """`POST /_edge/purge` on a running node: this node's tiers, every peer, then the shared tier;
    only this node's tiers when a peer forwarded the call. The status and the answer."""
    prefixes = key_prefixes(router, target)  # a bad target is a 400 before anything is purged
    if forwarded:
        purged, answer = await caches.io(_forget, caches, prefixes, target)
        return (200 if purged else 502), answer
    return await _everywhere(caches, prefixes, target, token, fan_out, shared, pending)


async def _everywhere(caches: Caches | None, prefixes: list[str], target: dict[str, str], token: Secret | None,
                      fan_out: FanOut | None, shared: SharedTier | None,
                      pending: PendingPurges | None = None) -> tuple[int, dict[str, Any]]:
    """This node and the peers, each held to its purge records from then on (which hold back the shared objects
    being purged), then the shared tier (the purge journal, for the nodes this purge does not reach, then the
    objects); 502 when one of them could not be purged. `pending`: where what the shared tier failed is left to
    be tried again. The nodes before the journal: their workers, reading the new entry first, had removed what
    their answers count (`removed: 0`)."""
    deadline = time.monotonic() + ANSWER_SECONDS
    left = None  # the shared tier's part, left to be tried again whatever stops this purge, until it is done
    if shared is not None and pending is not None and caches is not None:
        left = await caches.io(pending.add, PendingPurge(prefixes, target, False, False, time.time() + RECORD_SECONDS))
    try:
        purged, answer = True, {"removed": 0, "by_tier": {}}  # `edge purge` without the node's cache folder
        if caches is not None:
            purged, answer = await caches.io(_forget, caches, prefixes, target)
        purged_everywhere = purged
        if fan_out is not None:
            results = await fan_out.purge(token, target)
            answer["peers"] = [result.describe() for result in results]
            for failed in (result for result in results if result.outcome != "ok"):
                purged_everywhere = False
                log.warning("purge of %s not done on peer %s: %s", target, failed.peer, failed.outcome)
        if shared is not None:
            journal_written, objects_removed, shared_answer = await _purge_shared(shared, prefixes, target,
                                                                                  deadline=deadline)
            if left is not None:  # removed when done, else how far it got recorded
                await caches.io(pending.tried, left, PendingPurge(prefixes, target, journal_written, objects_removed,
                                                                  time.time() + RECORD_SECONDS))
            if not (journal_written and objects_removed):
                purged_everywhere = False
                if pending is not None and caches is not None:
                    shared_answer["retrying"] = left is not None
            answer["shared"] = shared_answer
    finally:
        if left is not None:  # stopped before `tried` (the worker stopping): the others try it
            pending.release(left)
    return (200 if purged_everywhere else 502), answer


async def _purge_shared(shared: SharedTier, prefixes: list[str], target: dict[str, str], journal_written: bool = False,
                        objects_removed: bool = False, quiet: bool = False,
                        deadline: float | None = None) -> tuple[bool, bool, dict[str, Any]]:
    """The shared tier's part of a purge, but for what is done already: whether the journal entry is written,
    whether the objects are removed, and the answer's `shared` part. `quiet`: failures not logged (a retry's: its
    round says it, once). `deadline` (`time.monotonic()`): a step not done by then failed (`timeout`)."""
    # each step's calls at once: the 15 prefixes of a Cloudinary-style URL, one call after the other (and the
    # journal's housekeeping once a prefix), took 28 s at 0.5 s a call, past the load balancers' admin timeout
    def by_deadline(step: Awaitable[Any]) -> Awaitable[Any]:
        return step if deadline is None else asyncio.wait_for(step, max(0.0, deadline - time.monotonic()))

    answer: dict[str, Any] = {}
    journal: str | dict[str, str] = "written"
    if not journal_written:
        try:
            await by_deadline(shared.record_purge(prefixes))
            journal_written = True
        except (SharedCacheFailure, TimeoutError) as failure:
            journal = {"error": _kind(failure)}
            if not quiet:
                log.warning("purge of %s not written to the shared cache's journal: %s", target, _kind(failure))
    if not objects_removed:
        try:
            answer = {"removed": sum(await by_deadline(asyncio.gather(*map(shared.delete_prefix, prefixes))))}
            objects_removed = True
        except (SharedCacheFailure, TimeoutError) as failure:
            answer = {"error": _kind(failure)}
            if not quiet:
                log.warning("purge of %s not done in the shared cache: %s", target, _kind(failure))
    return journal_written, objects_removed, answer | {"journal": journal}


def _kind(failure: SharedCacheFailure | TimeoutError) -> str:
    """A shared tier's failure, or the purge's answer that could not wait for it (`ANSWER_SECONDS`): `timeout`."""
    return failure.kind if isinstance(failure, SharedCacheFailure) else "timeout"


@dataclass(frozen=True)
class PendingPurge:
    """The shared tier's part of a purge still to be done, and until when (wall clock: any process's, any boot's)."""

    prefixes: list[str]
    target: dict[str, str]
    journal_written: bool
    objects_removed: bool
    until: float


class PendingPurges:
    """What purges could not do in the shared tier, each in a file of the cache folder (named by when it was made:
    the oldest first), tried again every `SHARED_RETRY_SECONDS` by the workers of the node, each file by one at a
    time (its `flock`, dropped by the kernel when a worker ends): a worker that stops (a reload, a crash) leaves them
    to the others, or to the next to start; they were given up with it. Bounded: `MAX_PENDING` files, a lock held
    only during its try. The blocking methods run in the cache's threads."""

    def __init__(self, directory: Path):
        self._directory = directory
        self._trying: dict[str, int] = {}  # the file under way in this worker → its locked descriptor
        self.still_failing = Sparse(STILL_FAILING_LOG_SECONDS)

    def add(self, purge: PendingPurge) -> str | None:
        """(blocking) Leave `purge` to be tried again, locked by this worker (`tried` lets it go): its name, or None
        (logged) when the cache folder cannot hold it. Left before the purge begins, so that a worker that stops
        while it runs leaves it to the others (a purge cut off between the nodes and the shared tier was lost)."""
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json"
        try:
            self._directory.mkdir(parents=True, exist_ok=True)
            if len(self.names()) >= MAX_PENDING:
                raise OSError(f"{MAX_PENDING} purges are pending already")
            hidden = self._directory / f".{name}"  # written whole before any worker can see it
            hidden.write_text(json.dumps(asdict(purge)))
            os.replace(hidden, self._directory / name)
        except OSError as error:
            log.error("purge of %s: what the shared cache fails will not be tried again: cannot write in %s: %s",
                      purge.target, self._directory, error)
            return None
        self.take([name], set())  # (else another worker's round took it first, and tries it)
        return name

    def take(self, names: list[str], skip: set[str]) -> tuple[str, PendingPurge] | None:
        """(blocking) The oldest pending purge of `names` (a round's listing) not in `skip` that no other worker
        is trying, now locked by this one until `tried`; None when there is none."""
        for name in names:
            if name in skip or name in self._trying:
                continue
            path = self._directory / name
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except OSError:  # done and removed meanwhile
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another worker tries it now
                if os.fstat(fd).st_ino != os.stat(path).st_ino:  # done and removed between the open and the lock
                    raise FileNotFoundError(path)
                purge = PendingPurge(**json.loads(os.pread(fd, MAX_PENDING_BYTES, 0)))
            except (OSError, ValueError, TypeError) as error:
                os.close(fd)
                if isinstance(error, (ValueError, TypeError)):  # not one this node wrote: nothing to try
                    log.error("%s is not a pending purge, removed: %s", path, error)
                    path.unlink(missing_ok=True)
                continue
            self._trying[name] = fd
            return name, purge
        return None

    def tried(self, name: str, purge: PendingPurge) -> None:
        """(blocking) Record how far `purge` got (removed when done, or when its time is over) and let it go;
        nothing when this worker does not hold it (another's round took it first)."""
        fd = self._trying.pop(name, None)
        if fd is None:
            return
        try:
            if not (purge.journal_written and purge.objects_removed) and time.time() < purge.until:
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(asdict(purge)).encode(), 0)
            else:
                (self._directory / name).unlink(missing_ok=True)
        except OSError as error:  # a full disk: a later try does again what is done (no harm)
            log.warning("pending purge %s: cannot record its progress: %s", name, error)
        finally:
            os.close(fd)

    def release(self, name: str) -> None:
        """Let `name` go as it is, for the others to try (a purge stopped before `tried`)."""
        fd = self._trying.pop(name, None)
        if fd is not None:
            os.close(fd)

    def count(self) -> int:
        """(blocking) How many purges are pending."""
        return len(self.names())

    def names(self) -> list[str]:
        """(blocking) The pending purges' files, the oldest first."""
        try:
            return sorted(entry.name for entry in os.scandir(self._directory)
                          if entry.name.endswith(".json") and not entry.name.startswith("."))
        except OSError:  # none yet, or the folder unreadable (a purge answered that it would not retry)
            return []

    def close(self) -> None:
        """Let the other workers take the one under way (on the IOLoop: closing a descriptor waits for nothing)."""
        for fd in self._trying.values():
            os.close(fd)
        self._trying.clear()


async def retry_pending(pending: PendingPurges, shared: SharedTier, io: Callable) -> None:
    """Try again what the shared tier failed of the pending purges, the oldest first, at most `TRIES_A_ROUND`; a try
    that gets nothing done ends the round (the tier still fails: the others would too, each waiting its timeout)."""
    tried: set[str] = set()
    names = await io(pending.names)  # listed once a round: a take each is a pass over them, not a listing
    while len(tried) < TRIES_A_ROUND and (taken := await io(pending.take, names, tried)) is not None:
        name, purge = taken
        tried.add(name)
        journal_written, objects_removed, answer = await _purge_shared(
            shared, purge.prefixes, purge.target, purge.journal_written, purge.objects_removed, quiet=True)
        progress = (journal_written, objects_removed) != (purge.journal_written, purge.objects_removed)
        await io(pending.tried, name, replace(purge, journal_written=journal_written, objects_removed=objects_removed))
        if journal_written and objects_removed:
            log.info("purge of %s done in the shared cache on a later try", purge.target)
        elif time.time() >= purge.until:
            log.error("purge of %s not done in the shared cache in %.0f min of tries: send it again once the shared "
                      "cache answers (until then a node reads back from it what was purged)", purge.target,
                      RECORD_SECONDS / 60)
        if not progress:
            if (left_out := pending.still_failing.allow("round")) is not None:
                log.warning("purges pending for the shared cache: it still fails (%s); tried again every %gs%s",
                            answer.get("error") or answer["journal"], SHARED_RETRY_SECONDS, left_out)
            return


def purge_offline(config: Config, target: dict[str, str], fleet: bool = False) -> tuple[int, dict[str, Any]]:
    """`edge purge`: the cache folder directly (whether or not the node is running), and the shared
    tier when there is one (else the node could read back what was purged); with `fleet`, every
    other peer through its purge API too. The status (200, or 502 when a part failed) and the answer."""
    if fleet and config.admin_token is None:
        raise ConfigError(f"{config.source}: [admin] token: --fleet calls the peers' purge API, which needs the token")
    if fleet and not config.fleet.others:
        raise ConfigError(f"{config.source}: [fleet] peers: --fleet needs the other nodes of the fleet")
    prefixes = key_prefixes(Router(config.endpoints, named=config.named_transformations), target)
    caches = None
    if config.cache.dir.is_dir():
        caches = Caches(config.cache.dir, config.cache.output_size, config.cache.original_size)
    elif config.shared_cache is None and not fleet:
        # opening the tiers would make the folder, and "removed": 0 read as done: most likely a config
        # that is not the node's (no --config, and the unit's EDGE_CONFIG not in this shell)
        raise ConfigError(f"{config.source}: [cache] dir: {config.cache.dir} does not exist: nothing was purged "
                          f"(is this the node's config?)")
    else:
        log.warning("cache folder %s does not exist: only the shared cache and the peers are purged",
                    config.cache.dir)

    # what the shared tier fails is left in the cache folder, as the API leaves it, for the node's workers to do
    pending = PendingPurges(config.cache.dir / PENDING_FOLDER) if caches is not None and config.shared_cache else None

    async def everywhere() -> tuple[int, dict[str, Any]]:
        fan_out = FanOut(config.fleet) if fleet else None
        shared = None
        if config.shared_cache is not None:
            from .metrics import Metrics  # not at import: `edge serve` picks prometheus-client's mode first

            shared = SharedTier.of(config, Metrics())
            await shared.open()
        try:
            return await _everywhere(caches, prefixes, target, config.admin_token, fan_out, shared, pending)
        finally:
            if fan_out is not None:
                fan_out.close()
            if shared is not None:
                await shared.close()

    try:
        return asyncio.run(everywhere())
    finally:
        if caches is not None:
            caches.close()


def endpoint_prefix(endpoint: Endpoint) -> str:
    """The purge prefix of all an endpoint's URLs: by its first host when it has hosts, else by its id in the path."""
    return f"https://{endpoint.hosts[0]}/" if endpoint.hosts else f"/{endpoint.id}/" if endpoint.id else "/"


def origins_served(directory: Path) -> dict[str, str] | None:
    """Where each endpoint's originals came from when the node last served from the cache folder `directory`
    (`origin_identities`), or None when that is not known: the file missing (a new folder, an earlier release's), or
    not one the node wrote (logged). Then no endpoint is taken for moved: a purge in doubt would empty the cache."""
    path = directory / ORIGINS_FILE
    try:
        served = json.loads(regular_file_bytes(path, MAX_ORIGINS_BYTES))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as error:  # (UnicodeDecodeError and JSON's errors are ValueErrors)
        log.warning("%s is unreadable (%s): no endpoint's origins are taken as changed since the node last ran",
                    path, error)
        return None
    if not (isinstance(served, dict) and all(isinstance(digest, str) for digest in served.values())):
        log.warning("%s is not the node's: no endpoint's origins are taken as changed since the node last ran", path)
        return None
    return served


def note_origins_served(config: Config, before: dict[str, str]) -> dict[str, str]:
    """Write `origin_identities(config)` for `origins_served`, over `before` (what was served so far): an endpoint
    the config no longer has keeps its entry, so that one added again on other origins is purged (removed by a
    reload, then added again on another folder, it had served the old folder's outputs as hits: new-features probe).
    Written whole (a file renamed over the last, so that a node killed meanwhile leaves one or the other), or not
    at all (logged: the next start then purges nothing). What it wrote."""
    served = {**before, **origin_identities(config)}
    path = config.cache.dir / ORIGINS_FILE
    hidden = path.with_name(f".{ORIGINS_FILE}")
    try:
        hidden.write_text(json.dumps(served))
        os.replace(hidden, path)
    except OSError as error:
        log.warning("cannot write %s (%s): a start on a config that points an endpoint at other origins will not "
                    "purge it", path, error)
    return served


def purge_moved(config: Config, moved: list[Endpoint], why: str) -> None:
    """Purge everything cached for the endpoints `moved` (pointed at other origins: `endpoints_fetching_elsewhere`),
    as `edge purge --prefix` of each does, and log it after `why` (`SIGHUP:`, `since the node last ran,`)."""
    names = ", ".join(repr(endpoint.id) for endpoint in moved)
    removed: dict[str, int] = {"output": 0, "original": 0, "not_found": 0}
    failed = []
    for prefix in map(endpoint_prefix, moved):
        try:
            status, answer = purge_offline(config, {"prefix": prefix})
        except ConfigError as error:  # the cache folder deleted under the node
            log.warning("purge of %s failed: %s", prefix, error)
            status, answer = 502, {"by_tier": {}}
        for tier, count in answer["by_tier"].items():
            if tier in removed and isinstance(count, int):  # (a tier that failed: `"error"`)
                removed[tier] += count
        if status != 200:
            failed.append(prefix)
    if failed:
        log.warning("%s the origins of endpoint(s) %s changed: what is cached of them, made from the old origins' "
                    "files, could not all be purged (above); purge them to serve the new ones (edge purge --config "
                    "FILE --prefix %s)", why, names, " / --prefix ".join(failed))
    else:
        log.info("%s the origins of endpoint(s) %s changed: purged their %d cached output(s), %d original(s) and %d "
                 "404(s), made from the old origins' files", why, names, removed["output"], removed["original"],
                 removed["not_found"])
