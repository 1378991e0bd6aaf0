"""Datasets: a registry of loaders that all return log-mel features [N, T, D] per split."""

from robustness.data.dataset import Dataset, DatasetSpec, Split, DATASETS, load_dataset
from robustness.data import tts_digits as _tts_digits  # noqa: F401  (registers the loaders)
from robustness.data import folders as _folders  # noqa: F401
from robustness.data import shd as _shd  # noqa: F401

__all__ = ["Dataset", "DatasetSpec", "Split", "DATASETS", "load_dataset"]
