"""One stored sweep cell as a record: what one (model, mode, perturbation, layer, level, chip)
scored. The store decodes its rows into these and every reader takes them by attribute."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass
class Cell:
    """A `cells` row (see `robustness.store.database` for what each field means).

    Metrics are floats; NaN where the perturbed network's outputs were not finite; None for
    a metric the cell's mode does not have (mutual information of a single network) or a
    record that does not carry it. The per-example blobs (packed correctness bits, float32
    NLL and confidence) are None for cells stored before them.
    """

    model: str
    mode: str
    perturbation: str
    level: float
    seed: int
    layer: str = ""
    run_id: int = 0
    model_hash: str = ""
    optimizer: str | None = None
    samples: int | None = None
    n: int = 0
    accuracy: float | None = None
    nll: float | None = None
    brier: float | None = None
    ece: float | None = None
    entropy: float | None = None
    expected_entropy: float | None = None
    mutual_information: float | None = None
    disagreement: float | None = None
    spike_rates: list[float] = field(default_factory=list)
    versions: dict[str, Any] = field(default_factory=dict)
    efficiency: dict[str, Any] | None = None
    time_s: float | None = None
    created: str | None = None
    example_correct: bytes | None = None
    example_nll: bytes | None = None
    example_confidence: bytes | None = None
    rowid: int | None = None

    def metric(self, name: str) -> float | None:
        """A metric by its column name (`accuracy`, `nll`, ...)."""
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Cell":
        return cls(**{k: v for k, v in d.items() if k in _FIELDS})


_FIELDS = {f.name for f in dataclasses.fields(Cell)}
