import os

import numpy as np
import pytest

from basics.errors import BadInput
from robustness.data.features import FeatureConfig, cache_key, cached_features, featurize, fit_frames, log_mel


def _tone(seconds=0.5, f=440.0, sr=16000):
    t = np.arange(int(seconds * sr)) / sr
    return 0.3 * np.sin(2 * np.pi * f * t)


def test_log_mel_frames_and_bands():
    cfg = FeatureConfig()
    f = log_mel(_tone(0.5), cfg)
    # Kaldi snip_edges: 1 + (8000 - 400) // 160 = 48 frames
    assert f.shape == (48, 40)
    # energy concentrates in the band around 440 Hz
    assert f.mean(0).argmax() < 12


def test_normalise_pad_and_crop():
    cfg = FeatureConfig(frames=60)
    x = featurize(_tone(0.5), cfg)
    assert x.shape == (60, 40)
    assert np.allclose(x[:48].mean(0), 0, atol=1e-4) and np.all(x[48:] == 0)
    long = fit_frames(np.random.default_rng(0).normal(size=(100, 40)).astype(np.float32), FeatureConfig(frames=30))
    assert long.shape == (30, 40)


def test_bad_audio_is_rejected():
    with pytest.raises(BadInput, match="NaN"):
        log_mel(np.array([0.0, np.nan] * 1000), FeatureConfig())
    with pytest.raises(BadInput, match="too short"):
        log_mel(np.zeros(100), FeatureConfig())
    with pytest.raises(BadInput, match="mono"):
        log_mel(np.zeros((2, 1000)), FeatureConfig())


def test_cache_round_trip_and_key(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return np.ones((2, 3), np.float32)

    key = cache_key(["a.wav:10:5"], FeatureConfig())
    assert key != cache_key(["a.wav:10:5"], FeatureConfig(frames=50))
    assert key != cache_key(["a.wav:11:5"], FeatureConfig())
    a = cached_features(key, compute, tmp_path)
    b = cached_features(key, compute, tmp_path)
    assert np.array_equal(a, b) and len(calls) == 1
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []
    # a damaged entry is recomputed, not trusted
    (tmp_path / f"features-{key}.npz").write_bytes(b"garbage")
    cached_features(key, compute, tmp_path)
    assert len(calls) == 2
