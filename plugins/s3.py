"""`type = "s3"`: originals in an S3 bucket, or any S3-compatible store (MinIO, R2, Wasabi, GCS interop).

The request path maps to one key, `folder + path` (percent-encoded first when `encode_keys` is on),
read with one GetObject. One aioboto3 client per origin lives from `open()` to `close()`; botocore's
own retries are off, because a failed origin hands the request to the next one and the chain's
timeout is the only clock. Every failure is classified into the not-found / origin-error split, and
no message carries anything the server said verbatim (it might echo a credential).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import re
import zlib
from collections.abc import AsyncIterator, Iterator
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from edge.plugin import (
    CHUNK_BYTES,
    ConfigTable,
    NotModified,
    Origin,
    Original,
    OriginFailure,
    OriginNotFound,
    OriginRequest,
    OriginSettings,
    Secret,
    Validators,
    hookimpl,
    http_date,
    read_announced,
    read_limited,
    without_userinfo,
)

if TYPE_CHECKING:
    from botocore.exceptions import ClientError

log = logging.getLogger("edge.origin.s3")

#: connections one origin keeps open to its store; requests beyond it wait for a free one
MAX_CONNECTIONS = 64
#: the most of an answer botocore reads whole (an error's XML, a ListObjectsV2 page, what a PutObject or a
#: DeleteObjects answers; an object is streamed and held to `max_bytes`): S3's largest, a page of 1000 keys of
#: 1024 bytes percent-encoded, is ~3.5 MB. A store's 300 MB error body was read whole (and copied: past 1 GB)
MAX_ANSWER_BYTES = 8 * 1024 * 1024
#: the most tags (`<`) in such an answer: botocore parses it on the event loop, ~2 µs an element and ~20 µs a
#: listing entry with a date, and a 44 MB page of 400 000 entries held the loop for 25 s. A page of 1000
#: entries with every field S3 sends has ~26 000
MAX_ANSWER_TAGS = 64_000
_NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound"}
#: the streamed answer (an object's body, not read yet) of the call this task makes, once its headers are in
_streaming: contextvars.ContextVar[Any] = contextvars.ContextVar("edge_s3_streaming", default=None)
#: what S3's error codes look like (`NoSuchKey`, `SlowDown`, `404`); another is not quoted
_CODE = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: S3's answers to a request signed for, or sent to, another region than the bucket's; and what a region looks like
_WRONG_REGION_CODES = frozenset({"PermanentRedirect", "AuthorizationHeaderMalformed",
                                 "IllegalLocationConstraintException"})
_REGION = re.compile(r"[a-z]{2}(-[a-z0-9]+){1,4}")
#: what XML 1.0 cannot hold (control characters but tab and LF), and CR, which its parsers read as LF: a key with
#: one in DeleteObjects had the whole batch refused (a bucket writer's object stopped every purge of its path)
_NOT_IN_XML = re.compile("[\x00-\x08\x0b-\x1f\ufffe\uffff]")
#: how much of a key an error message quotes: a listing may hold a key of any length (a store's answer)
QUOTED_KEY_CHARS = 200
_DENIED_CODES = {
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
    "TokenRefreshRequired", "AccountProblem", "AllAccessDisabled", "InvalidSecurity",
}


#: S3 keys are at most 1024 bytes of UTF-8: AWS answers a GetObject of a longer one `400 KeyTooLongError`, which
#: would be a failure of the origin (a 502) for a path no object can have
MAX_KEY_BYTES = 1024


def _gzipped(content_encoding: str | None) -> bool:
    """Whether an object is stored gzipped (`Content-Encoding: gzip`, as tools that sync a site's files write them;
    other codings, `aws-chunked` left by some uploads included, describe no stored bytes a reader inflates)."""
    codings = {coding.strip().lower() for coding in (content_encoding or "").split(",")}
    return bool(codings & {"gzip", "x-gzip"})


async def _inflated(chunks: AsyncIterator[bytes], key: str) -> AsyncIterator[bytes]:
    """A gzipped object's bytes inflated as they arrive, at most `CHUNK_BYTES` at a time: `read_limited` stops a
    bomb at `max_bytes` without inflating the rest. Served as stored, such an object had been a 422 (a browser, a CDN
    and the `web` origin inflate it; probe of S3 keys)."""
    inflate = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    try:
        async for chunk in chunks:
            while chunk:
                piece = inflate.decompress(chunk, CHUNK_BYTES)
                chunk = inflate.unconsumed_tail
                if piece:
                    yield piece
        if tail := inflate.flush():
            yield tail
    except zlib.error as error:
        raise OriginFailure("bad_response", f"{key!r}: stored with Content-Encoding gzip, but {error}") from None
    if not inflate.eof:
        raise OriginFailure("bad_response", f"{key!r}: stored with Content-Encoding gzip, but cut short")


def encode_key(path: str) -> str:
    """RFC 3986 percent-encoding of a decoded path, keeping `/` (`+` → `%2B`, space → `%20`, UTF-8)."""
    return quote(path, safe="/")


def normalise_folder(folder: str) -> str:
    """`/`, `""` → the bucket root (`""`); `/res/demo` → `res/demo/`."""
    folder = folder.strip("/")
    return f"{folder}/" if folder else ""


class S3Origin(Origin):
    type_name = "s3"
    #: the longest object key the store takes, in bytes of UTF-8 (the shared tier and the purge journal,
    #: which keep their objects in such a store, skip or shorten longer keys)
    max_key_bytes = MAX_KEY_BYTES

    def __init__(self, settings: OriginSettings, *, bucket: str, folder: str, region: str,
                 endpoint_url: str | None, access_key_id: Secret | None, secret_access_key: Secret | None,
                 path_style: bool, encode_keys: bool):
        super().__init__(settings)
        # aioboto3 and botocore (with aiohttp) cost a process ~20 MB: imported once a config names an S3-backed origin
        # (in `edge serve`'s supervisor, before it forks: the workers share them), never without one
        import aioboto3  # noqa: F401
        import botocore.exceptions  # noqa: F401
        self.bucket = bucket
        self.folder = folder
        self.region = region
        self.endpoint_url = endpoint_url
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.path_style = path_style
        self.encode_keys = encode_keys
        self._client: Any = None
        self._client_scope: contextlib.AsyncExitStack | None = None

    # -- configuration ----------------------------------------------------------------------------
    @classmethod
    def from_config(cls, settings: OriginSettings, table: ConfigTable) -> S3Origin:
        origin = cls(settings, **cls.bucket_keys(table))
        table.finish()
        return origin

    @staticmethod
    def bucket_keys(table: ConfigTable) -> dict[str, Any]:
        """The keys every S3-backed origin type reads, as keyword arguments of `S3Origin`."""
        bucket = table.str("bucket")
        if not bucket:
            raise table.error("bucket", "expected a bucket name, got an empty string")
        if "/" in bucket or ":" in bucket:  # `s3://images`, an ARN, `images/products`: botocore's bare refusal at serve
            raise table.error("bucket", f"expected a bucket's name alone, got {bucket!r}: a folder of it goes in "
                                        "`folder`, a store's address in `endpoint_url`")
        endpoint_url, parts = table.url("endpoint_url", None)
        if endpoint_url is not None:
            if parts.username or parts.password:  # it would show in config dumps
                raise table.error("endpoint_url", "expected no user:password@ in the URL; the keys go in "
                                                  "access_key_id and secret_access_key")
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise table.error("endpoint_url", "expected an http:// or https:// URL, "
                                                  f"got {without_userinfo(endpoint_url)!r}")
            if parts.path.strip("/") or parts.query or parts.fragment:
                # a bucket or a folder written in the URL: every key was asked under it, and every image was a
                # 404, cached, the node up and its log silent (unlucky-operator probe)
                raise table.error("endpoint_url", "expected the store's address alone (scheme, host, port), got "
                                                  f"{parts.path + ('?' if parts.query else '')!r} after it: the "
                                                  "bucket goes in `bucket`, a folder of it in `folder`")
        access_key_id = table.secret("access_key_id")
        secret_access_key = table.secret("secret_access_key")
        for key, value in (("access_key_id", access_key_id), ("secret_access_key", secret_access_key)):
            if value is not None and not value.reveal().strip():  # `${VAR}` set empty: signed with nothing, a 403
                raise table.error(key, "is empty: set it, or remove both keys for the usual AWS credential chain")
        if (access_key_id is None) != (secret_access_key is None):
            missing = "secret_access_key" if secret_access_key is None else "access_key_id"
            raise table.error(missing, "set access_key_id and secret_access_key together, or neither "
                                       "(then the usual AWS credential chain is used)")
        return {
            "bucket": bucket,
            "folder": normalise_folder(table.str("folder", "/")),
            "region": table.str("region", "us-east-1"),
            "endpoint_url": endpoint_url,
            "access_key_id": access_key_id,
            "secret_access_key": secret_access_key,
            # S3-compatible stores rarely have wildcard DNS for virtual-hosted buckets
            "path_style": table.bool("path_style", endpoint_url is not None),
            "encode_keys": table.bool("encode_keys", False),
        }

    # -- lifecycle --------------------------------------------------------------------------------
    async def open(self) -> None:
        import aioboto3
        from aiobotocore.config import AioConfig

        timeout = self.settings.timeout
        config = AioConfig(
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"mode": "standard", "total_max_attempts": 1},
            max_pool_connections=MAX_CONNECTIONS,
            s3={"addressing_style": "path" if self.path_style else "auto"},
            # TLS already protects the bytes; a CRC over every original is CPU for nothing
            response_checksum_validation="when_required",
            http_session_cls=_session_refusing_redirects(),
        )
        credentials = {}
        if self.access_key_id is not None and self.secret_access_key is not None:
            credentials = {"aws_access_key_id": self.access_key_id.reveal(),
                           "aws_secret_access_key": self.secret_access_key.reveal()}
        scope = contextlib.AsyncExitStack()
        self._client = await scope.enter_async_context(aioboto3.Session().client(
            "s3", region_name=self.region, endpoint_url=self.endpoint_url, config=config, **credentials))
        self._client.meta.events.register("before-call.s3.HeadBucket", _region_probe_not_redirected)
        self._client_scope = scope

    async def close(self) -> None:
        scope, self._client_scope, self._client = self._client_scope, None, None
        if scope is not None:
            await scope.aclose()

    # -- fetching ---------------------------------------------------------------------------------
    def key_for(self, path: str) -> str:
        """The object key of a request path: `folder + path`, percent-encoded when `encode_keys` is on."""
        return self.folder + (encode_key(path) if self.encode_keys else path)

    async def fetch(self, request: OriginRequest) -> Original:
        key = self.key_for(request.path)
        if len(key.encode()) > MAX_KEY_BYTES:
            raise OriginNotFound(request.path)
        return await self.get_object(key, max_bytes=request.max_bytes, validators=request.validators)

    async def get_object(self, key: str, *, max_bytes: int, validators: Validators | None = None) -> Original:
        """Read one object, streaming, stopping past `max_bytes`; conditional when `validators` are given."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if validators is not None and validators.etag:
            params["IfNoneMatch"] = validators.etag
        elif validators is not None and validators.last_modified:
            params["IfModifiedSince"] = parsedate_to_datetime(validators.last_modified)
        with self.classified("GetObject", key, conditional="IfNoneMatch" in params or "IfModifiedSince" in params):
            _streaming.set(None)
            try:
                response = await self._client.get_object(**params)
            except BaseException:
                # botocore had the answer's headers and failed on them (a Last-Modified that is not a date):
                # nobody has the body to close, and its connection stayed taken (until garbage collection, if
                # ever). 64 such answers held the whole pool: every later fetch of the origin timed out
                if (streamed := _streaming.get()) is not None:
                    streamed.close()
                raise
            finally:
                _streaming.set(None)
            body = response["Body"]
            async with body:  # releases the connection, or drops it when the body was not read to the end
                length = response.get("ContentLength")
                if _gzipped(response.get("ContentEncoding")):
                    data = await read_limited(_inflated(body.iter_chunks(CHUNK_BYTES), key), max_bytes, key)
                elif length is not None:  # aiohttp never reads past Content-Length
                    data = await read_announced(body.read, length, max_bytes, key)
                else:
                    data = await read_limited(body.iter_chunks(CHUNK_BYTES), max_bytes, key)
        return Original(data, etag=response.get("ETag"), last_modified=http_date(response.get("LastModified")),
                        content_type=response.get("ContentType"))

    # -- writing (the shared cache tier uses the same client: edge/shared_cache.py) ----------------
    async def put_object(self, key: str, body: bytes, content_type: str) -> None:
        with self.classified("PutObject", key):
            answer = await self._client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)
        if not answer.get("ETag"):
            # S3 and the S3-compatible stores name what they stored. A 200 without an ETag is a web server
            # taking the request for something else (an endpoint_url on the wrong port): nothing was stored,
            # and a purge had reported its journal entry written
            raise OriginFailure("bad_response", f"PutObject {quoted_key(key)}: no ETag in the answer, so nothing "
                                                "was stored: is endpoint_url an S3 API?")

    async def delete_prefix(self, prefix: str, direct: bool | None = None) -> int:
        """Delete every object whose key starts with `prefix` (ListObjectsV2 pages, then DeleteObjects
        in batches of up to 1000); how many were deleted. `direct`: True, only those with no `/` after
        `prefix` (listed with that delimiter: not the sub-folders' objects); False, only those with one."""
        deleted = 0
        listing = {"Bucket": self.bucket, "Prefix": prefix, **({"Delimiter": "/"} if direct else {})}
        with self.classified("ListObjectsV2", prefix):
            async for page in self._client.get_paginator("list_objects_v2").paginate(**listing):
                # only what the prefix covers: a store that ignores `Prefix` (broken, or not S3) lists the
                # bucket, and every key of it was deleted, outside the shared tier's folder too; nor one
                # that ignores the delimiter the sub-folders
                keys = [item["Key"] for item in page.get("Contents", []) if item["Key"].startswith(prefix)
                        and (direct is None or ("/" in item["Key"][len(prefix):]) != direct)]
                await self.delete_keys(keys)
                deleted += len(keys)
        return deleted

    async def delete_keys(self, keys: list[str]) -> None:
        """Delete these objects (at most 1000: one DeleteObjects; a key XML cannot carry, one DeleteObject each)."""
        alone = [key for key in keys if _NOT_IN_XML.search(key)]
        for key in alone:  # in the request's path: DeleteObjects' XML refuses them all for one, or reads CR as LF
            with self.classified("DeleteObject", key):
                await self._client.delete_object(Bucket=self.bucket, Key=key)
        keys = [key for key in keys if not _NOT_IN_XML.search(key)]
        if not keys:
            return
        from botocore.exceptions import ConnectionClosedError, EndpointConnectionError

        request = {"Bucket": self.bucket, "Delete": {"Objects": [{"Key": key} for key in keys], "Quiet": True}}
        with self.classified("DeleteObjects", keys[0]):
            try:
                answer = await self._client.delete_objects(**request)
            except (ConnectionClosedError, EndpointConnectionError):
                # aiohttp sends a request again on a pooled connection the store had closed (unsaid, or as
                # it was taken) only when its method is idempotent: a POST is not, and every other purge
                # failed against a store that closes each connection after answering. Deleting is: once more
                answer = await self._client.delete_objects(**request)
        if answer.get("Errors"):
            first = answer["Errors"][0]
            key, code = str(first.get("Key") or keys[0]), str(first.get("Code") or "")
            code = code if _CODE.fullmatch(code) else "error"  # a store's own words, of any length
            raise OriginFailure("error", f"DeleteObjects {quoted_key(key)}: {code}")

    async def list_objects(self, prefix: str, start_after: str = "", pages: int = 1) -> list[tuple[str, float]]:
        """The keys under `prefix` that sort after `start_after`, in order, each with when the store
        last wrote it (seconds since the epoch, by the store's clock): at most `pages` pages of
        ListObjectsV2 (1000 keys each)."""
        found: list[tuple[str, float]] = []
        with self.classified("ListObjectsV2", prefix):
            paginator = self._client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, StartAfter=start_after,
                                                 PaginationConfig={"MaxItems": pages * 1000}):
                found += [(item["Key"], item["LastModified"].timestamp()) for item in page.get("Contents", [])
                          if item["Key"].startswith(prefix)]  # as `delete_prefix`: the purge journal deletes them
        return found

    @contextlib.contextmanager
    def classified(self, operation: str, key: str, conditional: bool = False) -> Iterator[None]:
        """Turn what botocore and aiohttp raise into `OriginNotFound`, `NotModified` (only when the call was
        `conditional`) or `OriginFailure`."""
        import aiohttp
        from botocore.exceptions import (  # imported with the origin: a lookup
            BotoCoreError,
            ClientError,
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            HTTPClientError,
            IncompleteReadError,
            NoCredentialsError,
            PartialCredentialsError,
            ReadTimeoutError,
            ResponseStreamingError,
        )
        from botocore.parsers import ResponseParserError

        where = f"{operation} {quoted_key(key)}"
        try:
            yield
        except ClientError as error:
            raise _client_error(operation, key, error, conditional) from None
        except (ConnectTimeoutError, ReadTimeoutError, TimeoutError):  # before HTTPClientError: one of them
            raise OriginFailure("timeout", f"{where}: no answer in time") from None
        except (ConnectionClosedError, ResponseStreamingError, IncompleteReadError, aiohttp.ClientPayloadError,
                aiohttp.ServerDisconnectedError):  # before HTTPClientError: the first two are ones (were `error`)
            raise OriginFailure("bad_response", f"{where}: the response was cut short") from None
        except AnswerTooLarge as error:  # an error's body (read after the headers, outside aiohttp's send)
            raise OriginFailure("bad_response", f"{where}: {error}") from None
        except HTTPClientError as error:
            if isinstance(error.kwargs.get("error"), RedirectRefused):
                raise OriginFailure("redirect_refused", f"{where}: {error.kwargs['error']}") from None
            if isinstance(error.kwargs.get("error"), AnswerTooLarge):
                raise OriginFailure("bad_response", f"{where}: {error.kwargs['error']}") from None
            if isinstance(error.kwargs.get("error"), aiohttp.ClientResponseError):  # aiohttp's reading of the answer
                # (a 304 with a body, a header that does not parse): was `error`, the node's or the network's
                raise OriginFailure("bad_response", f"{where}: an answer that does not parse as HTTP") from None
            raise OriginFailure("error", f"{where}: {type(error).__name__}") from None
        except EndpointConnectionError as error:  # named, by its address alone (a region typo shows in the host)
            raise OriginFailure("refused", f"{where}: cannot connect to {_address(error.kwargs.get('endpoint_url'))}"
                                ) from None
        except (NoCredentialsError, PartialCredentialsError):
            raise OriginFailure("denied", f"{where}: no credentials") from None
        except (BotoCoreError, aiohttp.ClientError) as error:
            raise OriginFailure("error", f"{where}: {type(error).__name__}") from None
        except (ResponseParserError, ValueError, KeyError, TypeError, ArithmeticError, RuntimeError):
            # an answer botocore cannot read (a date or a number in a header or a listing that is not one, a
            # listing entry without its Key): the store's fault. It had escaped as itself, a 500 of a request
            # the shared tier read for, and of a purge (`edge/shared_cache.py` expects `OriginFailure`).
            # (botocore raises RuntimeError for a date of 20 digits: a time past its range)
            raise OriginFailure("bad_response", f"{where}: an answer that does not parse") from None


class RedirectRefused(Exception):
    """An S3 endpoint answered with a redirect (never followed)."""


class AnswerTooLarge(Exception):
    """An answer botocore reads whole is over `MAX_ANSWER_BYTES` or `MAX_ANSWER_TAGS` (never S3's own)."""


@functools.cache
def _session_refusing_redirects() -> type:
    """aiobotocore's HTTP session, except that an answer read whole is bounded (`BoundedResponse`) and a
    redirect is refused: aiohttp follows a `Location` to
    any host unless a request says not to, and aiobotocore's requests do not, so a store (or anyone
    on a plain-HTTP path to it) answering 307 made the node fetch another address, an internal one
    too, and serve and cache what came back. (S3's own answer to a wrong region, a 301 without `Location`, is
    an error botocore reads: not a redirect aiohttp follows.)"""
    import aiohttp
    import yarl
    from aiobotocore.httpsession import AIOHTTPSession

    async def refuse(session, context, params) -> None:
        if "Location" not in params.response.headers and "URI" not in params.response.headers:
            # not followed (aiohttp returns it): AWS's answer to a bucket in another region, which botocore reads
            # (`PermanentRedirect`, its region), had been told as a redirect refused to the store's own address
            return
        # named by where it leads (`params.url` is the store's own address, which the log had named)
        try:
            target = str(params.url.join(yarl.URL(params.response.headers.get("Location", ""))).origin())
        except ValueError:  # no host, or one that does not parse
            target = "an address that does not parse"
        raise RedirectRefused(f"redirect to {target} refused")

    refusing = aiohttp.TraceConfig()
    refusing.on_request_redirect.append(refuse)
    refusing.freeze()

    class BoundedResponse(aiohttp.ClientResponse):
        """An answer read whole (`read()`: what aiobotocore does with every answer but an object's body,
        which it streams) stops past `MAX_ANSWER_BYTES`: it was read to its end, however large, before
        botocore looked at it, outside the fetch memory budget. One of more than `MAX_ANSWER_TAGS` tags is
        refused before botocore parses it (here: its own first look at a listing, for an error in a 200, is a
        parse)."""

        async def read(self) -> bytes:
            if self._body is None:
                parts, total = [], 0
                try:
                    if (self.content_length or 0) > MAX_ANSWER_BYTES:
                        raise AnswerTooLarge(f"an answer of more than {MAX_ANSWER_BYTES} bytes")
                    while chunk := await self.content.readany():
                        total += len(chunk)
                        if total > MAX_ANSWER_BYTES:
                            raise AnswerTooLarge(f"an answer of more than {MAX_ANSWER_BYTES} bytes")
                        parts.append(chunk)
                except BaseException:
                    self.close()  # the connection is dropped, never pooled with the rest unread
                    raise
                self._body = b"".join(parts)
                if self._body.count(b"<") > MAX_ANSWER_TAGS:
                    raise AnswerTooLarge(f"an answer of more than {MAX_ANSWER_TAGS} tags")
            return await super().read()

    class RefusingRedirects(AIOHTTPSession):
        async def send(self, request):
            response = await super().send(request)
            if request.stream_output:  # an object's body, streamed: `S3Origin.get_object` closes it if botocore fails
                _streaming.set(response.raw)
            return response

        async def _get_session(self, proxy_url):  # aiobotocore makes the aiohttp session here
            session = await super()._get_session(proxy_url)
            if refusing not in session.trace_configs:
                session.trace_configs.append(refusing)  # before its first request: each one reads the list
                session._response_class = BoundedResponse  # aiohttp's `response_class`, which aiobotocore does not set
            return session

    return RefusingRedirects


def _region_probe_not_redirected(context: dict[str, Any], **_: Any) -> None:
    """botocore answers a 301, 302 or 307 that names no region (no `x-amz-bucket-region`, no `<Region>`) by asking
    the bucket's region with a HeadBucket, and that HeadBucket's own 3xx the same way, with another: a store
    answering 3xx to everything was sent ~100 HEADs per call, nested, until a RecursionError, which ended the call
    as a failure of any kind and could land inside asyncio's making of a transport (its socket then open until
    garbage collection). The node sends no HeadBucket of its own: one is that probe, whose answer is not redirected
    again (the redirector's own mark of a request it has redirected)."""
    if isinstance(context.get("s3_redirect"), dict):
        context["s3_redirect"]["redirected"] = True


def quoted_key(key: str) -> str:
    """`key` as an error message quotes it: its first `QUOTED_KEY_CHARS` characters."""
    return repr(key if len(key) <= QUOTED_KEY_CHARS else key[:QUOTED_KEY_CHARS] + "…")


def _address(url: object) -> str:
    """`scheme://host[:port]` of a URL botocore tried (its path holds the bucket and the key), or `the endpoint`."""
    import yarl

    try:
        return str(yarl.URL(url).origin()) if isinstance(url, str) else "the endpoint"
    except ValueError:  # not absolute, or a host that does not parse
        return "the endpoint"


def _client_error(operation: str, key: str, error: ClientError, conditional: bool) -> Exception:
    """An S3 error response, by its code and status only (its message text may echo a key id); a 304 is
    `NotModified` only for a `conditional` call."""
    code = str(error.response.get("Error", {}).get("Code") or "")  # `<Code/>` is None: not "None"
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if not _CODE.fullmatch(code):  # a store's own words, of any length (the shared tier logs them whole)
        code = "unexpected code" if code else ""
    where = f"{operation} {quoted_key(key)}: {code or 'error'} (HTTP {status})"
    if code in _NOT_FOUND_CODES:
        # a key is missing only where one is read: to a listing or a write, a 404 is a bucket that is not
        # there (a store's bare 404, not NoSuchBucket), a failure; as `OriginNotFound` it had escaped the
        # shared tier (a 500 of a purge) and made a `cloudinary_backup` origin's every path a 404
        return OriginNotFound(key) if operation == "GetObject" else OriginFailure("error", where)
    if status == 304 or code == "304":
        # to a fetch that sent no validators, a 304 makes no sense: the originals tier takes `NotModified`
        # only after a conditional fetch (it holds the original), and one of the first fetch was a 500
        return NotModified(key) if conditional else OriginFailure("bad_response", f"{where} to an unconditional call")
    if status == 403 or code in _DENIED_CODES:
        return OriginFailure("denied", where)
    if status >= 500:
        return OriginFailure("server_error", where)
    region = (error.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
              or error.response.get("Error", {}).get("Region"))
    if code in _WRONG_REGION_CODES and isinstance(region, str) and _REGION.fullmatch(region):
        # what the operator has to change, which the store said (a region is no secret)
        return OriginFailure("error", f"{where}: the bucket is in region {region}: set `region = \"{region}\"`")
    return OriginFailure("error", where)  # NoSuchBucket, InvalidRequest…: the origin's config is wrong


#: the `edge.plugin` API this module is written against
EDGE_PLUGIN_API = "1.3"


@hookimpl
def edge_origin_types() -> list[type[Origin]]:
    return [S3Origin]
