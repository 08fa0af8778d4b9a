"""The shipped load-balancer configs (`deploy/`) run for real on 127.0.0.1 in front of test nodes:
Debian's haproxy and nginx, with only the addresses substituted (and the lines that need a system
install dropped). Tests skip with the reason when a binary is missing."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
START_TIMEOUT = 20
#: the node addresses written in the shipped configs, in order
SHIPPED_NODES = ("10.0.0.11:8080", "10.0.0.12:8080", "10.0.0.13:8080")
SHIPPED_INTERNAL = "10.0.0.1:8081"
#: how long the shipped configs wait for a node's answer: the node's own longest answer with its default
#: config (`edge.flight.wait_bound`: 40 s) plus `ANSWER_MARGIN` (docs/fleet.md, "The load balancers")
SHIPPED_ANSWER_TIMEOUT = 45
#: what the shipped configs wait for a purge's answer (every peer's, the shared tier's)
SHIPPED_ADMIN_TIMEOUT = 30
#: beyond the node's flight-waiter bound: its shared-tier lookup (`[shared_cache] timeout`, 2 s) and cache I/O
ANSWER_MARGIN = 5
BALANCERS = ("haproxy", "nginx")


def require(binary: str) -> str:
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin")
    if path is None:
        pytest.skip(f"{binary} not installed (Debian: apt-get install {binary}; .ci/run installs it)")
    return path


def free_ports(count: int) -> list[int]:
    """`count` different ports free now: each probe held until all are picked (two picked one after the other
    could be the same port, the public and internal listeners then one: a purge on it got the public side's 404)."""
    with contextlib.ExitStack() as held:
        probes = [held.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]


def substitute(text: str, replacements: dict[str, str]) -> str:
    """Replace each shipped value; a value missing from the file fails loudly (the config changed)."""
    for shipped, local in replacements.items():
        assert shipped in text, f"the shipped config no longer contains {shipped!r}"
        text = text.replace(shipped, local)
    return text


class LoadBalancer:
    """haproxy or nginx with the shipped config, public and internal listeners on free ports."""

    def __init__(self, kind: str, node_urls: list[str], work: Path, *, name_the_node: bool = False,
                 answer_timeout: int | None = None, admin_timeout: int | None = None):
        """`name_the_node`: answers say which node served them in `X-Edge-Node` (HAProxy: its server
        name, `edge-1`...; nginx: its address, `127.0.0.1:port`, after any address it tried first), for
        tests and measurements; the shipped configs do not reveal their nodes. `answer_timeout`: seconds to wait
        for a node's answer instead of `SHIPPED_ANSWER_TIMEOUT`, for test nodes configured to answer
        sooner (derived the same way, so that a test of a hung node does not wait 45 s). `admin_timeout`: the
        same for the internal listener's purges, instead of `SHIPPED_ADMIN_TIMEOUT`."""
        assert len(node_urls) == len(SHIPPED_NODES)
        self.kind = kind
        binary = require(kind)
        public, internal = free_ports(2)
        self.public_url, self.internal_url = f"http://127.0.0.1:{public}", f"http://127.0.0.1:{internal}"
        replacements = {shipped: urlsplit(url).netloc for shipped, url in zip(SHIPPED_NODES, node_urls)}
        replacements[SHIPPED_INTERNAL] = urlsplit(self.internal_url).netloc
        work.mkdir(parents=True, exist_ok=True)
        if kind == "haproxy":
            text = (DEPLOY / "haproxy" / "haproxy.cfg").read_text()
            replacements["bind :80 "] = f"bind {urlsplit(self.public_url).netloc} "
            replacements["maxconn 20000"] = "maxconn 2000"  # within a test machine's open-file limit
            if answer_timeout is not None:
                replacements[f"timeout server {SHIPPED_ANSWER_TIMEOUT}s"] = f"timeout server {answer_timeout}s"
            if admin_timeout is not None:
                replacements[f"timeout server {SHIPPED_ADMIN_TIMEOUT}s"] = f"timeout server {admin_timeout}s"
            if name_the_node:
                replacements["    default_backend edge_nodes"] = (
                    "    default_backend edge_nodes\n    http-response set-header X-Edge-Node %s")
            # chroot, user, group and the stats socket need the Debian package's folders and user
            kept = [line for line in substitute(text, replacements).splitlines()
                    if line.split()[:1] not in (["chroot"], ["user"], ["group"]) and "stats socket" not in line]
            (work / "haproxy.cfg").write_text("\n".join(kept) + "\n")
            command = [binary, "-db", "-f", str(work / "haproxy.cfg")]
        else:
            text = (DEPLOY / "nginx" / "edge.conf").read_text()
            replacements["listen 80;"] = f"listen {urlsplit(self.public_url).netloc};"
            if answer_timeout is not None:
                shipped = f"proxy_read_timeout {SHIPPED_ANSWER_TIMEOUT}s;"
                replacements[shipped] = f"proxy_read_timeout {answer_timeout}s;"
            if admin_timeout is not None:
                replacements[f"proxy_read_timeout {SHIPPED_ADMIN_TIMEOUT}s;"] = f"proxy_read_timeout {admin_timeout}s;"
            if name_the_node:
                replacements["        proxy_pass http://edge_nodes; "] = (
                    "        add_header X-Edge-Node $upstream_addr always;\n        proxy_pass http://edge_nodes; ")
            (work / "edge.conf").write_text(substitute(text, replacements))
            # the shipped file is included in the http block, as Debian's conf.d does
            (work / "nginx.conf").write_text(f"""
                pid {work}/nginx.pid;
                error_log stderr;
                worker_processes 1;
                events {{ worker_connections 256; }}
                http {{
                    access_log off;
                    client_body_temp_path {work}/body;
                    proxy_temp_path {work}/proxy;
                    include {work}/edge.conf;
                }}
                """)
            command = [binary, "-e", "stderr", "-p", str(work), "-c", str(work / "nginx.conf"),
                       "-g", "daemon off;"]
        self._node_addresses = [urlsplit(url).netloc for url in node_urls]
        self.log = work / f"{kind}.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        self._wait_listening()

    def served_by(self, headers) -> int:
        """The index in `node_urls` of the node that answered (`name_the_node`)."""
        named = headers["X-Edge-Node"].split(",")[-1].strip()  # nginx: every address it tried
        if self.kind == "haproxy":
            return int(named.removeprefix("edge-")) - 1
        return self._node_addresses.index(named)

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        for url in (self.public_url, self.internal_url):
            address = urlsplit(url)
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.kind} exited:\n{self.log.read_text()}")
                try:
                    socket.create_connection((address.hostname, address.port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{self.kind} did not listen on {url}") from None
                    time.sleep(0.05)

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen) -> None:
    """Terminate `process` (a balancer, a Prometheus), killed if it has not exited within 10 s."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
