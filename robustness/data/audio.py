"""Audio files -> cached feature tensors, in parallel, with bad files named or skipped."""

from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from basics.errors import BadInput, first_line
from basics.progress import progress as progress_bar
from robustness.data.features import FeatureConfig, atomic_save_npz, default_cache_dir, featurize

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac")
MAX_AMPLITUDE = 1e6  # 120 dB above full scale: beyond it a float file is corrupt, and Kaldi's power spectrum overflows


@dataclass(frozen=True)
class Item:
    """One utterance: where it is, its class name, split and speaker (when known)."""

    path: str
    label: str
    split: str
    speaker: str = ""


def read_audio(path: str, sample_rate: int) -> np.ndarray:
    """Mono float64 samples at `sample_rate` (stereo is averaged, other rates resampled).

    Raises BadInput naming the file when it cannot be read, is empty, or holds NaN/inf.
    """
    import soundfile as sf
    from scipy.signal import resample_poly

    try:
        audio, sr = sf.read(path, dtype="float64", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError, TypeError, ...
        raise BadInput(f"{path}: unreadable audio ({str(e).strip().splitlines()[0][:120]})") from None
    if audio.shape[0] == 0:
        raise BadInput(f"{path}: zero-length audio")
    if not np.all(np.isfinite(audio)):
        raise BadInput(f"{path}: audio contains NaN or inf samples")
    peak = float(np.abs(audio).max())
    if peak > MAX_AMPLITUDE:  # float files can hold anything; the filterbank's energies overflow past this
        raise BadInput(f"{path}: samples reach {peak:.3g}, not a waveform in [-1, 1] (at most {MAX_AMPLITUDE:g} is "
                       f"read; a corrupt or mis-scaled float file?)")
    audio = audio.mean(1)
    if sr != sample_rate:
        g = np.gcd(int(sr), int(sample_rate))
        audio = resample_poly(audio, sample_rate // g, int(sr) // g)
    return audio


def _featurize_one(args: tuple[str, FeatureConfig]) -> tuple[np.ndarray | None, float, str | None]:
    path, cfg = args
    try:
        audio = read_audio(path, cfg.sample_rate)
        try:
            feats = featurize(audio, cfg)
        except BadInput:
            raise
        except Exception as e:  # the C++ filterbank raises plain RuntimeErrors ("mel energy is nan")
            raise BadInput(f"{path}: no features ({first_line(e)[:120]})") from None
        if not np.all(np.isfinite(feats)):
            raise BadInput(f"{path}: its features are not finite")
        return feats, len(audio) / cfg.sample_rate, None
    except BadInput as e:
        msg = str(e)
        return None, 0.0, msg if msg.startswith(path) else f"{path}: {msg}"


def file_identity(items: Sequence[Item]) -> list[str]:
    """Path, size, mtime, label and split of every item: what invalidates the cache."""
    out = []
    for it in items:
        try:
            st = os.stat(it.path)
        except OSError:
            raise BadInput(f"{it.path}: listed but no such file") from None
        out.append(f"{it.path}|{st.st_size}|{st.st_mtime_ns}|{it.label}|{it.split}")
    return out


def featurize_items(items: Sequence[Item], cfg: FeatureConfig, *, skip_bad: bool = False,
                    workers: int | None = None, cache_dir: Path | None = None,
                    progress: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], str]:
    """Features [N_ok, T, D] of the items, cached by a hash of their identities and `cfg`.

    Returns the features, the indices of the items kept, their durations in seconds, the
    messages for skipped files, and the cache key. A bad file raises BadInput unless `skip_bad`.
    """
    if not items:
        raise BadInput("dataset is empty: no audio files found")
    ident = file_identity(items)
    h = hashlib.sha256(repr(sorted(cfg.to_dict().items())).encode())
    for s in ident:
        h.update(s.encode() + b"\0")
    key = h.hexdigest()[:20]
    path = (cache_dir or default_cache_dir()) / f"features-{key}.npz"
    if path.exists():
        try:
            with np.load(path) as z:
                bad = [str(b) for b in z["bad"]]
                if bad and not skip_bad:
                    raise BadInput(f"{bad[0]} (use --skip-bad to skip {len(bad)} unusable file(s))")
                return z["x"], z["keep"], z["seconds"], bad, key
        except (OSError, ValueError, KeyError):
            pass  # damaged cache: recompute
    workers = workers or min(os.cpu_count() or 1, 8)
    jobs = [(it.path, cfg) for it in items]
    feats: list[np.ndarray | None] = []
    seconds: list[float] = []
    errors: list[str | None] = []
    if workers > 1 and len(jobs) > 64:
        with ProcessPoolExecutor(workers) as ex:
            for f, sec, e in progress_bar(ex.map(_featurize_one, jobs, chunksize=64), total=len(jobs),
                                          desc="features", unit="file", enabled=progress):
                feats.append(f)
                seconds.append(sec)
                errors.append(e)
    else:
        for job in progress_bar(jobs, desc="features", unit="file", enabled=progress):
            f, sec, e = _featurize_one(job)
            feats.append(f)
            seconds.append(sec)
            errors.append(e)
    bad = [e for e in errors if e is not None]
    if bad and not skip_bad:
        raise BadInput(f"{bad[0]} (use --skip-bad to skip {len(bad)} unusable file(s))")
    keep = np.array([i for i, f in enumerate(feats) if f is not None], dtype=np.int64)
    if len(keep) == 0:
        raise BadInput("dataset is empty: every audio file was unusable")
    x = np.stack([feats[i] for i in keep]).astype(np.float32)
    secs = np.array([seconds[i] for i in keep], dtype=np.float64)
    atomic_save_npz(path, x=x, keep=keep, seconds=secs, bad=np.array(bad, dtype=str))
    if bad:
        log.warning("skipped %d unusable file(s), e.g. %s", len(bad), bad[0])
    return x, keep, secs, bad, key
