"""What a slice is: `SliceConfig` (every field part of the resume key) and the bounds on it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from basics.errors import BadInput
from basics.schema import DATA_DIR_HELP, MAX_MC_SAMPLES, SEED_MAX, option


def parse_span(text: str) -> tuple[float, float]:
    """`START:STOP` of the slice coordinate."""
    try:
        lo, hi = (float(v) for v in str(text).split(":"))
    except ValueError:
        raise BadInput(f"--span must be START:STOP, e.g. -1:1, got {text!r}") from None
    return lo, hi

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
        direction: unit, filter, layer, hessian or posterior (see robustness.slicing.directions).
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
        chip: deploy every grid point on this chip (models/chip_profiles.py) before scoring it.
        modes: restrict to these modes (None: every mode of each model).
        seed: seeds directions, batches and posterior draws.
        data_dir: where a real dataset lives (None: the checkpoint's).
    """

    models: tuple[str, ...] = option((), "Checkpoint, seed set (OUT.seeds.json) or glob; repeatable (shared "
                                         "directions).", flag="--model", kind="multiple", path=True)
    between: tuple[str, str] | None = option(None, "Slice the straight line from checkpoint A (a=0) to B (a=1) "
                                                   "instead.", nargs=2, path=True)
    dims: int = option(1, "1: a line; 2: a plane.", number="int")
    direction: str = option("filter", "unit | filter (Li et al. 2018) | layer | hessian (top eigenvectors) | "
                                      "posterior (IVON sigma*eps).")
    span: tuple[float, float] | None = option(None, "START:STOP of the coordinate a [-1:1; -0.5:1.5 with "
                                                    "--between].", parse=parse_span)
    points: int = option(41, "Points per axis.", number="int")
    directions: int = option(8, "Directions (planes) per model.", number="int", low=1)
    batches: int = option(4, "Fixed, seeded minibatches the loss is on.", number="int", low=1)
    batch_size: int = option(128, number="int", low=1, unit="examples")
    split: str = option("train", choices=("train", "validation", "test"))
    mc_samples: int = option(10, "M posterior samples for bma.", number="int", low=1, high=MAX_MC_SAMPLES)
    sigmoid: float = option(0.0, "Add mode `sigmoid`: the network with sigmoid((v - v_th) / T) instead of spikes, "
                                 "at temperature T.", flag="--sigmoid-control", number="float", low=0.0,
                            show_default=False, after="modes")
    bn: str = option("mean", "BMA: stored BN statistics (as the other curves) or re-estimated per sample and point "
                             "(slow).", choices=("mean", "recalibrate"))
    include_bn: bool = option(False, "Also move BatchNorm scale/shift and the readout bias.", kind="flag")
    chip: str = option("", "Score every grid point deployed on a chip (profile or fixed-point, as sweep --chip): "
                           "the chip programmed with the moved weights, integer dynamics.", show_default=False,
                       after="include_bn")
    modes: tuple[str, ...] | None = option(None, "Restrict to modes, e.g. mean,bma [every mode of each model].",
                                           kind="names", example="mean,bma")
    seed: int = option(0, "Seeds directions, batches, posterior draws.", number="int", low=0, high=SEED_MAX)
    data_dir: str | None = option(None, DATA_DIR_HELP, path=True)

    @property
    def coords(self) -> list[float]:
        lo, hi = self.span or ((-0.5, 1.5) if self.between else (-1.0, 1.0))
        return np.linspace(lo, hi, self.points).tolist()

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["coords"] = self.coords
        return d
