"""Every real-dataset loader on a small fixture written in exactly its layout."""

import csv
import json

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from basics.errors import BadInput
from robustness.data import DatasetSpec, load_dataset


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUST_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def tone(freq, sr=16000, dur=0.3, seed=0):
    t = np.arange(int(sr * dur)) / sr
    noise = np.random.default_rng(seed).normal(0, 0.01, len(t))
    return (0.3 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


def write(path, audio, sr=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, sr)


def make_hd(root):
    train, test = [], []
    for lang in ("english", "german"):
        for digit in range(3):
            for spk in ("01", "02", "03"):
                for trial in range(2):
                    name = f"lang-{lang}_speaker-{spk}_trial-{trial}_digit-{digit}.flac"
                    write(root / "audio" / name, tone(200 + 100 * digit + (50 if lang == "german" else 0),
                                                      seed=trial))
                    (test if spk == "03" else train).append(name)
    (root / "train_filenames.txt").write_text("\n".join(train))
    (root / "test_filenames.txt").write_text("\n".join(test))
    return root


def test_hd(tmp_path):
    d = load_dataset(DatasetSpec("hd", str(make_hd(tmp_path / "hd")), frames=40))
    assert len(d.classes) == 20 and d.classes[10] == "german-0"
    assert len(d.splits["test"]) == 12 and len(d.splits["train"]) + len(d.splits["validation"]) == 24
    assert len(d.splits["validation"]) == 6  # one per (class) of 6 classes x 4 training files
    assert set(d.splits["test"].groups) == {"speaker-03"}
    assert d.splits["train"].x.shape[1:] == (40, 40)
    assert set(d.splits["test"].y.tolist()) == {0, 1, 2, 10, 11, 12}
    again = load_dataset(DatasetSpec("hd", str(tmp_path / "hd"), frames=40))
    assert again.fingerprint == d.fingerprint
    assert np.array_equal(again.splits["validation"].y, d.splits["validation"].y)


def test_hd_listed_file_missing(tmp_path):
    root = make_hd(tmp_path / "hd")
    (root / "audio" / "lang-english_speaker-01_trial-0_digit-0.flac").unlink()
    with pytest.raises(BadInput, match="does not exist"):
        load_dataset(DatasetSpec("hd", str(root)))


def make_sc(root):
    val, test = [], []
    for ci, c in enumerate(("yes", "no", "up")):
        for spk in ("aa11", "bb22", "cc33", "dd44"):
            write(root / c / f"{spk}_nohash_0.wav", tone(300 + 150 * ci, dur=1.0))
            if spk == "cc33":
                val.append(f"{c}/{spk}_nohash_0.wav")
            if spk == "dd44":
                test.append(f"{c}/{spk}_nohash_0.wav")
    write(root / "_background_noise_" / "white.wav", tone(50, dur=2.0))
    (root / "validation_list.txt").write_text("\n".join(val))
    (root / "testing_list.txt").write_text("\n".join(test))
    return root


def test_sc(tmp_path):
    d = load_dataset(DatasetSpec("sc", str(make_sc(tmp_path / "sc"))))
    assert d.classes == ["no", "up", "yes"]
    assert [len(d.splits[s]) for s in ("train", "validation", "test")] == [6, 3, 3]
    assert set(d.splits["test"].groups) == {"dd44"}
    assert d.splits["train"].x.shape[1:] == (100, 40)


def test_sc_empty_class_folder(tmp_path):
    root = make_sc(tmp_path / "sc")
    (root / "down").mkdir()
    with pytest.raises(BadInput, match="empty class folder"):
        load_dataset(DatasetSpec("sc", str(root)))


def make_folder(root, sr=16000):
    for ci, c in enumerate(("cat", "dog")):
        for spk in ("alice", "bob", "carol", "dave", "erin"):
            write(root / c / f"{spk}_{ci}.wav", tone(300 + 300 * ci, sr=sr), sr=sr)
    return root


def test_audiofolder_with_and_without_lists(tmp_path):
    root = make_folder(tmp_path / "af")
    d = load_dataset(DatasetSpec("audiofolder", str(root)))
    sizes = {s: len(d.splits[s]) for s in d.splits}
    assert sum(sizes.values()) == 10 and all(sizes.values())
    # speaker-held-out: no speaker in two splits
    spk = {s: set(d.splits[s].groups) for s in d.splits}
    assert not spk["train"] & spk["test"] and not spk["train"] & spk["validation"]
    (root / "train.txt").write_text("cat/alice_0.wav\ndog/alice_1.wav\ncat/bob_0.wav\ndog/bob_1.wav\n")
    (root / "validation.txt").write_text("cat/carol_0.wav\ndog/carol_1.wav\n")
    (root / "test.txt").write_text("cat/dave_0.wav\ndog/dave_1.wav\n")
    d = load_dataset(DatasetSpec("audiofolder", str(root)))
    assert [len(d.splits[s]) for s in ("train", "validation", "test")] == [4, 2, 2]
    assert d.splits["test"].groups == ["dave", "dave"]


def test_mixed_sample_rates_and_stereo_are_resampled(tmp_path):
    root = make_folder(tmp_path / "af")
    ref = load_dataset(DatasetSpec("audiofolder", str(root))).splits["train"].x
    write(root / "cat" / "alice_0.wav", tone(300, sr=8000), sr=8000)
    stereo = np.stack([tone(600, sr=22050), tone(600, sr=22050)], 1)
    write(root / "dog" / "alice_1.wav", stereo, sr=22050)
    d = load_dataset(DatasetSpec("audiofolder", str(root)))
    assert d.splits["train"].x.shape == ref.shape
    assert np.isfinite(d.splits["train"].x.numpy()).all()


@pytest.mark.parametrize("defect,match", [
    ("nan", "NaN or inf"), ("empty", "zero-length"), ("garbage", "unreadable audio")])
def test_bad_audio_named_or_skipped(tmp_path, defect, match):
    root = make_folder(tmp_path / "af")
    bad = root / "cat" / "zed_0.wav"
    if defect == "nan":
        a = tone(300)
        a[100] = np.nan
        sf.write(str(bad), a, 16000, subtype="FLOAT")
    elif defect == "empty":
        sf.write(str(bad), np.zeros(0, np.float32), 16000)
    else:
        bad.write_bytes(b"RIFF not really a wav")
    with pytest.raises(BadInput, match=match) as e:
        load_dataset(DatasetSpec("audiofolder", str(root)))
    assert "zed_0.wav" in str(e.value)
    d = load_dataset(DatasetSpec("audiofolder", str(root), skip_bad=True))
    assert sum(len(s) for s in d.splits.values()) == 10 and len(d.skipped) == 1


def test_manifest(tmp_path):
    root = make_folder(tmp_path / "m")
    rows = [("cat/alice_0.wav", "cat", "train", "alice"), ("dog/alice_1.wav", "dog", "train", "alice"),
            ("cat/bob_0.wav", "cat", "val", "bob"), ("dog/bob_1.wav", "dog", "validation", "bob"),
            ("cat/carol_0.wav", "cat", "test", "carol"), ("dog/carol_1.wav", "dog", "test", "carol")]
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split", "speaker"])
        w.writerows(rows)
    d = load_dataset(DatasetSpec("manifest", str(root / "manifest.csv")))
    assert d.classes == ["cat", "dog"]
    assert [len(d.splits[s]) for s in ("train", "validation", "test")] == [2, 2, 2]
    assert d.splits["test"].groups == ["carol", "carol"]


@pytest.mark.parametrize("header,row,match", [
    (["file", "label"], ["cat/alice_0.wav", "cat"], "missing column"),
    (["path", "label", "split"], ["cat/alice_0.wav", "cat", "holdout"], "unknown split 'holdout'"),
    (["path", "label"], ["cat/nobody.wav", "cat"], "no such file"),
])
def test_manifest_errors(tmp_path, header, row, match):
    root = make_folder(tmp_path / "m")
    with open(root / "manifest.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, row])
    with pytest.raises(BadInput, match=match):
        load_dataset(DatasetSpec("manifest", str(root)))


def test_shd(tmp_path):
    h5py = pytest.importorskip("h5py")
    root = tmp_path / "shd"
    root.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("test", 10)):
        with h5py.File(root / f"shd_{split}.h5", "w") as f:
            vt = h5py.vlen_dtype(np.float32)
            vu = h5py.vlen_dtype(np.uint16)
            times = f.create_dataset("spikes/times", (n,), dtype=vt)
            units = f.create_dataset("spikes/units", (n,), dtype=vu)
            labels = np.arange(n) % 20
            for i in range(n):
                k = 200
                times[i] = np.sort(rng.uniform(0, 1.0, k)).astype(np.float32)
                units[i] = (rng.integers(0, 35, k) + 35 * labels[i]).astype(np.uint16)
            f["labels"] = labels.astype(np.uint8)
            f["extra/speaker"] = (np.arange(n) % 4).astype(np.uint8)
    d = load_dataset(DatasetSpec("shd", str(root), frames=50))
    assert d.splits["train"].x.shape[1:] == (50, 700)
    assert len(d.splits["train"]) + len(d.splits["validation"]) == 40 and len(d.splits["test"]) == 10
    assert float(d.splits["test"].x[0].sum()) == 200.0  # every spike lands in a bin
    assert len(d.splits["validation"]) == 20  # one per class (2 per class in train)


def _spike_file(path, labels, rng, max_time):
    import h5py

    with h5py.File(path, "w") as f:
        vt, vu = h5py.vlen_dtype(np.float32), h5py.vlen_dtype(np.uint16)
        times = f.create_dataset("spikes/times", (len(labels),), dtype=vt)
        units = f.create_dataset("spikes/units", (len(labels),), dtype=vu)
        for i, c in enumerate(labels):
            times[i] = np.sort(rng.uniform(0, max_time, 100)).astype(np.float32)
            units[i] = (rng.integers(0, 20, 100) + 20 * c).astype(np.uint16)  # each class its own channels
        f["labels"] = np.asarray(labels, dtype=np.uint8)
        f["extra/speaker"] = (np.arange(len(labels)) % 3).astype(np.uint8)


def test_ssc_release_layout_with_its_own_validation_file(tmp_path):
    pytest.importorskip("h5py")
    from robustness.cli.main import cli

    root = tmp_path / "ssc"
    root.mkdir()
    rng = np.random.default_rng(0)
    for split, reps in (("train", 2), ("valid", 1), ("test", 1)):
        _spike_file(root / f"ssc_{split}.h5", list(range(35)) * reps, rng, 0.999)
    d = load_dataset(DatasetSpec("ssc", str(root), frames=40))
    assert len(d.classes) == 35 and d.classes[0] == "backward" and d.classes[-1] == "zero"
    assert [len(d.splits[s]) for s in ("train", "validation", "test")] == [70, 35, 35]
    assert d.splits["train"].x.shape[1:] == (40, 700)
    assert float(d.splits["test"].x[3].sum()) == 100.0  # spikes up to 1 s all land in a bin
    ck = tmp_path / "ssc.pt"
    r = CliRunner().invoke(cli, ["train", "--dataset", "ssc", "--data-dir", str(root), "--frames", "40", "--epochs",
                                 "1", "--hidden", "16,16", "--neuron", "adlif", "--out", str(ck), "-q"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["eval", "--model", str(ck), "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["models"][0]["modes"][0]["n"] == 35, r.output
    (root / "ssc_valid.h5").unlink()
    r = CliRunner().invoke(cli, ["eval", "--model", str(ck)])
    assert r.exit_code == 2 and "missing ssc_valid.h5" in r.output and "Traceback" not in r.output
    _spike_file(root / "ssc_valid.h5", [35], rng, 0.5)
    with pytest.raises(BadInput, match="labels outside 0..34"):
        load_dataset(DatasetSpec("ssc", str(root), frames=40))


def test_feature_cache_reused_and_invalidated(tmp_path, cache_dir, monkeypatch):
    root = make_folder(tmp_path / "af")
    first = load_dataset(DatasetSpec("audiofolder", str(root)))
    files = list(cache_dir.iterdir())
    assert len(files) == 1 and not [f for f in files if f.suffix == ".tmp"]
    import robustness.data.audio as audio

    def boom(*a, **k):
        raise AssertionError("features recomputed despite a valid cache")

    monkeypatch.setattr(audio, "_featurize_one", boom)
    again = load_dataset(DatasetSpec("audiofolder", str(root)))
    assert again.fingerprint == first.fingerprint
    monkeypatch.undo()
    monkeypatch.setenv("ROBUST_CACHE", str(cache_dir))
    write(root / "cat" / "alice_0.wav", tone(900, dur=0.4))
    changed = load_dataset(DatasetSpec("audiofolder", str(root)))
    assert changed.fingerprint != first.fingerprint and len(list(cache_dir.iterdir())) == 2


def test_missing_and_non_folder_data_dir(tmp_path):
    with pytest.raises(BadInput, match="does not exist"):
        load_dataset(DatasetSpec("sc", str(tmp_path / "nope")))
    with pytest.raises(BadInput, match="needs --data-dir"):
        load_dataset(DatasetSpec("hd"))
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(BadInput, match="is not a folder"):
        load_dataset(DatasetSpec("audiofolder", str(f)))


def _prepare_in_process(root, cache, q):
    import os

    os.environ["ROBUST_CACHE"] = cache
    from robustness.data import DatasetSpec, load_dataset

    d = load_dataset(DatasetSpec("audiofolder", root), workers=1, progress=False)
    q.put(d.fingerprint)


@pytest.mark.slow
def test_two_processes_preparing_one_cache(tmp_path, cache_dir):
    import multiprocessing as mp

    root = make_folder(tmp_path / "af")
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_prepare_in_process, args=(str(root), str(cache_dir), q)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    keys = {q.get(timeout=5), q.get(timeout=5)}
    assert len(keys) == 1
    files = list(cache_dir.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"
    with np.load(files[0]) as z:
        assert z["x"].shape == (10, 32, 40)  # T follows the 0.3 s clips: 30 frames, rounded up to 32
