"""`type = "local"`: originals in a folder on this machine.

A path that resolves outside `root` (`..`, an absolute path, a symlink that leaves the root) is
not found, and is never read; so is one with a trailing `/` (`b.jpg/`), or with an empty segment (`a//b.jpg`),
which would name the same file as the path without it. (The node merges the slashes of such a path before it
asks, on an endpoint whose origins all merge them: `merges_slashes`; this one is asked for it only next to an
origin that does not.)

Only a path missing from a root that is there is not found: a root gone (a mount lost, a folder renamed)
and a file or folder the node may not read, or a disk error, are origin failures (502, `denied` or
`error`). Taken for not found, they had deleted the path's cached outputs and remembered a 404 for the
path, and a later origin's image was served in their place.
"""

from __future__ import annotations

import errno
import os
from email.utils import formatdate
from pathlib import Path
from stat import S_ISREG
from typing import BinaryIO

from edge.plugin import (
    ConfigTable,
    NotModified,
    Origin,
    Original,
    OriginFailure,
    OriginNotFound,
    OriginRequest,
    OriginSettings,
    SourceTooLarge,
    fetch_memory,
    hookimpl,
    in_thread,
)


class LocalOrigin(Origin):
    type_name = "local"
    is_local = True  # no copy in the originals tier; `_read`'s ETag (mtime in ns, size) is the version
    merges_slashes = True

    def __init__(self, settings: OriginSettings, root: Path):
        super().__init__(settings)
        self.root = root
        #: the filesystem the root is on: a mount lost leaves its mount point, an empty folder on another
        self._device = os.stat(root).st_dev

    @classmethod
    def from_config(cls, settings: OriginSettings, table: ConfigTable) -> LocalOrigin:
        root = table.path("root")
        if not root.is_dir():
            raise table.error("root", f"expected an existing folder, {root} is not one")
        if not os.access(root, os.R_OK | os.X_OK):  # else every fetch is denied: a 502 for every image
            raise table.error("root", f"this user (uid {os.getuid()}) cannot read the folder {root}")
        table.finish()
        return cls(settings, root)

    def folders(self) -> tuple[Path, ...]:
        return (self.root,)

    def _resolve(self, path: str) -> Path:
        if path.endswith("/") or "//" in path:
            # `resolve` would drop the empty segment: one file under many URLs, each its own cache entry
            # that a purge of the file's path misses
            raise OriginNotFound(path)
        try:
            candidate = (self.root / path).resolve(strict=True)
        except (OSError, ValueError, RuntimeError) as error:  # missing, a NUL byte, a loop
            if isinstance(error, OSError) and error.errno not in _MISSING:
                if not Path(os.path.realpath(self.root / path)).is_relative_to(self.root):
                    raise OriginNotFound(path) from None  # a link out of the root: never read, whatever is there
                raise _failure(path, error) from None
            if not self._root_there():
                raise OriginFailure("error", "its root folder is missing, unreadable or no longer on its "
                                             "filesystem (a mount lost)") from None
            raise OriginNotFound(path) from None
        if not candidate.is_relative_to(self.root) or not candidate.is_file():
            raise OriginNotFound(path)
        return candidate

    def _root_there(self) -> bool:
        try:
            return self.root.is_dir() and os.stat(self.root).st_dev == self._device
        except OSError:
            return False

    async def fetch(self, request: OriginRequest) -> Original:
        opened, stat, etag = await in_thread(self._open, request)
        started: list[bool] = []
        try:
            # the file's size held against the worker's fetch memory before it is read (a read of one byte more
            # sees it grow: the rest, within the limit, is not held)
            async with fetch_memory(stat.st_size):
                body = await in_thread(_read, opened, stat.st_size, request.max_bytes, started)
        finally:
            if not started:  # refused, or cancelled before its thread took it: else closed there, after the read
                opened.close()  # (closed here, it waited on the loop for a read under way, a hung disk's included)
        if len(body) > request.max_bytes:
            raise SourceTooLarge(request.path)
        return Original(body, etag=etag, last_modified=formatdate(stat.st_mtime, usegmt=True))

    def _open(self, request: OriginRequest) -> tuple[BinaryIO, os.stat_result, str]:
        """The file, its status and ETag, when it is to be read: not when the request's ETag names it, nor
        when it is over the limit."""
        path, validators = request.path, request.validators
        file = self._resolve(path)
        # not blocking: a FIFO put in the file's place since `_resolve` looked would hold the open (and this
        # thread, for good) until a writer came; a regular file reads the same either way
        try:
            opened = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:  # deleted since `_resolve` looked
            raise OriginNotFound(path) from None
        except OSError as error:
            raise _failure(path, error) from None
        handle = open(opened, "rb")
        try:
            stat = os.fstat(handle.fileno())
            if not S_ISREG(stat.st_mode):
                raise OriginNotFound(path)
            etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
            if validators is not None and validators.etag == etag:
                raise NotModified(path)
            if stat.st_size > request.max_bytes:
                raise SourceTooLarge(path)
        except BaseException:
            handle.close()
            raise
        return handle, stat, etag


def _read(handle: BinaryIO, size: int, max_bytes: int, started: list[bool]) -> bytes:
    """The file's `size` bytes, and one byte more to see it grow: a read of `max_bytes` at once costs a buffer of
    that size, fresh from the kernel every time (0.6 MB: 0.55 ms, not 0.08); if it grew while read, the rest up to
    one byte over the limit. The file is closed here (`started` says so to the caller)."""
    started.append(True)
    with handle:
        body = handle.read(size + 1)
        if len(body) > size:
            body += handle.read(max_bytes + 1 - len(body))
    return body


#: what a path missing from the root fails with (a loop: `ELOOP`, or `RuntimeError` before Python 3.13)
_MISSING = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG)


def _failure(path: str, error: OSError) -> OriginFailure:
    """A file or folder the node may not read (`denied`), or a disk's error: not the path missing."""
    if isinstance(error, PermissionError):
        return OriginFailure("denied", f"{path!r}: permission denied")
    return OriginFailure("error", f"{path!r}: {error.strerror or type(error).__name__}")


#: the `edge.plugin` API this module is written against
EDGE_PLUGIN_API = "1.5"


@hookimpl
def edge_origin_types() -> list[type[Origin]]:
    return [LocalOrigin]
