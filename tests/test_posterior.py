"""What the IVON posterior is (`robust posterior`), and noise in units of its sigma."""

import json
import math

import pytest
import torch
from click.testing import CliRunner

from models.checkpoint import load_checkpoint
from models.model_config import ModelConfig
from models.network import SpikingNet
from models.posterior import Posterior, diagnose
from perturbations.base import Context, Scale
from perturbations.spec import apply, parse_spec
from robustness.cli.main import cli

ESS, WD, H0 = 1000.0, 1e-3, 0.1


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _net():
    return SpikingNet(ModelConfig(hidden=(8, 6), num_classes=3, input_dim=5), torch.Generator().manual_seed(0))


def _post(make_hess):
    params = dict(_net().named_parameters())
    g = torch.Generator().manual_seed(0)
    return Posterior({n: make_hess(p, g) for n, p in params.items()}, ESS, WD, H0), params


@pytest.mark.parametrize("make_hess,verdict", [
    (lambda p, g: torch.full_like(p, H0 * 0.97), "initial"),           # beta2 ~ 1: hess never moved
    (lambda p, g: torch.full_like(p, 1e-7), "prior"),                   # curvature ~ 0: sigma = 1/sqrt(ess wd)
    (lambda p, g: torch.full_like(p, H0 * 0.6), "uniform"),             # moved, same everywhere
    (lambda p, g: 10 ** (-3 + 2 * torch.rand(p.shape, generator=g)), "learnt"),  # a shape from curvature
])
def test_diagnosis_names_what_the_posterior_is(make_hess, verdict):
    post, params = _post(make_hess)
    d = diagnose(post, params)
    assert d["verdict"] == verdict, d["text"]
    assert d["initial_sigma"] == pytest.approx(1 / math.sqrt(ESS * (H0 + WD)))
    assert d["prior_sigma"] == pytest.approx(1 / math.sqrt(ESS * WD))
    assert set(d["layers"]) == set(params)


def test_robust_posterior_on_a_trained_model_and_checkpoint_diagnostics(tiny_checkpoints):
    r = run("posterior", "--model", tiny_checkpoints["ivon"])
    assert r.exit_code == 0, r.output
    assert "blocks.0.linear.weight" in r.output and "verdict:" in r.output and "beta2" in r.output
    d = json.loads(run("posterior", "--model", tiny_checkpoints["ivon"], "--json").output)
    ck = load_checkpoint(tiny_checkpoints["ivon"])
    assert ck.meta["diagnostics"]["verdict"] == d["verdict"]  # stored at training time for reports
    s = ck.posterior.sigma()["blocks.0.alpha"]
    assert d["layers"]["blocks.0.alpha"]["median"] == pytest.approx(torch.quantile(s.double(), 0.5).item(), rel=1e-9)
    r = run("posterior", "--model", tiny_checkpoints["adam"])
    assert r.exit_code == 2 and "needs an IVON model" in r.output


def test_sigma_scale_noise_is_in_units_of_each_weights_sigma():
    net = _net()
    post, params = _post(lambda p, g: 10 ** (-3 + 2 * torch.rand(p.shape, generator=g)))
    k = 400
    t = {n: v.unsqueeze(0).expand(k, *v.shape) for n, v in net.tensors().items()}
    t.update({f"sigma:{n}": s.unsqueeze(0).expand(k, *s.shape) for n, s in post.sigma().items()})
    hidden = ("blocks.0", "blocks.1")
    out = apply(parse_spec("gaussian:?"), 0.5, t, seed=0, draws=list(range(k)),
                ctx=Context(hidden + ("readout",), hidden, Scale.SIGMA))
    n = "blocks.0.linear.weight"
    z = (out[n] - t[n]) / t[f"sigma:{n}"]
    assert z.std().item() == pytest.approx(0.5, rel=0.03)


def test_sigma_scale_in_sweeps(tiny_checkpoints, tmp_path):
    adam, ivon = tiny_checkpoints["adam"], tiny_checkpoints["ivon"]
    base = ["sweep", "--noise", "1,3", "--seeds", 2, "--limit", 30, "--scale", "sigma", "-q", "--json"]
    r = run(*base, "--model", ivon, "--mc-samples", 2, "--store", tmp_path / "a.db")
    assert r.exit_code == 0, r.output
    r = run(*base, "--model", adam, "--sigma-from", ivon, "--store", tmp_path / "b.db")
    assert r.exit_code == 0, r.output
    r = run("sweep", "--model", adam, "--noise", "1", "--scale", "sigma", "--store", tmp_path / "c.db")
    assert r.exit_code == 2 and "--scale sigma needs a posterior" in r.output and not (tmp_path / "c.db").exists()
    r = run("sweep", "--model", ivon, "--noise", "1", "--scale", "sigma", "--fold-bn", "--store", tmp_path / "d.db")
    assert r.exit_code == 2 and "drop --fold-bn" in r.output
    r = run("sweep", "--model", ivon, "-p", "mismatch", "--noise", "1", "--scale", "sigma", "--store", tmp_path / "e.db")
    assert r.exit_code == 2 and "gaussian weight noise only" in r.output


def test_the_verdict_quotes_the_measured_sigma_and_what_its_share_counts():
    post, params = _post(lambda p, g: torch.full_like(p, H0 * 0.97))  # the EMA kept 97% of hess_init
    d = diagnose(post, params)
    measured = 1 / math.sqrt(ESS * (0.97 * H0 + WD))
    assert f"sigma median {measured:.4g}" in d["text"]  # the measurement, not the formula's 1/sqrt(ess (h0 + wd))
    assert f"100% of parameters within 10% of the initial width 1/sqrt(ess (hess_init + wd)) = " \
           f"{1 / math.sqrt(ESS * (H0 + WD)):.4g}" in d["text"]
    from models.posterior import _share

    assert (_share(0.9996), _share(1.0), _share(0.0004), _share(0.5)) == (">99.9%", "100%", "<0.1%", "50%")
