"""Currents driven by spikes: the event-driven kernel, a dense float64 matmul and eager agree bit for bit."""

import json

import pytest
import torch

from models import chain_native, native, spike_current
from models.deploy import deploy_tensors
from models.model_config import ModelConfig
from models.network import forward_stacked
from perturbations.base import Context
from perturbations.spec import apply, parse_spec
from tests.test_native import CFG, EAGER, HIDDEN, needs_compiler, firing_net, on


def spikes(shape, density, seed):
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < density).float()


def weights(k, h_out, h_in, seed):
    return torch.randn(k, h_out, h_in, generator=torch.Generator().manual_seed(seed)) / h_in**0.5


def forced(crossover: float) -> native.Kernel:
    """A native kernel that takes the event-driven path below `crossover` (0: never, inf: always)."""
    k = native.Kernel("native")
    k.crossover = crossover
    return k


@needs_compiler
@pytest.mark.parametrize("density", [0.0, 0.03, 0.3, 1.0])
@pytest.mark.parametrize("h_out", [1, 37, 64])  # below, off and on the kernel's 32-output block
def test_event_driven_equals_dense_float64(density, h_out):
    z = spikes((3, 50, 29), density, 0)
    wt = spike_current.exact_weights(weights(3, h_out, 29, 1))
    dense = torch.matmul(z.double(), wt.double()).float()
    assert torch.equal(spike_current.current(z, wt, forced(float("inf"))), dense)
    assert torch.equal(spike_current.current(z, wt, forced(0.0)), dense)
    assert torch.equal(spike_current.current(z, wt, EAGER), dense)


@needs_compiler
def test_shared_spikes_and_shared_weights_broadcast():
    """A slice starts from one network's spikes [R, H] for K networks; one weight set may serve K inputs."""
    z, wt = spikes((40, 16), 0.2, 2), spike_current.exact_weights(weights(4, 33, 16, 3))
    event = spike_current.current(z, wt, forced(float("inf")))
    assert event.shape == (4, 40, 33)
    assert torch.equal(event, torch.matmul(z.double(), wt.double()).float())
    zk = spikes((4, 40, 16), 0.2, 4)
    one = spike_current.exact_weights(weights(1, 33, 16, 5))
    assert torch.equal(spike_current.current(zk, one, forced(float("inf"))),
                       torch.matmul(zk.double(), one.double()).float())


def test_sum_does_not_depend_on_the_order_of_the_inputs():
    """The point of the grid: any order of the additions gives the same bits (BLAS blocking, skipped inputs)."""
    z, w = spikes((2, 64, 200), 0.5, 6), weights(2, 48, 200, 7) * 1e3
    wt = spike_current.exact_weights(w)
    perm = torch.randperm(200, generator=torch.Generator().manual_seed(8))
    ref = spike_current.current(z, wt, EAGER)
    assert torch.equal(spike_current.current(z[..., perm], wt[:, perm], EAGER), ref)
    # ...and each sum is the float32 rounding of the exact float64 sum of the rounded weights
    exact = (z.double().unsqueeze(-1) * wt.double().unsqueeze(1)).sum(-2)
    assert torch.equal(ref, exact.float())


def test_rounding_moves_only_the_tiniest_weights_and_keeps_float32():
    w = weights(1, 8, 256, 9)
    w[0, 0, 0] = 1e-9  # 2^21 times below its row's largest: on no float32 grid step of the row's sum
    wt = spike_current.exact_weights(w)
    assert wt.dtype == torch.float32
    moved = wt.transpose(-1, -2) != w
    assert moved.sum() <= 1 and not moved[0, 1:].any()
    assert abs(float(wt[0, 0, 0]) - 1e-9) <= 2.0 ** -45
    assert spike_current.exact_weights(torch.full((1, 2, 4), 1e-42)).dtype == torch.float32  # subnormal too


@needs_compiler
def test_non_finite_weights_mean_what_they_mean_in_a_matmul_on_every_path():
    """A corrupt weight of a silent input still poisons the sum (0 x inf = NaN), kernel or not."""
    w = weights(1, 40, 8, 10)
    w[0, 3, 5] = float("inf")
    wt = spike_current.exact_weights(w)
    assert wt.dtype == torch.float64
    z = spikes((1, 30, 8), 0.3, 11)
    ref = torch.matmul(z.double(), wt).float()
    assert ref[0, :, 3].isnan().any()
    for kernel in (forced(float("inf")), EAGER):
        assert torch.equal(spike_current.current(z, wt, kernel).nan_to_num(7.0), ref.nan_to_num(7.0))


@needs_compiler
def test_crossover_is_measured_once_and_stored_with_the_build(tmp_path, monkeypatch):
    k = native.Kernel("native", cache=tmp_path)
    lib = k.library()
    density = spike_current.crossover(k, lib)
    stored = json.loads(k.built_path.with_suffix(".crossover.json").read_text())
    assert stored["density"] == density and stored["width"] == spike_current.PROBE_WIDTH
    assert 0.0 < density
    monkeypatch.setattr(spike_current, "_measure", lambda lib: pytest.fail("measured again"))
    later = native.Kernel("native", cache=tmp_path)  # another process: reads the stored crossover
    assert spike_current.crossover(later, later.library()) == density


@needs_compiler
@pytest.mark.parametrize("name", ["gaussian", "bitflip", "read-noise", "dead-neuron"])
def test_network_logits_do_not_depend_on_the_path(name):
    """Event-driven or dense, kernel or eager: the stacked forward gives the same logits."""
    net = firing_net()
    base = {n: v.detach() for n, v in deploy_tensors(CFG, net.stacked(3)).items()}
    t = apply(parse_spec(f"{name}:?"), 0.3 if "neuron" in name else 0.1, base, seed=3, draws=[0, 1, 2],
              ctx=Context(HIDDEN + ("readout",), HIDDEN))
    x = 6 * torch.randn(9, 23, CFG.input_dim, generator=torch.Generator().manual_seed(2))  # loud: many spikes
    with torch.no_grad():
        ref, rates = forward_stacked(CFG, t, x, on(EAGER))
        assert float(rates[0].min()) > 0.05 and float(rates[1].min()) > 0, "too few spikes: a vacuous comparison"
        for kernel in (forced(float("inf")), forced(0.0)):
            assert torch.equal(forward_stacked(CFG, t, x, on(kernel))[0], ref)


@needs_compiler
@pytest.mark.parametrize("name", ["gaussian", "dead-neuron", "saturated-neuron"])
def test_chain_kernel_equals_layer_by_layer(name, monkeypatch):
    """All layers of a chunk in one kernel call give the layer-by-layer bits, and the two hand over
    the membranes and counts between chunks (a dense chunk runs layer by layer)."""
    cfg = ModelConfig(input_dim=12, num_classes=5, hidden=(20, 17, 9))  # three layers: two sums in the chain
    net = firing_net(cfg)
    hidden = tuple(f"blocks.{i}" for i in range(3))
    base = {n: v.detach() for n, v in deploy_tensors(cfg, net.stacked(2)).items()}
    t = apply(parse_spec(f"{name}:?"), 0.3 if "neuron" in name else 0.1, base, seed=4, draws=[0, 1],
              ctx=Context(hidden + ("readout",), hidden))
    x = 6 * torch.randn(7, 19, cfg.input_dim, generator=torch.Generator().manual_seed(3))
    runs = []
    monkeypatch.setattr(chain_native.Chain, "run", _counting(chain_native.Chain.run, runs))
    with torch.no_grad():
        ref, ref_rates = forward_stacked(cfg, t, x, on(EAGER))
        assert not runs and float(ref_rates[1].min()) > 0
        chained = forward_stacked(cfg, t, x, on(forced(float("inf"))))
        assert len(runs) == 1  # the whole sequence in one chunk, one call
        monkeypatch.setenv("ROBUST_CHUNK_BYTES", "1")  # one-step chunks: chain first, then layer by layer
        mixed = forward_stacked(cfg, t, x, on(forced(0.0)))
        assert len(runs) == 2
    for logits, rates in (chained, mixed):
        assert torch.equal(logits, ref)
        assert all(torch.equal(a, b) for a, b in zip(rates, ref_rates))


def _counting(fn, calls):
    def wrapped(*args, **kwargs):
        calls.append(1)
        return fn(*args, **kwargs)
    return wrapped


@needs_compiler
@pytest.mark.parametrize("c", [1.0, 1.0 / 0.9])  # no dropout, and dropout's scale of the spikes that pass
def test_training_current_and_its_gradients_match_the_dense_product(c):
    """Event-driven in the training forward and in the weight gradient: the dense product's values
    and gradients to float rounding, the same bits with one thread or two."""
    g = torch.Generator().manual_seed(12)
    h0 = spikes((2, 70, 40), 0.1, 13) * c
    w0 = weights(2, 33, 40, 14)
    up = torch.randn(2, 70, 33, generator=g)
    kernel = native.Kernel("native")
    results = []
    for threads in (1, 2):
        saved = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            h, w = h0.clone().requires_grad_(), w0.clone().requires_grad_()
            with kernel.training(float("inf")):
                out = spike_current.train_current(h, w, c, kernel)
            assert out is not None, "the event-driven path did not run"
            (out * up).sum().backward()
            results.append((out.detach(), h.grad, w.grad))
        finally:
            torch.set_num_threads(saved)
    h, w = h0.clone().requires_grad_(), w0.clone().requires_grad_()
    ref = torch.matmul(h, w.transpose(-1, -2))
    (ref * up).sum().backward()
    for got, want in zip(results[0], (ref.detach(), h.grad, w.grad)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(*results))
