"""sparch's adaptive and recurrent neurons: hand-derived trajectories, the equivalences
between the four types, hardware effects inside the recurrence, and every command on each."""

import json

import pytest
import torch
from click.testing import CliRunner

from models import recurrent
from models.model_config import ForwardOptions, ModelConfig
from models.network import SpikingNet, forward_stacked
from robustness.cli.main import cli


def one_layer(cur, alpha, v_th=1.0, v_rec=None, adapt=None, t=None):
    """Spikes [T, H] of one layer from currents [T, H] (K = B = 1)."""
    c = torch.tensor(cur, dtype=torch.float32).view(1, len(cur), 1, -1)
    h = c.shape[-1]
    vec = (lambda x: torch.full((1, 1, h), float(x)))
    rec = None if v_rec is None else torch.tensor(v_rec, dtype=torch.float32).unsqueeze(0)
    if rec is not None:
        rec = rec * (1 - torch.eye(h))  # as `recurrent_weight` masks it
    ad = None if adapt is None else tuple(vec(x) for x in adapt)
    z = recurrent.scan(c, None, vec(alpha), vec(v_th), 0.5, rec, ad, t or {}, "blocks.0", ForwardOptions())
    return z[0, :, 0].tolist()


def test_an_adaptive_neuron_follows_the_hand_derived_trajectory():
    # alpha = beta = 0.5, a = 0.5, b = 1, theta = 1, input 4 at every step (all values dyadic: exact):
    # t0: w = 0,      u = 0.5 (0 - 0) + 0.5 (4 - 0)        = 2       -> spike
    # t1: w = 0 + 1 + 1 = 2,      u = 0.5 (2 - 1) + 0.5 (4 - 2)     = 1.5     -> spike
    # t2: w = 1 + 0.75 + 1 = 2.75, u = 0.5 (1.5 - 1) + 0.5 (4 - 2.75) = 0.875   -> none
    # t3: w = 1.375 + 0.4375 = 1.8125, u = 0.5 (0.875) + 0.5 (4 - 1.8125) = 1.53125 -> spike
    assert one_layer([[4.0]] * 4, 0.5, adapt=(0.5, 0.5, 1.0)) == [[1.0], [1.0], [0.0], [1.0]]
    # the same neuron without adaptation fires at every step
    assert one_layer([[4.0]] * 4, 0.5) == [[1.0]] * 4


def test_a_recurrent_synapse_carries_a_spike_one_step_later_and_the_diagonal_does_nothing():
    # Neuron 0 is driven at t0 only; V[1, 0] = 3 carries its spike into neuron 1 at t1:
    # n1: u(t1) = 0.5 * 0 + 0.5 * 3 = 1.5 -> spike; u(t2) = 0.5 (1.5 - 1) = 0.25 -> none.
    # V[0, 0] = 100 would make neuron 0 fire again if the diagonal were not masked.
    spikes = one_layer([[4.0, 0.0], [0.0, 0.0], [0.0, 0.0]], 0.5, v_rec=[[100.0, 0.0], [3.0, 0.0]])
    assert spikes == [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]


def test_a_dead_neuron_sends_nothing_through_the_recurrence():
    t = {"blocks.0.dead": torch.tensor([[1.0, 0.0]])}
    spikes = one_layer([[4.0, 0.0], [0.0, 0.0]], 0.5, v_rec=[[0.0, 0.0], [3.0, 0.0]], t=t)
    assert spikes == [[0.0, 0.0], [0.0, 0.0]]


def _net(neuron, seed=0):
    """A net whose BN statistics (from a few training-mode passes) make its neurons fire."""
    cfg = ModelConfig(input_dim=12, num_classes=4, hidden=(20, 16), neuron=neuron, threshold=0.5)
    net = SpikingNet(cfg, torch.Generator().manual_seed(seed)).train()
    x = torch.randn(16, 30, 12, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        for _ in range(10):
            net(x)
    return cfg, net.eval()


def _logits(cfg, t, x):
    with torch.no_grad():
        return forward_stacked(cfg, {n: v.unsqueeze(0) for n, v in t.items()}, x)[0]


def test_radlif_without_recurrence_is_adlif_and_without_adaptation_is_rlif():
    x = torch.randn(5, 30, 12, generator=torch.Generator().manual_seed(1))
    rad_cfg, rad = _net("radlif")
    t = {n: v.detach().clone() for n, v in rad.tensors().items()}
    no_v = {n: torch.zeros_like(v) if "recurrent" in n else v for n, v in t.items()}
    ad_cfg, _ = _net("adlif")
    assert torch.equal(_logits(rad_cfg, no_v, x), _logits(ad_cfg, {n: v for n, v in t.items() if "recurrent" not in n}, x))
    no_ab = {n: torch.zeros_like(v) if n.endswith(("adapt_a", "adapt_b")) else v for n, v in t.items()}
    r_cfg, _ = _net("rlif")
    assert torch.equal(_logits(rad_cfg, no_ab, x), _logits(r_cfg, {n: v for n, v in t.items() if "adapt" not in n}, x))
    assert not torch.equal(_logits(rad_cfg, t, x), _logits(rad_cfg, no_v, x)), "the recurrence should matter"


def test_sparch_initialisation_orthogonal_zero_diagonal_and_constants_in_range():
    _, net = _net("radlif")
    v = net.blocks[0].recurrent.linear.weight.detach()
    assert torch.count_nonzero(torch.diagonal(v)) == 0 and torch.count_nonzero(v) == 20 * 19
    for name, (lo, hi) in recurrent.RANGES.items():
        c = getattr(net.blocks[0], name).detach()
        assert float(c.min()) >= lo and float(c.max()) <= hi and float(c.std()) > 0, name
    q = recurrent.orthogonal(6, torch.Generator().manual_seed(3))
    torch.testing.assert_close(q.T @ q, torch.eye(6), atol=1e-6, rtol=0)
    assert torch.equal(q, recurrent.orthogonal(6, torch.Generator().manual_seed(3)))
    lif = SpikingNet(ModelConfig(input_dim=12, num_classes=4, hidden=(20, 16)), torch.Generator().manual_seed(0))
    assert not any("recurrent" in n or "adapt" in n for n in lif.tensors())


def test_read_noise_on_a_recurrent_layer_is_one_draw_per_key():
    """A noisy recurrent layer (feedforward and recurrent currents, each its own stream) gives
    the same outputs for the same key, and level 0 in the same pass is the clean network."""
    cfg, net = _net("rlif")
    t = {n: v.detach().unsqueeze(0).expand(2, *v.shape) for n, v in net.tensors().items()}
    noisy = dict(t, **{"blocks.0.read_noise": torch.tensor([0.0, 0.5]),
                       "blocks.0.read_noise_seed": torch.tensor([7, 7])})
    x = torch.randn(4, 25, 12, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a, _ = forward_stacked(cfg, noisy, x)
        b, _ = forward_stacked(cfg, noisy, x)
        clean, _ = forward_stacked(cfg, t, x)
    assert torch.equal(a, b) and torch.equal(a[0], clean[0]) and not torch.equal(a[1], clean[1])


@pytest.mark.parametrize("neuron", ["adlif", "rlif", "radlif"])
def test_every_command_runs_on_each_type(neuron, tmp_path):
    run = (lambda *a: CliRunner().invoke(cli, [str(x) for x in a]))
    ck, store = tmp_path / f"{neuron}.pt", tmp_path / "s.db"
    r = run("train", "--neuron", neuron, "--optimizer", "ivon", "--epochs", 1, "--hidden", "16,16", "--limit-train",
            120, "--out", ck, "-q")
    assert r.exit_code == 0, r.output
    r = run("eval", "--model", ck, "--limit", 40, "--mc-samples", 2, "--json")
    assert r.exit_code == 0, r.output
    assert {m["mode"] for m in json.loads(r.output)["models"][0]["modes"]} == {"mean", "bma"}
    r = run("sweep", "--model", ck, "-p", "mismatch", "--noise", "0.2", "--seeds", 2, "--limit", 30, "--mc-samples",
            2, "--per-layer", "--store", store, "-q", "--json")
    assert r.exit_code == 0, r.output
    layers = {c["layer"] for c in json.loads(r.output)["curves"]}
    want = {"blocks.0", "blocks.1", "readout"} | ({"blocks.0.recurrent", "blocks.1.recurrent"} if "r" in neuron[:1]
                                                  else set())
    assert layers == want
    r = run("slice", "--model", ck, "--directions", 1, "--points", 3, "--batches", 1, "--batch-size", 16,
            "--mc-samples", 2, "--store", store, "-q")
    assert r.exit_code == 0, r.output
    r = run("report", "--store", store, "--out", tmp_path / "rep", "-q")
    assert r.exit_code == 0 and (tmp_path / "rep" / "report.md").exists(), r.output
    r = run("posterior", "--model", ck)
    assert r.exit_code == 0 and ("recurrent.linear.weight" in r.output or "adapt_a" in r.output), r.output
    r = run("export-nir", "--model", ck, "--out", tmp_path / "m.nir")
    if neuron == "rlif":  # a recurrent graph (tests/test_nir.py round-trips it)
        assert r.exit_code == 0 and (tmp_path / "m.nir").exists(), r.output
    else:  # NIR has no adaptation node
        assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and neuron in r.output
        assert not (tmp_path / "m.nir").exists()


@pytest.mark.parametrize("neuron", ["lif", "adlif", "rlif", "radlif"])
def test_the_batched_forward_equals_a_plain_per_step_loop_of_the_same_network(neuron):
    """The benchmark's baseline, one step and one network at a time from sparch's equations,
    gives our logits (the readout's BatchNorm module rounds differently: 1e-6)."""
    from benchmarks.bench_recurrent import calibrated, per_step_loop

    x = torch.randn(24, 40, 12, generator=torch.Generator().manual_seed(4))
    net = calibrated(neuron, (20, 16), x)
    with torch.no_grad():
        ours = forward_stacked(net.cfg, {n: v.detach().unsqueeze(0) for n, v in net.tensors().items()}, x)[0][0]
        loop = per_step_loop(net, x)
    torch.testing.assert_close(ours, loop, rtol=0, atol=1e-5)
    assert torch.equal(ours.argmax(-1), loop.argmax(-1)) and float(ours.std()) > 0


def test_worst_case_ensembles_hardware_aware_training_and_the_gate_on_radlif(tmp_path):
    run = (lambda *a: CliRunner().invoke(cli, [str(x) for x in a]))
    ck, store, policy = tmp_path / "r.pt", tmp_path / "s.db", tmp_path / "robust.toml"
    r = run("train", "--neuron", "radlif", "--ensemble", 2, "--train-perturbation", "mismatch:0.1", "--epochs", 1,
            "--hidden", "16,16", "--limit-train", 100, "--out", ck, "-q")
    assert r.exit_code == 0 and "ensemble of 2" in r.output and "trained under mismatch:0.1" in r.output, r.output
    r = run("sweep", "--model", ck, "-p", "adversarial", "--noise", "0.05", "--seeds", 1, "--limit", 20,
            "--modes", "point,ensemble", "--store", store, "-q", "--json")
    assert r.exit_code == 0, r.output
    curves = json.loads(r.output)["curves"]
    assert {(c["mode"], c["perturbation"]) for c in curves} >= {("point", "adversarial"), ("ensemble", "adversarial")}
    assert run("check", "--store", store, "--init", "--policy", policy).exit_code == 0
    r = run("check", "--store", store, "--policy", policy)
    assert r.exit_code == 0 and " 0 failed" in r.output, r.output
