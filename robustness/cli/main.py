"""`robust` command line: thin commands that parse, build a config and call the library.

Exit codes: 0 ok, 1 a check failed, 2 bad input (one line on stderr, no traceback).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

import click

from robustness.cli.common import (COUNT, CONTEXT, InputError, RobustGroup, compile_option, data_dir_option,
                                   device_option, domain_errors, executor_options, given_model, model_argument,
                                   output_path, quiet_option, renamed, report_failures, resolve_device, schema_options,
                                   set_kernel, setup, store_argument, store_option)
from robustness.eval_config import EvalConfig, eval_fields
from robustness.train_options import TrainRequest, train_fields
from basics.schema import build
from robustness.sweep.config import sweep_fields


@click.group(cls=RobustGroup, context_settings=CONTEXT)
@click.version_option(package_name="robust-snn", prog_name="robust")
def cli() -> None:
    """Hardware-robustness evaluation of spiking neural networks on speech."""


@cli.command(context_settings=CONTEXT)
@schema_options(train_fields())
@device_option
@compile_option
@executor_options
@quiet_option
@domain_errors
def train(seeds: str | None, out: str, device: str, compile: bool | None, executor: str, address: str | None,
          quiet: bool, **options: Any) -> None:
    """Train the paper's SNN with Adam or IVON (or an Adam ensemble) and write a checkpoint
    (with --seeds, one per training seed)."""
    setup(quiet)
    set_kernel(compile)
    from robustness.training import train_to_checkpoint

    output_path(out, "--out", inputs=(("data", options["data_dir"]),))
    req = build(TrainRequest, options)
    data_dir, seed = req.data_dir, req.seed
    if seeds is None:
        if executor != "local" or address:
            raise InputError("--executor and --address run the members of --seeds; one training runs here")
        click.echo(train_to_checkpoint(req, out, device=resolve_device(device), progress=not quiet))
        return
    from basics.ranges import parse_levels
    from robustness.seed_sets import manifest_path, member_path, train_seed_set

    if seed != 0:
        raise InputError("give --seed or --seeds, not both")
    chosen = [int(s) for s in parse_levels(seeds, integer=True, name="--seeds")]
    for s in chosen:
        output_path(str(member_path(out, s)), "--out", inputs=(("data", data_dir),))
    output_path(str(manifest_path(out)), "--out")
    click.echo(train_seed_set(req, chosen, out, device=resolve_device(device), progress=not quiet,
                              executor=executor, address=address))


@cli.command("eval", context_settings=CONTEXT)
@schema_options(eval_fields())
@device_option
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@quiet_option
@domain_errors
def eval_cmd(models: tuple[str, ...], data_dir: str | None, device: str, as_json: bool, quiet: bool,
             **options: Any) -> None:
    """Accuracy, NLL, ECE, Brier, entropy (and for IVON: BMA with expected entropy and MI)."""
    setup(quiet)
    from robustness.seed_sets import expand_models
    from robustness.training import evaluate_checkpoints, format_table, results_file

    ecfg = build(EvalConfig, options)
    rows = evaluate_checkpoints(list(expand_models(models)), ecfg, data_dir=data_dir, device=resolve_device(device))
    click.echo(json.dumps(results_file(rows, ecfg), indent=2) if as_json else format_table(rows))


@cli.command(context_settings=CONTEXT)
@model_argument
@click.option("--json", "as_json", is_flag=True, help="Print the diagnosis as JSON.")
@quiet_option
@domain_errors
def posterior(model_arg: str | None, model: str | None, as_json: bool, quiet: bool) -> None:
    """What an IVON model's posterior is: sigma per tensor, how far it moved from hess_init, a verdict."""
    setup(True)
    from models.checkpoint import load_checkpoint
    from robustness.posterior_info import format_posterior, posterior_report

    model = given_model(model, model_arg, "give the IVON checkpoint: --model ivon.pt")
    d = posterior_report(load_checkpoint(model))
    click.echo(json.dumps(d, indent=2) if as_json else format_posterior(d))


@cli.command(context_settings=CONTEXT)
@schema_options(sweep_fields())
@click.option("--config", type=click.Path(), default=None, help="sweep.toml with any of these options.")
@click.option("--print-config", is_flag=True, help="Print the resolved configuration (TOML) and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@quiet_option
@click.pass_context
@domain_errors
def sweep(ctx: click.Context, **flags: Any) -> None:
    """Evaluate models under hardware perturbations at every level and seed; store every cell."""
    setup(flags["quiet"])
    from click.core import ParameterSource

    from robustness.store.database import default_path
    from reports.summary import format_summary, summarize
    from robustness.sweep.run import run_sweep
    from robustness.sweep.resolve import resolve, to_toml

    explicit = {k for k in flags if ctx.get_parameter_source(k) not in (ParameterSource.DEFAULT, None)}
    cfg, runtime = resolve(flags, explicit)
    if flags["print_config"]:
        click.echo(to_toml(cfg, runtime), nl=False)
        return
    threads = renamed(runtime.get("threads"), runtime.get("workers"), "--threads", "--workers (threads)")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    set_kernel(runtime.get("compile"))
    from robustness.executors import make_executor

    inputs = tuple(("checkpoint", m) for m in cfg.models) + (("config file", flags.get("config")),
                                                             ("checkpoint", cfg.sigma_from))
    given = renamed(runtime.get("store"), runtime.get("out"), "--store", "--out (the store)")
    store = output_path(given, "--store", inputs=inputs) or output_path(default_path(), "the store", inputs=inputs)
    device = resolve_device(runtime.get("device") or "cpu")
    command = " ".join(["robust", *sys.argv[1:]])
    executor = make_executor(runtime.get("executor") or "local", runtime.get("address"), str(device))
    try:
        res = run_sweep(cfg, store, device=device, progress=not flags["quiet"], command=command, executor=executor)
    finally:
        executor.close()
    curves = summarize(res.rows, res.curves, res.skipped, res.groups)
    if flags["as_json"]:
        click.echo(json.dumps({"store": store, "run": res.run_id, "resumed": res.resumed, "new_cells": res.new_cells,
                               "scored": res.scored,
                               "perturbed_tensors": [{"perturbation": p, "layer": l, "tensors": ts}
                                                     for (p, l), ts in res.touched.items()],
                               "curves": [c.to_dict() for c in curves]}, indent=2))
    else:
        click.echo(format_summary(curves))
        click.echo(f"scored on {'; '.join(res.scored)}")
        for (p, l), ts in res.touched.items():
            click.echo(f"{p}{' [' + l + ']' if l else ''} perturbs: {', '.join(ts) or 'nothing in scope'}")
        for p, meta in res.curves.items():
            if meta.effects:
                click.echo(f"{p}: {meta.effects}")
        click.echo(f"\n{res.new_cells} new cell(s) in {store} (run {res.run_id}{', resumed' if res.resumed else ''})")
    report_failures(res.failed, command)


@cli.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def perturbations(as_json: bool) -> None:
    """List every perturbation and hardware profile with its parameters and physical meaning."""
    from models.chip_profiles import PROFILES as CHIPS
    from perturbations.base import PERTURBATIONS
    from perturbations.spec import PROFILES, centering

    chips = [{"name": c.name, "chip": c.chip, "arithmetic": c.arithmetic.to_dict(),
              "limits": {"inputs": c.max_inputs, "neurons": c.max_neurons, "outputs": c.max_outputs,
                         "fan_in": c.max_fan_in}, "neurons": list(c.neurons), "effects": c.effects,
              "effect_levels": list(c.effect_levels),
              "energy_pj": {k: None if v is None else {"pj": v.pj, "source": v.source}
                            for k, v in (("synaptic_op", c.synop_pj), ("neuron_update", c.neuron_pj))},
              "sources": list(c.sources), "assumptions": list(c.assumptions)} for c in CHIPS.values()]
    if as_json:
        click.echo(json.dumps({
            "perturbations": [{"name": p.name, "meaning": p.meaning, "level": p.level, "monotone": p.monotone,
                               "options": {k: {"default": d, "help": h} for k, (d, h) in p.options.items()}}
                              for p in PERTURBATIONS.values()],
            "profiles": [{"name": p.name, "spec": p.spec, "levels": list(p.levels), "axis": p.axis,
                          "description": p.description, "source": p.source, "centering": centering(p.spec)}
                         for p in PROFILES.values()],
            "chips": chips}, indent=2))
        return
    for p in PERTURBATIONS.values():
        harm = "grows with the level (levels past chance are skipped)" if p.monotone else \
            "not monotone in the level (every level is run)"
        click.echo(f"{p.name}\n  {p.meaning}\n  level: {p.level}\n  harm: {harm}")
        for k, (d, h) in p.options.items():
            click.echo(f"  option {k} (default {d}): {h}")
    click.echo("\nprofiles (robust sweep --profile NAME):")
    for p in PROFILES.values():
        click.echo(f"{p.name}: {p.spec}  levels {', '.join(f'{x:g}' for x in p.levels)} ({p.axis} axis)\n"
                   f"  {p.description}\n  source: {p.source}")
        for line in centering(p.spec):
            click.echo(f"  {line}")
    click.echo("\nchips (robust eval|sweep --chip NAME[(option=value,...)]: integer dynamics; fixed-point: your own):")
    for c in chips:
        a, lim = c["arithmetic"], c["limits"]
        state = "analog state" if a["state_bits"] == 0 else f"{a['state_bits']}-bit states ({a['overflow']})"
        limits = ", ".join(f"{k} <= {v}" for k, v in lim.items() if v is not None) or "none modelled"
        click.echo(f"{c['name']}: {c['chip']}\n  {a['weight_bits']}-bit weights, {state}, leak {a['leak']}; "
                   f"limits: {limits}; neurons: {', '.join(c['neurons'])}\n  own effects: {c['effects']}")
        for k, v in c["energy_pj"].items():
            click.echo(f"  energy per {k.replace('_', ' ')}: " + ("not published" if v is None else
                                                                f"{v['pj']:g} pJ ({v['source']})"))
        for s in c["sources"]:
            click.echo(f"  source: {s}")
        for s in c["assumptions"]:
            click.echo(f"  assumption: {s}")


@cli.command(context_settings=CONTEXT)
@store_argument
@store_option
@click.option("--format", "fmt", type=click.Choice(["csv", "json", "parquet"]), default="csv", show_default=True)
@click.option("--out", default=None, help="Output file [the store's path with the format's extension].")
@quiet_option
@domain_errors
def export(store_arg: str | None, store: str | None, fmt: str, out: str | None, quiet: bool) -> None:
    """Export every stored cell's columns to CSV, JSON or Parquet (for pandas)."""
    from robustness.store.database import default_path
    from robustness.store.export import export as do_export

    store = renamed(store, store_arg, "--store", "a positional STORE") or default_path()
    target = out if out is not None else str(Path(store).with_suffix(f".{fmt}"))
    output_path(target, "--out", inputs=(("store", store),))
    click.echo(f"wrote {do_export(store, fmt, target)}")


@cli.group(context_settings=CONTEXT)
def data() -> None:
    """List datasets, show what a dataset folder holds, precompute its features."""


def dataset_options(fn: Callable) -> Callable:
    fn = click.option("--speaker-pattern", default=None,
                      help="Regex on file names whose group 'speaker' (or first group) is the speaker id.")(fn)
    fn = click.option("--skip-bad", is_flag=True, help="Skip unusable audio files (counted) instead of failing.")(fn)
    fn = click.option("--frames", type=COUNT, default=None, help="Frames T per utterance [dataset default].")(fn)
    fn = data_dir_option(fn, help="Local folder of the dataset (manifest: the CSV, or a folder holding manifest.csv).")
    return click.option("--dataset", default="tts-digits", show_default=True, help="Dataset name.")(fn)


@data.command("list", context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def data_list(as_json: bool) -> None:
    """Every dataset with the folder layout it expects."""
    from robustness.data import DATASETS

    rows = [{"name": n, "description": i.description, "layout": i.layout} for n, i in DATASETS]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(f"{r['name']}\n  {r['description']}\n  layout: {r['layout']}")


@data.command("info", context_settings=CONTEXT)
@dataset_options
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@quiet_option
@domain_errors
def data_info(dataset: str, data_dir: str | None, frames: int | None, skip_bad: bool, speaker_pattern: str | None,
              as_json: bool, quiet: bool) -> None:
    """Classes, split sizes, speakers, feature shape and cache location of a dataset."""
    setup(quiet)
    from robustness.data import DatasetSpec, load_dataset
    from robustness.data.summary import describe, format_description

    info = describe(load_dataset(DatasetSpec(dataset, data_dir, frames, skip_bad, speaker_pattern),
                                 progress=not quiet))
    click.echo(json.dumps(info, indent=2) if as_json else format_description(info))


@data.command("prepare", context_settings=CONTEXT)
@dataset_options
@click.option("--workers", type=COUNT, default=None, help="Processes for decoding and fbank [cores, max 8].")
@quiet_option
@domain_errors
def data_prepare(dataset: str, data_dir: str | None, frames: int | None, skip_bad: bool, speaker_pattern: str | None,
                 workers: int | None, quiet: bool) -> None:
    """Compute and cache the features of a dataset (with a progress bar)."""
    setup(quiet)
    import time

    from robustness.data import DatasetSpec, load_dataset

    t0 = time.perf_counter()
    d = load_dataset(DatasetSpec(dataset, data_dir, frames, skip_bad, speaker_pattern), workers=workers,
                     progress=not quiet)
    n = sum(len(s) for s in d.splits.values())
    msg = f"{dataset}: {n} utterances ready in {time.perf_counter() - t0:.1f} s (cache key {d.fingerprint})"
    if d.skipped:
        msg += f"; skipped {len(d.skipped)} unusable file(s)"
    click.echo(msg)


from robustness.cli.nir import export_nir, import_command  # noqa: E402
from robustness.cli.report import check, demo, report  # noqa: E402
from robustness.cli.slice import slice_command  # noqa: E402

for _command in (slice_command, report, check, demo, import_command, export_nir):
    cli.add_command(_command)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
