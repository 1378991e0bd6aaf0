"""SIGKILL a `robust` command at chosen points of its progress, then let it finish: the
shared loop of the kill-and-resume tests (sweep, slice, Ray driver)."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable



def _env() -> dict:
    # read at call time: a Ray instance started by the test sets what its drivers need
    return {**os.environ, "PYTHONWARNINGS": "ignore"}


def count_rows(table: str) -> Callable[[Path], int]:
    def count(db: Path) -> int:
        if not db.exists():
            return 0
        try:
            with sqlite3.connect(str(db), timeout=1) as c:
                return c.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        except sqlite3.Error:  # not created yet, or mid-transaction
            return 0
    return count


def kill_at(args: list[str], db: Path, count: Callable[[Path], int], targets: list[int],
            timeout: float = 180) -> list[int]:
    """Run `python -m robustness.cli ARGS --store DB` once per target and SIGKILL it as soon as
    `count(db)` reaches the target; returns the count found after each kill."""
    found = []
    for target in targets:
        proc = subprocess.Popen([sys.executable, "-m", "robustness.cli", *args, "--store", str(db)], env=_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + timeout
        while time.time() < deadline and proc.poll() is None and count(db) < target:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        found.append(count(db))
    return found


def run_to_end(args: list[str], db: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "robustness.cli", *args, "--store", str(db)], env=_env(),
                          capture_output=True, text=True)
