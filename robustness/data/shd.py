"""Spiking Heidelberg Digits and Spiking Speech Commands: spike trains binned into T frames
(no log-mel step).

Both come from Cramer et al. 2020 in one HDF5 layout: `spikes/times` (seconds, ragged),
`spikes/units` (0..699), `labels`, and optionally `extra/speaker` and `extra/keys` (the
class names). Each utterance becomes spike counts [T, 700 / pool] over [0, max_time).
SHD (`shd_train.h5`, `shd_test.h5`, 20 classes): validation is 10% of train per class.
SSC (`ssc_train.h5`, `ssc_valid.h5`, `ssc_test.h5`, 35 classes): the release's own
validation file. SSC utterances last up to 1 s, as Speech Commands clips do.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from basics.errors import BadInput
from robustness.data.dataset import DATASETS, Dataset, DatasetInfo, DatasetSpec, Split
from robustness.data.features import FeatureConfig
from robustness.data.folders import HD_CLASSES, stable_fraction, require_dir

CHANNELS = 700
MAX_TIME = 1.4  # seconds: SHD utterances end before this
SSC_MAX_TIME = 1.0  # seconds: Speech Commands clips are at most 1 s
DEFAULT_FRAMES = 100


def bin_spikes(times: np.ndarray, units: np.ndarray, frames: int, pool: int = 1,
               max_time: float = MAX_TIME) -> np.ndarray:
    """Counts [frames, 700 // pool] of spikes in equal time bins over [0, max_time)."""
    out = np.zeros((frames, CHANNELS // pool), dtype=np.float32)
    t = np.floor(np.asarray(times, dtype=np.float64) / max_time * frames).astype(np.int64)
    u = np.asarray(units, dtype=np.int64) // pool
    ok = (t >= 0) & (t < frames) & (u >= 0) & (u < out.shape[1])
    np.add.at(out, (t[ok], u[ok]), 1.0)
    return out


def _read(path: Path, frames: int, pool: int, max_time: float = MAX_TIME):
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise BadInput(f"{path}: not a readable HDF5 file ({str(e).splitlines()[0][:100]})") from None
    with f:
        for key in ("spikes/times", "spikes/units", "labels"):
            if key not in f:
                raise BadInput(f"{path}: missing dataset {key!r} (expected the SHD layout)")
        times, units, labels = f["spikes/times"], f["spikes/units"], np.asarray(f["labels"])
        if not (len(times) == len(units) == len(labels)):
            raise BadInput(f"{path}: spikes/times, spikes/units and labels differ in length")
        speakers = np.asarray(f["extra/speaker"]) if "extra/speaker" in f else np.full(len(labels), -1)
        x = np.stack([bin_spikes(times[i], units[i], frames, pool, max_time) for i in range(len(labels))]) \
            if len(labels) else np.zeros((0, frames, CHANNELS // pool), np.float32)
    return x, labels.astype(np.int64), [f"speaker-{int(s)}" for s in speakers]


# Speech Commands v0.02's 35 words in the release's label order (alphabetical).
SC35_CLASSES = ("backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward", "four", "go",
                "happy", "house", "learn", "left", "marvin", "nine", "no", "off", "on", "one", "right", "seven",
                "sheila", "six", "stop", "three", "tree", "two", "up", "visual", "wow", "yes", "zero")


def _mk(xa: np.ndarray, ya: np.ndarray, sa: list[str]) -> Split:
    return Split(torch.from_numpy(np.ascontiguousarray(xa)), torch.from_numpy(ya), list(sa))


def _load_release(spec: DatasetSpec, name: str, files: tuple[str, ...], classes: tuple[str, ...], pool: int,
                  max_time: float) -> Dataset:
    root = require_dir(spec)
    frames = spec.frames or DEFAULT_FRAMES
    parts = {}
    digest = hashlib.sha256()
    for split in files:
        p = root / f"{name}_{split}.h5"
        if not p.is_file():
            raise BadInput(f"{root}: missing {name}_{split}.h5")
        st = p.stat()
        digest.update(f"{p.name}|{st.st_size}|{st.st_mtime_ns}".encode())
        parts[split] = _read(p, frames, pool, max_time)
    for split, (_, y, _) in parts.items():
        if len(y) == 0 and split == "train":
            raise BadInput(f"{root}/{name}_train.h5: no utterances")
        if len(y) and (y.min() < 0 or y.max() >= len(classes)):
            raise BadInput(f"{root}/{name}_{split}.h5: labels outside 0..{len(classes) - 1}")
    x, y, spk = parts["train"]
    if "valid" in parts:
        splits = {"train": _mk(x, y, spk), "validation": _mk(*parts["valid"])}
    else:
        is_val = np.zeros(len(y), dtype=bool)
        for c in np.unique(y):
            idx = np.flatnonzero(y == c)
            ranked = sorted(idx, key=lambda i: stable_fraction(f"{name}-{i}", 0))
            is_val[ranked[: max(1, round(0.1 * len(idx)))] if len(idx) > 1 else []] = True
        splits = {"train": _mk(x[~is_val], y[~is_val], [s for s, v in zip(spk, is_val) if not v]),
                  "validation": _mk(x[is_val], y[is_val], [s for s, v in zip(spk, is_val) if v])}
    splits["test"] = _mk(*parts["test"])
    # Not log-mel: FeatureConfig records T and the channel count for the checkpoint.
    feats = FeatureConfig(sample_rate=0, num_bins=CHANNELS // pool, frames=frames, normalize=False)
    return Dataset(spec, list(classes), feats, splits, digest.hexdigest()[:20])


def load(spec: DatasetSpec, pool: int = 1, **_: object) -> Dataset:
    return _load_release(spec, "shd", ("train", "test"), tuple(HD_CLASSES), pool, MAX_TIME)


def load_ssc(spec: DatasetSpec, pool: int = 1, **_: object) -> Dataset:
    return _load_release(spec, "ssc", ("train", "valid", "test"), SC35_CLASSES, pool, SSC_MAX_TIME)


DATASETS.register("shd")(DatasetInfo(
    load, "Spiking Heidelberg Digits (700 input channels binned to T frames; needs h5py)",
    "DIR/shd_train.h5, DIR/shd_test.h5 (spikes/times, spikes/units, labels, extra/speaker)"))
DATASETS.register("ssc")(DatasetInfo(
    load_ssc, "Spiking Speech Commands (35 words; 700 input channels binned to T frames; needs h5py)",
    "DIR/ssc_train.h5, DIR/ssc_valid.h5, DIR/ssc_test.h5 (the SHD layout)"))
