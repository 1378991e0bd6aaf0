"""Fixed-point deployment: a network's float tensors as the integer codes a digital chip stores.

`Arithmetic` says how the chip computes (weight and state widths, overflow, leak rule);
`to_chip` maps a deployed network (leaks clamped, BatchNorm folded: models/deploy.py) onto
it, per network and per layer:

  * the leak becomes what the chip can realise: a bit shift `v -= v >> dash` with
    `dash = round(-log2(1 - alpha))` (Rockpool's `decay_to_bitshift`), or an n-bit
    multiplier `v = v (2^n - d) / 2^n` with `d = round(2^n (1 - alpha))` (Loihi's 12-bit
    decays); the input gain `1 - alpha` uses the realised leak, so that each neuron keeps
    its DC gain;
  * the gain (and a chip's synaptic stage, below) is folded into the weights, the
    BatchNorm already is: the membrane adds integer currents only;
  * one state unit per layer (`<layer>.chip_scale`, membrane units per state LSB): fine
    enough that the smaller weight matrix (feedforward or recurrent) maps its largest
    |weight| to the largest code at the chip's least shift, unless the threshold would then
    take more than half the state range (`headroom`), in which case the threshold sets it;
    each matrix then gets the least left shift (`<matrix>_exp`) that fits its codes;
  * thresholds, biases and weights are rounded to that scale; the adaptation current's
    couplings become a multiplier (`a`, leak_bits wide) and a code per spike (`b`).

The readout keeps its integer accumulator (spike counts through the coded weights) and the
host applies its scale and float bias: logits = scale * acc / T + bias.

Perturbations then act on what the chip stores (codes, integer thresholds, the realised
leaks); the integer forward (models/integer_forward.py) rounds whatever they leave to the
chip's grid again.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping

import torch
from torch import Tensor

from models.model_config import ADAPTIVE, RECURRENT, ModelConfig

LEAK_RULES = ("shift", "multiply", "analog")
OVERFLOW = ("saturate", "wrap")
SYNAPSE_ORDER = ("decay-add", "add-decay")


@dataclass(frozen=True)
class Arithmetic:
    """How a chip computes a neuron step.

    Attributes:
        weight_bits: signed weight code width (two's complement).
        state_bits: membrane, synaptic current and adaptation width; 0: analog state
            (mixed-signal: only the weights are digital).
        overflow: `saturate` or `wrap` (two's complement) when a state leaves its range.
        leak: `shift` (v -= v >> dash, at least one unit while v > 0), `multiply`
            (v = trunc(v m / 2^leak_bits)) or `analog` (v = alpha v, unrounded).
        leak_bits: multiplier width of the `multiply` rule and of the adaptation coupling.
        dash_max: largest bit shift the chip stores.
        input_bits: signed code width of the input features (graded input events).
        input_range: the feature value mapped to the largest input code (larger ones clip).
        synapse_dash: a synaptic current the chip always has (Xylo: decay by bit shift
            `synapse_dash` per step, input added before the decay); 0: none.
        synapse_order: `add-decay` (Xylo) or `decay-add` (Loihi) for the synaptic current.
        fire_at_equal: spike when v >= threshold (Xylo) instead of v > threshold.
        readout_bits: the readout accumulator's width.
        weight_shift, max_weight_shift: each weight matrix (feedforward, recurrent) enters the
            state shifted left by its own exponent in this range (Xylo's per-matrix weight
            shift; Loihi's weight exponent above its 6-bit activation alignment), so a small
            matrix keeps its codes beside a large one and states resolve finer than a weight.
        max_spikes: events a neuron may emit in one step (Xylo: up to 31, each subtracting a
            threshold); 1 is the trained networks' own rule.
        headroom: the state range is at least this many thresholds (the rest holds a step's
            overshoot and, below zero, inhibition); where the weights' scale would leave
            less, the threshold sets the scale.
    """

    weight_bits: int = 8
    state_bits: int = 16
    overflow: str = "saturate"
    leak: str = "shift"
    leak_bits: int = 12
    dash_max: int = 15
    input_bits: int = 8
    input_range: float = 4.0
    synapse_dash: int = 0
    synapse_order: str = "decay-add"
    fire_at_equal: bool = False
    readout_bits: int = 16
    weight_shift: int = 0
    max_weight_shift: int = 15
    headroom: float = 2.0
    max_spikes: int = 1

    def __post_init__(self) -> None:
        checks = [(2 <= self.weight_bits <= 16, "weight_bits must be 2-16"),
                  (self.state_bits == 0 or 4 <= self.state_bits <= 32, "state_bits must be 4-32 (0: analog)"),
                  (self.overflow in OVERFLOW, f"overflow must be one of {', '.join(OVERFLOW)}"),
                  (self.leak in LEAK_RULES, f"leak must be one of {', '.join(LEAK_RULES)}"),
                  (2 <= self.leak_bits <= 24, "leak_bits must be 2-24"),
                  (0 <= self.dash_max <= 31, "dash_max must be 0-31"),
                  (2 <= self.input_bits <= 16, "input_bits must be 2-16"),
                  (self.input_range > 0 and math.isfinite(self.input_range), "input_range must be > 0"),
                  (0 <= self.synapse_dash <= self.dash_max, "synapse_dash must be 0..dash_max"),
                  (self.synapse_order in SYNAPSE_ORDER, f"synapse_order must be one of {', '.join(SYNAPSE_ORDER)}"),
                  (self.state_bits == 0 or self.leak != "analog", "an analog leak needs analog state (state_bits=0)"),
                  (4 <= self.readout_bits <= 48, "readout_bits must be 4-48"),
                  (0 <= self.weight_shift <= self.max_weight_shift <= 24,
                   "weight_shift must be 0..max_weight_shift, max_weight_shift at most 24"),
                  (1.0 <= self.headroom <= 2.0 ** 16, "headroom must be 1-65536 thresholds"),
                  (1 <= self.max_spikes <= 255, "max_spikes must be 1-255"),
                  # states times multipliers stay below 2^53, so float64 holds every product exactly
                  (self.state_bits + self.leak_bits <= 52, "state_bits + leak_bits must be at most 52")]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)

    @property
    def analog(self) -> bool:
        return self.state_bits == 0

    def to_dict(self) -> dict:
        return asdict(self)


# The arithmetic travels with the tensors (as read noise does), so every forward pass that
# sees a chip's codes runs them as integers: `chip.<field>` entries, one value per network.
FIELDS = tuple(Arithmetic.__dataclass_fields__)
_CODED = {"overflow": OVERFLOW, "leak": LEAK_RULES, "synapse_order": SYNAPSE_ORDER}


def arithmetic_tensors(a: Arithmetic, k: int) -> dict[str, Tensor]:
    out = {}
    for f in FIELDS:
        v = getattr(a, f)
        v = _CODED[f].index(v) if f in _CODED else float(v)
        out[f"chip.{f}"] = torch.full((k,), float(v), dtype=torch.float64)
    return out


def arithmetic_of(t: Mapping[str, Tensor]) -> Arithmetic | None:
    """The chip arithmetic carried in `t` (None: a float network)."""
    if "chip.weight_bits" not in t:
        return None
    vals = {}
    defaults = Arithmetic()
    for f in FIELDS:
        v = t[f"chip.{f}"]
        if not bool((v == v[0]).all()):
            raise ValueError(f"chip.{f} differs between the networks of one pass")
        x = float(v[0])
        vals[f] = _CODED[f][int(x)] if f in _CODED else type(getattr(defaults, f))(x)
    return Arithmetic(**vals)


def smax(bits: int) -> int:
    """Largest value of a signed `bits`-wide integer."""
    return 2 ** (bits - 1) - 1


def dash_of(alpha: Tensor, a: Arithmetic) -> Tensor:
    """Bit shift per neuron that realises leak `alpha` (alpha = 1: the largest, no leak to speak of)."""
    one_minus = (1.0 - alpha.double()).clamp_min(2.0 ** -(a.dash_max + 1))
    return torch.round(-torch.log2(one_minus)).clamp(0, a.dash_max)


def decay_code(alpha: Tensor, a: Arithmetic) -> Tensor:
    """The `multiply` rule's decrement d per neuron: v <- v (2^n - d) / 2^n."""
    return torch.round((1.0 - alpha.double()).clamp(0.0, 1.0) * 2 ** a.leak_bits)


def realised(alpha: Tensor, a: Arithmetic) -> Tensor:
    """The leak the chip computes in place of `alpha` (float64)."""
    if a.leak == "shift":
        return 1.0 - torch.exp2(-dash_of(alpha, a))
    if a.leak == "multiply":
        return 1.0 - decay_code(alpha, a) / 2 ** a.leak_bits
    return alpha.double()


def _synapse_gain(beta_q: Tensor, a: Arithmetic) -> Tensor:
    """What the weights are scaled by so that a synaptic stage passes the charge `(1 - beta) cur`
    of the float filter: `add-decay` keeps beta of its input at the step it arrives."""
    return (1.0 - beta_q) / beta_q if a.synapse_order == "add-decay" else 1.0 - beta_q


def _gains(cfg: ModelConfig, t: Mapping[str, Tensor], p: str, a: Arithmetic) -> tuple[Tensor, Tensor]:
    """Block `p`'s input gain and synaptic-stage gain [K, H] from its realised leaks in `t`: what
    `to_chip` folds into the codes and `surrogate` takes out of them again."""
    alpha = t[f"{p}.alpha"]
    gain = torch.ones_like(alpha) if cfg.neuron == "if" else 1.0 - alpha
    if f"{p}.beta" in t:  # the network's own synaptic filter
        return gain, _synapse_gain(t[f"{p}.beta"], a)
    if a.synapse_dash:  # the chip's: charge kept, timing spread over a few steps
        return gain, _synapse_gain(torch.full_like(gain, 1.0 - 2.0 ** -a.synapse_dash), a)
    return gain, torch.ones_like(gain)


def to_chip(cfg: ModelConfig, t: Mapping[str, Tensor], a: Arithmetic) -> dict[str, Tensor]:
    """K-stacked tensors of a deployed network (BN folded) as the chip stores them (see module docstring)."""
    out = {n: v.double() if v.is_floating_point() else v for n, v in t.items()}
    k = next(iter(t.values())).shape[0]
    in_step = a.input_range / smax(a.input_bits)
    for i in range(len(cfg.hidden)):
        p = f"blocks.{i}"
        for leak in ("alpha", "beta"):
            if f"{p}.{leak}" in out:
                out[f"{p}.{leak}"] = realised(out[f"{p}.{leak}"], a)
        gain, syn = _gains(cfg, out, p, a)
        mats = {f"{p}.linear.weight": out[f"{p}.linear.weight"] * (gain * syn).unsqueeze(-1)
                * (in_step if i == 0 else 1.0)}
        if cfg.neuron in RECURRENT:
            v = out[f"{p}.recurrent.linear.weight"]
            mats[f"{p}.recurrent.linear.weight"] = v * (1.0 - torch.eye(v.shape[-1], dtype=v.dtype)) * (
                gain * (syn if a.synapse_dash else 1.0)).unsqueeze(-1)
        th = out[f"{p}.v_th"]
        scale = _state_unit(mats.values(), th, a)  # [K]: one state LSB, in membrane units
        for name, m in mats.items():
            e = _exponent(m, scale, a)
            out[name] = _code(m / (scale * torch.exp2(e)).view(-1, 1, 1), a.weight_bits)
            out[f"{name}_exp"] = e
        s = scale.unsqueeze(-1)  # [K, 1]
        out[f"{p}.v_th"] = _state(th / s, a)
        mem_bias = torch.zeros_like(gain)
        if f"{p}.beta" in out:  # linear bias passes the synapse; the BN shift is a membrane offset
            if f"{p}.linear.bias" in out:
                out[f"{p}.syn_bias"] = _state(out.pop(f"{p}.linear.bias") * gain * syn / s, a)
            mem_bias = out[f"{p}.bn.bias"] * gain
        elif f"{p}.linear.bias" in out:
            mem_bias = out.pop(f"{p}.linear.bias") * gain
        out[f"{p}.mem_bias"] = _state(mem_bias / s, a)
        if cfg.neuron in ADAPTIVE:  # the adaptation current held as gain * w, in membrane codes
            out[f"{p}.adapt_beta"] = realised(out[f"{p}.adapt_beta"], a)
            out[f"{p}.adapt_a"] = torch.round(out[f"{p}.adapt_a"] * gain * 2 ** a.leak_bits) / 2 ** a.leak_bits
            out[f"{p}.adapt_b"] = _state(out[f"{p}.adapt_b"] * gain / s, a)
        out[f"{p}.chip_scale"] = scale  # membrane units: one state LSB
    w = out["readout.linear.weight"]
    scale = w.abs().flatten(1).amax(1).clamp_min(1e-30) / smax(a.weight_bits)
    out["readout.linear.weight"] = _code(w / scale.view(-1, 1, 1), a.weight_bits)
    out["readout.chip_scale"] = scale
    out.update(arithmetic_tensors(a, k))
    return out


def _state_unit(mats, th: Tensor, a: Arithmetic) -> Tensor:
    """One state LSB per network [K]: fine enough that the smallest matrix uses all its codes at
    the chip's least shift, coarse enough for the threshold's headroom in the state range."""
    smallest = torch.stack([m.abs().flatten(1).amax(1) for m in mats]).amin(0).clamp_min(1e-30)
    unit = smallest / (smax(a.weight_bits) * 2.0 ** a.weight_shift)
    if a.analog:
        return unit
    return torch.maximum(unit, a.headroom * th.abs().amax(1) / smax(a.state_bits))


def _exponent(m: Tensor, unit: Tensor, a: Arithmetic) -> Tensor:
    """Each matrix's left shift [K] (Xylo's per-matrix weight shift, Loihi's weight exponent): the
    least that fits its largest weight in the codes, within the chip's range of shifts."""
    need = torch.ceil(torch.log2(m.abs().flatten(1).amax(1).clamp_min(1e-30) / (unit * smax(a.weight_bits))))
    return need.clamp(a.weight_shift, a.max_weight_shift)


def _code(x: Tensor, bits: int) -> Tensor:
    return torch.round(x).clamp(-smax(bits) - 1, smax(bits))


def _state(x: Tensor, a: Arithmetic) -> Tensor:
    return x if a.analog else torch.round(x).clamp(-smax(a.state_bits) - 1, smax(a.state_bits))


def deployment_summary(cfg: ModelConfig, t: Mapping[str, Tensor]) -> list[dict]:
    """Per layer, of network 0: its scale, the code range used and the realised leaks (for
    the results: which scale each layer was given, stated)."""
    t = {n: v.detach() for n, v in t.items()}
    a = arithmetic_of(t)
    rows = []
    for i in range(len(cfg.hidden)):
        p = f"blocks.{i}"
        row = {"layer": p, "scale": float(t[f"{p}.chip_scale"][0]),
               "max_weight_code": int(t[f"{p}.linear.weight"][0].abs().max()),
               "weight_shift": int(t[f"{p}.linear.weight_exp"][0]),
               "threshold_codes": [float(t[f"{p}.v_th"][0].min()), float(t[f"{p}.v_th"][0].max())]}
        if f"{p}.recurrent.linear.weight_exp" in t:
            row["recurrent_weight_shift"] = int(t[f"{p}.recurrent.linear.weight_exp"][0])
        if a is not None and a.leak == "shift":
            row["dash"] = sorted({int(d) for d in dash_of(t[f"{p}.alpha"][0], a)})
        elif a is not None and a.leak == "multiply":
            row["decay_codes"] = [int(decay_code(t[f"{p}.alpha"][0], a).min()),
                                  int(decay_code(t[f"{p}.alpha"][0], a).max())]
        rows.append(row)
    rows.append({"layer": "readout", "scale": float(t["readout.chip_scale"][0]),
                 "max_weight_code": int(t["readout.linear.weight"][0].abs().max())})
    return rows


def surrogate(cfg: ModelConfig, t: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The float network a chip's codes stand for: `to_chip` undone (differentiably), with the
    leaks it realises. A worst-case search ascends the loss through it (a straight-through
    surrogate: the integer rounding has no gradient), and the chip it finds is scored in integers."""
    a = arithmetic_of(t)
    out = {n: v for n, v in t.items() if not n.startswith("chip.") and not n.endswith(("_exp", "chip_scale"))
           and not n.endswith(("mem_bias", "syn_bias"))}
    in_step = a.input_range / smax(a.input_bits)
    for i in range(len(cfg.hidden)):
        p = f"blocks.{i}"
        s = t[f"{p}.chip_scale"].unsqueeze(-1)  # [K, 1]
        gain, syn = _gains(cfg, t, p, a)
        e = torch.exp2(t[f"{p}.linear.weight_exp"]).view(-1, 1, 1)
        out[f"{p}.linear.weight"] = t[f"{p}.linear.weight"] * e * s.unsqueeze(-1) / (
            (gain * syn).unsqueeze(-1) * (in_step if i == 0 else 1.0))
        if f"{p}.recurrent.linear.weight" in t:
            e = torch.exp2(t[f"{p}.recurrent.linear.weight_exp"]).view(-1, 1, 1)
            out[f"{p}.recurrent.linear.weight"] = t[f"{p}.recurrent.linear.weight"] * e * s.unsqueeze(-1) / (
                gain * (syn if a.synapse_dash else 1.0)).unsqueeze(-1)
        out[f"{p}.v_th"] = t[f"{p}.v_th"] * s
        if f"{p}.beta" in t:
            out[f"{p}.bn.bias"] = t[f"{p}.mem_bias"] * s / gain
            if f"{p}.syn_bias" in t:
                out[f"{p}.linear.bias"] = t[f"{p}.syn_bias"] * s / (gain * syn)
        else:
            out[f"{p}.linear.bias"] = t[f"{p}.mem_bias"] * s / gain
        if cfg.neuron in ADAPTIVE:
            out[f"{p}.adapt_a"] = t[f"{p}.adapt_a"] / gain
            out[f"{p}.adapt_b"] = t[f"{p}.adapt_b"] * s / gain
    out["readout.linear.weight"] = t["readout.linear.weight"] * t["readout.chip_scale"].view(-1, 1, 1)
    return {n: v.float() if v.is_floating_point() else v for n, v in out.items()}  # the float network's dtype
