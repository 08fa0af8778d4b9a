"""The JPEG decode alone at a libjpeg scale, by libvips and by Pillow, for `engines` (each in its own
process, Pillow's in thumbor's virtualenv, which has no pyvips: hence the imports inside) and
`bench_decode` (both in one process)."""

from __future__ import annotations

import io


def libvips_decode(body: bytes, scale: int) -> None:
    """Decode `body` at 1/`scale` into memory, streamed as the node streams a large decode."""
    import pyvips

    pyvips.Image.new_from_buffer(body, "", shrink=scale, access="sequential").copy_memory()


def pillow_decode(body: bytes, scale: int, fast: bool = False) -> None:
    """Decode `body` at 1/`scale` as thumbor's engine does: `draft` picks the scale and leaves libjpeg's
    defaults; `fast` also sets the decoder's own draft flag (the fast IDCT, no fancy upsampling)."""
    from PIL import Image

    image = Image.open(io.BytesIO(body))
    image.draft("RGB", (image.width // scale, image.height // scale))
    if fast:
        image.decoderconfig = (image.decoderconfig[0], 1)
    image.load()
