"""IVON's diagonal Gaussian posterior, sampled with our own generator.

`q(w) = N(m, diag(sigma^2))` with `sigma = 1 / sqrt(ess * (hess + weight_decay))`
(IVON, Shen et al. 2024). Everything needed to sample lives in the checkpoint, so
BMA needs no optimizer object.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Iterator, Mapping

import torch
from torch import Tensor


@dataclass
class Posterior:
    """Posterior curvature per named parameter (the mean is the model's own weights).

    Attributes:
        hess: IVON's Hessian estimate per parameter name (same shape as the parameter).
        ess: effective sample size (the number of training examples).
        weight_decay: IVON's weight decay (the prior precision per example).
        hess_init: IVON's initial Hessian (None if unknown): sets the initial width.
    """

    hess: dict[str, Tensor]
    ess: float
    weight_decay: float
    hess_init: float | None = None

    def sigma(self) -> dict[str, Tensor]:
        return {n: torch.rsqrt(self.ess * (h + self.weight_decay)) for n, h in self.hess.items()}

    def sample(self, tensors: Mapping[str, Tensor], m: int, generator: torch.Generator) -> dict[str, Tensor]:
        """M posterior samples of every tensor, stacked on a leading axis.

        Tensors without a posterior (buffers: BN running statistics, thresholds) are shared,
        expanded without copy. Draws come from `generator` in a fixed name order.
        """
        sig = self.sigma()
        out = {}
        for name in sorted(tensors):
            v = tensors[name]
            if name in sig:
                eps = torch.randn((m, *v.shape), generator=generator, device=generator.device, dtype=v.dtype)
                out[name] = v.unsqueeze(0) + sig[name].to(v.device).unsqueeze(0) * eps.to(v.device)
            else:
                out[name] = v.unsqueeze(0).expand(m, *v.shape)
        return out

    def sigma_summary(self) -> dict[str, float]:
        """Median, mean and max posterior std over all parameters (users should see it)."""
        s = torch.cat([v.flatten() for v in self.sigma().values()]).double()
        return {"sigma_median": s.median().item(), "sigma_mean": s.mean().item(), "sigma_max": s.max().item()}


def initial_sigma(post: Posterior) -> float | None:
    """The width every parameter starts at, 1/sqrt(ess (hess_init + wd))."""
    return None if post.hess_init is None else 1.0 / math.sqrt(post.ess * (post.hess_init + post.weight_decay))


def prior_sigma(post: Posterior) -> float:
    """The width a parameter with zero curvature runs to, 1/sqrt(ess wd) (inf without weight decay)."""
    return math.inf if post.weight_decay <= 0 else 1.0 / math.sqrt(post.ess * post.weight_decay)


def _quantiles(x: Tensor) -> dict[str, float]:
    q = torch.quantile(x, torch.tensor([0.1, 0.5, 0.9], dtype=x.dtype))
    return {"q10": q[0].item(), "median": q[1].item(), "q90": q[2].item(), "max": x.max().item()}


MOVED = 0.10  # a sigma "moved" when it is more than 10% away from the initial width


def _share(x: float) -> str:
    """A fraction as a percentage that never rounds a part up to all, or down to none."""
    if 0.999 < x < 1:
        return ">99.9%"
    if 0 < x < 0.001:
        return "<0.1%"
    return f"{x:.1%}".replace(".0%", "%")


def diagnose(post: Posterior, means: Mapping[str, Tensor]) -> dict:
    """What the posterior is: per parameter tensor the sigma quantiles, the fraction of
    entries whose sigma moved more than 10% from the initial width, the fraction sitting
    at the prior's width, and the median signal-to-noise |mu| / sigma; then a verdict.

    Verdicts: `initial` (hess never left hess_init: isotropic noise set by hess_init),
    `uniform` (it moved, but by the same factor everywhere: q90/q10 < 1.2), `prior`
    (most sigmas ran to 1/sqrt(ess wd): curvature estimates near zero), `learnt`.
    """
    sig = post.sigma()
    s0, sp = initial_sigma(post), prior_sigma(post)
    layers, flat_s, flat_moved, flat_prior = {}, [], [], []
    for name in sorted(sig):
        s = sig[name].detach().double().flatten().cpu()
        mu = means[name].detach().double().flatten().cpu()
        moved = (s / s0 - 1).abs() > MOVED if s0 is not None else torch.zeros_like(s, dtype=torch.bool)
        at_prior = (s / sp - 1).abs() < MOVED if math.isfinite(sp) else torch.zeros_like(s, dtype=torch.bool)
        layers[name] = {"count": s.numel(), **_quantiles(s), "moved": moved.double().mean().item(),
                        "at_prior": at_prior.double().mean().item(), "snr_median": (mu.abs() / s).median().item()}
        flat_s.append(s)
        flat_moved.append(moved)
        flat_prior.append(at_prior)
    s_all = torch.cat(flat_s)
    moved = torch.cat(flat_moved).double().mean().item()
    at_prior = torch.cat(flat_prior).double().mean().item()
    q = _quantiles(s_all)
    spread = q["q90"] / q["q10"]
    measured = f"sigma median {q['median']:.4g} (q10 {q['q10']:.4g}, q90 {q['q90']:.4g})"
    if s0 is not None and moved < MOVED:
        verdict, text = "initial", (f"still at its initial width: {measured}, with {_share(1 - moved)} of parameters "
                                    f"within {MOVED:.0%} of the initial width 1/sqrt(ess (hess_init + wd)) = "
                                    f"{s0:.4g}; isotropic noise set by hess_init, not a learnt posterior (let hess "
                                    f"adapt: lower beta2)")
    elif at_prior > 0.5:
        verdict, text = "prior", (f"run to the prior's width: {measured}, with {_share(at_prior)} of parameters "
                                  f"within {MOVED:.0%} of 1/sqrt(ess wd) = {sp:.4g}: curvature estimates near zero "
                                  f"(raise ess or weight decay)")
    elif spread < 1.2:
        verdict, text = "uniform", (f"moved from {s0:.3g} but uniformly (sigma q10/q90 {q['q10']:.3g}/{q['q90']:.3g}): "
                                    f"a rescaled initial width, not shaped by curvature")
    else:
        verdict, text = "learnt", (f"learnt: sigma moved for {moved:.0%} of parameters, q10/median/q90 "
                                   f"{q['q10']:.3g}/{q['median']:.3g}/{q['q90']:.3g}, spread x{spread:.1f}")
    return {"verdict": verdict, "text": f"IVON posterior {text}", "initial_sigma": s0, "prior_sigma": sp if math.isfinite(sp) else None,
            "moved": moved, "at_prior": at_prior, "sigma": q, "layers": layers}


def hess_by_name(optimizer, named: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Split IVON's flat per-group `hess` vectors back into one tensor per parameter name."""
    by_id = {id(p): n for n, p in named.items()}
    out = {}
    for group in optimizer.param_groups:
        off = 0
        for p in group["params"]:
            k = p.numel()
            out[by_id[id(p)]] = group["hess"][off:off + k].view(p.shape).detach().clone()
            off += k
    return out


@contextlib.contextmanager
def ivon_sampled(optimizer, generator: torch.Generator, train: bool = True) -> Iterator[None]:
    """`optimizer.sampled_params(train)` made reproducible and exception-safe.

    IVON draws from the global RNG: fork it and seed it from our generator. IVON restores
    the mean weights only on a clean exit (no `finally`); on an exception we put them back.
    """
    params = [p for g in optimizer.param_groups for p in g["params"]]
    saved = [p.detach().clone() for p in params]
    devices = [p.device for p in params if p.device.type == "cuda"]
    seed = int(torch.randint(2**62, (1,), generator=generator).item())
    with torch.random.fork_rng(devices=sorted({d.index or 0 for d in devices})):
        torch.manual_seed(seed)
        try:
            with optimizer.sampled_params(train=train):
                yield
        except BaseException:
            with torch.no_grad():
                for p, s in zip(params, saved):
                    p.copy_(s)
            raise
