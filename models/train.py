"""Training with Adam (deterministic baseline) or IVON (variational, Bayesian).

BatchNorm under IVON: while a step runs on sampled weights, BN normalises with the
statistics of the batch (as in any training step) but its running mean and variance are
NOT updated (frozen), so that noise draws do not leak into them. After every epoch the
running statistics are re-estimated at the posterior mean (precise BN: exact mean and
variance pooled over `bn_batches` training batches). Adam updates them as usual
(momentum 0.05).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from enum import Enum
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from basics.progress import progress as progress_bar
from models import native
from models.model_config import ForwardOptions
from models.network import SpikingNet, bn_prefixes, forward_stacked
from models.posterior import Posterior, hess_by_name, ivon_sampled

log = logging.getLogger(__name__)


class OptimizerName(str, Enum):
    ADAM = "adam"
    IVON = "ivon"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation hyper-parameters; fields marked IVON apply only to IVON.

    Attributes:
        optimizer: `adam` or `ivon`.
        epochs: passes over the training split.
        batch_size: examples per step.
        lr: initial learning rate.
        weight_decay: L2 (Adam) / prior precision per example (IVON).
        seed: seeds initialisation, shuffling, dropout and IVON's weight sampling.
        plateau_factor, plateau_patience: ReduceLROnPlateau on the validation loss.
        hess_init: IVON initial Hessian (sets the initial posterior width).
        beta2: IVON Hessian EMA rate (its horizon 1/(1 - beta2) in steps decides whether the
            curvature estimate leaves `hess_init` within a run).
        ess: IVON effective sample size (None: the number of training examples).
        train_samples: IVON weight samples per step.
        bn_batches: batches used to re-estimate BN statistics at the mean (IVON).
    """

    optimizer: str = "adam"
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-2
    weight_decay: float = 0.0
    seed: int = 0
    plateau_factor: float = 0.7
    plateau_patience: int = 2
    hess_init: float = 0.1
    beta2: float = 0.99999
    ess: float | None = None
    train_samples: int = 1
    bn_batches: int = 16

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# Presets: Adam as in the cited baseline (Bittar & Garner 2022: lr 1e-2, batch 128);
# IVON after the paper (batch 16, ess = N) with the lr / hess_init measured here.
PRESETS: dict[str, TrainConfig] = {
    "adam": TrainConfig(optimizer="adam", batch_size=128, lr=1e-2, weight_decay=0.0),
    "ivon": TrainConfig(optimizer="ivon", batch_size=16, lr=0.3, weight_decay=1e-4,
                        hess_init=0.1, beta2=0.99999),
}


@dataclass
class TrainResult:
    net: SpikingNet
    history: list[dict]
    posterior: Posterior | None
    ivon_args: dict | None
    kernel: str = "eager"  # the LIF scan that trained it: "native" (compiled kernel) or "eager"


def _batches(n: int, size: int, g: torch.Generator | None) -> list[Tensor]:
    order = torch.randperm(n, generator=g) if g is not None else torch.arange(n)
    return list(order.split(size))


@torch.no_grad()
def evaluate_loss(net: SpikingNet, x: Tensor, y: Tensor, batch_size: int = 256) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of the network (inference mode)."""
    was = net.training
    net.eval()
    loss = correct = 0.0
    for idx in torch.arange(len(y)).split(batch_size):
        xb, yb = x[idx].to(_dev(net)), y[idx].to(_dev(net))
        logits = net(xb)
        loss += F.cross_entropy(logits, yb, reduction="sum").item()
        correct += (logits.argmax(-1) == yb).sum().item()
    net.train(was)
    return loss / len(y), correct / len(y)


def _bind(perturb: Perturb | None, g: torch.Generator):
    return None if perturb is None else (lambda t: perturb(t, g))


def _dev(net: SpikingNet) -> torch.device:
    return next(net.parameters()).device


@torch.no_grad()
def bn_statistics(net_cfg, tensors: dict[str, Tensor], x: Tensor, batch_size: int,
                  batches: int, g: torch.Generator | None) -> dict[str, tuple[Tensor, Tensor]]:
    """Exact BN mean/variance per layer, pooled over `batches` batches of `x`.

    `tensors` may be K-stacked (one set of statistics per network); each layer's
    statistics are taken with the layers below normalised by their batch statistics,
    as in training.
    """
    stats: dict = {}
    dev = next(iter(tensors.values())).device
    for idx in _batches(len(x), batch_size, g)[:batches]:
        forward_stacked(net_cfg, tensors, x[idx].to(dev), ForwardOptions(bn_batch_stats=True, record_stats=stats))
    out = {}
    for prefix in bn_prefixes(net_cfg):
        s, sq, n = stats[prefix]
        mean = s / n
        out[prefix] = (mean, (sq / n - mean.square()).clamp_min(0.0) * n / max(n - 1, 1))
    return out


@torch.no_grad()
def recalibrate_bn_(net: SpikingNet, x: Tensor, batch_size: int, batches: int, g: torch.Generator) -> None:
    """Set the network's BN running statistics to exact ones over a few training batches."""
    t = {n: v.unsqueeze(0) for n, v in net.tensors().items()}
    for prefix, (mean, var) in bn_statistics(net.cfg, t, x, batch_size, batches, g).items():
        bn = net.get_submodule(prefix)
        bn.running_mean.copy_(mean[0])
        bn.running_var.copy_(var[0])


Perturb = Callable[[dict[str, Tensor], torch.Generator], dict[str, Tensor]]


def train(net: SpikingNet, cfg: TrainConfig, x_train: Tensor, y_train: Tensor,
          x_val: Tensor, y_val: Tensor, *, progress: bool = True,
          on_epoch: Callable[[dict], None] | None = None, perturb: Perturb | None = None) -> TrainResult:
    """Train `net` in place; returns it with history and (IVON) the posterior.

    Args:
        net: freshly initialised network (on the target device).
        cfg: optimiser settings (see `PRESETS`).
        x_train, y_train, x_val, y_val: features [N, T, D] and labels [N] (any device).
        progress: show a progress bar on stderr (only when it is a terminal).
        perturb: hardware-aware training: maps the network's K = 1 tensors and the run's
            generator to a fresh perturbed draw for every training step (gradients reach
            the clean weights); validation stays clean.
    """
    if cfg.epochs < 1:
        raise ValueError(f"epochs must be positive, got {cfg.epochs}")
    g = torch.Generator().manual_seed(cfg.seed)
    dev = _dev(net)
    named = {n: p for n, p in net.named_parameters() if p.requires_grad}
    is_ivon = OptimizerName(cfg.optimizer) is OptimizerName.IVON
    ivon_args = None
    if is_ivon:
        import ivon

        ivon_args = dict(lr=cfg.lr, ess=float(cfg.ess or len(y_train)), hess_init=cfg.hess_init, beta1=0.9,
                         beta2=cfg.beta2, weight_decay=cfg.weight_decay, mc_samples=cfg.train_samples,
                         hess_approx="price", clip_radius=math.inf, sync=False, debias=True, rescale_lr=True)
        opt = ivon.IVON(list(named.values()), **ivon_args)
    else:
        opt = torch.optim.Adam(named.values(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=cfg.plateau_factor, patience=cfg.plateau_patience)
    history: list[dict] = []
    bar = progress_bar(range(cfg.epochs), desc=f"train {cfg.optimizer}", unit="epoch", enabled=progress)
    work = cfg.epochs * cfg.train_samples * x_train.shape[0] * x_train.shape[1] * sum(net.cfg.hidden)
    with native.KERNEL.training(work) as kernel:
        for epoch in bar:
            net.train()
            tot_loss = tot_correct = 0.0
            for idx in _batches(len(y_train), cfg.batch_size, g):
                if len(idx) < 2:
                    continue  # BatchNorm needs more than one example
                xb, yb = x_train[idx].to(dev), y_train[idx].to(dev)
                if is_ivon:
                    for _ in range(cfg.train_samples):
                        with ivon_sampled(opt, g):
                            opt.zero_grad()
                            logits = net(xb, dropout_generator=g, update_running=False, perturb=_bind(perturb, g))
                            loss = F.cross_entropy(logits, yb)
                            loss.backward()
                else:
                    opt.zero_grad()
                    logits = net(xb, dropout_generator=g, perturb=_bind(perturb, g))
                    loss = F.cross_entropy(logits, yb)
                    loss.backward()
                opt.step()
                tot_loss += loss.item() * len(idx)
                tot_correct += (logits.argmax(-1) == yb).sum().item()
            if is_ivon:
                recalibrate_bn_(net, x_train, cfg.batch_size * 8, cfg.bn_batches, g)
            val_loss, val_acc = evaluate_loss(net, x_val, y_val)
            sched.step(val_loss)
            rec = {"epoch": epoch + 1, "train_loss": tot_loss / len(y_train), "train_acc": tot_correct / len(y_train),
                   "val_loss": val_loss, "val_acc": val_acc, "lr": opt.param_groups[0]["lr"]}
            history.append(rec)
            bar.set_postfix(loss=f"{rec['train_loss']:.3f}", val_acc=f"{val_acc:.3f}")
            log.info("epoch %d/%d: train loss %.4f acc %.4f, validation loss %.4f acc %.4f, lr %.3g", epoch + 1,
                     cfg.epochs, rec["train_loss"], rec["train_acc"], val_loss, val_acc, rec["lr"])
            if on_epoch:
                on_epoch(rec)
    net.eval()
    posterior = None
    if is_ivon:
        posterior = Posterior(hess_by_name(opt, named), ess=ivon_args["ess"], weight_decay=cfg.weight_decay,
                              hess_init=cfg.hess_init)
    return TrainResult(net, history, posterior, ivon_args, kernel)
