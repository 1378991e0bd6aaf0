"""Slice speed: a 41-point line and a 21x21 plane, batched engine against the naive loop.

In the same run, on the same weights, direction and minibatches:
  * the engine (what `robust slice` runs: the points of a slice stacked as parameter sets
    and evaluated in batched, time-chunked passes), and
  * the naive loop: for each point, write theta + a u into the network and run a plain
    per-time-step Norse forward over the minibatches (batch 128).
The loop is timed on a few points and scaled to the slice; the engine on the whole slice.
The two run interleaved (engine, loop, engine, loop, ...; no warm-up round, so the first
includes first-call costs), and the ratio prints as the median of the per-round ratios
with its [min, max].

    python -m benchmarks.bench_slice [--model adam.pt] [--batches 4] [--loop-points 6] [--repeats 3]
        [--kernel auto|native|eager]
"""

from __future__ import annotations

import argparse
import warnings

import torch

warnings.filterwarnings("ignore")

from benchmarks.bench_forward import PerStepNorse  # noqa: E402
from benchmarks.machine import (interleaved, machine_args, machine_setup, matmul_flops, peak_rss_mb,  # noqa: E402
                                sgemm_gflops, spike_densities, throughput)
from models import native  # noqa: E402
from models.network import SpikingNet  # noqa: E402
from robustness.slicing.curves import curve_losses, grid_points, Networks  # noqa: E402
from robustness.slicing.directions import direction_generator, moved_names, normalise, raw_direction  # noqa: E402
from robustness.slicing.run import SliceConfig  # noqa: E402


class _Ck:  # the checkpoint fields the engine reads
    def __init__(self, net: SpikingNet):
        self.net, self.posterior, self.members, self.path = net, None, None, "bench"


def naive(net: SpikingNet, names: list[str], u: list[dict], grid: list[tuple], x: torch.Tensor,
          y: torch.Tensor) -> list[float]:
    params = dict(net.named_parameters())
    clean = {n: params[n].detach().clone() for n in names}
    losses = []
    with torch.no_grad():
        for pt in grid:
            for n in names:
                params[n].copy_(clean[n] + sum(a * d[n] for a, d in zip(pt, u)))
            loop = PerStepNorse(net)
            nll = 0.0
            for i in range(0, len(x), 128):
                nll += torch.nn.functional.cross_entropy(loop(x[i:i + 128]), y[i:i + 128], reduction="sum").item()
            losses.append(nll / len(x))
        for n in names:
            params[n].copy_(clean[n])
    return losses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--loop-points", type=int, default=6, help="points the naive loop is timed on")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds (engine, loop)")
    machine_args(ap)
    args = ap.parse_args()
    data, net = machine_setup(args)
    ck = _Ck(net)
    print(f"threads {args.threads}; {args.batches} x 128 training clips, hidden {list(net.cfg.hidden)}")
    for dims, points in ((1, 41), (2, 21)):
        cfg = SliceConfig(models=("bench",), dims=dims, points=points, batches=args.batches)
        from robustness.slicing.run import fixed_batches

        x, y = fixed_batches(data, cfg)
        names = moved_names(net.cfg)
        w = net.tensors()
        g = direction_generator(0, 0)
        u = [normalise(raw_direction({n: w[n].shape for n in names}, g), w, "filter") for _ in range(dims)]
        grid = grid_points(cfg)
        nets = Networks({n: v.detach().unsqueeze(0) for n, v in w.items()}, [w], False)
        sub = grid[:: max(1, len(grid) // args.loop_points)][: args.loop_points]
        out = {}

        def engine():
            out["loss"] = curve_losses(ck, nets, [[d] for d in u], names, grid, x, y, x, cfg, torch.device("cpu"))[0]

        def loop():
            out["ref"] = naive(net, names, u, sub, x, y)
        peak = sgemm_gflops()
        t_engine, t_loop, ratio = interleaved(engine, loop, args.repeats, loop_scale=len(grid) / len(sub), warm=False)
        peak = (peak + sgemm_gflops()) / 2
        flops = matmul_flops([net.cfg.input_dim, *net.cfg.hidden], x.shape[1], len(x) * len(grid))
        loss, ref = out["loss"], out["ref"]
        flat = loss.reshape(-1)
        idx = [grid.index(p) for p in sub]
        err = max(abs(flat[i] - r) for i, r in zip(idx, ref))
        label = f"{points}-point line" if dims == 1 else f"{points}x{points} plane"
        print(f"{label}: naive per-step Norse loop {t_loop:7.1f} s (timed on {len(sub)} points, scaled to "
              f"{len(grid)}); engine {t_engine:6.1f} s; ratio {ratio} over {args.repeats} interleaved rounds; "
              f"max |loss diff| on the timed points {err:.2e}")
        dens = spike_densities(net.cfg, {n: v.detach().unsqueeze(0) for n, v in w.items()}, x[:256])
        print(f"  engine {throughput(flops, t_engine, peak)}; LIF path {native.KERNEL.mode}; spike densities "
              f"at the centre {', '.join(f'{d:.3f}' for d in dens)}")
    print(f"peak resident memory {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
