"""Fixed-pattern device mismatch of neurons and synapses (one draw = one chip)."""

from __future__ import annotations

import torch

from perturbations.base import CENTER_OPTION, Context, Tensors, copy, draw, log_normal_factor, register

TARGETS = ("vth", "tau", "gain")


@register("mismatch", meaning="fixed-pattern mismatch: per-neuron threshold and membrane time constant, "
                              "per-synapse gain, frozen for all inputs and time steps of one chip",
          level="relative std (std of the log; log-normal, so thresholds and time constants stay positive)",
          options={"targets": ("vth+tau+gain", "any of vth, tau, gain joined by +"), "center": CENTER_OPTION})
def mismatch(t: Tensors, level: float, gens: list[torch.Generator], ctx: Context) -> Tensors:
    """v_th' = v_th * exp(level * eps); tau' = tau * exp(level * eps) with alpha = exp(-1 / tau)
    (tau in time steps); w' = w * exp(level * eps) per synapse. With `center=mean` each factor
    is divided by exp(level^2 / 2), so that the constants keep their mean instead of their median.

    Adaptive neurons (adlif, radlif): `tau` also spreads each neuron's adaptation time
    constant (beta = exp(-1 / tau_w)), and `gain` its couplings a and b (the subthreshold and
    spike-triggered conductances into the adaptation current, each scaled by its own
    factor, sign kept), drawn after the neuron's threshold and leak. Recurrent synapses
    (rlif, radlif) are synapses: `gain` reaches them through their layer
    `blocks.i.recurrent`. Networks without these tensors draw exactly as before."""
    center = ctx.opt("center", "median", ("median", "mean"))
    targets = set(ctx.opt("targets", "vth+tau+gain").split("+"))
    unknown = targets - set(TARGETS)
    if unknown:
        from perturbations.base import PerturbationError

        raise PerturbationError(f"mismatch: unknown target(s) {', '.join(sorted(unknown))} (use {', '.join(TARGETS)})")
    out = copy(t)
    for layer in ctx.neurons():
        th = t[f"{layer}.v_th"]
        if "vth" in targets:
            out[f"{layer}.v_th"] = th * log_normal_factor(level, draw(tuple(th.shape[1:]), gens, th), center)
        if "tau" in targets:
            a = t[f"{layer}.alpha"]
            tau = -1.0 / torch.log(a)
            tau = tau * log_normal_factor(level, draw(tuple(a.shape[1:]), gens, a), center)
            out[f"{layer}.alpha"] = torch.exp(-1.0 / tau)
        if f"{layer}.adapt_beta" not in t:
            continue
        if "tau" in targets:
            b = t[f"{layer}.adapt_beta"]
            tau_w = -1.0 / torch.log(b) * log_normal_factor(level, draw(tuple(b.shape[1:]), gens, b), center)
            out[f"{layer}.adapt_beta"] = torch.exp(-1.0 / tau_w)
        if "gain" in targets:
            for name in ("adapt_a", "adapt_b"):
                c = t[f"{layer}.{name}"]
                out[f"{layer}.{name}"] = c * log_normal_factor(level, draw(tuple(c.shape[1:]), gens, c), center)
    if "gain" in targets:
        for n in ctx.weights(t):
            w = t[n]
            out[n] = w * log_normal_factor(level, draw(tuple(w.shape[1:]), gens, w), center)
    return out
