import time

import pytest

from edge import chain
from edge.logs import Sparse
from edge.testing import NodeProcess
from tests.nodes import start_node

_STARTED = pytest.StashKey[float]()

#: test files `python3 dev.py test` runs alone, after the others ran on two processes: their bounds are of time
#: (deadlines, timeouts, a balancer's checks, a clock stepped), memory, or whole nodes and their workers, and hold
#: on a machine that runs them alone (on two processes of two cores, a render past its deadline and a store's
#: timing had failed them). Marked `serial`.
SERIAL_FILES = frozenset("""
    alerts_live animation_memory cache_churn cache_failures cancellation clock_steps compare_bench containers
    decode_memory encode_cost fetch_memory fleet fleet_purge hung_node load_balancers memory miss_path
    misbehaving_plugins operations origin_faults s3_answer_fuzz server_limits shared_cache signals single_flight
    stopped_render_memory svg_bombs threads transform_queue work_per_url workers
""".split())


def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.stem.removeprefix("test_") in SERIAL_FILES:
            item.add_marker(pytest.mark.serial)


@pytest.fixture(autouse=True)
def fresh_failure_lines(monkeypatch):
    """An origin's failure lines are logged once per `FAILURE_LOG_SECONDS` per origin object, known by its id: an
    earlier test's origin, gone, could leave its id to this test's, whose first failure line was then held back."""
    monkeypatch.setattr(chain, "_FAILURE_LINES", Sparse(chain.FAILURE_LOG_SECONDS))


@pytest.fixture
async def node_factory():
    """`await node_factory(config_path, *plugins, sockets=None)` → a `RunningNode`; all are stopped afterwards."""
    running = []

    async def start(config_path=None, *plugins, sockets=None):
        node = await start_node(config_path, *plugins, sockets=sockets)
        running.append(node)
        return node

    yield start
    for node in running:
        await node.stop()


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 API on 127.0.0.1 for the whole run; each test gets it back well-behaved (`reset`)."""
    from tests.s3server import S3Server

    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server):
    s3_server.reset()
    yield s3_server
    s3_server.require_auth(False)
    s3_server.reset()


#: lines of each node's log a failed test's report shows (its end: what led to the failure)
FAILED_TEST_LOG_LINES = 200


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    item.stash[_STARTED] = time.monotonic()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report shows the logs of the `edge serve` processes it started: a node that
    closed a connection or died says why there (CI keeps only the report)."""
    outcome = yield
    report = outcome.get_result()
    started = item.stash.get(_STARTED, None)
    if not report.failed or started is None:
        return
    for node in sorted(NodeProcess.instances, key=lambda node: node.started_at):
        if node.started_at >= started:
            name = getattr(node, "url", None) or f"pid {node.process.pid}"
            report.sections.append((f"edge serve {name} (exit status {node.process.poll()})",
                                    "".join(node.log[-FAILED_TEST_LOG_LINES:])))
