import pytest

from tests.nodes import start_node


@pytest.fixture
async def node_factory():
    """`await node_factory(config_path, *plugins)` → a `RunningNode`; all are stopped afterwards."""
    running = []

    async def start(config_path=None, *plugins):
        node = await start_node(config_path, *plugins)
        running.append(node)
        return node

    yield start
    for node in running:
        await node.stop()
