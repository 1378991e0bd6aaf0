"""What the benchmarks share: their machine options, the network they time, and what they
measure about this machine (matmul peak, peak resident memory)."""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from models.network import SpikingNet
    from robustness.data import Dataset


def machine_args(ap: argparse.ArgumentParser) -> None:
    """--model, --threads and --kernel: what every benchmark of one network takes."""
    from models import native

    ap.add_argument("--model", default=None, help="checkpoint (default: a fresh net, BN calibrated)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kernel", choices=native.MODES, default="auto", help="LIF path of ours (auto: as robust runs)")


def machine_setup(args: argparse.Namespace) -> tuple["Dataset", "SpikingNet"]:
    """Apply --threads and --kernel; the built-in dataset and the network to time."""
    from models import native

    from robustness.data import DatasetSpec, load_dataset

    torch.set_num_threads(args.threads)
    native.KERNEL.set_mode(args.kernel)
    data = load_dataset(DatasetSpec())
    return data, benchmark_net(args.model, data)


def benchmark_net(model: str | None, data) -> "SpikingNet":
    """The network a benchmark times, in evaluation mode: the checkpoint `model`, else a
    fresh 256-256 network (seed 0) with BatchNorm statistics calibrated on training clips."""
    from models.model_config import ModelConfig
    from models.network import SpikingNet
    from models.train import recalibrate_bn_

    if model:
        from models.checkpoint import load_checkpoint

        return load_checkpoint(model).net.eval()
    net = SpikingNet(ModelConfig(), torch.Generator().manual_seed(0))
    recalibrate_bn_(net, data.splits["train"].x, 128, 4, torch.Generator().manual_seed(0))
    return net.eval()


def sgemm_gflops(n: int = 2048, reps: int = 5) -> float:
    """Single-precision matmul throughput of this machine now (GFLOP/s, n x n by n x n)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return reps * 2 * n**3 / (time.perf_counter() - t0) / 1e9


def matmul_flops(dims: list[int], steps: int, examples: int) -> float:
    """Multiply-adds x 2 of the hidden Linears over `steps` time steps for `examples` inputs."""
    return 2.0 * steps * examples * sum(a * b for a, b in zip(dims[:-1], dims[1:]))


def spike_densities(cfg, tensors: dict, x: torch.Tensor) -> list[float]:
    """Mean spike rate of each hidden layer on `x` (inference): the share of inputs the
    event-driven sums of the next layer add up."""
    from models.network import forward_stacked

    k = max(v.shape[0] for v in tensors.values())
    tensors = {n: v.expand(k, *v.shape[1:]) if v.shape[0] == 1 else v for n, v in tensors.items()}
    with torch.no_grad():
        _, rates = forward_stacked(cfg, tensors, x)
    return [float(r.mean()) for r in rates]


def throughput(flops: float, seconds: float, peak: float) -> str:
    """Dense-equivalent throughput: the FLOPs a dense matmul would spend, per second, and as a
    share of the sgemm peak measured in the same run (above 100% when skipping zeros pays)."""
    rate = flops / seconds / 1e9
    return f"dense-equivalent {rate:.0f} GFLOP/s = {rate / peak:.0%} of sgemm ({peak:.0f} GFLOP/s)"


def peak_rss_mb() -> float:
    """Peak resident set size in MB (ru_maxrss is KB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def interleaved(ours, loop, repeats: int, loop_scale: float = 1.0, warm: bool = True) -> tuple[float, float, str]:
    """Best time of each, run A B A B on the same load (after one warm-up each unless `warm`
    is False), and the spread of the per-round ratio loop / ours ("median [min, max]").
    `loop_scale` scales the loop's times (a loop timed on part of the work)."""
    if warm:
        ours(), loop()
    ta, tb = [], []
    for _ in range(repeats):
        for fn, out, scale in ((ours, ta, 1.0), (loop, tb, loop_scale)):
            t0 = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t0) * scale)
    r = [b / a for a, b in zip(ta, tb)]
    return min(ta), min(tb), f"{statistics.median(r):.2f}x [{min(r):.2f}, {max(r):.2f}]"
