"""What a run stores about each perturbation's levels, so that a summary or a report reads
the curve right without the perturbation's code: one record for the sweep that writes it and
the reports that read it back (stored as JSON in the run's config, under `curves`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping


@dataclass
class CurveMeta:
    """One perturbation's levels.

    Attributes:
        bits: the level is a bit width: more is milder, so severity runs from most bits down.
        axis: `linear` or `log`, the axis levels were given on (AUC and drop levels use it).
        clean_at_zero: level 0 is the clean network, so a linear curve starts there.
        monotone: harm is declared monotone in the level: drop levels interpolate between
            measured levels (else the first measured level past the drop is reported).
        level: what the level means, as the perturbation describes it.
        unit: the level's unit as axis labels show it.
        higher_is_better: the metrics where higher is better (the rest: lower).
        deterministic: no level draws anything: one network per level, no chips.
        effects: for hardware read-out models with many settings (crossbars): which effects
            were on and how, in words ("" where the spec text says it all).
    """

    bits: bool = False
    axis: str = "linear"
    clean_at_zero: bool = True
    monotone: bool = True
    level: str = ""
    unit: str = "level"
    higher_is_better: tuple[str, ...] = ("accuracy",)
    deterministic: bool = False
    effects: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["higher_is_better"] = list(self.higher_is_better)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CurveMeta":
        """As stored; keys a run made before them take their defaults (`monotone` then
        follows `bits`: bit widths were not declared monotone), unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw.setdefault("monotone", not kw.get("bits", False))
        if "higher_is_better" in kw:
            kw["higher_is_better"] = tuple(kw["higher_is_better"])
        return cls(**kw)
