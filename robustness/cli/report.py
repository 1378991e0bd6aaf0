"""`robust report`, `robust check` and `robust demo` (registered on the `robust` group)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from robustness.cli.common import (CONTEXT, SEED, InputError, device_option, domain_errors, output_path, quiet_option,
                                   renamed, resolve_device, same_file, schema_options, setup, store_argument,
                                   store_option)
from basics.errors import BadInput, first_line
from basics.files import atomic_path
from basics.schema import build, fields
from reports.options import CheckOptions, ReportOptions

FAST_EPOCHS, FAST_MINUTES = 3, "under a minute"  # robustness.cli.demo.FAST; `time robust demo --fast`: 35 s, 2 cores


def _atomic_write(path: str, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def _store(store: str | None) -> str:
    from robustness.store.database import default_path

    return store or default_path()


@click.command(context_settings=CONTEXT)
@store_argument
@store_option
@schema_options(fields(ReportOptions))
@quiet_option
@domain_errors
def report(store_arg: str | None, store: str | None, quiet: bool, **options: Any) -> None:
    """Write the comparison report (HTML, Markdown, JSON, figures) from a results store."""
    setup(quiet)
    store = renamed(store, store_arg, "--store", "a positional STORE")
    from reports.records import load_records
    from reports.report import REPORT_FILES, write_report

    opts = build(ReportOptions, options)
    output_path(opts.out, "--out", "dir")
    for name in REPORT_FILES:  # the store may sit in the report folder, but not under a report file's name
        output_path(str(Path(opts.out) / name), "--out", inputs=(("store", _store(store)),))
    rec = load_records(_store(store), opts.models or (), opts.perturbations or ())
    summary = write_report(rec, opts.out, opts.formats)
    for line in summary["verdict"]:
        click.echo(f"- {line}")
    click.echo(f"\nreport: {Path(opts.out) / ('index.html' if 'html' in opts.formats else 'report.md')}")


@click.command(context_settings=CONTEXT)
@store_argument
@store_option
@schema_options(fields(CheckOptions))
@quiet_option
@domain_errors
def check(store_arg: str | None, store: str | None, quiet: bool, **options: Any) -> None:
    """The CI gate: apply a policy to a results store; exit 0 pass, 1 fail, 2 unusable input."""
    setup(True)
    from reports import check as gate

    opts = build(CheckOptions, options)
    store = renamed(store, store_arg, "--store", "a positional STORE")
    path = _store(store)
    inputs = (("store", path), ("baseline store", opts.baseline)) + (() if opts.init else (("policy", opts.policy),))
    output_path(opts.junit, "--junit", inputs=inputs)
    output_path(opts.markdown, "--markdown", inputs=inputs)
    if opts.junit and opts.markdown and same_file(opts.junit, opts.markdown):
        raise InputError(f"--junit and --markdown name one file ({opts.junit}): give two paths")
    if opts.init:
        output_path(opts.policy, "--policy", inputs=inputs)
        if Path(opts.policy).exists():
            raise InputError(f"{opts.policy}: already exists (pass another --policy to write a new one)")
        _atomic_write(opts.policy, gate.starter_policy(path))
        click.echo(f"wrote {opts.policy} (derived from {path}; it passes on it)")
        return
    t0 = time.perf_counter()
    try:
        outcomes = gate.check(path, opts.policy, opts.baseline)
    except BadInput as e:
        if opts.junit:  # a dashboard should show why the gate could not run, not an absent report
            _atomic_write(opts.junit, gate.junit_error(first_line(e), time.perf_counter() - t0))
        raise
    for o in outcomes:
        click.echo(o.line())
    fails = sum(not o.passed for o in outcomes)
    click.echo(f"\n{len(outcomes) - fails} passed, {fails} failed")
    if opts.junit:
        _atomic_write(opts.junit, gate.junit(outcomes, time.perf_counter() - t0))
    if opts.markdown:
        _atomic_write(opts.markdown, gate.markdown(outcomes))
    if fails:
        raise SystemExit(1)


@click.command(context_settings=CONTEXT)
@click.option("--fast", is_flag=True, help=f"A smoke test of every step: a 64-64 network, {FAST_EPOCHS} epochs on "
              f"800 clips, fewer levels, chips and points (the numbers mean little; {FAST_MINUTES} on 2 cores).")
@click.option("--out", "out", type=click.Path(file_okay=False), default=None,
              help="Folder for the checkpoints, the store and report/ [runs/demo].")
@click.option("--out-dir", "out_dir", type=click.Path(file_okay=False), default=None, hidden=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
@device_option
@quiet_option
@domain_errors
def demo(fast: bool, out: str | None, out_dir: str | None, seed: int, device: str, quiet: bool) -> None:
    """Train Adam and IVON on the built-in corpus, sweep, slice, and write the report."""
    setup(quiet)
    from robustness.cli.demo import run_demo

    out_dir = renamed(out, out_dir, "--out", "--out-dir") or "runs/demo"
    output_path(out_dir, "--out", "dir")
    res = run_demo(Path(out_dir), fast=fast, seed=seed, device=resolve_device(device), progress=not quiet,
                   log=click.echo)
    click.echo("\nverdict:")
    for line in res["verdict"]:
        click.echo(f"- {line}")
    click.echo(f"\nreport: {res['report']}")
