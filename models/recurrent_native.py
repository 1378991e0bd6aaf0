"""The adaptive and recurrent scans in the compiled kernel (models/kernels/recurrent.c).

`recurrent.scan` asks `library` whether the kernel takes a layer; where it does, `scan`
runs it: in inference, the spikes equal the eager ones bit for bit (same float operations
in the same order; the recurrent current is an exact sum, see `spike_current.summable`); in
training, the forward keeps the membranes, adaptation currents and input currents, and
the backward runs the same reverse-time recurrence autograd would, rounded differently.

Not taken (eager runs): CUDA or float64 tensors, the smooth-spike control, read noise on a
recurrent layer (its per-step reference, an RMS over the layer's currents, is a PyTorch
reduction whose summation order C cannot reproduce), and in training a learnt threshold or
dead and saturated neurons.
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from models import native
from models.native import per_network, ptr

# An eager adaptive/recurrent neuron-step costs about this many eager LIF neuron-steps
# (about 21 ns against 5 ns, 2 cores, H = 256, batch 128: a dozen PyTorch ops per step and
# a float64 product, against the LIF scan's three in-place ops), so the LIF kernel's work
# threshold, scaled by it, decides when a cold build pays.
EAGER_COST = 4.0


def library(cur: Tensor, consts: list[Tensor], forced: bool, grad: bool, noisy: bool, smooth: bool,
            kernel: native.Kernel | None) -> ctypes.CDLL | None:
    """The kernel for this layer's scan, or None where eager PyTorch runs it."""
    if smooth or noisy or not native.applies(cur, *consts):
        return None
    kernel = kernel or native.KERNEL
    if grad:
        return None if forced else kernel.training_lib
    return kernel.library(cur.numel() * EAGER_COST)


def _forward(lib: ctypes.CDLL, cur: Tensor, consts: dict[str, Tensor | None], cols: Tensor | None,
             keep: bool) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    k, steps, b, h = cur.shape
    c = {n: per_network(v, k, h) for n, v in consts.items()}
    z = torch.empty_like(cur)
    u, i = (torch.empty_like(cur), torch.empty_like(cur)) if keep else (None, None)
    w = torch.empty_like(cur) if keep and c["beta"] is not None else None
    with torch.profiler.record_function("recurrent_kernel_forward"):
        rc = lib.rec_forward(ptr(cur), ptr(c.get("scale")), ptr(c.get("shift")), ptr(c["alpha"]), ptr(c["gain"]),
                             ptr(c["v_th"]), ptr(cols),
                             ptr(c["beta"]), ptr(c["a"]), ptr(c["b"]), ptr(c["dead"]), ptr(c["saturated"]),
                             ptr(z), ptr(u), ptr(w), ptr(i), k, steps, b, h, torch.get_num_threads())
    if rc:
        raise RuntimeError("recurrent kernel failed (out of memory)")
    return z, u, w, i


class _TrainScan(torch.autograd.Function):
    """The scan with its backward in the kernel; V's gradient is one matmul over the kept spikes."""

    @staticmethod
    def forward(ctx, cur, alpha, v_rec, beta, a, b, v_th, cols, width, lib):  # type: ignore[override]
        gain = 1.0 - alpha
        consts = dict(alpha=alpha, gain=gain, v_th=v_th, beta=beta, a=a, b=b, dead=None, saturated=None)
        z, u, w, i = _forward(lib, cur.detach().contiguous(), consts, cols, keep=True)
        ctx.save_for_backward(z, u, w, i, alpha, gain, v_th, v_rec, beta, a, b)
        ctx.width, ctx.lib = width, lib
        return z

    @staticmethod
    def backward(ctx, grad_z):  # type: ignore[override]
        z, u, w, i, alpha, gain, v_th, v_rec, beta, a, b = ctx.saved_tensors
        k, steps, bsz, h = z.shape
        f = {n: per_network(v, k, h) for n, v in dict(alpha=alpha, gain=gain, v_th=v_th, beta=beta, a=a, b=b).items()}
        v = None if v_rec is None else v_rec.detach().expand(k, h, h).contiguous()
        gc = torch.empty_like(z)
        rows = [z.new_zeros(k, bsz, h) if n == "alpha" or beta is not None else None  # per-row gradient sums
                for n in ("alpha", "beta", "a", "b")]
        with torch.profiler.record_function("recurrent_kernel_backward"):
            rc = ctx.lib.rec_backward(ptr(grad_z.contiguous()), ptr(z), ptr(u), ptr(w), ptr(i),
                                      ptr(f["alpha"]), ptr(f["gain"]), ptr(f["v_th"]), ptr(v),
                                      ptr(f["beta"]), ptr(f["a"]), ptr(f["b"]), ptr(gc), *map(ptr, rows),
                                      float(ctx.width), k, steps, bsz, h, torch.get_num_threads())
        if rc:
            raise RuntimeError("recurrent kernel failed (out of memory)")

        def per_neuron(g: Tensor | None, like: Tensor | None) -> Tensor | None:
            return None if g is None or like is None else g.sum(1, keepdim=True).sum_to_size(like.shape)
        g_v = None
        if v_rec is not None and ctx.needs_input_grad[2]:  # dV[i, j] = sum over t, b of dI[t, i] s[t-1, j]
            g_v = torch.matmul(gc[:, 1:].reshape(k, -1, h).transpose(1, 2), z[:, :-1].reshape(k, -1, h))
            g_v = g_v.sum_to_size(v_rec.shape)
        g_alpha, g_beta, g_a, g_b = (per_neuron(g, like) for g, like in zip(rows, (alpha, beta, a, b)))
        return gc, g_alpha, g_v, g_beta, g_a, g_b, None, None, None, None


def scan(lib: ctypes.CDLL, cur: Tensor, affine: tuple[Tensor, Tensor] | None, alpha: Tensor, v_th: Tensor,
         width: float, v_rec: Tensor | None, cols: Tensor | None, adapt: tuple[Tensor, Tensor, Tensor] | None,
         dead: Tensor | None, saturated: Tensor | None, grad: bool) -> Tensor:
    """Spikes [K, T, B, H] of one layer in the kernel (arguments as `recurrent.scan`; `cols`
    the exactly summable columns of V, [K, H, H] float32 (`spike_current.exact_weights`), row j = V[:, j];
    `affine` is fused
    in inference only, so in training it must be None, already applied to `cur`)."""
    beta, a, b = adapt if adapt is not None else (None, None, None)
    if grad:
        return _TrainScan.apply(cur, alpha, v_rec, beta, a, b, v_th, cols, width, lib)
    consts = dict(alpha=alpha, gain=1.0 - alpha, v_th=v_th, beta=beta, a=a, b=b, dead=dead, saturated=saturated)
    if affine is not None:  # the layer's BatchNorm, applied in the scan as `cur * scale + shift`
        consts.update(scale=affine[0], shift=affine[1])
    return _forward(lib, cur.contiguous(), consts, cols, keep=False)[0]
