"""Hard faults: stuck-at synapses, dead and saturated neurons (the SpikeFI fault models)."""

from __future__ import annotations

import torch

from perturbations.base import Context, Tensors, copy, draw, layer_scale, register, Scale


@register("stuck-at", meaning="stuck synapses: a fraction of weights frozen at 0 or at +-max|w|",
          level="fraction of synapses stuck (0-1)", max_level=1.0,
          options={"to": ("zero", "zero | max (+-max|w|, random sign) | mixed (half each)")})
def stuck_at(t: Tensors, level: float, gens: list[torch.Generator], ctx: Context) -> Tensors:
    to = ctx.opt("to", "zero", ("zero", "max", "mixed"))
    out = copy(t)
    for n in ctx.weights(t):
        w = t[n]
        shape = tuple(w.shape[1:])
        stuck = draw(shape, gens, w, "uniform") < level
        wmax = layer_scale(w, Scale.MAX)
        sign = torch.where(draw(shape, gens, w, "uniform") < 0.5, -1.0, 1.0).to(w.dtype)
        high = draw(shape, gens, w, "uniform") < (0.0 if to == "zero" else 1.0 if to == "max" else 0.5)
        value = torch.where(high, sign * wmax, torch.zeros_like(w))
        out[n] = torch.where(stuck, value, w)
    return out


def _neuron_mask(t: Tensors, level: float, gens: list[torch.Generator], ctx: Context, key: str) -> Tensors:
    out = copy(t)
    for layer in ctx.neurons():
        th = t[f"{layer}.v_th"]
        out[f"{layer}.{key}"] = (draw(tuple(th.shape[1:]), gens, th, "uniform") < level).to(th.dtype)
    return out


@register("dead-neuron", meaning="dead neurons: a fraction of neurons never fire",
          level="fraction of hidden neurons (0-1)", max_level=1.0)
def dead_neuron(t: Tensors, level: float, gens: list[torch.Generator], ctx: Context) -> Tensors:
    return _neuron_mask(t, level, gens, ctx, "dead")


@register("saturated-neuron", meaning="saturated neurons: a fraction of neurons fire at every time step",
          level="fraction of hidden neurons (0-1)", max_level=1.0)
def saturated_neuron(t: Tensors, level: float, gens: list[torch.Generator], ctx: Context) -> Tensors:
    return _neuron_mask(t, level, gens, ctx, "saturated")
