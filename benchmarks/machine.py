"""What the benchmarks share: the network they time, and what they measure about this
machine (matmul peak, peak resident memory)."""

from __future__ import annotations

import resource
import sys
import time
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from models.network import SpikingNet


def benchmark_net(model: str | None, data) -> "SpikingNet":
    """The network a benchmark times, in evaluation mode: the checkpoint `model`, else a
    fresh 256-256 network (seed 0) with BatchNorm statistics calibrated on training clips."""
    from models.network import ModelConfig, SpikingNet
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


def peak_rss_mb() -> float:
    """Peak resident set size in MB (ru_maxrss is KB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024
