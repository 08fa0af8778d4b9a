"""`edge check-config --fetch URL`: the origins of the URL's endpoint asked for its original, as a node asks them;
and the shared tier's bucket, when there is one, listed, written and deleted as the nodes do.

The config alone cannot say whether a bucket's credentials work, a web origin's name resolves or a folder holds
the paths clients will ask for: before a deploy, an operator asks for a few real URLs and sees what each origin
answered, in order, until one has the original (a node stops there too), and whether it is an image the node reads;
and so for each image the endpoint's watermark draws.
Nothing is cached and no node need run; the URL's transformation and signature are not looked at.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterable
from urllib.parse import urlsplit

from .chain import as_failure, fetch_one, given_host
from .config import Config, Endpoint
from .errors import EdgeError, StartupError
from .origin import Origin, OriginNotFound, OriginRequest, SourceTooLarge
from .routing import Router, as_target
from .server import close_origin, open_origin
from .settings import redact
from .transform.render import allow_only_input_loaders, probe

#: where the probe object of the shared tier's check is written (a name no output's key starts with)
CHECK_FOLDER = "_check/"


def check(config: Config, urls: Iterable[str]) -> tuple[bool, str]:
    """Whether an origin had each URL's original, an image the node reads; and the report, a few lines a URL."""
    return asyncio.run(_check(config, list(urls)))


async def _check(config: Config, urls: list[str]) -> tuple[bool, str]:
    router = Router(config.endpoints, named=config.named_transformations)
    allow_only_input_loaders(config.limits.allow_svg)
    opened: dict[str, str | None] = {}  # origin name → why it did not open (None: open)
    served, lines = True, []
    try:
        for url in urls:
            found, report = await _asked(config, router, url, opened)
            served &= found
            lines += report
    finally:
        await asyncio.gather(*(close_origin(origin) for origin in config.origins
                               if origin.name in opened and opened[origin.name] is None))
    if config.shared_cache is not None:
        usable, said = await _shared(config.shared_cache.store)
        served &= usable
        lines.append(config.masked(redact(said)))
    return served, "\n".join(lines) + "\n"


async def _shared(store: Origin) -> tuple[bool, str]:
    """The shared tier's bucket as the nodes use it: listed, written and deleted (a probe object in its folder)."""
    if (why := await _opened(store)) is not None:
        return False, f"NO  shared cache: did not open: {why}"
    started, probe = time.perf_counter(), store.key_for(f"{CHECK_FOLDER}{secrets.token_hex(8)}")
    try:
        await store.list_objects(store.key_for(""))
        await store.put_object(probe, b"", "application/octet-stream")
        await store.delete_keys([probe])
    except Exception as error:
        failure = as_failure(store, error)
        return False, f"NO  shared cache: failed ({failure.kind}): {failure}"
    finally:
        await close_origin(store)
    return True, f"OK  shared cache: listed, wrote and deleted {probe!r} ({_ms(started)})"


async def _asked(config: Config, router: Router, url: str, opened: dict[str, str | None]) -> tuple[bool, list[str]]:
    try:
        parts = urlsplit(url)
        request = router.route(parts.netloc, as_target("/" + parts.path.lstrip("/")))
    except ValueError:  # `http://[::1`: an unclosed IPv6 literal
        return False, [f"NO  {url}", "    not a URL or a path"]
    except EdgeError as error:
        return False, [f"NO  {url}", f"    {error.status} {error.message}"]
    if not request.path:
        return False, [f"NO  {url}", "    names no original"]
    endpoint = request.endpoint
    lines = [f"    endpoint {endpoint.id!r}, original {request.path!r}"]
    found = await _looked_up(config, endpoint, request.path, parts.netloc, opened, lines)
    # an image the endpoint's watermark draws that no origin has makes every image of the endpoint a 502
    for path in sorted(endpoint.watermark_images):
        lines.append(f"    endpoint {endpoint.id!r}, watermark image {path!r}")
        found &= await _looked_up(config, endpoint, path, parts.netloc, opened, lines)
    return found, [f"{'OK ' if found else 'NO '} {url}", *lines]


async def _looked_up(config: Config, endpoint: Endpoint, path: str, host: str, opened: dict[str, str | None],
                     lines: list[str]) -> bool:
    """Whether an origin of `endpoint` serves `path`: asked in order until one answers, as a node asks them; what
    each said added to `lines`."""
    for origin in endpoint.origins:
        if origin.name not in opened:
            opened[origin.name] = await _opened(origin)
        if (why := opened[origin.name]) is not None:
            lines.append(f"    {origin.name}: did not open: {config.masked(why)}")
            continue
        found, said = await _fetched(config, origin, path, host)
        lines.append(f"    {origin.name}: {config.masked(redact(said))}")
        if found is not None:
            return found
    return False


async def _opened(origin: Origin) -> str | None:
    """None once `origin` is open, else why not (`open_origin`'s failure, without the origin it names)."""
    try:
        await open_origin(origin)
    except StartupError as error:
        return str(error).partition(" did not open: ")[2]
    return None


async def _fetched(config: Config, origin: Origin, path: str, host: str) -> tuple[bool | None, str]:
    """Whether the origin's answer is served (None: the node would ask the next origin), and what it was."""
    given = host if origin.takes_request_host and given_host(origin, host) else None
    started = time.perf_counter()
    try:
        original = await fetch_one(origin, OriginRequest(path, config.limits.max_source_bytes, host=given))
    except OriginNotFound:
        return None, f"not found ({_ms(started)})"
    except SourceTooLarge:
        return False, f"larger than [limits] max_source_bytes ({config.limits.max_source_bytes} bytes): a 400"
    except Exception as error:
        failure = as_failure(origin, error)
        return None, f"failed ({failure.kind}): {failure} ({_ms(started)})"
    said = f"found, {len(original.body)} bytes, {original.content_type or 'no Content-Type'} ({_ms(started)})"
    try:
        header = await asyncio.to_thread(probe, original.body, config.limits, svg_read=False)
    except EdgeError as error:
        return False, f"{said}: {error.message} (a {error.status})"
    size = "" if header.width == 0 else f" {header.width}x{header.height}"
    return True, f"{said}: {header.loader.removesuffix('load_source')}{size}"


def _ms(started: float) -> str:
    return f"{(time.perf_counter() - started) * 1000:.0f} ms"
