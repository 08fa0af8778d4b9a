"""Draw an SVG original in a child process (`python -I svgraster.py`), for `render`.

librsvg draws a whole document between two of libvips' kill-flag checks, so the render deadline could not
stop it: a 15 kB document of blurred shapes held a render thread for minutes. A child process can be
killed. Reading the header is librsvg parsing the whole document too (a 36 MB one of 700 000 shapes:
6.9 s and 1.4 GB), so the probe asks it (no width given) for the header alone. It runs libvips' SVG loader
only, reads the document on stdin, writes one line of JSON (width, height, bands, band format,
interpretation) and the pixels on stdout. Its CPU time is bounded too, so it stops on its own should its
worker die first; and its memory, to `[limits] max_decode_memory` and what the interpreter takes.
"""

from __future__ import annotations

import json
import resource
import sys

import pyvips


#: the exit status of a child whose document needs more memory than it may take
OUT_OF_MEMORY = 3


def main() -> None:
    width, options, cpu_seconds, memory_bytes = json.loads(sys.argv[1])
    # SIGXCPU at the bound (its parent tells that exit from the others: too slow), SIGKILL a second later; and no
    # core dump of it (SIGXCPU's default action writes one where the limit allows, a container's unlimited)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    # the parse of a whole document (26 MB of shapes: 1.1 GB) held to the render's decode bound
    resource.setrlimit(resource.RLIMIT_DATA, (memory_bytes, memory_bytes))
    pyvips.concurrency_set(1)
    pyvips.block_untrusted_set(True)
    pyvips.operation_block_set("VipsForeignLoad", True)
    pyvips.operation_block_set("VipsForeignLoadSvg", False)
    body = sys.stdin.buffer.read()
    if width is None:
        image = pyvips.Image.new_from_buffer(body, "")
        pixels = b""
    else:
        image = pyvips.Image.thumbnail_buffer(body, width, option_string="fail_on=truncated", **options)
        pixels = image.write_to_memory()
    head = [image.width, image.height, image.bands, image.format, image.interpretation]
    sys.stdout.buffer.write(json.dumps(head).encode() + b"\n" + pixels)


if __name__ == "__main__":
    try:
        main()
    except MemoryError:
        sys.exit(OUT_OF_MEMORY)
    except pyvips.Error as error:
        sys.exit(OUT_OF_MEMORY if "memory" in str(error).lower() else 1)
