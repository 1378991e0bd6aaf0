"""How a slice curve is computed: the networks a mode averages, its directions, batched
passes over stacked grid points, and the units (chunks of a curve's points) an executor runs.
`robustness.slicing.run` plans the curves, resumes and stores them; this module evaluates them.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from basics.modes import BNMode, CurveMode
from models.checkpoint import Checkpoint
from models.chunking import networks_per_pass
from models.model_config import ForwardOptions
from models.chip_profiles import parse_chip
from models.deploy import deploy_tensors
from models.fixed_point import to_chip
from robustness.evaluate import EvalConfig, stacked_logp, with_bn_statistics
from robustness.executors import Unit
from robustness.metrics import log_mean_exp
from robustness.slicing.config import SliceConfig
from robustness.slicing.directions import (direction_generator, hessian_eigen, normalise, posterior_direction,
                                         raw_direction)


@dataclass
class Networks:
    """The M networks a mode averages (M = 1 for point/mean) and how to move them."""

    base: dict[str, Tensor]         # K-stacked tensors at a = 0 (bma: posterior samples)
    weights: list[dict[str, Tensor]]  # per network: the weights directions are normalised to
    recalibrate: bool               # re-estimate BN statistics at every point (bma, bn=recalibrate)
    opt: ForwardOptions = field(default_factory=ForwardOptions)


def mode_networks(ck: Checkpoint, mode: str, cfg: SliceConfig) -> Networks:
    t = ck.net.tensors()
    if mode == CurveMode.ENSEMBLE:
        members = [{n: m[n].detach() for n in t} for m in ck.members]
        return Networks({n: torch.stack([m[n] for m in members]) for n in t}, members, False)
    if mode == CurveMode.BMA:
        g = torch.Generator().manual_seed(cfg.seed)
        base = ck.posterior.sample(t, cfg.mc_samples, g)
        return Networks(base, [t] * cfg.mc_samples, cfg.bn == BNMode.RECALIBRATE)
    opt = ForwardOptions(smooth_spikes=cfg.sigmoid if mode == CurveMode.SIGMOID else 0.0)
    return Networks({n: v.detach().unsqueeze(0) for n, v in t.items()}, [t], False, opt)


def _directions(kind: str, index: int, dims: int, weights: list[dict[str, Tensor]], names: list[str],
                ck: Checkpoint, cfg: SliceConfig, hessian: list[dict[str, Tensor]] | None) -> list[list[dict]]:
    """[axis][network] -> direction tensors of the moved names."""
    if kind == "hessian":
        return [[hessian[dims * index + ax]] * len(weights) for ax in range(dims)]
    g = direction_generator(cfg.seed, index)
    if kind == "posterior":
        sig = ck.posterior.sigma()
        return [[posterior_direction(sig, names, g)] * len(weights) for _ in range(dims)]
    shapes = {n: weights[0][n].shape for n in names}
    raws = [raw_direction(shapes, g) for _ in range(dims)]
    return [[normalise(raw, w, kind) for w in weights] for raw in raws]


def grid_points(cfg: SliceConfig) -> list[tuple[float, ...]]:
    c = cfg.coords
    return [(a,) for a in c] if cfg.dims == 1 else [(a, b) for a in c for b in c]


@torch.no_grad()
def curve_losses(ck: Checkpoint, nets: Networks, dirs: list[list[dict]], names: list[str], grid: list[tuple],
           x: Tensor, y: Tensor, calib: Tensor, cfg: SliceConfig, device: torch.device,
           exp_names: list[str] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Loss (NLL of the mode's averaged prediction) and accuracy at every grid point (flat).

    `exp_names` are tensors moved in log space (exponentiated after the move)."""
    m = next(iter(nets.base.values())).shape[0]
    per_pass = points_per_pass(ck, m, nets.recalibrate)
    losses, accs = [], []
    for p0 in range(0, len(grid), per_pass):
        pts = grid[p0:p0 + per_pass]
        coef = torch.tensor(pts, dtype=torch.float32)  # [P, dims]
        t = {}
        for n, v in nets.base.items():
            stacked = v.unsqueeze(0).expand(len(pts), *v.shape)
            if n in names:
                shift = sum(coef[:, ax].view(-1, 1, *[1] * (v.dim() - 1))
                            * torch.stack([d[n] for d in dirs[ax]]).unsqueeze(0) for ax in range(len(dirs)))
                stacked = stacked + shift.to(v.device, v.dtype)  # directions live on the CPU
            if n in exp_names:
                stacked = stacked.exp()
            t[n] = stacked.reshape(len(pts) * m, *v.shape[1:]).to(device)
        if nets.recalibrate:
            g = torch.Generator().manual_seed(cfg.seed)
            ck.posterior.sample(ck.net.tensors(), cfg.mc_samples, g)  # advance g exactly as eval does
            t = with_bn_statistics(ck.net.cfg, t, calib, EvalConfig(), g)
        if cfg.chip:  # each point is the chip programmed with the moved weights
            t = to_chip(ck.net.cfg, deploy_tensors(ck.net.cfg, t, fold_bn=True), parse_chip(cfg.chip).arithmetic)
        slp, _ = stacked_logp(ck.net.cfg, t, x, device, nets.opt)
        logp = log_mean_exp(slp.view(len(pts), m, *slp.shape[1:]).transpose(0, 1))  # average over the M networks
        losses.append(-logp.gather(-1, y.view(1, -1, 1).expand(len(pts), -1, 1)).squeeze(-1).mean(-1))
        accs.append((logp.argmax(-1) == y).double().mean(-1))
    return torch.cat(losses).numpy(), torch.cat(accs).numpy()


def points_per_pass(ck: Checkpoint, m: int, recalibrate: bool) -> int:
    """Grid points per batched pass of M networks each: the sweep's rule for stacked
    networks. BN re-estimation runs the training-mode forward, whose temporaries are about
    twice as large, so it counts each network twice."""
    return networks_per_pass(max(ck.net.cfg.hidden), m * (2 if recalibrate else 1))


def _between_curve(cks: list[Checkpoint], grid: list[tuple], x: Tensor, cfg: SliceConfig,
                   device: torch.device, y: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Every tensor on the line (1 - a) A + a B, except BN running variances, which are
    interpolated in log space so that they stay positive outside [0, 1]."""
    a, b = (ck.net.tensors() for ck in cks)
    log_var = [n for n in a if n.endswith("running_var")]
    base = {n: (a[n].clamp_min(1e-12).log() if n in log_var else a[n]).detach().unsqueeze(0) for n in a}
    line = {n: ((b[n].clamp_min(1e-12).log() - a[n].clamp_min(1e-12).log()) if n in log_var else b[n] - a[n]).detach()
            for n in a}
    nets = Networks(base, [a], False)
    return curve_losses(cks[0], nets, [[line]], list(a), grid, x, y, x, cfg, device, exp_names=log_var)


@dataclass(frozen=True)
class CurveJob:
    """One curve to compute: (model hash, mode, direction) and how it is split."""

    key: tuple[str, str, int]
    model: int  # index into the checkpoints
    mode: str | None  # None: a `between` line
    direction: int
    chunks: int = 1
    eigenvalues: list[float] | None = None


def _chunk_size(ck: Checkpoint, mode: str | None, cfg: SliceConfig, n: int, executor) -> int:
    """Grid points per unit: the whole curve in this process; one batched pass per Ray task,
    so that a few curves still spread over a cluster (same passes: the same numbers)."""
    if executor.name != "ray":
        return n
    m = len(ck.members) if mode == CurveMode.ENSEMBLE else cfg.mc_samples if mode == CurveMode.BMA else 1
    return points_per_pass(ck, m, mode == CurveMode.BMA and cfg.bn == BNMode.RECALIBRATE)


def slice_units(curves: list[CurveJob], cks: list[Checkpoint], names: list[str], grid: list[tuple], x: Tensor,
                 y: Tensor, calib: Tensor, cfg: SliceConfig, device: torch.device,
                 executor) -> tuple[list[Unit], dict[str, tuple[CurveJob, int]]]:
    """Units (chunks of grid points of each curve) and, per unit name, its curve and first point."""
    sx, sy, scal = executor.share(x), executor.share(y), executor.share(calib)
    shared_ck = [executor.share(ck) for ck in cks]
    hess_cache: dict[int, tuple[list[float], list[dict]]] = {}
    units, parts = [], {}
    for cj in curves:
        ck = cks[cj.model]
        hess = None
        if cfg.direction == "hessian" and not cfg.between:
            if cj.model not in hess_cache:  # on the driver, once per model: every direction needs all of them
                eig, vecs = hessian_eigen(ck, names, x, y, cfg.directions * cfg.dims, cfg.seed, device)
                hess_cache[cj.model] = (eig, executor.share(vecs))
            hess = hess_cache[cj.model][1]
            cj = dataclasses.replace(cj, eigenvalues=hess_cache[cj.model][0][cfg.dims * cj.direction:
                                                                            cfg.dims * (cj.direction + 1)])
        size = _chunk_size(ck, cj.mode, cfg, len(grid), executor)
        starts = range(0, len(grid), size)
        cj = dataclasses.replace(cj, chunks=len(starts))
        for p0 in starts:
            name = f"{ck.path} {cj.key[1]} direction {cj.direction} points {p0}-{min(p0 + size, len(grid)) - 1}"
            pts = grid[p0:p0 + size]
            if cfg.between:
                args = (shared_ck[0], shared_ck[1], pts, sx, sy, cfg, device)
                units.append(Unit(name, _between_chunk, args))
            else:
                args = (shared_ck[cj.model], cj.mode, cj.direction, hess, names, pts, sx, sy, scal, cfg, device)
                units.append(Unit(name, _curve_chunk, args))
            parts[name] = (cj, p0)
    return units, parts


def _curve_chunk(ck: Checkpoint, mode: str, index: int, hess: list[dict] | None, names: list[str], pts: list[tuple],
                 x: Tensor, y: Tensor, calib: Tensor, cfg: SliceConfig,
                 device: torch.device) -> tuple[np.ndarray, np.ndarray, int, float]:
    """(loss, accuracy, compute, seconds) at some points of one curve."""
    t0 = time.perf_counter()
    nets = mode_networks(ck, mode, cfg)
    dirs = _directions(cfg.direction, index, cfg.dims, nets.weights, names, ck, cfg, hess)
    loss, acc = curve_losses(ck, nets, dirs, names, pts, x, y, calib, cfg, device)
    return loss, acc, next(iter(nets.base.values())).shape[0], time.perf_counter() - t0


def _between_chunk(a: Checkpoint, b: Checkpoint, pts: list[tuple], x: Tensor, y: Tensor, cfg: SliceConfig,
                   device: torch.device) -> tuple[np.ndarray, np.ndarray, int, float]:
    t0 = time.perf_counter()
    loss, acc = _between_curve([a, b], pts, x, cfg, device, y)
    return loss, acc, 1, time.perf_counter() - t0
