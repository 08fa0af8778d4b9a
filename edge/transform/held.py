"""The memory a render holds, against `[limits] max_decode_memory` (one render: 400) and `[server]
decode_memory` (the process: the render waits for room, then 503).

A render holds two kinds of large buffers: the decodes of originals whose loaders hold them whole
(estimated from their headers before anything is decoded), and the images it makes in memory
(`geometry.in_memory`: a step's result, an image read out of order or more than once). Both are
charged to the render's `Account`, found through a thread-local as the stop switch is: a render runs in
one pool thread from start to end. Counting the decodes alone, eight layers of a 16-bit photo, rotated,
had held 612 MB more than counted, and two such renders at once 1.6 GB on a 1 GB budget.

An image made in memory is held until the step that made it is done with (`release_since`, beside
`stopping.forget_since`), or to the end of the render when something keeps it (`charge(..., kept=True)`: a
layer's image, cached for the whole render). What the render took from the process' budget is the most
it held, given back when it ends.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Hashable, Iterable, Iterator
from contextlib import contextmanager

import pyvips

from ..errors import BadRequest, DecodeMemoryExhausted
from ..threads import EndpointShares, wait_for_room, wake

SAMPLE_BYTES = {"uchar": 1, "char": 1, "ushort": 2, "short": 2, "uint": 4, "int": 4, "float": 4, "double": 8,
                "complex": 8, "dpcomplex": 16}

_current = threading.local()


class DecodeBudget:
    """Bytes held by the renders of this process (`[server] decode_memory`), on their endpoints. A render takes
    its share in its thread when it fits (`try_take`); when it does not, the render gives its thread back and waits
    for it on the event loop (`take`, bounded by `wait`, then 503), then runs again holding it. An endpoint under
    its share while others hold some takes past the budget, up to twice it (`EndpointShares`): four renders of
    100 MP PNGs on one endpoint had another's progressive JPEGs wait 5 s, then get 503 (noisy-tenant probe)."""

    def __init__(self, capacity: int, wait: float):
        self.capacity, self.wait = capacity, wait
        self.in_use = 0
        self.shares = EndpointShares()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: list[asyncio.Future] = []

    def try_take(self, size: int, endpoint: Hashable | None = None) -> bool:
        """From any thread: take `size` bytes for a render of `endpoint` if they fit now."""
        with self._lock:
            if (self.in_use + size > self.capacity
                    and not self.shares.over_budget_allowed(endpoint, size, self.in_use, self.capacity)):
                return False
            self.in_use += size
            self.shares.add(endpoint, size)
            return True

    async def take(self, size: int, wait: float, endpoint: Hashable | None = None) -> None:
        """On the event loop: take `size` bytes, waiting up to `wait` for them (then `DecodeMemoryExhausted`)."""
        self._loop = loop = asyncio.get_running_loop()
        await wait_for_room(lambda: self.try_take(size, endpoint), self._waiters, loop.time() + wait,
                            DecodeMemoryExhausted)

    def give_back(self, size: int, endpoint: Hashable | None = None) -> None:
        """From any thread: `size` bytes taken before are free again; the waiters look again."""
        with self._lock:
            self.in_use -= size
            self.shares.add(endpoint, -size)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(wake, self._waiters)


class NeedsDecodeMemory(Exception):
    """A render's memory did not fit the budget: it stopped, to wait for `size` bytes (all it had counted
    so far) without holding a render thread, then to run again holding them."""

    def __init__(self, size: int):
        super().__init__(size)
        self.size = size


def image_bytes(image: pyvips.Image) -> int:
    """What `image` takes made in memory."""
    return image.width * image.height * image.bands * SAMPLE_BYTES.get(image.format, 8)


class Account:
    """One render's memory: the charges it holds, in order, and what it took from `budget` beyond the
    `reserved` bytes its caller took for it."""

    def __init__(self, budget: DecodeBudget | None, reserved: int, limit: int, endpoint: Hashable):
        self.budget, self.reserved, self.limit, self.endpoint = budget, reserved, limit, endpoint
        self.taken = 0
        self._charges: list[tuple[int, bool]] = []  # (bytes, kept to the end of the render)

    @property
    def held(self) -> int:
        return sum(size for size, _ in self._charges)

    def charge(self, size: int, kept: bool, too_much: str) -> None:
        """Hold `size` more bytes: `BadRequest(too_much with the figures)` over the render's limit,
        `NeedsDecodeMemory` when the budget cannot hold them now."""
        held = self.held + size
        if held > self.limit:
            raise BadRequest(f"{too_much} {held / 1e6:.0f} MB, over max_decode_memory ({self.limit / 1e6:.0f} MB)")
        over = held - self.reserved - self.taken
        if over > 0 and self.budget is not None:
            if not self.budget.try_take(over, self.endpoint):
                raise NeedsDecodeMemory(held)
            self.taken += over
        self._charges.append((size, kept))

    def release_since(self, mark: int, keep: Iterable[pyvips.Image]) -> None:
        """The images made since `mark` are freed, but those kept to the end and `keep` (made in memory since
        `mark`, so charged already: their bytes are within what the render took)."""
        self._charges[mark:] = [charge for charge in self._charges[mark:] if charge[1]] + \
            [(image_bytes(image), False) for image in keep]

    def mark(self) -> int:
        return len(self._charges)

    def close(self) -> None:
        if self.taken and self.budget is not None:
            self.budget.give_back(self.taken, self.endpoint)
        self.taken = 0


@contextmanager
def accounted(budget: DecodeBudget | None, reserved: int, limit: int, decodes: int,
              endpoint: Hashable | None = None) -> Iterator[Account]:
    """The calling thread renders holding `decodes` bytes of whole decodes, and what it makes in memory, for a
    request of `endpoint`."""
    account = Account(budget, reserved, limit, endpoint)
    try:
        account.charge(decodes, True, "source too large: decoding it takes")
        _current.account = account
        yield account
    finally:
        _current.account = None
        account.close()


def charge(image: pyvips.Image, kept: bool = False) -> None:
    """`image` is about to be made in memory by the render in this thread (if any)."""
    account = getattr(_current, "account", None)
    if account is not None:
        account.charge(image_bytes(image), kept, "source too large: decoding and transforming it takes")


def charge_encoding(size: int) -> None:
    """An encode about to hold `size` bytes (`encode.encoder_memory`), in the render in this thread (if any)."""
    account = getattr(_current, "account", None)
    if account is not None:
        account.charge(size, False, "output too large: decoding, transforming and encoding it takes")


def mark() -> int:
    """Where the charges of this thread's render begin from now on, for `release_since`."""
    account = getattr(_current, "account", None)
    return account.mark() if account is not None else 0


def release_since(mark: int, keep: Iterable[pyvips.Image]) -> None:
    account = getattr(_current, "account", None)
    if account is not None:
        account.release_since(mark, keep)
