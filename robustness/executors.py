"""Where units of work run: in this process (`local`) or as Ray tasks (`ray`).

A unit is independent of every other (a level's draws of one model/mode/perturbation, or
a chunk of slice points) and returns rows; the driver alone writes them to the store as
they arrive, so the store is crash-safe and resumable whichever executor ran them. Large
inputs the units share (network tensors, test data) go through `share`: Ray puts each in
its object store once, not once per task.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from basics.errors import BadInput, first_line

EXECUTORS = ("local", "ray")
RETRIES = 2  # a failing Ray task runs at most 1 + RETRIES times before it is recorded as failed


@dataclass(frozen=True)
class Unit:
    """One unit of work: `fn(*args)`; `name` identifies it in failure records."""

    name: str
    fn: Callable
    args: tuple


@dataclass(frozen=True)
class Failed:
    """A unit that raised on every attempt."""

    error: str
    attempts: int


class LocalExecutor:
    """In this process, one unit after another (torch threads use the cores)."""

    name = "local"

    def share(self, obj: Any) -> Any:
        return obj

    def map(self, units: Iterable[Unit]) -> Iterator[tuple[Unit, Any]]:
        for u in units:
            yield u, u.fn(*u.args)

    def close(self) -> None:
        pass


def _call(fn: Callable, kernel: str, *args: Any) -> Any:
    # Ray resolves object references given as top-level arguments before calling.
    from models import native

    native.KERNEL.set_mode(kernel)  # the driver's --compile / --no-compile choice
    return fn(*args)


class RayExecutor:
    """Ray tasks, on a local instance or the cluster at `address` ('auto': the running one).

    Results come back as tasks finish. A task that raises is retried RETRIES times, then
    yielded as `Failed`; closing the executor (or Ctrl-C in `map`) cancels what is left.
    """

    name = "ray"

    def __init__(self, address: str | None = None, retries: int = RETRIES, num_gpus: float = 0.0):
        check_address(address)
        try:
            import ray
        except ImportError:
            raise BadInput("--executor ray needs Ray: pip install 'robust-snn[ray]' (or pip install ray)") from None
        self.ray = ray
        self.started = False
        if not ray.is_initialized():
            try:
                ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING,
                         log_to_driver=False, configure_logging=True,
                         runtime_env={"env_vars": {"PYTHONWARNINGS": "ignore"}})
            except Exception as e:  # Ray raises ConnectionError, RuntimeError, ValueError, TimeoutError, ...
                raise BadInput(f"--address {address or '(local)'}: Ray could not start or join a cluster "
                               f"({first_line(e)[:200]})") from None
            self.started = True
        self.retries = retries
        self._remote = ray.remote(num_cpus=1, num_gpus=num_gpus, max_retries=retries, retry_exceptions=True)(_call)
        self._shared: dict[int, tuple[Any, Any]] = {}
        self._pending: dict[Any, Unit] = {}

    def share(self, obj: Any) -> Any:
        """An object reference for `obj`, put in the object store once."""
        hit = self._shared.get(id(obj))
        if hit is None or hit[0] is not obj:
            hit = (obj, self.ray.put(obj))
            self._shared[id(obj)] = hit  # keeping obj alive keeps its id unique
        return hit[1]

    def map(self, units: Iterable[Unit]) -> Iterator[tuple[Unit, Any]]:
        ray = self.ray
        from models import native

        self._pending = {self._remote.remote(u.fn, native.KERNEL.mode, *u.args): u for u in units}
        try:
            while self._pending:
                try:
                    done, _ = ray.wait(list(self._pending), num_returns=1)
                except Exception as e:  # the cluster itself went away (a killed raylet or head)
                    raise BadInput(f"the Ray cluster stopped answering ({first_line(e)[:200]}); stored cells are "
                                   f"kept: rerun to resume") from None
                for ref in done:
                    u = self._pending.pop(ref)
                    try:
                        out = ray.get(ref)
                    except ray.exceptions.RayError as e:
                        out = Failed(_cause(e), 1 + self.retries)
                    yield u, out
        finally:
            self.cancel()

    def cancel(self) -> None:
        for ref in self._pending:
            self.ray.cancel(ref, force=True)
        self._pending = {}

    def close(self) -> None:
        self.cancel()
        self._shared.clear()
        if self.started:
            self.ray.shutdown()


CONNECT_TIMEOUT = 5.0  # seconds to wait for a cluster address to answer before saying nothing is there


def check_address(address: str | None) -> None:
    """`auto`, `HOST:PORT` or `ray://HOST:PORT`, and something listening there: Ray itself
    retries an unanswered address for minutes, and reports a malformed one with a traceback."""
    if address in (None, "", "auto", "local"):
        return
    text = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = text.rpartition(":")
    if not sep or not host or "/" in host or " " in text or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadInput(f"--address {address!r}: give auto, HOST:PORT or ray://HOST:PORT (e.g. 10.0.0.5:6379)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as e:
        raise BadInput(f"--address {address}: nothing answers there within {CONNECT_TIMEOUT:g} s "
                       f"({e.strerror or e}); is the Ray head running (`ray start --head`)?") from None


def _cause(e: BaseException) -> str:
    """The user-facing line of a task's error (Ray wraps the original exception)."""
    inner = getattr(e, "cause", None) or e
    text = f"{type(inner).__name__}: {inner}".strip()
    return text.splitlines()[0][:300]


def make_executor(name: str, address: str | None = None, device: str = "cpu") -> LocalExecutor | RayExecutor:
    if name == "local":
        if address:
            raise BadInput("--address is for --executor ray")
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address or os.environ.get("RAY_ADDRESS") or None,
                           num_gpus=1.0 if str(device).startswith("cuda") else 0.0)
    raise BadInput(f"--executor {name!r}: use one of {', '.join(EXECUTORS)}")
