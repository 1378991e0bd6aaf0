"""The dataset contract shared by every loader."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from basics.errors import BadInput
from robustness.data.features import FeatureConfig
from robustness.registry import Registry

SPLITS = ("train", "validation", "test")
MAX_FRAMES = 10_000  # frames T per utterance: 100 s of speech; beyond it one split's features stop fitting memory


@dataclass(frozen=True)
class DatasetSpec:
    """Which data a model was trained on; saved in checkpoints so eval finds it again.

    Attributes:
        name: registered dataset name (`tts-digits`, ...).
        data_dir: local folder of the data (None for the built-in corpus).
        frames: T, frames per utterance (None: the dataset's default).
        skip_bad: skip unusable audio files (counted) instead of failing on the first.
        speaker_pattern: regex on file names whose group `speaker` (or first group) is the
            speaker id (user folders; None: the `<label>_<speaker>_<n>` / `<speaker>_*` rules).
    """

    name: str = "tts-digits"
    data_dir: str | None = None
    frames: int | None = None
    skip_bad: bool = False
    speaker_pattern: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DatasetSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class Split:
    """Features x [N, T, D] float32 and labels y [N] int64 of one split."""

    x: torch.Tensor
    y: torch.Tensor
    groups: list[str] = field(default_factory=list)  # speaker / voice per example, when known

    def __len__(self) -> int:
        return len(self.y)

    def head(self, n: int | None) -> "Split":
        """The first n examples (training subsets: `--limit-train`)."""
        if n is None or n >= len(self):
            return self
        return Split(self.x[:n], self.y[:n], self.groups[:n])

    def stratified(self, n: int | None, seed: int = 0) -> "Split":
        """A class-stratified, seeded subset of n examples, in split order (`--limit`).

        Splits are often sorted by class or speaker, so their first n examples can miss
        whole classes (the first 100 test clips of tts-digits hold 12 of 20). Each class
        gets its share of n (largest remainders; at least one while n allows), drawn by
        a permutation fixed by `seed`.
        """
        if n is None or n >= len(self):
            return self
        y = self.y.numpy()
        classes, counts = np.unique(y, return_counts=True)
        quota = n * counts / len(y)
        take = np.floor(quota).astype(int)
        if n >= len(classes):
            take = np.maximum(take, 1)
        order = np.argsort(-(quota - np.floor(quota)), kind="stable")
        i = 0
        while take.sum() < n:
            c = order[i % len(order)]
            if take[c] < counts[c]:
                take[c] += 1
            i += 1
        while take.sum() > n:  # the at-least-one rule overshot: trim the largest classes
            take[int(np.argmax(take))] -= 1
        rng = np.random.default_rng(seed)
        keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take)]))
        idx = torch.from_numpy(keep)
        return Split(self.x[idx], self.y[idx], [self.groups[i] for i in keep] if self.groups else [])


def subset_note(n: int, size: int, split: str) -> str:
    """What was scored: the whole split, or a stratified subset of it (`Split.stratified`)."""
    if n >= size:
        return f"all {size} {split} examples"
    return f"a class-stratified, seeded subset of {n} of the {size} {split} examples (--limit)"


@dataclass
class Dataset:
    spec: DatasetSpec
    classes: list[str]
    features: FeatureConfig
    splits: dict[str, Split]
    fingerprint: str  # hash of the data, for provenance
    skipped: list[str] = field(default_factory=list)  # unusable files left out (skip_bad)
    durations: list[float] = field(default_factory=list)  # seconds per audio file, when known
    notes: dict[str, str] = field(default_factory=dict)  # how splits / frames were chosen (data info, checkpoints)

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise BadInput(f"dataset {self.spec.name!r} has no split {name!r} (has {', '.join(self.splits)})")
        s = self.splits[name]
        if len(s) == 0:
            raise BadInput(f"split {name!r} of dataset {self.spec.name!r} is empty")
        return s


@dataclass(frozen=True)
class DatasetInfo:
    """A registered loader with what it expects on disk."""

    load: Callable[..., Dataset]  # (spec, *, workers=None, progress=True) -> Dataset
    description: str
    layout: str


DATASETS: Registry[DatasetInfo] = Registry("dataset")


def load_dataset(spec: DatasetSpec, *, workers: int | None = None, progress: bool = True) -> Dataset:
    """Load a dataset by spec; unknown names and unusable folders raise `BadInput`."""
    if spec.frames is not None and not 1 <= spec.frames <= MAX_FRAMES:
        raise BadInput(f"frames must be from 1 to {MAX_FRAMES} ({MAX_FRAMES // 100} s at a 10 ms hop), got {spec.frames}")
    if spec.speaker_pattern is not None:
        if spec.name not in ("audiofolder", "manifest"):
            raise BadInput(f"--speaker-pattern applies to audiofolder and manifest, not {spec.name!r} (its release "
                           f"names speakers itself)")
        try:
            re.compile(spec.speaker_pattern)
        except re.error as e:
            raise BadInput(f"--speaker-pattern {spec.speaker_pattern!r}: not a regular expression ({e})") from None
    return DATASETS.get(spec.name).load(spec, workers=workers, progress=progress)
