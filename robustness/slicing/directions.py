"""Directions in weight space for loss slices.

Random directions are drawn from a generator seeded by (slice seed, direction index) over
the moved tensors in sorted-name order, so every model of the same architecture gets the
same raw draw; `filter` and `layer` then rescale it to each model's own weights.

  unit      Gaussian direction of unit global norm (span in absolute weight units).
  filter    Li et al. (2018): each output row of each weight matrix rescaled to the norm of
            the same row of the weights (1D tensors: each entry to |w|).
  layer     each tensor rescaled to the tensor's norm.
  posterior sigma * eps of an IVON posterior, unnormalised: a = 1 is one posterior draw.
  hessian   top eigenvectors (unit norm) of the loss Hessian at the weights, by Lanczos on
            Hessian-vector products through the surrogate gradient.

Moved tensors: the synaptic weight matrices; with `include_bn` also BatchNorm scale/shift
and the readout bias. Leaks, thresholds and running statistics never move.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from basics.errors import BadInput
from models.checkpoint import Checkpoint
from models.model_config import ForwardOptions, ModelConfig, weight_layers
from models.network import forward_stacked

RANDOM_KINDS = ("unit", "filter", "layer")
KINDS = RANDOM_KINDS + ("hessian", "posterior")


def moved_names(cfg: ModelConfig, include_bn: bool = False) -> list[str]:
    """The tensors a slice moves, sorted."""
    names = [f"{layer}.linear.weight" for layer in weight_layers(cfg)]
    if include_bn:
        bns = [f"blocks.{i}.bn" for i in range(len(cfg.hidden))] + ["readout.bn"]
        names += [f"{b}.{p}" for b in bns for p in ("weight", "bias")] + ["readout.linear.bias"]
    return sorted(names)


def direction_generator(seed: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed(1_000_003 * seed + 7919 * index + 17)


def raw_direction(shapes: Mapping[str, torch.Size], g: torch.Generator) -> dict[str, Tensor]:
    """A standard Gaussian draw per moved tensor (float32, CPU), in sorted-name order."""
    return {n: torch.randn(shapes[n], generator=g) for n in sorted(shapes)}


def normalise(raw: Mapping[str, Tensor], weights: Mapping[str, Tensor], kind: str) -> dict[str, Tensor]:
    """Rescale a raw draw to `weights` as `kind` (unit, filter or layer) says."""
    if kind == "unit":
        norm = torch.sqrt(sum((d.double() ** 2).sum() for d in raw.values()))
        return {n: (d / norm).float() for n, d in raw.items()}
    out = {}
    for n, d in raw.items():
        w = weights[n].detach().cpu().float()
        if kind == "layer" or (kind == "filter" and d.dim() < 1):
            out[n] = d * w.norm() / d.norm().clamp_min(1e-12)
        elif kind == "filter" and d.dim() == 1:
            out[n] = d.sign() * w.abs()
        elif kind == "filter":
            out[n] = d * (w.norm(dim=-1, keepdim=True) / d.norm(dim=-1, keepdim=True).clamp_min(1e-12))
        else:
            raise BadInput(f"unknown direction {kind!r} ({', '.join(KINDS)})")
    return out


def posterior_direction(sigma: Mapping[str, Tensor], names: list[str], g: torch.Generator) -> dict[str, Tensor]:
    """sigma * eps over the moved tensors: the direction of one posterior draw."""
    return {n: sigma[n].detach().cpu().float() * torch.randn(sigma[n].shape, generator=g) for n in names}


def lanczos(hvp: Callable[[Tensor], Tensor], dim: int, k: int, g: torch.Generator,
            steps: int | None = None) -> tuple[Tensor, Tensor]:
    """Top-k (algebraically largest) eigenpairs of a symmetric operator given as `hvp`.

    Lanczos with full re-orthogonalisation (exact enough for the few dozen steps used
    here). Returns eigenvalues [k] (descending) and unit eigenvectors [k, dim] (float64).
    """
    steps = min(dim, steps or max(2 * k + 10, 20))
    q = torch.randn(dim, generator=g, dtype=torch.float64)
    q /= q.norm()
    qs, alphas, betas = [q], [], []
    for j in range(steps):
        w = hvp(qs[-1]).double()
        a = torch.dot(w, qs[-1])
        alphas.append(a)
        basis = torch.stack(qs)
        w = w - basis.T @ (basis @ w)
        w = w - basis.T @ (basis @ w)  # twice: keeps the basis orthogonal in float64
        b = w.norm()
        if j == steps - 1 or b < 1e-10:
            break
        betas.append(b)
        qs.append(w / b)
    m = len(alphas)
    tri = torch.diag(torch.stack(alphas)) + torch.diag(torch.stack(betas[:m - 1]), 1) + \
        torch.diag(torch.stack(betas[:m - 1]), -1) if m > 1 else torch.stack(alphas).reshape(1, 1)
    vals, vecs = torch.linalg.eigh(tri)
    order = torch.argsort(vals, descending=True)[:k]
    ritz = (torch.stack(qs[:m]).T @ vecs[:, order]).T
    return vals[order], ritz / ritz.norm(dim=1, keepdim=True)


def flatten(d: Mapping[str, Tensor], names: list[str]) -> Tensor:
    return torch.cat([d[n].reshape(-1).double() for n in names])


def unflatten(v: Tensor, like: Mapping[str, Tensor], names: list[str]) -> dict[str, Tensor]:
    out, i = {}, 0
    for n in names:
        size = like[n].numel()
        out[n] = v[i:i + size].reshape(like[n].shape).float()
        i += size
    return out


def hessian_eigen(ck: Checkpoint, names: list[str], x: Tensor, y: Tensor, k: int, seed: int,
                  device: torch.device | str = "cpu") -> tuple[list[float], list[dict[str, Tensor]]]:
    """Top-k eigenpairs of the loss Hessian over the moved tensors at the checkpoint's weights.

    Hessian-vector products by double backward through the surrogate gradient (the
    gradient training follows), on the fixed batches, inference BatchNorm.
    """
    t = {n: v.detach().unsqueeze(0).to(device) for n, v in ck.net.tensors().items()}
    base = flatten({n: t[n][0] for n in names}, names).float()
    like = {n: t[n][0] for n in names}
    xb, yb = x.to(device), y.to(device)

    def hvp(v: Tensor) -> Tensor:
        with torch.enable_grad():
            theta = base.clone().requires_grad_(True)
            moved = dict(t)
            for n, part in unflatten(theta, like, names).items():
                moved[n] = part.unsqueeze(0)
            logits, _ = forward_stacked(ck.net.cfg, moved, xb, ForwardOptions())
            loss = F.cross_entropy(logits[0], yb)
            (grad,) = torch.autograd.grad(loss, theta, create_graph=True)
            (hv,) = torch.autograd.grad(grad @ v.to(grad), theta)
        return hv.detach().double().cpu()

    vals, vecs = lanczos(hvp, base.numel(), k, torch.Generator().manual_seed(seed + 31))
    return vals.tolist(), [unflatten(v, {n: like[n].cpu() for n in names}, names) for v in vecs]
