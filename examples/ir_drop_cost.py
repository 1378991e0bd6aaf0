"""What IR drop costs a network at its own spike rates, and how good the first order is there.

For each synaptic matrix of a checkpoint, on the built-in test clips: the spike rate of its
inputs, and the column current lost to wire resistance (relative to the ideal current, RMS
over outputs, examples and steps) at each wire resistance, through the same read-out a sweep
uses (`crossbar-wire`, no ADC, no programming error, so only the wires act). Then, for a few
reads of the first tile of each spiking layer, the lumped first-order model and the per-cell
first-order model against the exact circuit solution of the full 256-row array (sparse solve).

    python examples/ir_drop_cost.py MODEL.pt [--wire 0.5,1,2] [--examples 16] [--g-max 40]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from models.checkpoint import load_checkpoint
from models.crossbar_circuit import exact_columns
from models.crossbar_read import prepare, read
from models.model_config import ForwardOptions
from models.network import block_spikes
from perturbations.base import Context
from perturbations.spec import apply, parse_spec
from robustness.data import DatasetSpec, load_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--wire", default="0.5,1,2", help="wire resistances, ohms per cell segment")
    ap.add_argument("--examples", type=int, default=16)
    ap.add_argument("--g-max", default="40", help="device g_max, microsiemens (the reram-array profile's 40)")
    ap.add_argument("--exact-reads", type=int, default=3)
    args = ap.parse_args()
    ck = load_checkpoint(args.model)
    cfg = ck.net.cfg
    test = load_dataset(DatasetSpec(**{k: v for k, v in ck.dataset.items() if k in ("name", "frames")}),
                        progress=False).split("test")
    x = test.x[torch.linspace(0, len(test.y) - 1, args.examples).round().long()]
    base = {n: v.detach() for n, v in ck.net.stacked(1).items()}
    with torch.no_grad():
        inputs = {"blocks.0": (x.transpose(0, 1).reshape(-1, x.shape[-1]), False)}
        for i in range(len(cfg.hidden)):
            z = block_spikes(cfg, base, x, i + 1, ForwardOptions(clamp_alpha=False))[0]  # [B, T, H]
            rows = z.transpose(0, 1).reshape(-1, z.shape[-1])
            if i + 1 < len(cfg.hidden):
                inputs[f"blocks.{i + 1}"] = (rows, True)
            if f"blocks.{i}.recurrent.linear.weight" in base:
                inputs[f"blocks.{i}.recurrent"] = (rows, True)
    wires = [float(w) for w in args.wire.split(",")]
    print(f"{args.model}: {args.examples} test clips, 256 x 256 arrays of differential pairs, g_max {args.g_max} uS")
    print("layer                 input     rate   " + "  ".join(f"{w:>5g} ohm" for w in wires) + "   (RMS current lost)")
    for layer, (rows, spikes) in inputs.items():
        w = base[f"{layer}.linear.weight"][0]
        ideal = rows @ w.T
        lost = []
        for ohm in wires:
            spec = parse_spec(f"crossbar-wire(g_max={args.g_max}):?")
            t = apply(spec, ohm, {f"{layer}.linear.weight": w.unsqueeze(0)}, seed=0, draws=[0],
                      ctx=Context((layer,), ()))
            with torch.no_grad():
                got = read(rows, prepare(t, layer, spikes), spikes)[0]
            lost.append(float((got - ideal).square().mean().sqrt() / ideal.square().mean().sqrt()))
        rate = f"{float(rows.mean()):.3f}" if spikes else "  -  "
        print(f"{layer:<20}  {'spikes' if spikes else 'analog':<8} {rate}  " + "  ".join(f"{v:9.2%}" for v in lost))
    print("\nfirst order against the exact circuit (first tile, reads with the most spikes):")
    print("layer                 ohm   rows on  exact lost  lumped err  per-cell err  (relative to the ideal current)")
    for layer, (rows, spikes) in inputs.items():
        if not spikes:
            continue
        w = base[f"{layer}.linear.weight"][0][:128, :256]  # one 256 x 256 array: 128 pairs
        picks = rows[:, :256].sum(1).argsort(descending=True)[:args.exact_reads]
        for ohm in wires:
            errs = {}
            for segs in (8, 256):
                spec = parse_spec(f"crossbar-wire(g_max={args.g_max},segments={segs}):?")
                t = apply(spec, ohm, {"L.linear.weight": w.unsqueeze(0)}, seed=0, draws=[0], ctx=Context(("L",), ()))
                errs[segs] = (t, read(rows[picks, :256], prepare(t, "L", True), True)[0])
            t = errs[256][0]
            g = torch.stack([t["L.xbar.pos"][0], t["L.xbar.neg"][0]], 1).flatten(0, 1).T.double().numpy()
            r = float(t["L.xbar.wire"][0])
            gain = float(t["L.xbar.gain"][0])
            for j, p in enumerate(picks.tolist()):
                xv = rows[p, :256].double().numpy()
                ex = exact_columns(g, xv, r)
                exact = (ex[0::2] - ex[1::2]) * gain
                ideal = xv @ (g[:, 0::2] - g[:, 1::2]) * gain
                norm = np.sqrt(np.mean(ideal ** 2))
                rel = lambda v: np.sqrt(np.mean((v - exact) ** 2)) / norm  # noqa: E731
                print(f"{layer:<20} {ohm:5g}  {int(xv.sum()):7d}  {np.sqrt(np.mean((ideal - exact) ** 2)) / norm:10.2%}"
                      f"  {rel(errs[8][1][j].double().numpy()):10.2%}  {rel(errs[256][1][j].double().numpy()):12.2%}")


if __name__ == "__main__":
    main()
