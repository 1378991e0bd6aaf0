"""robust: hardware-robustness evaluation of spiking neural networks on speech."""

__version__ = "0.1.0"
