"""Read noise is a function of (draw, example, step, neuron): no cut of the work changes it."""

import random

import pytest
import torch

import models.chunking as chunking
from models.counter_rng import _signed, counter_normal, mix64, mix64_reference
from models.hardware import add_read_noise
from robustness.sweep.run import PerturbationPlan, SweepConfig, run_sweep


def test_mix64_is_splitmix64_on_any_bit_pattern():
    rng = random.Random(0)
    xs = [0, 1, (1 << 63) - 1, 1 << 63, (1 << 64) - 1] + [rng.getrandbits(64) for _ in range(200)]
    got = mix64(torch.tensor([_signed(x) for x in xs], dtype=torch.int64)).tolist()
    assert got == [_signed(mix64_reference(x)) for x in xs]


def test_noise_of_a_piece_equals_the_same_coordinates_of_the_whole():
    keys = torch.tensor([11, -5, 2**62 + 3])
    whole = counter_normal(keys, torch.arange(40), torch.arange(30), 17)
    piece = counter_normal(keys[1:2], torch.arange(9, 23), torch.arange(4, 11), 17)
    assert torch.equal(whole[1:2, 4:11, 9:23], piece)
    assert not torch.equal(whole[0], whole[1])  # each key its own stream
    assert whole.mean().abs() < 0.02 and abs(whole.std().item() - 1) < 0.02


def test_read_noise_scales_by_the_rms_of_each_read_and_ignores_how_steps_are_chunked():
    g = torch.Generator().manual_seed(0)
    cur = torch.randn(2, 12, 5, 64, generator=g) * torch.linspace(0.1, 3, 12).view(1, 12, 1, 1)
    cur[:, 3] = 0  # no input at step 3: nothing to read, no noise
    level, keys = torch.tensor([0.2, 0.5]), torch.tensor([1, 2])
    whole = add_read_noise(cur, level, keys, example0=7, step0=0)
    chunks = torch.cat([add_read_noise(cur[:, a:a + 5, 2:], level, keys, example0=9, step0=a)
                        for a in range(0, 12, 5)], 1)
    assert torch.equal(whole[:, :, 2:], chunks)
    rel = (whole - cur) / cur.square().mean(-1, keepdim=True).sqrt()
    assert torch.equal(whole[:, 3], cur[:, 3])
    for k, lv in enumerate(level.tolist()):
        assert rel[k, [t for t in range(12) if t != 3]].std().item() == pytest.approx(lv, rel=0.05)


COLUMNS = ("accuracy", "nll", "brier", "ece", "example_correct", "example_nll", "spike_rates")


def _cells(ck, path, seeds, **kw):
    cfg = SweepConfig((str(ck),), (PerturbationPlan("read-noise", (0.3,)),), seeds=seeds, limit=60, mc_samples=2, **kw)
    return {(r.mode, r.seed): r for r in run_sweep(cfg, str(path), progress=False).rows
            if r.perturbation == "read-noise"}


@pytest.mark.slow
def test_a_read_noise_cell_is_the_same_number_whatever_cuts_the_work(tiny_checkpoints, tmp_path, monkeypatch):
    ck = tiny_checkpoints["adam"]
    ref = _cells(ck, tmp_path / "ref.db", 2)
    variants = []
    monkeypatch.setenv("ROBUST_CHUNK_BYTES", "20000")  # a tiny cache: short chunks, small batches
    variants.append(_cells(ck, tmp_path / "small.db", 2))
    monkeypatch.setenv("ROBUST_CHUNK_BYTES", str(1 << 30))  # a huge one: the whole sequence in one chunk
    variants.append(_cells(ck, tmp_path / "huge.db", 5))  # and more seeds sharing each pass
    monkeypatch.delenv("ROBUST_CHUNK_BYTES")
    monkeypatch.setattr(chunking, "MAX_NETWORKS_PER_PASS", 1)  # every network in a pass of its own
    variants.append(_cells(ck, tmp_path / "alone.db", 2))
    for other in variants:
        for key, row in ref.items():
            assert all(getattr(row, c) == getattr(other[key], c) for c in COLUMNS), key
    assert ref[("chips", 0)].accuracy != ref[("chips", 1)].accuracy or \
        ref[("chips", 0)].example_nll != ref[("chips", 1)].example_nll  # two chips, two noise streams
