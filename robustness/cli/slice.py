"""`robust slice`: loss-landscape slices and their smoothness (registered on the `robust` group)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from robustness.cli.common import (COUNT, CONTEXT, MC_SAMPLES, NON_NEGATIVE, SEED, InputError, compile_option,
                                   data_dir_option, device_option, domain_errors, executor_options, output_path,
                                   quiet_option, renamed, report_failures, resolve_device, set_kernel, setup,
                                   store_option)
from robustness.seed_sets import expand_models


def _span(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        raise InputError(f"--span must be START:STOP, e.g. -1:1, got {text!r}") from None
    return lo, hi


@click.command("slice", context_settings=CONTEXT)
@click.option("--model", "models", type=click.Path(), multiple=True,
              help="Checkpoint, seed set (OUT.seeds.json) or glob; repeatable (shared directions).")
@click.option("--between", nargs=2, type=click.Path(), default=None,
              help="Slice the straight line from checkpoint A (a=0) to B (a=1) instead.")
@click.option("--dims", type=int, default=1, show_default=True, help="1: a line; 2: a plane.")
@click.option("--direction", default="filter", show_default=True,
              help="unit | filter (Li et al. 2018) | layer | hessian (top eigenvectors) | posterior (IVON sigma*eps).")
@click.option("--span", default=None, help="START:STOP of the coordinate a [-1:1; -0.5:1.5 with --between].")
@click.option("--points", type=int, default=41, show_default=True, help="Points per axis.")
@click.option("--directions", type=COUNT, default=8, show_default=True, help="Directions (planes) per model.")
@click.option("--batches", type=COUNT, default=4, show_default=True, help="Fixed, seeded minibatches the loss is on.")
@click.option("--batch-size", type=COUNT, default=128, show_default=True)
@click.option("--split", type=click.Choice(["train", "validation", "test"]), default="train", show_default=True)
@click.option("--mc-samples", type=MC_SAMPLES, default=10, show_default=True, help="M posterior samples for bma.")
@click.option("--bn", type=click.Choice(["mean", "recalibrate"]), default="mean", show_default=True,
              help="BMA: stored BN statistics (as the other curves) or re-estimated per sample and point (slow).")
@click.option("--include-bn", is_flag=True, help="Also move BatchNorm scale/shift and the readout bias.")
@click.option("--modes", default=None, help="Restrict to modes, e.g. mean,bma [every mode of each model].")
@click.option("--sigmoid-control", "sigmoid", type=NON_NEGATIVE, default=0.0,
              help="Add mode `sigmoid`: the network with sigmoid((v - v_th) / T) instead of spikes, at temperature T.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seeds directions, batches, posterior draws.")
@data_dir_option
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
    from robustness.slicing.run import SliceConfig, run_slice
    from robustness.store.database import default_path

    cfg = SliceConfig(models=expand_models(f["models"]), between=tuple(f["between"]) if f["between"] else None,
                      dims=f["dims"], direction=f["direction"], span=_span(f["span"]), points=f["points"],
                      directions=f["directions"], batches=f["batches"], batch_size=f["batch_size"], split=f["split"],
                      mc_samples=f["mc_samples"], sigmoid=f["sigmoid"], bn=f["bn"], include_bn=f["include_bn"],
                      modes=tuple(m.strip() for m in f["modes"].split(",")) if f["modes"] else None,
                      seed=f["seed"], data_dir=f["data_dir"])
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
