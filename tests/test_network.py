import torch

from models.model_config import ForwardOptions

from models.network import SpikingNet, forward_stacked


def _trained_like(cfg):
    """A net whose BN statistics make neurons fire (fresh stats on random data)."""
    net = SpikingNet(cfg, torch.Generator().manual_seed(0))
    # temporally constant input lets membranes integrate up to threshold
    x = torch.randn(32, 1, cfg.input_dim, generator=torch.Generator().manual_seed(1)).expand(32, 20, cfg.input_dim)
    net.train()
    for _ in range(30):
        net(x)
    return net.eval(), x


def test_k_stacked_equals_k_separate_calls(tiny_cfg):
    net, x = _trained_like(tiny_cfg)
    g = torch.Generator().manual_seed(3)
    t = {n: v + 0.05 * torch.randn(v.shape, generator=g) if n.endswith("weight") else v
         for n, v in net.stacked(5).items()}
    with torch.no_grad():
        stacked, rates = forward_stacked(tiny_cfg, t, x)
        for k in range(5):
            single, r1 = forward_stacked(tiny_cfg, {n: v[k:k + 1] for n, v in t.items()}, x)
            torch.testing.assert_close(single[0], stacked[k], atol=1e-5, rtol=1e-5)
            assert abs(r1[0].item() - rates[0][k].item()) < 1e-6
    assert rates[0].min() > 0  # neurons fire, so the comparison is not vacuous
    assert not torch.allclose(stacked[0], stacked[1])


def test_module_forward_equals_functional(tiny_cfg):
    net, x = _trained_like(tiny_cfg)
    with torch.no_grad():
        a = net(x)
        b, _ = forward_stacked(tiny_cfg, net.stacked(1), x)
    assert torch.equal(a, b[0])
    assert a.shape == (32, tiny_cfg.num_classes)


def test_running_stats_move_only_when_asked(tiny_cfg):
    net = SpikingNet(tiny_cfg).train()
    x = torch.randn(8, 10, 40)
    before = net.blocks[0].bn.running_mean.clone()
    net(x, update_running=False)
    assert torch.equal(before, net.blocks[0].bn.running_mean)
    net(x)
    assert not torch.equal(before, net.blocks[0].bn.running_mean)


def test_gradients_reach_every_parameter(tiny_cfg):
    net = SpikingNet(tiny_cfg).train()
    x = torch.randn(16, 1, 40).expand(16, 12, 40)
    loss = torch.nn.functional.cross_entropy(net(x, torch.Generator().manual_seed(0)), torch.arange(16) % 20)
    loss.backward()
    for n, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
    assert net.blocks[0].linear.weight.grad.abs().sum() > 0


def test_state_dict_holds_thresholds_and_leaks(tiny_cfg):
    sd = SpikingNet(tiny_cfg).state_dict()
    assert "blocks.0.v_th" in sd and "blocks.1.alpha" in sd
    assert torch.all(sd["blocks.0.v_th"] == tiny_cfg.threshold)


def test_recorded_stats_per_network(tiny_cfg):
    net, x = _trained_like(tiny_cfg)
    stats = {}
    forward_stacked(tiny_cfg, net.stacked(3), x, ForwardOptions(bn_batch_stats=True, record_stats=stats))
    s, sq, n = stats["blocks.0.bn"]
    assert s.shape == (3, 24) and n == 32 * 20
