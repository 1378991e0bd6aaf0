"""A summary of a loaded dataset for `robust data info`: numbers for `--json`, prose for people."""

from __future__ import annotations

from robustness.data.dataset import Dataset
from robustness.data.features import default_cache_dir


MIN_PER_CLASS = 10  # fewer training examples than this per class: warned about


def describe(d: Dataset) -> dict:
    """Classes, splits (utterances, speakers), class balance, feature shape, durations, how
    splits and frames were chosen, skipped files, cache key and location; numbers as numbers."""
    frames, shift = d.features.frames, d.features.frame_shift_ms
    out: dict = {"dataset": d.spec.name, "data_dir": d.spec.data_dir, "classes": len(d.classes),
                 "class_names": list(d.classes), "splits": {}}
    for name, s in d.splits.items():
        speakers = sorted({g for g in s.groups if g})
        out["splits"][name] = {"utterances": len(s), "speakers": len(speakers) if speakers else None,
                               "speaker_names": speakers}
    train = d.splits.get("train")
    if train is not None and len(train):
        counts = {c: 0 for c in d.classes}
        for k in train.y.tolist():
            counts[d.classes[k]] += 1
        lo, hi = min(counts, key=counts.get), max(counts, key=counts.get)
        out["class_balance"] = {"train_per_class": counts, "min": counts[lo], "min_class": lo, "max": counts[hi],
                                "max_class": hi}
        out["few_examples"] = [c for c, n in counts.items() if n < MIN_PER_CLASS]
    out["chosen"] = dict(d.notes)  # how the splits and T were chosen (user folders)
    x = next(s.x for s in d.splits.values() if len(s))
    out["features"] = {"frames": int(x.shape[1]), "dims": int(x.shape[2]), "frame_shift_ms": shift,
                       "seconds": frames * shift / 1000 if d.features.sample_rate else None,
                       "kind": "log-mel" if d.features.sample_rate else "binned spikes"}
    if d.durations:
        a = d.durations
        out["duration_s"] = {"mean": sum(a) / len(a), "min": min(a), "max": max(a)}
    out["skipped_files"] = len(d.skipped)
    out["fingerprint"] = d.fingerprint
    out["feature_cache"] = str(default_cache_dir()) if d.spec.data_dir and d.spec.name != "tts-digits" else None
    return out


def format_description(info: dict) -> str:
    """`describe`'s numbers as lines of text."""
    lines = [f"dataset: {info['dataset']}", f"data_dir: {info['data_dir'] or '(built in)'}",
             f"classes: {info['classes']}",
             "class_names: " + ", ".join(info["class_names"][:40]) + (" ..." if info["classes"] > 40 else "")]
    for name, s in info["splits"].items():
        sp = s["speakers"]
        lines.append(f"{name}: {s['utterances']} utterances" +
                     (f", {sp} speaker{'s' if sp != 1 else ''}" if sp else ""))
    b = info.get("class_balance")
    if b:
        lines.append(f"class_balance: train examples per class: min {b['min']} ({b['min_class']}), "
                     f"max {b['max']} ({b['max_class']})")
        few = info["few_examples"]
        if few:
            lines.append(f"warning: {len(few)} class(es) with fewer than {MIN_PER_CLASS} training examples: "
                         + ", ".join(f"{c} ({b['train_per_class'][c]})" for c in few[:10])
                         + (" ..." if len(few) > 10 else ""))
    for key, note in info["chosen"].items():
        lines.append(f"{key}_chosen: {note}")
    f = info["features"]
    lines.append(f"features: [T={f['frames']}, D={f['dims']}] per utterance" +
                 (f" ({f['seconds']:.2f} s at {f['frame_shift_ms']:g} ms hop)" if f["seconds"] else " (binned spikes)"))
    dur = info.get("duration_s")
    if dur:
        lines.append(f"duration_s: mean {dur['mean']:.2f}, min {dur['min']:.2f}, max {dur['max']:.2f}"
                     + (f" (longer ones are cropped to the centre {f['seconds']:.2f} s)" if f["seconds"] else ""))
    lines += [f"skipped_files: {info['skipped_files']}", f"fingerprint: {info['fingerprint']}",
              f"feature_cache: {info['feature_cache'] or '(features ship with the package)'}"]
    return "\n".join(lines)
