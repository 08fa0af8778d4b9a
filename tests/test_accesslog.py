"""The access log: one parseable JSON line per request, never the query string."""

import json

from tests.nodes import local_config, write_config


async def test_one_json_line_per_request_without_the_query(node_factory, tmp_path, capsys):
    node = await node_factory(write_config(tmp_path, local_config()))
    await node.fetch("/tr:w-20/coffee.jpg?ik-s=secret-signature&tr=h-10")
    await node.fetch("/tr:w-20/coffee.jpg?ik-s=secret-signature&tr=h-10")
    await node.fetch('/tr:w-20/"missing".jpg')
    await node.fetch("/_edge/health")
    node.node.access_log.flush()
    out = capsys.readouterr().out
    assert "secret-signature" not in out
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["path"], r["status"], r.get("cache")) for r in records] == [
        ("/tr:w-20/coffee.jpg", 200, "miss"),
        ("/tr:w-20/coffee.jpg", 200, "hit"),
        ('/tr:w-20/"missing".jpg', 404, "miss"),
        ("/_edge/health", 200, None),
    ]
    miss, hit = records[0], records[1]
    assert miss["endpoint"] == "default" and miss["origin"] == "samples" and miss["method"] == "GET"
    assert hit["bytes"] == miss["bytes"] > 0
    assert records[2]["origin"] is None and records[2]["bytes"] == 0
    assert all(r["duration_ms"] >= 0 and r["time"] > 1e9 for r in records)
