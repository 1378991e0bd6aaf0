"""What a chip holds: the network's tensors prepared for perturbation.

`deploy_tensors` clamps the leaks (and adaptation constants) to their trained range (a chip stores the value the
network used; mismatch may then move it anywhere) and, with `fold_bn`, folds every
BatchNorm into the synaptic weights and a constant bias current, as an on-chip
deployment does, so that weight perturbations hit the folded weights. The folded forward
equals the unfolded one up to float rounding (a few spikes in 10^8 flip), so the unfolded
forward stays the reference.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

from models.layers import affine_bn
from models.layers import bn_affine
from models.model_config import ModelConfig
from models.recurrent import RANGES


def _identity_bn(t: dict[str, Tensor], prefix: str, like: Tensor, eps: float, shift: Tensor | None = None) -> None:
    t.update(affine_bn(prefix, torch.ones_like(like), torch.zeros_like(like) if shift is None else shift, eps))


def deploy_tensors(cfg: ModelConfig, t: Mapping[str, Tensor], fold_bn: bool = False) -> dict[str, Tensor]:
    """K-stacked tensors ready for a chip (see module docstring)."""
    out = dict(t)
    for i in range(len(cfg.hidden)):
        a = out[f"blocks.{i}.alpha"]
        out[f"blocks.{i}.alpha"] = a.clamp(cfg.alpha_min, cfg.alpha_max)
        for name, (lo, hi) in RANGES.items():  # adaptive neurons' constants, as the forward pass clamps them
            if f"blocks.{i}.{name}" in out:
                out[f"blocks.{i}.{name}"] = out[f"blocks.{i}.{name}"].clamp(lo, hi)
    if not fold_bn:
        return out
    for i in range(len(cfg.hidden)):
        p = f"blocks.{i}"
        scale, shift = bn_affine(out, f"{p}.bn", cfg.bn_eps)  # [K, H]
        out[f"{p}.linear.weight"] = out[f"{p}.linear.weight"] * scale.unsqueeze(-1)
        if f"{p}.beta" in out:  # the shift is a membrane offset, not a current through the synapse
            out[f"{p}.linear.bias"] = out[f"{p}.linear.bias"] * scale
            _identity_bn(out, f"{p}.bn", scale, cfg.bn_eps, shift)
            continue
        if f"{p}.linear.bias" in out:
            shift = shift + scale * out[f"{p}.linear.bias"]
        out[f"{p}.linear.bias"] = shift
        _identity_bn(out, f"{p}.bn", scale, cfg.bn_eps)
    scale, shift = bn_affine(out, "readout.bn", cfg.bn_eps)
    w = out["readout.linear.weight"]
    out["readout.linear.bias"] = out["readout.linear.bias"] + torch.einsum("kch,kh->kc", w, shift)
    out["readout.linear.weight"] = w * scale.unsqueeze(1)
    _identity_bn(out, "readout.bn", scale, cfg.bn_eps)
    return out
