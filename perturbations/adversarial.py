"""Worst-case hardware within a budget: projected gradient ascent on the loss.

`adversarial(target=..., budget=linf|logstd, steps=N):EPS` finds, for each draw (a random
restart), the hardware offsets within the budget that maximise the loss the sweep hands in
as `ctx.objective`, by N steps of projected gradient ascent through the surrogate gradient.
Restarts are the draws: each is a seed in the store, so intervals and summaries work
unchanged.

Targets, each the worst case of one random model:
  * `weights`: per-synapse gains, `w f(d)`;
  * `thresholds`: per-neuron thresholds, `v_th f(d)`;
  * `time_constants`: per-neuron membrane time constants, `tau f(d)` with `alpha = exp(-1/tau)`
    (integrate-and-fire layers, alpha = 1, and memoryless Threshold layers, alpha = 0, have none);
  * `mismatch`: all three at once (the `mismatch` perturbation's vth+tau+gain);
  * `quantized`: the weights stored as `bits`-bit codes (per tensor, the `quantize` grid):
    each weight may be stored as its nearest code or as the other neighbouring code when
    that lies less than EPS LSBs from the weight's exact value (EPS <= 1). Level 0 is
    nearest rounding (the `quantize` random model); level 1 lets the search pick every
    weight's rounding direction, so it bounds stochastic rounding (`quantize(rounding=
    stochastic)`). The search moves a continuous offset `d` (|d| <= EPS, LSBs) through a
    straight-through gradient; the chip it scores and returns always stores codes.
Budgets: `linf` (default) is relative L-infinity, `f(d) = 1 + d`, `|d| <= EPS` per
parameter, steps of EPS/4 along the gradient's sign, starting uniform in the box. `logstd`
is the budget of the log-normal random models (`mismatch`): `f(d) = exp(d)` with
`||d||_2 <= EPS sqrt(n)` per tensor and restart (n parameters: the norm a random draw of
log-std EPS has) and `|d| <= cap EPS` per parameter (cap 4 by default: about the largest
offset among 10^4 Gaussian draws; without it the search spends the whole ball on a few
parameters, exp(EPS sqrt(n)) times larger, which no mismatch process makes). Steps of a
quarter radius along the normalised gradient, then clipped to the cap and rescaled into
the ball (a feasible point, not the exact Euclidean projection), starting from the random
model's draw brought into the same set.

The search keeps each prediction's best iterate (the start included), so the attacked loss
on the search batch is never below the random start's. `steps=0` is the random baseline of
the same budget. The sweep builds the objective on `examples` (32) clips held out from the
evaluated split. Without an objective (outside a sweep) only the random start is applied.
`ctx.group = M` ties the offsets of M consecutive networks (the M posterior samples of one
prediction share one chip) and sums their gradients. Cost per budget and pass: `steps`
forward-backward passes plus one forward, all restarts stacked in one batched pass.

Version 2: under BMA the `steps=0` baseline, like the search, puts the M posterior samples
of a prediction on one chip (version 1 gave each sample its own chip: another experiment).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from perturbations.base import Context, PerturbationError, Tensors, copy, draw, register
from perturbations.quantize import grid_step

TARGETS = ("weights", "thresholds", "time_constants", "mismatch", "quantized")
SEARCH_EXAMPLES = 32  # held-out examples per ascent step unless `examples=` says otherwise
MAX_STEPS, MAX_EXAMPLES = 1000, 4096  # 100x the default search; past this a sweep unit runs for days
BUDGETS = ("linf", "logstd")


@dataclass
class _Site:
    """One perturbed tensor: its name and how offsets `d` [heads, ...] move it."""
    name: str
    move: Callable[[Tensor], Tensor]


def _sites(t: Tensors, ctx: Context, target: str, factor: Callable[[Tensor], Tensor], group: int,
           level: float) -> list[_Site]:
    def rep(d: Tensor) -> Tensor:
        return d.repeat_interleave(group, dim=0)

    def scaled(n: str) -> _Site:
        return _Site(n, lambda d, w=t[n]: w * factor(rep(d)))

    def leak(n: str) -> _Site:
        tau = -1.0 / torch.log(t[n])
        return _Site(n, lambda d, tau=tau: torch.exp(-1.0 / (tau * factor(rep(d)))))

    def on_grid(n: str, bits: int) -> _Site:
        step, qmax = grid_step(t[n], bits), 2 ** (bits - 1) - 1
        exact = (t[n] / step).clamp(-qmax, qmax)  # the weight in LSBs
        nearest, low = torch.round(exact), torch.floor(exact)

        def stored(d: Tensor) -> Tensor:
            d = rep(d)
            code = torch.minimum(torch.maximum(torch.round(exact + d), low), low + 1)  # a neighbouring code
            code = torch.where((code == nearest) | ((code - exact).abs() < level), code, nearest)
            return (code * step).detach() + (d - d.detach()) * step  # codes forward, straight-through back
        return _Site(n, stored)

    thresholds = [scaled(f"{layer}.v_th") for layer in ctx.neurons() if f"{layer}.v_th" in t]
    leaks = [leak(f"{layer}.alpha") for layer in ctx.neurons()
             if f"{layer}.alpha" in t and bool(((t[f"{layer}.alpha"] > 0) & (t[f"{layer}.alpha"] < 1)).all())]
    if target == "thresholds":
        return thresholds
    if target == "time_constants":
        return leaks
    if target == "mismatch":
        return thresholds + leaks + [scaled(n) for n in ctx.weights(t)]
    if target == "quantized":
        return [on_grid(n, int(ctx.num("bits", 8))) for n in ctx.weights(t)]
    return [scaled(n) for n in ctx.weights(t)]


def _option(options: dict, key: str, default: float) -> float:
    try:
        v = float(options.get(key, default))
    except ValueError:
        raise PerturbationError(f"adversarial: {key}={options.get(key)!r} is not a number") from None
    if not math.isfinite(v):
        raise PerturbationError(f"adversarial: {key} must be finite")
    return v


def _check(options: dict, level: float) -> None:
    target, budget = options.get("target", "weights"), options.get("budget", "linf")
    steps = _option(options, "steps", 10)
    if steps != int(steps) or not 0 <= steps <= MAX_STEPS:
        raise PerturbationError(f"adversarial: steps must be a whole number from 0 to {MAX_STEPS}, "
                                f"got {options.get('steps')}")
    examples = _option(options, "examples", SEARCH_EXAMPLES)
    if examples != int(examples) or not 1 <= examples <= MAX_EXAMPLES:
        raise PerturbationError(f"adversarial: examples must be a whole number from 1 to {MAX_EXAMPLES}, "
                                f"got {options.get('examples')}")
    if not _option(options, "cap", 4) > 0:
        raise PerturbationError("adversarial: cap must be above 0")
    if target not in TARGETS:
        raise PerturbationError(f"adversarial: target must be one of {', '.join(TARGETS)}")
    if budget not in BUDGETS:
        raise PerturbationError(f"adversarial: budget must be one of {', '.join(BUDGETS)}")
    if target == "quantized":
        if budget != "linf":
            raise PerturbationError("adversarial: target=quantized offsets are additive (in LSBs): use budget=linf")
        bits = _option(options, "bits", 8)
        if bits != int(bits) or not 2 <= bits <= 16:
            raise PerturbationError(f"adversarial: bits must be an integer from 2 to 16, got {options.get('bits')}")
        if level > 1:
            raise PerturbationError(f"adversarial: a budget of {level:g} LSB reaches past the neighbouring codes; "
                                    "give at most 1 (1 = any rounding direction)")
    elif budget == "linf" and level >= 1:
        raise PerturbationError(f"adversarial: a relative budget of {level:g} can flip signs; give it below 1 "
                                "(or budget=logstd)")


def _norm(d: Tensor) -> Tensor:
    """L2 norm per restart, broadcastable to `d`."""
    return d.flatten(1).norm(dim=1).view(-1, *([1] * (d.dim() - 1)))


@register("adversarial", meaning="the worst chip within a budget: offsets found by gradient ascent on the loss "
          "(restarts are the draws)",
          level="budget per parameter: relative L-infinity |delta| <= level (x (1 + delta)); with budget=logstd "
                "the log-std of the random model (||log factor||_2 <= level sqrt(n) per tensor); "
                "for target=quantized, LSBs (a code other than the nearest is allowed within level LSBs; <= 1)",
          zero_is_identity=lambda options: options.get("target", "weights") != "quantized",
          options={"target": ("weights", "weights | thresholds | time_constants | mismatch (all three) | quantized"),
                   "budget": ("linf", "linf (relative L-infinity box) | logstd (L2 ball of the random model's "
                                      "log-std draw)"),
                   "bits": ("8", "target=quantized: code width"),
                   "cap": ("4", "budget=logstd: largest offset of one parameter, in log-stds"),
                   "steps": ("10", "ascent steps; 0 = the random baseline of the same budget"),
                   "examples": (str(SEARCH_EXAMPLES), "held-out clips the search ascends on (the sweep's; more "
                                                      "finds worse chips, at proportional cost)")},
          check=_check, version=2)
def adversarial(t: Tensors, level: float, gens: list[torch.Generator], ctx: Context) -> Tensors:
    target, budget = ctx.opt("target", "weights", TARGETS), ctx.opt("budget", "linf", BUDGETS)
    steps = int(ctx.num("steps", 10))
    if steps < 0:
        raise PerturbationError("adversarial: steps must be 0 or more")
    group = max(1, int(getattr(ctx, "group", 1) or 1))
    heads = gens[::group]  # one restart per group of networks that share a chip
    factor = torch.exp if budget == "logstd" else (lambda d: 1 + d)
    sites = _sites(t, ctx, target, factor, group, level)
    shapes = {s.name: tuple(t[s.name].shape[1:]) for s in sites}
    if budget == "logstd":
        radius = {n: level * math.sqrt(math.prod(sh)) for n, sh in shapes.items()}
        cap = ctx.num("cap", 4.0)
        if not cap > 0:
            raise PerturbationError("adversarial: cap must be above 0")
        cap *= level  # level 0: every offset 0, the clean chip

        def project(n: str, d: Tensor) -> Tensor:
            d = d.clamp(-cap, cap)
            return d * (radius[n] / _norm(d).clamp_min(1e-30)).clamp(max=1.0)

        def ascend(n: str, d: Tensor, g: Tensor) -> Tensor:
            return project(n, d + 0.25 * radius[n] * g / _norm(g).clamp_min(1e-30))

        delta = {n: project(n, level * draw(sh, heads, t[n])) for n, sh in shapes.items()}
    else:
        def ascend(n: str, d: Tensor, g: Tensor) -> Tensor:
            return (d + 0.25 * level * g.sign()).clamp(-level, level)

        delta = {n: (2 * draw(sh, heads, t[n], kind="uniform") - 1) * level for n, sh in shapes.items()}

    def moved(d: dict[str, Tensor]) -> Tensors:
        out = copy(t)
        for s in sites:
            out[s.name] = s.move(d[s.name])
        return out

    objective = getattr(ctx, "objective", None)
    if objective is None or steps == 0 or not sites:
        return moved(delta)
    best, best_loss = delta, None
    for step in range(steps + 1):  # the last pass only scores the last iterate
        leaves = {n: d.detach().requires_grad_(step < steps) for n, d in delta.items()}
        with torch.set_grad_enabled(step < steps):
            loss = objective(moved(leaves)).reshape(-1)  # per prediction
            grads = torch.autograd.grad(loss.sum(), list(leaves.values())) if step < steps else None
        best, best_loss = _keep_best(best, best_loss, {n: v.detach() for n, v in leaves.items()}, loss.detach())
        if grads is not None:
            delta = {n: ascend(n, leaves[n].detach(), g) for n, g in zip(leaves, grads)}
    return {n: v.detach() for n, v in moved(best).items()}


def _keep_best(best: dict[str, Tensor], best_loss: Tensor | None, cand: dict[str, Tensor],
               loss: Tensor) -> tuple[dict[str, Tensor], Tensor]:
    """Per prediction, the iterate with the highest loss so far (each prediction owns heads/P restarts)."""
    if best_loss is None:
        return cand, loss
    better = loss > best_loss
    per = next(iter(cand.values())).shape[0] // loss.numel()
    pick = better.repeat_interleave(per)
    out = {n: torch.where(pick.view(-1, *([1] * (c.dim() - 1))), c, best[n]) for n, c in cand.items()}
    return out, torch.maximum(loss, best_loss)
