"""How many cores this process may use: what `workers = 0`, `transform_threads = 0` and the origins'
thread pools count.

`os.cpu_count()` is the machine's count. A container (`docker run --cpus 2`, a Kubernetes CPU limit),
a systemd unit (`CPUQuota=`, `AllowedCPUs=`) or `taskset` gives the node fewer: counting the machine's
cores there starts 64 workers of 64 render threads each on a 64-core host limited to 2 cores, and the
memory they hold gets the container killed. So, as container-aware runtimes do (the JVM, Go's
automaxprocs, .NET), the count is the smallest of the machine's cores, the CPU affinity mask and the
cgroup CPU quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`, on this process's cgroup
and each parent up to the hierarchy's root), a quota rounded up (1.5 cores count 2).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class UsableCores:
    count: int
    #: what set the count, for the startup log
    source: str


def usable_cores(root: Path = Path("/")) -> UsableCores:
    """The cores this process may use; `root`: where `/proc` and the cgroup mounts are found (tests)."""
    machine = os.cpu_count() or 1
    candidates = [UsableCores(machine, f"the machine's {machine} cores")]
    affinity = len(os.sched_getaffinity(0))
    if affinity < machine:
        candidates.append(UsableCores(affinity, f"CPU affinity: {affinity} of the machine's {machine} cores"))
    quota = cgroup_cpu_quota(root)
    if quota is not None:
        candidates.append(quota)
    return min(candidates, key=lambda cores: cores.count)


def cgroup_cpu_quota(root: Path = Path("/")) -> UsableCores | None:
    """The smallest CPU quota of this process's cgroups, in whole cores, or None where none is set or
    none can be read (no cgroups, an unmounted hierarchy: then the quota does not limit us either)."""
    try:
        memberships = (root / "proc/self/cgroup").read_text().splitlines()
        mounts = _cgroup_mounts((root / "proc/self/mountinfo").read_text())
    except OSError:
        return None
    quotas = []
    for line in memberships:
        _, controllers, path = line.split(":", 2)
        version = "cgroup2" if controllers == "" else "cpu" if "cpu" in controllers.split(",") else None
        if version is None or version not in mounts:
            continue
        mount_root, mount_point = mounts[version]
        # the mount shows the hierarchy from `mount_root` down (a container sees its own cgroup as "/")
        inside = Path(path).relative_to(mount_root) if Path(path).is_relative_to(mount_root) else Path()
        folder = root / mount_point.relative_to("/") / inside
        top = root / mount_point.relative_to("/")
        while True:
            quota = _quota_in(folder, version)
            if quota is not None:
                quotas.append(quota)
            if folder == top:
                break
            folder = folder.parent
    return min(quotas, key=lambda cores: cores.count, default=None)


def _cgroup_mounts(mountinfo: str) -> dict[str, tuple[Path, Path]]:
    """"cgroup2" and "cpu" (the v1 hierarchy with the cpu controller) → (mount root, mount point)."""
    mounts = {}
    for line in mountinfo.splitlines():
        fields, _, after = line.partition(" - ")
        fields, after = fields.split(), after.split()
        if len(fields) < 5 or len(after) < 3:
            continue
        fs_type, options = after[0], after[2].split(",")
        if fs_type == "cgroup2":
            mounts.setdefault("cgroup2", (Path(fields[3]), Path(fields[4])))
        elif fs_type == "cgroup" and "cpu" in options:
            mounts.setdefault("cpu", (Path(fields[3]), Path(fields[4])))
    return mounts


def _quota_in(folder: Path, version: str) -> UsableCores | None:
    try:
        if version == "cgroup2":
            file = folder / "cpu.max"
            quota, period = file.read_text().split()
            if quota == "max":
                return None
        else:
            file = folder / "cpu.cfs_quota_us"
            quota, period = file.read_text().strip(), (folder / "cpu.cfs_period_us").read_text().strip()
        quota_us, period_us = int(quota), int(period)
    except (OSError, ValueError):
        return None
    if quota_us <= 0 or period_us <= 0:  # v1: -1 is no quota
        return None
    cores = max(1, math.ceil(quota_us / period_us))
    return UsableCores(cores, f"cgroup CPU quota {quota_us}/{period_us} µs in {file}")
