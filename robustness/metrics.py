"""Classification and uncertainty metrics, each a small function of log-probabilities.

Conventions: `logp` is [N, C] natural-log predictive probabilities (for BMA and
ensembles the log of the softmax averaged over members, computed as a log-mean-exp),
`sample_logp` is [M, N, C] (one row per posterior sample or network), `y` is [N] int.
Working in log space keeps NLL exact in the tail: an example the network gets wrong by a
logit margin of 80 costs 80 nats, not the 27.6 a probability clamped at 1e-12 would give.
Every metric is an average over examples, so batch results combine by weighting with
batch size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from robustness.registry import Registry


def log_mean_exp(sample_logp: Tensor) -> Tensor:
    """log of the mean over the leading axis of exp(sample_logp): the averaged predictive.

    >>> lp = torch.log(torch.tensor([[[0.2, 0.8]], [[0.6, 0.4]]], dtype=torch.float64))
    >>> [round(p, 12) for p in log_mean_exp(lp).exp()[0].tolist()]
    [0.4, 0.6]
    """
    return torch.logsumexp(sample_logp.double(), 0) - math.log(sample_logp.shape[0])


def per_example_nll(logp: Tensor, y: Tensor) -> Tensor:
    """-log p(y_n | x_n) for every example [N] (float64)."""
    return -logp.double().gather(-1, y.view(-1, 1)).squeeze(-1)


def accuracy(logp: Tensor, y: Tensor) -> float:
    """Fraction of examples whose arg-max class is the label."""
    return (logp.argmax(-1) == y).double().mean().item()


def nll(logp: Tensor, y: Tensor) -> float:
    """Negative log-likelihood `-mean log p(y|x)` of the (averaged) predictive, exact.

    >>> nll(torch.tensor([[0.0, -100.0]]), torch.tensor([1]))
    100.0
    """
    return per_example_nll(logp, y).mean().item()


def brier(logp: Tensor, y: Tensor) -> float:
    """Multiclass Brier score: `mean_n sum_c (p_nc - 1[y_n = c])^2`, in [0, 2]."""
    onehot = torch.nn.functional.one_hot(y, logp.shape[-1]).double()
    return (logp.double().exp() - onehot).square().sum(-1).mean().item()


def ece(logp: Tensor, y: Tensor, bins: int = 15) -> float:
    """Top-label expected calibration error with `bins` equal-width confidence bins.

    Bin b holds confidences in (b/bins, (b+1)/bins]; a confidence of exactly 1.0 falls in
    the top bin (torchmetrics issue 3510 is the bug this avoids).
    """
    conf, pred = logp.double().exp().max(-1)
    correct = (pred == y).double()
    idx = (torch.ceil(conf * bins).long() - 1).clamp(0, bins - 1)
    n = len(y)
    # sum_b |B_b|/n * |acc_b - conf_b| = sum_b |sum_{i in b} (correct_i - conf_i)| / n
    conf_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, idx, conf)
    acc_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, idx, correct)
    return ((acc_sum - conf_sum).abs().sum() / n).item()


def _entropy_rows(logp: Tensor) -> Tensor:
    lp = logp.double()
    return -(lp.exp() * lp).nan_to_num(nan=0.0).sum(-1)  # 0 * log 0 = 0 where lp = -inf


def entropy(logp: Tensor) -> float:
    """Mean predictive entropy `H[p(y|x)]` (nats) of the (averaged) predictive."""
    return _entropy_rows(logp).mean().item()


def expected_entropy(sample_logp: Tensor) -> float:
    """Mean over examples of `E_m H[p_m(y|x)]`: the aleatoric part (nats)."""
    return _entropy_rows(sample_logp).mean().item()


def mutual_information(sample_logp: Tensor) -> float:
    """Epistemic part `H[E_m p_m] - E_m H[p_m]` (nats), >= 0 by Jensen's inequality."""
    return max(entropy(log_mean_exp(sample_logp)) - expected_entropy(sample_logp), 0.0)


def disagreement(logp: Tensor, reference_pred: Tensor) -> float:
    """Fraction of examples whose arg-max differs from a reference prediction."""
    return (logp.argmax(-1) != reference_pred).double().mean().item()


@dataclass(frozen=True)
class MetricInfo:
    """A metric and what it needs: `labels` (needs y), `samples` (needs [M, N, C])."""

    fn: Callable[..., float]
    higher_is_better: bool
    needs_samples: bool = False
    needs_labels: bool = True


METRICS: Registry[MetricInfo] = Registry("metric")
METRICS.register("accuracy")(MetricInfo(accuracy, True))
METRICS.register("nll")(MetricInfo(nll, False))
METRICS.register("brier")(MetricInfo(brier, False))
METRICS.register("ece")(MetricInfo(ece, False))
METRICS.register("entropy")(MetricInfo(entropy, False, needs_labels=False))
METRICS.register("expected_entropy")(MetricInfo(expected_entropy, False, True, False))
METRICS.register("mutual_information")(MetricInfo(mutual_information, False, True, False))


def compute_metrics(logp: Tensor, y: Tensor, sample_logp: Tensor | None = None) -> dict[str, float]:
    """Every registered metric that the inputs allow (sample metrics only with samples).

    A network whose weights or logits went non-finite (an extreme perturbation) gets NaN
    for every metric: the argmax of NaN logits would invent an accuracy."""
    finite = bool(torch.isfinite(logp).all()) and (sample_logp is None or bool(torch.isfinite(sample_logp).all()))
    out = {}
    for name, m in METRICS:
        if not finite:
            if not m.needs_samples or sample_logp is not None:
                out[name] = float("nan")
            continue
        if m.needs_samples:
            if sample_logp is not None:
                out[name] = m.fn(sample_logp)
        elif m.needs_labels:
            out[name] = m.fn(logp, y)
        else:
            out[name] = m.fn(logp)
    return out
