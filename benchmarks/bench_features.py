"""Feature extraction speed: N one-second 16 kHz clips -> cached Kaldi log-mel features.

Writes N synthetic wav files in a temporary folder (one folder per class, the
`audiofolder` layout), then times a cold `robust data prepare`-equivalent run (decode,
fbank, CMVN, cache write) with the given number of worker processes, and a warm run that
reads the cache.

    python -m benchmarks.bench_features [--n 10000] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

warnings.filterwarnings("ignore", category=FutureWarning)

from benchmarks.machine import peak_rss_mb  # noqa: E402
from robustness.data import DatasetSpec, load_dataset  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "clips"
        t0 = time.perf_counter()
        for i in range(args.n):
            d = root / f"class{i % 10}"
            d.mkdir(parents=True, exist_ok=True)
            sf.write(str(d / f"spk{i % 50}_{i}.wav"), (rng.normal(0, 0.1, 16000)).astype(np.float32), 16000)
        print(f"wrote {args.n} one-second clips in {time.perf_counter() - t0:.1f} s")
        os.environ["ROBUST_CACHE"] = str(Path(tmp) / "cache")
        t0 = time.perf_counter()
        load_dataset(DatasetSpec("audiofolder", str(root)), workers=args.workers, progress=False)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        load_dataset(DatasetSpec("audiofolder", str(root)), workers=args.workers, progress=False)
        warm = time.perf_counter() - t0
    print(f"features, {args.workers} workers: cold {cold:.1f} s ({args.n / cold:.0f} clips/s, "
          f"{args.n / cold:.0f}x real time), from cache {warm:.2f} s")
    print(f"peak resident memory of this process {peak_rss_mb():.0f} MB (the worker processes excluded)")


if __name__ == "__main__":
    main()
