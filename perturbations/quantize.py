"""Uniform symmetric weight quantisation and bit flips in the integer codes."""

from __future__ import annotations

import torch
from torch import Tensor

from typing import Mapping

from perturbations.base import Context, PerturbationError, Tensors, copy, draw, register


def _range(w: Tensor, per_channel: bool, clip_pct: float) -> Tensor:
    """max |w| per draw (and per output row when per-channel), or its percentile when clipping."""
    a = w.abs().flatten(2) if per_channel else w.abs().flatten(1).unsqueeze(1)  # [K, R, M]
    r = a.amax(-1) if clip_pct >= 100 else torch.quantile(a.float(), clip_pct / 100.0, dim=-1).to(w.dtype)
    return r.view(w.shape[0], -1, *([1] * (w.dim() - 2))) if per_channel else r.view(-1, *([1] * (w.dim() - 1)))


def grid_step(w: Tensor, bits: int, per_channel: bool = False, clip_pct: float = 100.0) -> Tensor:
    """The n-bit grid's step (one LSB) per draw: range / (2^(n-1) - 1), never 0."""
    return _range(w, per_channel, clip_pct).clamp_min(torch.finfo(w.dtype).tiny) / (2 ** (bits - 1) - 1)


def quantize_tensor(w: Tensor, bits: int, *, per_channel: bool = False, stochastic_u: Tensor | None = None,
                    clip_pct: float = 100.0) -> Tensor:
    """Symmetric uniform n-bit quantisation of a K-stacked tensor.

    Codes are integers in [-(2^(n-1) - 1), 2^(n-1) - 1] times step = range / (2^(n-1) - 1);
    1 bit is binary: sign(w) * mean|w|. `stochastic_u` (uniform [0, 1), same shape) selects
    stochastic rounding floor(x + u).
    """
    if bits == 1:
        dims = tuple(range(2, w.dim())) if per_channel else tuple(range(1, w.dim()))
        return torch.sign(w) * w.abs().mean(dim=dims, keepdim=True)
    qmax = 2 ** (bits - 1) - 1
    step = grid_step(w, bits, per_channel, clip_pct)
    x = w / step
    x = torch.floor(x + stochastic_u) if stochastic_u is not None else torch.round(x)
    return x.clamp(-qmax, qmax) * step


def _check_quantize(options: Mapping[str, str], level: float) -> None:
    """1 bit is binarisation (sign(w) * mean|w|): no rounding choice and no clipping range exist.
    `clip` is a percentile of |w| in (0, 100]."""
    try:
        clip = float(options.get("clip", 100))
    except ValueError:
        raise PerturbationError(f"quantize: clip={options.get('clip')!r} is not a number") from None
    if not 0 < clip <= 100:  # NaN fails too
        raise PerturbationError(f"quantize: clip must be a percentile of |w| in (0, 100], got {options.get('clip')}")
    if level == 1 and (options.get("rounding", "nearest") != "nearest" or clip != 100):
        raise PerturbationError("quantize at 1 bit binarises (sign(w) * mean|w|): rounding and clip do not apply; "
                                "use 2 bits or more, or drop those options")


def _check_bitflip(options: Mapping[str, str], level: float) -> None:
    try:
        bits = float(options.get("bits", 8))
    except ValueError:
        raise PerturbationError(f"bitflip: bits={options.get('bits')!r} is not a number") from None
    if not 2 <= bits <= 16 or bits != int(bits):  # NaN fails the range first
        raise PerturbationError(f"bitflip: bits must be an integer from 2 to 16 (a signed code needs a sign bit "
                                f"and a magnitude bit), got {options.get('bits')}")


@register("quantize", meaning="n-bit weight memory: uniform symmetric quantisation",
          level="bits (1-16)", integer_level=True, min_level=1, max_level=16, zero_is_identity=False,
          level_is_bits=True, check=_check_quantize, monotone=False,  # 1 bit binarises: 2 bits can be worse
          options={"granularity": ("tensor", "tensor | channel (per output row)"),
                   "rounding": ("nearest", "nearest | stochastic"),
                   "clip": ("100", "percentile of |w| mapped to the largest code")})
def quantize(t: Tensors, level: float, gens: list[torch.Generator], ctx: Context) -> Tensors:
    per_channel = ctx.opt("granularity", "tensor", ("tensor", "channel")) == "channel"
    stochastic = ctx.opt("rounding", "nearest", ("nearest", "stochastic")) == "stochastic"
    clip = ctx.num("clip", 100.0)
    out = copy(t)
    for n in ctx.weights(t):
        w = t[n]
        u = draw(tuple(w.shape[1:]), gens, w, "uniform") if stochastic else None
        out[n] = quantize_tensor(w, int(level), per_channel=per_channel and w.dim() >= 3, stochastic_u=u, clip_pct=clip)
    return out


@register("bitflip", meaning="memory bit errors: random bit flips in the n-bit two's-complement weight codes",
          level="bit error rate (probability that a bit flips, 0-1)", max_level=1.0, check=_check_bitflip,
          monotone=False,  # past 0.5 most bits flip: the codes head for their complement, not for noise
          options={"bits": ("8", "code width n (2-16)")})
def bitflip(t: Tensors, level: float, gens: list[torch.Generator], ctx: Context) -> Tensors:
    """w' = w + step * (flipped code - code): level 0 is exactly the identity.

    On a chip's codes (a network deployed with --chip) the grid is the chip's own: step 1 and
    its weight width, so the flips hit the very bits it stores."""
    bits = int(ctx.num("bits", 8))
    on_chip = "chip.weight_bits" in t
    if on_chip:
        width = int(t["chip.weight_bits"][0])
        if "bits" in ctx.options and bits != width:
            raise PerturbationError(f"bitflip: bits={bits}, but the chip stores {width}-bit weights")
        bits = width
    out = copy(t)
    for n in ctx.weights(t):
        w = t[n]
        qmax = 2 ** (bits - 1) - 1
        step = 1.0 if on_chip else grid_step(w, bits)
        code = torch.round(w / step).clamp(-qmax, qmax).to(torch.int64)
        unsigned = code & ((1 << bits) - 1)  # two's complement in n bits
        mask = torch.zeros_like(unsigned)
        for b in range(bits):
            flip = draw(tuple(w.shape[1:]), gens, w, "uniform") < level
            mask |= flip.to(torch.int64) << b
        flipped = unsigned ^ mask
        signed = torch.where(flipped >= (1 << (bits - 1)), flipped - (1 << bits), flipped)
        out[n] = w + (signed - code).to(w.dtype) * step
    return out
