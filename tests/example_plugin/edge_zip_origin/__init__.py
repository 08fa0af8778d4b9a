"""`type = "zip"`: originals inside a ZIP archive — an example third-party origin type.

    [[origins]]
    name = "archive"
    type = "zip"
    archive = "originals.zip"     # relative to the config file

The request path is the member's name in the archive. A missing member is not found (the next origin
is tried); a damaged member is an origin error (502 when no other origin has the path).
"""

from __future__ import annotations

import asyncio
import zipfile
import zlib
from datetime import datetime, timezone
from pathlib import Path

from edge.fetching import http_date
from edge.hookspecs import hookimpl
from edge.origin import (
    NotModified,
    Origin,
    Original,
    OriginFailure,
    OriginNotFound,
    OriginSettings,
    SourceTooLarge,
    Validators,
)
from edge.settings import ConfigTable


class ZipOrigin(Origin):
    type_name = "zip"

    def __init__(self, settings: OriginSettings, archive: Path):
        super().__init__(settings)
        self.archive = archive
        self._zip: zipfile.ZipFile | None = None

    @classmethod
    def from_config(cls, settings: OriginSettings, table: ConfigTable) -> ZipOrigin:
        archive = table.path("archive")
        if not zipfile.is_zipfile(archive):
            raise table.error("archive", f"expected a ZIP file, {archive} is not one")
        table.finish()
        return cls(settings, archive)

    async def open(self) -> None:
        self._zip = await asyncio.to_thread(zipfile.ZipFile, self.archive)

    async def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    async def fetch(self, path: str, *, max_bytes: int, validators: Validators | None = None) -> Original:
        # zipfile reads block: off the event loop, like every file read in the node
        return await asyncio.to_thread(self._read, path, max_bytes, validators)

    def _read(self, path: str, max_bytes: int, validators: Validators | None) -> Original:
        try:
            member = self._zip.getinfo(path)
        except KeyError:
            raise OriginNotFound(path) from None
        if member.is_dir():
            raise OriginNotFound(path)
        etag = f'"{member.CRC:08x}-{member.file_size:x}"'
        if validators is not None and validators.etag == etag:
            raise NotModified(path)
        if member.file_size > max_bytes:
            raise SourceTooLarge(path)
        try:
            with self._zip.open(member) as stream:
                body = stream.read(max_bytes + 1)  # never more than the limit, whatever the header said
        except (zipfile.BadZipFile, zlib.error, EOFError) as error:
            raise OriginFailure("bad_response", f"member {path!r} is damaged: {type(error).__name__}") from None
        if len(body) > max_bytes:
            raise SourceTooLarge(path)
        modified = datetime(*member.date_time, tzinfo=timezone.utc)
        return Original(body, etag=etag, last_modified=http_date(modified))


@hookimpl
def edge_origin_types() -> list[type[Origin]]:
    return [ZipOrigin]
