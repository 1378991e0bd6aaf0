"""`robust report`, `robust check` and `robust demo` (registered on the `robust` group)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from robustness.cli.common import (CONTEXT, SEED, InputError, device_option, domain_errors, output_path, quiet_option,
                                   renamed, resolve_device, same_file, setup, store_argument, store_option)
from basics.errors import BadInput, first_line
from basics.files import atomic_path

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
@click.option("--out", "out_dir", default="report", show_default=True, type=click.Path(file_okay=False),
              help="Folder for index.html, report.md, summary.json and figures/.")
@click.option("--models", default=None, help="Only these models (paths or file names, comma-separated).")
@click.option("--perturbations", default=None, help="Only these perturbations (comma-separated).")
@click.option("--format", "formats", default="html,md,json", show_default=True, help="Any of html, md, json.")
@quiet_option
@domain_errors
def report(store_arg: str | None, store: str | None, out_dir: str, models: str | None, perturbations: str | None,
           formats: str, quiet: bool) -> None:
    """Write the comparison report (HTML, Markdown, JSON, figures) from a results store."""
    setup(quiet)
    store = renamed(store, store_arg, "--store", "a positional STORE")
    from reports.records import load_records
    from reports.report import FORMATS, REPORT_FILES, write_report

    output_path(out_dir, "--out", "dir")
    fmts = tuple(f.strip() for f in formats.split(",") if f.strip())
    bad = [f for f in fmts if f not in FORMATS]
    if bad or not fmts:
        raise InputError(f"--format {bad[0] if bad else formats!r}: use any of {', '.join(FORMATS)}")
    for name in REPORT_FILES:  # the store may sit in the report folder, but not under a report file's name
        output_path(str(Path(out_dir) / name), "--out", inputs=(("store", _store(store)),))
    split = (lambda s: tuple(x.strip() for x in s.split(",") if x.strip()) if s else ())
    rec = load_records(_store(store), split(models), split(perturbations))
    summary = write_report(rec, out_dir, fmts)
    for line in summary["verdict"]:
        click.echo(f"- {line}")
    click.echo(f"\nreport: {Path(out_dir) / ('index.html' if 'html' in fmts else 'report.md')}")


@click.command(context_settings=CONTEXT)
@store_argument
@store_option
@click.option("--policy", default="robust.toml", show_default=True, type=click.Path(), help="TOML policy of rules.")
@click.option("--baseline", default=None, type=click.Path(), help="A baseline results store to compare against.")
@click.option("--junit", default=None, type=click.Path(dir_okay=False), help="Write JUnit XML here.")
@click.option("--markdown", default=None, type=click.Path(dir_okay=False), help="Write a Markdown job summary here.")
@click.option("--init", "init", is_flag=True, help="Write a starter policy derived from the store to --policy and exit.")
@quiet_option
@domain_errors
def check(store_arg: str | None, store: str | None, policy: str, baseline: str | None, junit: str | None,
          markdown: str | None, init: bool, quiet: bool) -> None:
    """The CI gate: apply a policy to a results store; exit 0 pass, 1 fail, 2 unusable input."""
    setup(True)
    from reports import check as gate

    store = renamed(store, store_arg, "--store", "a positional STORE")
    path = _store(store)
    inputs = (("store", path), ("baseline store", baseline)) + (() if init else (("policy", policy),))
    output_path(junit, "--junit", inputs=inputs)
    output_path(markdown, "--markdown", inputs=inputs)
    if junit and markdown and same_file(junit, markdown):
        raise InputError(f"--junit and --markdown name one file ({junit}): give two paths")
    if init:
        output_path(policy, "--policy", inputs=inputs)
        if Path(policy).exists():
            raise InputError(f"{policy}: already exists (pass another --policy to write a new one)")
        _atomic_write(policy, gate.starter_policy(path))
        click.echo(f"wrote {policy} (derived from {path}; it passes on it)")
        return
    t0 = time.perf_counter()
    try:
        outcomes = gate.check(path, policy, baseline)
    except BadInput as e:
        if junit:  # a dashboard should show why the gate could not run, not an absent report
            _atomic_write(junit, gate.junit_error(first_line(e), time.perf_counter() - t0))
        raise
    for o in outcomes:
        click.echo(o.line())
    fails = sum(not o.passed for o in outcomes)
    click.echo(f"\n{len(outcomes) - fails} passed, {fails} failed")
    if junit:
        _atomic_write(junit, gate.junit(outcomes, time.perf_counter() - t0))
    if markdown:
        _atomic_write(markdown, gate.markdown(outcomes))
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
