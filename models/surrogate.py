"""Boxcar surrogate gradient for the spike nonlinearity.

Forward is a strict Heaviside step, `z = H(x)` with `H(0) = 0` as in Norse. Backward passes
the gradient unchanged where `|x| < width` and zero elsewhere (Bittar & Garner 2022 use
width 0.5 around the threshold). Norse ships no boxcar surrogate and its `threshold()`
rejects unknown names, hence this small autograd function.
"""

from __future__ import annotations

import torch


class BoxcarSpike(torch.autograd.Function):
    """z = H(x); dz/dx = 1 for |x| < width, else 0."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, width: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.width = width
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * (x.abs() < ctx.width).to(grad.dtype), None


def spike(x: torch.Tensor, width: float = 0.5) -> torch.Tensor:
    """Heaviside spike of `x = v - v_th`; a boxcar surrogate only when autograd needs it.

    >>> spike(torch.tensor([-0.1, 0.0, 0.2])).tolist()
    [0.0, 0.0, 1.0]
    """
    if torch.is_grad_enabled() and x.requires_grad:
        return BoxcarSpike.apply(x, width)
    return (x > 0).to(x.dtype)
