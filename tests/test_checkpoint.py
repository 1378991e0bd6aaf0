import pickle

import pytest
import torch

from models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from models.network import SpikingNet


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_round_trip_keeps_everything(tiny_checkpoints):
    ck = load_checkpoint(tiny_checkpoints["ivon"])
    raw = torch.load(tiny_checkpoints["ivon"], weights_only=True)
    assert raw["version"] == 1 and raw["format"] == "robust-snn"
    assert ck.optimizer == "ivon" and len(ck.classes) == 20 and len(ck.history) == 2
    assert ck.train_config["batch_size"] == 16 and ck.dataset["name"] == "tts-digits"
    assert ck.posterior is not None and ck.posterior.ess == 400.0
    assert set(ck.posterior.hess) == {n for n, _ in ck.net.named_parameters()}
    for n, s in ck.posterior.sigma().items():
        expected = 1 / torch.sqrt(ck.posterior.ess * (ck.posterior.hess[n] + ck.posterior.weight_decay))
        torch.testing.assert_close(s, expected)
    assert ck.meta["ivon_args"]["hess_init"] == 0.1 and ck.meta["ivon_args"]["rescale_lr"] is True
    assert load_checkpoint(tiny_checkpoints["adam"]).posterior is None


def assert_refused(path, match) -> None:
    """Loading fails with a one-line CheckpointError matching `match`."""
    with pytest.raises(CheckpointError, match=match) as e:
        load_checkpoint(path)
    assert "\n" not in str(e.value)
    assert "weights_only" not in str(e.value) and "(101)" not in str(e.value)  # our words, not torch's hint


def _write(path, obj):
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("case,match", [
    ("missing", "no such checkpoint"),
    ("directory", "is a directory"),
    ("garbage", "not a readable checkpoint"),
    ("pickle_code", "holds code or objects"),
    ("text", "not a readable checkpoint: neither torch's zip format nor a pickle"),
    ("not_dict", "not a robust checkpoint"),
    ("version", "version 99 is not supported"),
    ("missing_keys", "missing"),
    ("wrong_shape", "do not match"),
])
def test_bad_checkpoints_raise_one_line(tmp_path, tiny_checkpoints, case, match):
    good = torch.load(tiny_checkpoints["adam"], weights_only=True)
    p = tmp_path / "x.pt"
    if case == "directory":
        p = tmp_path
    elif case == "garbage":
        p.write_bytes(b"\x00not a zip file at all")
    elif case == "text":
        p.write_text("hello world\n")
    elif case == "pickle_code":
        with open(p, "wb") as f:
            pickle.dump({"format": Evil()}, f)
    elif case == "not_dict":
        _write(p, [1, 2, 3])
    elif case == "version":
        _write(p, {**good, "version": 99})
    elif case == "missing_keys":
        _write(p, {k: v for k, v in good.items() if k != "classes"})
    elif case == "wrong_shape":
        sd = dict(good["state_dict"])
        sd["blocks.0.linear.weight"] = torch.zeros(3, 3)
        _write(p, {**good, "state_dict": sd})
    assert_refused(p, match)


def test_save_is_atomic_and_refuses_directory(tmp_path, tiny_cfg):
    net = SpikingNet(tiny_cfg)
    with pytest.raises(CheckpointError, match="is a directory"):
        save_checkpoint(tmp_path, net, train_config={}, dataset={}, features={}, classes=[], history=[])
    out = tmp_path / "m.pt"
    classes = [str(i) for i in range(tiny_cfg.num_classes)]
    save_checkpoint(out, net, train_config={}, dataset={}, features={}, classes=classes, history=[])
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]
    assert torch.equal(load_checkpoint(out).net.blocks[0].linear.weight, net.blocks[0].linear.weight)


def _with(good: dict, case: str) -> dict:
    """A checkpoint of our own format, damaged one way."""
    bad = {**good, "posterior": dict(good["posterior"])}
    post = bad["posterior"]
    if case == "nan_weight":
        sd = dict(good["state_dict"])
        w = sd["blocks.0.linear.weight"].clone()
        w[0, 0] = float("nan")
        bad["state_dict"] = {**sd, "blocks.0.linear.weight": w}
    elif case == "inf_weight":
        sd = dict(good["state_dict"])
        bad["state_dict"] = {**sd, "readout.linear.weight": sd["readout.linear.weight"] * float("inf")}
    elif case in ("nan_hess", "negative_hess"):
        h = {n: v.clone() for n, v in post["hess"].items()}
        first = next(iter(h))
        h[first].view(-1)[0] = float("nan") if case == "nan_hess" else -1.0
        post["hess"] = h
    elif case == "dataset_not_mapping":
        bad["dataset"] = "tts-digits"
    elif case == "posterior_not_mapping":
        bad["posterior"] = [1, 2]
    elif case == "ess_missing":
        del post["ess"]
    elif case == "classes_mismatch":
        bad["classes"] = good["classes"][:3]
    return bad


@pytest.mark.parametrize("case,match", [
    ("nan_weight", "blocks.0.linear.weight holds NaN or inf"),
    ("inf_weight", "readout.linear.weight holds NaN or inf"),
    ("nan_hess", "posterior hess .* holds NaN or inf"),
    ("negative_hess", "is negative"),
    ("dataset_not_mapping", "'dataset' is not a mapping"),
    ("posterior_not_mapping", "'posterior' is not a mapping"),
    ("ess_missing", "'ess' is missing"),
    ("classes_mismatch", "3 class names for a network with 20 outputs"),
])
def test_damaged_checkpoints_of_our_format_are_refused(tmp_path, tiny_checkpoints, case, match):
    good = torch.load(tiny_checkpoints["ivon"], weights_only=True)
    p = _write(tmp_path / "x.pt", _with(good, case))
    assert_refused(p, match)
