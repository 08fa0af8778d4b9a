#!/usr/bin/env python3
"""The quick start's two commands, on a machine that has only python3:

    python3 dev.py serve    # install into ./.venv if needed, then run the node on the embedded default
    python3 dev.py test     # install into ./.venv if needed, then run the whole test suite

Extra arguments go to `edge serve` or to pytest. Without them, `test` runs the suite in two: the tests that share
the cores well on two processes (pytest-xdist), then those marked `serial` alone (tests/conftest.py).
"""

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".installed"


def ensure_installed() -> None:
    if sys.version_info < (3, 11):
        sys.exit("edge needs Python 3.11 or newer")
    wanted = hashlib.sha256((ROOT / "setup.cfg").read_bytes() + (ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        try:
            venv.create(VENV, with_pip=True)
        except (subprocess.CalledProcessError, OSError):
            shutil.rmtree(VENV, ignore_errors=True)
            if os.geteuid() == 0 and shutil.which("apt-get"):  # Debian's python3 ships venv separately
                subprocess.run(["apt-get", "install", "-y", "-q", "python3-venv"], check=True)
                venv.create(VENV, with_pip=True)
            else:
                sys.exit("cannot create a virtualenv: install python3-venv (Debian/Ubuntu) and try again")
    subprocess.run([BIN / "python", "-m", "pip", "install", "-q", "-e", f"{ROOT}[test,faces]"], check=True)
    STAMP.write_text(wanted)


def main() -> int:
    command, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if command not in ("serve", "test"):
        print(__doc__, file=sys.stderr)
        return 2
    ensure_installed()
    os.chdir(ROOT)
    if command == "serve":
        os.execv(BIN / "edge", [str(BIN / "edge"), "serve", *args])
    pytest = [str(BIN / "python"), "-m", "pytest"]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1  # macOS has none
    if args or cores < 2:
        os.execv(pytest[0], [*pytest, *args])
    # the whole suite: the tests that share the cores well on two processes, then those that measure time or
    # memory alone (tests/conftest.py, SERIAL_FILES); a file's tests on one process, its fixtures shared
    shared = subprocess.run([*pytest, "-n", "2", "--dist", "loadfile", "-m", "not serial"])
    alone = subprocess.run([*pytest, "-m", "serial"])
    return shared.returncode or alone.returncode


if __name__ == "__main__":
    sys.exit(main())
