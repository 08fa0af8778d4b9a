"""What an SRE gets: the Grafana dashboard and Prometheus files in `conf/` use only metrics the node
exports and are valid for Prometheus (promtool, where installed), the alert rules fire when they
should (promtool's rule unit tests), and the access log has one JSON line per request, no secrets."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from edge.metrics import Metrics
from tests.nodes import web_config, write_config
from tests.servers import HTTPOrigin

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "conf" / "grafana-dashboard.json"
ALERTS = ROOT / "conf" / "prometheus-alerts.yml"
SCRAPE = ROOT / "conf" / "prometheus-scrape.yml"
ALERT_TESTS = ROOT / "tests" / "prometheus" / "alerts-test.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None,
                                    reason="promtool not installed (Debian: apt-get install prometheus)")
#: Grafana's variables, as a query would see them
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$job": "edge", "$instance": ".*", "$endpoint": ".*"}


def exported_names() -> set[str]:
    """Every sample name the node's metrics produce."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    return {family.name + suffix for family in Metrics().registry.collect() for suffix in suffixes[family.type]}


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]


def alert_queries() -> list[str]:
    return [rule["expr"] for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def run_promtool(*args: str, stdin: str | None = None) -> None:
    result = subprocess.run([PROMTOOL, *args], input=stdin, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_shows_what_an_sre_needs():
    dashboard = json.loads(DASHBOARD.read_text())
    titles = [panel["title"] for panel in dashboard["panels"]]
    for wanted in ("Output hit ratio", "Requests by status", "Latency by cache result", "Origin fetch latency",
                   "Origin errors", "404s and signature refusals by endpoint", "Transform time", "Cache size and budget",
                   "Evictions", "Overload and lost work"):
        assert wanted in titles
    # panels do not overlap on Grafana's 24-column grid
    cells = [(p["gridPos"]["x"] + dx, p["gridPos"]["y"] + dy) for p in dashboard["panels"]
             for dx in range(p["gridPos"]["w"]) for dy in range(p["gridPos"]["h"])]
    assert len(cells) == len(set(cells)) and all(x < 24 for x, _ in cells)


@pytest.mark.parametrize("queries", [dashboard_queries, alert_queries])
def test_queries_use_only_metrics_the_node_exports(queries):
    used = {name for query in queries() for name in re.findall(r"\bedge_[a-z_]+", query)}
    assert used and used <= exported_names()


@needs_promtool
def test_the_dashboards_queries_are_valid_promql(tmp_path):
    rules = []
    for number, query in enumerate(dashboard_queries()):
        for variable, value in GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        rules.append({"record": f"dashboard:query_{number}", "expr": query})
    checked = tmp_path / "dashboard-queries.yml"
    checked.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    run_promtool("check", "rules", str(checked))


@needs_promtool
def test_promtool_accepts_the_alert_rules_and_the_scrape_config():
    run_promtool("check", "rules", str(ALERTS))
    run_promtool("check", "config", str(SCRAPE))


@needs_promtool
def test_the_alerts_fire_when_they_should():
    run_promtool("test", "rules", str(ALERT_TESTS))


async def test_the_access_log_carries_no_secret(node_factory, tmp_path, capsys):
    """Neither a signature in the query, nor an origin's credential, nor the admin token of a purge
    (the fields themselves: tests/test_accesslog.py)."""
    origin = await HTTPOrigin(files={"a.jpg": (ROOT / "edge" / "samples" / "coffee.jpg").read_bytes()}).start()
    try:
        config = web_config(origin.url, '[cache]\ndir = "cache"\n[admin]\ntoken = "admin-token-1f2e3d4c5b6a"\n')
        node = await node_factory(write_config(tmp_path, config.replace(
            'base_url =', 'headers = { Authorization = "Bearer origin-secret-9a8b7c" }\nbase_url =')))
        capsys.readouterr()
        await node.fetch("/tr:w-40/a.jpg?ik-s=signature-secret-0a1b2c&ik-t=9999999999")
        await node.fetch("/_edge/purge", method="POST", body=b'{"url": "/a.jpg"}',
                         headers={"Authorization": "Bearer admin-token-1f2e3d4c5b6a"})
        node.node.access_log.flush()
        assert node.node.access_log.written(10)
    finally:
        await origin.stop()
    out = capsys.readouterr()
    for secret in ("origin-secret-9a8b7c", "signature-secret-0a1b2c", "admin-token-1f2e3d4c5b6a"):
        assert secret not in out.out + out.err
    lines = [json.loads(line) for line in out.out.splitlines()]
    assert [(r["path"], r["status"], r.get("origin")) for r in lines] == [
        ("/tr:w-40/a.jpg", 200, "web"), ("/_edge/purge", 200, None)]
