import pytest

from basics.errors import BadInput
from robustness.data import DatasetSpec, load_dataset


def test_builtin_corpus_splits_and_held_out_voices():
    d = load_dataset(DatasetSpec())
    assert len(d.classes) == 20 and d.classes[0].startswith("en-0") and d.classes[10].startswith("de-0")
    voices = {name: set(s.groups) for name, s in d.splits.items()}
    assert len(voices["test"]) >= 2 and len(voices["validation"]) >= 1
    assert not voices["test"] & voices["train"] and not voices["validation"] & voices["train"]
    assert len(set().union(*voices.values())) >= 12
    tr = d.splits["train"]
    assert tr.x.shape[1:] == (100, 40) and tr.y.bincount().min() > 0
    assert float(tr.x.abs().max()) <= 4.0 + 1e-6


def test_frames_override_and_unknown_dataset():
    assert load_dataset(DatasetSpec(frames=80)).splits["test"].x.shape[1] == 80
    with pytest.raises(BadInput, match="did you mean 'tts-digits'"):
        load_dataset(DatasetSpec("tts-digit"))
