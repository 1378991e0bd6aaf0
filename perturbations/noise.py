"""Weight noise: additive (programming noise), multiplicative and log-normal."""

from __future__ import annotations

import torch

from perturbations.base import (CENTER_OPTION, Context, Scale, Tensors, copy, draw, layer_scale, log_normal_factor,
                                 register)


@register("gaussian", meaning="programming / device-to-device noise: each weight off by a fixed Gaussian error",
          level="std of the added noise relative to the layer scale s_l (max|w| by default, --scale; "
                "with --scale sigma, in units of each weight's posterior std)")
def gaussian(t: Tensors, level: float, gens: list[torch.Generator], ctx: Context) -> Tensors:
    """w' = w + level * s_l * eps, eps ~ N(0, 1), one eps per weight and draw."""
    out = copy(t)
    for n in ctx.weights(t):
        w = t[n]
        s = layer_scale(w, ctx.scale, t, n)
        out[n] = w + level * s * draw(tuple(w.shape[1:]), gens, w)
    return out


@register("multiplicative", meaning="gain error proportional to the weight (conductance-proportional noise)",
          level="relative std: w * (1 + level * eps)")
def multiplicative(t: Tensors, level: float, gens: list[torch.Generator], ctx: Context) -> Tensors:
    out = copy(t)
    for n in ctx.weights(t):
        w = t[n]
        out[n] = w * (1 + level * draw(tuple(w.shape[1:]), gens, w))
    return out


@register("lognormal", meaning="sign-preserving multiplicative error (log-normal device gain)",
          level="std of the log-gain: w * exp(level * eps)", options={"center": CENTER_OPTION})
def lognormal(t: Tensors, level: float, gens: list[torch.Generator], ctx: Context) -> Tensors:
    center = ctx.opt("center", "median", ("median", "mean"))
    out = copy(t)
    for n in ctx.weights(t):
        w = t[n]
        out[n] = w * log_normal_factor(level, draw(tuple(w.shape[1:]), gens, w), center)
    return out


@register("read-noise", meaning="cycle-to-cycle noise on synaptic currents, redrawn at every time step",
          level="std of the current noise relative to the RMS of the layer's synaptic currents at that step",
          version=3)
def read_noise(t: Tensors, level: float, gens: list[torch.Generator], ctx: Context) -> Tensors:
    """Sets `blocks.i.read_noise` and a noise seed per draw (`blocks.i.read_noise_seed`);
    the forward pass draws fresh noise at every step from that draw's own stream.

    The noise on current h of example b at step t is `level * rms * eps`, with `rms` the
    RMS of the layer's currents at (b, t) and `eps` a function of (this key, b, t, h)
    alone (`models.hardware.add_read_noise`).

    Version 3: noise and its reference no longer depend on how inference cuts the work
    (version 2 scaled by the RMS over a whole time chunk and drew the chunk's noise from a
    sequential generator, so a cell changed with the networks per pass and the cache size;
    version 1 seeded one stream from all the draws of a pass).
    """
    out = copy(t)
    k = next(iter(t.values())).shape[0]
    for layer in ctx.neurons():
        dev = t[f"{layer}.v_th"].device
        out[f"{layer}.read_noise"] = torch.full((k,), float(level), device=dev)
        seeds = [int(torch.randint(2**62, (1,), generator=g, device=g.device).item()) for g in gens]
        out[f"{layer}.read_noise_seed"] = torch.tensor(seeds, dtype=torch.int64, device=dev)
    return out


__all__ = ["gaussian", "multiplicative", "lognormal", "read_noise", "Scale"]
