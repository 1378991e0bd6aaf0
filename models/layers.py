"""Small pieces the training and the inference passes share: inference BatchNorm as an
affine map (and back), the clamped leak and the input gain of the membrane, the synaptic current
filter of current-based neurons, and the [B, T, D] -> [T*B, D] layout of inputs."""

from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import Tensor

from models.model_config import ForwardOptions, ModelConfig


GEMM_ROW_BLOCK = 4  # MKL's sgemm computes the last rows mod 4 with other code, which rounds differently (measured)


def row_invariant(op: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """`op(x)` for a row-wise product (rows on dim -2), with the rows padded to a multiple
    of `GEMM_ROW_BLOCK`, so that a row's result never depends on how many rows share the
    call (a batch's size, a time chunk's length). Measured on MKL: with whole blocks of 4,
    any subset of rows in any order gives each row the bits it gets in a 8192-row product."""
    rows = x.shape[-2]
    extra = -rows % GEMM_ROW_BLOCK
    if not extra:
        return op(x)
    pad = x.new_zeros(*x.shape[:-2], extra, x.shape[-1])
    return op(torch.cat([x, pad], -2))[..., :rows, :]


def bn_affine(t: Mapping[str, Tensor], prefix: str, eps: float) -> tuple[Tensor, Tensor]:
    """Inference BatchNorm as `x * scale + shift` from running statistics: ([K, H], [K, H])."""
    scale = t[f"{prefix}.weight"] * torch.rsqrt(t[f"{prefix}.running_var"] + eps)
    return scale, t[f"{prefix}.bias"] - t[f"{prefix}.running_mean"] * scale


def affine_bn(prefix: str, scale: Tensor, shift: Tensor, eps: float) -> dict[str, Tensor]:
    """BatchNorm tensors that compute exactly `x * scale + shift` (the inverse of `bn_affine`):
    statistics 0 and 1 - eps, so rsqrt(var + eps) = 1."""
    return {f"{prefix}.weight": scale, f"{prefix}.bias": shift,
            f"{prefix}.running_mean": torch.zeros_like(scale),
            f"{prefix}.running_var": torch.full_like(scale, 1.0 - eps)}


def flatten_input(x: Tensor) -> tuple[Tensor, int, int]:
    """[B, T, D] -> [T*B, D] (rows ordered (t, b)); [K, B, T, D] -> [K, T*B, D]."""
    if x.dim() == 3:
        bsz, steps, _ = x.shape
        return x.transpose(0, 1).reshape(steps * bsz, -1), steps, bsz
    bsz, steps = x.shape[1], x.shape[2]
    return x.transpose(1, 2).reshape(x.shape[0], steps * bsz, -1), steps, bsz


def leak(cfg: ModelConfig, t: Mapping[str, Tensor], p: str, opt: ForwardOptions) -> Tensor:
    """alpha [K, 1, H], clamped to its trained range unless the hardware moved it."""
    alpha = t[f"{p}.alpha"]
    if opt.clamp_alpha:
        alpha = alpha.clamp(cfg.alpha_min, cfg.alpha_max)
    return alpha.unsqueeze(1)


def drive_gain(cfg: ModelConfig, alpha: Tensor) -> Tensor:
    """What the input current is scaled by before it enters the membrane.

    Leaky neurons integrate `v = alpha v + (1 - alpha) I` (the Euler step of
    `tau dv/dt = -v + I`); integrate-and-fire neurons (`if`, alpha = 1) add the input as
    charge per step, `v = v + I`, as Norse, snnTorch and Sinabs run NIR's IF.
    """
    return torch.ones_like(alpha) if cfg.neuron == "if" else 1.0 - alpha


def synaptic_filter(cur: Tensor, beta: Tensor, i: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Synaptic currents of current-based neurons: `i[t] = beta i[t-1] + (1 - beta) cur[t]`.

    The Euler step of NIR's CubaLIF synapse `tau_syn di/dt = -i + w_in S` with
    beta = 1 - dt / tau_syn (w_in already in the weights). It is linear and precedes the
    threshold, so it runs on the whole chunk before the membrane scan.

    Args:
        cur: [K, T, B, H] input currents.
        beta: [K, 1, H] synaptic decay per step.
        i: [K, B, H] currents carried from the previous chunk (None: at rest).

    Returns:
        the filtered currents [K, T, B, H] and the last step's [K, B, H].
    """
    i = torch.zeros_like(cur[:, 0]) if i is None else i
    gain, out = 1.0 - beta, []
    for step in range(cur.shape[1]):
        i = beta * i + gain * cur[:, step]
        out.append(i)
    return torch.stack(out, 1), i
