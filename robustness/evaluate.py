"""Evaluation of a checkpoint: point (Adam), posterior mean and BMA (IVON), deep ensembles.

BMA averages the softmax of M posterior samples. BatchNorm statistics for the samples
are, by default, re-estimated for each sample on a few training batches (`bn=recalibrate`):
reusing the statistics computed at the posterior mean (`bn=mean`) was measured to be
under-confident and worse in NLL (the README's `robust eval` notes give the figures). The
result names which one was used.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch
from torch import Tensor

from basics.errors import BadInput
from models.checkpoint import Checkpoint
from models.chip_profiles import Chip
from models.deploy import deploy_tensors
from models.fixed_point import deployment_summary, to_chip
from models.chunking import batch_size
from models.model_config import ForwardOptions, ModelConfig
from models.network import forward_stacked
from models.train import bn_statistics
from robustness.data import Dataset
from robustness.eval_config import AVERAGING, BNMode, EvalConfig, Mode
from robustness.efficiency import efficiency, mean_efficiency
from robustness.metrics import per_example_nll, compute_metrics, log_mean_exp


@torch.no_grad()
def stacked_logp(cfg: ModelConfig, tensors: Mapping[str, Tensor], x: Tensor,
                 device: torch.device | str = "cpu", opt: ForwardOptions | None = None) -> tuple[Tensor, Tensor]:
    """Log-softmax [K, N, C] (float64) and mean spike rate per hidden layer [K, L] of K stacked networks.

    Examples go through in batches, each telling the forward pass its offset: read noise is
    a function of (draw, example index, step, neuron), so no number depends on the batch.
    """
    opt = opt or ForwardOptions()
    k = next(iter(tensors.values())).shape[0]
    bsz = batch_size(k, max(cfg.hidden, default=cfg.input_dim))
    # Spike counts per layer are whole numbers; summed as such they are exact in any batching.
    neurons = torch.tensor([float(x.shape[-2] * h) for h in cfg.hidden[opt.start:]], dtype=torch.float64)
    logps, spikes = [], None
    for start in range(0, len(x), bsz):
        xb = x[start:start + bsz].to(device)
        logits, rates = forward_stacked(cfg, tensors, xb, dataclasses.replace(opt, example_offset=start))
        logps.append(torch.log_softmax(logits.double(), -1).cpu())
        r = (torch.stack(rates, 1) if rates else torch.zeros(logits.shape[0], 0)).double().cpu() * len(xb) * neurons
        r = r if opt.smooth_spikes else r.round()
        spikes = r if spikes is None else spikes + r
    return torch.cat(logps, 1), spikes / (len(x) * neurons)


def with_bn_statistics(cfg: ModelConfig, tensors: Mapping[str, Tensor], x_calib: Tensor,
                       ecfg: EvalConfig, generator: torch.Generator) -> dict[str, Tensor]:
    """A copy of K-stacked tensors whose BN running statistics are re-estimated per network."""
    stats = bn_statistics(cfg, dict(tensors), x_calib, ecfg.calib_batch_size, ecfg.calib_batches, generator)
    out = dict(tensors)
    for prefix, (mean, var) in stats.items():
        out[f"{prefix}.running_mean"] = mean
        out[f"{prefix}.running_var"] = var
    return out


@dataclass
class EvalResult:
    """One mode of a checkpoint scored on a split.

    Attributes:
        mode, n, samples (networks per prediction), bn (BMA's BN treatment).
        metrics: accuracy, NLL, ECE, Brier, entropy (+ expected entropy and MI when averaging).
        spike_rates: mean spike rate per hidden layer.
        probs: predicted class probabilities [N, C].
        correct, nll: per example [N] (float64), for the test-set intervals.
        groups: each example's speaker ('' when unknown).
        deployment: on a chip, per layer its scale, code ranges and realised leaks (None: float).
        efficiency: NeuroBench's metrics per inference, averaged over the mode's networks
            (robustness/efficiency.py), with the chip profile's energy estimate.
    """

    mode: str
    n: int
    metrics: dict[str, float]
    spike_rates: list[float]
    samples: int
    bn: str | None
    probs: Tensor = dataclasses.field(repr=False)
    correct: np.ndarray = dataclasses.field(repr=False, default_factory=lambda: np.zeros(0))
    nll: np.ndarray = dataclasses.field(repr=False, default_factory=lambda: np.zeros(0))
    groups: list[str] = dataclasses.field(repr=False, default_factory=list)
    deployment: list[dict] | None = None
    efficiency: dict = dataclasses.field(default_factory=dict)

    def row(self) -> dict:
        return {"mode": self.mode, "n": self.n, "compute": self.samples, "bn": self.bn,
                **self.metrics, **{f"rate_l{i}": r for i, r in enumerate(self.spike_rates)}}


def mode_tensors(ck: Checkpoint, data: Dataset, mode: Mode, mc_samples: int, bn: str, seed: int,
                 calib: EvalConfig | None = None) -> dict[str, Tensor]:
    """The K-stacked networks a mode predicts with.

    point / mean: the checkpoint (K = 1). chips: M copies of it (each perturbed with its
    own draw in a sweep). ensemble: the M members. bma: M posterior samples drawn from
    `seed`, their BN statistics re-estimated per sample on training batches unless `bn`
    is `mean`.
    """
    if mode not in modes_for(ck, perturbed=True):
        raise BadInput(f"{ck.path}: mode {mode.value} does not apply to this checkpoint "
                       f"(it has: {', '.join(m.value for m in modes_for(ck, perturbed=True))})")
    if mode is Mode.CHIPS:
        return {n: v.unsqueeze(0).expand(mc_samples, *v.shape) for n, v in ck.net.tensors().items()}
    if mode is Mode.ENSEMBLE:
        names = ck.net.tensors()
        return {n: torch.stack([m[n].to(v.device) for m in ck.members]) for n, v in names.items()}
    if mode is not Mode.BMA:
        return {n: v.unsqueeze(0) for n, v in ck.net.tensors().items()}
    g = torch.Generator().manual_seed(seed)
    samples = ck.posterior.sample(ck.net.tensors(), mc_samples, g)
    if BNMode(bn) is BNMode.RECALIBRATE:
        samples = with_bn_statistics(ck.net.cfg, samples, data.split("train").x, calib or EvalConfig(), g)
    return samples


def modes_for(ck: Checkpoint, perturbed: bool = False) -> list[Mode]:
    """The modes a checkpoint predicts in; `perturbed` adds `chips` (under no perturbation
    M identical copies are the network itself, so `robust eval` leaves it out)."""
    first = Mode.MEAN if ck.posterior is not None else Mode.POINT
    modes = [first] + ([Mode.CHIPS] if perturbed else [])
    if ck.posterior is not None:
        modes.append(Mode.BMA)
    if ck.members:
        modes.append(Mode.ENSEMBLE)
    return modes


def compute(mode: Mode, k: int) -> int:
    """Networks evaluated per prediction."""
    return k if mode in AVERAGING else 1


def require_finite(ck: Checkpoint, mode: Mode, slp: Tensor, tensors: Mapping[str, Tensor]) -> None:
    """An unperturbed network whose outputs overflow is an unusable checkpoint, not a result:
    its NaN log-probabilities would print as an accuracy. (Under a perturbation such a network
    is a NaN cell, named as such in summaries.)"""
    if bool(torch.isfinite(slp).all()):
        return
    weights = [v.abs().max().item() for n, v in tensors.items() if n.endswith("weight") and v.numel()]
    raise BadInput(f"{ck.path}: mode {mode.value} gives non-finite outputs on clean inputs (largest |weight| "
                   f"{max(weights, default=float('nan')):.3g}): the checkpoint's numbers overflow")


def evaluate(ck: Checkpoint, data: Dataset, mode: Mode, ecfg: EvalConfig,
             device: torch.device | str = "cpu", chip: Chip | None = None) -> EvalResult:
    """Score one mode of a checkpoint on `ecfg.split` of `data` (deployed on `chip` when given:
    BN folded, integer codes, integer dynamics)."""
    if ecfg.mc_samples < 1:
        raise BadInput(f"--mc-samples must be at least 1, got {ecfg.mc_samples}")
    split = data.split(ecfg.split).stratified(ecfg.limit)
    cfg = ck.net.cfg
    if split.x.shape[-1] != cfg.input_dim:
        raise BadInput(f"features have {split.x.shape[-1]} dims but the model expects {cfg.input_dim}")
    t = mode_tensors(ck, data, mode, ecfg.mc_samples, ecfg.bn, ecfg.seed, ecfg)
    deployment = None
    if chip is not None:
        t = to_chip(cfg, deploy_tensors(cfg, t, fold_bn=True), chip.arithmetic)
        deployment = deployment_summary(cfg, t)
    tally: dict = {}
    slp, rates = stacked_logp(cfg, t, split.x, device, ForwardOptions(tally=tally))
    require_finite(ck, mode, slp, t)
    cost = mean_efficiency(efficiency(cfg, t, tally, len(split), split.x.shape[1],
                                      chip.profile if chip else None))
    logp = log_mean_exp(slp)
    averaged = mode in AVERAGING
    metrics = compute_metrics(logp, split.y, slp if averaged else None)
    return EvalResult(mode.value, len(split), metrics, rates.mean(0).tolist(), compute(mode, slp.shape[0]),
                      ecfg.bn if mode is Mode.BMA else None, logp.exp(),
                      (logp.argmax(-1) == split.y).double().numpy(), per_example_nll(logp, split.y).numpy(),
                      list(split.groups), deployment, cost)
