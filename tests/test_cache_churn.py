"""The cache folder under churn, as an operator sees it: what a stopped node leaves behind."""

import json
import urllib.request

from edge.testing import running_node
from tests.nodes import local_config

TOKEN = "churn-token-5b1e0c7d93a2"


def test_a_stopped_node_leaves_no_write_ahead_log_after_purges_and_failures(tmp_path):
    """Every SQLite database under `[cache] dir` is checkpointed when the node stops, also those a purge
    and a recorded failure wrote: their connections belong to threads that close them. (Purges ran in
    asyncio's default threads, whose connections were never closed: a -wal of up to 4 MB stayed beside
    each tier's database, and `edge cache stats` took the stopped node for a running one.)"""
    config = local_config(before=f'[server]\nworkers = 2\n[admin]\ntoken = "{TOKEN}"\n')
    with running_node(config, tmp_path) as node:
        for width in (100, 120, 140):
            status, _, _ = node.get(f"/tr:w-{width}/astronaut.jpg")
            assert status == 200
        assert node.get("/tr:w-100/no-such.jpg")[0] == 404  # recorded as the flight's failure
        for _ in range(4):  # enough to reach both workers
            request = urllib.request.Request(f"{node.base_url}/_edge/purge", method="POST",
                                             data=json.dumps({"url": "/astronaut.jpg"}).encode(),
                                             headers={"Authorization": f"Bearer {TOKEN}"})
            with urllib.request.urlopen(request, timeout=30) as answer:
                assert answer.status == 200
    databases = sorted(str(path.relative_to(tmp_path)) for path in (tmp_path / "cache").rglob("cache.db"))
    assert "cache/outputs/cache.db" in databases and "cache/purges/cache.db" in databases
    assert "cache/flights/outputs/failures/cache.db" in databases
    assert sorted(str(path.relative_to(tmp_path)) for path in (tmp_path / "cache").rglob("*-wal")) == []
