"""What one hand-off of a blocking call to a thread and back costs the IOLoop's process.

    .venv/bin/python -m benchmarks.bench_threads [--rounds 5] [--calls 4000]

A call that does nothing, awaited `--calls` times per round, one at a time (a lone cold miss) and 8
at a time (a loaded node), through `loop.run_in_executor` on a `ThreadPoolExecutor` (the baseline)
and through `edge.threads.BlockingPool` (what the node uses), both with 4 threads, in alternating
rounds; medians of the process's CPU time (user + system) and of the wall time per call. Also through
`BlockingPool` with lanes, as renders are run (two endpoints taking turns).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import resource
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from benchmarks.common import median
from edge.threads import BlockingPool

THREADS = 4


def nothing() -> None:
    return None


async def one_round(call: Callable[[], Awaitable[None]], calls: int, concurrency: int) -> tuple[float, float]:
    """(CPU µs, wall µs) per call."""
    async def chain(count: int) -> None:
        for _ in range(count):
            await call()
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    await asyncio.gather(*(chain(calls // concurrency) for _ in range(concurrency)))
    after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - started
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return cpu / calls * 1e6, wall / calls * 1e6


async def run(rounds: int, calls: int) -> None:
    loop = asyncio.get_running_loop()
    executor, pool = ThreadPoolExecutor(THREADS), BlockingPool(THREADS, "bench")
    systems = {"run_in_executor + ThreadPoolExecutor": lambda: loop.run_in_executor(executor, nothing),
               "BlockingPool": lambda: pool.run(nothing),
               "BlockingPool, two lanes": lambda: pool.run(nothing, lane=next(lanes))}
    lanes = itertools.cycle("ab")
    try:
        for concurrency in (1, 8):
            results: dict[str, list[tuple[float, float]]] = {name: [] for name in systems}
            for number in range(rounds):
                for name in list(systems)[:: 1 if number % 2 else -1]:
                    results[name].append(await one_round(systems[name], calls, concurrency))
            print(f"{concurrency} call(s) at a time, {rounds} rounds x {calls} calls, medians per call:")
            for name, samples in results.items():
                print(f"  {name:38s} CPU {median([c for c, _ in samples]):6.1f} µs   "
                      f"wall {median([w for _, w in samples]):6.1f} µs")
    finally:
        executor.shutdown()
        pool.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=4000)
    args = parser.parse_args()
    asyncio.run(run(args.rounds, args.calls))


if __name__ == "__main__":
    main()
