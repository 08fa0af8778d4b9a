"""Single flight: concurrent requests for one uncached image share one origin fetch and one transform,
within a worker and across the workers of a node; waiters get the leader's answer, bounded in time."""

import asyncio
import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from tornado.httpclient import AsyncHTTPClient

from edge.cache.purges import BOOT, node_time
from edge.errors import BadGateway, FlightTimeout, NothingToServe
from edge.flight import FAILURE_RECORD_SECONDS, SingleFlight, _record_of, _revive
from tests.flightproc import Tally
from tests.nodes import SAMPLES, NodeProcess, decode, until, web_config, write_config
from tests.scrape import scrape, total
from tests.servers import HTTPOrigin

HERD = 200
WAIT_LIMIT = 30
#: the node's origin and header timeouts (10 s by default), beyond every wait of these tests (`until`'s,
#: WAIT_LIMIT): the origin holds its answer until the whole herd is in, however long a loaded machine
#: takes to send it, and a connection the paused test process has not yet sent its request on stays open
SLOW = "60s"
TWO_WORKERS = f'[server]\nworkers = 2\nheader_timeout = "{SLOW}"\n'
ORIGIN = f'timeout = "{SLOW}"'


async def test_a_herd_of_cold_requests_costs_one_fetch_and_one_transform(tmp_path):
    origin = await HTTPOrigin(files={"herd.jpg": (SAMPLES / "camera.jpg").read_bytes()}).start()
    origin.behaviour.hold = asyncio.Event()  # the leader's fetch stays in flight until every request is in
    node = NodeProcess(write_config(tmp_path, web_config(origin.url, TWO_WORKERS, origin=ORIGIN)))
    client = AsyncHTTPClient(force_instance=True, max_clients=HERD)
    try:
        url = node.url + "/tr:w-160/herd.jpg"
        herd = [asyncio.ensure_future(client.fetch(url, raise_error=False, request_timeout=WAIT_LIMIT))
                for _ in range(HERD)]

        async def all_in_flight():
            return total(await scrape(node.url), "edge_inflight_requests") == HERD
        await until(all_in_flight, f"{HERD} requests in flight")
        origin.behaviour.hold.set()
        responses = await asyncio.gather(*herd)
        metrics = await scrape(node.url)
    finally:
        origin.behaviour.hold.set()
        client.close()
        node.stop()
        await origin.stop()

    assert origin.requests == {"herd.jpg": 1}
    assert total(metrics, "edge_transform_duration_seconds_count") == 1
    assert [r.code for r in responses] == [200] * HERD
    assert len({r.body for r in responses}) == 1
    assert decode(responses[0]).width == 160
    assert total(metrics, "edge_coalesced_requests_total") == HERD - 1
    assert total(metrics, "edge_http_requests_total", status="200") == HERD


@pytest.mark.parametrize("status, answer", [
    (503, (502, "web: server_error", b"origin error\n", "no-store")),
    # the waiters of the other worker had got a 500: the 404 revived from its record lacked its `max_age`
    (404, (404, "not_found", b"not found\n", "public, max-age=60")),
])
async def test_a_herd_on_a_failing_origin_costs_one_fetch_and_all_get_its_error(tmp_path, status, answer):
    origin = await HTTPOrigin(files={"down.jpg": b"never served"}).start()
    origin.behaviour.status = status
    origin.behaviour.hold = asyncio.Event()
    node = NodeProcess(write_config(tmp_path, web_config(origin.url, TWO_WORKERS, origin=ORIGIN)))
    client = AsyncHTTPClient(force_instance=True, max_clients=50)
    try:
        herd = [asyncio.ensure_future(client.fetch(node.url + "/tr:w-90/down.jpg", raise_error=False,
                                                   request_timeout=WAIT_LIMIT)) for _ in range(50)]

        async def all_in_flight():
            return total(await scrape(node.url), "edge_inflight_requests") == 50
        await until(all_in_flight, "50 requests in flight")
        origin.behaviour.hold.set()
        responses = await asyncio.gather(*herd)
    finally:
        origin.behaviour.hold.set()
        client.close()
        node.stop()
        await origin.stop()

    assert origin.requests == {"down.jpg": 1}
    assert {(r.code, r.headers.get("X-Edge-Error"), r.body, r.headers.get("Cache-Control"))
            for r in responses} == {answer}


# -- the flight itself, in one process ----------------------------------------------------------------

async def test_concurrent_callers_in_a_process_share_one_production(tmp_path):
    flight = SingleFlight("test", tmp_path / "flights", WAIT_LIMIT, coalesced=Tally().inc)
    release = asyncio.Event()
    produced = []

    async def produce():
        produced.append(1)
        await release.wait()
        return "the output"

    async def lookup():
        return None

    callers = [asyncio.ensure_future(flight.run("key", produce, lookup)) for _ in range(20)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*callers) == ["the output"] * 20
    assert produced == [1]
    flight.close()


async def test_a_result_a_purge_overtook_is_never_stored(tmp_path):
    """A purge recorded after the work began: the callers get the result, nothing is written (a store then deleted
    again had left another worker a window to read the image from before the purge: a mutation storing it survived,
    the second look deleting it afterwards)."""
    purged_at: list[float] = []
    stored, discarded = [], []

    async def purged_since(key, began):
        return any(at > began for at in purged_at)

    async def discard(key):
        discarded.append(key)

    flight = SingleFlight("test", tmp_path / "flights", WAIT_LIMIT, coalesced=Tally().inc, purged_since=purged_since,
                          discard=discard)

    async def produce():
        purged_at.append(time.time() + 1)  # a purge of the key while the image is made
        return "the output from before the purge"

    async def lookup():
        return None

    async def keep(result):
        stored.append(result)

    assert await flight.run("key", produce, lookup, keep) == "the output from before the purge"
    await flight.settle()
    assert (stored, discarded) == ([], [])
    flight.close()


async def test_a_caller_arriving_while_the_result_is_stored_gets_it_without_a_second_production(tmp_path):
    """The flight stays current until its result is stored: a request of the worker arriving meanwhile gets the
    result it holds (the lease is the process's own: a new flight had found nothing stored and made it again)."""
    flight = SingleFlight("test", tmp_path / "flights", WAIT_LIMIT, coalesced=Tally().inc)
    flight.open_leases()
    stored, storing = asyncio.Event(), asyncio.Event()
    produced = []

    async def produce():
        produced.append(1)
        return f"the output {len(produced)}"

    async def lookup():  # (the store is not written yet)
        return None

    async def keep(result):
        storing.set()
        await stored.wait()

    assert await flight.run("key", produce, lookup, keep) == "the output 1"
    await asyncio.wait_for(storing.wait(), WAIT_LIMIT)
    later = asyncio.ensure_future(flight.run("key", produce, lookup, keep))
    await asyncio.sleep(0)  # it has joined (or begun) a flight
    stored.set()
    assert await asyncio.wait_for(later, WAIT_LIMIT) == "the output 1"
    assert produced == [1]
    await flight.settle()
    flight.close()


async def test_concurrent_callers_in_a_process_share_the_leaders_failure(tmp_path):
    tally = Tally()
    flight = SingleFlight("test", tmp_path / "flights", WAIT_LIMIT, coalesced=tally.inc)
    release = asyncio.Event()
    produced = []

    async def produce():
        produced.append(1)
        await release.wait()
        raise BadGateway("origin error", headers={"X-Edge-Error": "web: timeout"})

    async def lookup():
        return None

    callers = [asyncio.ensure_future(flight.run("key", produce, lookup)) for _ in range(5)]
    await asyncio.sleep(0)
    release.set()
    outcomes = await asyncio.gather(*callers, return_exceptions=True)
    assert produced == [1] and tally.count == 4
    assert {(type(o), o.headers["X-Edge-Error"]) for o in outcomes} == {(BadGateway, "web: timeout")}

    # a request that starts after the failure tries again (failures are not cached)
    release.set()
    with pytest.raises(BadGateway):
        await flight.run("key", produce, lookup)
    assert produced == [1, 1]
    flight.close()


@pytest.mark.parametrize("damage", [{"boot": BOOT + "-before"}, {"status": 200}, {"status": 600},
                                    {"fields": {"message": "not the leader's"}},
                                    {"fields": {"headers": "X-Edge-Error"}}])
async def test_a_failure_record_of_another_boot_or_not_of_ours_is_read_as_none_and_the_work_done(tmp_path, damage):
    """A failure record outlives a reboot of the machine (60 s, on disk), but its time is on the monotonic clock of
    the boot before: however late it reads, its failure is not this one's (its error had been answered for a minute
    after the reboot). A record whose status is no error's, or whose subclass fields would overwrite what it holds
    besides, is a damaged store (mutations reviving a 200, or letting the fields set the message, survived). Either
    is as if nothing were recorded: the work is done."""
    flight = SingleFlight("test", tmp_path / "flights", WAIT_LIMIT, coalesced=Tally().inc)
    record = {**_record_of(BadGateway("origin error", headers={"X-Edge-Error": "web: timeout"})),
              "at": node_time() + 10**6, "boot": BOOT, **damage}
    flight._failure_store().set("key", json.dumps(record), expire=FAILURE_RECORD_SECONDS)
    produced = []

    async def produce():
        produced.append(1)
        return "the output"

    async def lookup():
        return None

    assert await flight.run("key", produce, lookup) == "the output"
    assert produced == [1]
    flight.close()


# -- the flight across processes ----------------------------------------------------------------------

class FlightProcess:
    """`tests.flightproc` in a child process; `events()` reads its JSON lines, bounded in time."""

    def __init__(self, directory, role: str, key: str = "endpoint/path/w-100", wait: float = WAIT_LIMIT):
        self.process = subprocess.Popen([sys.executable, "-m", "tests.flightproc", str(directory), key, role,
                                         str(wait)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:  # ends at EOF, when the process exits
            self._lines.put(line)
        self._lines.put("")

    def next_event(self) -> dict:
        try:
            line = self._lines.get(timeout=WAIT_LIMIT)
        except queue.Empty:
            raise AssertionError("no event from the flight process in time") from None
        assert line, "the flight process exited"
        return json.loads(line)

    def wait_for(self, event: str) -> dict:
        seen = []
        while (got := self.next_event())["event"] != event:
            seen.append(got)
        got["before"] = seen
        return got

    def release(self) -> None:
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(WAIT_LIMIT)
        self._reader.join(WAIT_LIMIT)
        self.process.stdin.close()
        self.process.stdout.close()


@pytest.fixture
def flight_processes(tmp_path):
    started = []

    def start(role: str, **kwargs) -> FlightProcess:
        started.append(FlightProcess(tmp_path, role, **kwargs))
        return started[-1]

    yield start
    for process in started:
        process.close()


def test_waiting_workers_get_the_leaders_result(flight_processes):
    leader = flight_processes("lead")
    leader.wait_for("producing")
    followers = [flight_processes("follow") for _ in range(3)]
    for follower in followers:
        follower.wait_for("underway")
    leader.release()
    made = leader.wait_for("done")["value"]
    assert made == f"made by {leader.process.pid}"
    for follower in followers:
        done = follower.wait_for("done")
        assert done["value"] == made
        assert "producing" not in [e["event"] for e in done["before"]]


def test_a_worker_arriving_while_the_leader_stores_waits_for_the_store_not_a_second_fetch(flight_processes):
    """The leader answers its requests before it stores the result, and holds the lease until it is stored: a
    request of another worker arriving meanwhile waits and finds it, rather than fetching and rendering again."""
    leader = flight_processes("lead-keep")
    leader.wait_for("producing")
    leader.release()
    made = leader.wait_for("done")["value"]  # answered; the store waits for a second line
    follower = flight_processes("follow")
    follower.wait_for("underway")
    leader.release()
    leader.wait_for("kept")
    done = follower.wait_for("done")
    assert done["value"] == made == f"made by {leader.process.pid}"
    assert "producing" not in [e["event"] for e in done["before"]]


def test_waiting_workers_get_the_leaders_failure_not_a_second_fetch(flight_processes):
    leader = flight_processes("lead-fail")
    leader.wait_for("producing")
    follower = flight_processes("follow")
    follower.wait_for("underway")
    leader.release()
    failure = {"type": "BadGateway", "status": 502, "message": "origin error",
               "headers": {"X-Edge-Error": "web: server_error"}}
    assert {k: v for k, v in leader.wait_for("error").items() if k in failure} == failure
    got = follower.wait_for("error")
    assert {k: v for k, v in got.items() if k in failure} == failure
    assert "producing" not in [e["event"] for e in got["before"]]


def test_a_leader_refused_for_its_own_overload_leaves_the_work_to_the_waiting_workers(flight_processes):
    """A 503 for the leader's worker's own state (its transform queue, its memory budgets) is not recorded: another
    worker may have room. Waiters had got it (and each refusal of a burst wrote a record)."""
    leader = flight_processes("lead-overloaded")
    leader.wait_for("producing")
    follower = flight_processes("follow")
    follower.wait_for("underway")
    leader.release()
    assert leader.wait_for("error")["status"] == 503
    assert follower.wait_for("done")["value"] == f"made by {follower.process.pid}"


def test_a_crashed_leader_does_not_block_the_waiters(flight_processes):
    leader = flight_processes("lead")
    leader.wait_for("producing")
    follower = flight_processes("follow")
    follower.wait_for("underway")
    leader.process.send_signal(signal.SIGKILL)  # the kernel drops its lease
    follower.wait_for("producing")
    assert follower.wait_for("done")["value"] == f"made by {follower.process.pid}"


def test_leaders_of_different_keys_in_different_workers_work_at_once(flight_processes):
    """Each key has a lease of its own: a worker producing one image never holds up another worker's work on
    another (a mutation giving every key the same lease survived)."""
    first = flight_processes("lead", key="endpoint/path/w-100")
    first.wait_for("producing")
    second = flight_processes("lead", key="endpoint/path/w-200")
    second.wait_for("producing")
    second.release()  # (one after the other: both write the one result file)
    assert second.wait_for("done")["value"] == f"made by {second.process.pid}"
    first.release()
    assert first.wait_for("done")["value"] == f"made by {first.process.pid}"


def test_waiting_is_bounded(flight_processes):
    leader = flight_processes("lead")
    leader.wait_for("producing")
    impatient = flight_processes("follow", wait=0.2)
    got = impatient.wait_for("error")
    assert (got["type"], got["status"]) == (FlightTimeout.__name__, 504)
    assert "producing" not in [e["event"] for e in got["before"]]
    leader.release()
    assert leader.wait_for("done")["value"] == f"made by {leader.process.pid}"


async def test_a_herd_on_a_refusing_origin_gets_its_error_in_every_size(tmp_path):
    """Requests for several sizes of one original on an origin that refuses connections: the output flights
    share the original's flight, and so its error. Every one is a 502: answering one request had cleared
    the frames in that shared error's traceback, closing coroutines of other requests still suspended in
    it (a flight's leader recording the failure), whose waiters got a 500 (`cannot reuse already awaited
    coroutine`; 5-14 % of requests under load)."""
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    config = web_config(f"http://127.0.0.1:{port}", '[server]\nworkers = 1\n[cache]\nnot_found_ttl = "0s"\n')
    node = NodeProcess(write_config(tmp_path, config))
    client = AsyncHTTPClient(force_instance=True, max_clients=64)
    try:
        answers = []
        for round_ in range(12):  # a bounded load: 12 herds of 64
            answers += await asyncio.gather(*(
                client.fetch(f"{node.url}/tr:w-{100 + i % 8}/r{round_ % 3}.jpg", raise_error=False,
                             request_timeout=WAIT_LIMIT) for i in range(64)))
    finally:
        client.close()
        node.stop()
    assert {(r.code, r.body) for r in answers} == {(502, b"origin error\n")}


def test_a_failure_revived_then_recorded_again_is_revived_whole():
    """A worker's flight may fail with an error it revived from another's record (a missing original): recorded
    again, its own `status` had made the record unreadable, and other workers' waiters did the work again."""
    error = NothingToServe("not found", max_age=60)
    for _ in range(2):
        error = _revive(json.loads(json.dumps(_record_of(error))))
    assert (type(error), error.status, error.message, error.max_age) == (NothingToServe, 404, "not found", 60)
