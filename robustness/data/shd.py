"""Spiking Heidelberg Digits: spike trains binned into T frames (no log-mel step).

Files `shd_train.h5` and `shd_test.h5` (Cramer et al. 2020) with `spikes/times` (seconds,
ragged), `spikes/units` (0..699), `labels`, and `extra/speaker`. Each utterance becomes
spike counts [T, 700 / pool] over [0, max_time]; validation is 10% of train per class.
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


def _read(path: Path, frames: int, pool: int):
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
        x = np.stack([bin_spikes(times[i], units[i], frames, pool) for i in range(len(labels))]) \
            if len(labels) else np.zeros((0, frames, CHANNELS // pool), np.float32)
    return x, labels.astype(np.int64), [f"speaker-{int(s)}" for s in speakers]


def load(spec: DatasetSpec, pool: int = 1, **_: object) -> Dataset:
    root = require_dir(spec)
    frames = spec.frames or DEFAULT_FRAMES
    parts = {}
    digest = hashlib.sha256()
    for split in ("train", "test"):
        p = root / f"shd_{split}.h5"
        if not p.is_file():
            raise BadInput(f"{root}: missing shd_{split}.h5")
        st = p.stat()
        digest.update(f"{p.name}|{st.st_size}|{st.st_mtime_ns}".encode())
        parts[split] = _read(p, frames, pool)
    x, y, spk = parts["train"]
    if len(y) == 0:
        raise BadInput(f"{root}/shd_train.h5: no utterances")
    if y.min() < 0 or y.max() >= len(HD_CLASSES):
        raise BadInput(f"{root}/shd_train.h5: labels outside 0..{len(HD_CLASSES) - 1}")
    is_val = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        ranked = sorted(idx, key=lambda i: stable_fraction(f"shd-{i}", 0))
        is_val[ranked[: max(1, round(0.1 * len(idx)))] if len(idx) > 1 else []] = True
    xt, yt, st_ = parts["test"]

    def mk(xa, ya, sa):
        return Split(torch.from_numpy(np.ascontiguousarray(xa)), torch.from_numpy(ya), list(sa))

    splits = {
        "train": mk(x[~is_val], y[~is_val], [s for s, v in zip(spk, is_val) if not v]),
        "validation": mk(x[is_val], y[is_val], [s for s, v in zip(spk, is_val) if v]),
        "test": mk(xt, yt, st_),
    }
    # Not log-mel: FeatureConfig records T and the channel count for the checkpoint.
    feats = FeatureConfig(sample_rate=0, num_bins=CHANNELS // pool, frames=frames, normalize=False)
    return Dataset(spec, list(HD_CLASSES), feats, splits, digest.hexdigest()[:20])


DATASETS.register("shd")(DatasetInfo(
    load, "Spiking Heidelberg Digits (700 input channels binned to T frames; needs h5py)",
    "DIR/shd_train.h5, DIR/shd_test.h5 (spikes/times, spikes/units, labels, extra/speaker)"))
