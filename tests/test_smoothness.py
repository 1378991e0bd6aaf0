"""Smoothness metrics on curves with known answers."""

import numpy as np
import pytest

from reports.smoothness import angularity, kinks, local_minima, metrics_1d, metrics_2d

X = np.linspace(-1, 1, 41)


def test_parabola_is_smooth_at_any_width():
    for a in (0.1, 1.0, 100.0):
        m = metrics_1d(X, a * X**2)
        assert m["kinks"] == 0
        assert m["quad_rms"] == pytest.approx(0, abs=1e-9 * a)
        assert m["angularity"] == pytest.approx(0, abs=1e-9)
        assert m["curvature"] == pytest.approx(2 * a, rel=1e-6)


def test_narrow_and_wide_basins_differ_in_curvature_not_angularity():
    ripple = 0.02 * np.sin(40 * X)
    narrow, wide = metrics_1d(X, 50 * (X**2 + ripple)), metrics_1d(X, 0.5 * (X**2 + ripple))
    assert narrow["curvature"] == pytest.approx(100 * wide["curvature"], rel=1e-6)
    assert narrow["angularity"] == pytest.approx(wide["angularity"], rel=1e-6)
    assert narrow["angularity"] > 0.1


def test_abs_has_one_kink_and_is_angular():
    m = metrics_1d(X, np.abs(X))
    assert m["kinks"] == 1
    assert m["angularity"] > 1.0
    assert m["lipschitz"] == pytest.approx(1.0)


def test_staircase_has_two_kinks_per_riser():
    y = np.floor(4 * X + 0.5) / 4  # stairs of width 1/4, no riser at either end
    assert kinks(y) == 2 * int((np.diff(y) != 0).sum())
    assert metrics_1d(X, y)["spectral_high"] > metrics_1d(X, X)["spectral_high"]


def test_ripple_amplitude_is_ranked():
    ms = [metrics_1d(X, X**2 + amp * np.sin(40 * X)) for amp in (0.0, 0.005, 0.02, 0.08)]
    for key in ("roughness", "angularity", "spectral_high", "quad_rms"):
        vals = [m[key] for m in ms]
        assert vals == sorted(vals) and vals[0] < vals[-1], key
    assert [m["kinks"] for m in ms] == sorted(m["kinks"] for m in ms)


def test_plane_metrics_and_local_minima():
    xx, yy = np.meshgrid(X[::2], X[::2], indexing="ij")
    bowl = xx**2 + yy**2
    assert local_minima(bowl) == 1
    egg = bowl + 0.2 * np.cos(12 * xx) * np.cos(12 * yy)
    assert local_minima(egg) > 1
    mb, me = metrics_2d(X[::2], bowl), metrics_2d(X[::2], egg)
    assert mb["angularity"] == pytest.approx(0, abs=1e-9)
    assert me["angularity"] > mb["angularity"] and me["local_minima"] > 1


def test_angularity_is_scale_invariant():
    y = np.abs(X) + X**2
    assert angularity(X, 7 * y) == pytest.approx(angularity(X, y))


@pytest.mark.parametrize("f", [lambda x: np.log(np.cosh(5 * x)), lambda x: x**4, lambda x: np.exp(5 * x)],
                         ids=["logcosh5x", "x4", "exp5x"])
def test_smooth_curves_have_no_kinks_at_the_default_resolution(f):
    assert kinks(f(X)) == 0
    assert kinks(f(np.linspace(-1, 1, 161))) == 0


def test_a_kink_counts_once_wherever_it_falls_and_a_step_twice():
    assert kinks(np.abs(X)) == 1
    assert kinks(np.abs(X - 0.025)) == 1  # halfway between grid points: two second differences, one kink
    assert kinks(np.abs(X - 0.013)) == 1
    assert kinks((X > 0.01).astype(float)) == 2


def test_a_constant_curve_has_no_angularity():
    for c in (0.0, 0.3, 1e6):
        m = metrics_1d(X, np.full_like(X, c))
        assert m["angularity"] == 0.0 and m["kinks"] == 0 and m["curvature"] == pytest.approx(0, abs=1e-6 * (1 + c))
