"""Speed of each neuron type (lif, adlif, rlif, radlif) against a plain per-time-step loop
of the same network, measured in the same run.

The loop is what a straightforward implementation does: at every step and for one network,
Linear -> BatchNorm -> the neuron's update (sparch's equations, models/recurrent.py, with
the same exact sums of spikes: the recurrent one, and in evaluation the feedforward one of
every layer after the first), then the spike-rate readout. Ours runs the Linear over all
steps in one matmul and K stacked networks in one pass, and the scans (BatchNorm fused) in
the compiled kernel, where the recurrent current adds up only the columns of the neurons
that fired (`--kernel eager`: every step in PyTorch). Prints, per type (with the spike
densities, dense-equivalent throughput against the sgemm peak, and peak memory):
  1. evaluation at batch 128: ours vs the loop (utterances/s), and their agreement;
  2. K = 10 stacked networks (10 chips) in one pass vs 10 calls of the loop;
  3. one training step (forward + backward) at batch 16: ours vs the loop.
Each pair runs interleaved (A B A B) on the same load; a ratio prints as the median over
rounds with its [min, max].

    python -m benchmarks.bench_recurrent [--repeats 3] [--n 256] [--threads 2] [--hidden 256,256]
"""

from __future__ import annotations

import argparse
import warnings

import torch
import torch.nn.functional as F

warnings.filterwarnings("ignore", category=FutureWarning)

from benchmarks.machine import (interleaved, matmul_flops, peak_rss_mb, sgemm_gflops,  # noqa: E402
                                spike_densities, throughput)
from models import native, recurrent, spike_current  # noqa: E402
from models.layers import bn_affine  # noqa: E402
from models.model_config import RECURRENT, TRAINABLE_NEURONS, ModelConfig  # noqa: E402
from models.network import SpikingNet, forward_stacked  # noqa: E402
from models.surrogate import spike  # noqa: E402


def per_step_loop(net: SpikingNet, x: torch.Tensor) -> torch.Tensor:
    """Logits [B, C] of one network, everything computed one time step at a time."""
    cfg, bsz = net.cfg, x.shape[0]
    tensors = net.tensors()
    state, consts = [], []
    for i, blk in enumerate(net.blocks):  # what does not change over time, computed once per call
        h = blk.alpha.shape[0]
        state.append({"u": x.new_zeros(bsz, h), "s": x.new_zeros(bsz, h), "w": x.new_zeros(bsz, h)})
        adapt = (tuple(getattr(blk, n).clamp(*recurrent.RANGES[n]) for n in recurrent.ADAPT)
                 if hasattr(blk, "adapt_beta") else None)
        v_t = (spike_current.summable(blk.recurrent.linear.weight * (1 - torch.eye(h))).T
               if hasattr(blk, "recurrent") else None)
        w_ff = spike_current.summable(blk.linear.weight).T if i > 0 else None  # spikes in: ours sums exactly
        consts.append((bn_affine(tensors, f"blocks.{i}.bn", cfg.bn_eps), blk.alpha.clamp(cfg.alpha_min, cfg.alpha_max),
                       adapt, v_t, w_ff))
    rate = 0.0
    for t in range(x.shape[1]):
        h = x[:, t]
        for blk, st, ((scale, shift), alpha, adapt, v_t, w_ff) in zip(net.blocks, state, consts):
            if net.training:
                cur = blk.bn(blk.linear(h))  # this step's batch statistics: what a per-step loop can do
            else:  # the running statistics as one affine map, rounded as ours rounds them
                cur = (blk.linear(h) if w_ff is None else (h.double() @ w_ff).float()) * scale + shift
            if adapt is not None:
                beta, a, b = adapt
                st["w"] = beta * st["w"] + a * st["u"] + b * st["s"]
            if v_t is not None:
                cur = cur + (st["s"].double() @ v_t).float()
            if adapt is not None:
                cur = cur - st["w"]
            st["u"] = alpha * (st["u"] - blk.v_th * st["s"]) + (1 - alpha) * cur
            st["s"] = spike(st["u"] - blk.v_th, cfg.surrogate_width)
            h = st["s"]
        rate = rate + h
    return net.readout.linear(net.readout.bn(rate / x.shape[1]))


def calibrated(neuron: str, hidden: tuple[int, ...], x: torch.Tensor) -> SpikingNet:
    """A fresh network of `neuron` type whose BN statistics come from a few training-mode passes."""
    cfg = ModelConfig(input_dim=x.shape[-1], num_classes=20, hidden=hidden, neuron=neuron)
    net = SpikingNet(cfg, torch.Generator().manual_seed(0)).train()
    with torch.no_grad():
        for _ in range(5):
            net(x[:64])
    return net.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n", type=int, default=256, help="utterances for the evaluation figures")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--hidden", default="256,256")
    ap.add_argument("--kernel", choices=native.MODES, default="native", help="the scans' path in ours")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    native.KERNEL.set_mode(args.kernel)
    from robustness.data import DatasetSpec, load_dataset

    data = load_dataset(DatasetSpec())
    x, y = data.split("test").x[: args.n], data.split("test").y[: args.n]
    hidden = tuple(int(h) for h in args.hidden.split(","))
    peak = sgemm_gflops()
    print(f"threads {args.threads}, T={x.shape[1]}, D={x.shape[2]}, hidden={list(hidden)}, n={len(x)}; "
          f"scans: {native.KERNEL.mode}; sgemm {peak:.0f} GFLOP/s")
    for neuron in TRAINABLE_NEURONS:
        net = calibrated(neuron, hidden, data.split("train").x)
        t1 = {n: v.detach().unsqueeze(0) for n, v in net.tensors().items()}
        with torch.no_grad():
            ours = torch.cat([forward_stacked(net.cfg, t1, x[i:i + 128])[0][0] for i in range(0, len(x), 128)])
            loop = torch.cat([per_step_loop(net, x[i:i + 128]) for i in range(0, len(x), 128)])
            agree = float((ours.argmax(-1) == loop.argmax(-1)).float().mean())

            def eval_ours():
                for i in range(0, len(x), 128):
                    forward_stacked(net.cfg, t1, x[i:i + 128])

            def eval_loop():
                for i in range(0, len(x), 128):
                    per_step_loop(net, x[i:i + 128])
            a, b, r_eval = interleaved(eval_ours, eval_loop, args.repeats)
            t10 = {n: v.expand(10, *v.shape[1:]) for n, v in t1.items()}
            xb = x[:64]
            s10, l10, r_chips = interleaved(lambda: forward_stacked(net.cfg, t10, xb),
                                            lambda: [per_step_loop(net, xb) for _ in range(10)], args.repeats)
        net.train()
        xt, yt = x[:16], y[:16]

        def step_ours():
            net.zero_grad()
            with native.KERNEL.training(float("inf")):
                F.cross_entropy(net(xt, update_running=False), yt).backward()

        def step_loop():
            net.zero_grad()
            F.cross_entropy(per_step_loop(net, xt), yt).backward()
        ta, tb, r_train = interleaved(step_ours, step_loop, args.repeats)
        dims = [net.cfg.input_dim, *hidden]
        flops = matmul_flops(dims, x.shape[1], 1) + (matmul_flops([hidden[0]] * 2, x.shape[1], 1) * len(hidden)
                                                     if neuron in RECURRENT else 0.0)  # per utterance, V s included
        dens = spike_densities(net.cfg, t1, x[:256])
        print(f"{neuron:7s} eval batch 128: ours {len(x) / a:7.0f} utt/s  loop {len(x) / b:7.0f}  ratio {r_eval}"
              f"  (agree {100 * agree:.1f}%)  |  10 chips, batch 64: one pass {s10 * 1e3:6.0f} ms  10 loops "
              f"{l10 * 1e3:6.0f} ms  ratio {r_chips}  |  train step batch 16: ours {ta * 1e3:5.0f} ms  "
              f"loop {tb * 1e3:5.0f} ms  ratio {r_train}")
        print(f"        spike densities {', '.join(f'{d:.3f}' for d in dens)}; "
              f"eval {throughput(flops * len(x), a, peak)}"
              f"; 10 chips {throughput(flops * 10 * len(xb), s10, peak)}")
    print(f"peak resident memory {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
