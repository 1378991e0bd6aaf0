"""Orchestration behind `robust train`, `robust eval` and `robust demo`."""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import torch

from basics.errors import BadInput
from basics.replicates import seed_sets, seed_stat
from basics.stats import SpeakerGroups, bootstrap_halfwidth, interval_unit
from models import native
from models.checkpoint import load_checkpoint, save_checkpoint
from models.chip_profiles import parse_chip, require_fit
from robustness.sweep.deployment import on_chip_hash
from models.deploy import deploy_tensors
from models.model_config import ModelConfig, weight_layers
from models.network import SpikingNet
from models.posterior import diagnose
from models.train import PRESETS, Perturb, TrainConfig, train
from perturbations.base import Context, PerturbationError
from perturbations.crossbar import is_crossbar
from perturbations.spec import apply, parse_spec
from robustness import __version__
from robustness.data import DatasetSpec, load_dataset
from robustness.data.dataset import subset_note
from robustness.evaluate import EvalConfig, evaluate, modes_for
from robustness.train_options import TrainRequest

log = logging.getLogger(__name__)


def train_config_of(req: TrainRequest) -> TrainConfig:
    """The preset with the request's overrides, each checked."""
    if req.optimizer not in PRESETS:
        raise BadInput(f"unknown optimizer {req.optimizer!r} (use adam or ivon)")
    overrides = {k: v for k, v in dict(epochs=req.epochs, lr=req.lr, batch_size=req.batch_size,
                                       weight_decay=req.weight_decay, hess_init=req.hess_init,
                                       beta2=req.beta2, ess=req.ess).items() if v is not None}
    for k in ("epochs", "batch_size"):
        if k in overrides and overrides[k] < 1:
            raise BadInput(f"--{k.replace('_', '-')} must be positive, got {overrides[k]}")
    for k in ("lr", "hess_init", "ess"):
        if k in overrides and not overrides[k] > 0:
            raise BadInput(f"--{k.replace('_', '-')} must be positive, got {overrides[k]}")
    if "weight_decay" in overrides and not overrides["weight_decay"] >= 0:
        raise BadInput(f"--weight-decay must be >= 0, got {overrides['weight_decay']}")
    if "beta2" in overrides and not 0 < overrides["beta2"] < 1:
        raise BadInput(f"--beta2 must lie in (0, 1), got {overrides['beta2']}")
    if any(h < 1 for h in req.hidden):
        raise BadInput(f"--hidden widths must be positive, got {list(req.hidden)}")
    if req.ensemble < 1:
        raise BadInput(f"--ensemble must be at least 1, got {req.ensemble}")
    if req.ensemble > 1 and req.optimizer != "adam":
        raise BadInput("--ensemble trains Adam members (an IVON posterior is already an ensemble: use BMA)")
    return dataclasses.replace(PRESETS[req.optimizer], seed=req.seed, **overrides)


def hardware_perturbation(text: str, cfg: ModelConfig) -> Perturb:
    """A training-time perturbation: a fresh draw of `text` for every step, with a
    straight-through gradient (the loss is taken at the perturbed weights, the gradient
    goes to the clean ones; for `quantize` that is quantisation-aware training with STE).
    """
    try:
        spec = parse_spec(text)
        spec.check([])
    except PerturbationError as e:
        raise BadInput(f"--train-perturbation: {e}") from None
    level = spec.fixed_level()
    if level is None:
        raise BadInput(f"--train-perturbation {text!r}: give the level to train at, e.g. {spec.swept_name}:0.05")
    if any(is_crossbar(c.name) for c in spec.components):  # the read-out bypasses the weights' gradient
        raise BadInput(f"--train-perturbation {text!r}: a crossbar read-out is evaluated, not trained through (its "
                       "ADCs round, its currents do not reach the weights' gradient); train with gaussian or pcm noise")
    hidden = tuple(f"blocks.{i}" for i in range(len(cfg.hidden)))
    ctx = Context(weight_layers(cfg), hidden)

    def perturb(t: dict[str, torch.Tensor], g: torch.Generator) -> dict[str, torch.Tensor]:
        t = deploy_tensors(cfg, t)  # clamped leaks: the values a chip would store
        seed = int(torch.randint(2**62, (1,), generator=g).item())
        p = apply(spec, level, t, seed=seed, draws=[0], ctx=ctx)
        return {n: v if n not in t or v is t[n] else t[n] + (v - t[n]).detach() for n, v in p.items()}
    return perturb


def train_to_checkpoint(req: TrainRequest, out: str | Path, device: torch.device | str = "cpu",
                        progress: bool = True) -> str:
    """Train per `req`, write the checkpoint to `out`, return a short summary (with, for
    IVON, the one-line diagnosis of what the posterior is)."""
    tcfg = train_config_of(req)
    # An absolute data path, so `robust eval` finds the data from any working directory.
    data_dir = str(Path(req.data_dir).expanduser().resolve()) if req.data_dir else None
    spec = DatasetSpec(req.dataset, data_dir, req.frames, req.skip_bad, req.speaker_pattern)
    data = load_dataset(spec, progress=progress)
    tr, va = data.split("train").head(req.limit_train), data.split("validation")
    mcfg = ModelConfig(input_dim=tr.x.shape[-1], num_classes=len(data.classes), hidden=req.hidden, neuron=req.neuron)
    perturb = hardware_perturbation(req.train_perturbation, mcfg) if req.train_perturbation else None
    if data.skipped:
        log.warning("skipped %d unusable file(s)", len(data.skipped))
    log.info("training %s on %s: %d train / %d validation examples, %s", req.optimizer, req.dataset,
             len(tr), len(va), tcfg)
    results = []
    for i in range(req.ensemble):  # member i is exactly the model `--seed seed+i` trains
        net = SpikingNet(mcfg, torch.Generator().manual_seed(req.seed + i)).to(device)
        cfg_i = dataclasses.replace(tcfg, seed=req.seed + i)
        results.append(train(net, cfg_i, tr.x, tr.y, va.x, va.y, progress=progress, perturb=perturb))
    res = results[0]
    extra = {"n_train": len(tr), "ensemble": req.ensemble, "train_perturbation": req.train_perturbation,
             "kernel": res.kernel}  # which LIF scan computed the gradients (they round differently)
    save_checkpoint(out, res.net, train_config={**tcfg.to_dict(), **extra},
                    # data.spec: T as chosen for a user folder; notes: how validation and T were chosen
                    dataset={**data.spec.to_dict(), "fingerprint": data.fingerprint,
                             **({"notes": data.notes} if data.notes else {})}, features=data.features.to_dict(),
                    classes=data.classes, history=res.history, posterior=res.posterior,
                    ivon_args=res.ivon_args, package_version=__version__,
                    members=[r.net for r in results] if req.ensemble > 1 else None)
    last = res.history[-1]
    s = (f"wrote {out}: {req.optimizer}, {tcfg.epochs} epochs, validation accuracy {last['val_acc']:.4f}, "
         f"loss {last['val_loss']:.4f}")
    if req.ensemble > 1:
        s += f"; ensemble of {req.ensemble}, member validation accuracy " + \
             ", ".join(f"{r.history[-1]['val_acc']:.3f}" for r in results)
    if req.train_perturbation:
        s += f"; trained under {req.train_perturbation}"
    if res.posterior is not None:
        s += "\n" + diagnose(res.posterior, dict(res.net.named_parameters()))["text"]
    return s


def evaluate_checkpoints(paths: list[str], ecfg: EvalConfig, data_dir: str | None = None,
                         device: torch.device | str = "cpu") -> list[dict]:
    """One row per (checkpoint, mode) with every metric."""
    rows = []
    cache: dict = {}
    chips = [parse_chip(c) for c in ecfg.chips]  # a malformed spec is refused before anything loads
    for path in paths:
        ck = load_checkpoint(path, device)
        notes = {c.label: require_fit(c, ck.net.cfg, path) for c in chips}
        spec = DatasetSpec.from_dict(ck.dataset)
        if data_dir is not None:
            spec = dataclasses.replace(spec, data_dir=data_dir)
        if spec not in cache:
            cache[spec] = load_dataset(spec)
        split = cache[spec].split(ecfg.split)
        work = len(split) * split.x.shape[1] * sum(ck.net.cfg.hidden) * (1 + ecfg.mc_samples)
        with native.KERNEL.for_work(work):
            for chip, mode in [(None, m) for m in modes_for(ck)] + [(c, m) for c in chips for m in modes_for(ck)]:
                r = evaluate(ck, cache[spec], mode, ecfg, device, chip)
                groups = SpeakerGroups.of(r.groups)
                target = {"target": "float"} if chip is None else {
                    "target": chip.label, "deployment": r.deployment, "notes": notes[chip.label],
                    "chip": chip.label}
                rows.append({"model": path if chip is None else f"{path}@{chip.label}", "path": path,
                             **target, "optimizer": ck.optimizer, "split": ecfg.split, **r.row(),
                             "model_hash": on_chip_hash(ck.content_hash, chip), "data_hash": cache[spec].fingerprint,
                             "train_config": ck.train_config, "hidden": list(ck.net.cfg.hidden),
                             "neuron": ck.net.cfg.neuron,
                             "dataset": ck.dataset.get("name"),
                             "split_size": len(split), "test_interval": interval_unit(groups),
                             "efficiency": r.efficiency,
                             "accuracy_test_ci": bootstrap_halfwidth(r.correct, groups=groups),
                             "nll_test_ci": bootstrap_halfwidth(r.nll, groups=groups)})
    return rows


EVAL_FORMAT, EVAL_VERSION = "robust-eval", 1
_METRICS = ("accuracy", "nll", "ece", "brier", "entropy", "expected_entropy", "mutual_information")


def results_file(rows: list[dict], ecfg: EvalConfig) -> dict:
    """`robust eval --json`: what was scored, on what, by which code, and each metric (accuracy
    and NLL with their 95% test-set half-width). Keys:

    - format, version, package_version; split, limit, subset (all, or the stratified subset), seed,
      mc_samples, bn (BMA's BatchNorm treatment);
    - models: per checkpoint and target (`float`, or the chip it is deployed on, with its
      deployment: per layer the scale chosen, code ranges, realised leaks; and notes) path,
      target, model_hash, data_hash, optimizer, and its modes: mode, compute
      (networks per prediction), n, metrics {name: {value, test_ci95}} (test_ci95: the half-width,
      for accuracy and NLL; null elsewhere), test_interval (what it resamples), spike_rates,
      efficiency (NeuroBench's metrics per inference; energy_nj: an estimate, null without costs);
    - seed_sets: models trained alike but for the seed, as one method: name, optimizer, seeds,
      models, and per mode {metric: {mean, seeds_ci95}} (a t-interval over the seeds' values).
    """
    models: dict[str, dict] = {}
    for r in rows:
        m = models.setdefault(r["model"], {"path": r["path"], "target": r["target"], "model_hash": r["model_hash"],
                                           "data_hash": r["data_hash"], "optimizer": r["optimizer"], "modes": []})
        if r["target"] != "float":
            m["deployment"], m["notes"] = r["deployment"], r["notes"]
        m["modes"].append({
            "mode": r["mode"], "compute": r["compute"], "n": r["n"], "bn": r["bn"],
            "metrics": {k: {"value": r.get(k), "test_ci95": r.get(f"{k}_test_ci")} for k in _METRICS},
            "test_interval": r["test_interval"], "efficiency": r["efficiency"],
            "spike_rates": [r[k] for k in sorted(r) if k.startswith("rate_l")]})
    n, size = (rows[0]["n"], rows[0]["split_size"]) if rows else (0, 0)
    return {"format": EVAL_FORMAT, "version": EVAL_VERSION, "package_version": __version__, "split": ecfg.split,
            "limit": ecfg.limit, "subset": subset_note(n, size, ecfg.split), "seed": ecfg.seed,
            "mc_samples": ecfg.mc_samples, "bn": ecfg.bn, "models": list(models.values()),
            "seed_sets": seed_summary(rows)}


_COLUMNS = [("model", "model", "{}"), ("mode", "mode", "{}"), ("compute", "compute", "{}"), ("n", "n", "{}"),
            ("accuracy", "accuracy", "{:.4f}"), ("accuracy_test_ci", "±test", "{:.4f}"), ("nll", "nll", "{:.4f}"),
            ("nll_test_ci", "±test", "{:.3f}"), ("ece", "ece", "{:.4f}"), ("brier", "brier", "{:.4f}"),
            ("entropy", "entropy", "{:.4f}"), ("expected_entropy", "expected_entropy", "{:.4f}"),
            ("mutual_information", "mutual_information", "{:.4f}")]


def format_table(rows: list[dict]) -> str:
    """A fixed-width text table of evaluation rows ('-' where a metric does not apply);
    `compute` is the networks evaluated per prediction; then what was scored and what the
    ±test intervals resample."""
    cells = [[h for _, h, _ in _COLUMNS]]
    for r in rows:
        cells.append([fmt.format(r[k]) if r.get(k) is not None else "-" for k, _, fmt in _COLUMNS])
    widths = [max(len(row[i]) for row in cells) for i in range(len(_COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    if rows:
        lines += ["", f"scored on {subset_note(rows[0]['n'], rows[0]['split_size'], rows[0]['split'])}; ±test: "
                      f"95% bootstrap half-width over {' / '.join(sorted({r['test_interval'] for r in rows}))}"]
    for r in {r["model"]: r for r in rows if r.get("deployment")}.values():  # one line per deployed model
        scales = ", ".join(f"{d['layer']} {d['scale']:.3g}" for d in r["deployment"][:-1])
        lines.append(f"{r['model']}: one state unit = {scales} (membrane units); one readout weight code = "
                     f"{r['deployment'][-1]['scale']:.3g}"
                     + "".join(f"; {n}" for n in r.get("notes") or ()))
    for r in rows:  # what each prediction costs, NeuroBench's way (energy: the chip's estimate)
        e = r.get("efficiency") or {}
        if e:
            energy = "" if e.get("energy_nj") is None else f", energy {e['energy_nj'] / 1000:.3g} uJ (estimate)"
            lines.append(f"{r['model']} {r['mode']}: per inference {e['effective_macs']:.3g} MACs + "
                         f"{e['effective_acs']:.3g} ACs (dense {e['synops_dense']:.3g}), activation sparsity "
                         f"{e['activation_sparsity']:.3f}, footprint {e['footprint_bytes'] / 1024:.1f} KiB{energy}")
    sets = [s for s in seed_summary(rows) if len(s["seeds"]) > 1]
    if sets:
        lines += ["", "seed sets (mean over training seeds ± 95% t-interval over the seeds):"]
        for s in sets:
            for m in s["modes"]:
                cells = [f"{k} {v['mean']:.4f}" + ("" if v["seeds_ci95"] is None else f" ±{v['seeds_ci95']:.4f}")
                         for k, v in m["metrics"].items() if v["mean"] is not None]
                lines.append(f"  {s['name']} {m['mode']} ({len(s['seeds'])} seeds: {', '.join(map(str, s['seeds']))}): "
                             + "  ".join(cells))
    return "\n".join(lines)


def seed_summary(rows: list[dict]) -> list[dict]:
    """Evaluation rows grouped into seed sets (see `basics.replicates`), with seed-level metrics."""
    metas = {r["model"]: {"path": r["model"], "chip": r.get("chip"), "optimizer": r["optimizer"],
                          "train_config": r.get("train_config"),
                          "hidden": r.get("hidden"), "neuron": r.get("neuron"), "dataset": r.get("dataset")} for r in rows}
    labels = {p: Path(p).name for p in metas}
    out = []
    for s in seed_sets(metas.values(), labels):
        modes = []
        for mode in dict.fromkeys(r["mode"] for r in rows if r["model"] in s.members.values()):
            by_seed = {k: next(r for r in rows if r["model"] == p and r["mode"] == mode) for k, p in s.members.items()}
            metrics = {}
            for name in ("accuracy", "nll", "ece", "brier"):
                st = seed_stat({k: r.get(name) for k, r in by_seed.items()})
                metrics[name] = {"mean": None if math.isnan(st.mean) else st.mean, "seeds_ci95": st.half}
            modes.append({"mode": mode, "metrics": metrics})
        out.append({"name": s.name, "optimizer": s.optimizer, "seeds": s.seeds,
                    "models": [s.members[k] for k in s.seeds], "modes": modes})
    return out
