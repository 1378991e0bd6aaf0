"""Regenerate the built-in `tts-digits` corpus bit-for-bit from a seed.

Spoken digits 0-9 in English and German (20 classes, like Heidelberg Digits), synthesised
with espeak-ng voice variants, then degraded so that the task is informative (a corpus
where every model scores 100% shows no degradation). The augmentation chain and its
ranges were tuned so that clean synthesis, which alone is too easy (99.1% test accuracy),
leaves room to degrade: speed jitter by resampling,
exponential-decay reverb, random placement, babble of other clips, white/pink noise at random SNR, a random
band-pass, and gain. Voices m3, f4 and klatt2 appear only in the test split, m6 and f2 only
in validation.

Needs Debian's espeak-ng (only to regenerate; the result ships with the package):
    python -m robustness.data.make_tts_digits --out robustness/data/builtin/tts_digits.npz
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

from robustness.data.features import FeatureConfig, featurize

WORDS = {
    "en": ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"],
    "de": ["null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"],
}
TRAIN_VOICES = ["m1", "m2", "m4", "m5", "m7", "f1", "f3", "f5", "klatt", "klatt3", "croak"]
VALIDATION_VOICES = ["m6", "f2"]
TEST_VOICES = ["m3", "f4", "klatt2"]
CLIPS_PER_VOICE_WORD = 9
CLIP_SECONDS = 1.0
QUANT_RANGE = 4.0  # features are clipped to +-4 and stored as uint8
FORMAT_VERSION = 2


def class_names() -> list[str]:
    return [f"{lang}-{d}-{WORDS[lang][d]}" for lang in ("en", "de") for d in range(10)]


def synthesize(text: str, voice: str, rate: int, pitch: int, workdir: str) -> tuple[np.ndarray, int]:
    fd, path = tempfile.mkstemp(suffix=".wav", dir=workdir)
    os.close(fd)
    try:
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch), "-w", path, text],
                       check=True, capture_output=True)
        audio, sr = sf.read(path, dtype="float32")
    finally:
        os.unlink(path)
    return audio, sr


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(f), n)
    return x / (x.std() + 1e-12)


def babble(pool: list[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """Two to four other clips (other speakers of the same split), each at a random offset."""
    out = np.zeros(n)
    for _ in range(int(rng.integers(2, 5))):
        clip = pool[int(rng.integers(len(pool)))][:n]
        start = int(rng.integers(0, n - len(clip) + 1))
        out[start:start + len(clip)] += clip / (np.sqrt(np.mean(clip ** 2)) + 1e-12)
    return out


def degrade(audio: np.ndarray, sr: int, rng: np.random.Generator, pool: list[np.ndarray]) -> np.ndarray:
    """The tuned augmentation chain, in this order (the order matters for the figures)."""
    # Speed jitter by resampling (changes pitch and tempo together, like tape speed).
    speed = rng.uniform(0.88, 1.12)
    up = 1000
    down = int(round(up * speed))
    x = signal.resample_poly(audio.astype(np.float64), up, down)
    # Exponential-decay reverb: noise tail with the given RT60.
    rt60 = rng.uniform(0.1, 0.5)
    n_ir = int(rt60 * sr)
    t = np.arange(n_ir) / sr
    ir = rng.standard_normal(n_ir) * np.exp(-6.9078 * t / rt60)
    ir[0] = 1.0
    ir /= np.sqrt(np.sum(ir ** 2))
    x = signal.fftconvolve(x, ir)[: len(x) + n_ir // 2]
    # Random placement in a fixed-length window.
    n = int(CLIP_SECONDS * sr)
    x = x[:n]
    out = np.zeros(n)
    start = rng.integers(0, n - len(x) + 1)
    out[start:start + len(x)] = x
    # Babble of other clips at 10-25 dB signal-to-babble ratio: without it the held-out
    # voices score ~99% and no degradation can show.
    p_sig = np.mean(x ** 2) + 1e-12
    b = babble(pool, n, rng)
    out += b * np.sqrt(p_sig / 10 ** (rng.uniform(10.0, 25.0) / 10)) / (np.sqrt(np.mean(b ** 2)) + 1e-12)
    # White or pink noise at a random SNR (relative to the speech power).
    snr_db = rng.uniform(5.0, 30.0)
    noise = rng.standard_normal(n) if rng.random() < 0.5 else pink_noise(n, rng)
    out += noise * np.sqrt(p_sig / 10 ** (snr_db / 10)) / (noise.std() + 1e-12)
    # Random band-pass: a cheap microphone / channel.
    lo = rng.uniform(50.0, 400.0)
    hi = rng.uniform(2500.0, 7500.0)
    sos = signal.butter(4, [lo, hi], btype="bandpass", fs=sr, output="sos")
    out = signal.sosfilt(sos, out)
    # Gain, then keep it in [-1, 1].
    peak = np.max(np.abs(out)) + 1e-12
    out = out / peak * 10 ** (rng.uniform(-20.0, -1.0) / 20)
    return out.astype(np.float32)


def generate(seed: int = 0, sample_rate: int = 16000, frames: int = 100) -> dict[str, np.ndarray]:
    cfg = FeatureConfig(sample_rate=sample_rate, frames=frames)
    classes = class_names()
    voices = TRAIN_VOICES + VALIDATION_VOICES + TEST_VOICES
    split_of = {v: 0 for v in TRAIN_VOICES} | {v: 1 for v in VALIDATION_VOICES} | {v: 2 for v in TEST_VOICES}
    rng = np.random.default_rng(seed)
    jobs = []
    for vi, voice in enumerate(voices):
        for lang in ("en", "de"):
            for d, word in enumerate(WORDS[lang]):
                label = d + (10 if lang == "de" else 0)
                for _ in range(CLIPS_PER_VOICE_WORD):
                    rate = int(rng.integers(120, 201))
                    pitch = int(rng.integers(30, 71))
                    jobs.append((f"{lang}+{voice}", word, rate, pitch, label, vi, int(rng.integers(2**63))))

    def clean(job):
        espeak_voice, word, rate, pitch = job[:4]
        with tempfile.TemporaryDirectory() as wd:
            audio, sr = synthesize(word, espeak_voice, rate, pitch, wd)
        return signal.resample_poly(audio.astype(np.float64), sample_rate, sr)  # 22.05 kHz -> 16 kHz

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as ex:
        audio = list(ex.map(clean, jobs))
    # Babble comes from clips of the same split only, so test voices never reach training.
    pools = {s: [a for a, j in zip(audio, jobs) if split_of[voices[j[5]]] == s] for s in (0, 1, 2)}

    def one(i):
        job = audio[i], jobs[i]
        rng_i = np.random.default_rng(job[1][6])
        return featurize(degrade(job[0], sample_rate, rng_i, pools[split_of[voices[job[1][5]]]]), cfg)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as ex:
        feats = list(ex.map(one, range(len(jobs))))
    x = np.stack(feats)
    q = np.round((np.clip(x, -QUANT_RANGE, QUANT_RANGE) + QUANT_RANGE) / (2 * QUANT_RANGE) * 255)
    meta = {
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "classes": classes,
        "voices": voices,
        "splits": {"train": TRAIN_VOICES, "validation": VALIDATION_VOICES, "test": TEST_VOICES},
        "features": cfg.to_dict(),
        "quant_range": QUANT_RANGE,
        "clips_per_voice_word": CLIPS_PER_VOICE_WORD,
    }
    return {
        "x": q.astype(np.uint8),
        "y": np.array([j[4] for j in jobs], dtype=np.int16),
        "voice": np.array([j[5] for j in jobs], dtype=np.int16),
        "split": np.array([split_of[voices[j[5]]] for j in jobs], dtype=np.int8),
        "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    arrays = generate(args.seed)
    # Compressed; written to a temp file and renamed like every artefact here.
    tmp = args.out.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: {len(arrays['y'])} clips, {args.out.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
