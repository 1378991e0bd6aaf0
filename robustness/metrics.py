"""Classification and uncertainty metrics, each a small function of probabilities.

Conventions: `probs` is [N, C] (for BMA, the softmax averaged over samples),
`sample_probs` is [M, N, C] (one row per posterior sample or network), `y` is [N] int.
Logs are natural (nats). Every metric is an average over examples, so batch results
combine by weighting with batch size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from robustness.registry import Registry

_TINY = 1e-12


def accuracy(probs: Tensor, y: Tensor) -> float:
    """Fraction of examples whose arg-max class is the label."""
    return (probs.argmax(-1) == y).double().mean().item()


def nll(probs: Tensor, y: Tensor) -> float:
    """Negative log-likelihood `-mean log p(y|x)` of the (averaged) predictive.

    >>> nll(torch.tensor([[1.0, 0.0]]), torch.tensor([0]))
    0.0
    """
    p = probs.double().gather(-1, y.view(-1, 1)).squeeze(-1)
    return (-torch.log(p.clamp_min(_TINY))).mean().item()


def brier(probs: Tensor, y: Tensor) -> float:
    """Multiclass Brier score: `mean_n sum_c (p_nc - 1[y_n = c])^2`, in [0, 2]."""
    onehot = torch.nn.functional.one_hot(y, probs.shape[-1]).double()
    return (probs.double() - onehot).square().sum(-1).mean().item()


def ece(probs: Tensor, y: Tensor, bins: int = 15) -> float:
    """Top-label expected calibration error with `bins` equal-width confidence bins.

    Bin b holds confidences in (b/bins, (b+1)/bins]; a confidence of exactly 1.0 falls in
    the top bin (torchmetrics issue 3510 is the bug this avoids).
    """
    conf, pred = probs.double().max(-1)
    correct = (pred == y).double()
    idx = (torch.ceil(conf * bins).long() - 1).clamp(0, bins - 1)
    n = len(y)
    # sum_b |B_b|/n * |acc_b - conf_b| = sum_b |sum_{i in b} (correct_i - conf_i)| / n
    conf_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, idx, conf)
    acc_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, idx, correct)
    return ((acc_sum - conf_sum).abs().sum() / n).item()


def _entropy_rows(p: Tensor) -> Tensor:
    p = p.double()
    return -(p * torch.log(p.clamp_min(_TINY))).sum(-1)


def entropy(probs: Tensor) -> float:
    """Mean predictive entropy `H[p(y|x)]` (nats) of the (averaged) predictive."""
    return _entropy_rows(probs).mean().item()


def expected_entropy(sample_probs: Tensor) -> float:
    """Mean over examples of `E_m H[p_m(y|x)]`: the aleatoric part (nats)."""
    return _entropy_rows(sample_probs).mean().item()


def mutual_information(sample_probs: Tensor) -> float:
    """Epistemic part `H[E_m p_m] - E_m H[p_m]` (nats), >= 0 by Jensen's inequality."""
    return max(entropy(sample_probs.double().mean(0)) - expected_entropy(sample_probs), 0.0)


def disagreement(probs: Tensor, reference_pred: Tensor) -> float:
    """Fraction of examples whose arg-max differs from a reference prediction."""
    return (probs.argmax(-1) != reference_pred).double().mean().item()


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


def compute_metrics(probs: Tensor, y: Tensor, sample_probs: Tensor | None = None) -> dict[str, float]:
    """Every registered metric that the inputs allow (sample metrics only with samples)."""
    out = {}
    for name, m in METRICS:
        if m.needs_samples:
            if sample_probs is not None:
                out[name] = m.fn(sample_probs)
        elif m.needs_labels:
            out[name] = m.fn(probs, y)
        else:
            out[name] = m.fn(probs)
    return out
