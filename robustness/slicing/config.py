"""What a slice is: `SliceConfig` (every field part of the resume key) and the bounds on it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np


LINE = "line"  # the mode name of a `between` curve
# Bounds on what one slice may ask for: each is far past any published slice, and past them
# the work or the memory no longer fits a machine (the error says the bound).
MAX_SPAN, MAX_GRID, MAX_DIRECTIONS, MAX_SAMPLES, MAX_BATCHES, MAX_BATCH_SIZE = 1e3, 100_000, 1000, 1000, 1000, 65536


@dataclass(frozen=True)
class SliceConfig:
    """What `robust slice` computes (every field is part of the resume key).

    Attributes:
        models: checkpoints sliced along shared directions.
        between: two checkpoints: slice the straight line from the first to the second instead.
        dims: 1 (a line) or 2 (a plane spanned by two directions).
        direction: unit, filter, layer, hessian or posterior (see slice_directions).
        span: (start, stop) of the coordinate a [(-1, 1); (-0.5, 1.5) for between].
        points: points per axis.
        directions: independent directions (planes) per model.
        batches, batch_size: the fixed, seeded minibatches the loss is computed on.
        split: which split the batches come from.
        mc_samples: M for bma (posterior samples).
        sigmoid: when > 0, add mode `sigmoid`: the point/mean network with the Heaviside
            replaced by a sigmoid of the membrane at this temperature (a non-spiking control).
        bn: BN statistics of posterior samples, as `robust eval` names them: `mean` (default
            here: the stored statistics, as every deterministic curve uses, so that the BMA
            and point curves differ only by the posterior average) or `recalibrate`
            (re-estimated per sample at every point: eval's default, about 10x slower here).
        include_bn: also move BatchNorm scale/shift and the readout bias.
        modes: restrict to these modes (None: every mode of each model).
        seed: seeds directions, batches and posterior draws.
        data_dir: where a real dataset lives (None: the checkpoint's).
    """

    models: tuple[str, ...] = ()
    between: tuple[str, str] | None = None
    dims: int = 1
    direction: str = "filter"
    span: tuple[float, float] | None = None
    points: int = 41
    directions: int = 8
    batches: int = 4
    batch_size: int = 128
    split: str = "train"
    mc_samples: int = 10
    sigmoid: float = 0.0
    bn: str = "mean"
    include_bn: bool = False
    modes: tuple[str, ...] | None = None
    seed: int = 0
    data_dir: str | None = None

    @property
    def coords(self) -> list[float]:
        lo, hi = self.span or ((-0.5, 1.5) if self.between else (-1.0, 1.0))
        return np.linspace(lo, hi, self.points).tolist()

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["coords"] = self.coords
        return d
