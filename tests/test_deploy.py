"""The deployment files: the systemd unit passes `systemd-analyze verify` with every hardening the docs
promise, and the Dockerfile holds together (docker cannot build here): its sources exist and are not
ignored, it runs as a non-root user, its config is the one EDGE_CONFIG names and keeps the cache in the
volume, and its HEALTHCHECK command really tells a live node from a dead one."""

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge.config import Placeholders, load_config
from edge.pluginmanager import load_plugins
from tests.nodes import NodeProcess, local_config, write_config

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "systemd" / "edge.service"
DOCKERFILE = ROOT / "Dockerfile"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_the_unit_is_hardened_and_reloads_with_sighup():
    unit = unit_settings()
    for key, value in {"DynamicUser": "yes", "ProtectSystem": "strict", "StateDirectory": "edge",
                       "ExecReload": "/bin/kill -HUP $MAINPID", "LimitNOFILE": "65536", "NoNewPrivileges": "yes",
                       "Environment": "EDGE_CONFIG=/etc/edge/edge.toml", "KillMode": "mixed"}.items():
        assert unit[key] == [value], key
    config = load_config(ROOT / "deploy" / "systemd" / "edge.toml", load_plugins(), environ=Placeholders())
    assert config.cache.dir == Path("/var/lib/edge/cache")  # inside StateDirectory=edge
    assert config.server.host == "127.0.0.1" and config.admin_token is not None


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verifies_the_unit(tmp_path):
    # verify wants the ExecStart binary to exist: point it at this checkout's `edge`
    unit = tmp_path / "edge.service"
    unit.write_text(UNIT.read_text().replace("/opt/edge/bin/edge", str(Path(sys.executable).with_name("edge"))))
    result = subprocess.run([SYSTEMD_ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", "\n".join(line for line in DOCKERFILE.read_text().splitlines()
                                              if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines() if line.strip()]


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile()
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


def dockerignored(path: str) -> bool:
    patterns = [p for p in (ROOT / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")]
    return any(fnmatch.fnmatch(path, p) or path.startswith(p.rstrip("/") + "/") for p in patterns)


def test_the_dockerfile_is_multi_stage_and_its_sources_exist():
    instructions = dockerfile()
    assert sum(op == "FROM" for op, _ in instructions) >= 2
    copied = [args.split() for op, args in instructions if op == "COPY" and not args.startswith("--from")]
    for *sources, _destination in copied:
        for source in sources:
            assert (ROOT / source).exists() and not dockerignored(source), source
    assert any(op == "COPY" and args.startswith("--from=build") for op, args in final_stage())


def test_the_container_runs_unprivileged_with_its_config_and_cache_volume():
    stage = final_stage()
    user = [args for op, args in stage if op == "USER"]
    assert user and user[-1] not in ("root", "0")
    env = " ".join(args for op, args in stage if op == "ENV")
    config_path = re.search(r"EDGE_CONFIG=(\S+)", env).group(1)
    source = next(args.split()[0] for op, args in stage if op == "COPY" and args.split()[-1] == config_path)
    config = load_config(ROOT / source, load_plugins(), environ=Placeholders())
    volumes = json.loads(next(args for op, args in stage if op == "VOLUME"))
    assert str(config.cache.dir) in volumes
    assert config.server.host == "0.0.0.0"
    assert json.loads(next(args for op, args in stage if op == "CMD")) == ["edge", "serve"]


def test_the_shipped_nodes_serve_metrics_where_the_shipped_scrape_config_reads_them():
    """The systemd and container configs had no `metrics_port` while conf/prometheus-scrape.yml scrapes :9480, and
    the systemd node listens on 127.0.0.1 only: every healthy node read `up == 0` (EdgeNodeDown; SRE probe)."""
    scrape_config = (ROOT / "conf" / "prometheus-scrape.yml").read_text()
    scraped = {int(port) for port in re.findall(r"^\s+- \S+:(\d+)$", scrape_config, re.M)}
    for source in ("deploy/systemd/edge.toml", "deploy/docker/edge.toml"):
        server = load_config(ROOT / source, load_plugins(), environ=Placeholders()).server
        assert {server.metrics_port} == scraped, source
        assert server.metrics_address == "0.0.0.0", source  # reached from the Prometheus machine
    exposed = next(args for op, args in final_stage() if op == "EXPOSE").split()
    assert str(scraped.pop()) in exposed


def healthcheck_command(port: int) -> list[str]:
    args = next(args for op, args in final_stage() if op == "HEALTHCHECK")
    command = json.loads(args[args.index("CMD") + 3:].strip())
    assert "/_edge/health" in command[-1] and ":8080/" in command[-1]
    return [sys.executable if command[0] == "python" else command[0], *command[1:-1],
            command[-1].replace(":8080/", f":{port}/")]


def test_the_healthcheck_tells_a_live_node_from_a_dead_one(tmp_path):
    node = NodeProcess(write_config(tmp_path, local_config()))
    try:
        port = int(node.url.rsplit(":", 1)[1])
        alive = subprocess.run(healthcheck_command(port), capture_output=True, timeout=30)
        assert alive.returncode == 0, alive.stderr
    finally:
        node.stop()
    dead = subprocess.run(healthcheck_command(port), capture_output=True, timeout=30)
    assert dead.returncode != 0
