"""Training's BatchNorm and scan in the kernel: the eager gradients, the running statistics, any thread count."""

import pytest
import torch
import torch.nn.functional as F

from models import bn_native, native
from models.model_config import ModelConfig
from models.network import SpikingNet
from tests.test_native import needs_compiler

CFG = ModelConfig(input_dim=12, num_classes=5, hidden=(20, 17), threshold=0.3)


def step(path, threads=None, seed=1):
    """One training step's loss, gradients and running statistics on `path`."""
    net = SpikingNet(CFG, torch.Generator().manual_seed(seed)).train()
    x = 3 * torch.randn(6, 25, 12, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    kernel = native.Kernel(path)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads or saved)
    try:
        with kernel.training(float("inf")):
            loss = F.cross_entropy(net(x, dropout_generator=torch.Generator().manual_seed(0), kernel=kernel), y)
            loss.backward()
    finally:
        torch.set_num_threads(saved)
    grads = {n: p.grad.clone() for n, p in net.named_parameters()}
    stats = {n: b.clone() for n, b in net.named_buffers() if "running" in n}
    return loss.item(), grads, stats


@needs_compiler
def test_fused_batchnorm_gradients_and_statistics_match_eager(monkeypatch):
    calls = []
    original = bn_native.scan
    monkeypatch.setattr(bn_native, "scan", lambda *a, **k: calls.append(1) or original(*a, **k))
    loss_e, ge, se = step("eager")
    assert not calls
    loss_c, gc, sc = step("native")
    assert len(calls) == 2  # both hidden layers took the kernel
    assert abs(loss_c - loss_e) < 1e-5
    assert ge["blocks.0.bn.weight"].abs().sum() > 0 and ge["blocks.1.alpha"].abs().sum() > 0
    for n in ge:
        torch.testing.assert_close(gc[n], ge[n], rtol=1e-4, atol=1e-6, msg=n)
    for n in se:
        torch.testing.assert_close(sc[n], se[n], rtol=1e-5, atol=1e-6, msg=n)


@needs_compiler
@pytest.mark.parametrize("seed", [1, 2])
def test_fused_batchnorm_gradients_do_not_depend_on_the_thread_count(seed):
    """Column sums run over a fixed split of the rows: one thread or two, the same bits."""
    one, two = step("native", 1, seed), step("native", 2, seed)
    assert one[0] == two[0]
    assert all(torch.equal(one[1][n], two[1][n]) for n in one[1])
    assert all(torch.equal(one[2][n], two[2][n]) for n in one[2])
