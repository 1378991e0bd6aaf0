"""Adaptive and recurrent LIF neurons: sparch's adLIF, RLIF and RadLIF (Bittar & Garner 2022).

Per step, with the input current `I[t] = BN(W x[t])` of the layer (as in sparch, the
BatchNorm sees the feedforward current only):

    w[t] = beta w[t-1] + a u[t-1] + b s[t-1]                      (adlif, radlif)
    u[t] = alpha (u[t-1] - theta s[t-1]) + (1 - alpha) (I[t] + V s[t-1] - w[t])
    s[t] = H(u[t] - theta)

`u` is the membrane before its reset (the reset is the `- theta s[t-1]` of the next step),
`V` the layer's recurrent weights (rlif, radlif; zero diagonal), `w` the adaptation
current. Constants are per neuron and trainable, clamped to sparch's ranges: alpha in
[exp(-1/5), exp(-1/25)] (the model's alpha range), beta in [exp(-1/30), exp(-1/120)],
a in [-1, 1], b in [0, 2] (idiap/sparch, `sparch/models/snns.py`, adLIFLayer and
RadLIFLayer). Where we differ from sparch, and why:

  * every sequence starts from rest (u = w = s = 0); sparch draws the initial states
    uniformly at random, which would make a prediction depend on a generator;
  * the reset subtracts theta s (sparch subtracts s; equal at its threshold of 1);
  * V is held like a Linear weight, [out, in], so the current is `s V^T` (sparch multiplies
    `s V` with its Linear's weight: the transpose, the same distribution at orthogonal
    init); its diagonal is zeroed at init and masked in every forward pass, so a
    perturbation of the diagonal, which a chip does not have, changes nothing;
  * the threshold is a per-neuron buffer (fixed in training), as for our LIF, so mismatch
    can spread it.

Hardware effects act inside the loop: dead and saturated neurons force their spikes before
those spikes feed back through V and into the adaptation; read noise is added to the
recurrent current at every step from its own counter-based stream.

The recurrent current `V s` is an exact sum rounded once to float32 (`spike_current.summable`), not a
float32 matmul whose rounding depends on how the BLAS library orders it (models/spike_current.py):
the compiled kernel (models/recurrent_native.py) sums only the columns of the neurons that fired and
gets the same bits, and so does a GPU.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import Tensor

from models.hardware import add_read_noise, force_spikes
from models import crossbar_read, recurrent_native, spike_current
from models.model_config import ADAPTIVE, RECURRENT, ForwardOptions, ModelConfig
from models.surrogate import spike

BETA_RANGE = (math.exp(-1 / 30), math.exp(-1 / 120))  # adaptation decay per step: tau_w of 30-120 steps
A_RANGE = (-1.0, 1.0)   # subthreshold coupling of the membrane into w
B_RANGE = (0.0, 2.0)    # spike-triggered jump of w
ADAPT = ("adapt_beta", "adapt_a", "adapt_b")
RANGES = dict(zip(ADAPT, (BETA_RANGE, A_RANGE, B_RANGE)))
RECURRENT_STREAM = 0x2545F4914F6CDD1D  # xor-ed into a layer's read-noise key: the recurrent current's own stream


def orthogonal(h: int, g: torch.Generator) -> Tensor:
    """An [h, h] orthogonal matrix drawn from `g` (QR of a Gaussian with the signs fixed: Haar
    distributed, as `torch.nn.init.orthogonal_` draws, but from our generator)."""
    q, r = torch.linalg.qr(torch.randn(h, h, generator=g, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r)).unsqueeze(0)).float()


def adaptation(t: Mapping[str, Tensor], p: str, opt: ForwardOptions) -> tuple[Tensor, Tensor, Tensor] | None:
    """(beta, a, b), each [K, 1, H], clamped to sparch's ranges unless the hardware moved them."""
    if f"{p}.adapt_beta" not in t:
        return None
    out = []
    for name in ADAPT:
        v = t[f"{p}.{name}"]
        if opt.clamp_alpha:
            v = v.clamp(*RANGES[name])
        out.append(v.unsqueeze(1))
    return out[0], out[1], out[2]


def recurrent_weight(t: Mapping[str, Tensor], p: str) -> Tensor | None:
    """V [K, H, H] of block `p` with its diagonal masked (None: no recurrence)."""
    v = t.get(f"{p}.recurrent.linear.weight")
    if v is None:
        return None
    return v * (1.0 - torch.eye(v.shape[-1], dtype=v.dtype, device=v.device))


def is_stateful(cfg: ModelConfig) -> bool:
    """Neurons whose step needs the layer's own last spikes or state beyond the membrane."""
    return cfg.neuron in ADAPTIVE + RECURRENT


def scan(cur: Tensor, affine: tuple[Tensor, Tensor] | None, alpha: Tensor, v_th: Tensor, width: float,
         v_rec: Tensor | None, adapt: tuple[Tensor, Tensor, Tensor] | None, t: Mapping[str, Tensor], p: str,
         opt: ForwardOptions) -> Tensor:
    """Spikes [K, T, B, H] of one layer from its feedforward currents `cur` [K, T, B, H].

    `affine` (scale, shift) [K, 1, H]: the layer's BatchNorm, `cur * scale + shift`, not yet
    applied (the kernel fuses it into the scan; None: `cur` is the input current already).
    `alpha`, `v_th` [K, 1, H]; `v_rec` the recurrent weights (or None); `adapt` (beta, a, b)
    (or None); `t` and `p` give the layer's hardware entries (dead, saturated, read noise).
    With `opt.smooth_spikes` > 0 the Heaviside is a sigmoid of that temperature (the
    non-spiking control of loss slices).
    """
    k, steps, bsz, h = cur.shape
    dead, saturated = t.get(f"{p}.dead"), t.get(f"{p}.saturated")
    noise, keys = t.get(f"{p}.read_noise"), t.get(f"{p}.read_noise_seed")
    consts = [alpha, v_th, *(adapt or ()), *(c for c in (v_rec, dead, saturated) if c is not None)]
    grad = torch.is_grad_enabled() and any(c.requires_grad for c in (cur, *consts, *(affine or ())))
    forced = dead is not None or saturated is not None or v_th.requires_grad  # not in the kernel's backward
    spikes = opt.smooth_spikes == 0
    xbar = crossbar_read.prepare(t, f"{p}.recurrent", spikes) if crossbar_read.present(t, f"{p}.recurrent") else None
    lib = None if xbar is not None else recurrent_native.library(cur, consts + list(affine or ()), forced, grad,
                                                     noise is not None and v_rec is not None, opt.smooth_spikes > 0,
                                                     opt.kernel)
    cols = None if v_rec is None or lib is None else spike_current.exact_weights(v_rec)
    if cols is not None and cols.dtype != torch.float32:  # non-finite weights: the dense product's NaNs, eager
        lib, cols = None, None
    if affine is not None and (lib is None or grad):  # only the kernel's inference scan fuses the BatchNorm
        cur, affine = cur * affine[0].unsqueeze(1) + affine[1].unsqueeze(1), None
    if lib is not None:
        return recurrent_native.scan(lib, cur, affine, alpha, v_th, width, v_rec, cols, adapt, dead, saturated, grad)
    v_exact = None if v_rec is None else spike_current.summable(v_rec)
    u = cur.new_zeros(k, bsz, h)
    s = torch.zeros_like(u)
    w = torch.zeros_like(u) if adapt is not None else None
    gain = 1.0 - alpha
    rec_keys = None if keys is None else keys ^ RECURRENT_STREAM
    zs = []
    for step in range(steps):
        i = cur[:, step]
        if adapt is not None:
            beta, a, b = adapt
            w = beta * w + a * u + b * s
        if xbar is not None:  # the arrays' diagonal cells hold no weight (perturbations/crossbar.py)
            r = crossbar_read.read(s, xbar, spikes, opt.record_xbar)
            if noise is not None:
                r = add_read_noise(r.unsqueeze(1), noise, rec_keys, opt.example_offset, step).squeeze(1)
            i = i + r
        elif v_rec is not None:
            r = torch.matmul(s.to(v_exact.device, v_exact.dtype), v_exact.transpose(-1, -2)).to(s.device, s.dtype)
            if noise is not None:
                r = add_read_noise(r.unsqueeze(1), noise, rec_keys, opt.example_offset, step).squeeze(1)
            i = i + r
        if w is not None:
            i = i - w
        u = alpha * (u - v_th * s) + gain * i
        if opt.smooth_spikes > 0:
            s = torch.sigmoid((u - v_th) / opt.smooth_spikes)
        else:
            s = spike(u - v_th, width)
        if dead is not None or saturated is not None:
            s = force_spikes(s.unsqueeze(1), dead, saturated).squeeze(1)
        zs.append(s)
    return torch.stack(zs, 1)
