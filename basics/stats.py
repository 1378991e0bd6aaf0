"""Interval estimates and paired tests used by summaries, reports and the gate (numpy/scipy only).

Two sources of uncertainty are kept apart:
- over chips: the spread of a metric across independent hardware draws (seeds), a
  t-interval of the mean, conditional on the test set;
- over test examples: how much the seed-averaged metric would move on another test set
  of the same size, a percentile bootstrap. Clips of one speaker are not independent, so
  when the examples' speakers are known the bootstrap resamples whole speakers (a cluster
  bootstrap: each resample draws as many speakers as the test set has, with replacement,
  and averages over their clips); otherwise it resamples examples, which assumes they
  are independent (`SpeakerGroups` says which).

With few speakers the cluster bootstrap is too narrow: the spread of C resampled speaker
means underestimates the variance by (C - 1)/C, and C values estimate it poorly (3 test
voices can agree by chance). So its deviations are scaled by sqrt(C / (C - 1)), and the
interval is never narrower than the one over independent examples (their sampling noise
is part of any speaker's mean): the wider of the two is reported, and a paired test calls
a difference only when both resamplings exclude zero.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

BOOTSTRAP = 2000  # resamples: the 95% half-width is then stable to ~2% of itself


def t_interval(values: list[float] | np.ndarray, level: float = 0.95) -> tuple[float, float | None]:
    """Mean and half-width of the t-interval of the mean; None with fewer than 2 values.

    >>> bool(t_interval([1.0, 2.0, 3.0])[1] == stats.t.ppf(0.975, 2) / math.sqrt(3))
    True
    >>> t_interval([0.5])
    (0.5, None)
    """
    v = np.asarray(values, dtype=np.float64)
    m = float(v.mean())
    if len(v) < 2:
        return m, None
    return m, float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))


def paired_t_p(diffs: list[float] | np.ndarray) -> float:
    """Two-sided p of a one-sample t-test that paired differences average 0 (over chips).

    When every difference is the same up to float rounding (0.3 - 0.2 against 0.4 - 0.3)
    the t statistic is undefined: p is 0 for a nonzero shared difference, 1 for none.

    >>> paired_t_p([0.3 - 0.2, 0.4 - 0.3]), paired_t_p([0.0, 0.0])
    (0.0, 1.0)
    >>> paired_t_p([0.1, -0.1, 0.05]) == float(stats.ttest_1samp([0.1, -0.1, 0.05], 0).pvalue)
    True
    """
    d = np.asarray(diffs, dtype=np.float64)
    if np.ptp(d) <= 1e-9 * max(1.0, float(np.abs(d).max())):
        return 0.0 if abs(float(d.mean())) > 1e-12 else 1.0
    return float(stats.ttest_1samp(d, 0.0).pvalue)


def holm(ps: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values: calling every adjusted p < alpha a difference keeps
    the chance of any false call among the family at most alpha (Holm 1979).

    >>> [round(p, 9) for p in holm([0.01, 0.04, 0.03])]
    [0.03, 0.06, 0.06]
    """
    m = len(ps)
    order = sorted(range(m), key=lambda i: ps[i])
    out, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        out[i] = running
    return out


@dataclass(frozen=True)
class SpeakerGroups:
    """Which test examples belong together (one speaker's clips), for the bootstrap.

    Attributes:
        index: cluster number of each example [N] (0..C-1).
        names: the clusters' names (speakers), C of them.
    """

    index: tuple[int, ...]
    names: tuple[str, ...]

    @classmethod
    def of(cls, labels: list[str]) -> "SpeakerGroups | None":
        """Clusters from per-example speaker labels; None when any is unknown."""
        if not labels or any(not g for g in labels):
            return None
        names = tuple(sorted(set(labels)))
        pos = {n: i for i, n in enumerate(names)}
        return cls(tuple(pos[g] for g in labels), names)

    def to_dict(self) -> dict:
        return {"names": list(self.names), "index": list(self.index)}

    @classmethod
    def from_dict(cls, d: dict | None) -> "SpeakerGroups | None":
        return None if not d else cls(tuple(int(i) for i in d["index"]), tuple(str(n) for n in d["names"]))


def interval_unit(groups: SpeakerGroups | None) -> str:
    """What the test-set interval resamples, in words."""
    if groups is None:
        return "test examples (speakers unknown: assumes independent examples)"
    if len(groups.names) < 2:
        return "test examples of one speaker (assumes independent examples; says nothing about other speakers)"
    return (f"test speakers (cluster bootstrap over {len(groups.names)} speakers, never narrower than over "
            f"independent examples)")


@functools.lru_cache(maxsize=8)
def _resample_counts(n: int, seed: int) -> np.ndarray:
    """[BOOTSTRAP, n] how often each of n units (examples or speakers) is drawn in each
    resample. The draws depend only on (n, seed), so every interval of a report shares
    them: one matrix product per interval instead of a fresh gather (float32 holds the
    counts exactly)."""
    idx = np.random.default_rng(seed).integers(0, n, size=(BOOTSTRAP, n))
    counts = np.zeros((BOOTSTRAP, n), np.float32)
    np.add.at(counts, (np.arange(BOOTSTRAP)[:, None], idx), 1.0)
    return counts


def _resampled_means(x: np.ndarray, seed: int, groups: SpeakerGroups | None = None) -> np.ndarray:
    """The mean of `x` over examples in each bootstrap resample [BOOTSTRAP]: of examples, or
    of whole clusters (sum of the drawn clusters' scores over their number of examples).
    One cluster cannot be resampled: its examples are."""
    if groups is None or len(groups.names) < 2:
        return _resample_counts(len(x), seed) @ x.astype(np.float32) / len(x)
    if len(groups.index) != len(x):
        raise ValueError(f"{len(x)} per-example scores but speakers for {len(groups.index)} examples")
    index, c = np.asarray(groups.index), len(groups.names)
    sums = np.bincount(index, weights=x, minlength=c)
    sizes = np.bincount(index, minlength=c).astype(np.float64)
    counts = _resample_counts(c, seed).astype(np.float64)
    means = (counts @ sums) / (counts @ sizes)
    centre = float(x.mean())
    return centre + (means - centre) * math.sqrt(c / (c - 1))  # the spread of C resampled means is C-1/C short


def _resamplings(x: np.ndarray, seed: int, groups: SpeakerGroups | None) -> list[np.ndarray]:
    """The bootstrap distributions an interval is judged on: over examples, and over whole
    speakers too when they are known (see the module docstring)."""
    out = [_resampled_means(x, seed)]
    if groups is not None and len(groups.names) >= 2:
        out.append(_resampled_means(x, seed, groups))
    return out


def bootstrap_halfwidth(per_example: np.ndarray, seed: int = 0, level: float = 0.95,
                        groups: SpeakerGroups | None = None) -> float:
    """Half the width of the percentile bootstrap interval of the mean over examples; with
    `groups`, the wider of that and the cluster bootstrap over whole speakers.

    `per_example` [N] is a per-example score (e.g. correctness averaged over chips).
    A fixed seed makes the interval reproducible.
    """
    widths = []
    for means in _resamplings(np.asarray(per_example, dtype=np.float64), seed, groups):
        lo, hi = np.quantile(means, [0.5 - level / 2, 0.5 + level / 2])
        widths.append(float(hi - lo) / 2)
    return max(widths)


@dataclass(frozen=True)
class PairedDifference:
    """A - B on the same examples (and, when both have them, the same chip draws).

    Attributes:
        diff: mean difference of the seed-averaged metric.
        lo, hi: 95% paired bootstrap interval over examples.
        p_examples: two-sided bootstrap p-value over examples (at least 2 / (B + 1)).
        p_chips: paired t-test over the common draws (None with fewer than 2 common seeds).
        significant: the example interval excludes 0 and, when there is one, the chip test has p < 0.05.
    """

    diff: float
    lo: float
    hi: float
    p_examples: float
    p_chips: float | None

    @property
    def significant(self) -> bool:
        chips_ok = self.p_chips is None or self.p_chips < 0.05
        return (self.lo > 0 or self.hi < 0) and chips_ok


def paired_difference(a: np.ndarray, b: np.ndarray, chips_a: np.ndarray | None = None,
                      chips_b: np.ndarray | None = None, seed: int = 0,
                      groups: SpeakerGroups | None = None) -> PairedDifference:
    """Paired comparison of two models/modes.

    Args:
        a, b: per-example scores [N] on the same examples (seed-averaged).
        chips_a, chips_b: per-seed metric values [S] on common draws (same seeds), optional.
        groups: the examples' speakers: the bootstrap then resamples whole speakers as well.
    """
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    lo, hi, p = math.inf, -math.inf, 0.0
    for boot in _resamplings(d, seed, groups):  # the union of the intervals, the larger p
        b_lo, b_hi = np.quantile(boot, [0.025, 0.975])
        lo, hi = min(lo, float(b_lo)), max(hi, float(b_hi))
        # two-sided p from the bootstrap distribution of the mean difference, counted as
        # (k + 1) / (B + 1): B resamples cannot show a p below 1 / (B + 1), so never 0
        tail = min(int((boot <= 0).sum()), int((boot >= 0).sum()))
        p = max(p, min(1.0, 2 * (tail + 1) / (len(boot) + 1)))
    p_chips = None
    if chips_a is not None and chips_b is not None and len(chips_a) >= 2:
        p_chips = paired_t_p(np.asarray(chips_a, np.float64) - np.asarray(chips_b, np.float64))
    return PairedDifference(float(d.mean()), float(lo), float(hi), p, p_chips)
