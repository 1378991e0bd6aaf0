"""`robust sweep`: every model x mode x perturbation x level x seed, batched and resumable.

For each (model, mode) the network is prepared once (`deploy_tensors`), its clean
predictions are scored and stored, then the K draws of a level are evaluated in one
batched forward pass. Draw k of seed s uses generators fixed by (sweep seed, s, component),
so the same chip is seen at every level (common random numbers) and curves are not
jagged by resampling. Modes that average M networks (IVON `bma`: M posterior samples with
re-estimated BN statistics; `chips`: M copies of one network; `ensemble`: M members)
perturb each network with its own draw, so `bma`, `chips` and `ensemble` at seed s see the
same M hardware draws, and average the softmax over the M networks.
Every cell stores its per-example correctness and NLL, so summaries give a test-set
interval beside the chip interval and compare models on the same examples.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from basics.errors import BadInput
from basics.progress import progress as progress_bar
from basics.stats import SpeakerGroups
from models import native
from models.checkpoint import Checkpoint, load_checkpoint
from models.fixed_point import deployment_summary
from models.model_config import ForwardOptions, weight_layers
from models.network import block_spikes
from perturbations.base import Context, Scale
from perturbations.base import get as get_perturbation
from perturbations.spec import Spec
from robustness import __version__
from robustness.data import Dataset, DatasetSpec, Split, load_dataset
from robustness.data.dataset import subset_note
from robustness.evaluate import Mode, compute, mode_tensors, modes_for, require_finite, stacked_logp
from robustness.executors import Failed, LocalExecutor, RayExecutor, Unit
from robustness.efficiency import efficiency, mean_efficiency
from robustness.metrics import log_mean_exp
from robustness.run_meta import curve_meta, model_meta
from robustness.store.curve_meta import CurveMeta
from robustness.store.database import Store
from robustness.sweep.calibration import calibrates, calibrating, calibration_inputs
from robustness.sweep.probes import draws_nothing, perturbed_tensors
from robustness.sweep.chance import CurveGate, chance_accuracy, severity_order
from robustness.sweep.config import MIN_AUTO_SEEDS, PerturbationPlan, SweepConfig, validate
from robustness.sweep.deployment import chip_meta, deployed, profile_of, targets
from robustness.sweep.units import cell_record, LevelJob, level_rows, Prepared, attack_examples, is_attack, search_batch

__all__ = ["PerturbationPlan", "SweepConfig", "SweepResult", "run_sweep"]

log = logging.getLogger(__name__)

CLEAN = "clean"


@dataclass
class SweepResult:
    run_id: int
    resumed: bool
    new_cells: int
    rows: list[dict] = field(default_factory=list)
    touched: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (spec, layer) -> tensors
    curves: dict[str, CurveMeta] = field(default_factory=dict)  # perturbation label -> what summaries need
    failed: list[dict] = field(default_factory=list)  # units that raised on every attempt (unit, error, attempts)
    skipped: list[dict] = field(default_factory=list)  # levels not run: a milder level was at chance
    groups: dict[str, SpeakerGroups | None] = field(default_factory=dict)  # model -> its test examples' speakers
    scored: list[str] = field(default_factory=list)  # what each dataset's cells were scored on (all, or a subset)


def _layers(ck: Checkpoint, wanted: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    hidden = tuple(f"blocks.{i}" for i in range(len(ck.net.cfg.hidden)))
    every = weight_layers(ck.net.cfg)
    if not wanted:
        return every, hidden
    unknown = [w for w in wanted if w not in every]
    if unknown:
        raise BadInput(f"unknown layer {unknown[0]!r} (this model has: {', '.join(every)})")
    return tuple(w for w in every if w in wanted), hidden


def _modes(ck: Checkpoint, cfg: SweepConfig) -> list[Mode]:
    have = modes_for(ck, perturbed=True)
    return [m for m in have if not cfg.modes or m.value in cfg.modes]


def _sigmas(cks: list[Checkpoint], cfg: SweepConfig, device: torch.device) -> list[dict[str, torch.Tensor] | None]:
    """Per checkpoint the posterior sigma per parameter that `--scale sigma` scales noise by."""
    if Scale(cfg.scale) is not Scale.SIGMA:
        return [None] * len(cks)
    donor = None
    if cfg.sigma_from:
        donor = load_checkpoint(cfg.sigma_from, device)
        if donor.posterior is None:
            raise BadInput(f"--sigma-from {cfg.sigma_from}: not an IVON checkpoint (no posterior)")
    out = []
    for ck in cks:
        src = ck if ck.posterior is not None else donor
        if src is None:
            raise BadInput(f"{ck.path}: --scale sigma needs a posterior: an IVON model, or --sigma-from ivon.pt "
                           f"of the same architecture")
        sig = src.posterior.sigma()
        own = dict(ck.net.named_parameters())
        bad = [n for n in own if n not in sig or sig[n].shape != own[n].shape]
        if bad:
            raise BadInput(f"--sigma-from {src.path}: architecture differs from {ck.path} ({bad[0]})")
        out.append(sig)
    return out


def _prepare(ck: Checkpoint, data: Dataset, mode: Mode, cfg: SweepConfig, x: torch.Tensor, y: torch.Tensor,
             device: torch.device, sigma: dict[str, torch.Tensor] | None) -> Prepared:
    net_cfg = ck.net.cfg
    t = mode_tensors(ck, data, mode, cfg.mc_samples, cfg.bn, cfg.seed)
    base = {n: v.detach().to(device).contiguous() for n, v in deployed(net_cfg, t, cfg).items()}
    k0 = next(iter(base.values())).shape[0]
    for n, s in (sigma or {}).items():
        base[f"sigma:{n}"] = s.detach().to(device).unsqueeze(0).expand(k0, *s.shape).contiguous()
    tally: dict = {}
    slp, rates = stacked_logp(net_cfg, base, x, device, ForwardOptions(clamp_alpha=False, tally=tally))
    require_finite(ck, mode, slp, base)
    m = cell_record(slp, y, mode, None)
    cost = efficiency(net_cfg, base, tally, len(y), x.shape[1], profile_of(cfg))
    row = {"mode": mode.value, "perturbation": CLEAN, "layer": "", "level": 0.0, "seed": 0,
           "samples": compute(mode, k0), "n": len(y), **m, "spike_rates": rates.mean(0).tolist(),
           "efficiency": mean_efficiency(cost)}
    return Prepared(mode, base, k0, log_mean_exp(slp).argmax(-1), row)


def spec_hash(cfg: SweepConfig, model_hashes: list[str], specs: list[Spec]) -> str:
    d = cfg.to_dict()
    if not d.get("chip"):
        d.pop("chip", None)  # runs from before chips existed keep their identity (and resume)
    d["models"] = model_hashes  # content, not path: a moved file resumes, a retrained one does not
    # a perturbation whose numbers changed (a new version) starts a new run instead of resuming into the old one
    d["versions"] = [spec.versions() for spec in specs]
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:20]


def run_sweep(cfg: SweepConfig, store_path: str, *, device: str | torch.device = "cpu", progress: bool = True,
              command: str = "", executor: LocalExecutor | RayExecutor | None = None) -> SweepResult:
    """Run (or resume) a sweep into the store at `store_path`; returns its rows.

    Everything that can fail on user input (specs, levels, checkpoints, data, layer names,
    modes) is checked before the store is opened, so bad input leaves the store untouched.
    The units (one level of one model/mode/perturbation/layer scope) run on `executor`
    (in this process by default); this process alone writes the store, as results arrive.
    A unit that fails on every attempt is recorded in the store's failures and the run
    stays unfinished, so that a rerun retries it.
    """
    executor = executor or LocalExecutor()
    specs = validate(cfg)
    device = torch.device(device)
    cks = [load_checkpoint(m, device) for m in cfg.models]
    chip, notes, hashes, names = targets(cfg, cks)
    sigmas = _sigmas(cks, cfg, device)
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
    unused = [m for m in cfg.modes if not any(m in {x.value for x in _modes(ck, cfg)} for ck in cks)]
    if unused:
        raise BadInput(f"--modes {unused[0]}: no model here has that mode")
    curves = {spec.label: curve_meta(spec, plan, cfg.scale) for spec, plan in zip(specs, cfg.plans)}
    data_hash = ",".join(sorted({d.fingerprint for d in datasets.values()}))
    groups = {name: SpeakerGroups.of(evaluated(data, cfg).groups) for name, data in zip(names, data_of)}
    models_meta = [{**model_meta(ck, m, h), "test_groups": None if groups[name] is None else
                    groups[name].to_dict(), **chip_meta(chip, name, note)}
                   for m, h, ck, name, note in zip(cfg.models, hashes, cks, names, notes)]
    # every (model, mode) is prepared and scored clean before the store opens: a checkpoint
    # whose clean outputs overflow is refused without leaving an empty run behind
    preps = {(i, mode): _prepare(ck, data, mode, cfg, *_xy(evaluated(data, cfg)), device, sigma)
             for i, (ck, data, sigma) in enumerate(zip(cks, data_of, sigmas)) for mode in _modes(ck, cfg)}
    if chip is not None:  # the scale each layer was given, stated with the run (network 0 of the first mode)
        for i, meta in enumerate(models_meta):
            meta["deployment"] = deployment_summary(cks[i].net.cfg, preps[(i, _modes(cks[i], cfg)[0])].base)
    base = next(iter(preps.values())).base
    layers, hidden = _layers(cks[0], cfg.layers)
    calib = calibration_inputs(data_of[0], cfg.split) if any(map(calibrates, specs)) else None
    ctx = calibrating(Context(layers, hidden, Scale(cfg.scale), cfg.include_bias, cfg.include_bn), cks[0].net.cfg,
                      calib, device)
    for spec, plan in zip(specs, cfg.plans):  # a perturbation that draws nothing: one network per level, no chips
        curves[spec.label].deterministic = all(draws_nothing(spec, lv, base, cfg.seed, ctx) for lv in plan.levels)
    with Store.open(store_path, create=True) as store:
        stored = {**cfg.to_dict(), "curves": {k: c.to_dict() for k, c in curves.items()}}
        run_id, resumed = store.run_for(spec_hash(cfg, hashes, specs), stored, models_meta,
                                        data_hash, __version__, command)
        store.clear_failures("sweep", run_id)
        state = _RunState(store, store.done_keys(run_id), cfg, specs, device, executor, run_id, curves)
        state.bar = progress_bar(total=_planned_cells(cfg, cks, specs, curves), desc="sweep", unit="cell",
                                 enabled=progress)
        for i, (ck, mhash, data, name) in enumerate(zip(cks, hashes, data_of, names)):
            common = {"run_id": run_id, "model": name, "model_hash": mhash, "optimizer": ck.optimizer}
            for mode in _modes(ck, cfg):
                state.sweep_mode(ck, data, preps[(i, mode)], common)
        state.bar.close()
        if not state.failed:
            store.finish_run(run_id)
        rows, skipped = store.cells(run_id), store.skipped(run_id)
    scored = sorted({subset_note(len(evaluated(d, cfg)), len(d.split(cfg.split)), cfg.split) for d in data_of})
    return SweepResult(run_id, resumed, state.new, rows, state.touched, curves, state.failed, skipped, groups, scored)


@dataclass
class _RunState:
    """What a running sweep carries between (model, mode) pairs."""

    store: Store
    done: dict[tuple, float]
    cfg: SweepConfig
    specs: list[Spec]
    device: torch.device
    executor: LocalExecutor | RayExecutor
    run_id: int
    curves: dict[str, CurveMeta]  # perturbation label -> what summaries need (deterministic included)
    new: int = 0
    failed: list[dict] = field(default_factory=list)
    touched: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    bar: Any = None

    def add(self, key: tuple, row: dict) -> None:
        """Commit one cell unless the store already holds it (resumed sweeps)."""
        if key in self.done:
            return
        if self.store.add_cell(row):  # False: a concurrent run of the same sweep stored it first
            self.new += 1
        self.done[key] = row["accuracy"]

    def sweep_mode(self, ck: Checkpoint, data: Dataset, prep: Prepared, common: dict) -> None:
        cfg = self.cfg
        x, y = _xy(evaluated(data, cfg))
        mode = prep.mode
        searches: dict[int, tuple] = {}  # examples -> the worst-case search batch (x, y)
        layers, hidden = _layers(ck, cfg.layers)
        mhash = common["model_hash"]
        self.add((mhash, mode.value, CLEAN, "", 0.0, 0), {**common, **prep.clean_row, "versions": {}, "time_s": 0.0})
        self.bar.update(1)
        scopes = [(layer,) for layer in layers] if cfg.per_layer else [layers]
        by_prefix: dict[tuple, dict] = {}
        for k, v in self.done.items():
            by_prefix.setdefault(k[:5], {})[k] = v
        planned, labels, cells, gates = [], {}, {}, {}  # unit name -> (curve, level) -> (store key, columns)
        chance = chance_accuracy(y)
        for spec, plan in zip(self.specs, cfg.plans):
            if mode is Mode.CHIPS and self.curves[spec.label].deterministic:
                continue  # M copies of one network, each "perturbed" the same way: the point curve again
            swept = get_perturbation(spec.swept_name)
            for scope in scopes:
                layer_label = scope[0] if cfg.per_layer else ("" if not cfg.layers else ",".join(scope))
                ctx = Context(scope, hidden, Scale(cfg.scale), cfg.include_bias, cfg.include_bn)
                calib = calibration_inputs(data, cfg.split) if calibrates(spec) else None
                cal = calibrating(ctx, ck.net.cfg, calib, self.device)  # the job gets the inputs, not the callback
                if (spec.label, layer_label) not in self.touched:
                    self.touched[(spec.label, layer_label)] = perturbed_tensors(spec, plan, prep.base, cfg.seed, cal)
                start, xin = _reuse(ck, prep, scope, cfg, x, self.device)
                search = None
                if is_attack(spec):
                    n = attack_examples(spec)
                    if n not in searches:
                        searches[n] = search_batch(data, cfg.split, n)[1:]
                    search = (_reuse(ck, prep, scope, cfg, searches[n][0], self.device)[1], searches[n][1])
                job = self.executor.share(LevelJob(ck.net.cfg, prep, spec, ctx, xin, y, start, self.device, cfg.seed,
                                               search, profile_of(cfg), calib))
                curve = (spec.label, layer_label)
                # skipping past chance presumes harm grows with the level: only on axes declared monotone
                gates[curve] = CurveGate(severity_order(plan.levels, swept.level_is_bits), chance,
                                         prep.clean_row["accuracy"], len(y), cfg.skip_at_chance and swept.monotone)
                for level in gates[curve].levels:
                    prefix = (mhash, mode.value, spec.label, layer_label, float(level))
                    name = f"{common['model']} {mode.value} {spec.label}{' [' + layer_label + ']' if layer_label else ''} " \
                           f"{float(level):g}"
                    planned.append((curve, Unit(name, level_rows, (job, level, cfg, by_prefix.get(prefix, {}), prefix,
                                                               draws_nothing(spec, level, prep.base, cfg.seed, cal)))))
                    labels[name] = (curve, level)
                    cells[(curve, level)] = (prefix, {"mode": mode.value, "perturbation": spec.label,
                                                      "layer": layer_label, "level": float(level),
                                                      "versions": spec.versions()})

        def pending():  # lazily: run here one by one, a unit is not started once its curve is at chance
            for curve, unit in planned:
                if not gates[curve].dead():
                    yield unit

        held: dict[tuple, list[dict]] = {}

        def per_level(curve: tuple) -> int:  # cells a level counts for on the bar, as _planned_cells counts them
            return _draws_per_level(cfg, self.curves[curve[0]].deterministic)

        def commit(curve: tuple) -> None:  # in severity order, as far as the results allow
            gate = gates[curve]
            for level, status in gate.commit():
                prefix, where = cells[(curve, level)]
                rows = held.pop((curve, level), [])
                if status == "rows":
                    for r in rows:
                        self.add(prefix + (r["seed"],), {**common, **r, **where})
                elif status == "skip":
                    self.store.add_skipped(self.run_id, common["model"], mhash, mode.value, curve[0], curve[1], level,
                                           gate.reason())
                    self.bar.update(0 if rows else per_level(curve))

        with native.KERNEL.for_work(len(planned) * (cfg.seeds or MIN_AUTO_SEEDS) * prep.k0 * x.shape[0] * x.shape[1]
                             * sum(ck.net.cfg.hidden)):
            for unit, rows in self.executor.map(pending()):
                curve, level = labels[unit.name]
                prefix = cells[(curve, level)][0]
                if isinstance(rows, Failed):
                    self.store.add_failure("sweep", self.run_id, unit.name, rows.error, rows.attempts)
                    self.failed.append({"unit": unit.name, "error": rows.error, "attempts": rows.attempts})
                    log.warning("%s: failed after %d attempt(s): %s", unit.name, rows.attempts, rows.error)
                    gates[curve].put(level, None)
                else:
                    held[(curve, level)] = rows
                    stored = list(by_prefix.get(prefix, {}).values())
                    gates[curve].put(level, stored + [r["accuracy"] for r in rows])
                    self.bar.update(len(rows) if cfg.seeds is None else per_level(curve))
                commit(curve)
        for curve in gates:  # levels never started because their curve was already at chance
            commit(curve)


def _xy(split: Split) -> tuple[torch.Tensor, torch.Tensor]:
    return split.x, split.y


def evaluated(data: Dataset, cfg: SweepConfig) -> Split:
    """The examples a sweep scores: its split, or a class-stratified, seeded subset of `--limit`."""
    return data.split(cfg.split).stratified(cfg.limit)


def _planned_cells(cfg: SweepConfig, cks: list[Checkpoint], specs: list[Spec], curves: dict[str, CurveMeta]) -> int:
    """Cells the progress bar counts: per model and mode a clean cell and, per scope, level
    and seed, a perturbed one; a deterministic perturbation has one seed and no chips."""
    total = 0
    for ck in cks:
        modes = _modes(ck, cfg)
        scopes = len(_layers(ck, cfg.layers)[0]) if cfg.per_layer else 1
        total += len(modes)
        for spec, plan in zip(specs, cfg.plans):
            fixed = curves[spec.label].deterministic
            run = sum(not (fixed and m is Mode.CHIPS) for m in modes)
            total += run * scopes * len(plan.levels) * _draws_per_level(cfg, fixed)
    return total


def _draws_per_level(cfg: SweepConfig, deterministic: bool) -> int:
    """Draws the bar counts per level: one for a perturbation that draws nothing, else
    --seeds (with auto, the first round)."""
    return 1 if deterministic else cfg.seeds or max(cfg.auto_batch, MIN_AUTO_SEEDS)


def _reuse(ck: Checkpoint, prep: Prepared, scope: tuple[str, ...], cfg: SweepConfig, x: torch.Tensor,
           device: torch.device) -> tuple[int, torch.Tensor]:
    """Start the forward at the first perturbed layer, feeding it the clean spikes below.

    Only for a single base network (point / mean): the M networks of the averaging modes
    differ below too (posterior samples, members) or are perturbed one by one (chips).
    """
    if not cfg.per_layer or prep.k0 != 1 or cfg.chip:  # a chip's integer layers run from the input
        return 0, x
    names = [f"blocks.{i}" for i in range(len(ck.net.cfg.hidden))] + ["readout"]
    start = names.index(scope[0].removesuffix(".recurrent"))  # recurrent synapses belong to their block
    if start == 0:
        return 0, x
    opt = ForwardOptions(clamp_alpha=False)
    chunks = []
    with torch.no_grad():
        for i in range(0, len(x), 256):
            chunks.append(block_spikes(ck.net.cfg, prep.base, x[i:i + 256].to(device), start, opt)[0].cpu())
    return start, torch.cat(chunks)
