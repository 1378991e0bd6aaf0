"""`robust sweep`: every model x mode x perturbation x level x seed, batched and resumable.

For each (model, mode) the network is prepared once (`deploy_tensors`), its clean
predictions are scored and stored, then the K draws of a level are evaluated in one
batched forward pass. Draw k of seed s uses generators fixed by (sweep seed, s, component),
so the same chip is seen at every level (common random numbers) and curves are not
jagged by resampling. For IVON, `mean` deploys the posterior mean; `bma` draws M
posterior samples once (the same M at every level and seed), re-estimates their BN
statistics, and perturbs each sample with its own draw (M programmings of one model),
then averages the softmax over the M samples.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
from tqdm import tqdm

from models.checkpoint import Checkpoint, load_checkpoint
from models.deploy import deploy_tensors
from models.network import ForwardOptions, block_spikes
from perturbations.base import Context, PerturbationError, Scale
from perturbations.base import get as get_perturbation
from perturbations.spec import Spec, apply, parse_spec
from robustness import __version__
from robustness.data import Dataset, DatasetSpec, load_dataset
from robustness.errors import BadInput
from robustness.evaluate import BNMode, Mode, mode_tensors, modes_for, stacked_probs
from robustness.metrics import compute_metrics, disagreement
from robustness.store import Store

log = logging.getLogger(__name__)

MAX_NETWORKS_PER_PASS = 100  # K per batched pass: bounds parameter copies and temporaries
CLEAN = "clean"


@dataclass(frozen=True)
class PerturbationPlan:
    """One perturbation spec and the levels its swept component takes."""

    spec: str
    levels: tuple[float, ...]


@dataclass(frozen=True)
class SweepConfig:
    """Everything that determines the numbers of a sweep (hashed to identify its run).

    Attributes:
        models: checkpoint paths.
        plans: perturbations with their levels.
        seeds: independent draws per level; None = auto (until the 95% interval of
            accuracy is narrower than `ci_width` points, at most `max_seeds`).
        ci_width, max_seeds, auto_batch: the auto-seed rule (width in accuracy points).
        mc_samples: M posterior samples for BMA.
        bn: BN statistics for posterior samples (`recalibrate` or `mean`).
        layers: layers in scope (empty: all); `per_layer` sweeps each separately.
        scale: per-layer noise scale `max`, `std` or `abs`.
        fold_bn: fold BatchNorm into weights and bias currents before perturbing.
        include_bias: perturb biases along with weights.
        include_bn: perturb BatchNorm scale and shift along with weights.
        limit: evaluate on the first N examples of the split.
        split: `test` or `validation`.
        seed: base seed of all draws.
        data_dir: overrides the checkpoints' data folder.
    """

    models: tuple[str, ...]
    plans: tuple[PerturbationPlan, ...]
    seeds: int | None = 10
    ci_width: float = 0.5
    max_seeds: int = 100
    auto_batch: int = 5
    mc_samples: int = 10
    bn: str = "recalibrate"
    layers: tuple[str, ...] = ()
    per_layer: bool = False
    scale: str = "max"
    fold_bn: bool = False
    include_bias: bool = False
    include_bn: bool = False
    limit: int | None = None
    split: str = "test"
    seed: int = 0
    data_dir: str | None = None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["plans"] = [{"spec": p.spec, "levels": list(p.levels)} for p in self.plans]
        d["models"] = list(self.models)
        d["layers"] = list(self.layers)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SweepConfig":
        d = dict(d)
        d["plans"] = tuple(PerturbationPlan(p["spec"], tuple(float(x) for x in p["levels"])) for p in d["plans"])
        d["models"] = tuple(d["models"])
        d["layers"] = tuple(d.get("layers", ()))
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class SweepResult:
    run_id: int
    resumed: bool
    new_cells: int
    rows: list[dict] = field(default_factory=list)
    touched: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (spec, layer) -> tensors


def file_hash(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def validate(cfg: SweepConfig) -> list[Spec]:
    """Check everything that can be checked before touching the store; returns parsed specs."""
    if not cfg.models:
        raise BadInput("no --model given")
    if not cfg.plans:
        raise BadInput("no perturbation levels given (use --noise, --bits or --profile)")
    if cfg.seeds is not None and cfg.seeds < 1:
        raise BadInput(f"--seeds must be a positive integer or 'auto', got {cfg.seeds}")
    if cfg.mc_samples < 1:
        raise BadInput(f"--mc-samples must be at least 1, got {cfg.mc_samples}")
    if cfg.limit is not None and cfg.limit < 1:
        raise BadInput(f"--limit must be positive, got {cfg.limit}")
    if cfg.ci_width <= 0 or cfg.max_seeds < 2:
        raise BadInput("--ci-width must be positive and --max-seeds at least 2")
    try:
        Scale(cfg.scale)
        BNMode(cfg.bn)
    except ValueError as e:
        raise BadInput(str(e)) from None
    specs = []
    for plan in cfg.plans:
        try:
            spec = parse_spec(plan.spec)
            spec.check(list(plan.levels))
        except PerturbationError as e:
            raise BadInput(str(e)) from None
        if not plan.levels:
            raise BadInput(f"{plan.spec}: no levels")
        specs.append(spec)
    return specs


def _layers(ck: Checkpoint, wanted: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    hidden = tuple(f"blocks.{i}" for i in range(len(ck.net.cfg.hidden)))
    every = hidden + ("readout",)
    if not wanted:
        return every, hidden
    unknown = [w for w in wanted if w not in every]
    if unknown:
        raise BadInput(f"unknown layer {unknown[0]!r} (this model has: {', '.join(every)})")
    return tuple(w for w in every if w in wanted), hidden


@dataclass
class _Prepared:
    """One (model, mode) ready to perturb: K0 base networks, inputs, clean predictions."""

    mode: Mode
    base: dict[str, torch.Tensor]
    k0: int
    clean_pred: torch.Tensor
    clean_row: dict


def _prepare(ck: Checkpoint, data: Dataset, mode: Mode, cfg: SweepConfig, x: torch.Tensor, y: torch.Tensor,
             device: torch.device) -> _Prepared:
    net_cfg = ck.net.cfg
    t = mode_tensors(ck, data, mode, cfg.mc_samples, cfg.bn, cfg.seed)
    base = {n: v.detach().to(device).contiguous() for n, v in deploy_tensors(net_cfg, t, cfg.fold_bn).items()}
    k0 = next(iter(base.values())).shape[0]
    opt = ForwardOptions(clamp_alpha=False)
    sp, rates = stacked_probs(net_cfg, base, x, device, opt)
    probs = sp.mean(0)
    metrics = compute_metrics(probs, y, sp if mode is Mode.BMA else None)
    metrics["disagreement"] = 0.0
    row = {"mode": mode.value, "perturbation": CLEAN, "layer": "", "level": 0.0, "seed": 0,
           "samples": k0, "n": len(y), **metrics, "spike_rates": rates.mean(0).tolist()}
    return _Prepared(mode, base, k0, probs.argmax(-1), row)


def _evaluate_draws(ck: Checkpoint, prep: _Prepared, spec: Spec, level: float, seeds: list[int], ctx: Context,
                    cfg: SweepConfig, x: torch.Tensor, y: torch.Tensor, device: torch.device,
                    start: int = 0) -> list[dict]:
    """Metrics per seed for one level: all S x K0 networks in batched passes."""
    k0 = prep.k0
    out = []
    per_pass = max(1, MAX_NETWORKS_PER_PASS // k0)
    for i in range(0, len(seeds), per_pass):
        group = seeds[i:i + per_pass]
        s = len(group)
        stacked = {n: v.repeat(s, *([1] * (v.dim() - 1))) for n, v in prep.base.items()}
        draws = [sd * k0 + m for sd in group for m in range(k0)]
        t0 = time.perf_counter()
        t = apply(spec, level, stacked, seed=cfg.seed, draws=draws, ctx=ctx)
        noise = torch.Generator().manual_seed(
            int(hashlib.sha256(f"{cfg.seed}/read/{group}".encode()).hexdigest()[:15], 16))
        sp, rates = stacked_probs(ck.net.cfg, t, x, device, ForwardOptions(clamp_alpha=False, noise_generator=noise,
                                                                            start=start))
        elapsed = (time.perf_counter() - t0) / s
        sp = sp.view(s, k0, *sp.shape[1:])
        rates = rates.view(s, k0, -1)
        for j, sd in enumerate(group):
            probs = sp[j].mean(0)
            m = compute_metrics(probs, y, sp[j] if prep.mode is Mode.BMA else None)
            m["disagreement"] = disagreement(probs, prep.clean_pred)
            below = prep.clean_row["spike_rates"][:start]  # layers below were not perturbed
            out.append({"seed": sd, "samples": k0, "n": len(y), **m,
                        "spike_rates": below + rates[j].mean(0).tolist(), "time_s": elapsed})
    return out


def ci_halfwidth(values: list[float]) -> float:
    """Half-width of the 95% t-interval of the mean (inf for fewer than 2 values)."""
    from scipy import stats

    n = len(values)
    if n < 2:
        return math.inf
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)


def spec_hash(cfg: SweepConfig, model_hashes: list[str]) -> str:
    d = cfg.to_dict()
    d["models"] = model_hashes  # content, not path: a moved file resumes, a retrained one does not
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:20]


def run_sweep(cfg: SweepConfig, store_path: str, *, device: str | torch.device = "cpu", progress: bool = True,
              command: str = "") -> SweepResult:
    """Run (or resume) a sweep into the store at `store_path`; returns its rows.

    Everything that can fail on user input (specs, levels, checkpoints, data, layer names)
    is checked before the store is opened, so bad input leaves the store untouched.
    """
    specs = validate(cfg)
    device = torch.device(device)
    cks = [load_checkpoint(m, device) for m in cfg.models]
    hashes = [file_hash(m) for m in cfg.models]
    datasets: dict[DatasetSpec, Dataset] = {}
    data_of: list[Dataset] = []
    for ck in cks:
        ds = DatasetSpec.from_dict(ck.dataset)
        if cfg.data_dir is not None:
            ds = dataclasses.replace(ds, data_dir=cfg.data_dir)
        if ds not in datasets:
            datasets[ds] = load_dataset(ds, progress=progress)
        data_of.append(datasets[ds])
        _layers(ck, cfg.layers)
        width = data_of[-1].split(cfg.split).x.shape[-1]
        if width != ck.net.cfg.input_dim:
            raise BadInput(f"{ck.path}: model expects {ck.net.cfg.input_dim} input features, data has {width}")
    data_hash = ",".join(sorted({d.fingerprint for d in datasets.values()}))
    models_meta = [{"path": m, "hash": h, "optimizer": ck.optimizer} for m, h, ck in zip(cfg.models, hashes, cks)]
    with Store.open(store_path, create=True) as store:
        run_id, resumed = store.run_for(spec_hash(cfg, hashes), cfg.to_dict(), models_meta, data_hash,
                                        __version__, command)
        state = _RunState(store, store.done_keys(run_id), cfg, specs, device)
        state.bar = tqdm(total=_planned_cells(cfg, cks), desc="sweep", unit="cell", file=sys.stderr,
                         disable=not (progress and sys.stderr.isatty()))
        for ck, mhash, data in zip(cks, hashes, data_of):
            common = {"run_id": run_id, "model": ck.path, "model_hash": mhash, "optimizer": ck.optimizer}
            for mode in modes_for(ck):
                state.sweep_mode(ck, data, mode, common)
        state.bar.close()
        store.finish_run(run_id)
        rows = store.cells(run_id)
    return SweepResult(run_id, resumed, state.new, rows, state.touched)


@dataclass
class _RunState:
    """What a running sweep carries between (model, mode) pairs."""

    store: Store
    done: dict[tuple, float]
    cfg: SweepConfig
    specs: list[Spec]
    device: torch.device
    new: int = 0
    touched: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    bar: Any = None

    def add(self, key: tuple, row: dict) -> None:
        """Commit one cell unless the store already holds it (resumed sweeps)."""
        if key in self.done:
            return
        self.store.add_cell(row)
        self.done[key] = row["accuracy"]
        self.new += 1

    def sweep_mode(self, ck: Checkpoint, data: Dataset, mode: Mode, common: dict) -> None:
        cfg = self.cfg
        split = data.split(cfg.split).head(cfg.limit)
        x, y = split.x, split.y
        layers, hidden = _layers(ck, cfg.layers)
        mhash = common["model_hash"]
        prep = _prepare(ck, data, mode, cfg, x, y, self.device)
        self.add((mhash, mode.value, CLEAN, "", 0.0, 0), {**common, **prep.clean_row, "versions": {}, "time_s": 0.0})
        self.bar.update(1)
        scopes = [(layer,) for layer in layers] if cfg.per_layer else [layers]
        for spec, plan in zip(self.specs, cfg.plans):
            for scope in scopes:
                layer_label = scope[0] if cfg.per_layer else ("" if not cfg.layers else ",".join(scope))
                ctx = Context(scope, hidden, Scale(cfg.scale), cfg.include_bias, cfg.include_bn)
                if (spec.label, layer_label) not in self.touched:
                    self.touched[(spec.label, layer_label)] = perturbed_tensors(spec, plan, prep.base, cfg.seed, ctx)
                start, xin = _reuse(ck, prep, scope, cfg, x, self.device)
                for level in plan.levels:
                    prefix = (mhash, mode.value, spec.label, layer_label, float(level))
                    rows = _level(ck, prep, spec, level, ctx, cfg, xin, y, self.device, start, self.done, prefix,
                                  draws_nothing(spec, level, prep.base, cfg.seed, ctx))
                    for r in rows:
                        self.add(prefix + (r["seed"],), {**common, **r, "mode": mode.value, "perturbation": spec.label,
                                                         "layer": layer_label, "level": float(level),
                                                         "versions": spec.versions()})
                    self.bar.update(len(rows) if cfg.seeds is None else cfg.seeds)


def _planned_cells(cfg: SweepConfig, cks: list[Checkpoint]) -> int:
    total = 0
    for ck in cks:
        modes = len(modes_for(ck))
        scopes = len(_layers(ck, cfg.layers)[0]) if cfg.per_layer else 1
        levels = sum(len(p.levels) for p in cfg.plans)
        total += modes * (1 + scopes * levels * (cfg.seeds or cfg.auto_batch))
    return total


def _reuse(ck: Checkpoint, prep: _Prepared, scope: tuple[str, ...], cfg: SweepConfig, x: torch.Tensor,
           device: torch.device) -> tuple[int, torch.Tensor]:
    """Start the forward at the first perturbed layer, feeding it the clean spikes below.

    Only for a single base network (point / mean): BMA's M samples differ below too.
    """
    if not cfg.per_layer or prep.k0 != 1:
        return 0, x
    names = [f"blocks.{i}" for i in range(len(ck.net.cfg.hidden))] + ["readout"]
    start = names.index(scope[0])
    if start == 0:
        return 0, x
    opt = ForwardOptions(clamp_alpha=False)
    chunks = []
    with torch.no_grad():
        for i in range(0, len(x), 256):
            chunks.append(block_spikes(ck.net.cfg, prep.base, x[i:i + 256].to(device), start, opt)[0].cpu())
    return start, torch.cat(chunks)


def perturbed_tensors(spec: Spec, plan: PerturbationPlan, base: dict[str, torch.Tensor], seed: int,
                      ctx: Context) -> list[str]:
    """Which tensors a spec changes (or adds, e.g. read noise) at its most severe level."""
    one = {n: v[:1] for n, v in base.items()}
    level = min(plan.levels) if get_perturbation(spec.swept_name).level_is_bits else max(plan.levels)
    if level == 0 and get_perturbation(spec.swept_name).zero_is_identity:
        level = 0.1
    out = apply(spec, level, one, seed=seed, draws=[0], ctx=ctx)
    return sorted(n for n in out if n not in one or not torch.equal(out[n], one[n]))


def draws_nothing(spec: Spec, level: float, base: dict[str, torch.Tensor], seed: int, ctx: Context) -> bool:
    """True when two draws give the same network (e.g. quantize with nearest rounding)."""
    one = {n: v[:1] for n, v in base.items()}
    a = apply(spec, level, one, seed=seed, draws=[0], ctx=ctx)
    b = apply(spec, level, one, seed=seed, draws=[1], ctx=ctx)
    if any(n.endswith(".read_noise") for n in a):
        return False  # noise drawn during the forward pass
    return a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)


def _level(ck, prep, spec, level, ctx, cfg, x, y, device, start, done, key_prefix,
           deterministic: bool = False) -> list[dict]:
    """Rows for one level: a fixed number of seeds, or rounds until the interval is narrow.

    A perturbation that draws nothing is evaluated with seed 0 only: every seed would repeat it.
    """
    if deterministic:
        todo = [] if key_prefix + (0,) in done else [0]
        return _evaluate_draws(ck, prep, spec, level, todo, ctx, cfg, x, y, device, start) if todo else []
    def missing(seeds: Iterable[int]) -> list[int]:
        return [s for s in seeds if key_prefix + (s,) not in done]

    def stored(seeds: Iterable[int]) -> dict[int, float]:
        return {s: done[key_prefix + (s,)] for s in seeds if key_prefix + (s,) in done}

    if cfg.seeds is not None:
        todo = missing(range(cfg.seeds))
        return _evaluate_draws(ck, prep, spec, level, todo, ctx, cfg, x, y, device, start) if todo else []
    rows: list[dict] = []
    accs: dict[int, float] = {}
    n = 0
    while n < cfg.max_seeds:
        batch = list(range(n, min(n + cfg.auto_batch, cfg.max_seeds)))
        todo = missing(batch)
        new = _evaluate_draws(ck, prep, spec, level, todo, ctx, cfg, x, y, device, start) if todo else []
        rows += new
        accs.update(stored(batch))
        accs.update({r["seed"]: r["accuracy"] for r in new})
        n = batch[-1] + 1
        vals = list(accs.values())
        if len(vals) >= 3 and 2 * ci_halfwidth(vals) * 100 <= cfg.ci_width:
            break
    return rows
