"""Training seeds as the outer level of replication: training seed > chip > test example.

A seed set is every model of a store trained the same way but for the seed (its training
configuration, architecture and dataset agree). Per level, each seed contributes the mean
over its chips; the seed-level value is the mean of those, with a t-interval over the
seeds' means (not a hierarchical bootstrap: with 3-10 seeds the t-interval is the honest,
wider one). The chip and example intervals stay what they are inside one seed; here they
are averaged over the seeds to show their size beside the seed interval.

Two sets are compared paired by seed index when the same seed means the same network at
initialisation (same architecture, dataset, training-set size and ensemble size: `SpikingNet`
draws its weights from the seed), with a paired t-test over the common seeds; otherwise with Welch's
unpaired t-test. Modes of one set (BMA against the posterior mean) are always paired.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np
from scipy import stats

from basics.stats import holm, paired_t_p, t_interval

MIN_SEEDS = 3  # the verdict uses the seed level from this many seeds on
ALPHA = 0.05
_NOT_METHOD = ("seed", "kernel")  # what may differ between replicates of one method


@dataclass
class SeedSet:
    name: str
    key: str
    optimizer: str
    init_key: str  # what decides the initial network besides the seed
    members: dict[int, str] = field(default_factory=dict)  # seed -> model path

    @property
    def seeds(self) -> list[int]:
        return sorted(self.members)


def _method_key(m: Mapping) -> str:
    tc = {k: v for k, v in (m.get("train_config") or {}).items() if k not in _NOT_METHOD}
    key = {"train": tc, "hidden": m.get("hidden"), "neuron": m.get("neuron") or "lif", "dataset": m.get("dataset")}
    if m.get("chip"):  # the same training deployed on a chip is another method than in float
        key["chip"] = m["chip"]
    return json.dumps(key, sort_keys=True, default=str)


def _set_name(labels: list[str], optimizer: str) -> str:
    stems = [os.path.splitext(x)[0] for x in labels]
    prefix = os.path.commonprefix(stems)
    prefix = re.sub(r"[-_]?(seed)?[-_]?$", "", prefix)
    return prefix or optimizer


def seed_sets(models: Iterable[Mapping], labels: Mapping[str, str]) -> list[SeedSet]:
    """The store's models grouped into seed sets (sets of one model included), in order of
    first appearance."""
    by_key: dict[str, SeedSet] = {}
    for m in models:
        tc = m.get("train_config") or {}
        if "seed" not in tc:
            continue  # imported or foreign: no training seed to replicate over
        key = _method_key(m)
        # An ensemble starts as M networks, so it pairs only with ensembles of its size.
        s = by_key.setdefault(key, SeedSet("", key, str(m.get("optimizer")), json.dumps(
            [m.get("hidden"), m.get("neuron") or "lif", m.get("dataset"), tc.get("n_train"), tc.get("ensemble") or 1],
            default=str)))
        s.members.setdefault(int(tc["seed"]), m["path"])
    for s in by_key.values():
        shown = [labels.get(p, os.path.basename(p)) for p in s.members.values()]
        s.name = _set_name(shown, s.optimizer) if len(shown) > 1 else shown[0]
    names = [s.name for s in by_key.values()]
    for s in by_key.values():  # two methods whose files share a prefix keep distinct names
        if names.count(s.name) > 1:
            s.name = f"{s.name} ({s.optimizer}, seeds {','.join(map(str, s.seeds))})"
    return list(by_key.values())


@dataclass
class SeedStat:
    """A seed-level value: the mean over seeds of each seed's value, its 95% t-interval."""

    mean: float
    half: float | None
    values: dict[int, float]

    @property
    def n(self) -> int:
        return len(self.values)


def seed_stat(values: Mapping[int, float]) -> SeedStat:
    v = {s: float(x) for s, x in values.items() if x is not None and math.isfinite(float(x))}
    if not v:
        return SeedStat(math.nan, None, {})
    mean, half = t_interval(list(v.values()))
    return SeedStat(mean, half, v)


@dataclass
class Comparison:
    diff: float  # a - b, mean over seeds (paired) or difference of means (unpaired)
    lo: float
    hi: float
    p: float
    test: str  # "paired t over N seeds" or "Welch t, N vs M seeds"
    n: int


def compare(a: Mapping[int, float], b: Mapping[int, float], paired: bool) -> Comparison | None:
    """a - b over training seeds; None with fewer than 2 seeds on a side."""
    common = sorted(set(a) & set(b))
    if paired and len(common) >= 2:
        d = np.array([a[s] - b[s] for s in common], np.float64)
        mean, half = t_interval(d)
        half = half if half is not None and math.isfinite(half) else 0.0
        return Comparison(float(mean), float(mean - half), float(mean + half), paired_t_p(d),
                          f"paired t over {len(common)} seeds", len(common))
    xa, xb = np.array(list(a.values()), np.float64), np.array(list(b.values()), np.float64)
    if len(xa) < 2 or len(xb) < 2:
        return None
    r = stats.ttest_ind(xa, xb, equal_var=False)
    diff = float(xa.mean() - xb.mean())
    va, vb = xa.var(ddof=1) / len(xa), xb.var(ddof=1) / len(xb)
    se = math.sqrt(va + vb)
    dof = (va + vb) ** 2 / max(va ** 2 / (len(xa) - 1) + vb ** 2 / (len(xb) - 1), 1e-300)
    half = float(stats.t.ppf(0.975, dof) * se) if se > 0 else 0.0
    p = float(r.pvalue) if math.isfinite(r.pvalue) else (0.0 if diff != 0 else 1.0)
    return Comparison(diff, diff - half, diff + half, p, f"Welch t, {len(xa)} vs {len(xb)} seeds", min(len(xa), len(xb)))


def pairable(a: SeedSet, b: SeedSet) -> bool:
    """Same seed, same initial network: the two methods can be paired by seed index."""
    return a.init_key == b.init_key


@dataclass
class Hypothesis:
    claim: str
    metric: str
    a: str  # "set / mode"
    b: str
    better: str  # "lower" or "higher"
    cmp: Comparison | None
    compute: str
    p_holm: float | None = None

    @property
    def status(self) -> str:
        if self.cmp is None or self.p_holm is None:
            return "not tested"
        good = self.cmp.diff < 0 if self.better == "lower" else self.cmp.diff > 0
        if self.p_holm < ALPHA:
            return "held" if good else "not held (the opposite is significant)"
        return "inside the noise"

    def to_dict(self) -> dict:
        return {"claim": self.claim, "metric": self.metric, "a": self.a, "b": self.b, "better": self.better,
                "compute": self.compute, "status": self.status, "p_holm": self.p_holm,
                "comparison": None if self.cmp is None else vars(self.cmp)}


def adjust(hyps: list[Hypothesis]) -> list[Hypothesis]:
    """Holm over every tested claim, so that the family's chance of a false 'held' stays below 5%."""
    tested = [h for h in hyps if h.cmp is not None]
    for h, p in zip(tested, holm([h.cmp.p for h in tested])):
        h.p_holm = p
    return hyps
