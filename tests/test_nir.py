"""NIR export and import: our round trip, a graph from Norse's own exporter, refusals."""

import warnings

import nir
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from models.checkpoint import load_checkpoint
from models.network import forward_stacked
from robustness.cli.main import cli
from robustness.data import DatasetSpec, load_dataset


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def test_x():
    return load_dataset(DatasetSpec()).split("test").x[:64]


def logits(ck, x):
    with torch.no_grad():
        return forward_stacked(ck.net.cfg, ck.net.stacked(1), x)[0][0]


def test_export_then_import_gives_the_same_network(tiny_checkpoints, tmp_path, test_x):
    graph, back = tmp_path / "m.nir", tmp_path / "back.pt"
    r = run("export-nir", "--model", tiny_checkpoints["adam"], "--out", graph)
    assert r.exit_code == 0, r.output
    r = run("import", graph, "--out", back, "--quiet")
    assert r.exit_code == 0, r.output
    assert "reset subtract, dt 0.01 s" in r.output
    a, b = load_checkpoint(tiny_checkpoints["adam"]), load_checkpoint(back)
    la, lb = logits(a, test_x), logits(b, test_x)
    assert b.net.spike_rates(test_x)[0] > 0
    # BatchNorm folded into the weights rounds differently: logits agree to float32 precision
    assert float((la - lb).abs().max()) < 1e-3
    assert (la.argmax(-1) == lb.argmax(-1)).float().mean() >= 0.98
    # Exporting the imported model gives the same graph again.
    g1 = nir.read(str(graph))
    r = run("export-nir", "--model", back, "--out", tmp_path / "again.nir")
    g2 = nir.read(str(tmp_path / "again.nir"))
    assert list(g1.nodes) == list(g2.nodes)
    for name in ("fc0", "fc1", "readout"):
        np.testing.assert_allclose(g2.nodes[name].weight, g1.nodes[name].weight, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(g2.nodes["lif0"].tau, g1.nodes["lif0"].tau, rtol=1e-6)


def test_ivon_posterior_samples_export_as_separate_graphs(tiny_checkpoints, tmp_path):
    r = run("export-nir", "--model", tiny_checkpoints["ivon"], "--sample", 2, "--out", tmp_path / "s.nir", "--quiet")
    assert r.exit_code == 0, r.output
    a, b = nir.read(str(tmp_path / "s-0.nir")), nir.read(str(tmp_path / "s-1.nir"))
    assert not np.allclose(a.nodes["fc0"].weight, b.nodes["fc0"].weight)
    r = run("export-nir", "--model", tiny_checkpoints["adam"], "--sample", 2, "--out", tmp_path / "x.nir")
    assert r.exit_code == 2 and "no posterior" in r.output


def test_graph_from_norse_imports_and_runs_as_norse_does(tmp_path, test_x):
    warnings.filterwarnings("ignore")
    import norse.torch as norse
    from norse.torch.utils.export_nir import to_nir

    g = torch.Generator().manual_seed(0)

    def lif(h):
        return norse.LIFBoxCell(norse.LIFBoxParameters(
            tau_mem_inv=50 + 100 * torch.rand(h, generator=g), v_th=torch.full((h,), 0.3),
            v_leak=torch.zeros(h), v_reset=torch.zeros(h)))

    torch.manual_seed(0)
    model = norse.SequentialState(torch.nn.Linear(40, 24), lif(24), torch.nn.Linear(24, 16), lif(16),
                                  torch.nn.Linear(16, 20))
    # Norse's exporter writes tau = dt / tau_mem_inv: dt = 1 gives seconds, what its importer reads back
    nir.write(str(tmp_path / "norse.nir"), to_nir(model, torch.randn(1, 40), dt=1.0))
    r = run("import", tmp_path / "norse.nir", "--out", tmp_path / "n.pt", "--dt", 0.001, "--quiet")
    assert r.exit_code == 0, r.output
    assert "reset zero" in r.output
    x = 3 * test_x[:16]
    with torch.no_grad():
        state, outs = None, []
        for t in range(x.shape[1]):  # Norse runs one time step at a time
            out, state = model(x[:, t], state)
            outs.append(out)
        ref = torch.stack(outs).mean(0)
    ck = load_checkpoint(tmp_path / "n.pt")
    assert ck.net.spike_rates(x)[1] > 0, "no spikes in the last layer: the comparison would be vacuous"
    torch.testing.assert_close(logits(ck, x), ref, atol=1e-4, rtol=1e-4)


def _run_steps(module, x):
    """Time-averaged outputs of a Norse module run one step at a time."""
    with torch.no_grad():
        state, outs = None, []
        for t in range(x.shape[1]):
            out, state = module(x[:, t], state)
            outs.append(out)
    return torch.stack(outs).mean(0)


def test_cuba_lif_and_if_graphs_from_norse_run_as_norse_runs_them(tmp_path, test_x, monkeypatch):
    warnings.filterwarnings("ignore")
    import norse.torch as norse
    from norse.torch.utils.export_nir import to_nir
    from norse.torch.utils.import_nir import from_nir as norse_from_nir

    def cuba(h, g):
        return norse.LIFCell(norse.LIFParameters(
            tau_syn_inv=150 + 100 * torch.rand(h, generator=g), tau_mem_inv=50 + 100 * torch.rand(h, generator=g),
            v_th=torch.full((h,), 0.1), v_leak=torch.zeros(h), v_reset=torch.zeros(h)))

    def iaf(h, g):
        return norse.IAFCell(norse.IAFParameters(v_th=0.5 + torch.rand(h, generator=g), v_reset=torch.zeros(h)))

    x = 3 * test_x[:16]
    # a chunk of 8 steps: the synaptic currents must carry over from chunk to chunk
    monkeypatch.setenv("ROBUST_CHUNK_BYTES", str(8 * 16 * 24 * 4))
    for kind, cell in (("CubaLIF", cuba), ("IF", iaf)):
        g = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        model = norse.SequentialState(torch.nn.Linear(40, 24), cell(24, g), torch.nn.Linear(24, 16), cell(16, g),
                                      torch.nn.Linear(16, 20))
        graph = to_nir(model, torch.randn(1, 40), dt=1.0)
        assert type(graph.nodes["1"]).__name__ == kind
        nir.write(str(tmp_path / f"{kind}.nir"), graph)
        r = run("import", tmp_path / f"{kind}.nir", "--out", tmp_path / f"{kind}.pt", "--dt", 0.001, "--quiet")
        assert r.exit_code == 0, r.output
        ck = load_checkpoint(tmp_path / f"{kind}.pt")
        assert ck.net.cfg.neuron == {"CubaLIF": "cuba_lif", "IF": "if"}[kind]
        assert ck.net.spike_rates(x)[1] > 0.005, "too few spikes in the last layer: the comparison would be vacuous"
        # NIR's CubaLIF is an ODE; Norse's importer steps it as we do (its LIFCell steps it differently)
        ref = _run_steps(norse_from_nir(graph, dt=0.001, ignore_warnings=True), x)
        torch.testing.assert_close(logits(ck, x), ref, atol=1e-4, rtol=1e-4)
        if kind == "IF":  # the charge-per-step reading is Norse's own IAFCell
            torch.testing.assert_close(logits(ck, x), _run_steps(model, x), atol=1e-4, rtol=1e-4)
        # the differentiable path (used by the attack) agrees with the chunked inference
        t = {n: v.clone().requires_grad_(v.is_floating_point()) for n, v in ck.net.stacked(1).items()}
        torch.testing.assert_close(forward_stacked(ck.net.cfg, t, x)[0][0].detach(), logits(ck, x),
                                   atol=1e-5, rtol=1e-5)
        # and our export of it imports back to the same network
        r = run("export-nir", "--model", tmp_path / f"{kind}.pt", "--out", tmp_path / f"{kind}-again.nir", "--dt", 0.001)
        assert r.exit_code == 0, r.output
        again = nir.read(str(tmp_path / f"{kind}-again.nir"))
        assert type(again.nodes["lif0"]).__name__ == kind
        r = run("import", tmp_path / f"{kind}-again.nir", "--out", tmp_path / f"{kind}-2.pt", "--quiet")
        assert r.exit_code == 0, r.output
        torch.testing.assert_close(logits(load_checkpoint(tmp_path / f"{kind}-2.pt"), x), logits(ck, x),
                                   atol=1e-4, rtol=1e-4)


def test_a_threshold_node_is_a_memoryless_neuron(tmp_path, test_x):
    g = torch.Generator().manual_seed(1)
    w1, b1, theta = torch.randn(24, 40, generator=g) / 6, torch.randn(24, generator=g) / 4, torch.rand(24, generator=g)
    w2, b2 = torch.randn(20, 24, generator=g), torch.randn(20, generator=g)
    nodes = {"input": nir.Input(input_type=np.array([40])),
             "fc": nir.Affine(weight=w1.double().numpy(), bias=b1.double().numpy()),
             "th": nir.Threshold(threshold=theta.double().numpy()),
             "out": nir.Affine(weight=w2.double().numpy(), bias=b2.double().numpy()),
             "output": nir.Output(output_type=np.array([20]))}
    edges = [("input", "fc"), ("fc", "th"), ("th", "out"), ("out", "output")]
    nir.write(str(tmp_path / "th.nir"), nir.NIRGraph(nodes=nodes, edges=edges))
    r = run("import", tmp_path / "th.nir", "--out", tmp_path / "th.pt", "--quiet")
    assert r.exit_code == 0, r.output
    x = test_x[:16]
    z = (x @ w1.T + b1 > theta).float()  # [B, T, H]: each step on its own
    assert 0.05 < float(z.mean()) < 0.95
    torch.testing.assert_close(logits(load_checkpoint(tmp_path / "th.pt"), x), (z @ w2.T + b2).mean(1),
                               atol=1e-5, rtol=1e-5)


def test_unsupported_graphs_are_refused_with_the_node_named(tmp_path):
    h = 8
    nodes = {"input": nir.Input(input_type=np.array([40])),
             "fc": nir.Affine(weight=np.ones((h, 40)), bias=np.zeros(h)),
             "syn": nir.LI(tau=np.ones(h), r=np.ones(h), v_leak=np.zeros(h)),
             "out": nir.Affine(weight=np.ones((20, h)), bias=np.zeros(20)),
             "output": nir.Output(output_type=np.array([20]))}
    edges = [("input", "fc"), ("fc", "syn"), ("syn", "out"), ("out", "output")]
    nir.write(str(tmp_path / "li.nir"), nir.NIRGraph(nodes=nodes, edges=edges))
    r = run("import", tmp_path / "li.nir", "--out", tmp_path / "c.pt")
    assert r.exit_code == 2 and "'syn' (LI) is not supported" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "c.pt").exists()
    (tmp_path / "junk.nir").write_text("not hdf5")
    r = run("import", tmp_path / "junk.nir", "--out", tmp_path / "c.pt")
    assert r.exit_code == 2 and "not a readable NIR graph" in r.output


def test_an_rlif_network_round_trips_as_a_recurrent_graph(tmp_path, test_x):
    """Recurrent synapses export as a Linear self-loop on their LIF node (NIR allows cycles)
    and import back as an rlif network that computes the same logits."""
    ck, graph, back = tmp_path / "r.pt", tmp_path / "r.nir", tmp_path / "back.pt"
    r = run("train", "--neuron", "rlif", "--epochs", 2, "--hidden", "24,24", "--limit-train", 300, "--out", ck, "-q")
    assert r.exit_code == 0, r.output
    assert run("export-nir", "--model", ck, "--out", graph).exit_code == 0
    g = nir.read(str(graph))
    assert {("lif0", "rec0"), ("rec0", "lif0"), ("lif1", "rec1"), ("rec1", "lif1")} <= set(g.edges)
    assert np.count_nonzero(np.diagonal(g.nodes["rec0"].weight)) == 0
    r = run("import", graph, "--out", back, "--quiet")
    assert r.exit_code == 0, r.output
    a, b = load_checkpoint(ck), load_checkpoint(back)
    assert b.net.cfg.neuron == "rlif" and b.net.spike_rates(test_x)[0] > 0
    la, lb = logits(a, test_x), logits(b, test_x)
    assert float((la - lb).abs().max()) < 1e-3 and (la.argmax(-1) == lb.argmax(-1)).float().mean() >= 0.98
    # a self-connection, which our layers cannot hold, is refused by name
    g.nodes["rec0"].weight[0, 0] = 1.0
    nir.write(str(tmp_path / "self.nir"), g)
    r = run("import", tmp_path / "self.nir", "--out", tmp_path / "x.pt")
    assert r.exit_code == 2 and "'rec0'" in r.output and "self-connections" in r.output
    assert not (tmp_path / "x.pt").exists()
