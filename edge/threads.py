"""Threads that run blocking calls for the IOLoop: the cache's SQLite and files, libvips renders.

A cache miss hands work to a thread and back several times (the lookups, the render, the store), so
the hand-off itself is kept cheap. `loop.run_in_executor` on a `ThreadPoolExecutor` wraps every call
in a `concurrent.futures.Future` (a condition variable and its lock), chains it to an asyncio future
through callbacks on both sides and takes a semaphore to size the pool: about 95 µs of CPU a
hand-off under load on 2 cores. Here a call is one list on a `SimpleQueue` and its answer one
`call_soon_threadsafe`: about 40 µs (`benchmarks/bench_threads.py`).

Threads start on first use, in the process that uses them; a forked child starts its own (threads
do not survive a fork). A call whose caller went away while it queued is skipped, and so is one no
thread started within its `start_within` (its caller is told at once, `NotStarted`).

Calls given a `lane` (the renders: their endpoint) are started in turns, one from each lane with calls
waiting, rather than first come first served: one endpoint's hundred queued renders no longer stand in front
of another's one, which is started next.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import weakref
from collections import Counter, deque
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from .logs import REQUEST_ID

T = TypeVar("T")

log = logging.getLogger("edge.threads")

_STOP = None
#: what the queue holds for a call put in a lane: the thread that gets it starts the next lane's call
_FROM_LANES = object()
#: how long `on_each_thread` waits for every thread to be free
EACH_THREAD_SECONDS = 5.0


class NotStarted(Exception):
    """No thread started the call within its `start_within` seconds: it was withdrawn and never runs."""


class BlockingPool:
    """`size` threads named `<name>_<n>` running the blocking calls of one event loop."""

    def __init__(self, size: int, name: str):
        self.size = size
        self._name = name
        self._forget_threads()
        _pools.add(self)

    def _forget_threads(self) -> None:
        self._queue: queue.SimpleQueue[list[Any] | object] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()
        #: calls waiting in each lane taking turns, and those lanes in the order of their next turn (a lane stays
        #: until its turn finds it empty: `_next_in_lanes`)
        self._lanes: dict[Hashable, deque[list[Any]]] = {}
        self._turns: deque[Hashable] = deque()
        self._lanes_lock = threading.Lock()

    async def run(self, function: Callable[..., T], *args: Any, start_within: float | None = None,
                  lane: Hashable | None = None) -> T:
        """`function(*args)` in one of the threads. Cancelling the caller skips the call if it has not
        started; a started call runs to its end (its result is dropped). With `start_within`, a call
        that no thread has started within that many seconds is withdrawn: `NotStarted`, and it never runs.
        Calls with a `lane` take turns with the other lanes' (see the module's doc). The call runs as the
        caller's request (`REQUEST_ID`): what it logs names that request."""
        if (request_id := REQUEST_ID.get()) is not None:
            function, args = _as_request, (request_id, function, *args)
        if not self._threads:
            self._start()
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        if start_within is None:
            self._put([loop, answer, function, args, None], lane)
            return await answer
        # taken once, by whoever comes first: a thread starting the call, or the caller withdrawing it
        start = threading.Lock()
        call = [loop, answer, function, args, start]

        def withdraw() -> None:
            if start.acquire(blocking=False):
                # the husk left in the queue holds nothing of the call: its arguments (a render's original),
                # nor its answer (whose error's traceback holds them)
                call[:4] = None, None, None, ()
                if not answer.done():  # (cancelled in this turn of the loop, before the timer could be)
                    answer.set_exception(NotStarted())

        timer = loop.call_later(start_within, withdraw)
        self._put(call, lane)
        try:
            return await answer
        finally:
            timer.cancel()

    def _put(self, call: list[Any], lane: Hashable | None) -> None:
        if lane is None:
            self._queue.put(call)
            return
        with self._lanes_lock:
            if (waiting := self._lanes.get(lane)) is None:
                # a lane not in the turns has the next one (fq_codel's new flows): one endpoint's first render
                # waits for the renders running, not also for the next of each busy lane
                waiting = self._lanes[lane] = deque()
                self._turns.appendleft(lane)
            waiting.append(call)
        self._queue.put(_FROM_LANES)

    def _next_in_lanes(self) -> list[Any]:
        """The first call of the lane whose turn it is; that lane's next turn comes after every other lane's. A
        lane leaves the turns only when its turn finds it empty: one that left them each time its call started
        would have the next turn at its next call, and a client sending calls as fast as they start would have
        every turn."""
        with self._lanes_lock:
            while not (waiting := self._lanes[lane := self._turns.popleft()]):
                del self._lanes[lane]  # (a call is waiting in some lane: the queue held one token for it)
            self._turns.append(lane)
            return waiting.popleft()

    def on_each_thread(self, function: Callable[[], None]) -> bool:
        """Run `function()` once in every started thread, all of them at once, and wait (blocking,
        bounded): for what each thread holds of its own, such as a SQLite connection. Whether it did: when not
        every thread was free within `EACH_THREAD_SECONDS`, one may have run it twice and another not at all."""
        threads = len(self._threads)
        if not threads:
            return True
        barrier = threading.Barrier(threads + 1)

        def each() -> None:
            try:
                barrier.wait(timeout=EACH_THREAD_SECONDS)  # holding its thread until all are held
            except threading.BrokenBarrierError:
                pass
            try:
                function()
            finally:
                done.release()

        done = threading.Semaphore(0)
        for _ in range(threads):
            self._queue.put([None, None, each, (), None])
        held = True
        try:
            barrier.wait(timeout=EACH_THREAD_SECONDS)
        except threading.BrokenBarrierError:
            log.warning("%s: not every thread was free within %gs", self._name, EACH_THREAD_SECONDS)
            held = False
        for _ in range(threads):
            done.acquire(timeout=EACH_THREAD_SECONDS)
        return held

    def shutdown(self, drop_queued: bool = False) -> None:
        """Stop the threads once the calls queued before have run (with `drop_queued`, those not
        started are cancelled instead), and wait for them."""
        if drop_queued:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _FROM_LANES:
                    item = self._next_in_lanes()
                if item is not _STOP and item[0] is not None:
                    _answer(item[0], item[1].cancel)
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join()
        self._threads = []

    def _start(self) -> None:
        with self._start_lock:
            while len(self._threads) < self.size:
                thread = threading.Thread(target=self._work, name=f"{self._name}_{len(self._threads)}", daemon=True)
                thread.start()
                self._threads.append(thread)

    def _work(self) -> None:
        while (item := self._queue.get()) is not _STOP:
            if item is _FROM_LANES:
                item = self._next_in_lanes()
            self._call(*item)
            # an idle thread must not hold its last call's arguments and result (a render's: its original)
            del item

    def _call(self, loop: asyncio.AbstractEventLoop | None, answer: asyncio.Future | None,
              function: Callable[..., Any], args: tuple[Any, ...], start: threading.Lock | None) -> None:
        if start is not None and not start.acquire(blocking=False):  # withdrawn: its caller was answered
            return
        if answer is not None and answer.cancelled():  # the caller went away while it queued
            return
        try:
            result = function(*args)
        except BaseException as exc:  # noqa: BLE001 - the caller raises it, as run_in_executor would
            if answer is None:
                log.exception("%s: a call on each thread failed", self._name)
            else:
                _answer(loop, _set_exception, answer, exc)
        else:
            if answer is not None:
                _answer(loop, _set_result, answer, result)


def _as_request(request_id: str, function: Callable[..., T], *args: Any) -> T:
    token = REQUEST_ID.set(request_id)
    try:
        return function(*args)
    finally:
        REQUEST_ID.reset(token)


_pools: weakref.WeakSet[BlockingPool] = weakref.WeakSet()


def _after_fork() -> None:
    for pool in _pools:
        pool._forget_threads()


os.register_at_fork(after_in_child=_after_fork)


def _answer(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # the loop is closed: nobody waits any more
        pass


def _set_result(answer: asyncio.Future, result: Any) -> None:
    if not answer.done():
        answer.set_result(result)


def _set_exception(answer: asyncio.Future, exc: BaseException) -> None:
    if not answer.done():
        # a future refuses StopIteration (it would end the awaiting coroutine's generator)
        answer.set_exception(RuntimeError(repr(exc)) if isinstance(exc, StopIteration) else exc)


class EndpointShares:
    """Bytes of one budget held by each endpoint that holds any, for budgets an endpoint under its share may
    exceed: reads and renders are not taken back, so an endpoint that filled a budget (an origin stalling, huge
    decodes) would otherwise have every other endpoint wait for it, then get 503 (noisy-tenant probe). Not
    thread-safe: its budget's lock (or loop) keeps it."""

    def __init__(self) -> None:
        self._held: Counter[Hashable] = Counter()

    def add(self, endpoint: Hashable | None, size: int) -> None:
        """`size` more bytes (less, when negative) held by `endpoint` (None: counted on no endpoint)."""
        if endpoint is None:
            return
        if self._held[endpoint] + size:
            self._held[endpoint] += size
        else:
            del self._held[endpoint]

    def over_budget_allowed(self, endpoint: Hashable | None, size: int, held: int, capacity: int) -> bool:
        """Whether `size` bytes more may be taken past `capacity` (`held` taken in all): by an endpoint that stays
        within its share (the capacity over the endpoints holding any, itself included) while another holds
        some, up to twice the capacity in all."""
        if endpoint is None or held + size > 2 * capacity or not self._held.keys() - {endpoint}:
            return False
        return self._held[endpoint] + size <= capacity // len(self._held.keys() | {endpoint})

    def __bool__(self) -> bool:
        return bool(self._held)


async def wait_for_room(take: Callable[[], bool], waiters: list[asyncio.Future], deadline: float,
                        exhausted: type[Exception]) -> None:
    """Until `take()` (which takes what a budget holds when it fits) succeeds, wait for the budget's next
    release (`wake`) on one of `waiters`; `exhausted()` is raised at `deadline` (the loop's clock)."""
    loop = asyncio.get_running_loop()
    while not take():
        waiter = loop.create_future()
        waiters.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except TimeoutError:
            raise exhausted() from None
        finally:
            if waiter in waiters:
                waiters.remove(waiter)


def wake(waiters: list[asyncio.Future]) -> None:
    """On the loop: every waiter of `wait_for_room` looks again whether what it needs fits now."""
    woken, waiters[:] = list(waiters), []
    for waiter in woken:
        if not waiter.done():
            waiter.set_result(None)
