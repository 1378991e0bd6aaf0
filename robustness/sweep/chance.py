"""Levels a sweep need not run: once every draw of a curve sits at chance, the harsher
levels above it are skipped and stored as skipped, with the reason, never as numbers.

"At chance" needs evidence, not the absence of it: a draw has collapsed when the upper
end of the one-sided 99% Clopper-Pearson interval of its accuracy lies within `MARGIN` of
the way from chance (always answering the most frequent test class) to the clean
accuracy. On a small test set the interval is wide and nothing is skipped. A level counts
only when every one of its draws has collapsed.

The decision is a function of the stored accuracies in severity order, so a sweep skips
the same levels whether its units ran here one by one (where the skipped work is saved)
or in parallel on Ray (where finished work above the cut is discarded for the marker).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import torch
from scipy.stats import beta

ALPHA = 0.01
MARGIN = 0.05  # of the distance from chance to clean accuracy


def chance_accuracy(y: torch.Tensor) -> float:
    """Accuracy of always answering the most frequent class of `y`."""
    return float(torch.bincount(y).max()) / len(y) if len(y) else 0.0


def collapse_threshold(chance: float, clean: float) -> float:
    """Accuracy below which a network counts as collapsed to chance."""
    return chance + MARGIN * max(0.0, clean - chance)


def at_chance(accuracy: float, n: int, chance: float, clean: float, alpha: float = ALPHA) -> bool:
    """True when the (1 - alpha) upper bound of `accuracy` on `n` examples is below the collapse threshold."""
    if accuracy != accuracy or n < 1:  # NaN: a non-finite network is not evidence of chance either way
        return False
    k = round(accuracy * n)
    upper = 1.0 if k >= n else float(beta.ppf(1 - alpha, k + 1, n - k))
    return upper <= collapse_threshold(chance, clean)


def severity_order(levels: Iterable[float], bits: bool) -> list[float]:
    """Levels from mildest to harshest (fewer bits is harsher)."""
    return sorted(levels, reverse=bits)


@dataclass
class CurveGate:
    """One curve's levels in severity order, committed in that order as their rows arrive."""

    levels: list[float]
    chance: float
    clean: float
    n: int
    enabled: bool = True
    results: dict[float, list[float] | None] = field(default_factory=dict)  # None: the unit failed
    next: int = 0  # index of the first level not yet committed
    dead_at: float | None = None  # the level whose draws were all at chance

    def dead(self) -> bool:
        return self.dead_at is not None

    def put(self, level: float, accuracies: list[float] | None) -> None:
        self.results[level] = accuracies

    def commit(self) -> list[tuple[float, str]]:
        """Walk the levels in order as far as results allow: (level, 'rows' | 'skip' | 'failed') pairs."""
        out = []
        while self.next < len(self.levels):
            level = self.levels[self.next]
            if self.dead():
                out.append((level, "skip"))
            elif level not in self.results:
                break
            elif self.results[level] is None:
                out.append((level, "failed"))
            else:
                accs = self.results[level]
                out.append((level, "rows"))
                if self.enabled and accs and all(at_chance(a, self.n, self.chance, self.clean) for a in accs):
                    self.dead_at = level
            self.next += 1
        return out

    def reason(self) -> str:
        return (f"every draw collapsed to chance at level {self.dead_at:g} (99% upper bound of accuracy <= "
                f"{collapse_threshold(self.chance, self.clean):.3f}: chance {self.chance:.3f} + {MARGIN:.0%} of "
                f"the way to clean {self.clean:.3f})")
