"""`robust import` and `robust export-nir`: models to and from NIR graphs (models/nir_graph.py)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import click

from robustness.cli.common import (CONTEXT, COUNT, POSITIVE, InputError, data_dir_option, domain_errors,
                                   given_model, model_argument, output_path, quiet_option, setup)


def _write_graph(graph, out: str) -> None:
    import io

    import nir

    from basics.files import write_bytes

    buf = io.BytesIO()  # HDF5 segfaults on a full disk: serialise in memory, then write the bytes ourselves
    nir.write(buf, graph)
    write_bytes(out, buf.getvalue(), ".nir.tmp")


@click.command("import", context_settings=CONTEXT)
@click.argument("graph_path", metavar="MODEL.nir", type=click.Path())
@click.option("--out", type=click.Path(), required=True, help="Checkpoint file to write (.pt).")
@click.option("--dataset", default="tts-digits", show_default=True, help="Data the model is evaluated on.")
@data_dir_option(help="Local folder of --dataset (the built-in corpus needs none).")
@click.option("--dt", type=POSITIVE, default=None,
              help="Simulation time step in seconds [the graph's metadata, else 0.001 as in NIR and Norse]; "
                   "one that contradicts the metadata needs --override-dt.")
@click.option("--override-dt", is_flag=True, help="Simulate at --dt even where the graph states another time step.")
@quiet_option
@domain_errors
def import_command(graph_path: str, out: str, dataset: str, data_dir: str | None, dt: float | None,
                   override_dt: bool, quiet: bool) -> None:
    """Turn a feedforward NIR graph (Affine/Linear, Scale, LIF/CubaLIF/IF) into a checkpoint robust evaluates."""
    setup(quiet)
    import nir

    from models.checkpoint import save_checkpoint
    from models.nir_graph import from_nir, graph_dt, network
    from robustness import __version__
    from robustness.data import DatasetSpec, load_dataset

    output_path(out, "--out", inputs=(("graph", graph_path), ("data", data_dir)))
    if not Path(graph_path).is_file():
        raise InputError(f"{graph_path}: no such file")
    try:
        graph = nir.read(graph_path, type_check=False)
    except Exception as e:  # h5py raises many kinds for a file that is not NIR
        raise InputError(f"{graph_path}: not a readable NIR graph ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
    cfg, sd, dt = from_nir(graph, dt, override_dt)
    own = (getattr(graph, "metadata", None) or {}).get("dt")
    own = None if own is None else graph_dt(graph.metadata)
    if override_dt and own is not None and not math.isclose(dt, own, rel_tol=1e-9):
        click.echo(f"warning: simulating at dt {dt:g} s, not the graph's own {own:g} s: the leaks differ from the "
                   f"network the graph describes", err=True)
    spec = DatasetSpec(dataset, str(Path(data_dir).expanduser().resolve()) if data_dir else None)
    data = load_dataset(spec, progress=not quiet)
    width = data.split("test").x.shape[-1]
    if width != cfg.input_dim or len(data.classes) != cfg.num_classes:
        raise InputError(f"{graph_path}: the graph maps {cfg.input_dim} inputs to {cfg.num_classes} outputs; "
                         f"{dataset} has {width} features and {len(data.classes)} classes")
    net = network(cfg, sd)
    save_checkpoint(out, net, train_config={"optimizer": "imported", "source": os.path.abspath(graph_path),
                                            "dt": dt, "epochs": 0},
                    dataset={**data.spec.to_dict(), "fingerprint": data.fingerprint},
                    features=data.features.to_dict(), classes=data.classes, history=[],
                    package_version=__version__)
    click.echo(f"wrote {out}: {len(cfg.hidden)} {cfg.neuron} layer(s) {list(cfg.hidden)}, reset {cfg.reset}, dt {dt:g} s, "
               f"{cfg.input_dim} inputs -> {cfg.num_classes} classes")


@click.command("export-nir", context_settings=CONTEXT)
@model_argument
@click.option("--out", type=click.Path(), required=True, help="NIR file to write (.nir).")
@click.option("--sample", type=COUNT, default=None,
              help="IVON: write K posterior samples (BN re-estimated per sample, as BMA does) as OUT-0.nir ... "
                   "instead of the posterior mean.")
@click.option("--dt", type=POSITIVE, default=None,
              help="Time step the graph's time constants assume, seconds [the features' frame shift].")
@data_dir_option
@quiet_option
@domain_errors
def export_nir(model_arg: str | None, model: str | None, out: str, sample: int | None, dt: float | None,
               data_dir: str | None, quiet: bool) -> None:
    """Write a checkpoint as an NIR graph (BatchNorm folded; a chip toolchain can read it)."""
    setup(quiet)
    model = given_model(model, model_arg, "give the checkpoint to export: --model m.pt")
    from models.checkpoint import load_checkpoint
    from models.deploy import deploy_tensors
    from models.nir_graph import to_nir

    output_path(out, "--out", inputs=(("checkpoint", model),))
    if data_dir is not None and not Path(data_dir).is_dir():
        raise InputError(f"--data-dir {data_dir}: no such folder")
    ck = load_checkpoint(model)
    dt = float(dt or ck.features.get("frame_shift_ms", 10.0) / 1000.0)
    cfg = ck.net.cfg
    if sample is None:
        _write_graph(to_nir(cfg, deploy_tensors(cfg, ck.net.stacked(1)), dt), out)
        click.echo(f"wrote {out} ({'posterior mean' if ck.posterior is not None else 'the network'}, dt {dt:g} s)")
        return
    if ck.posterior is None:
        raise InputError(f"--sample: {model} has no posterior (an IVON checkpoint has)")
    import dataclasses

    from robustness.data import DatasetSpec, load_dataset
    from robustness.evaluate import EvalConfig, Mode, mode_tensors

    spec = DatasetSpec.from_dict(ck.dataset)
    if data_dir is not None:
        spec = dataclasses.replace(spec, data_dir=data_dir)
    ecfg = EvalConfig(mc_samples=sample)
    t = mode_tensors(ck, load_dataset(spec, progress=not quiet), Mode.BMA, sample, ecfg.bn, ecfg.seed, ecfg)
    t = deploy_tensors(cfg, t)
    stem, suffix = os.path.splitext(out)
    for k in range(sample):
        _write_graph(to_nir(cfg, {n: v[k:k + 1] for n, v in t.items()}, dt), f"{stem}-{k}{suffix or '.nir'}")
    click.echo(f"wrote {sample} posterior samples: {stem}-0{suffix or '.nir'} ... (dt {dt:g} s)")
