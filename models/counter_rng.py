"""Counter-based Gaussian noise: each value a pure function of (key, coordinates).

Read noise is redrawn at every time step of every example, and inference cuts that work
by time chunks, example batches and networks per pass, all sized from the machine's
caches. A sequential generator hands out values in the order they are asked for, so the
noise a neuron sees would depend on how the work was cut. Here every value is computed
from its own coordinates instead: the same (key, example, step, neuron) gives the same
number in any chunk, batch, pass, thread count or device.

Bits: SplitMix64's finaliser (Steele, Lea & Flood 2014, "Fast splittable pseudorandom
number generators"), a bijection of 64-bit integers, over a counter that packs
(example, step, pair of neurons). Gaussians: Box-Muller from two uniforms of one hash,
with `log`, `sin` and `cos` written as polynomials of exactly rounded operations (+, -,
*, /, floor, frexp), since torch's own transcendental kernels round differently in
their vectorised body and their scalar tail, i.e. by an element's position in a tensor.
The polynomials are accurate to float32 rounding (measured against float64: 1e-6 absolute
for log near ln u = -17, 7e-8 for sin and cos); the uniforms carry 24 (radius) and 22 + 2
(angle) bits, so |eps| <= 5.9 (a normal exceeds that once in 3e8 draws).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

MASK64 = (1 << 64) - 1
EXAMPLE_BITS, STEP_BITS, PAIR_BITS = 24, 24, 15  # counter layout (63 bits): 2^24 examples, steps, 2^15 neuron pairs
GOLDEN = 0x9E3779B97F4A7C15  # 2^64 / golden ratio: SplitMix64's increment


def _signed(v: int) -> int:
    """A 64-bit pattern as the int64 torch stores it."""
    v &= MASK64
    return v - (1 << 64) if v >= 1 << 63 else v


_M1, _M2, _GOLDEN = _signed(0xBF58476D1CE4E5B9), _signed(0x94D049BB133111EB), _signed(GOLDEN)


def _shr(x: Tensor, n: int) -> Tensor:
    """Logical right shift of int64 bit patterns (torch's `>>` is arithmetic)."""
    return (x >> n) & ((1 << (64 - n)) - 1)


def mix64(x: Tensor) -> Tensor:
    """SplitMix64's finaliser on int64 tensors (multiplication wraps modulo 2^64).

    >>> mix64(torch.tensor([0, 1])).tolist() == [0, _signed(mix64_reference(1))]
    True
    """
    x = (x ^ _shr(x, 30)) * _M1
    x = (x ^ _shr(x, 27)) * _M2
    return x ^ _shr(x, 31)


def mix64_reference(x: int) -> int:
    """The same finaliser on Python integers, the oracle of `mix64`."""
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def _log(u: Tensor) -> Tensor:
    """ln(u) for u > 0: frexp, then 2 atanh(s) with s = (m - 1)/(m + 1), |s| <= 0.172."""
    m, e = torch.frexp(u)
    low = m < math.sqrt(0.5)
    m = torch.where(low, m * 2, m)
    e = (e - low.to(e.dtype)).to(u.dtype)
    s = (m - 1) / (m + 1)
    s2 = s * s
    series = 1 + s2 * (1 / 3 + s2 * (1 / 5 + s2 * (1 / 7 + s2 * (1 / 9 + s2 / 11))))
    return e * math.log(2) + 2 * s * series


def _sincos(y: Tensor) -> tuple[Tensor, Tensor]:
    """sin and cos of y in [-pi/4, pi/4] by Taylor series (remainders below 2e-9, under float32 rounding)."""
    y2 = y * y
    sin = y * (1 - y2 / 6 * (1 - y2 / 20 * (1 - y2 / 42 * (1 - y2 / 72 * (1 - y2 / 110)))))
    cos = 1 - y2 / 2 * (1 - y2 / 12 * (1 - y2 / 30 * (1 - y2 / 56 * (1 - y2 / 90 * (1 - y2 / 132)))))
    return sin, cos


def normal_pairs(bits: Tensor) -> tuple[Tensor, Tensor]:
    """Two independent standard normals (float32) from each 64-bit hash (Box-Muller)."""
    u = (_shr(bits, 40).to(torch.float32) + 0.5) * 2.0 ** -24  # (0, 1), 24 bits
    quarter = _shr(bits, 38) & 3
    y = ((_shr(bits, 16) & ((1 << 22) - 1)).to(torch.float32) + 0.5) * 2.0 ** -22  # (0, 1), 22 bits
    y = (y - 0.5) * (math.pi / 2)  # the angle is quarter * pi/2 + y: uniform on the circle
    r = torch.sqrt(-2 * _log(u))
    s, c = _sincos(y)
    odd, neg_c, neg_s = (quarter & 1).bool(), (quarter == 1) | (quarter == 2), quarter >= 2
    cos = torch.where(odd, s, c)
    sin = torch.where(odd, c, s)
    cos = torch.where(neg_c, -cos, cos)
    sin = torch.where(neg_s, -sin, sin)
    return r * cos, r * sin


def counter_normal(keys: Tensor, examples: Tensor, steps: Tensor, width: int) -> Tensor:
    """Standard normals [K, len(steps), len(examples), width], float32, on `keys`' device.

    Value (k, t, b, h) depends only on (keys[k], examples[b], steps[t], h).

    Args:
        keys: int64 [K], one stream per network (and layer).
        examples: int64 [B], each example's index in its split.
        steps: int64 [T], time steps from the sequence start.
        width: neurons per step.

    >>> a = counter_normal(torch.tensor([7, 8]), torch.arange(5), torch.arange(3), 6)
    >>> b = counter_normal(torch.tensor([8]), torch.arange(2, 4), torch.arange(1, 3), 6)
    >>> bool(torch.equal(a[1:, 1:3, 2:4], b))
    True
    """
    pairs = (width + 1) // 2
    if int(examples.max()) >= 1 << EXAMPLE_BITS or int(steps.max()) >= 1 << STEP_BITS or pairs > 1 << PAIR_BITS:
        raise ValueError(f"read noise addresses at most 2^{EXAMPLE_BITS} examples, 2^{STEP_BITS} steps and "
                         f"2^{PAIR_BITS + 1} neurons per layer")
    dev = keys.device
    key = mix64(keys.to(torch.int64) * _GOLDEN + _GOLDEN)[:, None, None, None]
    row = ((examples.to(dev, torch.int64) << STEP_BITS)[None, None, :, None]
           + steps.to(dev, torch.int64)[None, :, None, None])
    counter = (row << PAIR_BITS) + torch.arange(pairs, device=dev, dtype=torch.int64)
    z0, z1 = normal_pairs(mix64(counter + key))
    return torch.stack((z0, z1), -1).flatten(-2)[..., :width]
