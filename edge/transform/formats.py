"""Output formats: what each is called, its MIME type, and how the output format is chosen.

The choice happens in two halves. Before the fetch, `plan_format` decides everything that does not
depend on the original (so it can be part of the cache key); after decoding, `final_format` fills
in the rest (`f-orig`, transparency for `f-auto` on browsers without WebP/AVIF).
"""

from __future__ import annotations

import posixpath

MIME_TYPES = {
    "jpg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "avif": "image/avif",
    "gif": "image/gif",
}
#: request-path extension → output format
EXTENSIONS = {"jpg": "jpg", "jpeg": "jpg", "png": "png", "webp": "webp", "avif": "avif", "gif": "gif"}
#: libvips loader → the format we write when asked to keep the original's format
LOADER_FORMATS = {
    "jpegload_buffer": "jpg",
    "pngload_buffer": "png",
    "webpload_buffer": "webp",
    "heifload_buffer": "avif",
    "gifload_buffer": "gif",
}

#: plan values that are settled only once the original is decoded
KEEP_SOURCE = "orig"
AUTO_LEGACY = "auto"


def path_format(path: str) -> str | None:
    """The output format named by the request path's extension, if it is a known image extension."""
    extension = posixpath.splitext(path)[1].lstrip(".").lower()
    return EXTENSIONS.get(extension)


def accepted_modern_format(accept: str | None, avif_enabled: bool = True) -> str | None:
    """`avif` or `webp` when the `Accept` header names it, else None."""
    accept = (accept or "").lower()
    if avif_enabled and "image/avif" in accept:
        return "avif"
    if "image/webp" in accept:
        return "webp"
    return None


def plan_format(requested: str | None, path: str, accept: str | None) -> tuple[str, bool]:
    """Before the fetch: (planned format, whether it depended on `Accept`).

    The planned format is a real format, or `KEEP_SOURCE`, or `AUTO_LEGACY` (JPEG, or PNG when the
    image has transparency).
    """
    if requested == "auto":
        return accepted_modern_format(accept) or AUTO_LEGACY, True
    if requested is not None:
        return requested, False
    return path_format(path) or KEEP_SOURCE, False


def final_format(planned: str, loader: str, has_alpha: bool) -> str:
    """After decoding the original's header: the format to encode."""
    if planned == AUTO_LEGACY:
        return "png" if has_alpha else "jpg"
    if planned == KEEP_SOURCE:
        return LOADER_FORMATS.get(loader) or ("png" if has_alpha else "jpg")
    return planned
