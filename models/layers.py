"""Small pieces the training and the inference passes share: inference BatchNorm as an
affine map, the clamped leak, and the [B, T, D] -> [T*B, D] layout of inputs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import torch
from torch import Tensor

if TYPE_CHECKING:
    from models.network import ForwardOptions, ModelConfig


def bn_affine(t: Mapping[str, Tensor], prefix: str, eps: float) -> tuple[Tensor, Tensor]:
    """Inference BatchNorm as `x * scale + shift` from running statistics: ([K, H], [K, H])."""
    scale = t[f"{prefix}.weight"] * torch.rsqrt(t[f"{prefix}.running_var"] + eps)
    return scale, t[f"{prefix}.bias"] - t[f"{prefix}.running_mean"] * scale


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
