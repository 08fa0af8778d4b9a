import asyncio
from importlib.metadata import entry_points

import pytest
from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob.aio import BlobServiceClient

from tests.azurite import ACCOUNT_KEY, ACCOUNT_NAME, Azurite


def pytest_sessionstart(session):
    # the node finds the plugin through its entry point only: an uninstalled plugin fails every test
    if not any(ep.name == "azure_blob" for ep in entry_points(group="edge.plugins")):
        raise pytest.UsageError("edge-azure-blob is not installed: pip install -e 'contrib/edge-azure-blob[test]'")


class Storage:
    """The emulator's account, and uploads into it (blocking: the tests are synchronous)."""

    def __init__(self, azurite: Azurite):
        self.account_url = azurite.account_url

    def _run(self, work):
        async def with_client():
            async with BlobServiceClient(self.account_url,
                                         AzureNamedKeyCredential(ACCOUNT_NAME, ACCOUNT_KEY)) as client:
                return await work(client)
        return asyncio.run(with_client())

    def create_container(self, name: str) -> None:
        self._run(lambda client: client.create_container(name))

    def upload(self, container: str, name: str, data: bytes) -> None:
        self._run(lambda client: client.get_blob_client(container, name).upload_blob(data, overwrite=True))


@pytest.fixture(scope="session")
def storage(tmp_path_factory):
    azurite = Azurite(tmp_path_factory.mktemp("azurite"))
    try:
        yield Storage(azurite)
    finally:
        azurite.stop()
