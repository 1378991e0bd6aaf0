"""The built-in `tts-digits` corpus: features shipped with the package.

Regenerated bit-for-bit by `python -m robustness.data.make_tts_digits` (needs espeak-ng).
Features are stored as uint8 codes of CMVN log-mel values clipped to +-4.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from basics.errors import BadInput
from robustness.data.dataset import DATASETS, SPLITS, Dataset, DatasetInfo, DatasetSpec, Split
from robustness.data.features import FeatureConfig

CORPUS = Path(__file__).parent / "builtin" / "tts_digits.npz"


@lru_cache(maxsize=2)
def _read(path: str) -> tuple[dict, dict[str, np.ndarray], str]:
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:20]
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop("meta").tobytes().decode())
    return meta, arrays, digest


def load(spec: DatasetSpec, **_: object) -> Dataset:
    path = Path(spec.data_dir) / "tts_digits.npz" if spec.data_dir else CORPUS
    if not path.is_file():
        raise BadInput(f"built-in corpus not found at {path}")
    meta, a, digest = _read(str(path))
    r = meta["quant_range"]
    x = a["x"].astype(np.float32) * (2 * r / 255.0) - r
    feats = FeatureConfig.from_dict(meta["features"])
    if spec.frames is not None and spec.frames != feats.frames:
        t = spec.frames
        x = x[:, :t] if t < x.shape[1] else np.pad(x, ((0, 0), (0, t - x.shape[1]), (0, 0)))
        feats = FeatureConfig.from_dict({**feats.to_dict(), "frames": t})
    voices = meta["voices"]
    splits = {}
    for code, name in enumerate(SPLITS):
        idx = np.flatnonzero(a["split"] == code)
        splits[name] = Split(torch.from_numpy(np.ascontiguousarray(x[idx])),
                             torch.from_numpy(a["y"][idx].astype(np.int64)),
                             [voices[v] for v in a["voice"][idx]])
    return Dataset(spec, meta["classes"], feats, splits, digest)


DATASETS.register("tts-digits")(DatasetInfo(
    load=load,
    description="built-in: espeak-ng spoken digits 0-9, English + German (20 classes), "
                "16 voices (3 test-only, 2 validation-only), noisy/reverberant",
    layout="ships with the package (no --data-dir needed)",
))
