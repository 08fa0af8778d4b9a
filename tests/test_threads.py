"""`edge.threads.BlockingPool`: what the request path relies on when it hands blocking work to a thread."""

import asyncio
import gc
import os
import threading
import weakref

import pytest

from edge.logs import REQUEST_ID
from edge.threads import BlockingPool, NotStarted

BOUND = 10  # seconds: every wait here is bounded


async def test_results_and_errors_come_back_to_the_caller():
    pool = BlockingPool(2, "test")
    try:
        assert await pool.run(sum, [1, 2, 3]) == 6
        with pytest.raises(ZeroDivisionError):
            await pool.run(lambda: 1 / 0)
        with pytest.raises(RuntimeError):  # a future cannot carry StopIteration: the caller still hears
            await pool.run(next, iter(()))
        names = {await pool.run(lambda: threading.current_thread().name) for _ in range(20)}
        assert names <= {"test_0", "test_1"}
    finally:
        pool.shutdown()


async def test_a_call_runs_as_its_callers_request_and_leaves_its_thread_as_it_was():
    """What a call logs names the request that handed it over (`REQUEST_ID`); the thread keeps no request's id."""
    pool = BlockingPool(1, "test")

    async def as_request(request_id: str | None, function, *args):
        REQUEST_ID.set(request_id)  # in this task alone, as a request's handler sets it
        return await pool.run(function, *args)
    try:
        served = [asyncio.ensure_future(as_request(f"r{n}", REQUEST_ID.get)) for n in range(5)]
        assert await asyncio.gather(*served) == [f"r{n}" for n in range(5)]
        assert await asyncio.ensure_future(as_request(None, REQUEST_ID.get)) is None  # the same thread, after them
        with pytest.raises(KeyError):  # an error still reaches the caller
            await asyncio.ensure_future(as_request("r5", {}.__getitem__, "x"))
        assert REQUEST_ID.get() is None
    finally:
        pool.shutdown()


async def test_a_call_whose_caller_left_while_it_queued_is_skipped():
    pool = BlockingPool(1, "test")
    release, ran = threading.Event(), []
    try:
        busy = asyncio.ensure_future(pool.run(release.wait, BOUND))
        queued = asyncio.ensure_future(pool.run(ran.append, "queued"))
        await asyncio.sleep(0)  # both handed over
        queued.cancel()
        release.set()
        assert await asyncio.wait_for(busy, BOUND)
        await asyncio.wait_for(pool.run(ran.append, "next"), BOUND)
        assert ran == ["next"]
    finally:
        release.set()
        pool.shutdown()


async def test_a_call_no_thread_started_within_its_bound_is_withdrawn_and_never_runs():
    pool = BlockingPool(1, "test")
    release, ran = threading.Event(), []
    original = _Body(b"x" * 1000)  # what a queued render holds: its original
    let_go = threading.Event()
    weakref.finalize(original, let_go.set)
    try:
        busy = asyncio.ensure_future(pool.run(release.wait, BOUND, start_within=BOUND))  # starts at once
        queued = asyncio.ensure_future(pool.run(lambda body: ran.append(body), original, start_within=0.2))
        del original
        with pytest.raises(NotStarted):  # told while the thread is still busy
            await asyncio.wait_for(queued, BOUND)
        assert not busy.done()
        del queued
        gc.collect()  # the caller's error and the frames of its traceback (which hold the arguments) form cycles
        assert await asyncio.to_thread(let_go.wait, BOUND)  # the husk left in the queue holds nothing of them
        release.set()
        assert await asyncio.wait_for(busy, BOUND)
        await asyncio.wait_for(pool.run(ran.append, "next", start_within=BOUND), BOUND)  # after the husk
        assert ran == ["next"]
    finally:
        release.set()
        pool.shutdown()


async def test_shutdown_cancels_what_has_not_started_and_runs_on_each_thread_once():
    pool = BlockingPool(2, "test")
    await pool.run(lambda: None)
    seen: list[str] = []
    pool.on_each_thread(lambda: seen.append(threading.current_thread().name))
    assert sorted(seen) == ["test_0", "test_1"]

    release, started = threading.Event(), threading.Semaphore(0)

    def hold() -> bool:
        started.release()
        return release.wait(BOUND)

    running = [asyncio.ensure_future(pool.run(hold)) for _ in range(2)]
    queued = asyncio.ensure_future(pool.run(lambda: "never"))
    for _ in running:  # both threads busy: the third call waits in the queue
        assert await asyncio.to_thread(started.acquire, True, BOUND)
    stopping = asyncio.get_running_loop().run_in_executor(None, pool.shutdown, True)
    await asyncio.wait([queued], timeout=BOUND)  # dropped before the running calls end
    assert queued.cancelled()
    release.set()
    await asyncio.wait_for(stopping, BOUND)
    assert [await asyncio.wait_for(call, BOUND) for call in running] == [True, True]


def test_a_forked_child_starts_threads_of_its_own():
    pool = BlockingPool(1, "test")
    assert asyncio.run(pool.run(os.getpid)) == os.getpid()  # a thread started in this process
    child = os.fork()
    if child == 0:  # the child: the parent's thread did not come along; the pool must start another
        try:
            os._exit(0 if asyncio.run(asyncio.wait_for(pool.run(os.getpid), BOUND)) == os.getpid() else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(child, 0)
    pool.shutdown()
    assert os.waitstatus_to_exitcode(status) == 0


class _Body:
    """Bytes that can be watched with a weak reference (a render's original, its output)."""

    def __init__(self, data: bytes):
        self.data = data


async def test_an_idle_thread_keeps_nothing_of_its_last_call():
    """A render thread waiting for work held its last call's arguments and result: an original of
    several MB per thread, kept until the next render (measured: ~5 MB a worker after 12 MP misses)."""
    pool = BlockingPool(1, "test")
    released = {name: threading.Event() for name in ("argument", "result")}
    try:
        original = _Body(b"x" * 1000)
        weakref.finalize(original, released["argument"].set)
        output = await pool.run(lambda body: _Body(body.data[:10]), original)
        weakref.finalize(output, released["result"].set)
        del original, output
        await asyncio.sleep(0)  # a turn of the loop: it lets go of the answered future (and the result)
        assert released["argument"].wait(BOUND) and released["result"].wait(BOUND)
    finally:
        pool.shutdown()


async def started_in_lanes(calls: list[tuple[str, str | None]]) -> list[str]:
    """The order in which one thread starts `calls` (name, lane), queued while it runs a call of lane `a`."""
    pool = BlockingPool(1, "test")
    release, started, ran = threading.Event(), threading.Event(), []

    def hold() -> bool:
        started.set()
        return release.wait(BOUND)
    try:
        busy = asyncio.ensure_future(pool.run(hold, lane="a"))  # lane a: its one call started, none waiting
        assert await asyncio.to_thread(started.wait, BOUND)
        queued = [asyncio.ensure_future(pool.run(ran.append, name, lane=lane)) for name, lane in calls]
        await asyncio.sleep(0)  # all handed over while the thread is busy
        release.set()
        await asyncio.wait_for(asyncio.gather(busy, *queued), BOUND)
        return ran
    finally:
        release.set()
        pool.shutdown()


async def test_calls_in_lanes_take_turns_rather_than_their_order_of_arrival():
    """One lane's queued calls (an endpoint's renders) do not all run before another lane's one call. A call without
    a lane keeps its place in the queue; those with one are started lane after lane, a lane not yet taking turns
    first."""
    calls = [("a1", "a"), ("a2", "a"), ("b1", "b"), ("a3", "a"), ("none", None)]
    assert await started_in_lanes(calls) == ["b1", "a1", "a2", "a3", "none"]


async def test_a_lane_whose_calls_start_as_they_come_does_not_take_every_turn():
    """A lane leaves the turns when its turn finds it empty, not when its last call starts: else its next call
    would be a new lane's, first in line, and a client sending calls as fast as they start would pass every other
    lane's."""
    calls = [("b1", "b"), ("b2", "b"), ("b3", "b"), ("a1", "a")]
    assert await started_in_lanes(calls) == ["b1", "a1", "b2", "b3"]
