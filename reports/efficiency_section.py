"""The report's efficiency section: NeuroBench's metrics per inference and accuracy against the
energy estimate under each perturbation, from what the sweeps stored per cell."""

from __future__ import annotations

from reports import figures
from reports.document import Heading, Section, Table
from reports.formatting import num, slug


BASIS = ("Definitions as NeuroBench's (neurobench 2.3): activation sparsity = share of zero neuron outputs over "
         "layers, steps and examples; effective MACs / ACs = non-zero weights met by non-zero non-spike / spike "
         "inputs, per inference (biases excluded); dense = every weight at every call; footprint = bytes of "
         "parameters and buffers (on a chip: codes at their width, three constants per neuron at the state "
         "width); connection sparsity = zero weights over all weights. Energy is an estimate, never a "
         "measurement: (effective MACs + ACs) x energy per synaptic operation + T x neurons x energy per neuron "
         "update, from the chip's cited per-operation costs; none where its profile publishes none.")


def _costs(meta: dict) -> str:
    e = meta.get("chip_energy") or {}
    if not e:
        return f"{meta.get('chip', 'float')}: no per-operation energy"
    return (f"{meta['chip']}: {e['synaptic_op_pj']:g} pJ per synaptic operation, {e['neuron_update_pj']:g} pJ per "
            f"neuron update ({e['source']})")


def efficiency_section(b) -> Section:
    sec = Section("efficiency", "5b. Efficiency per inference (NeuroBench) and energy estimate")
    sec.blocks.append(BASIS)
    metas = b.rec.model_meta()
    chips = sorted({_costs(m) for m in metas.values() if m.get("chip")})
    if chips:
        sec.blocks.append("Chip costs used: " + "; ".join(chips) + ".")
    clean, curves_js = [], []
    for run in b.rec.runs:
        by_pert = b.run_curves(run)
        seen = set()
        for pert, curves in by_pert.items():
            series, use_energy = [], all(cs.clean_efficiency.get("energy_nj") is not None for cs in curves)
            for cs in curves:
                if not cs.clean_efficiency:
                    continue
                key = (b.labels[cs.model], cs.mode)
                if (run.id, key) not in seen:
                    seen.add((run.id, key))
                    e = cs.clean_efficiency
                    clean.append([key[0], key[1], str(cs.compute), num(100 * cs.clean["accuracy"], ".2f"),
                                  num(e.get("energy_nj"), ".4g") if e.get("energy_nj") is not None else "-",
                                  num(e["effective_macs"], ".4g"), num(e["effective_acs"], ".4g"),
                                  num(e["synops_dense"], ".4g"), num(e["activation_sparsity"], ".4f"),
                                  num(e["footprint_bytes"] / 1024, ".1f"), num(e["connection_sparsity"], ".4f")])
                x = "energy_nj" if use_energy else "effective_synops"
                pts = [(cs.clean_efficiency[x], cs.clean["accuracy"], None)]
                pts += [(s.efficiency[x][0], *s.metrics["accuracy"]) for s in cs.levels if x in s.efficiency]
                series.append((key, pts))
                curves_js.append({"run": run.id, "model": cs.model, "mode": cs.mode, "perturbation": pert,
                                  "clean": cs.clean_efficiency,
                                  "levels": [{"level": s.level, **{k: {"mean": v[0], "ci95": v[1]}
                                                                   for k, v in s.efficiency.items()}}
                                             for s in cs.levels]})
            if len(series) and any(len(p) > 1 for _, p in series):
                xlabel = ("energy per inference (nJ, estimate)" if use_energy
                          else "synaptic operations per inference (effective MACs + ACs)")
                sec.blocks.append(Heading(f"{pert} (run {run.id})"))
                sec.blocks.append(b.figure(f"run{run.id}-{slug(pert)}-efficiency",
                                           f"Accuracy against {xlabel} under {pert} (run {run.id}): one point per "
                                           f"level, the clean network ringed; ±95% interval over chips.",
                                           figures.accuracy_energy, series, b.colours, xlabel))
    if clean:
        sec.blocks.insert(2 if chips else 1, Table(["model", "mode", "compute", "Acc (%)", "energy (nJ, est.)", "eff. MACs",
                                    "eff. ACs", "dense synops", "act. sparsity", "footprint (KiB)",
                                    "conn. sparsity"], clean,
                                   "Clean network, per inference, averaged over the mode's networks."))
    else:
        sec.blocks.append("No efficiency in this store (sweeps before this version did not measure it).")
    b.json["efficiency"] = {"basis": BASIS, "chips": chips, "curves": curves_js}
    return sec
