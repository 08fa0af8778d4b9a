"""Reading a Cloudinary delivery URL against reading the node's own URL for the same transformation.

Both are routed and parsed in this process, in alternating rounds (medians), as a request does before
its cache lookup: the Cloudinary path adds splitting, the word table and (memoised) translation. Goal:
a Cloudinary URL costs at most 3× the node's own, well under the ~190 µs of a whole cache hit.

    .venv/bin/python -m benchmarks.bench_cloudinary_route [--rounds 7] [--requests 20000]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

from benchmarks.common import median
from edge.config import Endpoint
from edge.routing import Router
from edge.transform.options import parse_transformation

CLOUDINARY = "/demo/image/upload/c_fill,g_auto,w_400,h_300/f_auto/q_auto/v1570979139/products/shoe.jpg"
OWN = "/own/tr:c-maintain_ratio,fo-auto,w-400,h-300:f-auto,q-70/image/upload/v1570979139/products/shoe.jpg"


@dataclass(frozen=True)
class _Backup:
    folder: str = "res/demo/"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    router = Router((Endpoint(id="", origins=(_Backup(),), url_style="cloudinary"),
                     Endpoint(id="own", origins=(_Backup(),))))

    def own() -> None:
        request = router.route("", OWN)
        parse_transformation(request.path_transformation, None, named={})

    def cloudinary() -> None:
        router.route("", CLOUDINARY)

    def microseconds(read) -> float:
        started = time.perf_counter()
        for _ in range(args.requests):
            read()
        return (time.perf_counter() - started) / args.requests * 1e6

    times: dict[str, list[float]] = {"own": [], "cloudinary": []}
    for _ in range(args.rounds):
        times["own"].append(microseconds(own))
        times["cloudinary"].append(microseconds(cloudinary))
    own_us, cloudinary_us = median(times["own"]), median(times["cloudinary"])
    print(f"node's own URL:  {own_us:6.1f} µs per request")
    print(f"Cloudinary URL:  {cloudinary_us:6.1f} µs per request  ({cloudinary_us / own_us:.2f}× the own URL)")


if __name__ == "__main__":
    main()
