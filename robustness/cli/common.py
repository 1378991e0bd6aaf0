"""Pieces every `robust` command shares: one-line errors with exit code 2, common options."""

from __future__ import annotations

import errno
import functools
import logging
import math
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import click

from basics.errors import BadInput, first_line
from basics.files import NAME_MAX
from basics.ranges import out_of_bounds
from basics.schema import DATA_DIR_HELP, SEED_MAX, Field, fields
from robustness.sweep.config import SweepRuntime

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
# OS errors that come from the paths and the machine a user gives, not from a bug: one line, exit 2.
USER_ERRNOS = {errno.ENAMETOOLONG, errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM,
               errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ELOOP}
PATH_MAX = 4096  # bytes in a whole path (Linux)


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
        except BadInput as e:  # only the library's own input errors: any other exception is a bug
            click.echo(f"Error: {first_line(e)}", err=True)
            sys.exit(2)
        except OSError as e:
            if e.errno not in USER_ERRNOS:
                raise
            # the machine refused a path the user gave (too long, no space, read-only, denied)
            where = f"{e.filename}: " if e.filename else ""
            click.echo(f"Error: {where}{e.strerror or e}", err=True)
            sys.exit(2)
        sys.exit(rv if isinstance(rv, int) else 0)


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


def renamed(new_value: Any, old_value: Any, new: str, old: str) -> Any:
    """The value of an option given under its shared name `new` or its old spelling `old`
    (kept for scripts, with a deprecation line on stderr); both, differing: refused."""
    if old_value is None or old_value == ():
        return new_value
    click.echo(f"warning: {old} is deprecated here; use {new} (the same meaning)", err=True)
    if new_value not in (None, ()) and new_value != old_value:
        raise InputError(f"{new} {new_value} and {old} {old_value}: give one")
    return old_value


def given_model(model: str | None, model_arg: str | None, missing: str) -> str:
    """The checkpoint of posterior or export-nir, from --model or the deprecated positional
    MODEL; `missing` is the one-line error when neither is given."""
    model = renamed(model, model_arg, "--model", "a positional MODEL")
    if model is None:
        raise InputError(missing)
    return model


def store_option(fn: Callable) -> Callable:
    """--store: the results store a command reads or writes, under one name in every command."""
    return schema_options(runtime_fields("store"))(fn)


def store_argument(fn: Callable) -> Callable:
    """The old positional STORE of report, check and export (deprecated: --store)."""
    return click.argument("store_arg", metavar="[STORE]", required=False)(fn)


def model_argument(fn: Callable) -> Callable:
    """The old positional MODEL of posterior and export-nir (deprecated: --model)."""
    fn = click.argument("model_arg", metavar="[MODEL]", required=False, type=click.Path())(fn)
    return click.option("--model", "model", default=None, type=click.Path(), help="Checkpoint (.pt).")(fn)


def quiet_option(fn: Callable) -> Callable:
    return click.option("--quiet", "-q", is_flag=True, help="No progress bars or log lines.")(fn)


def device_option(fn: Callable) -> Callable:
    return schema_options(runtime_fields("device"))(fn)


def data_dir_option(fn: Callable = None, *, help: str = DATA_DIR_HELP) -> Callable:
    """--data-dir; commands with no checkpoint to override pass their own help."""
    def deco(f: Callable) -> Callable:
        return click.option("--data-dir", type=click.Path(), default=None, help=help)(f)
    return deco(fn) if fn is not None else deco


class Number(click.ParamType):
    """An int or a finite float within bounds (NaN and inf refused): one-line usage error
    for anything else, so a wrong value never runs with a wrong meaning."""

    def __init__(self, integer: bool = True, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False):
        self.integer, self.low, self.high, self.low_open, self.high_open = integer, low, high, low_open, high_open
        self.name = "integer" if integer else "float"

    def convert(self, value, param, ctx):
        if isinstance(value, bool):
            self.fail(f"{value!r} is not a number", param, ctx)
        try:
            v = int(value) if self.integer and not isinstance(value, float) else float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not {'an integer' if self.integer else 'a number'}", param, ctx)
        if self.integer and isinstance(value, float) and not float(value).is_integer():
            self.fail(f"{value!r} is not an integer", param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        why = out_of_bounds(v, self.low, self.high, self.low_open, self.high_open)
        if why:
            self.fail(f"{value!r} {why}", param, ctx)
        return int(v) if self.integer else v


COUNT = Number(integer=True, low=1)  # sizes, counts, epochs
SEED = Number(integer=True, low=0, high=SEED_MAX)
POSITIVE = Number(integer=False, low=0.0, low_open=True)
DEVICE_TYPES = ("cpu", "cuda", "mps")


def resolve_device(name: str):
    import torch

    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r} (use cpu or cuda)") from None
    if dev.type not in DEVICE_TYPES:
        raise InputError(f"--device {name}: not a device robust runs on (cpu, cuda, cuda:N, mps)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError("--device mps requested but MPS is not available on this machine")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda requested but CUDA is not available on this machine")
    return dev


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file: by device and inode when both exist (links, other
    spellings), else by their resolved paths."""
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
        return os.path.realpath(a) == os.path.realpath(b)
    except OSError:
        return False


def output_path(path: str | None, flag: str, kind: str = "file",
                inputs: tuple[tuple[str, str | os.PathLike | None], ...] = ()) -> str | None:
    """Check, before any work starts, that `path` (a file, or with kind='dir' a folder)
    can be written: a one-line error otherwise, so that no result is lost at the end.

    `inputs` names the files the command reads, as (what, path): writing over one of them
    would destroy it, so an output that is one of them is refused."""
    if path is None:
        return None
    if not str(path).strip():
        raise InputError(f"{flag} '': an empty path")
    long = next((c for c in Path(path).parts if len(os.fsencode(c)) > NAME_MAX), None)
    if long is not None:
        raise InputError(f"{flag} {str(path)[:80]}...: a path component of {len(os.fsencode(long))} bytes (the file "
                         f"system allows {NAME_MAX})")
    if len(os.fsencode(os.path.abspath(path))) >= PATH_MAX:
        raise InputError(f"{flag} {str(path)[:80]}...: a path of {len(os.fsencode(os.path.abspath(path)))} bytes "
                         f"(the system allows {PATH_MAX - 1})")
    for what, given in inputs:
        if given is not None and str(given) and same_file(path, given):
            raise InputError(f"{flag} {path}: is the {what} this command reads ({given}); writing it would destroy "
                             f"it: give another path")
    p = Path(path)
    if kind == "file" and p.is_dir():
        raise InputError(f"{flag} {path}: is a directory, expected a file path")
    if kind == "dir" and p.exists() and not p.is_dir():
        raise InputError(f"{flag} {path}: exists and is not a directory")
    existing = p if kind == "dir" else p.parent
    existing = existing if str(existing) else Path(".")
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{flag} {path}: {existing} is a file, not a folder")
    try:  # the one reliable test of writability (permissions, read-only mounts, /proc)
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise InputError(f"{flag} {path}: cannot write in {existing} ({e.strerror or e})") from None
    if kind == "file" and p.exists() and not os.access(p, os.W_OK):
        raise InputError(f"{flag} {path}: the file is not writable")
    return str(path)


def setup(quiet: bool) -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)  # norse's jit deprecation notice
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stderr)


def executor_options(fn: Callable) -> Callable:
    """--executor and --address: where the units of a sweep, slice or training run."""
    return schema_options(runtime_fields("executor", "address"))(fn)


def report_failures(failed: list[dict], command: str) -> None:
    """Units that failed on every attempt: one line each, then exit 1 (the run is unfinished)."""
    if not failed:
        return
    for f in failed:
        click.echo(f"FAILED {f['unit']} after {f['attempts']} attempt(s): {f['error']}", err=True)
    click.echo(f"{len(failed)} unit(s) failed and are recorded in the store; rerun `{command}` to retry them.",
               err=True)
    sys.exit(1)


def compile_option(fn: Callable) -> Callable:
    """--compile / --no-compile: force the compiled LIF kernel on or off (default: decided by the work)."""
    return schema_options(runtime_fields("compile"))(fn)


def set_kernel(choice: bool | None) -> None:
    """Apply --compile / --no-compile to this process (None leaves $ROBUST_KERNEL or auto)."""
    if choice is None:
        return
    from models import native

    native.KERNEL.set_mode("native" if choice else "eager")
    if choice:
        native.KERNEL.library()  # build or load now: a forced kernel that cannot be had fails before any output exists


def schema_options(schema_fields: list[Field]) -> Callable:
    """Click options from schema fields, in their order: the flag, its type (a bounded
    `Number`, a `Choice`, a path), default and help all come from the field, so the command
    line takes what the config file takes."""
    def deco(fn: Callable) -> Callable:
        for f in reversed(schema_fields):
            o = f.opt
            decls = [f"{f.flag}/--no-{f.flag[2:]}" if o.kind == "switch" else f.flag, *([o.short] if o.short else []),
                     f.name]
            given = None if o.kind == "names" else f.default  # a comma list is a string on the command line
            given = o.text_default if o.text_default is not None else given
            kw: dict[str, Any] = {"default": given, "help": o.help or None, "hidden": o.hidden, "required": o.required,
                                  "show_default": o.show_default and f.default is not None and f.default is not False
                                  and f.default != ()}
            if o.kind == "flag":
                kw["is_flag"] = True
            elif o.kind == "multiple":
                kw["multiple"] = True
            if o.nargs > 1:
                kw["nargs"] = o.nargs
            if o.number is not None:
                kw["type"] = Number(integer=o.number == "int", low=o.low, high=o.high, low_open=o.low_open,
                                    high_open=o.high_open)
            elif o.choices is not None and o.kind != "names":
                kw["type"] = click.Choice(o.choices)
            elif o.path is not None:
                kw["type"] = click.Path(file_okay=o.path != "dir", dir_okay=o.path != "file")
            elif o.kind == "value":
                kw["type"] = click.STRING  # a word or a range its own parser reads (--seeds auto, --noise 0:1)
            fn = click.option(*decls, **kw)(fn)
        return fn
    return deco


def runtime_fields(*names: str) -> list[Field]:
    """The shared runtime options (device, kernel, executor, store) as the sweep's schema
    defines them, for the commands that take them too."""
    by_name = {f.name: f for f in fields(SweepRuntime)}
    return [by_name[n] for n in names]
