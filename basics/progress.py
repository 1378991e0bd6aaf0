"""Progress on stderr: a tqdm bar on a terminal, a plain line every 25 s in logs.

CI logs and batch jobs have no terminal; a carriage-return bar there is one unreadable
line, and silence looks like a hang. So off a terminal we print `desc: n/total unit
(elapsed)` lines every PLAIN_INTERVAL seconds, from a daemon thread, so that a single long
step (one slice curve, one training epoch) does not leave the log silent.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Iterable, Iterator

from tqdm import tqdm

PLAIN_INTERVAL = 25.0  # seconds between plain lines: under the 30 s a log may stay silent


class PlainProgress:
    """The part of tqdm's interface the harness uses, printing plain lines."""

    def __init__(self, iterable: Iterable | None, total: int | None, desc: str, unit: str):
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n = 0
        self.postfix = ""
        self.start = self.last = time.monotonic()
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            self.total = len(iterable)  # type: ignore[arg-type]
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(max(PLAIN_INTERVAL, 0.01)):
            now = time.monotonic()
            if now - self.last >= PLAIN_INTERVAL:
                self.last = now
                self._line(now)

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable or ():
                yield item
                self.update(1)
        finally:
            self._stop.set()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= PLAIN_INTERVAL:
            self.last = now
            self._line(now)

    def set_postfix(self, **kw: Any) -> None:
        self.postfix = " ".join(f"{k}={v}" for k, v in kw.items())

    def _line(self, now: float) -> None:
        of = f"/{self.total}" if self.total is not None else ""
        extra = f" {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.n}{of} {self.unit} ({now - self.start:.0f} s){extra}", file=sys.stderr, flush=True)

    def close(self) -> None:
        self._stop.set()
        if self.n and time.monotonic() - self.start >= PLAIN_INTERVAL:
            self._line(time.monotonic())


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str, unit: str,
             enabled: bool = True) -> Any:
    """A progress bar over `iterable` (or updated by hand up to `total`); silent when not `enabled`."""
    if enabled and not sys.stderr.isatty():
        return PlainProgress(iterable, total, desc, unit)
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, disable=not enabled)
