"""A plain summary of a loaded dataset for `robust data info`."""

from __future__ import annotations

from robustness.data.dataset import Dataset
from robustness.data.features import default_cache_dir


MIN_PER_CLASS = 10  # fewer training examples than this per class: warned about


def describe(d: Dataset) -> dict:
    """Classes, split sizes, speakers, feature shape, cache key and location."""
    frames = d.features.frames
    shift = d.features.frame_shift_ms
    out = {
        "dataset": d.spec.name,
        "data_dir": d.spec.data_dir or "(built in)",
        "classes": len(d.classes),
        "class_names": ", ".join(d.classes[:40]) + (" ..." if len(d.classes) > 40 else ""),
    }
    for name, s in d.splits.items():
        speakers = {g for g in s.groups if g}
        out[f"{name}"] = f"{len(s)} utterances" + (f", {len(speakers)} speakers" if speakers else "")
    train = d.splits.get("train")
    if train is not None and len(train):
        counts = {c: 0 for c in d.classes}
        for k in train.y.tolist():
            counts[d.classes[k]] += 1
        lo, hi = min(counts, key=counts.get), max(counts, key=counts.get)
        out["class_balance"] = f"train examples per class: min {counts[lo]} ({lo}), max {counts[hi]} ({hi})"
        few = [f"{c} ({n})" for c, n in counts.items() if n < MIN_PER_CLASS]
        if few:
            out["warning"] = (f"{len(few)} class(es) with fewer than {MIN_PER_CLASS} training examples: "
                              + ", ".join(few[:10]) + (" ..." if len(few) > 10 else ""))
    for key, note in d.notes.items():
        out[f"{key}_chosen"] = note
    x = next(s.x for s in d.splits.values() if len(s))
    out["features"] = f"[T={x.shape[1]}, D={x.shape[2]}] per utterance" + (
        f" ({frames * shift / 1000:.2f} s at {shift:g} ms hop)" if d.features.sample_rate else " (binned spikes)")
    if d.durations:
        a = d.durations
        out["duration_s"] = (f"mean {sum(a) / len(a):.2f}, min {min(a):.2f}, max {max(a):.2f}"
                             f" (longer ones are cropped to the centre {frames * shift / 1000:.2f} s)")
    out["skipped_files"] = len(d.skipped)
    out["fingerprint"] = d.fingerprint
    out["feature_cache"] = str(default_cache_dir()) if d.spec.data_dir and d.spec.name != "tts-digits" \
        else "(features ship with the package)"
    return out
