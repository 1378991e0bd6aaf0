"""The names of what was evaluated, as typed on the command line and as stored: one
definition for the engine that writes them and the reports that read them back."""

from __future__ import annotations

from enum import Enum


class Mode(str, Enum):
    """How a sweep's cell made its predictions."""

    POINT = "point"        # a deterministic (Adam) model; member 0 of an ensemble checkpoint
    MEAN = "mean"          # IVON: deploy the posterior mean
    BMA = "bma"            # IVON: Bayesian model average over M posterior samples
    CHIPS = "chips"        # softmax average of M perturbed copies of one network (point or mean)
    ENSEMBLE = "ensemble"  # softmax average of the M members of a deep-ensemble checkpoint


# Modes that average M networks: their compute is M networks per prediction.
AVERAGING = (Mode.BMA, Mode.CHIPS, Mode.ENSEMBLE)


class BNMode(str, Enum):
    """BatchNorm statistics of a posterior sample: re-estimated on training data, or the mean's."""

    RECALIBRATE = "recalibrate"
    MEAN = "mean"


class CurveMode(str, Enum):
    """What a loss slice's curve moves: the networks of an evaluation mode, the non-spiking
    control, or the straight line between two models."""

    POINT = Mode.POINT.value
    MEAN = Mode.MEAN.value
    BMA = Mode.BMA.value
    ENSEMBLE = Mode.ENSEMBLE.value
    SIGMOID = "sigmoid"  # the point/mean network with a sigmoid of the membrane instead of spikes
    LINE = "line"        # `--between A B`: the interpolation from one model to the other
