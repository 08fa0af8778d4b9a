"""Signed URLs as the ImageKit SDKs write them: `?ik-s=<signature>` and, for an expiring URL, `ik-t=<unix time>`.

The SDKs sign the URL they built with the endpoint's base (`urlEndpoint` and the `/` after it) cut
off: `tr:w-300/folder/img.jpg?tr=h-200` (query parameters included, in the order written), then
append the expiry (`9999999999` when the URL does not expire) and take the lower-case hex HMAC-SHA1
of that text with the private key; `ik-t` and `ik-s` go last in the query. Verification repeats that
on the URL exactly as the client sent it (still percent-encoded), so any change to it, however
equivalent once decoded, fails the check; and on its path decoded, which the SDKs before imagekitio 5
signed (`_as_written`). See docs/signed-urls.md.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote_to_bytes, urlsplit

from .errors import SignatureRefused

if TYPE_CHECKING:
    from .config import Endpoint

SIGNATURE_PARAM = "ik-s"
EXPIRY_PARAM = "ik-t"
#: the expiry the SDKs sign when a URL does not expire
NO_EXPIRY = 9999999999
#: why a request was refused: the 401 body says `<reason> signature`, the metric counts by it
REASONS = ("missing", "invalid", "expired")
#: characters the SDKs leave unencoded in a path (RFC 3986 `pchar` and `/`, as Node's URL writes them)
PATH_SAFE = "/:@!$&'()*+,;=-._~"
_SIGNATURE = re.compile(r"[0-9a-f]{40}")
#: `ik-t` as the SDKs write it, a Unix time of ten digits: the expiry is signed right after the URL, so a
#: looser form let digits move across that boundary with the signature still valid (`?tr=w-315&ik-t=1796401229`
#: signed `?tr=w-31&ik-t=51796401229` too: another size, valid until the year 3600)
_EXPIRY = re.compile(r"[1-9][0-9]{9}")
_ENCODED_SLASH = re.compile(rb"%2[fF]")


def signature(key: str, unsigned_url: bytes, expires_at: int | str) -> str:
    """Lower-case hex HMAC-SHA1 of `unsigned_url` (past the endpoint's base, without `ik-s`/`ik-t`)
    followed by the expiry."""
    return _signature(_keyed(key), unsigned_url, expires_at)


def _keyed(key: str) -> hmac.HMAC:
    return hmac.new(key.encode("utf-8"), digestmod=hashlib.sha1)


def _signature(keyed: hmac.HMAC, unsigned_url: bytes, expires_at: int | str) -> str:
    mac = keyed.copy()  # the key's setup is done once per key, not per request
    mac.update(unsigned_url + str(expires_at).encode("ascii"))
    return mac.hexdigest()


def sign(key: str, unsigned_url: str, expires_at: int | None = None) -> str:
    """`unsigned_url` with `ik-t` (when it expires) and `ik-s` appended, as the SDKs append them."""
    params = [] if expires_at is None else [f"{EXPIRY_PARAM}={expires_at}"]
    digest = signature(key, unsigned_url.encode("utf-8"), NO_EXPIRY if expires_at is None else expires_at)
    params.append(f"{SIGNATURE_PARAM}={digest}")
    return unsigned_url + ("&" if "?" in unsigned_url else "?") + "&".join(params)


def unsigned_url(path: str, transformation: str | None = None, *, in_query: bool = False) -> str:
    """The URL past an endpoint's base for the original at `path` (plain text: encoded here as the
    SDKs encode it), with `transformation` in a `tr:` path segment or in `?tr=`."""
    encoded = quote(path.lstrip("/"), safe=PATH_SAFE)
    if transformation and not in_query:
        return f"tr:{transformation}/{encoded}"
    if encoded.startswith("tr:") and "/" in encoded:
        # the node would read the first folder as the transformation (`tr:x/in.jpg`): an empty one goes first
        encoded = f"tr:/{encoded}"
    return f"{encoded}?tr={transformation}" if transformation else encoded


def _as_written(raw_path: str) -> bytes | None:
    """The path as the SDKs before imagekitio 5 signed it: as the application wrote it, not encoded (a
    browser then sends `my%20photo%20%C3%A9.jpg` for `my photo é.jpg`): every escape decoded. None when that
    reading is not the only one:
    - a `%2F`: no browser escapes a slash, so a signature over `a/b.jpg` does not verify `a%2Fb.jpg` (though
      the node reads both as one path: a 401, never another image);
    - a `%` or a `?` once decoded: such a text is also what a later SDK signs for another path (the encoded
      `my%20photo.jpg` of `my photo.jpg`), or for a path and its query (`a.jpg?tr=w-100`). Sent once more
      encoded (`my%2520photo.jpg`, `a.jpg%3Ftr=w-100`), one signature had served the file named so, another
      image."""
    raw = raw_path.encode("latin-1")
    if _ENCODED_SLASH.search(raw):
        return None
    written = unquote_to_bytes(raw)
    return None if b"%" in written or b"?" in written else written


def _split(query: str) -> tuple[str, list[str], list[str]]:
    """The query without `ik-s`/`ik-t` (other parameters in their order), and the values of those two."""
    kept, signatures, expiries = [], [], []
    for param in query.split("&") if query else ():
        name, _, value = param.partition("=")
        if name == SIGNATURE_PARAM:
            signatures.append(value)
        elif name == EXPIRY_PARAM:
            expiries.append(value)
        else:
            kept.append(param)
    return "&".join(kept), signatures, expiries


class SignatureCheck:
    """Verifies the signatures of requests to endpoints with a `private_key`. Refusals are counted
    when they are answered (`Pipeline.serve`): planning a request has no side effect, so it may be
    planned twice (`Pipeline.memory_hit`, then `serve`)."""

    def __init__(self, endpoints: Iterable[Endpoint], clock: Callable[[], float]):
        self._clock = clock
        #: per endpoint id: the current key, then the previous ones
        self._keys = {endpoint.id: tuple(_keyed(key.reveal())
                                         for key in (endpoint.private_key, *endpoint.previous_private_keys))
                      for endpoint in endpoints
                      if endpoint.private_key is not None and endpoint.url_style == "imagekit"}

    def verify(self, endpoint: Endpoint, raw_rest: str, query: str) -> int | None:
        """The expiry of the request's valid signature (`NO_EXPIRY` when it does not expire), or None
        when it carries none (`raw_rest`: the path past the endpoint's base, as sent; `query`: as sent,
        without `?`). Raises `SignatureRefused` for a bad or expired one, and for none on a `signed_only`
        endpoint."""
        keys = self._keys.get(endpoint.id)
        if keys is None:
            return None
        kept, signatures, expiries = _split(query)
        if not signatures and not expiries:
            if endpoint.signed_only:
                raise self.refused(endpoint, "missing")
            return None
        # One of each at most: a second copy would let the URL say two things at once.
        if len(signatures) != 1 or len(expiries) > 1 or not _SIGNATURE.fullmatch(signatures[0]) \
                or (expiries and not _EXPIRY.fullmatch(expiries[0])):
            raise self.refused(endpoint, "invalid")
        expiry = expiries[0] if expiries else str(NO_EXPIRY)
        try:
            # Tornado decodes the request line as Latin-1: this gives back the bytes the client signed.
            unsigned = (raw_rest + ("?" + kept if kept else "")).encode("latin-1")
        except UnicodeEncodeError:  # not text from a request line
            raise self.refused(endpoint, "invalid") from None
        forms = [unsigned]
        if "%" in raw_rest and (as_written := _as_written(raw_rest)) is not None:
            forms.append(as_written + (b"?" + kept.encode("latin-1") if kept else b""))
        # Every key (and form) is tried, so the time taken does not tell which one (if any) matched.
        matches = [hmac.compare_digest(_signature(key, form, expiry), signatures[0]) for key in keys for form in forms]
        if not any(matches):
            raise self.refused(endpoint, "invalid")
        if int(expiry) <= self._clock():
            raise self.refused(endpoint, "expired")
        return int(expiry)

    def refused(self, endpoint: Endpoint, reason: str) -> SignatureRefused:
        """The 401 for `reason`, labelled with its endpoint (a Cloudinary-style endpoint's refusals,
        checked by `edge.cloudinary_urls`, come through here too)."""
        error = SignatureRefused(reason)
        error.endpoint = _label(endpoint)
        return error


def _label(endpoint: Endpoint) -> str:
    return endpoint.id or "default"


def endpoint_base(endpoint: Endpoint, node_url: str | None, listening: str) -> str:
    """The URL an endpoint answers at, the SDKs' `urlEndpoint`: `node_url` (the node's public URL;
    `listening` when not given, or `https://<host>` for an endpoint with host names) followed by
    `/<id>`, unless `node_url` is one of the endpoint's own hosts, where no identifier is needed."""
    if node_url is None:
        node_url = f"https://{endpoint.hosts[0]}" if endpoint.hosts else listening
    node_url = node_url.rstrip("/")
    host = urlsplit(node_url).hostname or ""
    if not endpoint.id or host in endpoint.hosts:
        return node_url
    return f"{node_url}/{endpoint.id}"
