"""Pieces every `robust` command shares: one-line errors with exit code 2, common options."""

from __future__ import annotations

import functools
import logging
import sys
import warnings
from typing import Any, Callable

import click

from robustness.errors import BadInput

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class InputError(click.ClickException):
    exit_code = 2


class RobustGroup(click.Group):
    """Every error becomes one line on stderr with exit code 2 (usage errors included)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # type: ignore[override]
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name or "robust", complete_var, False, **extra)
        except click.exceptions.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(130)
        except click.ClickException as e:
            click.echo(f"Error: {e.format_message()}", err=True)
            sys.exit(2 if isinstance(e, click.UsageError) else e.exit_code)
        except (BadInput, ValueError) as e:
            click.echo(f"Error: {first_line(e)}", err=True)
            sys.exit(2)
        sys.exit(rv if isinstance(rv, int) else 0)


def first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


def domain_errors(fn: Callable) -> Callable:
    """Turn the library's input errors (checkpoint errors included) into one-line click
    errors with exit code 2."""

    @functools.wraps(fn)
    def wrapper(*a: Any, **kw: Any) -> Any:
        try:
            return fn(*a, **kw)
        except BadInput as e:
            raise InputError(first_line(e)) from None
    return wrapper


def quiet_option(fn: Callable) -> Callable:
    return click.option("--quiet", "-q", is_flag=True, help="No progress bars or log lines.")(fn)


def device_option(fn: Callable) -> Callable:
    return click.option("--device", default="cpu", show_default=True,
                        help="Torch device: cpu, cuda, cuda:1, ...")(fn)


def data_dir_option(fn: Callable) -> Callable:
    return click.option("--data-dir", type=click.Path(), default=None,
                        help="Local folder of the dataset (overrides the checkpoint's).")(fn)


def resolve_device(name: str):
    import torch

    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r} (use cpu or cuda)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda requested but CUDA is not available on this machine")
    return dev


def setup(quiet: bool) -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)  # norse's jit deprecation notice
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stderr)


def executor_options(fn: Callable) -> Callable:
    """--executor and --address: where the units of a sweep or slice run."""
    fn = click.option("--address", default=None,
                      help="With --executor ray: the cluster to join (auto = the running one, or HOST:PORT) "
                           "[a local Ray instance; $RAY_ADDRESS].")(fn)
    return click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                        help="Run units in this process, or as Ray tasks (pip install 'robust-snn[ray]').")(fn)


def report_failures(failed: list[dict], command: str) -> None:
    """Units that failed on every attempt: one line each, then exit 1 (the run is unfinished)."""
    if not failed:
        return
    for f in failed:
        click.echo(f"FAILED {f['unit']} after {f['attempts']} attempt(s): {f['error']}", err=True)
    click.echo(f"{len(failed)} unit(s) failed and are recorded in the store; rerun `{command}` to retry them.",
               err=True)
    sys.exit(1)
