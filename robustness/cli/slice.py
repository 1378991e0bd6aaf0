"""`robust slice`: loss-landscape slices and their smoothness (registered on the `robust` group)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from robustness.cli.common import (CONTEXT, compile_option, device_option, domain_errors, executor_options,
                                   output_path, quiet_option, renamed, report_failures, resolve_device, schema_options,
                                   set_kernel, setup, store_option)
from basics.schema import build, fields, help_order
from robustness.seed_sets import expand_models
from robustness.slicing.config import SliceConfig


@click.command("slice", context_settings=CONTEXT)
@schema_options(help_order(fields(SliceConfig)))
@device_option
@compile_option
@executor_options
@store_option
@click.option("--out", default=None, hidden=True)  # old name of --store
@click.option("--json", "as_json", is_flag=True, help="Print the smoothness table as JSON.")
@quiet_option
@domain_errors
def slice_command(**f: Any) -> None:
    """Loss and accuracy along lines/planes in weight space, and how smooth they are."""
    setup(f["quiet"])
    set_kernel(f["compile"])
    from reports.slices import format_slices, summarize_slices
    from robustness.slicing.run import run_slice
    from robustness.store.database import default_path

    cfg = build(SliceConfig, f, models=expand_models(f["models"]))
    from robustness.executors import make_executor

    inputs = tuple(("checkpoint", m) for m in (*cfg.models, *(cfg.between or ())))
    given = renamed(f["store"], f["out"], "--store", "--out (the store)")
    store = output_path(given, "--store", inputs=inputs) or output_path(default_path(), "the store", inputs=inputs)
    device = resolve_device(f["device"])
    command = " ".join(["robust", *sys.argv[1:]])
    executor = make_executor(f["executor"], f["address"], str(device))
    try:
        res = run_slice(cfg, store, device=device, progress=not f["quiet"], command=command, executor=executor)
    finally:
        executor.close()
    summary = summarize_slices(res.curves)
    if f["as_json"]:
        click.echo(json.dumps({"store": store, "slice": res.slice_id, "resumed": res.resumed,
                               "new_curves": res.new_curves, "notes": res.notes, "config": cfg.to_dict(),
                               **summary}, indent=2))
    else:
        click.echo(format_slices(summary, res.notes))
        click.echo(f"\n{res.new_curves} new curve(s) in {store} (slice {res.slice_id}"
                   f"{', resumed' if res.resumed else ''})")
    report_failures(res.failed, command)
