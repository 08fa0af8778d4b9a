"""The `azure_blob` origin against the Azurite emulator, through a real node (`edge.testing`) and,
for the conditional fetch, called directly as the node calls it."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from edge.plugin import ConfigTable, NotModified, OriginRequest, OriginSettings, Validators
from edge.testing import centre_colour, image_size, running_node, solid_image
from edge_azure_blob import AzureBlobOrigin
from tests.azurite import ACCOUNT_KEY, ACCOUNT_NAME

RED, BLUE = (200, 30, 30), (30, 30, 200)
WRONG_KEY = "d3Jvbmcga2V5IGZvciB0aGUgdGVzdHM="  # base64, but not the account's key


def origin_table(account_url: str, container: str, key: str = ACCOUNT_KEY, name: str = "azure",
                 extra: str = "") -> str:
    return f"""
[[origins]]
name = "{name}"
type = "azure_blob"
account_url = "{account_url}"
container = "{container}"
account_name = "{ACCOUNT_NAME}"
account_key = "{key}"
{extra}
"""


def endpoint(id_: str, origin: str) -> str:
    return f'\n[[endpoints]]\nid = "{id_}"\norigins = ["{origin}"]\n'


def same_colour(a, b) -> bool:
    return all(abs(x - y) <= 8 for x, y in zip(a, b))


def test_serves_a_blob_resized_and_404_for_a_missing_one(storage, tmp_path):
    storage.create_container("found")
    storage.upload("found", "products/shoe.png", solid_image(64, 48, RED, "png"))
    config = origin_table(storage.account_url, "found") + endpoint("", "azure")
    with running_node(config, tmp_path) as node:
        status, headers, body = node.get("/tr:w-32/products/shoe.png")
        assert (status, headers["Content-Type"]) == (200, "image/png")
        assert image_size(body) == (32, 24) and same_colour(centre_colour(body), RED)

        assert node.get("/products/missing.png")[0] == 404
        metrics = node.metrics()
        assert metrics.total("edge_origin_fetches_total", origin="azure", outcome="found") == 1
        assert metrics.total("edge_origin_fetches_total", origin="azure", outcome="not_found") == 1


def test_revalidation_costs_a_304_until_the_blob_changes(storage, tmp_path):
    storage.create_container("revalidated")
    storage.upload("revalidated", "shoe.png", solid_image(64, 48, RED, "png"))
    config = '[cache]\ndir = "cache"\noriginal_ttl = "0s"\n'  # every request revalidates
    config += origin_table(storage.account_url, "revalidated") + endpoint("", "azure")
    with running_node(config, tmp_path) as node:
        first = node.get("/tr:w-32/shoe.png")
        # The node answers before it stores: a request arriving before the store is done gets the
        # result its single flight still holds, without revalidating. So ask again (bounded) until
        # one request found the stored original and revalidated it.
        for _ in range(50):
            again = node.get("/tr:w-32/shoe.png")
            assert first[0] == again[0] == 200 and first[2] == again[2]
            if node.metrics().total("edge_origin_fetches_total", origin="azure", outcome="not_modified"):
                break
        assert node.metrics().total("edge_origin_fetches_total", origin="azure", outcome="not_modified") == 1
        assert node.metrics().total("edge_origin_fetches_total", origin="azure", outcome="found") == 1

        storage.upload("revalidated", "shoe.png", solid_image(64, 48, BLUE, "png"))
        status, _, body = node.get("/tr:w-32/shoe.png")
        assert status == 200 and same_colour(centre_colour(body), BLUE)
        metrics = node.metrics()
        assert metrics.total("edge_origin_fetches_total", origin="azure", outcome="found") == 2
        assert metrics.total("edge_origin_fetches_total", origin="azure", outcome="not_modified") == 1


def test_a_conditional_fetch_of_the_current_version_is_not_modified(storage, tmp_path):
    storage.create_container("conditional")
    storage.upload("conditional", "shoe.png", solid_image(64, 48, RED, "png"))
    table = ConfigTable({"account_url": storage.account_url, "container": "conditional",
                         "account_name": ACCOUNT_NAME, "account_key": ACCOUNT_KEY},
                        file="test", table="origins[0]", base_dir=tmp_path)
    origin = AzureBlobOrigin.from_config(OriginSettings(name="azure", type="azure_blob"), table)

    async def fetches():
        await origin.open()
        try:
            original = await origin.fetch(OriginRequest("shoe.png", 10**6))
            assert original.etag and original.last_modified and original.content_type == "application/octet-stream"
            with pytest.raises(NotModified):
                await origin.fetch(OriginRequest("shoe.png", 10**6, validators=original.validators))
            with pytest.raises(NotModified):  # Last-Modified alone, as when an origin gave no ETag
                await origin.fetch(OriginRequest("shoe.png", 10**6,
                                                 validators=Validators(None, original.last_modified)))
            changed = await origin.fetch(OriginRequest("shoe.png", 10**6, validators=Validators('"0x1"', None)))
            assert changed.body == original.body
        finally:
            await origin.close()

    asyncio.run(fetches())


@pytest.fixture
def silent_port():
    """A loopback port that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def test_wrong_key_missing_container_and_timeout_are_origin_errors(storage, tmp_path, silent_port):
    storage.create_container("errors")
    storage.upload("errors", "shoe.png", solid_image(64, 48, RED, "png"))
    config = (origin_table(storage.account_url, "errors", key=WRONG_KEY, name="wrong key")
              + origin_table(storage.account_url, "no-such-container", name="no container")
              + origin_table(f"http://127.0.0.1:{silent_port}/{ACCOUNT_NAME}", "errors", name="silent",
                             extra="timeout = 1")
              + endpoint("key", "wrong key") + endpoint("container", "no container") + endpoint("slow", "silent"))
    with running_node(config, tmp_path) as node:
        answers = {id_: node.get(f"/{id_}/shoe.png") for id_ in ("key", "container", "slow")}
        log = "".join(node.log)
    assert {id_: (status, headers["X-Edge-Error"]) for id_, (status, headers, _) in answers.items()} == {
        "key": (502, "wrong key: denied"),
        "container": (502, "no container: error"),
        "slow": (504, "silent: timeout"),
    }
    for _, _, body in answers.values():
        assert ACCOUNT_KEY.encode() not in body and WRONG_KEY.encode() not in body
    assert WRONG_KEY not in log and ACCOUNT_KEY not in log
    assert "container 'no-such-container' does not exist" in log


def test_check_config_validates_without_reaching_the_storage(tmp_path):
    """`from_config` does no I/O: the config checks on a machine that cannot reach the account."""
    import subprocess
    import sys

    from edge.testing import write_config

    good = write_config(tmp_path, origin_table("http://127.0.0.1:9/none", "originals") + endpoint("", "azure"))
    bad = write_config(tmp_path, origin_table("http://127.0.0.1:9/none", "Bad_Name") + endpoint("", "azure"),
                       name="bad.toml")

    def check(path: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "edge", "check-config", "--config", str(path)],
                              capture_output=True, text=True, timeout=60)

    done = check(good)
    assert done.returncode == 0, done.stderr
    assert ACCOUNT_KEY not in done.stdout and '"account_key": "****"' in done.stdout
    done = check(bad)
    assert done.returncode == 1 and "container: expected an Azure container name" in done.stderr
