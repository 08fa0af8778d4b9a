"""What a render deadline costs: stopping libvips from the IOLoop (`vips_image_set_kill` on the render's
images, the node's choice) against rendering in killable child processes, and no deadline at all.

    .venv/bin/python -m benchmarks.bench_deadline [--rounds 5] [--renders 20]

Each round renders a 3000x2000 photo JPEG to a 300 px JPEG, one render at a time, three ways: bare
`render_image` on a thread pool (the baseline: no deadline), `Renderer.render` (the stop switch and
its IOLoop timer) and `render_image` in a `ProcessPoolExecutor` child (the body and the result
crossing a pipe). Rounds alternate; figures are medians per render. Then: how long after its deadline
a slow render is answered by each mechanism, and what a child process costs to replace once killed.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

from benchmarks.common import median
from edge.config import Defaults, Limits
from edge.errors import RenderTimedOut
from edge.transform.options import parse_transformation
from edge.transform.render import Renderer, render_image
from tests.photos import MEDIUM_SIZE, upright_photo

TRANSFORMATION = "w-300"
SLOW = "w-8192,h-8192,c-force,bl-100:bl-100"
DEADLINE = 0.5
LIMITS = Limits(render_timeout=DEADLINE, max_cost=1e9)


def render(body: bytes, transformation: str) -> int:
    return len(render_image(body, parse_transformation(transformation), "jpg", Defaults(), LIMITS).body)


def child_pid() -> int:
    return os.getpid()


async def timed(renders: int, call) -> float:
    times = []
    for _ in range(renders):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return median(times)


async def main(rounds: int, renders: int) -> None:
    body = upright_photo(*MEDIUM_SIZE).jpegsave_buffer(Q=88, keep="none")
    loop = asyncio.get_running_loop()
    threads = ThreadPoolExecutor(1)
    renderer = Renderer(Defaults(), LIMITS, threads=1, queue=1)
    children = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("forkserver"))
    await loop.run_in_executor(children, render, body, TRANSFORMATION)  # started and warm
    transformation = parse_transformation(TRANSFORMATION)
    ways = {
        "thread, no deadline": lambda: loop.run_in_executor(threads, render, body, TRANSFORMATION),
        "thread + stop switch": lambda: renderer.render(body, transformation, "jpg"),
        "child process": lambda: loop.run_in_executor(children, render, body, TRANSFORMATION),
    }
    results: dict[str, list[float]] = {name: [] for name in ways}
    for index in range(rounds):
        order = list(ways) if index % 2 == 0 else list(reversed(ways))
        for name in order:
            results[name].append(await timed(renders, ways[name]))
    baseline = median(results["thread, no deadline"])
    print(f"per render, {MEDIUM_SIZE[0]}x{MEDIUM_SIZE[1]} JPEG -> {TRANSFORMATION} JPEG, {rounds} rounds x {renders}:")
    for name, values in results.items():
        print(f"  {name:22} {median(values) * 1000:7.1f} ms  ({median(values) / baseline:.2f}x)")

    started = time.perf_counter()
    try:
        await renderer.render(body, parse_transformation(SLOW), "jpg")
    except RenderTimedOut:
        print(f"stop switch: a slow render answered {time.perf_counter() - started - DEADLINE:.3f} s after "
              f"its {DEADLINE} s deadline")

    # the child-process way: kill the child at the deadline, then a new one must start
    pid = await loop.run_in_executor(children, child_pid)
    slow = loop.run_in_executor(children, render, body, SLOW)
    started = time.perf_counter()
    await asyncio.sleep(DEADLINE)
    os.kill(pid, signal.SIGKILL)
    try:
        await slow
    except Exception:  # noqa: BLE001 - BrokenProcessPool: the child is gone
        print(f"child process: a slow render answered {time.perf_counter() - started - DEADLINE:.3f} s after "
              f"its {DEADLINE} s deadline")
    children.shutdown()
    started = time.perf_counter()
    children = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("forkserver"))
    await loop.run_in_executor(children, render, body, TRANSFORMATION)
    print(f"child process: a new child's first render {time.perf_counter() - started:.3f} s")
    children.shutdown()
    threads.shutdown()
    renderer.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--renders", type=int, default=20)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rounds, arguments.renders))
