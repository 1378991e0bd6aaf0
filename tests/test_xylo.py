"""The bit-shift dynamics against SynSense's own bit-accurate Xylo simulator (`xylosim`, the
engine under Rockpool's XyloSim), where it installs: the same integer weights, bit shifts and
thresholds, the same input events, every membrane, synaptic current and spike equal, step by
step. Skips cleanly without it (`pip install xylosim`).

The hand-derived vectors in tests/test_fixed_point.py hold the same arithmetic without it;
what the probes of xylosim showed (and those tests pin): input is added to the synaptic
current before its decay, a positive state decays by at least one unit, the shift floors,
the neuron fires at V >= threshold and subtracts it, 16-bit states saturate.
"""

import pytest
import torch

from models.chip_profiles import PROFILES
from models.integer_forward import LayerState, layer_constants, step
from models.model_config import ModelConfig

xylosim = pytest.importorskip("xylosim.v2", reason="xylosim (SynSense's Xylo simulator) is not installed")

XYLO = PROFILES["xylo-audio"].arithmetic
N_IN, N_HID, STEPS = 5, 7, 60


def _xylo(w_in, w_rec, dash_mem, dash_syn, threshold):
    syn_in = [[xylosim.XyloSynapse(h, 0, int(w_in[h, i])) for h in range(N_HID) if w_in[h, i]] for i in range(N_IN)]
    syn_rec = [[xylosim.XyloSynapse(h, 0, int(w_rec[h, j])) for h in range(N_HID) if w_rec[h, j]]
               for j in range(N_HID)]
    syn_out = [[xylosim.XyloSynapse(0, 0, 1)] for _ in range(N_HID)]  # every hidden neuron needs an output synapse
    # the layer refers to the synapse objects without owning them (Rockpool keeps them on its
    # module for that reason): they must outlive it
    return (syn_in, syn_rec, syn_out), xylosim.XyloLayer(
        synapses_in=syn_in, synapses_rec=syn_rec, synapses_out=syn_out, aliases=[[] for _ in range(N_HID)],
        threshold=[int(x) for x in threshold], threshold_out=[30000], has_bias=False, bias=[0] * N_HID,
        bias_out=[0], weight_shift_inp=0, weight_shift_rec=0, weight_shift_out=0,
        dash_mem=[int(d) for d in dash_mem], dash_mem_out=[0], dash_syns=[[int(d), 0] for d in dash_syn],
        dash_syns_out=[[0]], name="cross-check")


def _ours(cfg, w_in, w_rec, dash_mem, dash_syn, threshold, raster):
    t = {"blocks.0.linear.weight": w_in.double().unsqueeze(0),
         "blocks.0.alpha": (1.0 - torch.exp2(-dash_mem.double())).unsqueeze(0),
         "blocks.0.v_th": threshold.double().unsqueeze(0), "blocks.0.mem_bias": torch.zeros(1, N_HID)}
    if cfg.neuron == "cuba_lif":
        t["blocks.0.beta"] = (1.0 - torch.exp2(-dash_syn.double())).unsqueeze(0)
    if cfg.neuron == "rlif":
        t["blocks.0.recurrent.linear.weight"] = w_rec.double().unsqueeze(0)
    c = layer_constants(cfg, t, 0, XYLO)
    st = LayerState(1, 1, N_HID, torch.device("cpu"))
    v, i, z = [], [], []
    for row in raster:
        s = step(c, XYLO, cfg, torch.tensor([row], dtype=torch.float64), st)
        v.append((st.u - c["th"] * s)[0, 0].tolist())  # xylosim records the membrane after its reset
        i.append(st.i[0, 0].tolist())
        z.append(s[0, 0].tolist())
    return v, i, z


def _case(seed: int | str, recurrent: bool):
    """Random integer weights, shifts, thresholds and input events; `burst`: drive strong
    enough for several events per step, past the chip's cap of 31 and into saturation."""
    burst = seed == "burst"
    g = torch.Generator().manual_seed(7 if burst else seed)
    w_in = torch.randint(60, 128, (N_HID, N_IN), generator=g) if burst else torch.randint(-40, 60, (N_HID, N_IN), generator=g)
    w_rec = torch.randint(-30, 30, (N_HID, N_HID), generator=g) * (1 - torch.eye(N_HID, dtype=torch.long))
    dash_mem = torch.randint(1, 6, (N_HID,), generator=g)
    dash_syn = torch.ones(N_HID, dtype=torch.long) if recurrent else torch.randint(1, 4, (N_HID,), generator=g)
    low = (2, 10) if burst else (40, 120) if recurrent else (150, 400)  # dash_syn 1 passes less charge per step
    threshold = torch.randint(*low, (N_HID,), generator=g)
    raster = ((torch.rand(STEPS, N_IN, generator=g) < 0.3).long() * (15 if burst else 1)).tolist()
    return w_in, (w_rec if recurrent else torch.zeros_like(w_rec)), dash_mem, dash_syn, threshold, raster


@pytest.mark.parametrize("seed", [0, 1, 2, "burst"])
@pytest.mark.parametrize("neuron", ["cuba_lif", "rlif"])
def test_bit_shift_dynamics_match_xylosim(neuron, seed):
    cfg = ModelConfig(input_dim=N_IN, num_classes=2, hidden=(N_HID,), neuron=neuron)
    w_in, w_rec, dash_mem, dash_syn, threshold, raster = _case(seed, neuron == "rlif")
    keep, sim = _xylo(w_in, w_rec, dash_mem, dash_syn, threshold)
    sim.evolve(raster)
    spikes = [list(map(int, r)) for r in sim.rec_recurrent_spikes]
    assert sum(map(sum, spikes)) > 5  # the neurons do fire
    v, i, z = _ours(cfg, w_in, w_rec, dash_mem, dash_syn, threshold, raster)
    if seed == "burst":
        assert max(max(r) for r in spikes) == 31  # the cap
    assert z == spikes
    # states are recorded per neuron over time, spikes per time step over neurons
    assert v == [list(map(int, r)) for r in zip(*sim.rec_v_mem)]
    assert i == [list(map(int, r)) for r in zip(*sim.rec_i_syn)]
