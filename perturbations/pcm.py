"""Phase-change memory (PCM) crossbar: programming noise, conductance drift, read noise.

The statistical PCM model of Nandakumar et al. (2019, "Phase-change memory models for
deep learning training and inference"), with the constants aihwkit uses in its
`PCMLikeNoiseModel` (src/aihwkit/inference/noise/pcm.py). Conductances in microsiemens.

Each weight maps to a differential pair, w = (g+ - g-) / g_max * max|w_l|, with the target
conductance on one side. With r = g_T / g_max:
  programming  g_prog = g_T + sigma_prog * eps,  sigma_prog = max(c0 + c1 r + c2 r^2, 0) * g_max / 25
  drift        g(t) = g_prog * ((t + t0) / t0) ^ -nu,  nu ~ N(mu_nu(r), sigma_nu(r)), nu >= 0
               mu_nu = clip(-0.0155 ln r + 0.0244, 0.049, 0.1), sigma_nu = clip(-0.0125 ln r - 0.0059, 0.008, 0.045)
  read (1/f)   g += g(t) * Q * sqrt(ln((t + t_r) / (2 t_r))) * eps,  Q = min(0.0088 / max(r^0.65, 1e-3), 0.2)
Conductances stay >= 0. Global drift compensation (aihwkit's `GlobalDriftCompensation`)
rescales each layer by |W_prog 1|_1 / |W_t 1|_1, the output of an all-ones reference read
at programming time over the same read at time t. Unlike aihwkit (which skips programming
noise at t = 0), level 0 here means "just programmed": programming noise, no drift.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from perturbations.base import Context, Scale, Tensors, copy, draw, layer_scale, register

G_MAX = 25.0  # microsiemens
PROG_COEFF = (0.26348, 1.9650, -1.1731)
T0 = 20.0  # seconds: drift reference time
T_READ = 250e-9  # seconds: read duration


def _pair_conductance(g_t: Tensor, t: float, gens: list[torch.Generator]) -> tuple[Tensor, Tensor]:
    """Programmed conductance and conductance at time t for targets g_t [K, ...]."""
    shape = tuple(g_t.shape[1:])
    r = (g_t / G_MAX).clamp_min(1e-6)
    c0, c1, c2 = PROG_COEFF
    sig_prog = (c0 + c1 * r + c2 * r.square()).clamp_min(0.0) * G_MAX / 25.0
    g_prog = (g_t + sig_prog * draw(shape, gens, g_t)).clamp_min(0.0)
    mu_nu = (-0.0155 * torch.log(r) + 0.0244).clamp(0.049, 0.1)
    sig_nu = (-0.0125 * torch.log(r) - 0.0059).clamp(0.008, 0.045)
    nu = (mu_nu + sig_nu * draw(shape, gens, g_t)).clamp_min(0.0)
    g = g_prog * ((t + T0) / T0) ** (-nu)
    q = (0.0088 / r.pow(0.65).clamp_min(1e-3)).clamp_max(0.2)
    read = math.sqrt(max(math.log((t + T_READ) / (2 * T_READ)), 0.0))
    g = (g + g * q * read * draw(shape, gens, g_t)).clamp_min(0.0)
    return g_prog, g


@register("pcm", meaning="PCM crossbar: conductance-dependent programming noise, drift g0 (t/t0)^-nu with "
                         "device-to-device nu spread, and 1/f read noise (Nandakumar et al. 2019)",
          level="time since programming, seconds (0 = just programmed; 3600 = one hour, 86400 = one day)",
          zero_is_identity=False,
          options={"compensation": ("global", "global (drift compensation, as aihwkit) | none")})
def pcm(t: Tensors, level: float, gens: list[torch.Generator], ctx: Context) -> Tensors:
    compensate = ctx.opt("compensation", "global", ("global", "none")) == "global"
    out = copy(t)
    for n in ctx.weights(t):
        w = t[n]
        wmax = layer_scale(w, Scale.MAX).clamp_min(torch.finfo(w.dtype).tiny)
        g_target = w.abs() / wmax * G_MAX
        pos = (w > 0).to(w.dtype)
        gp_prog, gp = _pair_conductance(g_target * pos, level, gens)
        gn_prog, gn = _pair_conductance(g_target * (1 - pos), level, gens)
        w_prog = (gp_prog - gn_prog) / G_MAX * wmax
        w_t = (gp - gn) / G_MAX * wmax
        if compensate and w.dim() >= 3:
            ref = w_prog.sum(-1).abs().sum(-1, keepdim=True)  # |W 1|_1 per draw
            now = w_t.sum(-1).abs().sum(-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
            w_t = w_t * (ref / now).unsqueeze(-1)
        out[n] = w_t
    return out
