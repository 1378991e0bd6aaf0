"""`robust slice`: the loss along lines (and planes) in weight space, batched and resumable.

For each model, mode and direction the points of the slice are stacked parameter sets
evaluated in one batched forward (`stacked_logp`), on a fixed, seeded set of minibatches.
Modes:
  point / mean  the deterministic network moved along the line: L(theta + a u).
  bma           IVON: M posterior samples centred on the moved mean, theta + a u + sigma eps_m,
                with the same eps_m at every point (common random numbers). BN statistics:
                `--bn mean` (default) keeps the stored ones, as the deterministic curves do;
                `recalibrate` re-estimates them per sample on the same calibration batches
                at every point, as `robust eval` does by default (slow: a training-mode pass
                per point and sample).
  ensemble      every member moved along the same raw direction (normalised to its own
                weights), predictions averaged: the compute-matched control for bma.
Deterministic networks keep their stored BN running statistics, as in `robust eval`.
`between` slices the straight line from checkpoint A (a = 0) to B (a = 1), every tensor
(running statistics included) interpolated.
Each finished curve is committed in its own transaction; rerunning resumes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import torch
from torch import Tensor

from models.checkpoint import Checkpoint, load_checkpoint
from models.network import ForwardOptions
from robustness import __version__
from robustness.data import Dataset, DatasetSpec, load_dataset
from robustness.errors import BadInput
from robustness.executors import Failed, LocalExecutor, RayExecutor, Unit
from robustness.evaluate import EvalConfig, Mode, stacked_logp, with_bn_statistics
from robustness.metrics import log_mean_exp
from robustness.progress import progress as progress_bar
from robustness.slice_directions import (KINDS, RANDOM_KINDS, direction_generator, hessian_eigen, moved_names,
                                         normalise, posterior_direction, raw_direction)
from robustness.store import Store
from robustness.run_meta import model_meta
from robustness.sweep import file_hash

MAX_NETWORKS_PER_PASS = 64  # stacked networks per pass: bounds parameter copies and temporaries
LINE = "line"  # the mode name of a `between` curve
SIGMOID = "sigmoid"  # the point/mean network with sigmoid instead of Heaviside spikes


@dataclass(frozen=True)
class SliceConfig:
    """What `robust slice` computes (every field is part of the resume key).

    Attributes:
        models: checkpoints sliced along shared directions.
        between: two checkpoints: slice the straight line from the first to the second instead.
        dims: 1 (a line) or 2 (a plane spanned by two directions).
        direction: unit, filter, layer, hessian or posterior (see slice_directions).
        span: (start, stop) of the coordinate a [(-1, 1); (-0.5, 1.5) for between].
        points: points per axis.
        directions: independent directions (planes) per model.
        batches, batch_size: the fixed, seeded minibatches the loss is computed on.
        split: which split the batches come from.
        mc_samples: M for bma (posterior samples).
        sigmoid: when > 0, add mode `sigmoid`: the point/mean network with the Heaviside
            replaced by a sigmoid of the membrane at this temperature (a non-spiking control).
        bn: BN statistics of posterior samples, as `robust eval` names them: `mean` (default
            here: the stored statistics, as every deterministic curve uses, so that the BMA
            and point curves differ only by the posterior average) or `recalibrate`
            (re-estimated per sample at every point: eval's default, about 10x slower here).
        include_bn: also move BatchNorm scale/shift and the readout bias.
        modes: restrict to these modes (None: every mode of each model).
        seed: seeds directions, batches and posterior draws.
        data_dir: where a real dataset lives (None: the checkpoint's).
    """

    models: tuple[str, ...] = ()
    between: tuple[str, str] | None = None
    dims: int = 1
    direction: str = "filter"
    span: tuple[float, float] | None = None
    points: int = 41
    directions: int = 8
    batches: int = 4
    batch_size: int = 128
    split: str = "train"
    mc_samples: int = 10
    sigmoid: float = 0.0
    bn: str = "mean"
    include_bn: bool = False
    modes: tuple[str, ...] | None = None
    seed: int = 0
    data_dir: str | None = None

    @property
    def coords(self) -> list[float]:
        lo, hi = self.span or ((-0.5, 1.5) if self.between else (-1.0, 1.0))
        return np.linspace(lo, hi, self.points).tolist()

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["coords"] = self.coords
        return d


@dataclass
class SliceResult:
    slice_id: int
    resumed: bool
    new_curves: int
    curves: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the output must say (BN treatment, shared directions)
    failed: list[dict] = field(default_factory=list)  # units that raised on every attempt (unit, error, attempts)


def validate(cfg: SliceConfig) -> None:
    """One-line errors for every bad option, before anything is loaded or written."""
    if cfg.dims not in (1, 2):
        raise BadInput(f"--dims must be 1 or 2, got {cfg.dims}")
    if cfg.span is not None and not cfg.span[0] < cfg.span[1]:
        raise BadInput(f"--span start must be below its end, got {cfg.span[0]:g}:{cfg.span[1]:g}")
    if cfg.points < 3:
        raise BadInput(f"--points must be at least 3 (smoothness needs second differences), got {cfg.points}")
    if cfg.directions < 1:
        raise BadInput(f"--directions must be at least 1, got {cfg.directions}")
    if cfg.batches < 1 or cfg.batch_size < 1:
        raise BadInput("--batches and --batch-size must be at least 1")
    if cfg.mc_samples < 1:
        raise BadInput(f"--mc-samples must be at least 1, got {cfg.mc_samples}")
    if cfg.sigmoid < 0:
        raise BadInput(f"--sigmoid-control must be a positive temperature, got {cfg.sigmoid:g}")
    if cfg.direction not in KINDS:
        raise BadInput(f"unknown direction {cfg.direction!r} (one of: {', '.join(KINDS)})")
    if cfg.between and cfg.models:
        raise BadInput("--between slices two checkpoints; do not also pass --model")
    if not cfg.between and not cfg.models:
        raise BadInput("pass --model (repeatable) or --between A.pt B.pt")
    if cfg.between and cfg.dims != 1:
        raise BadInput("--between slices a line: --dims 1 only")


def _same_architecture(cks: list[Checkpoint], what: str) -> None:
    ref = cks[0]
    shapes = {n: v.shape for n, v in ref.net.tensors().items()}
    for ck in cks[1:]:
        other = {n: v.shape for n, v in ck.net.tensors().items()}
        if other != shapes:
            raise BadInput(f"{ck.path} and {ref.path} have different architectures ({what} needs the same one)")


def _slice_modes(ck: Checkpoint, cfg: SliceConfig) -> list[str]:
    modes = [Mode.MEAN.value if ck.posterior is not None else Mode.POINT.value]
    if cfg.sigmoid > 0:
        modes.append(SIGMOID)
    if ck.posterior is not None:
        modes.append(Mode.BMA.value)
    if ck.members:
        modes.append(Mode.ENSEMBLE.value)
    return [m for m in modes if cfg.modes is None or m in cfg.modes]


def fixed_batches(data: Dataset, cfg: SliceConfig) -> tuple[Tensor, Tensor]:
    """The seeded minibatches every point is scored on (the whole split if it is smaller)."""
    split = data.split(cfg.split)
    if len(split) == 0:
        raise BadInput(f"split {cfg.split!r} is empty")
    g = torch.Generator().manual_seed(cfg.seed + 101)
    idx = torch.randperm(len(split), generator=g)[: cfg.batches * cfg.batch_size]
    return split.x[idx], split.y[idx]


@dataclass
class _Networks:
    """The M networks a mode averages (M = 1 for point/mean) and how to move them."""

    base: dict[str, Tensor]         # K-stacked tensors at a = 0 (bma: posterior samples)
    weights: list[dict[str, Tensor]]  # per network: the weights directions are normalised to
    recalibrate: bool               # re-estimate BN statistics at every point (bma, bn=recalibrate)
    opt: ForwardOptions = field(default_factory=ForwardOptions)


def _networks(ck: Checkpoint, mode: str, cfg: SliceConfig) -> _Networks:
    t = ck.net.tensors()
    if mode == Mode.ENSEMBLE:
        members = [{n: m[n].detach() for n in t} for m in ck.members]
        return _Networks({n: torch.stack([m[n] for m in members]) for n in t}, members, False)
    if mode == Mode.BMA:
        g = torch.Generator().manual_seed(cfg.seed)
        base = ck.posterior.sample(t, cfg.mc_samples, g)
        return _Networks(base, [t] * cfg.mc_samples, cfg.bn == "recalibrate")
    opt = ForwardOptions(smooth_spikes=cfg.sigmoid if mode == SIGMOID else 0.0)
    return _Networks({n: v.detach().unsqueeze(0) for n, v in t.items()}, [t], False, opt)


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


def _grid(cfg: SliceConfig) -> list[tuple[float, ...]]:
    c = cfg.coords
    return [(a,) for a in c] if cfg.dims == 1 else [(a, b) for a in c for b in c]


@torch.no_grad()
def _curve(ck: Checkpoint, nets: _Networks, dirs: list[list[dict]], names: list[str], grid: list[tuple],
           x: Tensor, y: Tensor, calib: Tensor, cfg: SliceConfig, device: torch.device,
           exp_names: list[str] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Loss (NLL of the mode's averaged prediction) and accuracy at every grid point (flat).

    `exp_names` are tensors moved in log space (exponentiated after the move)."""
    m = next(iter(nets.base.values())).shape[0]
    per_pass = _per_pass_of(m, nets.recalibrate)
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
        slp, _ = stacked_logp(ck.net.cfg, t, x, device, nets.opt)
        logp = log_mean_exp(slp.view(len(pts), m, *slp.shape[1:]).transpose(0, 1))  # average over the M networks
        losses.append(-logp.gather(-1, y.view(1, -1, 1).expand(len(pts), -1, 1)).squeeze(-1).mean(-1))
        accs.append((logp.argmax(-1) == y).double().mean(-1))
    return torch.cat(losses).numpy(), torch.cat(accs).numpy()


def _per_pass_of(m: int, recalibrate: bool) -> int:
    """Grid points per batched pass of M networks. BN re-estimation runs the training-mode
    forward, whose temporaries are larger."""
    return max(1, (MAX_NETWORKS_PER_PASS // (2 if recalibrate else 1)) // m)


def _between_curve(cks: list[Checkpoint], grid: list[tuple], x: Tensor, cfg: SliceConfig,
                   device: torch.device, y: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Every tensor on the line (1 - a) A + a B, except BN running variances, which are
    interpolated in log space so that they stay positive outside [0, 1]."""
    a, b = (ck.net.tensors() for ck in cks)
    log_var = [n for n in a if n.endswith("running_var")]
    base = {n: (a[n].clamp_min(1e-12).log() if n in log_var else a[n]).detach().unsqueeze(0) for n in a}
    line = {n: ((b[n].clamp_min(1e-12).log() - a[n].clamp_min(1e-12).log()) if n in log_var else b[n] - a[n]).detach()
            for n in a}
    nets = _Networks(base, [a], False)
    return _curve(cks[0], nets, [[line]], list(a), grid, x, y, x, cfg, device, exp_names=log_var)


@dataclass(frozen=True)
class _CurveJob:
    """One curve to compute: (model hash, mode, direction) and how it is split."""

    key: tuple[str, str, int]
    model: int  # index into the checkpoints
    mode: str | None  # None: a `between` line
    direction: int
    chunks: int = 1
    eigenvalues: list[float] | None = None


def _curve_jobs(cks: list[Checkpoint], hashes: list[str], cfg: SliceConfig) -> list[_CurveJob]:
    if cfg.between:
        return [_CurveJob(("+".join(hashes), LINE, 0), 0, None, 0)]
    return [_CurveJob((h, mode, i), k, mode, i) for k, (ck, h) in enumerate(zip(cks, hashes))
            for mode in _slice_modes(ck, cfg) for i in range(cfg.directions)]


def _chunk_size(ck: Checkpoint, mode: str | None, cfg: SliceConfig, n: int, executor) -> int:
    """Grid points per unit: the whole curve in this process; one batched pass per Ray task,
    so that a few curves still spread over a cluster (same passes: the same numbers)."""
    if executor.name != "ray":
        return n
    m = len(ck.members) if mode == Mode.ENSEMBLE else cfg.mc_samples if mode == Mode.BMA else 1
    return _per_pass_of(m, mode == Mode.BMA and cfg.bn == "recalibrate")


def _slice_units(curves: list[_CurveJob], cks: list[Checkpoint], names: list[str], grid: list[tuple], x: Tensor,
                 y: Tensor, calib: Tensor, cfg: SliceConfig, device: torch.device,
                 executor) -> tuple[list[Unit], dict[str, tuple[_CurveJob, int]]]:
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
    nets = _networks(ck, mode, cfg)
    dirs = _directions(cfg.direction, index, cfg.dims, nets.weights, names, ck, cfg, hess)
    loss, acc = _curve(ck, nets, dirs, names, pts, x, y, calib, cfg, device)
    return loss, acc, next(iter(nets.base.values())).shape[0], time.perf_counter() - t0


def _between_chunk(a: Checkpoint, b: Checkpoint, pts: list[tuple], x: Tensor, y: Tensor, cfg: SliceConfig,
                   device: torch.device) -> tuple[np.ndarray, np.ndarray, int, float]:
    t0 = time.perf_counter()
    loss, acc = _between_curve([a, b], pts, x, cfg, device, y)
    return loss, acc, 1, time.perf_counter() - t0


def spec_hash(cfg: SliceConfig, model_hashes: list[str]) -> str:
    d = cfg.to_dict()
    d["models"], d["between"] = model_hashes, None
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:20]


def run_slice(cfg: SliceConfig, store_path: str, *, device: str | torch.device = "cpu", progress: bool = True,
              command: str = "", executor: LocalExecutor | RayExecutor | None = None) -> SliceResult:
    """Compute (or resume) a slice into the store at `store_path`; returns every curve.

    Every check on user input happens before the store is opened. Units (chunks of a
    curve's points) run on `executor`; this process alone writes each curve once all its
    chunks are in. A unit that fails on every attempt is recorded and the slice stays
    unfinished, so that a rerun retries it.
    """
    executor = executor or LocalExecutor()
    validate(cfg)
    device = torch.device(device)
    paths = list(cfg.between or cfg.models)
    cks = [load_checkpoint(p, device) for p in paths]
    hashes = [file_hash(p) for p in paths]
    if cfg.between or len(cks) > 1:
        _same_architecture(cks, "--between" if cfg.between else "sharing directions")
    if cfg.direction == "posterior":
        for ck in cks:
            if ck.posterior is None:
                raise BadInput(f"{ck.path}: direction 'posterior' needs an IVON checkpoint (this one has no posterior)")
    if cfg.modes:
        known = {m for ck in cks for m in _slice_modes(ck, dataclasses.replace(cfg, modes=None))}
        bad = [m for m in cfg.modes if m not in known]
        if bad:
            raise BadInput(f"--modes {bad[0]}: no model here has that mode in a slice ({', '.join(sorted(known))})")
    ds = DatasetSpec.from_dict(cks[0].dataset)
    if cfg.data_dir is not None:
        ds = dataclasses.replace(ds, data_dir=cfg.data_dir)
    data = load_dataset(ds, progress=progress)
    x, y = fixed_batches(data, cfg)
    if x.shape[-1] != cks[0].net.cfg.input_dim:
        raise BadInput(f"{cks[0].path}: model expects {cks[0].net.cfg.input_dim} input features, data has {x.shape[-1]}")
    calib = data.split("train").x
    names = moved_names(cks[0].net.cfg, cfg.include_bn)
    grid = _grid(cfg)
    notes = _notes(cfg, cks)
    with Store.open(store_path, create=True) as store:
        models_meta = [model_meta(ck, p, h) for p, h, ck in zip(paths, hashes, cks)]
        sid, resumed = store.slice_for(spec_hash(cfg, hashes), cfg.to_dict(), models_meta, data.fingerprint,
                                       __version__, command)
        done = store.slice_done(sid)
        store.clear_failures("slice", sid)
        curves = [c for c in _curve_jobs(cks, hashes, cfg) if c.key not in done]
        bar = progress_bar(total=len(_curve_jobs(cks, hashes, cfg)), desc="slice", unit="curve", enabled=progress)
        bar.update(bar.total - len(curves))
        units, parts = _slice_units(curves, cks, names, grid, x, y, calib, cfg, device, executor)
        new, failed, got = 0, [], {}
        for unit, out in executor.map(units):
            cj, p0 = parts[unit.name]
            if isinstance(out, Failed):
                store.add_failure("slice", sid, unit.name, out.error, out.attempts)
                failed.append({"unit": unit.name, "error": out.error, "attempts": out.attempts})
                continue
            got.setdefault(cj.key, {})[p0] = out
            if len(got[cj.key]) < cj.chunks:
                continue
            chunks = [c for _, c in sorted(got.pop(cj.key).items())]  # grid order
            shape = (cfg.points,) * cfg.dims
            row = {"slice_id": sid, "model": " -> ".join(paths) if cfg.between else cks[cj.model].path,
                   "model_hash": cj.key[0], "optimizer": cks[cj.model].optimizer, "mode": cj.key[1],
                   "direction": cj.direction, "compute": chunks[0][2], "bn": _bn_used(cj.mode, cfg),
                   "coords": cfg.coords, "shape": list(shape),
                   "loss": np.concatenate([c[0] for c in chunks]).reshape(shape),
                   "accuracy": np.concatenate([c[1] for c in chunks]).reshape(shape),
                   "eigenvalues": cj.eigenvalues, "time_s": sum(c[3] for c in chunks)}
            stored = store.add_curve(row)  # False: a concurrent run of the same slice stored it first
            new += int(stored)
            bar.update(1)
        bar.close()
        if not failed:
            store.finish_slice(sid)
        stored = store.curves(sid)
    return SliceResult(sid, resumed, new, stored, notes, failed)


def _bn_used(mode: str | None, cfg: SliceConfig) -> str:
    if mode == Mode.BMA:
        return cfg.bn
    return "interpolated" if mode is None else "stored"


def _notes(cfg: SliceConfig, cks: list[Checkpoint]) -> list[str]:
    if cfg.between:
        return [f"line from {cks[0].path} (a=0) to {cks[1].path} (a=1): every tensor interpolated, "
                "BN running statistics included"]
    notes = []
    if len(cks) > 1 and cfg.direction in RANDOM_KINDS + ("posterior",):
        notes.append(f"every model is sliced along the same {cfg.direction} directions (seed {cfg.seed})")
    elif len(cks) > 1:
        notes.append("hessian directions are each model's own eigenvectors: pairs compare the k-th eigen-direction")
    notes.append("BN statistics: point/mean/ensemble use the stored running statistics (as robust eval); "
                 f"bma: {'re-estimated per sample at every point' if cfg.bn == 'recalibrate' else 'the stored ones'}")
    return notes


def models_of(curves: list[dict]) -> Mapping[tuple[str, str], list[dict]]:
    """Curves grouped by (model, mode), in direction order."""
    out: dict[tuple[str, str], list[dict]] = {}
    for c in curves:
        out.setdefault((c["model"], c["mode"]), []).append(c)
    for v in out.values():
        v.sort(key=lambda c: c["direction"])
    return out
