"""Phase-change memory (PCM) crossbar: programming noise, conductance drift, read noise.

The statistical PCM model of Nandakumar et al. (2019, "Phase-change memory models for
deep learning training and inference"), with the constants aihwkit uses in its
`PCMLikeNoiseModel` (src/aihwkit/inference/noise/pcm.py). Conductances in microsiemens.

Each weight maps to a differential pair, w = (g+ - g-) / g_max * max|w_l|, with the target
conductance on one side. With r = g_T / g_max and t_inf the time since programming:
  programming  g_prog = g_T + sigma_prog * eps,  sigma_prog = max(c0 + c1 r + c2 r^2, 0) * g_max / 25
  drift        t = t_inf + t0,  g(t) = g_prog * (t / t0) ^ -nu,  nu = |N(mu_nu(r), sigma_nu(r))|
               mu_nu = clip(-0.0155 ln r + 0.0244, 0.049, 0.1), sigma_nu = clip(-0.0125 ln r - 0.0059, 0.008, 0.045)
  read (1/f)   g += |g(t)| * Q * sqrt(ln((t + t_read) / (2 t_read))) * eps,  Q = min(0.0088 / max((g_prog/g_max)^0.65, 1e-3), 0.2)
Conductances stay >= 0. As in aihwkit, the read-noise time is t = t_inf + t0, so a chip
read just after programming (t_inf = 0) already carries read noise.
Global drift compensation follows aihwkit's current `GlobalDriftCompensation`: one-hot
reads of every input (the identity read-out) give the layer's weights; the factor is
mean|W_prog| / mean|W_t|, the reference read right after programming, applied to the
layer's output (here: to its weights, the same thing for a linear layer).
Unlike aihwkit (which skips programming noise at t_inf = 0), level 0 here means "just
programmed": programming noise and read noise, no drift.
Version 2: compensation by mean absolute read-out (version 1 used an all-ones read-out),
read noise at t_inf + t0, nu folded at 0 by |.| and Q from the programmed conductance.
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


def _pair_conductance(g_t: Tensor, t_inf: float, gens: list[torch.Generator]) -> tuple[Tensor, Tensor]:
    """Programmed conductance and conductance t_inf seconds later for targets g_t [K, ...]."""
    shape = tuple(g_t.shape[1:])
    r = (g_t / G_MAX).clamp_min(1e-6)
    c0, c1, c2 = PROG_COEFF
    sig_prog = (c0 + c1 * r + c2 * r.square()).clamp_min(0.0) * G_MAX / 25.0
    g_prog = (g_t + sig_prog * draw(shape, gens, g_t)).clamp_min(0.0)
    mu_nu = (-0.0155 * torch.log(r) + 0.0244).clamp(0.049, 0.1)
    sig_nu = (-0.0125 * torch.log(r) - 0.0059).clamp(0.008, 0.045)
    nu = (mu_nu + sig_nu * draw(shape, gens, g_t)).abs()
    t = t_inf + T0
    # exp/log rather than pow: torch's vectorised pow may differ in the last bit with the
    # tensor's size, and draw k must not depend on how many draws share the call
    g = g_prog * torch.exp(-nu * math.log(t / T0))
    r_prog = (g_prog / G_MAX).clamp_min(1e-30)
    q = (0.0088 / torch.exp(0.65 * torch.log(r_prog)).clamp_min(1e-3)).clamp_max(0.2)
    read = math.sqrt(math.log((t + T_READ) / (2 * T_READ)))
    g = (g + g.abs() * q * read * draw(shape, gens, g_t)).clamp_min(0.0)
    return g_prog, g


def drift_compensation(w_prog: Tensor, w_t: Tensor) -> Tensor:
    """aihwkit's global factor per draw [K, 1, 1]: mean|W_prog| / mean|W_t| (identity read-out)."""
    # one reduction per draw: a batched reduction may sum in another order, and draw k must
    # not depend on how many draws share the call
    shape = (-1,) + (1,) * (w_t.dim() - 1)
    ref = torch.stack([w.abs().mean() for w in w_prog]).view(shape)
    now = torch.stack([w.abs().mean() for w in w_t]).view(shape)
    return ref / now.clamp_min(1e-4 * ref.clamp_min(torch.finfo(w_t.dtype).tiny))


@register("pcm", meaning="PCM crossbar: conductance-dependent programming noise, drift g0 (t/t0)^-nu with "
                         "device-to-device nu spread, and 1/f read noise (Nandakumar et al. 2019)",
          level="time since programming, seconds (0 = just programmed; 3600 = one hour, 86400 = one day)",
          zero_is_identity=False, version=2, max_level=3.2e9,  # a century, in seconds
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
            w_t = w_t * drift_compensation(w_prog, w_t)
        out[n] = w_t
    return out
