"""`type = "cloudinary_backup"`: a bucket that Cloudinary's automatic backup writes into.

Cloudinary stores every version of an asset as `<public_id>/<version>.<format>`, so a request path is
not a key: the origin lists the public ID's folder (one ListObjectsV2 with `Prefix=<public_id>/` and
`Delimiter=/`, so `shoe` never sees `shoe-red`), picks the pinned version or the newest (a pinned one
newer than all in the folder is not backed up yet: not found), and reads
that object exactly as the `s3` origin does (it *is* an `s3` origin, plus this resolution). The
listing is cached per public ID for `resolution_ttl`, so other sizes and formats of an asset cost one
GetObject and no listing — unless a URL pins a version newer than the listing knows (a new upload,
announced by its versioned URL), or the path was purged since the listing (`OriginRequest.purged_at`),
which list again. Needs `s3:ListBucket` and `s3:GetObject`, nothing else.

`private` and `authenticated` assets (Cloudinary serves them to signed URLs only) are not found unless
every endpoint using the origin is `signed_only` (`serves_signed_types`, set by the config): outputs are
cached by URL, not by signature, so one endpoint that is not would serve them to anyone.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from edge.plugin import (
    IMAGE_EXTENSIONS,
    ConfigTable,
    Origin,
    Original,
    OriginFailure,
    OriginNotFound,
    OriginRequest,
    OriginSettings,
    hookimpl,
)

from .s3 import MAX_KEY_BYTES, S3Origin, quoted_key

#: Cloudinary's resource types; a `v<digits>` segment right after `<resource_type>/<type>/` is a version
RESOURCE_TYPES = frozenset({"image", "video", "raw"})
#: delivery types Cloudinary serves to signed URLs only, and the one it serves to anyone
SIGNED_TYPES = frozenset({"private", "authenticated"})
DELIVERY_TYPES = SIGNED_TYPES | {"upload"}
#: a version is a Unix time: at most 12 ASCII digits (as `edge.cloudinary_urls`); a longer or non-ASCII
#: `v…` segment is part of the public ID (a 5000-digit one made `int()` raise on every request)
_VERSION_SEGMENT = re.compile(r"v([0-9]{1,12})")
#: listing pages (1000 keys each) of one public ID's folder; more is a bad answer (a backup keeps a version
#: per upload: a few, seldom hundreds), as a page that names the token it was asked with again
MAX_LIST_PAGES = 10
#: a version's file name after its folder: `<version>.<format>`, nothing deeper (a store that ignores
#: `Delimiter` lists `banners/2024.summer/hero/1690000000.jpg` in `banners/`: not a version of `banners`)
_VERSION_FILE = re.compile(r"([0-9]{1,12})(\.[A-Za-z0-9]{1,16})?")
#: a version is its upload's Unix time: one later than now by more than this (clocks differ) was never
#: uploaded, and is not found without a listing (made-up versions had each cost one)
FUTURE_VERSION_SLACK_SECONDS = 86_400


@dataclass(frozen=True)
class AssetRequest:
    """A request path read the Cloudinary way."""

    public_id: str
    #: the `v<digits>` the path pins, if any (`v1` is what SDKs write when they do not know)
    version: int | None


def parse_asset_path(path: str) -> AssetRequest:
    """`image/upload/v1570979139/products/shoe.jpg` → public ID `image/upload/products/shoe`, version.

    The version is the first `v<digits>` segment that starts the path or follows `<resource_type>/<type>/`
    and is not the last segment. Only the last extension of the last segment is dropped, and only when it
    is a known image extension: `2024/summer.sale/hero.jpg` → `2024/summer.sale/hero`, `logo.v2` stays."""
    segments = path.split("/")
    version = None
    for index, segment in enumerate(segments[:-1]):
        match = _VERSION_SEGMENT.fullmatch(segment)
        if match and (index == 0 or (index >= 2 and segments[index - 2] in RESOURCE_TYPES)):
            version = int(match.group(1))
            del segments[index]
            break
    stem, dot, extension = segments[-1].rpartition(".")
    if dot and stem and extension.lower() in IMAGE_EXTENSIONS:
        segments[-1] = stem
    return AssetRequest("/".join(segments), version)


@dataclass(frozen=True)
class Versions:
    """The numeric versions found in one public ID's folder: (version, file name), oldest first. Kept
    for `resolution_ttl` per public ID: file names only (a folder's keys each repeat it, up to 1 kB)."""

    folder: str
    found: tuple[tuple[int, str], ...]
    #: when it was listed (wall-clock seconds, as `OriginRequest.purged_at`)
    listed_at: float = 0.0

    @staticmethod
    def in_folder(folder: str, keys: Iterable[str]) -> Iterator[tuple[int, str]]:
        """The versions among `keys` (a listing page's): `latest.jpg`, `notes.txt` and deeper keys are none."""
        for key in keys:
            if not key.startswith(folder):  # a store that ignores `Prefix` lists the bucket: `g/7.jpg` is not f's
                continue
            name = key[len(folder):]
            if match := _VERSION_FILE.fullmatch(name):
                yield int(match.group(1)), name

    @classmethod
    def from_keys(cls, folder: str, keys: Iterable[str]) -> Versions:
        return cls(folder, tuple(sorted(cls.in_folder(folder, keys))), time.time())

    def may_lack(self, pinned: int | None) -> bool:
        """Whether `pinned` could have been uploaded after this listing (it is newer than all it found)."""
        return pinned is not None and bool(self.found) and pinned > self.found[-1][0]

    def choose(self, pinned: int | None) -> str | None:
        """The pinned version's key when the folder has it, else the newest; None for an empty folder."""
        if pinned is not None:
            for version, name in reversed(self.found):
                if version == pinned:
                    return self.folder + name
        return self.folder + self.found[-1][1] if self.found else None


class ResolutionCache:
    """public ID folder → `Versions`, each kept for `ttl` seconds; at most `max_entries`, least recent out."""

    def __init__(self, ttl: float, max_entries: int, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Versions]] = OrderedDict()

    def get(self, folder: str) -> Versions | None:
        entry = self._entries.get(folder)
        if entry is None:
            return None
        expires, versions = entry
        if self._clock() >= expires:
            del self._entries[folder]
            return None
        self._entries.move_to_end(folder)
        return versions

    def put(self, folder: str, versions: Versions) -> None:
        if self.ttl <= 0 or self.max_entries <= 0:
            return
        self._entries[folder] = (self._clock() + self.ttl, versions)
        self._entries.move_to_end(folder)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def discard(self, folder: str) -> None:
        self._entries.pop(folder, None)


def delivery_type(key: str) -> str | None:
    """The delivery type of a key (`res/acme/image/private/secret/` → `private`): the first segment of one
    (`upload`, `private`, `authenticated`) right after a resource type, wherever `folder` starts."""
    segments = key.split("/")
    return next((kind for resource, kind in zip(segments, segments[1:])
                 if resource in RESOURCE_TYPES and kind in DELIVERY_TYPES), None)


class CloudinaryBackupOrigin(S3Origin):
    type_name = "cloudinary_backup"
    #: whether `private` and `authenticated` assets are served: only when every endpoint using the origin is
    #: `signed_only` (`edge.config` sets it once the endpoints are read)
    serves_signed_types = False

    def __init__(self, settings: OriginSettings, *, resolution_ttl: float, resolution_cache_entries: int,
                 **bucket_keys: Any):
        super().__init__(settings, **bucket_keys)
        self.resolution_ttl = resolution_ttl
        self.resolution_cache_entries = resolution_cache_entries
        self._resolutions = ResolutionCache(resolution_ttl, resolution_cache_entries)

    @classmethod
    def from_config(cls, settings: OriginSettings, table: ConfigTable) -> CloudinaryBackupOrigin:
        origin = cls(settings, **cls.bucket_keys(table),
                     resolution_ttl=table.duration("resolution_ttl", "5m"),
                     resolution_cache_entries=table.int("resolution_cache_entries", 100_000, min=0))
        table.finish()
        return origin

    async def fetch(self, request: OriginRequest) -> Original:
        path, max_bytes, validators = request.path, request.max_bytes, request.validators
        asset = parse_asset_path(path)
        if not asset.public_id or asset.public_id.endswith("/"):
            raise OriginNotFound(path)
        folder = self.key_for(asset.public_id) + "/"
        if not self.serves_signed_types and delivery_type(folder) in SIGNED_TYPES:
            raise OriginNotFound(path)
        if len(folder.encode()) >= MAX_KEY_BYTES:  # every version's key is longer than its folder
            raise OriginNotFound(path)
        if asset.version is not None and asset.version > time.time() + FUTURE_VERSION_SLACK_SECONDS:
            raise OriginNotFound(path)
        versions = self._resolutions.get(folder)
        if versions is not None and versions.may_lack(asset.version):
            versions = None  # a URL pinning a version newer than we listed: a new upload, list again
        if versions is not None and request.purged_at is not None and versions.listed_at < request.purged_at:
            versions = None  # listed before the path was purged: the operator may have uploaded since
        if versions is not None:
            key = versions.choose(asset.version)
            try:
                return await self.get_object(key, max_bytes=max_bytes, validators=validators)
            except OriginNotFound:  # that version was deleted since we listed: list again, once
                self._resolutions.discard(folder)
        versions = await self._list_versions(folder)
        key = versions.choose(asset.version)
        if key is None:
            raise OriginNotFound(path)
        self._resolutions.put(folder, versions)
        if versions.may_lack(asset.version):
            # newer than every version backed up: an upload the backup has yet to copy (it lags). The newest
            # instead would be cached for a year under a URL that names another image; a 404 is remembered
            # for `not_found_ttl` only, so the URL serves its image once the backup has it
            raise OriginNotFound(path)
        return await self.get_object(key, max_bytes=max_bytes, validators=validators)

    async def _list_versions(self, folder: str) -> Versions:
        keys: list[str] = []
        params = {"Bucket": self.bucket, "Prefix": folder, "Delimiter": "/"}
        tokens: set[str] = set()
        for _ in range(MAX_LIST_PAGES):
            with self.classified("ListObjectsV2", folder):  # an entry without its Key too: a bad answer
                page = await self._client.list_objects_v2(**params)
                keys.extend(item["Key"] for item in page.get("Contents", ()))
            if not page.get("IsTruncated"):
                return Versions.from_keys(folder, keys)
            token = page.get("NextContinuationToken")
            if not token or token in tokens:  # a store that would list forever: no end to wait for
                raise OriginFailure("bad_response", f"ListObjectsV2 {quoted_key(folder)}: truncated without a "
                                                    f"{'new ' if token else ''}token")
            tokens.add(token)
            params["ContinuationToken"] = token
        raise OriginFailure("bad_response", f"ListObjectsV2 {quoted_key(folder)}: more than {MAX_LIST_PAGES} pages")


#: the `edge.plugin` API this module is written against
EDGE_PLUGIN_API = "1.3"


@hookimpl
def edge_origin_types() -> list[type[Origin]]:
    return [CloudinaryBackupOrigin]
