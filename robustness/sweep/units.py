"""What one unit of a sweep evaluates: one level of one (model, mode, perturbation, layer
scope), all its draws in batched passes, and `--seeds auto`'s rounds. A unit reads only
its `LevelJob` and returns rows, so it runs the same in this process or as a Ray task.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch

from basics.attack_labels import searches
from basics.stats import t_interval
from models import native
from models.chip_profiles import Profile
from models.chunking import networks_per_pass
from models.fixed_point import surrogate
from models.model_config import ForwardOptions, ModelConfig
from models.network import forward_stacked
from perturbations.adversarial import SEARCH_EXAMPLES
from perturbations.base import Context
from perturbations.spec import Spec, apply
from robustness.data import Dataset
from robustness.efficiency import efficiency, mean_efficiency
from robustness.evaluate import AVERAGING, Mode, compute, stacked_logp
from robustness.metrics import compute_metrics, disagreement, log_mean_exp, per_example_nll
from robustness.sweep.calibration import calibrating
from robustness.sweep.config import MIN_AUTO_SEEDS, SweepConfig

log = logging.getLogger(__name__)



@dataclass
class Prepared:
    """One (model, mode) ready to perturb: K0 base networks and their clean predictions."""

    mode: Mode
    base: dict[str, torch.Tensor]
    k0: int
    clean_pred: torch.Tensor
    clean_row: dict


def cell_record(slp: torch.Tensor, y: torch.Tensor, mode: Mode, clean_pred: torch.Tensor | None) -> dict:
    """Metrics of one cell from its networks' log-probabilities [K0, N, C], with per-example data."""
    logp = log_mean_exp(slp)
    m = compute_metrics(logp, y, slp if mode in AVERAGING else None)
    m["disagreement"] = 0.0 if clean_pred is None else disagreement(logp, clean_pred)
    if not bool(torch.isfinite(slp).all()):  # NaN metrics (above); no per-example data to invent
        m["disagreement"] = float("nan")
        return {**m, "example_correct": None, "example_nll": None, "example_confidence": None}
    correct = (logp.argmax(-1) == y).numpy().astype(np.uint8)
    m["example_correct"] = np.packbits(correct).tobytes()
    m["example_nll"] = per_example_nll(logp, y).numpy().astype(np.float32).tobytes()
    m["example_confidence"] = logp.max(-1).values.exp().numpy().astype(np.float32).tobytes()  # reliability diagrams
    return m


@dataclass(frozen=True)
class LevelJob:
    """One (model, mode, perturbation, layer scope): what evaluating its draws needs."""

    net_cfg: ModelConfig
    prep: Prepared
    spec: Spec
    ctx: Context
    x: torch.Tensor
    y: torch.Tensor
    start: int
    device: torch.device
    seed: int
    search: tuple[torch.Tensor, torch.Tensor] | None = None  # worst-case search batch (inputs at `start`, labels)
    profile: Profile | None = None  # the chip deployed on: its per-operation energies
    calibration: torch.Tensor | None = None  # features crossbar ADC ranges are calibrated on (training split)


def evaluate_draws(job: LevelJob, level: float, seeds: list[int]) -> list[dict]:
    """Metrics per seed for one level: all S x K0 networks in batched passes."""
    prep, k0 = job.prep, job.prep.k0
    out = []
    per_pass = networks_per_pass(max(job.net_cfg.hidden), k0)
    for i in range(0, len(seeds), per_pass):
        group = seeds[i:i + per_pass]
        s = len(group)
        stacked = {n: v.repeat(s, *([1] * (v.dim() - 1))) for n, v in prep.base.items()}
        draws = [sd * k0 + m for sd in group for m in range(k0)]
        t0 = time.perf_counter()
        ctx = calibrating(_attack_context(job, k0), job.net_cfg, job.calibration, job.device)
        t = apply(job.spec, level, stacked, seed=job.seed, draws=draws, ctx=ctx)
        tally: dict | None = {} if job.start == 0 else None  # below a reused layer nothing is counted
        slp, rates = stacked_logp(job.net_cfg, t, job.x, job.device,
                                  ForwardOptions(clamp_alpha=False, start=job.start, tally=tally))
        cost = None if tally is None else efficiency(job.net_cfg, t, tally, len(job.y), job.x.shape[1], job.profile)
        elapsed = (time.perf_counter() - t0) / s
        slp = slp.view(s, k0, *slp.shape[1:])
        rates = rates.view(s, k0, -1)
        below = prep.clean_row["spike_rates"][:job.start]  # layers below were not perturbed
        for j, sd in enumerate(group):
            out.append({"seed": sd, "samples": compute(prep.mode, k0), "n": len(job.y),
                        **cell_record(slp[j], job.y, prep.mode, prep.clean_pred),
                        "spike_rates": below + rates[j].mean(0).tolist(), "time_s": elapsed,
                        "efficiency": None if cost is None else mean_efficiency(cost[j * k0:(j + 1) * k0])})
    return out


def _searching(spec: Spec) -> list[dict]:
    """Options of the components of `spec` that search (adversarial, steps above 0)."""
    return [o for o in (dict(c.options) for c in spec.components if c.name == "adversarial") if searches(o)]


def is_attack(spec: Spec) -> bool:
    """A worst-case search runs: it needs a search batch and an objective."""
    return bool(_searching(spec))


def attack_examples(spec: Spec) -> int:
    """How many held-out examples the worst-case search of `spec` ascends on."""
    return max(int(float(o.get("examples", SEARCH_EXAMPLES))) for o in _searching(spec))


def search_batch(data: Dataset, evaluated: str, examples: int = SEARCH_EXAMPLES
                 ) -> tuple[str, torch.Tensor, torch.Tensor]:
    """The split and examples a worst-case search ascends on: held out from the evaluated
    split where the dataset has another (validation, else train), so a chip is never found
    on the examples that score it; spread evenly through that split, which is often sorted
    by class (its first 32 examples would hold 4 of 20 classes). All of it when it has fewer."""
    name = next((s for s in ("validation", "train") if s in data.splits and s != evaluated), evaluated)
    split = data.split(name)
    idx = torch.linspace(0, len(split.y) - 1, min(examples, len(split.y))).round().long()
    return name, split.x[idx], split.y[idx]


def _attack_context(job: LevelJob, k0: int) -> Context:
    """The job's context for a worst-case spec: which networks share one chip and, when it
    searches, the loss to maximise: the NLL of each prediction (M networks averaged) on the
    search batch, one value per prediction.

    Under BMA the M posterior samples of a prediction run on one chip (one offset), in the
    search and in its `steps=0` random baseline alike, so that the baseline is the search's
    own random start; chips and ensemble members are separate chips, attacked jointly.
    Other specs get the job's context unchanged.
    """
    if not any(c.name == "adversarial" for c in job.spec.components):
        return job.ctx
    group = k0 if job.prep.mode is Mode.BMA else 1
    if not is_attack(job.spec):
        return dataclasses.replace(job.ctx, group=group)
    xb, yb = (v.to(job.device) for v in job.search)
    opt = ForwardOptions(clamp_alpha=False, start=job.start)

    def loss(t: dict[str, torch.Tensor]) -> torch.Tensor:
        if "chip.weight_bits" in t:  # integers have no gradient: ascend through the float network they stand for
            t = surrogate(job.net_cfg, t)
        with native.KERNEL.training(float("inf")):
            logits, _ = forward_stacked(job.net_cfg, {n: v.to(job.device) for n, v in t.items()}, xb, opt)
        logp = torch.log_softmax(logits, -1)
        logp = torch.logsumexp(logp.view(-1, k0, *logp.shape[1:]), 1) - math.log(k0)
        return -logp.gather(-1, yb.view(1, -1, 1).expand(logp.shape[0], -1, 1)).mean((1, 2))

    return dataclasses.replace(job.ctx, objective=loss, group=group)


def level_rows(job: LevelJob, level: float, cfg: SweepConfig, done: dict, key_prefix: tuple,
           deterministic: bool = False) -> list[dict]:
    """Rows for one level: a fixed number of seeds, or rounds until the interval is narrow.

    A perturbation that draws nothing is evaluated with seed 0 only: every seed would repeat it.
    """
    def missing(seeds: Iterable[int]) -> list[int]:
        return [s for s in seeds if key_prefix + (s,) not in done]

    def run(seeds: Iterable[int]) -> list[dict]:
        todo = missing(seeds)
        return evaluate_draws(job, level, todo) if todo else []

    if deterministic:
        return run([0])
    if cfg.seeds is not None:
        return run(range(cfg.seeds))
    rows: list[dict] = []
    accs: dict[int, float] = {}
    n = 0
    while n < cfg.max_seeds:
        batch = list(range(n, min(n + cfg.auto_batch, cfg.max_seeds)))
        new = run(batch)
        rows += new
        accs.update({s: done[key_prefix + (s,)] for s in batch if key_prefix + (s,) in done})
        accs.update({r["seed"]: r["accuracy"] for r in new})
        n = batch[-1] + 1
        vals = list(accs.values())
        half = t_interval(vals)[1]
        if len(vals) >= MIN_AUTO_SEEDS and half is not None and 2 * half * 100 <= cfg.ci_width:
            if half == 0.0:
                log.warning("%s level %g: all %d draws gave the same accuracy; the chip interval is 0 "
                            "and only the test-set interval measures the uncertainty", key_prefix[2], level, len(vals))
            break
    return rows
