"""Properties of every registered perturbation, and physics checks of each hardware model."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models.deploy import deploy_tensors
from models.model_config import TRAINABLE_NEURONS, ForwardOptions, ModelConfig, weight_layers
from models.network import SpikingNet, forward_stacked
from perturbations.base import PERTURBATIONS, Context, Scale
from perturbations.quantize import quantize_tensor
from perturbations.spec import PROFILES, apply, component_generators, parse_spec

CFG = ModelConfig(hidden=(16, 12), num_classes=5, input_dim=10)
HIDDEN = ("blocks.0", "blocks.1")
CTX = Context(HIDDEN + ("readout",), HIDDEN)
LEVELS = {"quantize": 4, "pcm": 3600.0, "bitflip": 0.05, "stuck-at": 0.2, "dead-neuron": 0.3,
          "saturated-neuron": 0.3, "crossbar-adc": 6, "crossbar-wire": 1.0, "crossbar-size": 8}
# Crossbars with something of their own to draw (programming error) and an ADC range that needs
# no training data; their defaults (nothing drawn, calibrated ranges) are tested in test_crossbar.py.
SPECS = {"crossbar-adc": "crossbar-adc(adc_range=fixed,prog=0.02)", "crossbar-wire": "crossbar-wire(prog=0.02)",
         "crossbar-size": "crossbar-size(prog=0.02,wire=1)"}


def cfg_of(neuron="lif"):
    return ModelConfig(hidden=(16, 12), num_classes=5, input_dim=10, neuron=neuron)


def net_tensors(k=3, neuron="lif"):
    cfg = cfg_of(neuron)
    net = SpikingNet(cfg, torch.Generator().manual_seed(0))
    return {n: v.detach() for n, v in deploy_tensors(cfg, net.stacked(k)).items()}


def run(name, level, k=3, seed=0, draws=None, t=None, neuron="lif", text=None):
    t = t if t is not None else net_tensors(k, neuron)
    ctx = Context(weight_layers(cfg_of(neuron)), HIDDEN)
    spec = parse_spec(f"{text or SPECS.get(name, name)}:?")
    return apply(spec, level, t, seed=seed, draws=draws or list(range(k)), ctx=ctx)


# The registry-wide properties hold on every neuron type: the adaptive and recurrent
# tensors are inputs a perturbation must copy, never modify, and leave alone at level 0.
@pytest.mark.parametrize("neuron", TRAINABLE_NEURONS)
@pytest.mark.parametrize("name", sorted(PERTURBATIONS))
def test_shape_dtype_kept_and_input_untouched(name, neuron):
    t = net_tensors(neuron=neuron)
    before = {n: v.clone() for n, v in t.items()}
    out = run(name, LEVELS.get(name, 0.1), t=t, neuron=neuron)
    for n, v in t.items():
        assert torch.equal(v, before[n]), f"{name} modified its input {n}"
        assert out[n].shape == v.shape and out[n].dtype == v.dtype
    assert any(not torch.equal(out[n], t[n]) for n in t) or set(out) - set(t), f"{name} changed nothing"


@pytest.mark.parametrize("neuron", TRAINABLE_NEURONS)
@pytest.mark.parametrize("name", sorted(n for n, p in PERTURBATIONS.items() if p.zero_is_identity))
def test_level_zero_is_identity(name, neuron):
    t = net_tensors(neuron=neuron)
    out = run(name, 0.0, t=t, neuron=neuron, text=name)
    assert set(out) == set(t) and all(torch.equal(out[n], t[n]) for n in t)


@pytest.mark.parametrize("neuron", TRAINABLE_NEURONS)
@pytest.mark.parametrize("name", sorted(PERTURBATIONS))
def test_same_seed_same_draw_and_stacked_equals_separate(name, neuron):
    lvl = LEVELS.get(name, 0.1)
    a = run(name, lvl, seed=5, neuron=neuron)
    b = run(name, lvl, seed=5, neuron=neuron)
    c = run(name, lvl, seed=6, neuron=neuron)
    assert all(torch.equal(a[n], b[n]) for n in a)
    if name not in ("quantize", "read-noise"):  # deterministic at perturbation time
        assert any(not torch.equal(a[n], c[n]) for n in a)
    # draw k of a K-stack equals that draw alone
    single = run(name, lvl, k=1, seed=5, draws=[2], neuron=neuron)
    assert all(torch.equal(a[n][2:3], single[n]) for n in single)


WEIGHT_PERTURBATIONS = ("gaussian", "multiplicative", "lognormal", "quantize", "stuck-at", "bitflip", "pcm",
                        "crossbar-adc", "crossbar-wire", "crossbar-size")


@pytest.mark.parametrize("name", WEIGHT_PERTURBATIONS + ("mismatch",))
def test_recurrent_synapses_are_synapses(name):
    """V is a layer of synaptic weights: every weight model (and mismatch's gain) reaches it."""
    t = net_tensors(neuron="radlif")
    out = run(name, LEVELS.get(name, 0.1), t=t, neuron="radlif")
    for i in range(2):
        n = f"blocks.{i}.recurrent.linear.weight"
        assert not torch.equal(out[n], t[n]), f"{name} left {n} untouched"


def test_mismatch_spreads_the_adaptation_constants_per_neuron_and_keeps_their_signs():
    t = net_tensors(k=4, neuron="adlif")
    out = run("mismatch", 0.2, k=4, t=t, neuron="adlif")
    for name in ("adapt_beta", "adapt_a", "adapt_b"):
        a, b = t[f"blocks.0.{name}"], out[f"blocks.0.{name}"]
        assert not torch.equal(a, b) and not torch.equal(b[0], b[1]), name  # per neuron, per chip
        assert torch.equal(torch.sign(a), torch.sign(b)), name
    beta = out["blocks.0.adapt_beta"]
    assert float(beta.min()) > 0 and float(beta.max()) < 1  # a time constant stays a decay
    only_vth = run("mismatch(targets=vth)", 0.2, k=4, t=t, neuron="adlif")
    assert torch.equal(only_vth["blocks.0.adapt_a"], t["blocks.0.adapt_a"])


def test_gaussian_noise_std_matches_level_per_layer():
    t = net_tensors(k=64)
    out = run("gaussian", 0.05, k=64, t=t)
    for n in ("blocks.0.linear.weight", "blocks.1.linear.weight", "readout.linear.weight"):
        s = t[n][0].abs().max()
        noise = (out[n] - t[n]) / s
        assert noise.std().item() == pytest.approx(0.05, rel=0.03)
        assert abs(noise.mean().item()) < 0.002


def test_common_random_numbers_across_levels():
    t = net_tensors()
    a, b = run("gaussian", 0.02, t=t), run("gaussian", 0.04, t=t)
    n = "blocks.0.linear.weight"
    torch.testing.assert_close(b[n] - t[n], 2 * (a[n] - t[n]))


@settings(max_examples=25, deadline=None)
@given(bits=st.integers(2, 12), per_channel=st.booleans(), seed=st.integers(0, 1000))
def test_quantize_idempotent_and_bounded(bits, per_channel, seed):
    w = torch.randn(2, 7, 9, generator=torch.Generator().manual_seed(seed))
    q = quantize_tensor(w, bits, per_channel=per_channel)
    assert torch.equal(quantize_tensor(q, bits, per_channel=per_channel), q)
    qmax = 2 ** (bits - 1) - 1
    dims = (2,) if per_channel else (1, 2)
    step = w.abs().amax(dim=dims, keepdim=True) / qmax
    assert ((q - w).abs() <= step / 2 + 1e-6).all()


def test_two_bits_at_most_four_values_and_sixteen_bits_tight():
    t = net_tensors(k=1)
    q2 = run("quantize", 2, k=1, t=t)
    for n in CTX.weights(t):
        assert len(torch.unique(q2[n][0])) <= 4
    q16 = run("quantize", 16, k=1, t=t)
    x = torch.randn(4, 8, 10, generator=torch.Generator().manual_seed(1))
    a, _ = forward_stacked(CFG, t, x, ForwardOptions(clamp_alpha=False))
    b, _ = forward_stacked(CFG, q16, x, ForwardOptions(clamp_alpha=False))
    assert (a - b).abs().max() < 1e-3


def test_stochastic_rounding_is_unbiased():
    w = torch.full((1, 2000), 0.3)
    w[0, 0] = 1.0
    t = {"readout.linear.weight": w.view(1, 1, 2000)}
    ctx = Context(("readout",), (), options={"rounding": "stochastic"})
    q = PERTURBATIONS["quantize"].fn(t, 2, component_generators(0, [0], 0), ctx)["readout.linear.weight"]
    assert set(torch.unique(q).tolist()) <= {0.0, 1.0}
    assert q[0, 0, 1:].mean().item() == pytest.approx(0.3, abs=0.03)


def test_stuck_at_fraction_matches_p():
    t = net_tensors(k=64)
    out = run("stuck-at", 0.2, k=64, t=t)
    w, o = t["blocks.0.linear.weight"], out["blocks.0.linear.weight"]
    frac = ((o == 0) & (w != 0)).float().mean().item()
    assert frac == pytest.approx(0.2, abs=0.02)


def test_mismatch_keeps_constants_positive_with_right_spread():
    t = net_tensors(k=32)
    out = run("mismatch", 0.5, k=32, t=t)
    for layer in HIDDEN:
        th, a = out[f"{layer}.v_th"], out[f"{layer}.alpha"]
        assert (th > 0).all() and (a > 0).all() and (a < 1).all()
        assert torch.log(th / t[f"{layer}.v_th"]).std().item() == pytest.approx(0.5, rel=0.1)
        tau0, tau1 = -1 / torch.log(t[f"{layer}.alpha"]), -1 / torch.log(a)
        assert torch.log(tau1 / tau0).std().item() == pytest.approx(0.5, rel=0.1)


def test_neuron_faults_change_spiking_as_named():
    t = net_tensors(k=2)
    x = torch.randn(6, 1, 10).expand(6, 15, 10) * 3
    _, r_dead = forward_stacked(CFG, run("dead-neuron", 1.0, k=2, t=t), x, ForwardOptions(clamp_alpha=False))
    _, r_sat = forward_stacked(CFG, run("saturated-neuron", 1.0, k=2, t=t), x, ForwardOptions(clamp_alpha=False))
    assert r_dead[0].max().item() == 0.0 and r_sat[0].min().item() == 1.0


def test_bitflip_rate_and_identity_at_zero():
    t = net_tensors(k=4)
    out = run("bitflip", 0.01, k=4, t=t)
    changed = (out["blocks.0.linear.weight"] != t["blocks.0.linear.weight"]).float().mean().item()
    # 8 bits, each flips with p = 0.01: P(any) = 1 - 0.99^8
    assert changed == pytest.approx(1 - 0.99**8, abs=0.02)


def test_pcm_drift_and_compensation():
    t = net_tensors(k=16)
    name = "blocks.0.linear.weight"
    w = t[name]
    raw = apply(parse_spec("pcm(compensation=none):?"), 86400.0, t, seed=0, draws=list(range(16)), ctx=CTX)
    comp = run("pcm", 86400.0, k=16, t=t)
    # drift shrinks conductances: a day at nu ~ 0.05-0.1 loses ~ 30-50% of |w|
    ratio = raw[name].abs().sum() / w.abs().sum()
    assert 0.4 < ratio < 0.85
    assert comp[name].abs().sum() / w.abs().sum() == pytest.approx(1.0, abs=0.1)
    # just programmed: programming noise only, std of a few percent of max|w|
    t0 = run("pcm", 0.0, k=16, t=t)
    err = ((t0[name] - w) / w.abs().amax(dim=(1, 2), keepdim=True)).std().item()
    assert 0.005 < err < 0.05


def test_profiles_parse_and_apply():
    from robustness.sweep.calibration import calibrating

    ctx = calibrating(CTX, CFG, torch.randn(4, 20, 10, generator=torch.Generator().manual_seed(0)), "cpu")
    for prof in PROFILES.values():
        spec = parse_spec(prof.spec)
        spec.check(list(prof.levels))
        out = apply(spec, prof.levels[-1], net_tensors(), seed=0, draws=[0, 1, 2], ctx=ctx)
        assert out["blocks.0.linear.weight"].shape == (3, 16, 10)


def test_fold_bn_matches_unfolded_forward():
    net = SpikingNet(CFG, torch.Generator().manual_seed(0))
    x = torch.randn(16, 1, 10).expand(16, 20, 10) * 2
    net.train()
    for _ in range(20):
        net(x)
    net.eval()
    t = deploy_tensors(CFG, net.stacked(1))
    f = deploy_tensors(CFG, net.stacked(1), fold_bn=True)
    a, ra = forward_stacked(CFG, t, x, ForwardOptions(clamp_alpha=False))
    b, rb = forward_stacked(CFG, f, x, ForwardOptions(clamp_alpha=False))
    assert ra[0].item() > 0
    torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)
    assert "blocks.0.linear.bias" in f and torch.all(f["blocks.0.bn.weight"] == 1)


def test_scale_options():
    t = net_tensors(k=32)
    n = "blocks.0.linear.weight"
    for scale, s in ((Scale.ABS, 1.0), (Scale.STD, t[n][0].std().item())):
        ctx = Context(CTX.layers, HIDDEN, scale)
        out = apply(parse_spec("gaussian:?"), 0.1, t, seed=0, draws=list(range(32)), ctx=ctx)
        assert ((out[n] - t[n]).std() / s).item() == pytest.approx(0.1, rel=0.05)
    assert math.isfinite(s)
