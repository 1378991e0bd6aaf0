import math

import numpy as np
import pytest
import torch

from robustness.metrics import (accuracy, brier, compute_metrics, disagreement, ece, entropy,
                                expected_entropy, log_mean_exp, mutual_information, nll)

L = torch.log  # the metrics take log-probabilities


def test_one_hot_correct_prediction_is_perfect():
    p = L(torch.eye(4))
    y = torch.arange(4)
    assert accuracy(p, y) == 1.0
    assert nll(p, y) == 0.0
    assert brier(p, y) == 0.0
    assert ece(p, y) == 0.0
    assert entropy(p) == 0.0


def test_hand_computed_values():
    p = L(torch.tensor([[0.7, 0.2, 0.1], [0.4, 0.5, 0.1]], dtype=torch.float64))
    y = torch.tensor([0, 0])
    assert accuracy(p, y) == 0.5
    assert nll(p, y) == pytest.approx(-(math.log(0.7) + math.log(0.4)) / 2)
    b1 = 0.3**2 + 0.2**2 + 0.1**2
    b2 = 0.6**2 + 0.5**2 + 0.1**2
    assert brier(p, y) == pytest.approx((b1 + b2) / 2)
    # bins of width 1/15: 0.7 -> bin 10, 0.5 -> bin 7; each bin |acc - conf| weighted 1/2
    assert ece(p, y) == pytest.approx(0.5 * abs(1 - 0.7) + 0.5 * abs(0 - 0.5))
    h1 = -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1))
    h2 = -(0.4 * math.log(0.4) + 0.5 * math.log(0.5) + 0.1 * math.log(0.1))
    assert entropy(p) == pytest.approx((h1 + h2) / 2)


def test_confidence_one_falls_in_top_bin():
    # Wrong with confidence exactly 1.0: ECE must be 1, not 0 (a dropped top bin gives 0).
    p = L(torch.tensor([[1.0, 0.0]]))
    assert ece(p, torch.tensor([1])) == pytest.approx(1.0)


def _ece_reference(probs, y, bins=15):
    conf = probs.max(1)
    pred = probs.argmax(1)
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            total += m.mean() * abs((pred[m] == y[m]).mean() - conf[m].mean())
    return total


def test_metrics_match_independent_numpy_reference():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 7)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = rng.integers(0, 7, 500)
    pt, yt = L(torch.from_numpy(probs)), torch.from_numpy(y)
    assert ece(pt, yt) == pytest.approx(_ece_reference(probs, y), abs=1e-12)
    assert nll(pt, yt) == pytest.approx(-np.log(probs[np.arange(500), y]).mean())
    assert brier(pt, yt) == pytest.approx(((probs - np.eye(7)[y]) ** 2).sum(1).mean())


def test_mutual_information_identity_and_sign():
    g = torch.Generator().manual_seed(0)
    sp = torch.log_softmax(torch.randn(8, 50, 5, generator=g, dtype=torch.float64) * 3, -1)
    mean = L(sp.exp().mean(0))
    torch.testing.assert_close(log_mean_exp(sp), mean)
    mi = mutual_information(sp)
    assert mi == pytest.approx(entropy(mean) - expected_entropy(sp))
    assert mi > 0
    # identical samples carry no epistemic uncertainty
    same = sp[:1].expand(4, -1, -1)
    assert mutual_information(same) == pytest.approx(0.0, abs=1e-12)


def test_disagreement_and_compute_metrics_keys():
    p = L(torch.tensor([[0.9, 0.1], [0.2, 0.8]]))
    assert disagreement(p, torch.tensor([0, 0])) == 0.5
    m = compute_metrics(p, torch.tensor([0, 1]))
    assert set(m) == {"accuracy", "nll", "brier", "ece", "entropy"}
    m = compute_metrics(p, torch.tensor([0, 1]), p.unsqueeze(0))
    assert {"expected_entropy", "mutual_information"} <= set(m)


def test_nll_exact_on_saturated_logits_not_capped():
    # A confidently wrong network: the label's logit sits 80 below the winner's.
    logits = torch.tensor([[80.0, 0.0], [0.0, 120.0]], dtype=torch.float64)
    y = torch.tensor([1, 0])
    logp = torch.log_softmax(logits, -1)
    assert nll(logp, y) == pytest.approx((80 + 120) / 2, rel=1e-12)  # a 1e-12 clamp would give 27.6
    # BMA / ensemble: log-mean-exp over members keeps the tail exact too
    members = torch.log_softmax(torch.tensor([[[0.0, 100.0]], [[0.0, 200.0]]], dtype=torch.float64), -1)
    expect = -math.log((math.exp(-100.0) + math.exp(-200.0)) / 2)
    assert nll(log_mean_exp(members), torch.tensor([0])) == pytest.approx(expect, rel=1e-12)
