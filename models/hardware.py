"""Hardware effects the forward pass applies itself: per-step read noise and forced spikes.

These act during the time scan (read noise is redrawn at every step; dead and saturated
neurons override the spikes), so they cannot be applied to the weights beforehand.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor


def read_noise_generators(t: Mapping[str, Tensor], layer: str, offset: int) -> list[torch.Generator] | None:
    """One generator per network for a layer's read noise, fixed by (its draw's seed, offset)."""
    seeds = t.get(f"{layer}.read_noise_seed")
    if seeds is None:
        return None
    return [torch.Generator().manual_seed((int(s) * 1_000_003 + offset) % (2**63 - 1)) for s in seeds.tolist()]


def add_read_noise(cur: Tensor, level: Tensor, gens: list[torch.Generator] | None) -> Tensor:
    """cur + level * RMS(cur) * eps per network, eps redrawn for every step and neuron.

    `gens` holds one generator per network (K of them), so each network's noise stream is
    its own; the RMS is that network's over the rows of this pass.
    """
    if gens is None:
        raise ValueError("read noise needs `read_noise_seed` per network (set by the read-noise perturbation)")
    rms = cur.square().mean(dim=(1, 2), keepdim=True).sqrt()
    eps = torch.stack([torch.randn(cur.shape[1:], generator=g) for g in gens]).to(cur.device, cur.dtype)
    return cur + level.view(-1, 1, 1) * rms * eps


def force_spikes(z: Tensor, dead: Tensor | None, saturated: Tensor | None) -> Tensor:
    """Dead neurons never fire, saturated ones fire at every step (z is [K, t, B, H])."""
    k = z.shape[0]
    if dead is not None:
        z = z * (1.0 - dead).view(k, 1, 1, -1)
    if saturated is not None:
        z = torch.maximum(z, saturated.view(k, 1, 1, -1).to(z.dtype))
    return z
