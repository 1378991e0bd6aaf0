"""What a sweep learns about a perturbation before it evaluates: which tensors it touches and
whether it draws anything at all (a deterministic one needs one network per level, no chips)."""

from __future__ import annotations

import torch

from perturbations.base import Context
from perturbations.base import get as get_perturbation
from perturbations.spec import Spec, apply
from robustness.sweep.config import PerturbationPlan


def perturbed_tensors(spec: Spec, plan: PerturbationPlan, base: dict[str, torch.Tensor], seed: int,
                      ctx: Context) -> list[str]:
    """Which tensors a spec changes (or adds, e.g. read noise) at its most severe level."""
    one = {n: v[:1] for n, v in base.items()}
    level = min(plan.levels) if get_perturbation(spec.swept_name).level_is_bits else max(plan.levels)
    if level == 0 and get_perturbation(spec.swept_name).identity_at_zero(spec.swept_options):
        level = 0.1
    out = apply(spec, level, one, seed=seed, draws=[0], ctx=ctx)
    changed = (n for n in out if (n not in one or not torch.equal(out[n], one[n])) and not n.endswith("_seed"))
    return sorted({n.split(".xbar.")[0] + ".xbar (read-out)" if ".xbar." in n else n for n in changed})


def draws_nothing(spec: Spec, level: float, base: dict[str, torch.Tensor], seed: int, ctx: Context) -> bool:
    """True when two draws give the same network (e.g. quantize with nearest rounding)."""
    one = {n: v[:1] for n, v in base.items()}
    a = apply(spec, level, one, seed=seed, draws=[0], ctx=ctx)
    b = apply(spec, level, one, seed=seed, draws=[1], ctx=ctx)
    return a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
