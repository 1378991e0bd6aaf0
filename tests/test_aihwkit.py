"""Our crossbar ADC and PCM model against IBM's aihwkit, where it installs (it builds from
source: `pip install aihwkit` needs a C++ compiler, OpenBLAS and mypy's stubgen); skipped
cleanly elsewhere. The same weights go through aihwkit's inference tile and through `robust`
at matched settings: ADC codes agree value for value, programmed and drifted PCM weights in
distribution (two-sample Kolmogorov-Smirnov at each target conductance and time)."""

from __future__ import annotations

import pytest
import torch
from scipy import stats

aihwkit = pytest.importorskip("aihwkit", reason="aihwkit is not installed (optional: it builds from source)")

from aihwkit.inference.compensation.drift import GlobalDriftCompensation  # noqa: E402
from aihwkit.inference.noise.pcm import PCMLikeNoiseModel  # noqa: E402
from aihwkit.nn import AnalogLinear  # noqa: E402
from aihwkit.simulator.configs import TorchInferenceRPUConfig  # noqa: E402
from aihwkit.simulator.parameters.enums import BoundManagementType, NoiseManagementType, WeightClipType  # noqa: E402

from models.crossbar_read import prepare, read  # noqa: E402
from perturbations.base import Context  # noqa: E402
from perturbations.spec import apply, parse_spec  # noqa: E402


def _ideal_io(cfg: TorchInferenceRPUConfig) -> TorchInferenceRPUConfig:
    """No DAC, no output noise, no scaling or clipping of the weights: the tile stores W itself."""
    cfg.forward.out_noise = 0.0
    cfg.forward.inp_res = -1
    cfg.forward.inp_bound = -1
    cfg.forward.noise_management = NoiseManagementType.NONE
    cfg.forward.bound_management = BoundManagementType.NONE
    cfg.mapping.weight_scaling_omega = 0.0
    cfg.mapping.max_input_size = 0
    cfg.mapping.max_output_size = 0
    cfg.clip.type = WeightClipType.NONE
    return cfg


def _tile(w: torch.Tensor, cfg: TorchInferenceRPUConfig) -> AnalogLinear:
    layer = AnalogLinear(w.shape[1], w.shape[0], bias=False, rpu_config=cfg)
    layer.set_weights(w)
    return layer.eval()


@pytest.mark.parametrize("bits", [3, 5, 8])
def test_adc_codes_equal_aihwkit(bits: int) -> None:
    gen = torch.Generator().manual_seed(bits)
    w = torch.randn(8, 16, generator=gen) * 0.3
    x = torch.rand(200, 16, generator=gen) * 2 - 1
    bound = 1.5
    cfg = _ideal_io(TorchInferenceRPUConfig())
    cfg.forward.out_res = 1 / (2 ** bits - 2)  # aihwkit's convention, ours too: step 2 bound / (2^b - 2)
    cfg.forward.out_bound = bound
    cfg.noise_model = PCMLikeNoiseModel(prog_noise_scale=0.0, read_noise_scale=0.0, drift_scale=0.0)
    with torch.no_grad():
        theirs = _tile(w, cfg)(x)
        wmax = float(w.abs().max())  # our full scale is in cells at g_max: bound / max|w| of them
        s = parse_spec(f"crossbar-adc(rows=16,cols=16,adc_range=fixed,adc_fs={bound / wmax!r}):{bits}")
        t = apply(s, bits, {"L.linear.weight": w.unsqueeze(0)}, seed=0, draws=[0], ctx=Context(("L",), ()))
        ours = read(x, prepare(t, "L", False), False)[0]
    step = 2 * bound / (2 ** bits - 2)
    off = (ours - theirs).abs()
    assert float(off.max()) <= step * 1.001  # at most one code, where a sum sits on a rounding edge
    assert float((off > step / 2).float().mean()) <= 0.01


@pytest.mark.parametrize("t_inf", [0.0, 3600.0, 86400.0])
def test_pcm_programming_and_drift_match_aihwkit_in_distribution(t_inf: float) -> None:
    torch.manual_seed(0)  # aihwkit draws from torch's global generator
    w = torch.empty(200, 100)
    w[:, :50], w[:, 50:] = 0.3, -0.9
    w[0, 0] = 1.0  # max |w| = 1: the targets are 30% and 90% of g_max
    cfg = _ideal_io(TorchInferenceRPUConfig())
    cfg.forward.out_res = -1
    cfg.forward.out_bound = -1
    cfg.mapping.weight_scaling_omega = 1.0
    cfg.noise_model = PCMLikeNoiseModel()
    cfg.drift_compensation = GlobalDriftCompensation()
    layer = _tile(w, cfg)
    with torch.no_grad():
        layer.program_analog_weights()
        layer.drift_analog_weights(t_inf)
        theirs = layer(torch.eye(100)).T  # one-hot reads: the effective weights, compensated
        ours = apply(parse_spec("pcm:?"), t_inf, {"L.linear.weight": w.unsqueeze(0)}, seed=0, draws=[0],
                     ctx=Context(("L",), ()))["L.linear.weight"][0]
    for target in (0.3, -0.9):
        a, b = theirs[w == target].numpy(), ours[w == target].numpy()
        assert stats.ks_2samp(a, b).pvalue > 1e-3, (target, t_inf)
        assert abs(a.mean() - b.mean()) < 0.01 * abs(target)
        assert abs(a.std() / b.std() - 1) < 0.05
