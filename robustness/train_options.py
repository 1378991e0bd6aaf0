"""What `robust train` is asked for: `TrainRequest`, the schema of its options (flag, type,
bounds, default, help per field), and where the checkpoints go (`TrainTarget`).

Loads no torch, so the command line builds its options from it at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass

from basics.errors import BadInput
from basics.schema import SEED_MAX, Field, fields, help_order, option


def parse_widths(text: str) -> tuple[int, ...]:
    """Hidden layer widths as typed (`256,256`), or already a sequence of them."""
    if isinstance(text, (tuple, list)):
        return tuple(int(h) for h in text)
    try:
        return tuple(int(h) for h in str(text).split(","))
    except ValueError:
        raise BadInput(f"--hidden {text!r}: expected comma-separated integers") from None


@dataclass(frozen=True)
class TrainRequest:
    """What `robust train` was asked for; None means the optimizer preset's value.

    Attributes (beyond the optimiser's, see `models.train.TrainConfig`):
        ensemble: M > 1 trains a deep ensemble: member i exactly as `--seed seed+i` would.
        train_perturbation: hardware-aware training: a perturbation spec with its level
            (e.g. `gaussian:0.05`), drawn afresh at every step.
    """

    optimizer: str = option("adam", "Adam (deterministic) or IVON (variational, Bayesian).", choices=("adam", "ivon"))
    dataset: str = option("tts-digits", "Dataset name (see `robust data list`).")
    data_dir: str | None = option(None, "Local folder of --dataset (a manifest: the CSV or its folder; the built-in "
                                        "corpus needs none).", path=True)
    speaker_pattern: str | None = option(None, "Regex on file names whose group 'speaker' (or first group) is the "
                                               "speaker id (user folders).", after="skip_bad")
    epochs: int | None = option(None, "Epochs [30].", number="int", low=1)
    seed: int = option(0, number="int", low=0, high=SEED_MAX)
    lr: float | None = option(None, "Learning rate [adam 1e-2, ivon 0.3].", number="float", low=0.0, low_open=True)
    batch_size: int | None = option(None, "Batch size [adam 128, ivon 16].", number="int", low=1, unit="examples")
    weight_decay: float | None = option(None, "Weight decay [adam 0, ivon 1e-4].", number="float", low=0.0)
    hess_init: float | None = option(None, "IVON initial Hessian: the initial posterior width [0.1].",
                                     number="float", low=0.0, low_open=True)
    beta2: float | None = option(None, "IVON Hessian EMA rate; its horizon 1/(1-beta2) steps decides whether the "
                                       "posterior adapts [0.99999].", number="float", low=0.0, high=1.0,
                                 low_open=True, high_open=True)
    ess: float | None = option(None, "IVON effective sample size [number of training examples].", number="float",
                               low=0.0, low_open=True)
    hidden: tuple[int, ...] = option((256, 256), "Hidden layer widths.", parse=parse_widths, text_default="256,256",
                                     after="train_perturbation")
    neuron: str = option("lif", "Neuron type of the hidden layers (sparch's names): lif (the paper's), adlif "
                                "(adaptive), rlif (recurrent), radlif (both).",
                         choices=("lif", "adlif", "rlif", "radlif"), after="hidden")
    frames: int | None = option(None, "Frames T per utterance [dataset default].", number="int", low=1)
    limit_train: int | None = option(None, "Use only the first N training examples.", number="int", low=1)
    skip_bad: bool = option(False, "Skip unusable audio files instead of failing.", kind="flag")
    ensemble: int = option(1, "Adam: train a deep ensemble of M members (seeds SEED..SEED+M-1) into one checkpoint.",
                           number="int", low=1, high=1000, after="ess")
    train_perturbation: str | None = option(None, "Hardware-aware training: a fresh draw of this spec at every "
                                                  "step, e.g. gaussian:0.05, mismatch:0.1, quantize:4 "
                                                  "(straight-through gradients).", after="ensemble")


@dataclass(frozen=True)
class TrainTarget:
    """Where `robust train` writes: one checkpoint, or one per seed of `seeds`."""

    seeds: str | None = option(None, "Train one checkpoint per seed (0:4 = seeds 0 to 4, or 0,3,7): OUT-seedS.pt "
                                     "each, exactly what --seed S writes, and the manifest OUT.seeds.json for "
                                     "--model; a rerun trains only missing seeds.", after="seed")
    out: str | None = option(None, "Checkpoint file to write (.pt).", path=True, required=True,
                             after="speaker_pattern")


def train_fields() -> list[Field]:
    """Every option of `robust train` (but the shared runtime ones) in the order its help lists them."""
    return help_order(fields(TrainRequest, TrainTarget))
