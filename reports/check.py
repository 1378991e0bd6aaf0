"""`robust check`: a TOML policy of rules applied to a results store (the CI gate).

Rules (`[[rule]]` tables; `model` is a path or file name, `mode` defaults to the model's
first mode):
  min_accuracy        accuracy at `perturbation` `level` >= `threshold`
  max_drop            clean accuracy - accuracy at the level <= `threshold`
  max_ece_increase    ECE at the level - clean ECE <= `threshold`
  min_auc             normalised area under the accuracy curve >= `threshold`
  at_least_as_robust  AUC of `model`/`mode` >= AUC of `than_model`/`than_mode` - `tolerance`
  max_energy          energy per inference (nJ, the chip profile's estimate) at the level <= `threshold`
  max_synops          effective synaptic operations (MACs + ACs) per inference at the level <= `threshold`
  min_activation_sparsity  NeuroBench's activation sparsity at the level >= `threshold`
  baseline            against `--baseline STORE`: at every level of every matching curve,
                      not worse than the baseline by more than `tolerance` (accuracy points as
                      a fraction, NLL/ECE in their units), judged on the seed-averaged value
                      with its 95% chip interval, so that noise does not fail a build. Where
                      the baseline holds a seed set of the model's method (same training but
                      the seed), a regression must fall outside every baseline seed.
Threshold rules are judged on the mean over chips; the interval is printed beside it.
A rule whose data is missing or not a number fails; a rule naming a model, perturbation
or level the store lacks is unusable (exit 2).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from basics.modes import Mode
from basics.errors import BadInput
from basics.tomlfile import load_toml
from reports.efficiency_rules import EFFICIENCY_KINDS, efficiency_rule
from reports.formatting import md_cell
from reports.records import Records, load_records
from reports.summary import CurveSummary, LevelStats, summarize

KINDS = ("min_accuracy", "max_drop", "max_ece_increase", "min_auc", "at_least_as_robust", *EFFICIENCY_KINDS,
         "baseline")
BASELINE_METRICS = {"accuracy": 1, "nll": -1, "ece": -1, "brier": -1}  # +1: higher is better
FIELDS = {"min_accuracy": {"model", "perturbation", "level", "threshold"},
          "max_drop": {"model", "perturbation", "level", "threshold"},
          "max_ece_increase": {"model", "perturbation", "level", "threshold"},
          "min_auc": {"model", "perturbation", "threshold"},
          "at_least_as_robust": {"model", "than_model", "perturbation"},
          **{k: {"model", "perturbation", "level", "threshold"} for k in EFFICIENCY_KINDS},
          "baseline": set()}
OPTIONAL = {"name", "mode", "than_mode", "tolerance", "metric", "kind", "model", "perturbation"}


@dataclass
class Outcome:
    name: str
    passed: bool
    observed: str
    threshold: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name}: {self.observed} (needs {self.threshold})"


def _curves(rec: Records) -> dict[tuple[str, str, str], CurveSummary]:
    """(model path, mode, perturbation) -> the newest run's curve (whole-network scope)."""
    out = {}
    for run in rec.runs:
        for cs in summarize(run.rows, run.curves_meta, run.skipped, run.groups):
            if not cs.layer:
                out[(cs.model, cs.mode, cs.perturbation)] = cs
    return out


def _model(curves: dict, name: str, where: str) -> str:
    paths = {k[0] for k in curves}
    hits = [p for p in paths if p == name or os.path.basename(p) == name]
    if not hits:
        raise BadInput(f"{where}: model {name!r} is not in the store "
                       f"(it holds: {', '.join(sorted(os.path.basename(p) for p in paths))})")
    return hits[0]


def _curve(curves: dict, rule: dict, where: str, model_key: str = "model", mode_key: str = "mode") -> CurveSummary:
    model = _model(curves, rule[model_key], where)
    pert = rule["perturbation"]
    perts = {k[2] for k in curves if k[0] == model}
    if pert not in perts:
        raise BadInput(f"{where}: perturbation {pert!r} is not in the store for {rule[model_key]} "
                       f"(it has: {', '.join(sorted(perts))})")
    modes = [k[1] for k in curves if k[0] == model and k[2] == pert]
    single = (Mode.POINT.value, Mode.MEAN.value)  # the single network first, when the rule names no mode
    mode = rule.get(mode_key) or sorted(modes, key=lambda m: single.index(m) if m in single else 9)[0]
    if (model, mode, pert) not in curves:
        raise BadInput(f"{where}: {rule[model_key]} has no mode {mode!r} for {pert} (it has: {', '.join(modes)})")
    return curves[(model, mode, pert)]


def _level(cs: CurveSummary, level: float, where: str) -> LevelStats | None:
    """The level's statistics; None when the sweep skipped it (a milder level was at chance)."""
    for s in cs.levels:
        if math.isclose(s.level, float(level), rel_tol=1e-9, abs_tol=1e-12):
            return s
    if any(math.isclose(lv, float(level), rel_tol=1e-9, abs_tol=1e-12) for lv, _ in cs.skipped):
        return None
    raise BadInput(f"{where}: level {level:g} of {cs.perturbation} is not in the store "
                   f"(levels: {', '.join(f'{s.level:g}' for s in cs.levels)})")


def _pm(mean: float, hw: float | None, scale: float = 1.0, fmt: str = ".4f") -> str:
    if mean is None or not math.isfinite(mean):
        return "no data"
    return f"{mean * scale:{fmt}}" + ("" if hw is None else f" ±{hw * scale:{fmt}}")


def _ok(value: float | None, test) -> bool:
    return value is not None and math.isfinite(value) and bool(test(value))


TEXT_FIELDS = ("name", "model", "mode", "than_model", "than_mode", "perturbation", "metric", "kind")


def validate_rule(rule: dict, i: int) -> str:
    where = f"rule {i + 1}"
    if not isinstance(rule, dict):
        raise BadInput(f"{where}: not a table ([[rule]] with key = value lines), got {rule!r}"[:200])
    kind = rule.get("kind")
    if not isinstance(kind, str):
        raise BadInput(f"{where}: kind must be one of: {', '.join(KINDS)}")
    if kind not in KINDS:
        raise BadInput(f"{where}: unknown kind {kind!r} (one of: {', '.join(KINDS)})")
    missing = FIELDS[kind] - set(rule)
    if missing:
        raise BadInput(f"{where} ({kind}): missing {', '.join(sorted(missing))}")
    unknown = set(rule) - FIELDS[kind] - OPTIONAL - {"than_mode"}
    if unknown:
        raise BadInput(f"{where} ({kind}): unknown field {sorted(unknown)[0]!r}")
    for k in TEXT_FIELDS:
        if k in rule and not isinstance(rule[k], str):
            raise BadInput(f"{where}: {k} must be a string, got {rule[k]!r}"[:200])
    if rule.get("metric", "accuracy") not in BASELINE_METRICS:
        raise BadInput(f"{where}: unknown metric {rule['metric']!r} (one of: {', '.join(BASELINE_METRICS)})")
    for k in ("threshold", "level", "tolerance"):
        v = rule.get(k)
        if k in rule and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            raise BadInput(f"{where}: {k} must be a finite number, got {v!r}")
    return where


def load_policy(path: str) -> list[dict]:
    policy = load_toml(path, "policy file")
    rules = policy.get("rule")
    if not isinstance(rules, list) or not rules:
        raise BadInput(f"{path}: no [[rule]] tables in the policy")
    for i, r in enumerate(rules):
        validate_rule(r, i)
    return rules


def _architectures(rec: Records) -> dict[str, tuple]:
    return {os.path.basename(p): (tuple(m.get("hidden") or ()), m.get("parameters"))
            for p, m in rec.model_meta().items()}


def run_rule(rule: dict, i: int, curves: dict, base: dict | None) -> Outcome:
    where = validate_rule(rule, i)
    kind = rule["kind"]
    name = rule.get("name") or f"{kind} " + " ".join(str(rule[k]) for k in ("model", "mode", "perturbation", "level")
                                                     if k in rule)
    if kind in ("min_accuracy", "max_drop", "max_ece_increase", *EFFICIENCY_KINDS):
        cs = _curve(curves, rule, where)
        s = _level(cs, rule["level"], where)
        t = float(rule["threshold"])
        if s is None:  # never measured: fail, and say how to measure it
            return Outcome(name, False, f"not measured: {cs.skipped[0][1]}; rerun the sweep with "
                           "--no-skip-at-chance to measure it", f"{kind} {t:g}")
        if kind in EFFICIENCY_KINDS:
            return Outcome(name, *efficiency_rule(kind, s, t))
        acc, hw = s.metrics["accuracy"]
        if kind == "min_accuracy":
            return Outcome(name, _ok(acc, lambda v: v >= t), f"accuracy {_pm(acc, hw)}", f">= {t:g}")
        if kind == "max_drop":
            drop = cs.clean["accuracy"] - acc
            return Outcome(name, _ok(drop, lambda v: v <= t), f"drop {_pm(drop, hw)} from clean "
                           f"{cs.clean['accuracy']:.4f}", f"<= {t:g}")
        ece, ehw = s.metrics["ece"]
        inc = ece - cs.clean["ece"]
        return Outcome(name, _ok(inc, lambda v: v <= t), f"ECE increase {_pm(inc, ehw)}", f"<= {t:g}")
    if kind == "min_auc":
        cs = _curve(curves, rule, where)
        t = float(rule["threshold"])
        return Outcome(name, _ok(cs.auc, lambda v: v >= t), _auc_text(cs), f">= {t:g}")
    if kind == "at_least_as_robust":
        a = _curve(curves, rule, where)
        b = _curve(curves, rule, where, "than_model", "than_mode")
        tol = float(rule.get("tolerance", 0.0))
        ok = a.auc is not None and b.auc is not None and math.isfinite(a.auc) and a.auc >= b.auc - tol
        return Outcome(name, ok, f"{_auc_text(a)} vs {os.path.basename(b.model)} {b.mode} {_auc_text(b)}",
                       f">= other - {tol:g}")
    return _baseline(rule, where, name, curves, base)


def _auc_text(cs: CurveSummary) -> str:
    if cs.skipped:
        return "normalised AUC not computed: levels were skipped at chance (rerun with --no-skip-at-chance)"
    return f"normalised AUC {_pm(cs.auc, None)} ({cs.axis} axis)"


def _baseline(rule: dict, where: str, name: str, curves: dict, base: dict | None) -> Outcome:
    if base is None:
        raise BadInput(f"{where}: a baseline rule needs --baseline STORE")
    metric = rule.get("metric", "accuracy")
    sign = BASELINE_METRICS[metric]
    tol = float(rule.get("tolerance", 0.0))
    by_name = {(os.path.basename(k[0]), k[1], k[2]): [v] for k, v in base["curves"].items()}
    worst, judged = None, 0
    for (model, mode, pert), cs in curves.items():
        if rule.get("model") and rule["model"] not in (model, os.path.basename(model)):
            continue
        if rule.get("mode") and rule["mode"] != mode or rule.get("perturbation") and rule["perturbation"] != pert:
            continue
        # a baseline seed set of this model's method: judged against the spread of its seeds
        bs = base["sets"].get((base["set_of"].get(model), mode, pert)) or by_name.get((os.path.basename(model), mode,
                                                                                       pert))
        if not bs:
            continue
        for s in cs.levels:
            vals = [x.metrics[metric][0] for b in bs for x in b.levels if x.level == s.level]
            if len(vals) < len(bs):
                continue
            mean, hw = s.metrics[metric]
            edge = min(vals, key=lambda v: sign * v)  # the least demanding baseline seed
            judged += 1
            # Regression: even the favourable end of our interval is worse than every baseline
            # seed (than the baseline, with one) by more than the tolerance.
            best_case = mean + sign * (hw or 0.0)
            shortfall = sign * (edge - best_case) - tol
            against = (f"baseline {edge:.4f}" if len(vals) == 1 else
                       f"baseline seeds {min(vals):.4f}-{max(vals):.4f} ({len(vals)} seeds)")
            if worst is None or shortfall > worst[0]:
                worst = (shortfall, f"{os.path.basename(model)} {mode} {pert} {s.level:g}: {metric} "
                                    f"{_pm(mean, hw)} vs {against}")
    if judged == 0:
        return Outcome(name, False, "no curve in common with the baseline", f"{metric} within {tol:g} of baseline")
    return Outcome(name, worst[0] <= 0, f"{judged} level(s) compared; worst {worst[1]}",
                   f"{metric} within {tol:g} of baseline")


def check(store: str, policy: str, baseline: str | None = None) -> list[Outcome]:
    """Apply every rule; BadInput for an unusable store, policy or baseline."""
    rules = load_policy(policy)
    rec = load_records(store)
    curves = _curves(rec)
    if not curves:
        raise BadInput(f"{store}: no sweep curves in the store to check")
    base = None
    if baseline is not None:
        brec = load_records(baseline)
        ours, theirs = _architectures(rec), _architectures(brec)
        for m, arch in ours.items():
            if m in theirs and theirs[m] != arch:
                raise BadInput(f"{baseline}: model {m} has another architecture there (hidden/parameters "
                               f"{theirs[m]} vs {arch})")
        bcurves = _curves(brec)
        base = {"curves": bcurves, **_seed_sets(rec, brec, bcurves)}
    return [run_rule(r, i, curves, base) for i, r in enumerate(rules)]


def _seed_sets(rec: Records, brec: Records, bcurves: dict[tuple[str, str, str], CurveSummary]) -> dict:
    """The baseline's seed sets (two seeds or more) by (training configuration, mode,
    perturbation), and that of each of our models: a model is judged against the seeds of
    its method, whatever the files are called."""
    from basics.replicates import seed_sets

    sets: dict[tuple, list[CurveSummary]] = {}
    for st in seed_sets(brec.model_meta().values(), brec.labels()):
        if len(st.members) < 2:
            continue
        for (model, mode, pert), cs in bcurves.items():
            if model in st.members.values():
                sets.setdefault((st.key, mode, pert), []).append(cs)
    ours = {p: st.key for st in seed_sets(rec.model_meta().values(), rec.labels()) for p in st.members.values()}
    return {"sets": sets, "set_of": ours}


def junit(outcomes: list[Outcome], seconds: float = 0.0) -> str:
    """JUnit XML: one testcase per rule (a failure where it fails), with the suite's counts
    (tests, failures, errors, skipped) and its time in seconds, as CI dashboards read them."""
    fails = sum(not o.passed for o in outcomes)
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           f'<testsuites tests="{len(outcomes)}" failures="{fails}" errors="0" skipped="0" time="{seconds:.3f}">',
           f'<testsuite name="robust check" tests="{len(outcomes)}" failures="{fails}" errors="0" skipped="0" '
           f'time="{seconds:.3f}">']
    for o in outcomes:
        out.append(f'<testcase classname="robust.check" name={quoteattr(o.name)} time="0">')
        msg = f"{o.observed} (needs {o.threshold})"
        if o.passed:
            out.append(f"<system-out>{escape(msg)}</system-out>")
        else:
            out.append(f"<failure message={quoteattr(msg)}>{escape(msg)}</failure>")
        out.append("</testcase>")
    out.append("</testsuite></testsuites>")
    return "\n".join(out)


def junit_error(message: str, seconds: float = 0.0) -> str:
    """JUnit XML for a gate that could not run (an unusable policy or store, exit 2): one
    testcase in error saying why, so that a CI dashboard shows the failure, not nothing."""
    return "\n".join(['<?xml version="1.0" encoding="UTF-8"?>',
                      f'<testsuites tests="1" failures="0" errors="1" skipped="0" time="{seconds:.3f}">',
                      f'<testsuite name="robust check" tests="1" failures="0" errors="1" skipped="0" '
                      f'time="{seconds:.3f}">',
                      '<testcase classname="robust.check" name="robust check could run" time="0">',
                      f"<error message={quoteattr(message)}>{escape(message)}</error>",
                      "</testcase>", "</testsuite></testsuites>"])


def markdown(outcomes: list[Outcome]) -> str:
    fails = sum(not o.passed for o in outcomes)
    head = f"### robust check: {'all ' + str(len(outcomes)) + ' rules pass' if not fails else f'{fails} of {len(outcomes)} rules fail'}"
    rows = [f"| {'✅ PASS' if o.passed else '❌ FAIL'} | {md_cell(o.name)} | {md_cell(o.observed)} | "
            f"{md_cell(o.threshold)} |" for o in outcomes]
    return "\n".join([head, "", "| result | rule | observed | needs |", "|---|---|---|---|", *rows, ""])


MIN_MARGIN = 0.01  # starter thresholds sit at least a point from what the store shows


def _toml_str(text: str) -> str:
    """A TOML basic string holding `text` exactly (quotes, backslashes, newlines escaped; JSON's
    escapes are TOML's). A name that is not valid Unicode cannot be written: refused."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput(f"{text!r}: a name that is not valid UTF-8 cannot be written into a policy; rename the "
                       f"file") from None
    return json.dumps(text)


def _toml_comment(text: str) -> str:
    return " ".join(str(text).split())  # a comment ends at the line break


def starter_policy(store: str) -> str:
    """A commented policy derived from a store, with margins so that it passes on it."""
    rec = load_records(store)
    curves = _curves(rec)
    if not curves:
        raise BadInput(f"{store}: no sweep curves in the store to derive a policy from")
    out = [f"# robust check policy, derived from {_toml_comment(store)} by `robust check --init`.",
           "# Thresholds sit below what the store shows (by the chip interval, at least 1 point), so",
           "# this passes on it; tighten them as your models improve. Kinds: " + ", ".join(KINDS) + ".", ""]
    for (model, mode, pert), cs in curves.items():
        measured = [s for s in (cs.levels if cs.increasing_severity else cs.levels[::-1])
                    if math.isfinite(s.metrics["accuracy"][0])]  # an overflowed level has no number to gate on
        if not measured:
            out += [f"# {_toml_comment(os.path.basename(model))} {mode} {_toml_comment(pert)}: every level "
                    f"overflowed (non-finite outputs): no rule derived", ""]
            continue
        lv = measured[(len(measured) - 1) // 2]
        acc, hw = lv.metrics["accuracy"]
        margin = max(hw or 0.0, MIN_MARGIN)
        why = f"the 95% chip interval ±{hw:.4f}" if hw and hw > MIN_MARGIN else f"{MIN_MARGIN:g} (at least)"
        who = [f"model = {_toml_str(os.path.basename(model))}", f"mode = {_toml_str(mode)}",
               f"perturbation = {_toml_str(pert)}"]
        out += ["[[rule]]", 'kind = "min_accuracy"', *who, f"level = {lv.level!r}",
                f"# chosen: observed accuracy {acc:.4f} minus {why}, rounded down to a whole point",
                f"threshold = {math.floor((acc - margin) * 100) / 100:.2f}", ""]
        drop = cs.clean["accuracy"] - acc
        # a drop below 0 (the perturbed network scored higher) must not become a demand to improve
        out += ["[[rule]]", 'kind = "max_drop"', *who, f"level = {lv.level!r}",
                f"# chosen: observed drop {drop:+.4f}{' (counted as 0: accuracy rose)' if drop < 0 else ''} plus "
                f"{why}, rounded up to a whole point",
                f"threshold = {math.ceil((max(drop, 0.0) + margin) * 100) / 100:.2f}", ""]
        if cs.auc is not None:
            out += ["[[rule]]", 'kind = "min_auc"', *who,
                    f"# chosen: observed normalised AUC {cs.auc:.4f} minus 0.02, rounded down",
                    f"threshold = {math.floor((cs.auc - 0.02) * 100) / 100:.2f}", ""]
    out += ["# Against a baseline store (robust check STORE --policy P --baseline old.db):",
            "# [[rule]]", '# kind = "baseline"', '# metric = "accuracy"', "# tolerance = 0.01", ""]
    return "\n".join(out)
