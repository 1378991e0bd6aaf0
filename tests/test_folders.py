"""User folders as people have them: FSDD-style names, train/test lists without
validation, a speaker regex, few examples per class, short clips."""

import json

import pytest
import torch
from click.testing import CliRunner

from robustness.cli.main import cli
from robustness.data import DatasetSpec, load_dataset
from tests.test_datasets import tone, write

SPEAKERS = ("jackson", "nicolas", "theo", "yweweler", "george", "lucas")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUST_CACHE", str(tmp_path / "cache"))


def make_fsdd(root, takes=3, dur=0.3):
    """`<label>/<label>_<speaker>_<index>.wav`, the free spoken digit dataset's naming."""
    for digit in ("0", "1"):
        for spk in SPEAKERS:
            for i in range(takes):
                write(root / digit / f"{digit}_{spk}_{i}.wav", tone(300 + 200 * int(digit) + 7 * i, dur=dur, seed=i))
    return root


def info(*args) -> dict:
    r = CliRunner().invoke(cli, ["data", "info", "--json", "-q", *args])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def test_label_speaker_index_names_give_the_speaker(tmp_path):
    root = make_fsdd(tmp_path / "fsdd")
    d = load_dataset(DatasetSpec("audiofolder", str(root)))
    speakers = {g for s in d.splits.values() for g in s.groups}
    assert speakers == set(SPEAKERS), "the speaker, not the label, is the speaker id"
    train, test = set(d.splits["train"].groups), set(d.splits["test"].groups)
    assert not train & test, "held out by whole speakers"
    out = info("--dataset", "audiofolder", "--data-dir", str(root))
    assert sum(out["splits"][s]["speakers"] for s in ("train", "validation", "test")) == len(SPEAKERS)  # numbers


def test_speaker_pattern(tmp_path):
    root = tmp_path / "pat"
    for c in ("yes", "no"):
        for spk in ("AB", "CD", "EF", "GH"):
            write(root / c / f"take-{spk}-x.wav", tone(300 if c == "yes" else 600))
    d = load_dataset(DatasetSpec("audiofolder", str(root), speaker_pattern=r"take-(?P<speaker>[A-Z]+)-"))
    assert {g for s in d.splits.values() for g in s.groups} == {"AB", "CD", "EF", "GH"}
    r = CliRunner().invoke(cli, ["data", "info", "--dataset", "audiofolder", "--data-dir", str(root),
                                 "--speaker-pattern", "take-(", "-q"])
    assert r.exit_code == 2 and "not a regular expression" in r.output


def test_train_and_test_lists_without_validation_carve_whole_speakers(tmp_path):
    root = make_fsdd(tmp_path / "fsdd", takes=3)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.wav"))
    (root / "train.txt").write_text("\n".join(f for f in files if "_lucas_" not in f))
    (root / "test.txt").write_text("\n".join(f for f in files if "_lucas_" in f))
    d = load_dataset(DatasetSpec("audiofolder", str(root)))
    val, train = set(d.splits["validation"].groups), set(d.splits["train"].groups)
    assert val and not val & train and "lucas" not in val
    assert "carved from train" in d.notes["validation"] and "speakers" in d.notes["validation"]
    again = load_dataset(DatasetSpec("audiofolder", str(root)))
    assert again.splits["validation"].groups == d.splits["validation"].groups, "deterministic"
    out = info("--dataset", "audiofolder", "--data-dir", str(root))
    assert "carved from train" in out["chosen"]["validation"]
    ck = tmp_path / "m.pt"
    r = CliRunner().invoke(cli, ["train", "--dataset", "audiofolder", "--data-dir", str(root), "--epochs", "1",
                                 "--hidden", "8", "--out", str(ck), "-q"])
    assert r.exit_code == 0, r.output
    saved = torch.load(ck, weights_only=True)["dataset"]
    assert "carved from train" in saved["notes"]["validation"] and saved["frames"] == 32


def test_manifest_without_validation_rows(tmp_path):
    root = make_fsdd(tmp_path / "fsdd", takes=2)
    rows = ["path,label,split,speaker"]
    for p in sorted(root.rglob("*.wav")):
        digit, spk, _ = p.stem.split("_")
        rows.append(f"{p.relative_to(root).as_posix()},{digit},{'test' if spk == 'lucas' else 'train'},{spk}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    d = load_dataset(DatasetSpec("manifest", str(root)))
    assert len(d.splits["validation"]) > 0 and not set(d.splits["validation"].groups) & set(d.splits["train"].groups)


def test_class_balance_and_few_examples_warned(tmp_path):
    root = make_fsdd(tmp_path / "fsdd", takes=1)
    out = info("--dataset", "audiofolder", "--data-dir", str(root))
    assert out["class_balance"]["min"] == out["class_balance"]["max"] == 4  # 6 speakers x 1 take, 2 carved
    assert out["few_examples"] == ["0", "1"]
    text = CliRunner().invoke(cli, ["data", "info", "--dataset", "audiofolder", "--data-dir", str(root), "-q"]).output
    assert "class_balance: train examples per class: min 4 (0), max 4 (0)" in text
    assert "warning: 2 class(es) with fewer than 10 training examples" in text


def test_frames_follow_short_clips_unless_given(tmp_path):
    root = make_fsdd(tmp_path / "fsdd", takes=2, dur=0.44)
    d = load_dataset(DatasetSpec("audiofolder", str(root)))
    # 0.44 s at a 10 ms hop is 44 frames: rounded up to a multiple of 4
    assert d.spec.frames == 44 and d.splits["train"].x.shape[1] == 44
    assert "95th percentile" in d.notes["frames"]
    forced = load_dataset(DatasetSpec("audiofolder", str(root), frames=50))
    assert forced.splits["train"].x.shape[1] == 50 and "frames" not in forced.notes
    out = info("--dataset", "audiofolder", "--data-dir", str(root))
    assert out["features"]["frames"] == 44 and "95th percentile" in out["chosen"]["frames"]


def test_validation_mirrors_test_when_test_speakers_are_also_training_speakers(tmp_path):
    """Test = the first take of every speaker: carving a whole speaker for validation would leave
    1/6 of the test set's speakers unseen in training; carve per class, within speakers."""
    root = make_fsdd(tmp_path / "fsdd", takes=10)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.wav"))
    (root / "train.txt").write_text("\n".join(f for f in files if not f.endswith("_0.wav")))
    (root / "test.txt").write_text("\n".join(f for f in files if f.endswith("_0.wav")))
    d = load_dataset(DatasetSpec("audiofolder", str(root)))
    train, val = d.splits["train"].groups, d.splits["validation"].groups
    assert set(train) == set(SPEAKERS) == set(d.splits["test"].groups)  # every test speaker is trained on
    assert len(val) == 2 * 5  # 10% of each class's 54 training clips
    assert all(train.count(s) >= 16 for s in SPEAKERS)  # spread over speakers: each keeps most of its 18
    note = d.notes["validation"]
    assert "per class within speakers" in note and "test speakers are also training speakers (6 of 6)" in note
    assert f"{len(val)} utterances, {len(val) / (len(val) + len(train)):.1%} of train" in note
    out = info("--dataset", "audiofolder", "--data-dir", str(root))
    assert out["chosen"]["validation"] == note


def test_held_out_test_speakers_give_a_whole_speaker_validation_with_its_share_and_names(tmp_path):
    root = make_fsdd(tmp_path / "fsdd", takes=3)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.wav"))
    (root / "train.txt").write_text("\n".join(f for f in files if "_lucas_" not in f))
    (root / "test.txt").write_text("\n".join(f for f in files if "_lucas_" in f))
    d = load_dataset(DatasetSpec("audiofolder", str(root)))
    (speaker,) = set(d.splits["validation"].groups)  # 1 of 5 speakers: 20% is the nearest share to 10%
    assert d.notes["validation"].startswith("carved from train by whole speakers, since no test speaker is a "
                                            "training speaker: 1 of 5 training speakers (6 utterances, 20.0% of "
                                            f"train): {speaker}")
