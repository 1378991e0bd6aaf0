"""The forward pass of a network on a digital chip: integer states, step by step.

Per step and hidden layer, on the codes `models/fixed_point.py` deployed (all numbers are
integers held in float64, exact while they stay below 2^53; `Arithmetic` guarantees that):

    cur = W x[t] (+ V s[t-1])                           integer weights times input codes or spikes
    i   = syn(i, cur)                                   synaptic current, where the neuron or the chip has one
    w   = L_beta(w) + trunc(a u[t-1]) + b s[t-1]        adaptation (adlif, radlif), in membrane units
    v   = L_alpha(u[t-1] - theta s[t-1]) + i + bias - w then saturated or wrapped to the state width
    s   = v > theta (v >= theta where the chip fires at equality); u[t] = v
          (a chip that emits several events per step: as many as thresholds fit, up to max_spikes)

`L` is the chip's leak: `x - (x >> dash)` with an arithmetic (flooring) shift and at least
one unit of decay while x > 0 (what xylosim computes, tests/test_xylo.py), or
`trunc(x m / 2^n)` (Lava's bit-accurate Loihi LIF truncates its products toward zero), or
`alpha x` for analog state. The readout accumulates its coded weights times the last layer's
spikes at every step, in a register of `readout_bits`; the host turns it into logits.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

from models.fixed_point import Arithmetic, arithmetic_of, dash_of, decay_code, smax
from models.hardware import force_spikes
from models.model_config import ADAPTIVE, RECURRENT, ForwardOptions, ModelConfig
from perturbations.base import PerturbationError


def overflow(x: Tensor, bits: int, rule: str) -> Tensor:
    """A signed `bits`-wide register: clamp (saturate) or two's-complement wrap."""
    lo, span = -smax(bits) - 1, 2.0 ** bits
    if rule == "saturate":
        return x.clamp(lo, smax(bits))
    return torch.remainder(x - lo, span) + lo


class Leak:
    """The chip's decay of one state per neuron: x -> L(x) (see the module docstring)."""

    def __init__(self, alpha: Tensor, a: Arithmetic):
        self.rule, self.alpha = a.leak, alpha  # [K, 1, H]
        if a.leak == "shift":
            self.div = torch.exp2(dash_of(alpha, a))
        elif a.leak == "multiply":
            self.mult, self.div = 2.0 ** a.leak_bits - decay_code(alpha, a), 2.0 ** a.leak_bits

    def __call__(self, x: Tensor) -> Tensor:
        if self.rule == "analog":
            return self.alpha * x
        if self.rule == "multiply":
            return torch.trunc(x * self.mult / self.div)
        d = torch.floor(x / self.div)
        return x - torch.where((d == 0) & (x > 0), torch.ones_like(d), d)


def input_codes(x: Tensor, a: Arithmetic) -> Tensor:
    """Features as signed `input_bits` codes (graded input events), the scale folded into layer 0."""
    q = smax(a.input_bits)
    return torch.round(x.double() * (q / a.input_range)).clamp(-q - 1, q)


def _weights(w: Tensor, a: Arithmetic) -> Tensor:
    """Codes as the chip stores them: whole numbers in the signed `weight_bits` range. On a
    mixed-signal chip (analog state) the codes were rounded when it was programmed, and what a
    perturbation does to them afterwards (a synapse's analog gain) stays unrounded."""
    if a.analog:
        return w.double()
    return torch.round(w.double()).clamp(-smax(a.weight_bits) - 1, smax(a.weight_bits))


def _shift(t: Mapping[str, Tensor], name: str) -> Tensor:
    """2^exponent of a weight matrix, per network [K, 1, 1] (1 where none was stored)."""
    e = t.get(f"{name}_exp")
    if e is None:
        return torch.ones(1, 1, 1, dtype=torch.float64, device=t[name].device)
    return torch.exp2(e.double()).view(-1, 1, 1)


def layer_constants(cfg: ModelConfig, t: Mapping[str, Tensor], i: int, a: Arithmetic) -> dict:
    """Block i's codes and leaks as one step reads them (rounded to the chip's grid again: a
    perturbation may have moved them off it)."""
    p = f"blocks.{i}"
    if f"{p}.read_noise" in t:
        raise PerturbationError("read-noise is an analog array's effect: the fixed-point target does not model it")
    rnd = (lambda x: x) if a.analog else torch.round
    c = {"w": _weights(t[f"{p}.linear.weight"], a) * _shift(t, f"{p}.linear.weight"),
         "th": rnd(t[f"{p}.v_th"].double()).unsqueeze(1), "bias": rnd(t[f"{p}.mem_bias"].double()).unsqueeze(1),
         "leak": Leak(t[f"{p}.alpha"].double().unsqueeze(1), a), "rec": None, "syn": None, "adapt": None,
         "dead": t.get(f"{p}.dead"), "saturated": t.get(f"{p}.saturated")}
    if cfg.neuron in RECURRENT:
        v = _weights(t[f"{p}.recurrent.linear.weight"], a) * _shift(t, f"{p}.recurrent.linear.weight")
        c["rec"] = v * (1.0 - torch.eye(v.shape[-1], dtype=v.dtype, device=v.device))
    if f"{p}.beta" in t:
        c["syn"] = (Leak(t[f"{p}.beta"].double().unsqueeze(1), a),
                    rnd(t[f"{p}.syn_bias"].double()).unsqueeze(1) if f"{p}.syn_bias" in t else 0.0)
    elif a.synapse_dash:
        beta = torch.full_like(c["th"], 1.0 - 2.0 ** -a.synapse_dash)
        c["syn"] = (Leak(beta, a), 0.0)
    if cfg.neuron in ADAPTIVE:
        mult = 2.0 ** a.leak_bits
        c["adapt"] = (Leak(t[f"{p}.adapt_beta"].double().unsqueeze(1), a),
                      torch.round(t[f"{p}.adapt_a"].double() * mult).unsqueeze(1) / mult,
                      rnd(t[f"{p}.adapt_b"].double()).unsqueeze(1))
    return c


class LayerState:
    """One layer's integer state over a batch: membranes `u` (before their reset), last spikes
    `s`, synaptic currents `i`, adaptation `w` (each [K, B, H]) and spike counts."""

    def __init__(self, k: int, bsz: int, h: int, device: torch.device):
        self.u = torch.zeros(k, bsz, h, dtype=torch.float64, device=device)
        self.s = torch.zeros_like(self.u)
        self.i = torch.zeros_like(self.u)
        self.w = torch.zeros_like(self.u)
        self.count = torch.zeros_like(self.u)
        self.active = torch.zeros_like(self.u)  # steps with at least one event (NeuroBench counts those)


def step(c: dict, a: Arithmetic, cfg: ModelConfig, h: Tensor, st: LayerState) -> Tensor:
    """One time step of one layer (see the module docstring): input codes or spikes `h` [B, D]
    or [K, B, D] in, `st` updated, the spikes it emits [K, B, H] out."""
    keep = (lambda z: z) if a.analog else (lambda z: overflow(z, a.state_bits, a.overflow))
    cur = torch.matmul(h, c["w"].transpose(-1, -2))  # [K, B, H]
    if c["rec"] is not None:
        cur = cur + torch.matmul(st.s, c["rec"].transpose(-1, -2))
    if c["syn"] is not None:
        leak_i, bias_i = c["syn"]
        if a.synapse_order == "add-decay":
            st.i = leak_i(keep(st.i + cur + bias_i))
        else:
            st.i = keep(leak_i(st.i) + cur + bias_i)
        cur = st.i
    if c["adapt"] is not None:
        leak_w, ca, cb = c["adapt"]
        coupling = ca * st.u if a.analog else torch.trunc(ca * st.u)
        st.w = keep(leak_w(st.w) + coupling + cb * st.s)
        cur = cur - st.w
    reset = st.u - c["th"] * st.s if cfg.reset == "subtract" else st.u * (st.s == 0)
    st.u = keep(c["leak"](reset) + cur + c["bias"])
    z = ((st.u >= c["th"]) if a.fire_at_equal else (st.u > c["th"])).double()
    if a.max_spikes > 1:  # as many events as thresholds fit (Xylo), each one subtracted at the reset
        ratio = st.u / c["th"].clamp_min(torch.finfo(torch.float64).tiny)
        n = torch.floor(ratio) if a.fire_at_equal else torch.ceil(ratio) - 1
        z = z * n.clamp(1, a.max_spikes)
    emitted = z
    if c["dead"] is not None or c["saturated"] is not None:
        emitted = force_spikes(z.unsqueeze(1), c["dead"], c["saturated"]).squeeze(1).double()
        if cfg.neuron in ADAPTIVE + RECURRENT:  # as the float networks do: stateful neurons reset and
            z = emitted                         # feed back what they emit, the others what they computed
    st.s = z
    st.count += emitted
    st.active += emitted > 0
    return emitted


def forward(cfg: ModelConfig, t: Mapping[str, Tensor], x: Tensor, opt: ForwardOptions) -> tuple[Tensor, list[Tensor]]:
    """Logits [K, B, C] and spike rate per hidden layer [K] of K networks on a chip."""
    a = arithmetic_of(t)
    k = t["chip.weight_bits"].shape[0]
    layers = list(range(opt.start, len(cfg.hidden)))
    consts = [layer_constants(cfg, t, i, a) for i in layers]
    codes = input_codes(x, a) if opt.start == 0 else x.double()  # [B, T, D] or [K, B, T, D]
    bsz, steps = codes.shape[-3], codes.shape[-2]
    if opt.start == 0:
        opt.count("input", codes if codes.dim() == 4 else codes.unsqueeze(0), (1, 2))
    states = [LayerState(k, bsz, cfg.hidden[i], x.device) for i in layers]
    wr = _weights(t["readout.linear.weight"], a)
    acc = torch.zeros(k, bsz, wr.shape[1], dtype=torch.float64, device=x.device)
    for n in range(steps):
        h = codes[..., n, :]
        for c, st in zip(consts, states):
            h = step(c, a, cfg, h, st)
        acc = overflow(acc + torch.matmul(h, wr.transpose(-1, -2)), a.readout_bits, a.overflow)
    scale = t["readout.chip_scale"].double().view(-1, 1, 1)
    logits = scale * acc / steps + t["readout.linear.bias"].double().unsqueeze(1)
    rates = [st.count.sum(dim=(1, 2)) / (steps * bsz * cfg.hidden[i]) for st, i in zip(states, layers)]
    for st, i in zip(states, layers):
        opt.add(f"blocks.{i}", st.active.sum(1))
    return logits, rates
