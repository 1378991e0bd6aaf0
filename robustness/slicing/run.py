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
import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import torch
from torch import Tensor

from basics.errors import BadInput, require_utf8
from basics.modes import CurveMode
from basics.progress import progress as progress_bar
from models import native
from models.checkpoint import Checkpoint, load_checkpoint
from models.chip_profiles import parse_chip, require_fit
from robustness import __version__
from robustness.data import Dataset, DatasetSpec, load_dataset
from robustness.executors import Failed, LocalExecutor, RayExecutor
from robustness.run_meta import model_meta
from robustness.slicing.config import MAX_BATCH_SIZE, MAX_BATCHES, MAX_DIRECTIONS, MAX_GRID, MAX_SAMPLES, MAX_SPAN, SliceConfig
from robustness.slicing.curves import CurveJob, grid_points, slice_units
from robustness.slicing.directions import KINDS, RANDOM_KINDS, moved_names
from robustness.store.database import Store

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
    for m in (*cfg.models, *(cfg.between or ())):
        require_utf8(m)
    if cfg.dims not in (1, 2):
        raise BadInput(f"--dims must be 1 or 2, got {cfg.dims}")
    if cfg.span is not None:
        if not all(math.isfinite(v) and abs(v) <= MAX_SPAN for v in cfg.span):
            raise BadInput(f"--span ends must be finite numbers within +-{MAX_SPAN:g} (steps along a direction of "
                           f"the weights' own scale), got {cfg.span[0]:g}:{cfg.span[1]:g}")
        if not cfg.span[0] < cfg.span[1]:
            raise BadInput(f"--span start must be below its end, got {cfg.span[0]:g}:{cfg.span[1]:g}")
    if cfg.points < 3:
        raise BadInput(f"--points must be at least 3 (smoothness needs second differences), got {cfg.points}")
    if cfg.points ** cfg.dims > MAX_GRID:
        raise BadInput(f"--points {cfg.points} with --dims {cfg.dims} is {cfg.points ** cfg.dims:,} grid points per "
                       f"direction; at most {MAX_GRID:,}")
    for flag, v, most in (("--directions", cfg.directions, MAX_DIRECTIONS), ("--mc-samples", cfg.mc_samples, MAX_SAMPLES),
                          ("--batches", cfg.batches, MAX_BATCHES), ("--batch-size", cfg.batch_size, MAX_BATCH_SIZE)):
        if not 1 <= v <= most:
            raise BadInput(f"{flag} must be from 1 to {most:,}, got {v}")
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
    if cfg.chip:
        parse_chip(cfg.chip)
        if cfg.sigmoid > 0:
            raise BadInput("--chip: the sigmoid control is a float network; a chip fires spikes (drop --sigmoid-control)")


def _same_architecture(cks: list[Checkpoint], what: str) -> None:
    ref = cks[0]
    shapes = {n: v.shape for n, v in ref.net.tensors().items()}
    for ck in cks[1:]:
        other = {n: v.shape for n, v in ck.net.tensors().items()}
        if other != shapes:
            raise BadInput(f"{ck.path} and {ref.path} have different architectures ({what} needs the same one)")


def _slice_modes(ck: Checkpoint, cfg: SliceConfig) -> list[str]:
    modes = [CurveMode.MEAN if ck.posterior is not None else CurveMode.POINT]
    if cfg.sigmoid > 0:
        modes.append(CurveMode.SIGMOID)
    if ck.posterior is not None:
        modes.append(CurveMode.BMA)
    if ck.members:
        modes.append(CurveMode.ENSEMBLE)
    modes = [m.value for m in modes]  # stored and hashed as the plain name
    return [m for m in modes if cfg.modes is None or m in cfg.modes]


def fixed_batches(data: Dataset, cfg: SliceConfig) -> tuple[Tensor, Tensor]:
    """The seeded minibatches every point is scored on (the whole split if it is smaller)."""
    split = data.split(cfg.split)
    if len(split) == 0:
        raise BadInput(f"split {cfg.split!r} is empty")
    g = torch.Generator().manual_seed(cfg.seed + 101)
    idx = torch.randperm(len(split), generator=g)[: cfg.batches * cfg.batch_size]
    return split.x[idx], split.y[idx]


def _curve_jobs(cks: list[Checkpoint], hashes: list[str], cfg: SliceConfig) -> list[CurveJob]:
    if cfg.between:
        return [CurveJob(("+".join(hashes), CurveMode.LINE.value, 0), 0, None, 0)]
    return [CurveJob((h, mode, i), k, mode, i) for k, (ck, h) in enumerate(zip(cks, hashes))
            for mode in _slice_modes(ck, cfg) for i in range(cfg.directions)]


def spec_hash(cfg: SliceConfig, model_hashes: list[str]) -> str:
    d = cfg.to_dict()
    if not d.get("chip"):
        d.pop("chip", None)  # slices from before chips existed keep their identity
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
    cks = [load_checkpoint(p, device) for p in (cfg.between or cfg.models)]
    for ck in cks if cfg.chip else ():
        require_fit(parse_chip(cfg.chip), ck.net.cfg, ck.path)
    # a network scored on a chip is named with it, as sweeps name it
    paths = [p if not cfg.chip else f"{p}@{parse_chip(cfg.chip).label}" for p in (cfg.between or cfg.models)]
    hashes = [ck.content_hash for ck in cks]
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
    grid = grid_points(cfg)
    notes = _notes(cfg, cks)
    with Store.open(store_path, create=True) as store:
        models_meta = [model_meta(ck, p, h) for p, h, ck in zip(paths, hashes, cks)]
        sid, resumed = store.slice_for(spec_hash(cfg, hashes), cfg.to_dict(), models_meta, data.fingerprint,
                                       __version__, command)
        done = store.slice_done(sid)
        store.clear_failures("slice", sid)
        planned = _curve_jobs(cks, hashes, cfg)
        curves = [c for c in planned if c.key not in done]
        bar = progress_bar(total=len(planned), desc="slice", unit="curve", enabled=progress)
        bar.update(len(planned) - len(curves))
        units, parts = slice_units(curves, cks, names, grid, x, y, calib, cfg, device, executor)
        new, failed, got = 0, [], {}
        with native.KERNEL.for_work(len(curves) * len(grid) * x.shape[0] * x.shape[1] * sum(cks[0].net.cfg.hidden)
                             * cfg.mc_samples):
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
                row = {"slice_id": sid, "model": " -> ".join(paths) if cfg.between else paths[cj.model],
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
    if mode == CurveMode.BMA:
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
    if cfg.bn == "recalibrate":
        bma = "re-estimated for each posterior sample at every point (--bn recalibrate, as robust eval and sweep)"
    else:
        bma = ("the posterior mean's stored ones (--bn mean, the slice default: re-estimating them for every sample "
               "at every point costs about 10x; robust eval and sweep re-estimate them per sample by default, so "
               "their BMA differs from this curve's at a = 0; --bn recalibrate slices that BMA)")
    notes.append(f"BN statistics: point/mean/ensemble use the stored running statistics (as robust eval); bma: {bma}")
    return notes


def models_of(curves: list[dict]) -> Mapping[tuple[str, str], list[dict]]:
    """Curves grouped by (model, mode), in direction order."""
    out: dict[tuple[str, str], list[dict]] = {}
    for c in curves:
        out.setdefault((c["model"], c["mode"]), []).append(c)
    for v in out.values():
        v.sort(key=lambda c: c["direction"])
    return out
