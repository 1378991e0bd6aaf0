"""Fixed-point deployment: integer trajectories computed by hand for each leak rule, overflow,
the threshold's comparison, adaptation; wide enough arithmetic reproduces the float network;
numbers that do not depend on how the batch or the networks are cut."""

import math

import pytest
import torch

from models.deploy import deploy_tensors
from models.fixed_point import Arithmetic, dash_of, realised, to_chip
from models.integer_forward import Leak, LayerState, input_codes, layer_constants, overflow, step
from models.model_config import ModelConfig
from models.network import SpikingNet, forward_stacked
from robustness.evaluate import stacked_logp


def one_neuron(a: Arithmetic, alpha: float, weight: float = 1.0, threshold: float = 1e6, neuron: str = "lif",
               **extra: torch.Tensor) -> tuple[ModelConfig, dict]:
    """A single neuron with one input synapse of code `weight`, as the chip stores it."""
    cfg = ModelConfig(input_dim=1, num_classes=2, hidden=(1,), neuron=neuron, alpha_min=0.0, alpha_max=1.0)
    t = {"blocks.0.linear.weight": torch.tensor([[[weight]]]), "blocks.0.v_th": torch.tensor([[threshold]]),
         "blocks.0.alpha": torch.tensor([[alpha]], dtype=torch.float64), "blocks.0.mem_bias": torch.zeros(1, 1)}
    t.update({f"blocks.0.{n}": v for n, v in extra.items()})
    return cfg, t


def trajectory(a: Arithmetic, alpha: float, inputs: list[float], **kw) -> tuple[list[float], list[float]]:
    """Membrane (before reset) and spikes of one neuron driven by integer `inputs`, step by step."""
    cfg, t = one_neuron(a, alpha, **kw)
    c = layer_constants(cfg, t, 0, a)
    st = LayerState(1, 1, 1, torch.device("cpu"))
    us, zs = [], []
    for x in inputs:
        z = step(c, a, cfg, torch.tensor([[float(x)]], dtype=torch.float64), st)
        us.append(float(st.u))
        zs.append(float(z))
    return us, zs


SHIFT = Arithmetic(leak="shift", state_bits=16)
MULTIPLY = Arithmetic(leak="multiply", leak_bits=12, state_bits=24)


def test_shift_leak_floors_and_decays_at_least_one_unit():
    # dash 2 (alpha 0.75): v - (v >> 2); positive values below 4 still lose one unit per step
    us, _ = trajectory(SHIFT, 0.75, [100] + [0] * 17)
    # 75 >> 2 = 18, 57 >> 2 = 14, ...; 7 >> 2 = 1; 3 >> 2 = 0 -> one unit all the same
    assert us == [100, 75, 57, 43, 33, 25, 19, 15, 12, 9, 7, 6, 5, 4, 3, 2, 1, 0]
    # negative: the arithmetic shift floors, -75 >> 2 = -19, and -1 >> 2 = -1 reaches 0
    us, _ = trajectory(SHIFT, 0.75, [-100, 0, 0])
    assert us == [-100, -75, -56]
    us, _ = trajectory(SHIFT, 0.5, [-1, 0])
    assert us == [-1, 0]


def test_multiply_leak_truncates_toward_zero():
    # d = round(4096 * 0.1) = 410: v (4096 - 410) / 4096, truncated toward zero as Lava's bit-accurate LIF
    us, _ = trajectory(MULTIPLY, 0.9, [1000, 0, 0])
    assert us == [1000, math.trunc(1000 * 3686 / 4096), math.trunc(899 * 3686 / 4096)] == [1000, 899, 809]
    us, _ = trajectory(MULTIPLY, 0.9, [-1000, 0])
    assert us == [-1000, -899]


def test_analog_leak_is_exact():
    us, _ = trajectory(Arithmetic(state_bits=0, leak="analog"), 0.9, [1000, 0])
    assert us == [1000, 1000 * 0.9]


def test_overflow_saturates_or_wraps_at_the_state_width():
    x = torch.tensor([100.0, 127.0, 128.0, 200.0, -129.0, -300.0], dtype=torch.float64)
    assert overflow(x, 8, "saturate").tolist() == [100, 127, 127, 127, -128, -128]
    assert overflow(x, 8, "wrap").tolist() == [100, 127, -128, -56, 127, -44]
    for rule in ("saturate", "wrap"):
        a = Arithmetic(weight_bits=8, state_bits=8, overflow=rule, leak="shift", dash_max=15)
        us, _ = trajectory(a, 1.0 - 2.0 ** -15, [100, 100], weight=1.0)
        assert us[1] == (127 if rule == "saturate" else 199 - 256)  # 100 - 1 (min decay) + 100


def test_threshold_comparison_and_reset_by_subtraction():
    strict, equal = SHIFT, Arithmetic(leak="shift", state_bits=16, fire_at_equal=True)
    us, zs = trajectory(strict, 1.0 - 2.0 ** -15, [50, 10, 0], threshold=50)
    assert zs == [0, 1, 0] and us == [50, 59, 8]  # 50 is not above 50; 50 - 1 + 10 fires, 9 - 1 stays
    us, zs = trajectory(equal, 1.0 - 2.0 ** -15, [50, 10], threshold=50)
    assert zs == [1, 0] and us == [50, 10]  # Xylo fires at equality; 0 - 0 (min decay) + 10


def test_synaptic_current_add_then_decay():
    # Xylo's order: i += input, then i -= i >> dash_syn; the membrane adds the decayed current
    a = Arithmetic(leak="shift", state_bits=16, synapse_dash=1, synapse_order="add-decay")
    us, _ = trajectory(a, 1.0 - 2.0 ** -4, [100, 0, 0])
    assert us == [50, 50 - 3 + 25, 72 - 4 + 13]


def test_adaptation_current_in_integers():
    # adlif: w = L_beta(w) + trunc(a u[t-1]) + b s[t-1]; v = L_alpha(u - theta s) + I - w
    a = Arithmetic(leak="multiply", leak_bits=12, state_bits=24)
    cfg, t = one_neuron(a, 0.5, threshold=150, neuron="adlif",
                        adapt_beta=torch.tensor([[0.5]], dtype=torch.float64),
                        adapt_a=torch.tensor([[0.25]], dtype=torch.float64), adapt_b=torch.tensor([[40.0]]))
    c = layer_constants(cfg, t, 0, a)
    st = LayerState(1, 1, 1, torch.device("cpu"))
    seen = []
    for x in (200, 0, 0):
        z = step(c, a, cfg, torch.tensor([[float(x)]], dtype=torch.float64), st)
        seen.append((float(st.w), float(st.u), float(z)))
    # t0: w = 0, u = 200 > 150 fires; t1: w = 0 + trunc(0.25 * 200) + 40 = 90, u = (200 - 150) / 2 - 90 = -65
    # t2: w = 45 + trunc(0.25 * -65) = 45 - 16 = 29, u = trunc(-65 / 2) - 29 = -32 - 29 = -61
    assert seen == [(0, 200, 1), (90, -65, 0), (29, -61, 0)]


def test_realised_leaks_and_input_codes():
    a = Arithmetic(leak="shift")
    alpha = torch.tensor([0.8187, 0.9608, 1.0])
    assert dash_of(alpha, a).tolist() == [2, 5, 15]  # round(-log2(1 - alpha)); no leak: the longest shift
    assert realised(torch.tensor([0.9]), Arithmetic(leak="multiply")).item() == pytest.approx(1 - 410 / 4096)
    x = torch.tensor([0.0, 4.0, -4.0, 9.0, 0.5])
    assert input_codes(x, Arithmetic(input_bits=8, input_range=4.0)).tolist() == [0, 127, -127, 127, 16]


def _net(neuron: str) -> tuple[ModelConfig, dict, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    cfg = ModelConfig(input_dim=10, num_classes=5, hidden=(24, 16), neuron=neuron, threshold=0.5)
    net = SpikingNet(cfg, g).eval()
    with torch.no_grad():
        for blk in net.blocks:
            blk.linear.weight.mul_(8.0)  # enough drive that the layers fire
        net.readout.linear.weight.mul_(100.0)  # and the rates, not the bias, pick the class
    x = torch.randn(64, 30, 10, generator=g).clamp(-3.9, 3.9)
    return cfg, {n: v.detach() for n, v in net.stacked(1).items()}, x


WIDE = Arithmetic(weight_bits=16, state_bits=32, leak="multiply", leak_bits=20, input_bits=16, input_range=4.0,
                  readout_bits=48)


@pytest.mark.parametrize("neuron", ["lif", "adlif", "rlif", "radlif"])
def test_wide_arithmetic_reproduces_the_float_network(neuron):
    """16-bit weights, 32-bit states and 20-bit leaks: the integer network predicts as the float one."""
    cfg, t, x = _net(neuron)
    with torch.no_grad():
        ref, _ = forward_stacked(cfg, deploy_tensors(cfg, t), x)
        chip, rates = forward_stacked(cfg, to_chip(cfg, deploy_tensors(cfg, t, fold_bn=True), WIDE), x)
    assert float(rates[0][0]) > 0.01
    assert (ref.argmax(-1) == chip.argmax(-1)).double().mean() >= 0.95
    # most examples see no spike flip at all: their logits agree to the leaks' 20-bit rounding
    close = ((ref.double() - chip).abs().amax(-1) < 0.05).double().mean()
    assert close >= 0.8


def test_eight_bits_change_the_network_and_deterministically():
    cfg, t, x = _net("lif")
    chip = to_chip(cfg, deploy_tensors(cfg, t, fold_bn=True), Arithmetic(weight_bits=4, state_bits=8))
    with torch.no_grad():
        ref, _ = forward_stacked(cfg, deploy_tensors(cfg, t), x)
        a, _ = forward_stacked(cfg, chip, x)
        b, _ = forward_stacked(cfg, chip, x)
    assert torch.equal(a, b)
    assert not torch.allclose(ref.double(), a, atol=1e-3)


def test_numbers_do_not_depend_on_batch_or_networks_per_pass():
    cfg, t, x = _net("rlif")
    one = to_chip(cfg, deploy_tensors(cfg, t, fold_bn=True), Arithmetic())
    three = {n: torch.cat([v, v, v]) for n, v in one.items()}
    whole, _ = stacked_logp(cfg, one, x)
    with torch.no_grad():
        halves = torch.cat([forward_stacked(cfg, one, x[:23])[0], forward_stacked(cfg, one, x[23:])[0]], 1)
    stacked, _ = stacked_logp(cfg, three, x)
    assert torch.equal(torch.log_softmax(halves.double(), -1), whole)
    assert all(torch.equal(stacked[k], whole[0]) for k in range(3))


def test_leak_rule_object_matches_the_formulas():
    alpha = torch.tensor([[[0.75, 0.875]]], dtype=torch.float64)
    x = torch.tensor([[[13.0, -13.0]]], dtype=torch.float64)
    assert Leak(alpha, SHIFT)(x).tolist() == [[[13 - 3, -13 + 2]]]  # 13 >> 2 = 3; -13 >> 3 = -2


def test_codes_round_again_on_a_digital_chip_not_on_a_mixed_signal_one():
    """A digital chip stores integers (whatever moved a code is rounded back to its grid); on
    a mixed-signal chip the codes were rounded at programming and an analog gain then scales them."""
    for a, expect in ((Arithmetic(weight_bits=4), [[[3.0, -8.0]]]), (Arithmetic(weight_bits=4, state_bits=0,
                                                                              leak="analog"), [[[3.2, -9.0]]])):
        cfg, t = one_neuron(a, 0.9)
        t["blocks.0.linear.weight"] = torch.tensor([[[3.2, -9.0]]], dtype=torch.float64)
        cfg = ModelConfig(input_dim=2, num_classes=2, hidden=(1,), alpha_min=0.0, alpha_max=1.0)
        assert layer_constants(cfg, t, 0, a)["w"].tolist() == expect


def test_the_arithmetic_travels_with_the_tensors():
    from models.fixed_point import arithmetic_of, arithmetic_tensors

    a = Arithmetic(weight_bits=5, state_bits=20, overflow="wrap", leak="multiply", leak_bits=10, input_range=3.5,
                   synapse_dash=2, synapse_order="add-decay", fire_at_equal=True, headroom=2.5, max_spikes=7)
    assert arithmetic_of(arithmetic_tensors(a, 3)) == a
    assert arithmetic_of({"blocks.0.alpha": torch.zeros(1)}) is None
