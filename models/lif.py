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


def lif_scan(drive: torch.Tensor, alpha: torch.Tensor, v_th: torch.Tensor,
             width: float = 0.5, v: torch.Tensor | None = None, smooth: float = 0.0) -> torch.Tensor:
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
        v = torch.zeros_like(steps[0])
        zs = []
        for d in steps:
            v = alpha * v + d
            z = spike(v - v_th, width)
            v = v - z * v_th
            zs.append(z)
        return torch.stack(zs, 1)
    # Inference: in place, written straight into the output (no per-step temporaries).
    out = torch.empty_like(drive)
    if v is None:
        v = torch.zeros_like(steps[0])
    alpha = alpha.expand_as(v)
    v_th = v_th.expand_as(v)
    for t, d in enumerate(steps):
        v.mul_(alpha).add_(d)
        z = out[:, t]
        torch.gt(v, v_th, out=z)  # writes 0.0/1.0 directly: 10x faster than copy_(v > v_th)
        v.addcmul_(z, v_th, value=-1.0)
    return out


def _chunk_drive_scan(cur: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, alpha: torch.Tensor,
                      v_th: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inference: drive = cur * scale + shift for a [K, t, B, H] chunk, then the LIF steps.

    Returns spikes [K, t, B, H], the final membrane, and the spike count over the chunk
    [K, B, H]. Written for torch.compile, which fuses the unrolled chunk into one loop.
    """
    zs = []
    count = torch.zeros_like(v)
    for c in cur.unbind(1):
        v = alpha * v + (c * scale + shift)
        z = (v > v_th).to(c.dtype)
        v = v - z * v_th
        count = count + z
        zs.append(z)
    return torch.stack(zs, 1), v, count


_compiled = None


def compiled_chunk_scan():
    """The fused chunk scan, compiled on first use (tens of seconds; cached by inductor on disk)."""
    global _compiled
    if _compiled is None:
        _compiled = torch.compile(_chunk_drive_scan, dynamic=True)
    return _compiled
