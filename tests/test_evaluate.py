import dataclasses

import pytest
import torch

from basics.errors import BadInput
from models.checkpoint import load_checkpoint
from robustness.data import DatasetSpec, load_dataset
from robustness.evaluate import EvalConfig, Mode, evaluate


@pytest.fixture(scope="module")
def data():
    return load_dataset(DatasetSpec())


def test_point_eval_is_deterministic_and_sane(tiny_checkpoints, data):
    ck = load_checkpoint(tiny_checkpoints["adam"])
    a = evaluate(ck, data, Mode.POINT, EvalConfig(limit=200))
    b = evaluate(ck, data, Mode.POINT, EvalConfig(limit=200))
    assert a.metrics == b.metrics and a.n == 200
    assert a.metrics["accuracy"] > 0.1  # 20 classes: chance 0.05
    assert 0 <= a.metrics["ece"] <= 1 and 0 <= a.metrics["brier"] <= 2
    assert all(0 < r < 1 for r in a.spike_rates)


def test_bma_metrics_and_seed(tiny_checkpoints, data):
    ck = load_checkpoint(tiny_checkpoints["ivon"])
    cfg = EvalConfig(mc_samples=4, limit=150)
    r = evaluate(ck, data, Mode.BMA, cfg)
    assert r.metrics["mutual_information"] > 0
    assert r.metrics["entropy"] == pytest.approx(r.metrics["expected_entropy"] + r.metrics["mutual_information"])
    assert evaluate(ck, data, Mode.BMA, cfg).metrics == r.metrics
    other = evaluate(ck, data, Mode.BMA, dataclasses.replace(cfg, seed=1)).metrics
    assert other != r.metrics


def test_bma_with_collapsed_posterior_equals_mean(tiny_checkpoints, data):
    ck = load_checkpoint(tiny_checkpoints["ivon"])
    ck.posterior.hess = {n: torch.full_like(h, 1e12) for n, h in ck.posterior.hess.items()}
    cfg = EvalConfig(mc_samples=2, limit=100, bn="mean")
    bma = evaluate(ck, data, Mode.BMA, cfg)
    mean = evaluate(ck, data, Mode.MEAN, cfg)
    torch.testing.assert_close(bma.probs, mean.probs, atol=1e-4, rtol=0)
    assert bma.metrics["mutual_information"] < 1e-6


def test_bma_needs_ivon_and_positive_samples(tiny_checkpoints, data):
    ck = load_checkpoint(tiny_checkpoints["adam"])
    with pytest.raises(BadInput, match="mode bma does not apply"):
        evaluate(ck, data, Mode.BMA, EvalConfig())
    with pytest.raises(BadInput, match="at least 1"):
        evaluate(ck, data, Mode.POINT, EvalConfig(mc_samples=0))
