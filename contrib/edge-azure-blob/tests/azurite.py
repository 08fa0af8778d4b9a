"""The Azurite emulator (from npm) for the tests: installed once into a cache folder, started on a free
loopback port, stopped afterwards. Where npm is missing or cannot install it, the tests are skipped."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest

AZURITE_VERSION = "3.37.0"
#: Azurite's well-known development account (public, documented by Microsoft; not a secret)
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
INSTALL_TIMEOUT = 600
START_TIMEOUT = 60
STOP_GRACE = 3


def cache_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edge-azure-blob" / f"azurite-{AZURITE_VERSION}"


def installed_azurite() -> Path:
    """`azurite-blob` from the cache folder, installed with npm first if needed (or skip the tests)."""
    folder = cache_folder()
    program = folder / "node_modules" / ".bin" / "azurite-blob"
    if program.exists():
        return program
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip("npm and node are not installed: the Azure Blob tests need the Azurite emulator from npm")
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(folder),
                           f"azurite@{AZURITE_VERSION}"], capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    if done.returncode != 0 or not program.exists():
        pytest.skip(f"npm could not install azurite@{AZURITE_VERSION}: {done.stderr.strip()[-300:]}")
    return program


def _die_with_parent() -> None:
    """Linux: the emulator gets SIGKILL when the test process dies, however it dies."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Azurite:
    """`azurite-blob` on 127.0.0.1, its data in `location`."""

    def __init__(self, location: Path):
        program = installed_azurite()
        self.process = subprocess.Popen(
            [str(program), "--blobHost", "127.0.0.1", "--blobPort", "0", "--location", str(location),
             "--skipApiVersionCheck", "--disableProductStyleUrl"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
            preexec_fn=_die_with_parent)
        self.port = self._wait_for_port()
        self.account_url = f"http://127.0.0.1:{self.port}/{ACCOUNT_NAME}"
        threading.Thread(target=self._drain, daemon=True).start()

    def _wait_for_port(self) -> int:
        found: list[int] = []

        def read() -> None:
            for line in self.process.stdout:
                if match := re.search(r"(?:listens on|listening at) http://127\.0\.0\.1:(\d+)", line):
                    found.append(int(match.group(1)))
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(START_TIMEOUT)
        if not found:
            self.stop()
            raise RuntimeError(f"azurite-blob did not start within {START_TIMEOUT}s")
        return found[0]

    def _drain(self) -> None:
        for _ in self.process.stdout:
            pass

    def stop(self) -> None:
        """SIGTERM; SIGKILL after a few seconds (Azurite takes its time closing, and its data is thrown away)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(STOP_GRACE)
