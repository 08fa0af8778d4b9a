"""`type = "azure_blob"`: originals in an Azure Blob Storage container (or the Azurite emulator).

    [[origins]]
    name = "azure"
    type = "azure_blob"
    account_url = "https://myaccount.blob.core.windows.net"
    container = "originals"
    folder = "/"                        # where in the container the request paths start
    account_name = "myaccount"          # with account_key: Shared Key authorisation
    account_key = "${AZURE_STORAGE_KEY}"
    # or: sas_token = "${AZURE_SAS_TOKEN}" (read-only: `r` permission); neither: a public container

The request path maps to one blob, `folder + path`, read with one Get Blob (conditional when the node
holds a version). One async `ContainerClient` per origin lives from `open()` to `close()`; the SDK's
retries are off, because a failed origin hands the request to the next one and the node's timeout
is the only clock. The SDK's errors are classified into the not-found / origin-error split by their
status and error code only: a message from the service is never passed on.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from azure.core import MatchConditions
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob.aio import ContainerClient

from edge.plugin import (
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
    check_announced_size,
    hookimpl,
    http_date,
    read_limited,
)

__version__ = "0.1.0"

#: the `edge.plugin` API this plugin is written against
EDGE_PLUGIN_API = "1.0"

#: bytes per Get Blob: the first answers the size, so an original over the limit costs this much at most
CHUNK_BYTES = 4 * 1024 * 1024
_CONTAINER_NAME = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$")
_DENIED_CODES = {"AuthenticationFailed", "AuthorizationFailure", "AuthorizationPermissionMismatch",
                 "InsufficientAccountPermissions", "AccountIsDisabled"}


class AzureBlobOrigin(Origin):
    type_name = "azure_blob"

    def __init__(self, settings: OriginSettings, *, account_url: str, container: str, folder: str,
                 account_name: str | None, account_key: Secret | None, sas_token: Secret | None):
        super().__init__(settings)
        self.account_url = account_url
        self.container = container
        self.folder = folder
        self.account_name = account_name
        self.account_key = account_key
        self.sas_token = sas_token
        self._client: ContainerClient | None = None

    @classmethod
    def from_config(cls, settings: OriginSettings, table: ConfigTable) -> AzureBlobOrigin:
        account_url = table.str("account_url")
        parts = urlsplit(account_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
            raise table.error("account_url", f"expected an http:// or https:// URL without ?query, got {account_url!r}")
        container = table.str("container")
        if not _CONTAINER_NAME.match(container):
            raise table.error("container", f"expected an Azure container name (3-63 lowercase letters, digits "
                                           f"and single hyphens), got {container!r}")
        account_name = table.str("account_name", None)
        account_key = table.secret("account_key")
        sas_token = table.secret("sas_token")
        if (account_name is None) != (account_key is None):
            raise table.error("account_key" if account_key is None else "account_name",
                              "set account_name and account_key together")
        if account_key is not None and sas_token is not None:
            raise table.error("sas_token", "set account_key or sas_token, not both")
        if account_key is not None and not _is_base64(account_key.reveal()):
            raise table.error("account_key", "expected the base64 key shown in the Azure portal")
        folder = table.str("folder", "/").strip("/")
        origin = cls(settings, account_url=account_url.rstrip("/"), container=container,
                     folder=f"{folder}/" if folder else "", account_name=account_name,
                     account_key=account_key, sas_token=sas_token)
        table.finish()
        return origin

    async def open(self) -> None:
        credential: Any = None
        if self.account_key is not None:
            credential = AzureNamedKeyCredential(self.account_name, self.account_key.reveal())
        elif self.sas_token is not None:
            credential = self.sas_token.reveal()
        timeout = self.settings.timeout
        self._client = ContainerClient(
            self.account_url, self.container, credential=credential,
            retry_total=0, connection_timeout=timeout, read_timeout=timeout,
            max_single_get_size=CHUNK_BYTES, max_chunk_get_size=CHUNK_BYTES)
        # the SDK logs every request and response at INFO: the node's log is for what goes wrong
        logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def fetch(self, request: OriginRequest) -> Original:
        blob = self.folder + request.path
        with self.classified(blob):
            download = await self._client.download_blob(blob, max_concurrency=1, **_conditions(request.validators))
            check_announced_size(download.size, request.max_bytes, request.path)
            body = await read_limited(download.chunks(), request.max_bytes, request.path)
        properties = download.properties
        return Original(body, etag=properties.etag, last_modified=http_date(properties.last_modified),
                        content_type=properties.content_settings.content_type)

    @contextlib.contextmanager
    def classified(self, blob: str) -> Iterator[None]:
        """Turn what the SDK raises into `OriginNotFound`, `NotModified` or `OriginFailure`."""
        try:
            yield
        except ResourceNotFoundError as error:
            if error.error_code == "ContainerNotFound":  # the config is wrong, not the path
                raise OriginFailure("error", f"container {self.container!r} does not exist") from None
            raise OriginNotFound(blob) from None
        except ClientAuthenticationError:
            raise OriginFailure("denied", f"{blob!r}: the credentials were refused") from None
        except HttpResponseError as error:
            if error.status_code == 304:  # Azure answers a conditional Get Blob as an error
                raise NotModified(blob) from None
            code = getattr(error.error_code, "value", error.error_code)
            where = f"{blob!r}: {code or 'error'} (HTTP {error.status_code})"
            if error.status_code == 403 or code in _DENIED_CODES:
                raise OriginFailure("denied", where) from None
            if (error.status_code or 0) >= 500:
                raise OriginFailure("server_error", where) from None
            raise OriginFailure("error", where) from None
        except (ServiceRequestError, ServiceResponseError) as error:
            if _timed_out(error):
                raise OriginFailure("timeout", f"{blob!r}: no answer in time") from None
            if isinstance(error, ServiceRequestError):
                raise OriginFailure("refused", f"{blob!r}: cannot connect to {self.account_url}") from None
            raise OriginFailure("bad_response", f"{blob!r}: the response was cut short") from None
        except AzureError as error:
            raise OriginFailure("error", f"{blob!r}: {type(error).__name__}") from None


def _conditions(validators: Validators | None) -> dict[str, Any]:
    """Get Blob's conditional arguments: If-None-Match (preferred) or If-Modified-Since."""
    if validators is not None and validators.etag:
        return {"etag": validators.etag, "match_condition": MatchConditions.IfModified}
    if validators is not None and validators.last_modified:
        return {"if_modified_since": parsedate_to_datetime(validators.last_modified)}
    return {}


def _timed_out(error: AzureError) -> bool:
    cause = getattr(error, "inner_exception", None) or error.__cause__
    return isinstance(cause, TimeoutError) or "Timeout" in type(error).__name__


def _is_base64(text: str) -> bool:
    try:
        return bool(base64.b64decode(text, validate=True))
    except ValueError:
        return False


@hookimpl
def edge_origin_types() -> list[type[Origin]]:
    return [AzureBlobOrigin]
