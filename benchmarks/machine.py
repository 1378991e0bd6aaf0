"""What the benchmarks measure about this machine: matmul peak and peak resident memory."""

from __future__ import annotations

import resource
import sys
import time

import torch


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
