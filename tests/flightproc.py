"""A process taking part in a single flight, as a worker would: `python -m tests.flightproc DIR KEY ROLE [WAIT]`.

Roles: `lead` produces, holding the lease until a line arrives on stdin; `lead-fail` does the same,
then fails with a 502, and `lead-overloaded` with its own 503 (`TransformQueueFull`); `follow` produces at once
(it should never get to while a leader has the work); `lead-keep` produces like `lead` but stores its value in
`keep`, after its `run` has answered, once a second line arrives (and then `kept`).
The produced value is "stored" in DIR/result, which is where `lookup` finds it.

Prints one JSON line per event: `underway` (the flight has started and tried the lease once),
`producing`, then `done` with the value or `error` with the error's type, status and headers.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from edge.errors import BadGateway, EdgeError, TransformQueueFull
from edge.flight import SingleFlight


class Tally:
    def __init__(self) -> None:
        self.count = 0

    def inc(self) -> None:
        self.count += 1


def emit(**event: object) -> None:
    print(json.dumps(event), flush=True)


async def main(directory: Path, key: str, role: str, wait: float) -> None:
    flight = SingleFlight("test", directory / "flights", wait, coalesced=Tally().inc)
    flight.open_leases()
    result = directory / "result"

    async def produce() -> str:
        emit(event="producing")
        if role.startswith("lead"):
            await asyncio.to_thread(sys.stdin.readline)
        if role == "lead-fail":
            raise BadGateway("origin error", headers={"X-Edge-Error": "web: server_error"})
        if role == "lead-overloaded":
            raise TransformQueueFull()
        if role == "lead-keep":
            return f"made by {os.getpid()}"
        result.write_text(f"made by {os.getpid()}")
        return result.read_text()

    async def keep(value: str) -> None:
        await asyncio.to_thread(sys.stdin.readline)
        result.write_text(value)
        emit(event="kept")

    async def lookup() -> str | None:
        return result.read_text() if result.exists() else None

    task = asyncio.create_task(flight.run(key, produce, lookup, keep if role == "lead-keep" else None))
    for _ in range(3):  # the flight's task starts and runs up to its first wait: it has tried the lease
        await asyncio.sleep(0)
    emit(event="underway")
    try:
        emit(event="done", value=await task)
    except EdgeError as error:
        emit(event="error", type=type(error).__name__, status=error.status, message=error.message,
             headers=error.headers)
    finally:
        await flight.settle()
        flight.close()


if __name__ == "__main__":
    wait_seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 30.0
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3], wait_seconds))
