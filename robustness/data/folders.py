"""Loaders for real speech datasets read from a local folder: hd, sc, audiofolder, manifest.

Each loader turns its layout into a list of `Item`s (path, label, split, speaker); the
shared `build` featurizes them (cached, parallel) and assembles a `Dataset`.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import math
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf
import torch

from basics.errors import BadInput
from robustness.data.audio import AUDIO_EXTENSIONS, Item, featurize_items
from robustness.data.dataset import DATASETS, SPLITS, Dataset, DatasetInfo, DatasetSpec, Split
from robustness.data.features import FeatureConfig

SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
                 "val": "validation", "dev": "validation", "test": "test", "testing": "test"}


def require_dir(spec: DatasetSpec) -> Path:
    if not spec.data_dir:
        raise BadInput(f"dataset {spec.name!r} needs --data-dir (a local folder; nothing is downloaded)")
    root = Path(spec.data_dir).expanduser()
    if not root.exists():
        raise BadInput(f"{root}: data folder does not exist")
    if not root.is_dir():
        raise BadInput(f"{root}: is not a folder")
    return root


def stable_fraction(text: str, seed: int) -> float:
    """A number in [0, 1) fixed by `text` and `seed` (no RNG state, so splits never drift)."""
    return int(hashlib.sha256(f"{seed}:{text}".encode()).hexdigest()[:12], 16) / 16**12


def carve_validation(items: Sequence[Item], fraction: float = 0.1, seed: int = 0) -> list[Item]:
    """Move a deterministic, stratified `fraction` of each class's training items to
    validation; where items name their speakers, spread over them, so that every speaker
    gives about `fraction` of its clips of the class and keeps the rest in train."""
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        if it.split == "train":
            by_label[it.label].append(i)
    out = list(items)
    for idxs in by_label.values():
        by_speaker: dict[str, list[int]] = defaultdict(list)
        for i in sorted(idxs, key=lambda i: stable_fraction(items[i].path, seed)):
            by_speaker[items[i].speaker].append(i)
        # the j-th of a speaker's n clips sits at (j + 0.5) / n: taking the lowest positions takes each speaker's share
        position = {i: ((j + 0.5) / len(group), stable_fraction(items[i].path, seed))
                    for group in by_speaker.values() for j, i in enumerate(group)}
        ranked = sorted(idxs, key=position.__getitem__)
        for i in ranked[: max(1, round(fraction * len(idxs))) if len(idxs) > 1 else 0]:
            out[i] = Item(items[i].path, items[i].label, "validation", items[i].speaker)
    return out


def carve_validation_by_speaker(items: Sequence[Item], fraction: float = 0.1,
                                seed: int = 0) -> tuple[list[Item], str]:
    """A validation split for folders that list train and test only, mirroring how test
    relates to train. When no test speaker is a training speaker (held-out speakers) and
    there are 5 or more training speakers, validation is whole training speakers (the set
    whose share of train is nearest `fraction`); otherwise (test speakers also in train,
    speakers unknown, too few) a `fraction` of each class, spread over its speakers, so
    that no speaker the test set holds goes missing from training.
    Returns the items and a note: the rule, why, the share carved and which speakers."""
    train = [it for it in items if it.split == "train"]
    test = [it for it in items if it.split == "test"]
    speakers = sorted({it.speaker for it in train})
    known = bool(train) and all(it.speaker for it in train) and bool(test) and all(it.speaker for it in test)
    shared = sorted({it.speaker for it in test} & set(speakers)) if known else []
    if known and not shared and len(speakers) >= 5:
        count = defaultdict(int)
        for it in train:
            count[it.speaker] += 1
        chosen, n = [], 0
        for sp in sorted(speakers, key=lambda s: stable_fraction(s, seed)):
            if len(chosen) == len(speakers) - 1:
                break
            if chosen and abs(n + count[sp] - fraction * len(train)) >= abs(n - fraction * len(train)):
                continue  # this speaker would move the share further from the target
            chosen.append(sp)
            n += count[sp]
        out = [Item(it.path, it.label, "validation", it.speaker) if it.split == "train" and it.speaker in chosen
               else it for it in items]
        return out, (f"carved from train by whole speakers, since no test speaker is a training speaker: "
                     f"{len(chosen)} of {len(speakers)} training speakers ({n} utterances, {n / len(train):.1%} of "
                     f"train): {', '.join(sorted(chosen))}; deterministic")
    if not known:
        why = "speakers are not known for every clip"
    elif shared:
        why = f"test speakers are also training speakers ({len(shared)} of {len(speakers)})"
    else:
        why = f"only {len(speakers)} training speakers"
    out = carve_validation(items, fraction, seed)
    n = sum(1 for a, b in zip(items, out) if a.split != b.split)
    within = " within speakers" if all(it.speaker for it in train) and train else ""
    return out, (f"carved from train per class{within}, since {why}: {n} utterances, "
                 f"{n / max(1, len(train)):.1%} of train; deterministic")


def speakers_of(files: Sequence[Path], pattern: str | None) -> list[str]:
    """Speaker ids of one class folder's files. With `pattern`, its group `speaker` (or its
    first group) on the file name. Otherwise `<label>_<speaker>_<n>` (the first field is the
    same for every file of the folder: it is the label) gives the second field, and
    `<speaker>_...` the first; no `_`: no speaker."""
    if pattern:
        rx = re.compile(pattern)
        out = []
        for f in files:
            m = rx.search(f.name)
            if m is None:
                out.append("")
            else:
                g = m.group("speaker") if "speaker" in rx.groupindex else m.group(1) if rx.groups else m.group(0)
                out.append(g or "")
        return out
    parts = [f.stem.split("_") for f in files]
    label_first = len(files) > 1 and all(len(p) >= 3 for p in parts) and len({p[0] for p in parts}) == 1
    return [p[1] if label_first else p[0] if len(p) >= 2 else "" for p in parts]


def stratified_split(items: Sequence[Item], seed: int = 0, fractions=(0.8, 0.1, 0.1)) -> list[Item]:
    """Deterministic split: by speaker when every item has one (held-out speakers), else per class."""
    speakers = {it.speaker for it in items}
    use_speaker = _split_by_speaker(items)
    out = []
    if use_speaker:
        # Whole speakers go to test / validation (at least one each), the rest to train.
        ranked = sorted(speakers, key=lambda s: stable_fraction(s, seed))
        n_test = max(1, round(fractions[2] * len(ranked)))
        n_val = max(1, round(fractions[1] * len(ranked)))
        where = {s: "test" if j < n_test else "validation" if j < n_test + n_val else "train"
                 for j, s in enumerate(ranked)}
        return [Item(it.path, it.label, where[it.speaker], it.speaker) for it in items]
    by_label: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        by_label[it.label].append(it)
    for group in by_label.values():
        ranked = sorted(group, key=lambda it: stable_fraction(it.path, seed))
        n = len(ranked)
        n_val = max(1, round(fractions[1] * n)) if n >= 3 else 0
        n_test = max(1, round(fractions[2] * n)) if n >= 3 else 0
        for j, it in enumerate(ranked):
            s = "test" if j < n_test else "validation" if j < n_test + n_val else "train"
            out.append(Item(it.path, it.label, s, it.speaker))
    return out


def auto_frame_count(items: Sequence[Item], shift_ms: float) -> tuple[int, str]:
    """T for a user folder: the 95th percentile of training durations in frames, rounded up
    to a multiple of 4 (short clips are not padded with a second of silence)."""
    secs = []
    for it in items:
        if it.split == "train":
            try:
                secs.append(sf.info(it.path).duration)
            except (RuntimeError, sf.LibsndfileError):
                continue  # unreadable: featurizing reports it (or skips it with --skip-bad)
    if not secs:
        return FeatureConfig().frames, "the default (no readable training audio to measure)"
    p95 = float(np.percentile(secs, 95))
    t = max(8, int(math.ceil(p95 * 1000 / shift_ms / 4)) * 4)
    return t, f"{t} frames from the 95th percentile of training durations ({p95:.2f} s); --frames overrides"


def build(spec: DatasetSpec, items: Sequence[Item], classes: Sequence[str], *,
          workers: int | None = None, progress: bool = True, notes: dict | None = None,
          auto_frames: bool = False) -> Dataset:
    """Featurize items (cached) and group them by split. With `auto_frames` and no
    `spec.frames`, T follows the data (and is written into the returned spec)."""
    notes = dict(notes or {})
    if spec.frames is None and auto_frames:
        t, notes["frames"] = auto_frame_count(items, FeatureConfig().frame_shift_ms)
        spec = dataclasses.replace(spec, frames=t)
    cfg = FeatureConfig() if spec.frames is None else FeatureConfig(frames=spec.frames)
    index = {c: i for i, c in enumerate(classes)}
    x, keep, secs, bad, key = featurize_items(items, cfg, skip_bad=spec.skip_bad, workers=workers, progress=progress)
    kept = [items[i] for i in keep]
    xt = torch.from_numpy(x)
    y = torch.tensor([index[it.label] for it in kept], dtype=torch.int64)
    splits = {}
    for s in SPLITS:
        idx = torch.tensor([i for i, it in enumerate(kept) if it.split == s], dtype=torch.int64)
        splits[s] = Split(xt[idx], y[idx], [kept[i].speaker for i in idx.tolist()])
    return Dataset(spec, list(classes), cfg, splits, key, bad, secs.tolist(), notes)


def class_folders(root: Path, expected: str) -> dict[str, list[Path]]:
    """Audio files per class folder (sorted); hidden and `_`-prefixed folders are not classes."""
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith((".", "_")))
    if not classes:
        raise BadInput(f"{root}: no class folders (expected {expected})")
    out = {}
    for c in classes:
        files = sorted(p for p in (root / c).iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS)
        if not files:
            raise BadInput(f"{root / c}: empty class folder")
        out[c] = files
    return out


# --- Heidelberg Digits (audio release) -------------------------------------------------------

HD_NAME = re.compile(r"lang-(english|german)_speaker-(\d+)_trial-(\d+)_digit-(\d)\.flac$")
HD_CLASSES = [f"{lang}-{d}" for lang in ("english", "german") for d in range(10)]


def hd_items(root: Path) -> list[Item]:
    audio = root / "audio"
    if not audio.is_dir():
        raise BadInput(f"{root}: no audio/ folder (expected the Heidelberg Digits audio release)")
    items = []
    for split, listing in (("train", "train_filenames.txt"), ("test", "test_filenames.txt")):
        lst = root / listing
        if not lst.is_file():
            raise BadInput(f"{root}: missing {listing}")
        for line in lst.read_text().split():
            name = Path(line).name
            if not name.endswith(".flac"):
                name += ".flac"
            m = HD_NAME.search(name)
            if not m:
                raise BadInput(f"{lst}: {line!r} is not a Heidelberg Digits file name")
            path = audio / name
            if not path.exists():
                raise BadInput(f"{lst}: lists {name} but {path} does not exist")
            lang, speaker, _, digit = m.groups()
            items.append(Item(str(path), f"{lang}-{digit}", split, f"speaker-{speaker}"))
    return carve_validation(items)


def load_hd(spec: DatasetSpec, **kw) -> Dataset:
    return build(spec, hd_items(require_dir(spec)), HD_CLASSES, **kw)


# --- Speech Commands v0.02 -------------------------------------------------------------------

def sc_items(root: Path) -> tuple[list[Item], list[str]]:
    files = class_folders(root, "Speech Commands v0.02")
    lists = {}
    for split, name in (("validation", "validation_list.txt"), ("test", "testing_list.txt")):
        f = root / name
        if not f.is_file():
            raise BadInput(f"{root}: missing {name}")
        entries = set(f.read_text().split())
        for e in entries:
            if not (root / e).is_file():
                raise BadInput(f"{f}: lists {e} but there is no such file")
        lists[split] = entries
    items = []
    for c, paths in files.items():
        for p in paths:
            rel = f"{c}/{p.name}"
            split = "validation" if rel in lists["validation"] else "test" if rel in lists["test"] else "train"
            items.append(Item(str(p), c, split, p.name.split("_nohash_")[0]))
    return items, list(files)


def load_sc(spec: DatasetSpec, **kw) -> Dataset:
    items, classes = sc_items(require_dir(spec))
    return build(spec, items, classes, **kw)


# --- audio folder ----------------------------------------------------------------------------

def audiofolder_items(root: Path, speaker_pattern: str | None = None) -> tuple[list[Item], list[str], dict]:
    files = class_folders(root, "ROOT/<label>/<file>.wav|flac")
    classes = list(files)
    items = []
    for c, paths in files.items():
        for p, speaker in zip(paths, speakers_of(paths, speaker_pattern)):
            items.append(Item(str(p), c, "", speaker))
    notes = {}
    lists = {s: root / f"{s}.txt" for s in SPLITS}
    if any(f.is_file() for f in lists.values()):
        where = {}
        for s, f in lists.items():
            if f.is_file():
                for rel in f.read_text().split():
                    p = root / rel
                    if not p.is_file():
                        raise BadInput(f"{f}: lists {rel} but there is no such file")
                    where[str(p)] = s
        items = [Item(it.path, it.label, where[it.path], it.speaker) for it in items if it.path in where]
        if not any(it.split == "validation" for it in items):
            items, notes["validation"] = carve_validation_by_speaker(items)
    else:
        items = stratified_split(items)
        notes["validation"] = _split_note(items)
    return items, classes, notes


def _split_by_speaker(items: Sequence[Item]) -> bool:
    """Whether `stratified_split` holds out whole speakers: every item has one, and 3 or more."""
    return all(it.speaker for it in items) and len({it.speaker for it in items}) >= 3


def _split_note(items: Sequence[Item]) -> str:
    return "80/10/10 split " + ("by whole speakers" if _split_by_speaker(items) else "per class") + ", deterministic"


def load_audiofolder(spec: DatasetSpec, **kw) -> Dataset:
    items, classes, notes = audiofolder_items(require_dir(spec), spec.speaker_pattern)
    return build(spec, items, classes, notes=notes, auto_frames=True, **kw)


# --- CSV manifest ----------------------------------------------------------------------------

def manifest_items(csv_path: Path, speaker_pattern: str | None = None) -> tuple[list[Item], list[str], dict]:
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        cols = set(reader.fieldnames or [])
        missing = {"path", "label"} - cols
        if missing:
            raise BadInput(f"{csv_path}: missing column(s) {', '.join(sorted(missing))} (need path,label[,split][,speaker])")
        rows = list(reader)
    if not rows:
        raise BadInput(f"{csv_path}: manifest has no rows")
    items = []
    for n, r in enumerate(rows, start=2):
        p = (csv_path.parent / r["path"]).resolve() if not os.path.isabs(r["path"]) else Path(r["path"])
        if not p.is_file():
            raise BadInput(f"{csv_path}:{n}: no such file {r['path']}")
        label = (r["label"] or "").strip()
        if not label:
            raise BadInput(f"{csv_path}:{n}: empty label")
        split = ""
        if "split" in cols:
            raw = (r["split"] or "").strip().lower()
            if raw not in SPLIT_ALIASES:
                raise BadInput(f"{csv_path}:{n}: unknown split {r['split']!r} (use train, validation or test)")
            split = SPLIT_ALIASES[raw]
        speaker = (r.get("speaker") or "").strip()
        if not speaker and speaker_pattern:
            speaker = speakers_of([p], speaker_pattern)[0]
        items.append(Item(str(p), label, split, speaker))
    classes = sorted({it.label for it in items})
    notes = {}
    if "split" not in cols:
        items = stratified_split(items)
        notes["validation"] = _split_note(items)
    elif not any(it.split == "validation" for it in items):
        items, notes["validation"] = carve_validation_by_speaker(items)
    return items, classes, notes


def load_manifest(spec: DatasetSpec, **kw) -> Dataset:
    if not spec.data_dir:
        raise BadInput("dataset 'manifest' needs --data-dir (the CSV file, or a folder holding manifest.csv)")
    p = Path(spec.data_dir).expanduser()
    if p.is_dir():
        p = p / "manifest.csv"
    if not p.is_file():
        raise BadInput(f"{p}: no such manifest file")
    items, classes, notes = manifest_items(p, spec.speaker_pattern)
    return build(spec, items, classes, notes=notes, auto_frames=True, **kw)


DATASETS.register("hd")(DatasetInfo(
    load_hd, "Heidelberg Digits, audio release (20 classes: English + German digits)",
    "DIR/audio/lang-{english,german}_speaker-XX_trial-YY_digit-Z.flac, DIR/train_filenames.txt, "
    "DIR/test_filenames.txt (validation: 10% of train per class, spread over speakers, deterministic)"))
DATASETS.register("sc")(DatasetInfo(
    load_sc, "Google Speech Commands v0.02 (35 classes)",
    "DIR/<class>/*.wav, DIR/validation_list.txt, DIR/testing_list.txt (_background_noise_ ignored)"))
DATASETS.register("audiofolder")(DatasetInfo(
    load_audiofolder, "your own recordings, one folder per class",
    "DIR/<label>/*.wav|flac, optional DIR/{train,validation,test}.txt (paths relative to DIR); "
    "otherwise a deterministic 80/10/10 split (by speaker: <label>_<speaker>_<n>.wav, <speaker>_*.wav or "
    "--speaker-pattern); train/test lists without validation: validation carved from train by whole speakers "
    "when test speakers are held out, else per class within speakers"))
DATASETS.register("manifest")(DatasetInfo(
    load_manifest, "a CSV manifest of audio files",
    "CSV with columns path,label[,split][,speaker]; paths relative to the CSV (no validation rows: carved "
    "from train by whole speakers when test speakers are held out, else per class within speakers)"))
