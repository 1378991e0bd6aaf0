"""Kaldi-compatible log-mel filterbank features, normalised and padded to T frames.

The pipeline follows the SNN speech baseline the paper cites (Bittar & Garner 2022,
idiap/sparch): 40 mel bands, 25 ms window, 10 ms hop, pre-emphasis 0.97, computed by
kaldi-native-fbank (an exact port of Kaldi's `compute-fbank-feats`). Dither is off so
that the same audio always gives the same features.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from basics.errors import BadInput


@dataclass(frozen=True)
class FeatureConfig:
    """How audio becomes a [T, D] feature matrix.

    Attributes:
        sample_rate: Hz; audio at another rate is resampled to it.
        num_bins: mel bands D.
        frame_length_ms: analysis window, milliseconds.
        frame_shift_ms: hop between frames, milliseconds.
        preemph: pre-emphasis coefficient.
        frames: T, the number of frames every utterance is padded or cropped to.
        normalize: per-utterance, per-band mean/variance normalisation (CMVN).
    """

    sample_rate: int = 16000
    num_bins: int = 40
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    preemph: float = 0.97
    frames: int = 100
    normalize: bool = True

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def log_mel(audio: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Kaldi log-mel filterbank of a mono float waveform in [-1, 1] at `cfg.sample_rate`.

    Returns:
        float32 array [frames, num_bins] (frames as Kaldi's snip_edges gives them).
    """
    import kaldi_native_fbank as knf

    if audio.ndim != 1:
        raise BadInput(f"expected mono audio, got shape {audio.shape}")
    if not np.all(np.isfinite(audio)):
        raise BadInput("audio contains NaN or inf samples")
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.samp_freq = float(cfg.sample_rate)
    opts.frame_opts.frame_length_ms = cfg.frame_length_ms
    opts.frame_opts.frame_shift_ms = cfg.frame_shift_ms
    opts.frame_opts.preemph_coeff = cfg.preemph
    opts.mel_opts.num_bins = cfg.num_bins
    fbank = knf.OnlineFbank(opts)
    # Kaldi works on the int16 scale; its energy floor assumes it.
    fbank.accept_waveform(float(cfg.sample_rate), (audio.astype(np.float32) * 32768.0).tolist())
    fbank.input_finished()
    n = fbank.num_frames_ready
    if n == 0:
        raise BadInput(f"audio too short for one {cfg.frame_length_ms} ms frame")
    return np.stack([np.asarray(fbank.get_frame(i), dtype=np.float32) for i in range(n)])


def fit_frames(feats: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Per-utterance CMVN over the real frames, then zero-pad or crop (centred) to T."""
    x = feats
    if cfg.normalize:
        x = feats.astype(np.float64)  # float32 leaves visible residue in near-constant bands
        x = (x - x.mean(0, keepdims=True)) / (x.std(0, keepdims=True) + 1e-5)
    t = cfg.frames
    if len(x) >= t:
        start = (len(x) - t) // 2
        return np.ascontiguousarray(x[start:start + t], dtype=np.float32)
    out = np.zeros((t, x.shape[1]), dtype=np.float32)
    out[: len(x)] = x
    return out


def featurize(audio: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Audio -> normalised [T, D] float32 features."""
    return fit_frames(log_mel(audio, cfg), cfg)


def cache_key(items: Sequence[str], cfg: FeatureConfig) -> str:
    """Hash of the inputs' identities (paths with sizes and mtimes) and the feature config."""
    h = hashlib.sha256()
    h.update(json.dumps(cfg.to_dict(), sort_keys=True).encode())
    for it in items:
        h.update(it.encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def default_cache_dir() -> Path:
    root = os.environ.get("ROBUST_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "robust")
    return Path(root)


def atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write an .npz next to its destination, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def cached_features(key: str, compute: Callable[[], np.ndarray],
                    cache_dir: Path | None = None) -> np.ndarray:
    """Load features stored under `key`, or compute and store them atomically."""
    path = (cache_dir or default_cache_dir()) / f"features-{key}.npz"
    if path.exists():
        try:
            with np.load(path) as z:
                return z["x"]
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is recomputed, never trusted
    x = compute()
    atomic_save_npz(path, x=x)
    return x
