"""Smoothness of a sampled loss curve (1D) or surface (2D), separating kinks from curvature.

A narrow smooth basin and a kinked one can have the same second differences on a coarse
grid; what tells them apart is what is left after removing a smooth fit. So besides the
classic measures (total variation, roughness, a quadratic fit, spectrum, Lipschitz
estimate) `angularity` is the roughness of the residual of a smooth fit divided by that
fit's own mean curvature. The fit is local (Savitzky-Golay: a cubic over FIT_WINDOW
neighbouring points), so any smooth shape, a steep exponential wall included, is followed
and leaves almost nothing, while a kink, a step or a ripple finer than the window does:
zero for any parabola whatever its width, unchanged when the curve is scaled, large for
|x|, steps and ripples.

Every function takes a curve `y` sampled at equally spaced points `x`.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import savgol_filter

FIT_WINDOW = 7           # points of the local cubic fit angularity is measured against
FIT_ORDER = 3
KINK_TOL = 0.1           # a kink: the slope jumps by more than this fraction of the largest step
KINK_NEIGHBOURS = 3      # second differences on each side a kink is judged against
SPECTRAL_CUTOFF = 0.25   # "high" frequencies: above this fraction of the Nyquist frequency
METRICS_1D = ("tv", "roughness", "kinks", "quad_rms", "curvature", "angularity", "spectral_high", "lipschitz")
METRICS_2D = METRICS_1D + ("local_minima",)


def total_variation(y: np.ndarray) -> float:
    """Sum of |steps| divided by the range: 1 for a monotone curve, 2 for a bowl, more for wiggles."""
    rng = float(np.ptp(y))
    return float(np.abs(np.diff(y)).sum() / rng) if rng > 0 else 0.0


def roughness(x: np.ndarray, y: np.ndarray) -> float:
    """Mean |second difference| / h^2 (the mean |y''| of the sampled curve)."""
    h = float(x[1] - x[0])
    return float(np.abs(np.diff(y, 2)).mean() / h**2)


def kinks(y: np.ndarray, tol: float = KINK_TOL) -> int:
    """Places where the slope jumps.

    A second difference is a kink when it departs from the median of its neighbours (up to
    KINK_NEIGHBOURS on each side) by more than `tol` x the largest |step|. On a smooth curve
    neighbouring second differences agree to O(h^3) while the largest step is O(h), so
    smooth curves have none at usual resolutions (log cosh(5x), x^4, exp(5x): 0 at 41
    points); a slope jump shows in one second difference, or two of the same sign when it
    falls between grid points, and counts once. A parabola has none, |x| one, a staircase
    two per riser (the corner into it and the corner out of it, of opposite signs).
    """
    d1 = np.diff(y)
    scale = float(np.abs(d1).max()) if len(d1) else 0.0
    if scale == 0:
        return 0
    d2 = np.diff(y, 2)
    n, w = len(d2), KINK_NEIGHBOURS
    padded = np.concatenate([np.full(w, np.nan), d2, np.full(w, np.nan)])
    around = np.stack([padded[w + o:w + o + n] for o in range(-w, w + 1) if o != 0], 1)
    dev = d2 - np.nanmedian(around, 1) if n > 1 else d2
    flag = np.abs(dev) > tol * scale
    same_as_previous = np.r_[False, flag[1:] & flag[:-1] & (np.sign(dev[1:]) == np.sign(dev[:-1]))]
    return int((flag & ~same_as_previous).sum())


def _unit_axis(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (np.ptp(x) / 2)


def quadratic_rms(x: np.ndarray, y: np.ndarray) -> float:
    """RMS residual of the least-squares parabola."""
    u = _unit_axis(x)
    return float(np.sqrt(np.mean((y - np.polyval(np.polyfit(u, y, 2), u)) ** 2)))


def smooth_fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """The local smooth fit at `x` and its mean |second derivative| in the units of `x`.

    Curves shorter than FIT_WINDOW use the longest odd window that fits (3 points: a
    parabola through them, which leaves no residual).
    """
    n = len(x)
    window = min(FIT_WINDOW, n if n % 2 else n - 1)
    order = min(FIT_ORDER, window - 1)
    h = float(x[1] - x[0])
    fit = savgol_filter(y, window, order, mode="interp")
    d2 = savgol_filter(y, window, order, deriv=2, delta=h, mode="interp") if order >= 2 else np.zeros_like(y)
    return fit, float(np.abs(d2).mean())


def curvature(x: np.ndarray, y: np.ndarray) -> float:
    """Mean |y''| of the smooth fit: how narrow the basin is.

    Kinks are not left out: the local fit smooths a slope jump over its window rather than
    removing it, so a kink of jump J adds about J / (FIT_WINDOW h) to the points near it
    (|x| on 41 points: 0.98). That keeps `angularity`, which divides by it, finite for a
    pure kink; `kinks` and `angularity` are what single kinks out.
    """
    return smooth_fit(x, y)[1]


def angularity(x: np.ndarray, y: np.ndarray) -> float:
    """Roughness of the residual of the smooth fit, divided by the fit's mean curvature.

    Zero for a parabola of any width and for a constant curve; invariant to scaling `y`;
    the floor on the denominator (1e-3 x range / span^2) keeps a nearly flat curve from
    dividing rounding noise by rounding noise.
    """
    if float(np.ptp(y)) == 0.0:
        return 0.0
    fit, curv = smooth_fit(x, y)
    floor = 1e-3 * float(np.ptp(y)) / float(np.ptp(x)) ** 2
    denom = max(curv, floor)
    return roughness(x, y - fit) / denom if denom > 0 else 0.0


def spectral_high(y: np.ndarray, cutoff: float = SPECTRAL_CUTOFF) -> float:
    """Fraction of the spectral energy above `cutoff` x Nyquist, after removing the line
    through the end points (so that the periodic extension has no jump)."""
    n = len(y)
    r = y - (y[0] + (y[-1] - y[0]) * np.arange(n) / (n - 1))
    p = np.abs(np.fft.rfft(r)[1:]) ** 2
    tot = float(p.sum())
    if tot <= 0:
        return 0.0
    k0 = int(np.ceil(cutoff * len(p)))
    return float(p[k0:].sum() / tot)


def lipschitz(x: np.ndarray, y: np.ndarray) -> float:
    """Largest |slope| between neighbouring points."""
    return float(np.abs(np.diff(y)).max() / (x[1] - x[0]))


def metrics_1d(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Every 1D smoothness metric of one curve."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    return {"tv": total_variation(y), "roughness": roughness(x, y), "kinks": float(kinks(y)),
            "quad_rms": quadratic_rms(x, y), "curvature": curvature(x, y), "angularity": angularity(x, y),
            "spectral_high": spectral_high(y), "lipschitz": lipschitz(x, y)}


def local_minima(z: np.ndarray) -> int:
    """Grid points strictly lower than all their (up to 8) neighbours."""
    p = np.pad(z, 1, constant_values=np.inf)
    n0, n1 = z.shape
    lower = np.ones_like(z, dtype=bool)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di or dj:
                lower &= z < p[1 + di:1 + di + n0, 1 + dj:1 + dj + n1]
    return int(lower.sum())


def metrics_2d(x: np.ndarray, z: np.ndarray) -> dict[str, float]:
    """The 1D metrics averaged over every row and column of a surface, and its local minima."""
    x, z = np.asarray(x, float), np.asarray(z, float)
    lines = [*z, *z.T]
    per = [metrics_1d(x, line) for line in lines]
    out = {k: float(np.mean([m[k] for m in per])) for k in METRICS_1D}
    out["local_minima"] = float(local_minima(z))
    return out
