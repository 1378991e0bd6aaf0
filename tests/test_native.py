"""The compiled LIF kernel against the eager reference: same spikes, same gradients, safe fallback."""

import logging
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from basics.errors import BadInput
from models import native
from models.deploy import deploy_tensors
from models.model_config import ForwardOptions, ModelConfig
from models.network import SpikingNet, forward_stacked
from perturbations.base import PERTURBATIONS, Context
from perturbations.spec import apply, parse_spec
from tests.test_perturbations import LEVELS, SPECS  # each perturbation's level and options

CFG = ModelConfig(input_dim=12, num_classes=5, hidden=(20, 17))  # widths off the 16-float vector width
HIDDEN = ("blocks.0", "blocks.1")

needs_compiler = pytest.mark.skipif(native.find_compiler() is None, reason="no C compiler on this machine")
EAGER, NATIVE = native.Kernel("eager"), native.Kernel("native")


def on(kernel):
    return ForwardOptions(kernel=kernel)


def firing_net(cfg=CFG):
    """A net whose BN statistics make neurons fire (statistics from a few training-mode passes)."""
    net = SpikingNet(cfg, torch.Generator().manual_seed(0))
    x = torch.randn(16, 1, cfg.input_dim, generator=torch.Generator().manual_seed(1)).expand(16, 30, cfg.input_dim)
    net.train()
    with torch.no_grad():
        for _ in range(20):
            net(x)
    return net.eval()


def both_paths(t, x):
    with torch.no_grad():
        return forward_stacked(CFG, t, x, on(EAGER)), forward_stacked(CFG, t, x, on(NATIVE))


@needs_compiler
@pytest.mark.parametrize("name", sorted(PERTURBATIONS))
def test_compiled_inference_equals_eager_for_every_perturbation(name):
    """Bit for bit: the kernel rounds like eager, so not one spike may flip under any perturbation."""
    net = firing_net()
    base = {n: v.detach() for n, v in deploy_tensors(CFG, net.stacked(3)).items()}
    t = apply(parse_spec(f"{SPECS.get(name, name)}:?"), LEVELS.get(name, 0.1), base, seed=3, draws=[0, 1, 2],
              ctx=Context(HIDDEN + ("readout",), HIDDEN))
    x = torch.randn(9, 23, CFG.input_dim, generator=torch.Generator().manual_seed(2))  # 23 steps: a short last chunk
    (le, re), (lc, rc) = both_paths(t, x)
    assert float(re[0].min()) > 0, "no spikes: the comparison would be vacuous"
    assert torch.equal(le, lc)
    assert all(torch.equal(a, b) for a, b in zip(re, rc))


@needs_compiler
def test_compiled_inference_matches_across_chunk_sizes(monkeypatch):
    """Membranes carry over chunk boundaries: one-step chunks give the whole-sequence answer."""
    t = {n: v.detach() for n, v in firing_net().stacked(2).items()}
    x = torch.randn(5, 17, CFG.input_dim, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        monkeypatch.setenv("ROBUST_CHUNK_BYTES", "1")
        small, _ = forward_stacked(CFG, t, x, on(NATIVE))
        monkeypatch.setenv("ROBUST_CHUNK_BYTES", str(1 << 30))
        whole, _ = forward_stacked(CFG, t, x, on(NATIVE))
    assert torch.equal(small, whole)


def _grads(net, x, y, path):
    kernel = native.Kernel(path)
    net.zero_grad()
    with kernel.training(float("inf")) as used:
        loss = F.cross_entropy(net(x, dropout_generator=torch.Generator().manual_seed(0), kernel=kernel), y)
        loss.backward()
    assert used == path
    return loss.item(), {n: p.grad.clone() for n, p in net.named_parameters()}


@needs_compiler
def test_compiled_training_step_gradients_equal_eager():
    """Forward identical; gradients equal up to the order of the leak's sum over batch and time."""
    cfg = ModelConfig(input_dim=12, num_classes=5, hidden=(20, 17), threshold=0.3)
    net = SpikingNet(cfg, torch.Generator().manual_seed(1)).train()
    x = 3 * torch.randn(6, 25, 12, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    loss_e, ge = _grads(net, x, y, "eager")
    loss_c, gc = _grads(net, x, y, "native")
    assert loss_e == loss_c
    assert ge["blocks.0.linear.weight"].abs().sum() > 0
    for n in ge:
        torch.testing.assert_close(gc[n], ge[n], rtol=1e-5, atol=1e-6, msg=n)


@needs_compiler
def test_compiled_backward_of_thresholds():
    """Hardware-aware training perturbs thresholds with a gradient path: the kernel's dL/dv_th matches."""
    from models.lif import lif_scan

    g = torch.Generator().manual_seed(0)
    drive = 0.6 * torch.rand(2, 15, 3, 10, generator=g)
    alpha = (0.8 + 0.1 * torch.rand(2, 1, 10, generator=g))
    vth = (0.5 + 0.5 * torch.rand(2, 1, 10, generator=g))
    out = {}
    for path in ("eager", "native"):
        kernel = native.Kernel(path)
        leaves = [t.clone().requires_grad_() for t in (drive, alpha, vth)]
        with kernel.training(float("inf")):
            z = lif_scan(*leaves, kernel=kernel)
        (z * torch.arange(15.0).view(1, 15, 1, 1)).sum().backward()
        out[path] = (z.detach(), *[t.grad for t in leaves])
    assert out["eager"][0].sum() > 0 and torch.equal(out["eager"][0], out["native"][0])
    for a, b in zip(out["eager"][1:], out["native"][1:]):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def test_missing_compiler_falls_back_to_eager_with_one_line(tmp_path, caplog):
    kernel = native.Kernel("auto", find=lambda: None, cache=tmp_path)
    t = {n: v.detach() for n, v in firing_net().stacked(2).items()}
    x = torch.randn(4, 10, CFG.input_dim, generator=torch.Generator().manual_seed(0))
    with caplog.at_level(logging.WARNING, logger="models.native"), torch.no_grad():
        assert kernel.library() is None
        a, _ = forward_stacked(CFG, t, x, on(kernel))
        assert kernel.library() is None
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "no C compiler" in lines[0] and "eager" in lines[0]
    with torch.no_grad():
        b, _ = forward_stacked(CFG, t, x, on(EAGER))
    assert torch.equal(a, b)
    with pytest.raises(BadInput, match="--compile: the compiled LIF kernel is unavailable .no C compiler"):
        native.Kernel("native", find=lambda: None, cache=tmp_path).library()


def test_broken_compiler_falls_back(tmp_path, caplog):
    kernel = native.Kernel("auto", find=lambda: "false", cache=tmp_path)  # a "compiler" that always fails
    with caplog.at_level(logging.WARNING, logger="models.native"):
        assert kernel.library() is None
    assert "eager" in caplog.records[0].getMessage()
    assert not list(tmp_path.rglob("*.so*")), "a failed build must leave no file behind"


@needs_compiler
@pytest.mark.slow
def test_auto_builds_only_when_the_work_pays_and_later_processes_load(tmp_path):
    kernel = native.Kernel("auto", cache=tmp_path)
    assert kernel.library(work=1000) is None  # a short CI run pays no build
    assert not list(tmp_path.rglob("*.so"))
    assert kernel.library(work=native.BUILD_WORK) is not None
    built = list(tmp_path.rglob("*.so"))
    assert len(built) == 1
    # A fresh process finds it: auto then uses it even for small work, and builds nothing new.
    code = ("import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stdout);"
            "from models import native; print(native.KERNEL.library(work=1) is not None)")
    env = {**os.environ, "ROBUST_CACHE_DIR": str(tmp_path), "ROBUST_KERNEL": "auto"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip().splitlines()[-1] == "True" and "built" not in out
    assert list(tmp_path.rglob("*.so")) == built


@needs_compiler
def test_training_choice_depends_on_work_not_on_the_cache():
    kernel = native.Kernel("auto")
    kernel.library()  # built and loaded
    with kernel.training(1000) as small:
        assert kernel.training_lib is None
    with kernel.training(native.BUILD_WORK) as large:
        assert kernel.training_lib is not None
    assert (small, large) == ("eager", "native")
    assert kernel.training_lib is None  # only inside the block


def test_mode_is_validated():
    with pytest.raises(ValueError, match="auto, native, eager"):
        native.Kernel("fast")


def test_forced_compile_without_a_compiler_exits_2_before_writing_anything(monkeypatch, tmp_path, tiny_checkpoints):
    from click.testing import CliRunner

    from robustness.cli.main import cli

    monkeypatch.setattr(native, "KERNEL", native.Kernel(find=lambda: None, cache=tmp_path / "cache"))
    store = tmp_path / "s.db"
    r = CliRunner().invoke(cli, ["sweep", "--model", str(tiny_checkpoints["adam"]), "--noise", "0.1", "--seeds", "1",
                                 "--limit", "10", "--compile", "--store", str(store), "-q"])
    assert r.exit_code == 2 and "compiled LIF kernel is unavailable (no C compiler found" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not store.exists()
