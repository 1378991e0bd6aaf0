"""Currents driven by spikes, as exact sums: event-driven on the CPU, any order anywhere.

The input of every hidden layer after the first (and of a recurrent layer's own synapses)
is a binary spike vector, mostly zeros. Its current `z W^T` is computed as an exact sum:
the weights are rounded to a grid on which any sum of them is exact in float64
(`summable`), the sum is rounded once to float32. The number then depends on nothing but
the weights and the spikes: not on the BLAS library's blocking (which changes with the
number of rows, the CPU and its caches), not on the summation order, not on the device.
That lets the compiled kernel (models/kernels/spikes.c) add up only the weight rows of
the inputs that fired, as a chip pays per spike, and give the bits a dense float64 matmul
gives on a CPU or a GPU.

Which path runs is a matter of speed only: the event-driven kernel below a spike density,
a dense float64 matmul above it. The crossover is measured once per machine, when the
kernel is first used, and stored beside the kernel's build (`crossover`).
"""

from __future__ import annotations

import ctypes
import json
import math
import time

import torch
from torch import Tensor

from basics.files import atomic_path
from models import native
from models.native import ptr

PROBE_DENSITIES = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0)
PROBE_ROWS, PROBE_WIDTH = 2048, 256  # one inference chunk's rows at the default width


def summable(v: Tensor) -> Tensor:
    """V [..., H_out, H_in] in float64, each row rounded to a grid on which its sums are exact.

    Row i is rounded to multiples of 2^(e - 53 + ceil(log2 H_in)), where 2^e bounds its largest
    |weight|: a sum of any of its H_in entries is then an integer number of grid steps below
    2^53, exact in float64 in any order (BLAS blocking, FMA, a kernel that skips silent
    inputs). The rounding moves a weight by at most 2^(ceil(log2 H_in) - 53) of the row's
    largest (2^-46 at H_in = 128): only weights about 2^21 times smaller than their row's
    largest move at all, so a float32 weight stays a float32 (see `exact_weights`).
    Gradients pass straight through.
    """
    v64 = v.to(torch.device("cpu") if v.device.type == "mps" else v.device, torch.float64)  # MPS has no float64
    top = v64.abs().nan_to_num(0.0, posinf=0.0, neginf=0.0).amax(-1, keepdim=True)  # the finite entries set the grid
    _, e = torch.frexp(top)
    step = torch.ldexp(torch.ones_like(v64[..., :1]), e - 53 + math.ceil(math.log2(max(v.shape[-1], 1))))
    q = torch.round(v64 / step) * step
    return v64 + (q - v64).detach() if v.requires_grad else q


def exact_weights(w: Tensor) -> Tensor:
    """A Linear weight [K, H_out, H_in] as the rounded columns the current sums: [K, H_in, H_out].

    float32 where the rounded weights are all finite float32 numbers (always for finite float32
    weights, see `summable`), which the kernel reads; else float64, which only the dense
    product takes, so that a non-finite weight (a corrupt model) means what it means in a
    matmul everywhere (0 x inf = NaN), whichever path runs.
    """
    q = summable(w.detach()).transpose(-1, -2).contiguous()
    as32 = q.float()
    return as32.to(w.device) if bool(torch.isfinite(as32).all()) and torch.equal(as32.double(), q) else q


def current(z: Tensor, wt: Tensor, kernel: native.Kernel | None = None) -> Tensor:
    """The current `z W^T` of spikes z [K or 1, R, H_in] (or [R, H_in], shared) through the
    columns `wt` [K, H_in, H_out] of `exact_weights`: [K, R, H_out] float32, the exact sum
    rounded once, whichever path computes it."""
    z3 = z.unsqueeze(0) if z.dim() == 2 else z
    k = max(z3.shape[0], wt.shape[0])
    lib = _library(z3, wt, kernel)
    if lib is not None and _density(z3) < crossover(kernel or native.KERNEL, lib):
        return _event(lib, z3, wt, k)
    host = z3.device if z3.device.type != "mps" else torch.device("cpu")  # MPS has no float64: sum on the CPU
    out = torch.matmul(z3.to(host, torch.float64), wt.to(host, torch.float64)).float().to(z3.device)
    return out.expand(k, *out.shape[1:]) if out.shape[0] != k else out


def _library(z: Tensor, wt: Tensor, kernel: native.Kernel | None) -> ctypes.CDLL | None:
    if wt.dtype != torch.float32 or not native.applies(z, wt):
        return None
    return (kernel or native.KERNEL).library(z.numel())


def _density(z: Tensor) -> float:
    # spikes are 0 or 1: a float sum counts them, 10x faster than count_nonzero
    return float(z.detach().sum()) / max(z.numel(), 1)


def _event(lib: ctypes.CDLL, z: Tensor, wt: Tensor, k: int) -> Tensor:
    """The kernel's event-driven sum (models/kernels/spikes.c)."""
    z, wt = z.contiguous(), wt.contiguous()
    r, h_in, h_out = z.shape[1], z.shape[2], wt.shape[2]
    out = z.new_empty(k, r, h_out)
    with torch.profiler.record_function("spike_current_kernel"):
        rc = lib.spike_current(ptr(z), ptr(wt), ptr(out), k, r, h_in, h_out, int(z.shape[0] == 1),
                               int(wt.shape[0] == 1), torch.get_num_threads())
    if rc:
        raise RuntimeError("spike current kernel failed (out of memory)")
    return out


class _TrainCurrent(torch.autograd.Function):
    """`h W^T` for spikes h [K, R, H_in] scaled by dropout (every nonzero equal to `c`): the
    forward sums the weight rows of the inputs that fired (in float64, rounded once; no grid:
    training needs no bit-identity); in the backward the input gradient is the dense product
    `g W`, the weight gradient adds up the output gradients of the rows where each input fired."""

    @staticmethod
    def forward(ctx, h, w, c, lib):  # type: ignore[override]
        wt = w.detach().transpose(-1, -2).contiguous()
        out = _event(lib, h.detach(), wt, max(h.shape[0], w.shape[0]))
        if c != 1.0:
            out.mul_(c)
        ctx.save_for_backward(h, w)
        ctx.lib, ctx.c = lib, c
        return out

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        h, w = ctx.saved_tensors
        gh = torch.matmul(g, w).sum_to_size(h.shape) if ctx.needs_input_grad[0] else None
        gw = None
        if ctx.needs_input_grad[1]:
            gw = _weight_grad(ctx.lib, h, g.contiguous(), ctx.c).sum_to_size(w.shape)
        return gh, gw, None, None


def _weight_grad(lib: ctypes.CDLL, h: Tensor, g: Tensor, c: float) -> Tensor:
    """`g^T h` [K, H_out, H_in] for spikes h (nonzeros all c): the kernel's event-driven sum."""
    h = h.detach().contiguous()
    k, r, h_in = g.shape[0], h.shape[1], h.shape[2]
    gwt = g.new_empty(k, h_in, g.shape[2])
    with torch.profiler.record_function("spike_weight_grad_kernel"):
        rc = lib.spike_weight_grad(ptr(h), ptr(g), ptr(gwt), k, r, h_in, g.shape[2], int(h.shape[0] == 1),
                                   torch.get_num_threads())
    if rc:
        raise RuntimeError("spike weight-gradient kernel failed (out of memory)")
    gw = gwt.transpose(-1, -2)
    return gw * c if c != 1.0 else gw


def train_current(h: Tensor, w: Tensor, c: float, kernel: native.Kernel | None = None) -> Tensor | None:
    """The training forward's current of spikes h [K, R, H_in] (nonzeros all equal to `c`, the
    dropout scale) through a Linear weight w [K, H_out, H_in], event-driven inside
    `Kernel.training`; None where the dense matmul should run (no kernel, not CPU float32,
    spikes too dense for the sum to pay)."""
    lib = (kernel or native.KERNEL).training_lib
    if lib is None or h.dim() != 3 or w.dim() != 3 or not native.applies(h, w):
        return None
    if _density(h) / c >= crossover(kernel or native.KERNEL, lib):  # nonzeros are c: density = sum / c / size
        return None
    return _TrainCurrent.apply(h, w, c, lib)


def crossover(kernel: native.Kernel, lib: ctypes.CDLL) -> float:
    """The spike density above which a dense float64 matmul beats the event-driven kernel here.

    Measured once per machine at an inference chunk's size (PROBE_ROWS x PROBE_WIDTH^2) and
    stored beside the kernel's build, so every later process (Ray workers too) reads it.
    Where it cannot be stored (a read-only cache), it is measured once per process.
    """
    if kernel.crossover is not None:
        return kernel.crossover
    path = kernel.built_path.with_suffix(".crossover.json") if kernel.built_path else None
    try:
        kernel.crossover = float(json.loads(path.read_text())["density"])
        return kernel.crossover
    except (OSError, AttributeError, ValueError, KeyError, TypeError):
        pass
    kernel.crossover, timings = _measure(lib)
    if path is not None:
        try:
            with atomic_path(path, ".json.tmp") as tmp:
                with open(tmp, "w") as f:
                    json.dump({"density": kernel.crossover, "rows": PROBE_ROWS, "width": PROBE_WIDTH,
                               "threads": torch.get_num_threads(), "seconds": timings}, f, indent=1)
        except Exception:  # noqa: BLE001 - a cache that cannot be written costs a re-measure, nothing else
            pass
    return kernel.crossover


def _measure(lib: ctypes.CDLL) -> tuple[float, dict[str, list[float]]]:
    g = torch.Generator().manual_seed(0)
    wt = exact_weights(torch.randn(1, PROBE_WIDTH, PROBE_WIDTH, generator=g) / 16)
    timings: dict[str, list[float]] = {}
    found = math.inf
    for d in PROBE_DENSITIES:
        z = (torch.rand(1, PROBE_ROWS, PROBE_WIDTH, generator=g) < d).float()
        event = _best(lambda: _event(lib, z, wt, 1))
        dense = _best(lambda: torch.matmul(z.double(), wt.double()).float())
        timings[str(d)] = [event, dense]
        if dense < event:
            found = d
            break
    return found, timings


def _best(fn, reps: int = 3) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)
