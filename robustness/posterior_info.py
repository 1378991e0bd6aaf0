"""`robust posterior`: what an IVON checkpoint's posterior is, per parameter tensor."""

from __future__ import annotations

from basics.errors import BadInput
from models.checkpoint import Checkpoint
from models.posterior import diagnose


def posterior_report(ck: Checkpoint) -> dict:
    """The diagnosis of `models.posterior.diagnose`, plus the IVON settings that shaped it."""
    if ck.posterior is None:
        raise BadInput(f"{ck.path}: no posterior (trained with {ck.optimizer}; `robust posterior` needs an IVON model)")
    d = diagnose(ck.posterior, dict(ck.net.named_parameters()))
    args = ck.meta.get("ivon_args", {})
    d["settings"] = {k: args.get(k) for k in ("lr", "ess", "hess_init", "beta2", "weight_decay")}
    d["model"] = ck.path
    return d


def format_posterior(d: dict) -> str:
    """A text table: one row per parameter tensor, then the verdict."""
    st = d["settings"]
    prior = "inf" if d["prior_sigma"] is None else f"{d['prior_sigma']:.4g}"
    init = "?" if d["initial_sigma"] is None else f"{d['initial_sigma']:.4g}"
    w = max([26, *(len(n) for n in d["layers"])])  # recurrent weights have the longest names
    lines = [f"{d['model']}: IVON ess {st['ess']:g}, hess_init {st['hess_init']}, beta2 {st['beta2']}, "
             f"weight decay {st['weight_decay']}",
             f"initial width 1/sqrt(ess (hess_init + wd)) = {init}; prior width 1/sqrt(ess wd) = {prior}",
             "",
             f"{'tensor':<{w}} {'count':>7} {'sigma q10':>10} {'median':>9} {'q90':>9} {'max':>9} "
             f"{'moved>10%':>9} {'at prior':>8} {'|mu|/sigma':>10}"]
    for name, r in d["layers"].items():
        lines.append(f"{name:<{w}} {r['count']:>7} {r['q10']:>10.4g} {r['median']:>9.4g} {r['q90']:>9.4g} "
                     f"{r['max']:>9.4g} {r['moved']:>9.0%} {r['at_prior']:>8.0%} {r['snr_median']:>10.3g}")
    s = d["sigma"]
    lines += ["", f"{'all':<{w}} {'':>7} {s['q10']:>10.4g} {s['median']:>9.4g} {s['q90']:>9.4g} {s['max']:>9.4g} "
                  f"{d['moved']:>9.0%} {d['at_prior']:>8.0%}",
              "", f"verdict: {d['verdict']}. {d['text']}"]
    return "\n".join(lines)
