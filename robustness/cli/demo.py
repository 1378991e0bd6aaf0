"""`robust demo`: the whole tour on the built-in corpus, in one command.

Trains an Adam and an IVON model, evaluates them, sweeps gaussian weight noise, device
mismatch and weight quantisation (with the compute-matched `chips` control), slices 1D
filter-normalised directions, and writes the report. Everything lands in `out_dir`
(checkpoints, `results.db`, `report/`); rerunning reuses finished checkpoints and resumes
the store, so a second run only renders.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from models.checkpoint import CheckpointError, load_checkpoint
from robustness.evaluate import EvalConfig
from robustness.slicing.run import SliceConfig, run_slice
from robustness.sweep.config import PerturbationPlan, SweepConfig
from robustness.sweep.run import run_sweep
from robustness.train_options import TrainRequest
from robustness.training import evaluate_checkpoints, format_table, train_to_checkpoint


@dataclass(frozen=True)
class DemoPlan:
    """The schedule: what `make demo` can afford on 2 cores (full) or in about a minute (fast)."""

    epochs: int
    gaussian: tuple[float, ...]
    mismatch: tuple[float, ...]
    bits: tuple[float, ...]
    seeds: int
    mc_samples: int
    limit: int | None
    slice_points: int
    slice_directions: int
    slice_batches: int
    limit_train: int | None = None
    hidden: tuple[int, ...] = (256, 256)
    ivon_epochs: int | None = None  # IVON's batch of 16 makes its epoch ~2x Adam's (None: `epochs`)

    def epochs_for(self, opt: str) -> int:
        return self.ivon_epochs if opt == "ivon" and self.ivon_epochs is not None else self.epochs


# Fits `make demo` (install included) in about 8 minutes on 2 cores: Adam 8 epochs, IVON 5
# (about 1 and 1.5 points of validation accuracy below 12 epochs each).
FULL = DemoPlan(epochs=8, ivon_epochs=5, gaussian=(0.05, 0.1, 0.2), mismatch=(0.1, 0.2, 0.3), bits=(3, 4, 6),
                seeds=4, mc_samples=5, limit=None, slice_points=21, slice_directions=4, slice_batches=2)
# A smoke test of every step (a 64-64 network on 800 clips): the numbers mean little.
FAST = DemoPlan(epochs=3, gaussian=(0.05, 0.15), mismatch=(0.1, 0.3), bits=(3, 6), seeds=2, mc_samples=2,
                limit=200, slice_points=9, slice_directions=2, slice_batches=1, limit_train=800, hidden=(64, 64))


def _checkpoint(opt: str, plan: DemoPlan, seed: int, path: Path, device, progress: bool, log) -> str:
    """Train unless a checkpoint with this very schedule is already there."""
    if path.exists():
        try:
            ck = load_checkpoint(path)
            tc = ck.train_config
            if (tc.get("epochs"), tc.get("seed"), tc.get("optimizer"), tuple(ck.net.cfg.hidden)) == \
                    (plan.epochs_for(opt), seed, opt, plan.hidden):
                log(f"reusing {path} ({opt}, {plan.epochs_for(opt)} epochs)")
                return str(path)
        except CheckpointError:
            pass  # unreadable: train afresh
    t0 = time.perf_counter()
    summary = train_to_checkpoint(TrainRequest(optimizer=opt, epochs=plan.epochs_for(opt), seed=seed,
                                               hidden=plan.hidden, limit_train=plan.limit_train), path, device,
                                  progress)
    first, *rest = summary.split("\n")  # the time on the line that says what was written, not after the diagnosis
    log("\n".join([f"{first} [{time.perf_counter() - t0:.0f} s]", *rest]))
    return str(path)


def run_demo(out_dir: Path, fast: bool = False, seed: int = 0, device: torch.device | str = "cpu",
             progress: bool = True, log=print) -> dict:
    """Run the tour; returns {"report": path, "verdict": [...], "table": text}."""
    from reports.records import load_records
    from reports.report import write_report

    plan = FAST if fast else FULL
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [_checkpoint(opt, plan, seed, out_dir / f"{opt}.pt", device, progress, log) for opt in ("adam", "ivon")]
    table = format_table(evaluate_checkpoints(paths, EvalConfig(mc_samples=plan.mc_samples, limit=plan.limit),
                                              device=device))
    log(table)
    store = str(out_dir / "results.db")
    t0 = time.perf_counter()
    plans = (PerturbationPlan("gaussian", plan.gaussian), PerturbationPlan("mismatch", plan.mismatch),
             PerturbationPlan("quantize", plan.bits))
    res = run_sweep(SweepConfig(tuple(paths), plans, seeds=plan.seeds, mc_samples=plan.mc_samples, limit=plan.limit,
                                seed=seed), store, device=device, progress=progress, command="robust demo")
    log(f"sweep: {res.new_cells} new cell(s) in {store} [{time.perf_counter() - t0:.0f} s]")
    t0 = time.perf_counter()
    sl = run_slice(SliceConfig(models=tuple(paths), points=plan.slice_points, directions=plan.slice_directions,
                               batches=plan.slice_batches, mc_samples=plan.mc_samples, seed=seed),
                   store, device=device, progress=progress, command="robust demo")
    log(f"slice: {sl.new_curves} new curve(s) [{time.perf_counter() - t0:.0f} s]")
    t0 = time.perf_counter()
    summary = write_report(load_records(store), out_dir / "report")
    log(f"report: {out_dir / 'report' / 'index.html'} [{time.perf_counter() - t0:.0f} s]")
    return {"report": str(out_dir / "report" / "index.html"), "verdict": summary["verdict"], "table": table}
