"""The node as a container or a systemd unit runs it: fewer cores than the machine has (CPU affinity, a
cgroup CPU quota), no home folder, no writable temporary folder. Each condition is made for real where
this machine allows it (taskset, a cgroup of our own, a mount namespace) and the test skips, saying
why, where it does not."""

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from edge.cores import cgroup_cpu_quota
from edge.testing import ServingNode
from tests.nodes import NodeProcess, local_config, write_config

EDGE = (sys.executable, "-m", "edge")
PER_CORE = "[server]\nworkers = 0\ntransform_threads = 0\n"


def machine_cores() -> int:
    cores = os.cpu_count() or 1
    if cores < 2:
        pytest.skip("needs a machine of 2 cores or more to tell a limit from the machine's count")
    return cores


def test_workers_0_counts_the_cores_of_the_cpu_affinity_not_the_machines(tmp_path):
    machine = machine_cores()
    if shutil.which("taskset") is None:
        pytest.skip("taskset (util-linux) is not installed")
    assert_one_core(tmp_path, ("taskset", "-c", "0", *EDGE), f"CPU affinity: 1 of the machine's {machine} cores")


def assert_one_core(tmp_path: Path, edge: tuple[str, ...], why: str) -> None:
    """`edge` (the command running `edge serve`) with `workers = 0` starts one worker of one render thread, and
    says `why` at its start."""
    node = NodeProcess(write_config(tmp_path, local_config(before=PER_CORE)), edge=edge)
    try:
        assert any(f"usable cores: 1 ({why}); 1 worker(s) of 1 transform thread(s)" in line for line in node.log), \
            node.log
        assert len(node.worker_pids()) == 1
    finally:
        assert node.stop() == 0


def v1_cpu_cgroup(tmp_path: Path) -> Path:
    """A cgroup v1 folder of the `cpu` controller of our own (removed by the caller), or a skip."""
    hierarchy = Path("/sys/fs/cgroup/cpu")
    if not (hierarchy / "cpu.cfs_quota_us").exists():
        pytest.skip("no cgroup v1 cpu hierarchy at /sys/fs/cgroup/cpu (cgroup v2 needs the cpu controller "
                    "delegated to us, which this test does not set up)")
    folder = hierarchy / f"edge-test-{uuid.uuid4().hex[:8]}"
    try:
        folder.mkdir()
    except OSError as error:
        pytest.skip(f"cannot create a cgroup in {hierarchy}: {error.strerror}")
    return folder


def test_workers_0_counts_the_cgroup_cpu_quota_rounded_up(tmp_path):
    machine_cores()
    cgroup = v1_cpu_cgroup(tmp_path)
    try:
        # half a core a period (docker --cpus 0.5): rounded up to one core, never to none
        (cgroup / "cpu.cfs_period_us").write_text("100000")
        (cgroup / "cpu.cfs_quota_us").write_text("50000")
        in_cgroup = ("sh", "-c", f'echo $$ > {cgroup / "cgroup.procs"} && exec "$@"', "sh", *EDGE)
        assert_one_core(tmp_path, in_cgroup, f"cgroup CPU quota 50000/100000 µs in {cgroup / 'cpu.cfs_quota_us'}")
    finally:
        cgroup.rmdir()


def fake_cgroup_v2(root: Path, cgroup: str, quotas: dict[str, str], mount_root: str = "/") -> Path:
    """A folder laid out as / is for a process in the cgroup v2 `cgroup`, with `cpu.max` files."""
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/cgroup").write_text(f"0::{cgroup}\n")
    (root / "proc/self/mountinfo").write_text(
        "22 1 0:21 / / rw,relatime - overlay overlay rw\n"
        f"31 22 0:28 {mount_root} /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n")
    for folder, quota in quotas.items():
        (root / "sys/fs/cgroup" / folder).mkdir(parents=True, exist_ok=True)
        (root / "sys/fs/cgroup" / folder / "cpu.max").write_text(quota + "\n")
    return root


def test_a_cgroup_v2_quota_is_the_smallest_on_the_way_to_the_root_and_rounded_up(tmp_path):
    # the pod's limit (1.5 cores) is tighter than the container's (3); no limit above the pod
    root = fake_cgroup_v2(tmp_path, "/kubepods/pod1/ctr", {
        "kubepods": "max 100000", "kubepods/pod1": "150000 100000", "kubepods/pod1/ctr": "300000 100000"})
    quota = cgroup_cpu_quota(root)
    assert quota is not None and quota.count == 2
    assert quota.source == f"cgroup CPU quota 150000/100000 µs in {root}/sys/fs/cgroup/kubepods/pod1/cpu.max"


def test_a_containers_own_cgroup_namespace_shows_its_cgroup_as_the_root(tmp_path):
    # docker with a cgroup namespace: /proc/self/cgroup says "/", and the mount is the container's cgroup
    root = fake_cgroup_v2(tmp_path, "/", {"": "200000 100000"}, mount_root="/")
    assert cgroup_cpu_quota(root).count == 2
    assert cgroup_cpu_quota(fake_cgroup_v2(tmp_path / "unlimited", "/", {"": "max 100000"})) is None


def user_without_home() -> list[str]:
    """The command prefix that runs as a uid with no passwd entry and no HOME (`docker run --user
    12345`, Kubernetes' runAsUser), or a skip."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (util-linux) to run as another uid")
    uid = next(uid for uid in range(12345, 12445) if uid not in {entry.pw_uid for entry in pwd.getpwall()})
    return ["env", "-u", "HOME", "-u", "XDG_CACHE_HOME", "-u", "EDGE_CONFIG",
            "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]


def test_a_user_without_a_home_folder_gets_a_config_error_or_serves_with_a_cache_dir():
    as_user = user_without_home()
    # no [cache] dir: its default is in the home folder; a config error naming the key, no traceback
    result = subprocess.run([*as_user, *EDGE, "check-config"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip() == ("edge: config error: <embedded default>: [cache] dir: not set, and this user "
                                     "has no home folder for the default (~/.cache/edge-image-node): HOME is unset "
                                     "and the user has no entry in /etc/passwd; set [cache] dir")
    # with one, the node serves (the uid must read the config: a folder of its own, not pytest's 0700 one)
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o777)
        node = NodeProcess(write_config(Path(folder), local_config(before=f'[cache]\ndir = "{folder}/cache"\n')),
                           edge=(*as_user, *EDGE))
        try:
            assert ServingNode(node).get("/tr:w-32/coffee.jpg")[0] == 200
        finally:
            assert node.stop() == 0


def test_no_writable_temporary_folder_is_a_one_line_startup_error(tmp_path):
    """`docker run --read-only` without `--tmpfs /tmp`: the workers' metrics files have nowhere to go."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare (util-linux) to make /tmp read-only in a mount namespace of its own")
    config = write_config(tmp_path, local_config(before=f'[server]\nworkers = 2\n[cache]\ndir = "{tmp_path}/cache"\n'))
    (tmp_path / "cache").mkdir()
    read_only = " && ".join(f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder}"
                            for folder in ("/tmp", "/var/tmp") if Path(folder).is_dir())
    # the cache on a writable tmpfs; the working folder (tempfile's last resort) read-only as /tmp is
    script = (f"mount --make-rprivate / && {read_only} && mount -t tmpfs tmpfs {tmp_path}/cache && "
              f'exec "$@" serve --port 0 --config {config}')
    environ = {k: v for k, v in os.environ.items() if k not in ("TMPDIR", "TEMP", "TMP")}
    try:
        result = subprocess.run(["unshare", "--mount", "sh", "-c", script, "sh", *EDGE], capture_output=True,
                                text=True, timeout=60, env=environ, cwd=tmp_path)
    except subprocess.TimeoutExpired:
        pytest.fail("edge serve kept running without a temporary folder")
    if "mount:" in result.stderr or "unshare:" in result.stderr:
        pytest.skip(f"cannot make /tmp read-only here: {result.stderr.strip()}")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("edge: ")]
    assert errors == ["edge: no writable temporary folder for the workers' metrics files (No usable temporary "
                      "directory found in ['/tmp', '/var/tmp', '/usr/tmp', " f"'{tmp_path}'" "]): mount a tmpfs "
                      "on /tmp (docker run --tmpfs /tmp) or set TMPDIR to a writable folder"], result.stderr


def test_as_pid_1_of_a_container_sigterm_drains_and_exits_0_within_the_grace(tmp_path):
    """A container without an init (no `--init`): `edge serve` is PID 1 of its PID namespace, which the
    kernel sends no signal it has no handler for, and which inherits every orphan of the namespace."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare (util-linux) for a PID namespace of its own")
    config = write_config(tmp_path, local_config(before="[server]\nworkers = 2\nshutdown_grace = \"5s\"\n"))
    node = NodeProcess(config, edge=("unshare", "--pid", "--fork", "--mount-proc", *EDGE))
    [supervisor] = node.worker_pids()  # unshare's one child: PID 1 inside
    try:
        ns_pids = next(line for line in Path(f"/proc/{supervisor}/status").read_text().splitlines()
                       if line.startswith("NSpid:"))
        assert ns_pids.split()[-1] == "1", ns_pids
        assert ServingNode(node).get("/tr:w-32/coffee.jpg")[0] == 200
        workers = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
        assert len(workers) == 2
        started = time.monotonic()
        os.kill(supervisor, signal.SIGTERM)
        assert node.process.wait(5 + 5) == 0  # the grace, and the supervisor's margin
        assert time.monotonic() - started < 5
        assert not [pid for pid in [supervisor, *workers] if Path(f"/proc/{pid}").exists()]
    finally:
        if node.process.poll() is None:  # unshare passes no signal on: its namespace ends with its PID 1
            os.kill(supervisor, signal.SIGKILL)
        node.stop()
