"""Worst-case hardware within a budget: projected gradient ascent on the loss.

`adversarial(target=weights|thresholds, steps=N):EPS` finds, for each draw (a random
restart), the multiplicative offsets `delta` with |delta| <= EPS per parameter (relative
L-infinity budget: w' = w (1 + delta)) that maximise the loss the sweep hands in as
`ctx.objective`, by N steps of sign-gradient ascent (step EPS / 4, projected back into the
box) through the surrogate gradient, starting from a uniform draw in the box. Restarts are
the draws: each is a seed in the store, so intervals and summaries work unchanged.

`steps=0` is the random baseline of the same budget (uniform offsets in the box); so is
the attack's start, which is why the found loss is never below the random draw's. Without
an objective (outside a sweep) only the random start is applied. `ctx.group = M` ties the
offsets of M consecutive networks (the M posterior samples or members of one prediction
share one chip) and sums their gradients.
"""

from __future__ import annotations

import torch

from perturbations.base import Context, PerturbationError, Tensors, copy, draw, register

TARGETS = ("weights", "thresholds")


def _names(t: Tensors, ctx: Context, target: str) -> list[str]:
    if target == "weights":
        return ctx.weights(t)
    return [f"{layer}.v_th" for layer in ctx.neurons() if f"{layer}.v_th" in t]


def _check(options: dict, level: float) -> None:
    if options.get("target", "weights") not in TARGETS:
        raise PerturbationError(f"adversarial: target must be one of {', '.join(TARGETS)}")
    if level >= 1:
        raise PerturbationError(f"adversarial: a relative budget of {level:g} can flip signs; give it below 1")


@register("adversarial", meaning="the worst chip within a budget: offsets found by gradient ascent on the loss "
          "(restarts are the draws)", level="relative L-infinity budget per parameter: w (1 + delta), |delta| <= level",
          options={"target": ("weights", "weights (synapses) or thresholds (neurons)"),
                   "steps": ("10", "ascent steps; 0 = the random baseline (uniform in the budget)")},
          max_level=0.999, check=_check)
def adversarial(t: Tensors, level: float, gens: list[torch.Generator], ctx: Context) -> Tensors:
    target = ctx.opt("target", "weights", TARGETS)
    steps = int(ctx.num("steps", 10))
    if steps < 0:
        raise PerturbationError("adversarial: steps must be 0 or more")
    names = _names(t, ctx, target)
    group = max(1, int(getattr(ctx, "group", 1) or 1))
    heads = gens[::group]  # one restart per group of networks that share a chip
    delta = {n: (2 * draw(tuple(t[n].shape[1:]), heads, t[n], kind="uniform") - 1) * level for n in names}

    def moved(d: dict[str, torch.Tensor]) -> Tensors:
        out = copy(t)
        for n in names:
            out[n] = t[n] * (1 + d[n].repeat_interleave(group, dim=0))
        return out

    objective = getattr(ctx, "objective", None)
    if objective is None or steps == 0 or not names:
        return moved(delta)
    for _ in range(steps):
        leaves = {n: d.detach().requires_grad_(True) for n, d in delta.items()}
        with torch.enable_grad():
            loss = objective(moved(leaves))
            grads = torch.autograd.grad(loss, list(leaves.values()))
        delta = {n: (leaves[n].detach() + 0.25 * level * g.sign()).clamp(-level, level)
                 for n, g in zip(leaves, grads)}
    return {n: v.detach() for n, v in moved(delta).items()}
