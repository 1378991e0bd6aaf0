"""The compiled adaptive/recurrent scans against eager PyTorch: same spikes under every
perturbation, the same gradients in training, and a recurrent sum that no order changes."""

import math
import random

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from models import native, recurrent, recurrent_native, spike_current
from models.deploy import deploy_tensors
from models.model_config import ForwardOptions, ModelConfig, weight_layers
from models.network import SpikingNet, forward_stacked
from perturbations.base import PERTURBATIONS, Context
from perturbations.spec import apply, parse_spec
from tests.test_native import EAGER, HIDDEN, LEVELS, NATIVE, SPECS, needs_compiler

STATEFUL = ("adlif", "rlif", "radlif")


def cfg_of(neuron: str) -> ModelConfig:
    # widths off the vector width, a threshold low enough that every layer fires
    return ModelConfig(input_dim=12, num_classes=5, hidden=(20, 17), neuron=neuron, threshold=0.3)


def firing_net(cfg: ModelConfig) -> SpikingNet:
    net = SpikingNet(cfg, torch.Generator().manual_seed(0)).train()
    x = torch.randn(16, 30, cfg.input_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for _ in range(10):
            net(x)
    return net.eval()


@pytest.fixture
def kernel_calls(monkeypatch):
    """How many layer scans ran in the kernel (a comparison where none did proves nothing)."""
    calls = []
    real = recurrent_native.scan

    def counted(*a, **k):
        calls.append(1)
        return real(*a, **k)
    monkeypatch.setattr(recurrent_native, "scan", counted)
    return calls


@needs_compiler
@pytest.mark.parametrize("neuron", STATEFUL)
@pytest.mark.parametrize("name", sorted(PERTURBATIONS))
def test_compiled_scan_equals_eager_for_every_perturbation_on_every_type(name, neuron, kernel_calls):
    cfg = cfg_of(neuron)
    base = {n: v.detach() for n, v in deploy_tensors(cfg, firing_net(cfg).stacked(3)).items()}
    layers = weight_layers(cfg)
    t = apply(parse_spec(f"{SPECS.get(name, name)}:?"), LEVELS.get(name, 0.1), base, seed=3, draws=[0, 1, 2],
              ctx=Context(layers, HIDDEN))
    x = 3 * torch.randn(9, 23, cfg.input_dim, generator=torch.Generator().manual_seed(2))
    kernel_calls.clear()  # the calibration and some perturbations (adversarial) run the network too
    with torch.no_grad():
        le, re = forward_stacked(cfg, t, x, ForwardOptions(kernel=EAGER))
        lc, rc = forward_stacked(cfg, t, x, ForwardOptions(kernel=NATIVE))
    assert float(re[0].min()) > 0, "no spikes: the comparison would be vacuous"
    assert torch.equal(le, lc) and all(torch.equal(a, b) for a, b in zip(re, rc))
    # documented: a recurrent layer with read noise or a crossbar read-out runs eager, step by step
    eager_recurrence = (name == "read-noise" or name.startswith("crossbar-")) and neuron != "adlif"
    assert len(kernel_calls) == (0 if eager_recurrence else 2)


def _grads(net: SpikingNet, x, y, kernel: native.Kernel):
    net.zero_grad()
    with kernel.training(float("inf")):
        loss = F.cross_entropy(net(x, kernel=kernel), y)
        loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


@needs_compiler
@pytest.mark.parametrize("neuron", STATEFUL)
def test_compiled_training_gradients_equal_eager_for_every_parameter(neuron, kernel_calls):
    """Forward identical; every gradient (V, the adaptation constants, the leak, W) equal up to
    summation order, through the reset, the recurrence and the adaptation current."""
    cfg = ModelConfig(input_dim=12, num_classes=5, hidden=(20, 17), neuron=neuron, threshold=0.3)
    net = SpikingNet(cfg, torch.Generator().manual_seed(1)).train()
    x = 3 * torch.randn(6, 25, 12, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    loss_e, ge = _grads(net, x, y, EAGER)
    assert not kernel_calls
    loss_c, gc = _grads(net, x, y, NATIVE)
    assert kernel_calls and loss_e == loss_c and set(gc) == set(ge)
    learnt = [n for n in ge if "recurrent" in n or "adapt" in n]
    assert learnt and all(ge[n].abs().sum() > 0 for n in learnt)
    for n in ge:
        torch.testing.assert_close(gc[n], ge[n], rtol=1e-4, atol=1e-6, msg=n)


@needs_compiler
def test_training_with_dead_neurons_runs_eager_and_still_learns(kernel_calls):
    """Forced spikes in training (hardware-aware training) are not in the kernel's backward."""
    cfg = cfg_of("radlif")
    net = SpikingNet(cfg, torch.Generator().manual_seed(1)).train()
    t = {n: v.unsqueeze(0) for n, v in net.tensors().items()}
    t["blocks.0.dead"] = torch.zeros(1, 20)
    t["blocks.0.dead"][0, :5] = 1.0
    with NATIVE.training(float("inf")):
        x = 3 * torch.randn(4, 10, 12, generator=torch.Generator().manual_seed(0))
        out, _ = forward_stacked(cfg, t, x, ForwardOptions(kernel=NATIVE, bn_batch_stats=True))
        F.cross_entropy(out[0], torch.tensor([0, 1, 2, 3])).backward()  # (a sum of batch-normed logits is constant)
    assert len(kernel_calls) == 1  # block 1 (no forced neurons) ran in the kernel, block 0 eager
    assert net.blocks[0].recurrent.linear.weight.grad.abs().sum() > 0


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 300), st.integers(0, 2**31 - 1), st.floats(-30, 10))
def test_the_recurrent_sum_is_exact_in_any_order(h, seed, log_scale):
    """Any subset of a row's grid-rounded weights sums to the same float64 in any order, so
    a BLAS product, a GPU and the kernel's spike-driven columns agree; rounding moves a
    weight by at most 2^(ceil(log2 H) - 53) of the row's largest."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(2, h, h, generator=g) * torch.exp(torch.randn(2, h, h, generator=g) * 4) * 2.0 ** log_scale
    q = spike_current.summable(v)
    assert q.dtype == torch.float64
    assert torch.equal(q.float().double(), q)  # still float32 numbers: the kernels read them as float32
    top = v.abs().amax(-1, keepdim=True).double()
    assert bool(((q - v.double()).abs() <= top * 2.0 ** (math.ceil(math.log2(h)) - 53)).all())
    spikes = (torch.rand(3, h, generator=g) < 0.3).double()
    blas = (spikes @ q[0].T)
    rnd = random.Random(seed)
    for b in range(3):
        on = [j for j in range(h) if spikes[b, j]]
        rnd.shuffle(on)
        acc = torch.zeros(h, dtype=torch.float64)
        for j in on:
            acc += q[0, :, j]
        assert torch.equal(acc, blas[b])


@needs_compiler
def test_a_row_spanning_many_orders_of_magnitude_gives_the_same_current_in_both_paths(kernel_calls):
    """Weights from 1e-9 to 1e2 in one row, where a float32 sum's rounding depends on its order."""
    h = 64
    g = torch.Generator().manual_seed(0)
    v = (torch.randn(1, h, h, generator=g) * 10 ** torch.empty(1, h, h).uniform_(-9, 2, generator=g))
    cur = torch.rand(1, 40, 5, h, generator=g)
    alpha, v_th = torch.full((1, 1, h), 0.9), torch.full((1, 1, h), 0.5)
    t = {"blocks.0.recurrent.linear.weight": v}
    out = {}
    for kernel in (EAGER, NATIVE):
        with torch.no_grad():
            out[kernel.mode] = recurrent.scan(cur, None, alpha, v_th, 0.5, recurrent.recurrent_weight(t, "blocks.0"),
                                              None, t, "blocks.0", ForwardOptions(kernel=kernel))
    assert kernel_calls == [1] and 0.05 < float(out["eager"].mean()) < 0.95
    assert torch.equal(out["eager"], out["native"])
