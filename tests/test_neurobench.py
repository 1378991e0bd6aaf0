"""Our efficiency metrics against the `neurobench` package's own on the same network, where it
imports (it requires torchaudio, which this project does not install: `pip install --no-deps
neurobench snntorch` runs this test; elsewhere it skips).

NeuroBench hooks torch layers, so the network is rebuilt step by step from its tensors: one
nn.Linear per layer called at every step, a stateful LIF module as the activation, BatchNorm
folded into the hidden Linears and applied to the rates before the readout, as our forward does.
"""

import pytest
import torch
from torch import nn

nb_bench = pytest.importorskip("neurobench.benchmarks", reason="neurobench is not installed")
from neurobench.metrics.static import ConnectionSparsity, Footprint  # noqa: E402
from neurobench.metrics.workload import ActivationSparsity, SynapticOperations  # noqa: E402
from neurobench.models import TorchModel  # noqa: E402

from models.deploy import deploy_tensors  # noqa: E402
from models.layers import bn_affine  # noqa: E402
from models.model_config import ForwardOptions, ModelConfig  # noqa: E402
from models.network import SpikingNet  # noqa: E402
from robustness.efficiency import efficiency  # noqa: E402
from robustness.evaluate import stacked_logp  # noqa: E402


class LIF(nn.Module):
    """v = alpha (v - v_th s) + (1 - alpha) I, s = v > v_th: the activation NeuroBench watches."""

    def __init__(self, alpha, v_th):
        super().__init__()
        self.alpha, self.v_th, self.v, self.s = alpha, v_th, None, None

    def forward(self, cur):
        if self.v is None:
            self.v, self.s = torch.zeros_like(cur), torch.zeros_like(cur)
        self.v = self.alpha * (self.v - self.v_th * self.s) + (1 - self.alpha) * cur
        self.s = (self.v > self.v_th).float()
        return self.s


class StepNet(nn.Module):
    def __init__(self, cfg, t):
        super().__init__()
        d = deploy_tensors(cfg, t, fold_bn=True)
        self.linears = nn.ModuleList()
        self.neurons = nn.ModuleList()
        for i, h in enumerate(cfg.hidden):
            lin = nn.Linear(d[f"blocks.{i}.linear.weight"].shape[2], h)
            lin.weight.data = d[f"blocks.{i}.linear.weight"][0].clone()
            lin.bias.data = d[f"blocks.{i}.linear.bias"][0].clone()
            self.linears.append(lin)
            self.neurons.append(LIF(d[f"blocks.{i}.alpha"][0], d[f"blocks.{i}.v_th"][0]))
        self.scale, self.shift = (v[0] for v in bn_affine(t, "readout.bn", cfg.bn_eps))
        self.readout = nn.Linear(cfg.hidden[-1], cfg.num_classes)
        self.readout.weight.data = t["readout.linear.weight"][0].clone()
        self.readout.bias.data = t["readout.linear.bias"][0].clone()

    def forward(self, x):
        for n in self.neurons:
            n.v = None
        total = 0
        for step in range(x.shape[1]):
            h = x[:, step]
            for lin, n in zip(self.linears, self.neurons):
                h = n(lin(h))
            total = total + h
        return self.readout(total / x.shape[1] * self.scale + self.shift)


def test_efficiency_matches_neurobench():
    g = torch.Generator().manual_seed(5)
    cfg = ModelConfig(input_dim=12, num_classes=4, hidden=(20, 16))
    net = SpikingNet(cfg, g).eval()
    with torch.no_grad():
        for blk in net.blocks:
            blk.linear.weight.mul_(4.0)
        net.blocks[1].linear.weight[:, :3] = 0.0  # some connections absent
    x = torch.randn(24, 15, 12, generator=g)
    x[:, :, 0] = 0.0  # a silent input feature
    t = {n: v.detach() for n, v in net.stacked(1).items()}
    tally: dict = {}
    stacked_logp(cfg, t, x, opt=ForwardOptions(tally=tally))
    ours = efficiency(cfg, t, tally, len(x), x.shape[1])[0]

    step = StepNet(cfg, t)
    model = TorchModel(step)
    model.add_activation_module(LIF)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.zeros(len(x))), batch_size=8)
    bench = nb_bench.Benchmark(model, loader, [], [], [[], [ActivationSparsity, SynapticOperations]])
    theirs = bench.run(quiet=True)
    assert ours["activation_sparsity"] == pytest.approx(theirs["ActivationSparsity"], abs=1e-3)  # they round to 3
    syn = theirs["SynapticOperations"]
    assert ours["synops_dense"] == pytest.approx(syn["Dense"])
    assert ours["effective_macs"] == pytest.approx(syn["Effective_MACs"])
    assert ours["effective_acs"] == pytest.approx(syn["Effective_ACs"])
    assert 0 < ours["effective_acs"] < ours["synops_dense"]

    static = TorchModel(net)
    assert ours["footprint_bytes"] == Footprint()(static)
    assert ours["connection_sparsity"] == pytest.approx(ConnectionSparsity()(static), abs=1e-3)
