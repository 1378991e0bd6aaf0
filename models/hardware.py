"""Hardware effects the forward pass applies itself: per-step read noise and forced spikes.

These act during the time scan (read noise is redrawn at every step; dead and saturated
neurons override the spikes), so they cannot be applied to the weights beforehand.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

from models.counter_rng import counter_normal


def read_noise_keys(t: Mapping[str, Tensor], layer: str) -> Tensor | None:
    """The int64 noise key per network [K] of a layer's read noise (None: no read noise)."""
    return t.get(f"{layer}.read_noise_seed")


def add_read_noise(cur: Tensor, level: Tensor, keys: Tensor | None, example0: int, step0: int) -> Tensor:
    """Cycle-to-cycle read noise on synaptic currents `cur` [K, T, B, H].

    Each time step is one read of the array: current h of network k, example b and step t
    becomes `cur + level_k * rms * eps`, where `rms` is the root mean square of that read's
    currents over the layer's H neurons (same k, b, t) and `eps` a standard normal that
    depends only on (keys[k], example0 + b, step0 + t, h). So a network's noise, and the
    reference it is scaled by, never depend on which networks, examples or time steps
    share the pass (see models/counter_rng.py). A step with no input current has no noise.
    """
    if keys is None:
        raise ValueError("read noise needs `read_noise_seed` per network (set by the read-noise perturbation)")
    k, steps, bsz, width = cur.shape
    rms = cur.square().mean(-1, keepdim=True).sqrt()
    examples = torch.arange(example0, example0 + bsz)
    eps = counter_normal(keys.to(cur.device), examples, torch.arange(step0, step0 + steps), width).to(cur.dtype)
    return cur + level.view(-1, 1, 1, 1).to(cur.dtype) * rms * eps


def force_spikes(z: Tensor, dead: Tensor | None, saturated: Tensor | None) -> Tensor:
    """Dead neurons never fire, saturated ones fire at every step (z is [K, t, B, H])."""
    k = z.shape[0]
    if dead is not None:
        z = z * (1.0 - dead).view(k, 1, 1, -1)
    if saturated is not None:
        z = torch.maximum(z, saturated.view(k, 1, 1, -1).to(z.dtype))
    return z
