"""What an evaluation is: its modes, and `EvalConfig`, the schema of `robust eval`'s options.

Loads no torch, so the command line builds its options from it at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass

from basics.modes import AVERAGING, BNMode, Mode  # noqa: F401 (the modes, re-exported)
from basics.schema import DATA_DIR_HELP, MAX_MC_SAMPLES, SEED_MAX, Field, fields, help_order, option


@dataclass(frozen=True)
class EvalConfig:
    """How predictions are made.

    Attributes:
        mc_samples: M posterior samples for BMA.
        bn: BN statistics for posterior samples: `recalibrate` (per sample) or `mean`.
        calib_batches, calib_batch_size: training batches used to recalibrate BN.
        seed: seeds the posterior draws and the calibration batches.
        split: which split to score.
        limit: score a class-stratified, seeded subset of N examples of the split.
        chips: deployment targets scored besides the float network (models/chip_profiles.py).
    """

    mc_samples: int = option(10, "Posterior samples for BMA (IVON).", number="int", low=1, high=MAX_MC_SAMPLES,
                             unit="networks per prediction")
    bn: str = option("recalibrate", "BN statistics of posterior samples: re-estimated per sample, or those of the "
                                    "mean.", choices=tuple(m.value for m in BNMode))
    calib_batches: int = 4
    calib_batch_size: int = 128
    seed: int = option(0, number="int", low=0, high=SEED_MAX, after="limit")
    split: str = option("test", choices=("test", "validation", "train"))
    limit: int | None = option(None, "Score a class-stratified, seeded subset of N examples (every class keeps its "
                                     "share).", number="int", low=1, unit="examples")
    chips: tuple[str, ...] = option((), "Also score each model deployed on a chip: a profile (xylo-audio, loihi2, "
                                        "dynap-se2) or fixed-point, with options, e.g. 'loihi2(state_bits=12)'; "
                                        "integer dynamics. Repeatable.", flag="--chip", kind="multiple",
                                    show_default=False)


@dataclass(frozen=True)
class EvalTarget:
    """What `robust eval` scores: the models, and where their data lives."""

    models: tuple[str, ...] = option((), "Checkpoint (.pt), a seed set (OUT.seeds.json) or a glob ('adam-seed*.pt'); "
                                         "repeatable.", flag="--model", kind="multiple", path=True, required=True,
                                     show_default=False)
    data_dir: str | None = option(None, DATA_DIR_HELP, path=True,
                                  after="seed")


def eval_fields() -> list[Field]:
    """Every option of `robust eval` in the order its help lists them."""
    return help_order(fields(EvalTarget, EvalConfig))
