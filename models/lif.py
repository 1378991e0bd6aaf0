"""LIF dynamics: Norse's box LIF step with a boxcar surrogate, and a fast scan over time.

The neuron (Bittar & Garner 2022; Norse's `lif_box_feed_forward_step` with reset by
subtraction) integrates `v[t] = alpha * v[t-1] + (1 - alpha) * I[t]`, spikes
`z[t] = H(v[t] - v_th)` and resets `v[t] <- v[t] - z[t] * v_th`. In Norse's Euler form
`alpha = 1 - dt * tau_mem_inv`.

`lif_box_boxcar_step` is the one-step reference that keeps Norse's parameter and state
types. `lif_scan` is the same recurrence over a whole [K, T, B, H] drive (the input
already scaled by `1 - alpha`), the only sequential part of the feedforward network.
"""

from __future__ import annotations

import warnings

import torch

# Norse 1.1 scripts functions with torch.jit at import, which recent torch deprecates loudly.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
from norse.torch.functional.lif_box import LIFBoxFeedForwardState, LIFBoxParameters  # noqa: E402
from norse.torch.functional.reset import reset_subtract  # noqa: E402

from models import native  # noqa: E402
from models.surrogate import spike  # noqa: E402


def lif_parameters(alpha: torch.Tensor, v_th: torch.Tensor, dt: float = 1e-3) -> LIFBoxParameters:
    """Norse parameters for leak `alpha` per step (dimensionless) and threshold `v_th`."""
    return LIFBoxParameters(
        tau_mem_inv=(1.0 - alpha) / dt,
        v_leak=torch.zeros_like(v_th),
        v_th=v_th,
        v_reset=torch.zeros_like(v_th),
        method="boxcar",
        alpha=torch.as_tensor(0.5),
        reset_method=reset_subtract,
    )


def lif_box_boxcar_step(
    input_tensor: torch.Tensor,
    state: LIFBoxFeedForwardState,
    p: LIFBoxParameters,
    dt: float = 1e-3,
    width: float = 0.5,
) -> tuple[torch.Tensor, LIFBoxFeedForwardState]:
    """One Euler step of Norse's box LIF, spiking through the boxcar surrogate.

    Equation: `v' = v + dt * tau_mem_inv * (I + v_leak - v)`, `z = H(v' - v_th)`,
    then `p.reset_method` (Norse's `reset_subtract` here).

    >>> p = lif_parameters(torch.tensor(0.5), torch.tensor(1.0))
    >>> z, s = lif_box_boxcar_step(torch.tensor(4.0), LIFBoxFeedForwardState(torch.tensor(0.0)), p)
    >>> z.item(), s.v.item()
    (1.0, 1.0)
    """
    dv = dt * p.tau_mem_inv * (input_tensor + p.v_leak - state.v)
    v_decayed = state.v + dv
    z = spike(v_decayed - p.v_th, width)
    v_new = p.reset_method(z, v_decayed, p.v_reset, p.v_th)
    return z, LIFBoxFeedForwardState(v=v_new)


class _NativeScan(torch.autograd.Function):
    """The scan from rest in the compiled kernel, with its backward through the boxcar surrogate."""

    @staticmethod
    def forward(ctx, drive, alpha, v_th, width, lib):  # type: ignore[override]
        k, _, b, h = drive.shape
        v = drive.new_zeros(k, b, h)
        z, vpre = native.forward(lib, drive.detach(), alpha.detach().reshape(-1, h), v_th.detach().reshape(-1, h), v,
                                 keep_membrane=True)
        ctx.save_for_backward(vpre, alpha, v_th)
        ctx.width, ctx.lib = width, lib
        return z

    @staticmethod
    def backward(ctx, grad_z):  # type: ignore[override]
        vpre, alpha, v_th = ctx.saved_tensors
        h = vpre.shape[-1]
        gd, ga, gt = native.backward(ctx.lib, grad_z, vpre, alpha.detach().reshape(-1, h),
                                     v_th.detach().reshape(-1, h), ctx.width,
                                     ctx.needs_input_grad[1], ctx.needs_input_grad[2])
        ga = None if ga is None else ga.sum(1, keepdim=True).sum_to_size(alpha.shape)
        gt = None if gt is None else gt.sum(1, keepdim=True).sum_to_size(v_th.shape)
        return gd, ga, gt, None, None


def _native_args(drive: torch.Tensor, *consts: torch.Tensor) -> bool:
    """The kernel takes per-network constants [K or 1, 1, H] and a float32 CPU drive."""
    k, h = drive.shape[0], drive.shape[-1]
    return (native.applies(drive, *consts) and all(
        c.dim() == 3 and c.shape[1] == 1 and c.shape[2] == h and c.shape[0] in (1, k) for c in consts))


def lif_scan(drive: torch.Tensor, alpha: torch.Tensor, v_th: torch.Tensor,
             width: float = 0.5, v: torch.Tensor | None = None, smooth: float = 0.0,
             reset: str = "subtract", kernel: native.Kernel | None = None) -> torch.Tensor:
    """Spikes [K, T, B, H] of LIF neurons driven by `drive = (1 - alpha) * I`.

    Args:
        drive: [K, T, B, H] input drive, already scaled by `1 - alpha`.
        alpha: leak per step, broadcastable to [K, B, H] (e.g. [K, 1, H]).
        v_th: threshold, broadcastable to [K, B, H].
        width: boxcar half-width of the surrogate gradient.
        v: inference only: membrane state [K, B, H] carried in from an earlier chunk of
            time steps, updated in place (None: start at rest).
        smooth: when > 0, a non-spiking control: `z = sigmoid((v - v_th) / smooth)` instead
            of the Heaviside step (same reset by subtraction), a network whose loss is smooth
            in its weights.
        reset: `subtract` (v -= z * v_th) or `zero` (v = 0 where z; imported Norse/NIR models).
        kernel: the LIF path (default: the process's `native.KERNEL`).

    The compiled kernel (models/native.py) runs the inference scan wherever it applies, and
    the training scan inside `Kernel.training`; both give the eager spikes bit for bit.
    """
    steps = drive.unbind(1)  # unbind, not drive[:, t]: indexing makes backward zero-fill per step
    if smooth > 0:
        v = torch.zeros_like(steps[0])
        zs = []
        for d in steps:
            v = alpha * v + d
            z = torch.sigmoid((v - v_th) / smooth)
            v = v - z * v_th
            zs.append(z)
        return torch.stack(zs, 1)
    if torch.is_grad_enabled() and (drive.requires_grad or alpha.requires_grad or v_th.requires_grad):
        lib = (kernel or native.KERNEL).training_lib
        if lib is not None and v is None and reset == "subtract" and _native_args(drive, alpha, v_th):
            return _NativeScan.apply(drive, alpha, v_th, width, lib)
        v = torch.zeros_like(steps[0])
        zs = []
        for d in steps:
            v = alpha * v + d
            z = spike(v - v_th, width)
            v = v - z * (v_th if reset == "subtract" else v)
            zs.append(z)
        return torch.stack(zs, 1)
    if v is None:
        v = drive.new_zeros(drive.shape[0], *drive.shape[2:])
    return scan_chunk(drive, alpha, v_th, v, reset=reset, kernel=kernel)


def scan_chunk(cur: torch.Tensor, alpha: torch.Tensor, v_th: torch.Tensor, v: torch.Tensor,
               scale: torch.Tensor | None = None, shift: torch.Tensor | None = None,
               count: torch.Tensor | None = None, spikes: bool = True, reset: str = "subtract",
               kernel: native.Kernel | None = None) -> torch.Tensor | None:
    """Inference over one chunk [K, T, B, H]: drive `cur * scale + shift` (or `cur`), membrane `v`
    [K, B, H] updated in place, spike counts added to `count` [K, B, H] when given.

    The one place that chooses the path: the compiled kernel (drive, scan and count fused)
    where it applies, else the same arithmetic in eager PyTorch. `scale`, `shift`, `alpha`,
    `v_th` are [K or 1, 1, H]. Returns the spikes, or None when `spikes` is False and the
    kernel only counted them.
    """
    h = cur.shape[-1]
    consts = [c for c in (alpha, v_th, scale, shift) if c is not None]
    fits = reset == "subtract" and _native_args(cur, *consts) and v.is_contiguous() and native.applies(v)
    lib = (kernel or native.KERNEL).library(cur.numel()) if fits else None
    if lib is not None:
        flat = [None if c is None else c.reshape(-1, h) for c in (alpha, v_th, scale, shift)]
        z, _ = native.forward(lib, cur, flat[0], flat[1], v, scale=flat[2], shift=flat[3], spikes=spikes, count=count)
        return z
    drive = cur if scale is None else cur * scale.unsqueeze(1) + shift.unsqueeze(1)
    # Eager: in place, written straight into the output (no per-step temporaries).
    out = torch.empty_like(drive)
    alpha, v_th = alpha.expand_as(v), v_th.expand_as(v)
    for t, d in enumerate(drive.unbind(1)):
        v.mul_(alpha).add_(d)
        z = out[:, t]
        torch.gt(v, v_th, out=z)  # writes 0.0/1.0 directly: 10x faster than copy_(v > v_th)
        if reset == "subtract":
            v.addcmul_(z, v_th, value=-1.0)
        else:  # imported models reset to 0; the kernel implements the trained subtraction only
            v.masked_fill_(z.bool(), 0.0)
    if count is not None:
        count += out.sum(1)
    return out
