"""`edge cloudinary-check --urls FILE`: would this node serve a team's existing Cloudinary URLs?

Each URL is read exactly as a request would be (the node's router, its config, its named
transformations and keys): served, or the status and the word that stops it. A summary counts the
unsupported words, so a team sees what to change before the DNS switch. With `--base-url`, each URL's
path is also fetched from a running node and the answer must decode as an image.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

import pyvips

from .config import Config, Limits
from .errors import EdgeError, InvalidTransformation, UnprocessableSource
from .routing import Router, as_target
from .cloudinary_urls import refuse_document
from .transform import heic
from .transform.cut_short import served_cut_short
from .transform.render import allow_only_input_loaders

#: lines read from the file; an export larger than this is checked in parts
MAX_URLS = 100_000
FETCH_TIMEOUT = 30
#: what a browser sends, so `f_auto` answers as it would to one
ACCEPT = "image/avif,image/webp,image/*,*/*;q=0.8"
#: Cloudinary's own host names (`res.cloudinary.com`, `<cloud>-res.cloudinary.com`): matched by path alone
CLOUDINARY_DOMAIN = "cloudinary.com"


@dataclass(frozen=True)
class Verdict:
    url: str
    #: None when the node would serve it
    status: int | None = None
    reason: str = ""
    #: the Cloudinary word at fault, for a 400 naming one
    word: str | None = None
    fetched: str = ""

    @property
    def served(self) -> bool:
        return self.status is None and not self.fetched.startswith("FAILED")


def check_url(router: Router, url: str) -> Verdict:
    try:
        parts = urlsplit(url)
    except ValueError as error:  # an IPv6 host without its `]`: no request could carry it
        return Verdict(url, 400, f"not a URL ({error})")
    if parts.scheme not in ("http", "https") and not url.startswith("/"):
        # no request target: such a line had been read as a path of the default endpoint, and "served"
        return Verdict(url, 400, "not a URL: write it whole (https://…) or as a path starting with /")
    extension = "." + parts.path.rpartition(".")[2].lower()
    try:
        refuse_document(extension)  # whatever endpoint it reaches
        request = router.route(_host(parts), as_target(parts.path or "/"))
        if request.endpoint.url_style != "cloudinary":
            return Verdict(url, 404, "the endpoint it reaches does not have url_style = \"cloudinary\"")
    except InvalidTransformation as error:
        return Verdict(url, error.status, error.message, error.param)
    except UnprocessableSource as error:  # a document, counted by its extension
        return Verdict(url, error.status, error.message, extension)
    except EdgeError as error:
        return Verdict(url, error.status, error.message)
    return Verdict(url)


def _host(parts: SplitResult) -> str:
    """The Host a request for the URL reaches the node with once its DNS points there: the URL's own, but
    for Cloudinary's host names (none, so that their URLs route by path alone)."""
    name = (parts.hostname or "").lower()
    return "" if name == CLOUDINARY_DOMAIN or name.endswith("." + CLOUDINARY_DOMAIN) else parts.netloc


def fetch(base_url: str, url: str) -> str:
    """`OK <format> <w>x<h>` or `FAILED <why>` for the URL's path on a running node, with the URL's Host
    (`_host`), as `check_url` routed it: an endpoint chosen by its `hosts` had been missed."""
    parts = urlsplit(url)
    target = base_url.rstrip("/") + as_target(parts.path) + (f"?{as_target(parts.query)}" if parts.query else "")
    headers = {"Accept": ACCEPT} | ({"Host": host} if (host := _host(parts)) else {})
    try:
        with urllib.request.urlopen(urllib.request.Request(target, headers=headers),
                                    timeout=FETCH_TIMEOUT) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        return f"FAILED {error.code} {error.read(200).decode(errors='replace').strip()}"
    # ValueError, InvalidURL (an HTTPException): a URL urllib or http.client refuses to send
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as error:
        return f"FAILED {error}"
    try:  # decoded whole, every frame: a header alone had passed a file cut short
        image = pyvips.Image.new_from_buffer(body, "")
        if served_cut_short(body, image.get("vips-loader").replace("_buffer", "_source")):  # a GIF decodes anyway
            return "FAILED the answer is cut short"
        if image.get_typeof("heif-compression") and image.get("heif-compression") == "hevc":
            heic.decode(body, None, Limits().max_source_pixels).avg()  # as the node decodes one (no HEVC in libvips)
        else:
            frames = {"n": -1} if image.get_typeof("n-pages") and image.get("n-pages") > 1 else {}
            pyvips.Image.new_from_buffer(body, "", fail_on="truncated", access="sequential", **frames).avg()
        return f"OK {image.get('vips-loader').removesuffix('load_buffer')} {image.width}x{image.height}"
    except (pyvips.Error, EdgeError):
        return "FAILED the answer does not decode as an image"


def check(config: Config, lines: Iterable[str], base_url: str | None = None) -> tuple[list[Verdict], str]:
    """Every URL's verdict, and the report: one line per URL, then the summary."""
    router = Router(config.endpoints, named=config.named_transformations)
    if base_url:  # the answers are decoded here: by the node's loaders only (an output is never SVG)
        allow_only_input_loaders(allow_svg=False)
    verdicts = []
    for number, line in enumerate(lines):
        if number >= MAX_URLS:
            break
        url = line.strip()
        if not url or url.startswith("#"):
            continue
        verdict = check_url(router, url)
        if base_url and verdict.status is None:
            verdict = Verdict(url, fetched=fetch(base_url, url))
        verdicts.append(verdict)
    return verdicts, report(verdicts)


def report(verdicts: list[Verdict]) -> str:
    lines = []
    for v in verdicts:
        if v.status is not None:
            lines.append(f"NO  {v.url}\n    {v.status} {v.reason}")
        else:
            fetched = f"\n    fetched: {v.fetched}" if v.fetched else ""
            lines.append(f"{'OK ' if v.served else 'NO '} {v.url}{fetched}")
    served = sum(v.served for v in verdicts)
    lines.append(f"\n{len(verdicts)} URLs: {served} served, {len(verdicts) - served} not")
    words = Counter(v.word for v in verdicts if v.word)
    others = Counter(f"{v.status} {v.reason}" for v in verdicts if v.status is not None and not v.word)
    # by the answer's status and kind, without the URL's own details (`400 invalid transformation: cm-extract`)
    failed = Counter(":".join(v.fetched.removeprefix("FAILED ").split(":")[:2]).strip()
                     for v in verdicts if v.fetched and not v.served)
    for title, counts in (("unsupported words", words), ("other refusals", others), ("failed when fetched", failed)):
        if counts:
            lines.append(f"{title} (URLs):")
            lines += [f"  {reason}  {count}" for reason, count in counts.most_common()]
    return "\n".join(lines) + "\n"
