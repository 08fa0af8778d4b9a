import pytest

from tests.nodes import start_node


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
