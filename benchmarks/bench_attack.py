"""Speed of the worst-case search: K restarts stacked in one batched forward/backward,
against the same sign-gradient ascent run restart by restart through a plain per-time-step
Norse loop (Linear -> BN -> LIFBoxCell at every step), in the same run.

Both do, per budget, `steps` forward-backward passes and one scoring forward per restart
on the same batch (the sweep's search batch: 32 examples), target = synaptic weights,
relative L-infinity budget.

    python -m benchmarks.bench_attack [--model adam.pt] [--restarts 8] [--steps 10] [--kernel auto|native|eager]
"""

from __future__ import annotations

import argparse
import warnings

import torch
import torch.nn.functional as F

warnings.filterwarnings("ignore", category=FutureWarning)

from benchmarks.bench_forward import PerStepNorse  # noqa: E402
from benchmarks.machine import interleaved, machine_args, machine_setup, peak_rss_mb  # noqa: E402
from models import native  # noqa: E402
from models.deploy import deploy_tensors  # noqa: E402
from models.model_config import ForwardOptions
from models.network import SpikingNet, forward_stacked  # noqa: E402
from perturbations.base import Context  # noqa: E402
from perturbations.spec import apply, parse_spec  # noqa: E402

WEIGHTS = ("blocks.0.linear.weight", "blocks.1.linear.weight", "readout.linear.weight")


def stacked_search(net: SpikingNet, x: torch.Tensor, y: torch.Tensor, eps: float, restarts: int,
                   steps: int) -> torch.Tensor:
    """Ours, as the sweep runs it: all restarts in one pass. Returns the found NLL per restart."""
    base = {n: v.detach() for n, v in deploy_tensors(net.cfg, net.stacked(restarts)).items()}
    opt = ForwardOptions(clamp_alpha=False)

    def nll(t):
        with native.KERNEL.training(float("inf")):
            logits, _ = forward_stacked(net.cfg, t, x, opt)
        return F.cross_entropy(logits.transpose(1, 2), y.expand(logits.shape[0], -1), reduction="none").mean(1)

    hidden = tuple(f"blocks.{i}" for i in range(len(net.cfg.hidden)))
    ctx = Context(hidden + ("readout",), hidden, objective=nll)
    found = apply(parse_spec(f"adversarial(steps={steps})"), eps, base, seed=0, draws=list(range(restarts)), ctx=ctx)
    with torch.no_grad():
        return nll(found)


def per_step_search(net: SpikingNet, x: torch.Tensor, y: torch.Tensor, eps: float, restarts: int,
                    steps: int) -> torch.Tensor:
    """The plain way: one restart at a time, each forward a loop over time steps of Norse cells."""
    naive = PerStepNorse(net).eval()
    names = {"blocks.0.linear.weight": "net.blocks.0.linear.weight", "blocks.1.linear.weight":
             "net.blocks.1.linear.weight", "readout.linear.weight": "net.readout.linear.weight"}
    clean = {n: p.detach() for n, p in net.named_parameters()}
    out = []
    for r in range(restarts):
        g = torch.Generator().manual_seed(r)
        delta = {n: (2 * torch.rand(clean[n].shape, generator=g) - 1) * eps for n in WEIGHTS}

        def loss(d):
            params = {names[n]: clean[n] * (1 + d[n]) for n in WEIGHTS}
            return F.cross_entropy(torch.func.functional_call(naive, params, (x,)), y)

        for _ in range(steps):
            leaves = {n: d.detach().requires_grad_(True) for n, d in delta.items()}
            grads = torch.autograd.grad(loss(leaves), list(leaves.values()))
            delta = {n: (leaves[n].detach() + 0.25 * eps * gr.sign()).clamp(-eps, eps) for n, gr in zip(leaves, grads)}
        with torch.no_grad():
            out.append(loss(delta))
    return torch.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--restarts", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--examples", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds (ours, per-step)")
    machine_args(ap)
    args = ap.parse_args()
    data, net = machine_setup(args)
    test = data.splits["test"]
    x, y = test.x[: args.examples], test.y[: args.examples]
    passes = args.restarts * args.steps
    print(f"threads {args.threads}, T={x.shape[1]}, hidden={list(net.cfg.hidden)}, {args.examples} examples, "
          f"{args.restarts} restarts x {args.steps} steps = {passes} forward-backward passes "
          f"(+ {args.restarts} scoring forwards) per budget")
    with torch.no_grad():
        clean = F.cross_entropy(net(x), y)
    out = {}

    def run_ours():
        out["ours"] = stacked_search(net, x, y, args.eps, args.restarts, args.steps)

    def run_plain():
        out["plain"] = per_step_search(net, x, y, args.eps, args.restarts, args.steps)
    t_ours, t_plain, ratio = interleaved(run_ours, run_plain, args.repeats, warm=False)
    ours, plain = out["ours"], out["plain"]
    with native.KERNEL.training(float("inf")) as path:
        pass
    print(f"check: clean NLL {float(clean):.3f}; found NLL, mean over restarts: ours {float(ours.mean()):.3f}, "
          f"per-step Norse {float(plain.mean()):.3f}")
    print(f"one budget: ours (stacked, {path}) {t_ours:7.2f} s   per-step Norse, restart by "
          f"restart {t_plain:7.2f} s   ratio {ratio} over {args.repeats} interleaved rounds   "
          f"({passes / t_ours:.1f} vs {passes / t_plain:.1f} forward-backward passes/s)")
    print(f"peak resident memory {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
