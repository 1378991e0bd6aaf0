"""Training's BatchNorm (batch statistics) and LIF scan in the compiled kernel, one autograd node.

In a training step the hidden layer's `BN(cur) * (1 - alpha)` then the scan cost a dozen
passes over the [K, T*B, H] tensors in eager PyTorch, forward and backward, more than the
matmuls. Here the kernel takes the column sums of `cur` (models/kernels/bn.c), the scan
with the affine map fused (`lif_forward`), and in the backward the scan's reverse pass, the
two column sums of its gradient and the input gradient in one pass each; only [K, H]
arithmetic stays in PyTorch.

The statistics are those of `network._batchnorm_affine` (mean and biased variance over
batch and time, per network), summed in float64 over a fixed split of the rows, so a
gradient does not depend on the thread count. They round differently from eager PyTorch
(as the LIF kernel's backward does), which is why a checkpoint records the path it trained
on.
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from models import native
from models.native import per_network, ptr

PIECES = 16  # row pieces per network in the column sums: fixed, so sums never depend on the threads


def _column_sums(lib: ctypes.CDLL, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor]:
    """(sum x, sum x^2) per network and neuron, or (sum y x, sum y) with y: [K, H] float64."""
    k, n, h = x.shape
    s1, s2 = (x.new_empty(k, PIECES, h, dtype=torch.float64) for _ in range(2))
    with torch.profiler.record_function("bn_kernel_sums"):
        rc = lib.bn_sums(ptr(x), ptr(y), ptr(s1), ptr(s2), k, n, h, PIECES, torch.get_num_threads())
    if rc:
        raise RuntimeError("BatchNorm kernel failed")
    return s1.sum(1), s2.sum(1)


class _BNScan(torch.autograd.Function):
    """Spikes of `BN(cur) * gain` scanned from rest, with the batch mean and variance it used."""

    @staticmethod
    def forward(ctx, cur, weight, bias, gain, alpha, v_th, eps, width, lib):  # type: ignore[override]
        k, steps, b, h = cur.shape
        x = cur.detach().contiguous().view(k, steps * b, h)
        s1, s2 = _column_sums(lib, x, None)
        n = steps * b
        mean64 = s1 / n
        var64 = (s2 / n - mean64.square()).clamp_min(0.0)
        mean, var = mean64.float(), var64.float()  # [K, H]
        inv = torch.rsqrt(var + eps)
        w, bb, g = (c.detach().reshape(-1, h) for c in (weight, bias, gain))
        s = w * inv
        shift = bb - mean * s
        sc, sh = per_network(s * g, k, h), per_network(shift * g, k, h)
        z, vpre = native.forward(lib, cur.detach(), alpha.detach().reshape(-1, h), v_th.detach().reshape(-1, h),
                                 cur.new_zeros(k, b, h), scale=sc, shift=sh, keep_membrane=True)
        ctx.save_for_backward(x, vpre, alpha, v_th, mean, inv, s, shift, sc, w, g)
        ctx.n, ctx.width, ctx.lib = n, width, lib
        ctx.shapes = [t.shape for t in (weight, bias, gain)]
        ctx.mark_non_differentiable(mean, var)
        return z, mean, var

    @staticmethod
    def backward(ctx, grad_z, _mean, _var):  # type: ignore[override]
        x, vpre, alpha, v_th, mean, inv, s, shift, sc, w, g = ctx.saved_tensors
        k, n, h = x.shape
        gd, ga, gt = native.backward(ctx.lib, grad_z, vpre, alpha.detach().reshape(-1, h),
                                     v_th.detach().reshape(-1, h), ctx.width,
                                     ctx.needs_input_grad[4], ctx.needs_input_grad[5])
        a1, a0 = _column_sums(ctx.lib, x, gd.view(k, n, h))  # d/d(scale) and d/d(shift) of the fused map
        s64, shift64, g64, w64, inv64, m64 = (t.double() for t in (s, shift, g, w, inv, mean))
        d_s, d_shift = a1 * g64, a0 * g64
        d_g = a1 * s64 + a0 * shift64
        d_s_total = d_s - d_shift * m64
        d_w, d_b, d_mean = d_s_total * inv64, d_shift, -d_shift * s64
        d_var = d_s_total * w64 * -0.5 * inv64 ** 3
        c1, c2 = per_network((d_mean / ctx.n).float(), k, h), per_network((2.0 * d_var / ctx.n).float(), k, h)
        dx = torch.empty_like(x)
        with torch.profiler.record_function("bn_kernel_grad"):
            rc = ctx.lib.bn_input_grad(ptr(gd), ptr(x), ptr(sc), ptr(mean.contiguous()), ptr(c1), ptr(c2), ptr(dx),
                                       k, n, h, torch.get_num_threads())
        if rc:
            raise RuntimeError("BatchNorm kernel failed")
        grads = [None if not need else _shaped_like(d.float(), shape)
                 for need, d, shape in zip(ctx.needs_input_grad[1:4], (d_w, d_b, d_g), ctx.shapes)]
        ga = None if ga is None else ga.sum(1, keepdim=True).sum_to_size(alpha.shape)
        gt = None if gt is None else gt.sum(1, keepdim=True).sum_to_size(v_th.shape)
        return (dx.view(grad_z.shape), *grads, ga, gt, None, None, None)


def _shaped_like(d: Tensor, shape: torch.Size) -> Tensor:
    """A [K, H] gradient in the shape of its input ([K or 1, (1,) H]), summed where shared."""
    return (d if shape.numel() == d.numel() else d.sum(0, keepdim=True)).reshape(shape)


def applies(lib: ctypes.CDLL | None, cur: Tensor, *consts: Tensor) -> bool:
    """Whether the kernel takes this layer: CPU float32, constants [K or 1, (1,) H]."""
    k, h = cur.shape[0], cur.shape[-1]
    return lib is not None and native.applies(cur, *consts) and all(
        c.shape[-1] == h and c.numel() in (h, k * h) for c in consts)


def scan(lib: ctypes.CDLL, cur: Tensor, weight: Tensor, bias: Tensor, gain: Tensor, alpha: Tensor, v_th: Tensor,
         eps: float, width: float) -> tuple[Tensor, Tensor, Tensor]:
    """Spikes [K, T, B, H] of `((cur - mean) / sqrt(var + eps) * weight + bias) * gain` scanned from
    rest, and the batch mean and (biased) variance [K, H] the running statistics take."""
    return _BNScan.apply(cur, weight, bias, gain, alpha, v_th, eps, width, lib)
