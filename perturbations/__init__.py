"""Hardware perturbation models: pure functions registered by name (see `perturbations.base`).

Importing the package registers every model, so `PERTURBATIONS` is complete whichever
module a user imports first.
"""

from perturbations import adversarial, crossbar, faults, mismatch, noise, pcm, quantize  # noqa: F401  (register)
from perturbations.base import PERTURBATIONS, Context, Perturbation, PerturbationError, Scale

__all__ = ["PERTURBATIONS", "Context", "Perturbation", "PerturbationError", "Scale"]
