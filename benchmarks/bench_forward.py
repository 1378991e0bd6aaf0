"""Speed of the time-batched, K-stacked SNN against a plain per-time-step Norse loop.

Same weights, same data, same run. Prints utterances/s and ratios for:
  1. evaluation (batch 128): ours vs per-step loop (Linear then Norse LIFBoxCell per step);
  2. K = 16 stacked parameter sets in one pass vs 16 sequential calls of ours;
  3. one training step (forward + backward) at batch 16 and 128: ours vs per-step loop, and
     the training epoch it makes on the built-in training set.
With the sgemm peak measured at the start, the spike densities of the network, each of ours
as dense-equivalent throughput, and the peak resident memory.
Each pair runs interleaved (A B A B, after one warm-up each) on the same load; a ratio
prints as the median of the per-round ratios with its [min, max].

    python -m benchmarks.bench_forward [--model adam.pt] [--repeats 3] [--threads 2] [--kernel auto|native|eager]
"""

from __future__ import annotations

import argparse
import warnings

import torch
import torch.nn.functional as F

warnings.filterwarnings("ignore", category=FutureWarning)

from norse.torch import LIFBoxCell, LIFBoxParameters  # noqa: E402
from norse.torch.functional.reset import reset_subtract  # noqa: E402

from benchmarks.machine import (interleaved, machine_args, machine_setup, matmul_flops, peak_rss_mb,  # noqa: E402
                                sgemm_gflops, spike_densities, throughput)
from models import native  # noqa: E402
from models.network import SpikingNet, forward_stacked  # noqa: E402


class PerStepNorse(torch.nn.Module):
    """The naive implementation: at every time step, Linear -> BN -> Norse LIFBoxCell.

    Shares the weights of a `SpikingNet`; BN uses its running statistics (inference) or the
    statistics of the batch at that step (training: what a per-step loop can do).
    """

    def __init__(self, net: SpikingNet):
        super().__init__()
        self.net = net
        self.cells = []
        for blk in net.blocks:
            alpha = blk.alpha.detach().clamp(net.cfg.alpha_min, net.cfg.alpha_max)
            p = LIFBoxParameters(tau_mem_inv=(1 - alpha) / 1e-3, v_leak=torch.zeros_like(alpha), v_th=blk.v_th,
                                 v_reset=torch.zeros_like(alpha), method="super", alpha=torch.tensor(100.0),
                                 reset_method=reset_subtract)
            self.cells.append(LIFBoxCell(p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [None] * len(self.cells)
        rate = 0.0
        for t in range(x.shape[1]):
            h = x[:, t]
            for i, blk in enumerate(self.net.blocks):
                cur = blk.bn(blk.linear(h))
                h, states[i] = self.cells[i](cur, states[i])
            rate = rate + h
        rate = rate / x.shape[1]
        return self.net.readout.linear(self.net.readout.bn(rate))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n", type=int, default=512, help="utterances for the evaluation figures")
    ap.add_argument("--device", default="cpu")
    machine_args(ap)
    args = ap.parse_args()
    dev = torch.device(args.device)
    data, net = machine_setup(args)
    net = net.to(dev).eval()
    x = data.splits["test"].x[: args.n].to(dev)
    y = data.splits["test"].y[: args.n].to(dev)
    naive = PerStepNorse(net).to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    peak = sgemm_gflops() if dev.type == "cpu" else float("nan")
    dims = [net.cfg.input_dim, *net.cfg.hidden]
    print(f"device {dev}, threads {args.threads}, T={x.shape[1]}, D={x.shape[2]}, hidden={list(net.cfg.hidden)}; "
          f"sgemm {peak:.0f} GFLOP/s; spike densities per hidden layer "
          f"{', '.join(f'{d:.3f}' for d in spike_densities(net.cfg, net.stacked(1), x[:256]))}")

    def run_eval(model):
        def f():
            with torch.no_grad():
                for i in range(0, len(x), 128):
                    model(x[i:i + 128])
            sync()
        return f

    with torch.no_grad():
        a, b = net(x[:128]), naive(x[:128])
    agree = (a.argmax(-1) == b.argmax(-1)).float().mean().item()
    print(f"check: per-step Norse loop and ours agree on {agree:.1%} of predictions, "
          f"max |logit diff| {float((a - b).abs().max()):.2e}")

    t_ours, t_naive, ratio = interleaved(run_eval(net), run_eval(naive), args.repeats)
    print(f"eval  batch 128: ours {len(x) / t_ours:8.0f} utt/s   per-step Norse {len(x) / t_naive:8.0f} utt/s"
          f"   ratio {ratio}; ours {throughput(matmul_flops(dims, x.shape[1], len(x)), t_ours, peak)}")

    k = 16
    g = torch.Generator().manual_seed(0)
    stacked = {n: (v + 0.01 * torch.randn(v.shape, generator=g).to(dev)) if n.endswith("weight") else v
               for n, v in net.stacked(k).items()}
    xs = x[:128]

    def run_stacked():
        with torch.no_grad():
            forward_stacked(net.cfg, stacked, xs)
        sync()

    def run_sequential():
        with torch.no_grad():
            for i in range(k):
                forward_stacked(net.cfg, {n: v[i:i + 1] for n, v in stacked.items()}, xs)
        sync()

    t_st, t_seq, ratio = interleaved(run_stacked, run_sequential, args.repeats)
    print(f"K={k} stacked  batch 128: one pass {k * len(xs) / t_st:8.0f} utt-draws/s   "
          f"{k} sequential calls {k * len(xs) / t_seq:8.0f}   ratio {ratio}; one pass "
          f"{throughput(matmul_flops(dims, x.shape[1], k * len(xs)), t_st, peak)}")

    n_train = len(data.splits["train"].x)
    for bsz in (16, 128):
        xb, yb = x[:bsz], y[:bsz]

        def step(model, fwd, xb=xb, yb=yb):
            def f():
                model.zero_grad()
                F.cross_entropy(fwd(xb), yb).backward()
                sync()
            return f

        net.train()
        naive.train()
        ours = step(net, lambda v: net(v, update_running=False))

        def on(mode):
            def f():
                native.KERNEL.set_mode(mode)
                with native.KERNEL.training(float("inf")):
                    ours()
                native.KERNEL.set_mode(args.kernel)
            return f
        with native.KERNEL.training(float("inf")) as path:
            pass
        path = path if dev.type == "cpu" else "eager"  # the kernel is for CPU tensors
        t_o, t_n, ratio = interleaved(on(args.kernel), step(naive, naive), args.repeats)
        t_e, _, ratio_e = interleaved(on("eager"), step(naive, naive), args.repeats)
        net.eval()
        naive.eval()
        steps = -(-n_train // bsz)
        print(f"train step batch {bsz:3d}: ours ({path}) {t_o * 1e3:7.1f} ms   ours (eager) {t_e * 1e3:7.1f} ms   "
              f"per-step Norse {t_n * 1e3:7.1f} ms   ratio {ratio} (eager {ratio_e}); an epoch of the {n_train} "
              f"training clips ({steps} steps) {steps * t_o:.1f} s against {steps * t_n:.1f} s; ours "
              f"{throughput(3 * matmul_flops(dims, x.shape[1], bsz), t_o, peak)} (forward and both backward "
              f"products)")
    print(f"peak resident memory {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
