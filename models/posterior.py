"""IVON's diagonal Gaussian posterior, sampled with our own generator.

`q(w) = N(m, diag(sigma^2))` with `sigma = 1 / sqrt(ess * (hess + weight_decay))`
(IVON, Shen et al. 2024). Everything needed to sample lives in the checkpoint, so
BMA needs no optimizer object.
"""

from __future__ import annotations

import contextlib
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
    """

    hess: dict[str, Tensor]
    ess: float
    weight_decay: float

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
