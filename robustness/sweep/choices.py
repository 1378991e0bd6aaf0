"""Closed choices of the sweep's options, one definition for its flags (click.Choice) and its
config file, so both accept the same values. A leaf module: the command line imports it at
start-up without loading torch (tests hold it equal to the Enums it mirrors)."""

SWEEP_CHOICES: dict[str, tuple[str, ...]] = {
    "split": ("test", "validation"),
    "bn": ("recalibrate", "mean"),          # robustness.evaluate.BNMode
    "scale": ("max", "std", "abs", "sigma"),  # perturbations.base.Scale
    "executor": ("local", "ray"),
}
