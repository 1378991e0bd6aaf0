"""Report figures (matplotlib, Agg), each returned as PNG bytes and SVG text.

One colour per (model, mode) across every figure of a report; sizes and fonts chosen to
stay legible at one-column width (3.4 in) for single panels. Drawing dominates a report's
time, so each figure is laid out once (no tight bounding box on save) and `render_all`
draws independent figures in parallel processes.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import zlib
from concurrent.futures import ProcessPoolExecutor
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402

from basics.modes import CurveMode, Mode
from reports.summary import CurveSummary  # noqa: E402

COLUMN = 3.4  # inches: one column of a two-column paper
PANEL_METRICS = (("accuracy", "accuracy (%)", 100.0), ("nll", "NLL (nats)", 1.0), ("ece", "ECE", 1.0),
                 ("brier", "Brier score", 1.0))
STYLE = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7, "xtick.labelsize": 7,
         "ytick.labelsize": 7, "figure.dpi": 120, "svg.fonttype": "none",
         "text.parse_math": False}  # labels carry file names: a `$` in one is a dollar, not mathtext


# One hue per mode (Okabe & Ito's colour-blind-safe set, without orange, which sits too close
# to vermilion under a confidence band), so that a mode has its colour in every report.
MODE_COLOURS = {Mode.POINT.value: "#0072B2", Mode.MEAN.value: "#009E73", Mode.CHIPS.value: "#D55E00",
                Mode.BMA.value: "#CC79A7", Mode.ENSEMBLE.value: "#000000", CurveMode.SIGMOID.value: "#999999",
                CurveMode.LINE.value: "#8C564B"}
SHADES = (0.0, 0.35, -0.35)  # models of one mode: the hue, lighter, darker


def _log_scale(ax, axis: str = "y") -> None:
    """A log axis whose ticks read 0.001, 0.01, 1 in plain text: matplotlib's default
    labels are mathtext ($10^{-3}$), which this module turns off for the sake of file names."""
    getattr(ax, f"set_{axis}scale")("log")
    target = getattr(ax, f"{axis}axis")
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())


def _shade(colour: str, amount: float) -> tuple[float, float, float]:
    """`colour` mixed toward white (amount > 0) or black (amount < 0), by seaborn's blend."""
    if amount == 0:
        return tuple(float(c) for c in mcolors.to_rgb(colour))
    steps = sns.blend_palette([colour, "white" if amount > 0 else "black"], 101)
    return tuple(float(c) for c in steps[round(abs(amount) * 100)])


def palette(keys: list[tuple[str, str]]) -> dict[tuple[str, str], tuple]:
    """A colour per (model label, mode) that does not depend on what else the report holds:
    the mode's hue, shaded by a stable hash of the model's label (so the same model and mode
    look the same in every report); a shade two models of one mode would share is taken by
    the next free one."""
    out, used = {}, set()
    for key in dict.fromkeys(keys):
        model, mode = key
        base = MODE_COLOURS.get(mode, "#7F7F7F")
        start = zlib.crc32(model.encode()) % len(SHADES)
        for i in range(len(SHADES)):
            shade = SHADES[(start + i) % len(SHADES)]
            if (mode, shade) not in used or i == len(SHADES) - 1:
                break
        used.add((mode, shade))
        out[key] = _shade(base, shade)
    return out


def _panels(nrow: int, ncol: int, panel: tuple[float, float], gap: tuple[float, float], entries: int = 0,
            titles: bool = False, **kw):
    """A figure laid out from fixed margins in inches (panel size, gaps between panels,
    room for tick labels, axis labels and titles), with a strip at the bottom for one
    legend of `entries` entries. Fixed margins replace matplotlib's tight layout, which
    measures every tick label and costs as much as drawing the figure."""
    rows = -(-entries // 3)
    left, right, top, bottom = 0.6, 0.15, 0.3 if titles else 0.12, 0.42 + (0.16 * rows + 0.06 if rows else 0)
    w = left + right + ncol * panel[0] + (ncol - 1) * gap[0]
    h = top + bottom + nrow * panel[1] + (nrow - 1) * gap[1]
    grid = {"left": left / w, "right": 1 - right / w, "bottom": bottom / h, "top": 1 - top / h,
            "wspace": gap[0] / panel[0], "hspace": gap[1] / panel[1], **kw.pop("gridspec_kw", {})}
    return plt.subplots(nrow, ncol, figsize=(w, h), squeeze=False, gridspec_kw=grid, **kw)


def _legend(fig, ax) -> None:
    """One legend for the whole figure, in the strip under the panels, so that it hides no data."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=min(3, len(handles)),
                   frameon=False)


def render(fig) -> tuple[bytes, str]:
    png, svg = io.BytesIO(), io.StringIO()
    fig.savefig(png, format="png")
    fig.savefig(svg, format="svg")
    plt.close(fig)
    return png.getvalue(), svg.getvalue()


class Drawer:
    """Draws figures (figure function + arguments -> PNG, SVG) as they are asked for: in
    forked worker processes where the platform forks and there is more than one core, so
    that drawing overlaps the rest of the report; else in turn. The output does not
    depend on which."""

    def __init__(self, workers: int | None = None):
        workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
        self._pool = None
        if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
            try:
                self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
            except (OSError, NotImplementedError):  # no semaphores in some sandboxes: draw in turn
                self._pool = None
        self._pending: dict[str, object] = {}

    def submit(self, name: str, draw: Callable, *args) -> None:
        self._pending[name] = self._pool.submit(draw, *args) if self._pool else (draw, args)

    def results(self) -> dict[str, tuple[bytes, str]]:
        """name -> (PNG bytes, SVG text) of every figure submitted, in submission order."""
        out = {}
        for name, job in self._pending.items():
            out[name] = job[0](*job[1]) if isinstance(job, tuple) else job.result()
        return out

    def close(self) -> None:
        if self._pool:
            self._pool.shutdown(cancel_futures=True)

    def __enter__(self) -> "Drawer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def degradation(curves: list[CurveSummary], labels: dict[str, str], colours: dict, unit: str, log_x: bool,
                integer_x: bool = False):
    """Accuracy, NLL, ECE and Brier against level: mean and 95% band over chips, clean marked;
    `integer_x` (bit widths) puts ticks on whole levels only."""
    with plt.rc_context(STYLE):
        fig, axes = _panels(2, 2, (2.6, 1.65), (0.65, 0.15), len(curves), sharex=True)
        for ax, (metric, ylabel, scale) in zip(axes.flat, PANEL_METRICS):
            for cs in curves:
                key = (labels[cs.model], cs.mode)
                lv = np.array([s.level for s in cs.levels])
                mean = np.array([s.metrics[metric][0] for s in cs.levels if metric in s.metrics]) * scale
                if len(mean) != len(lv):
                    continue
                hw = np.array([s.metrics[metric][1] or 0.0 for s in cs.levels]) * scale
                ax.plot(lv, mean, marker="o", ms=2.5, lw=1.2, color=colours[key],
                        label=f"{key[0]} {key[1]} (x{cs.compute})")
                ax.fill_between(lv, mean - hw, mean + hw, color=colours[key], alpha=0.2, lw=0)
                if metric in cs.clean:
                    ax.axhline(cs.clean[metric] * scale, color=colours[key], lw=0.8, ls=":")
            ax.set_ylabel(ylabel)
            if log_x:
                _log_scale(ax, "x")
            if integer_x:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        for ax in axes[1]:
            ax.set_xlabel(unit)
        _legend(fig, axes[0, 0])
        return render(fig)


def reliability(conditions: list[str], series: list[tuple[str, tuple, dict[str, dict]]]) -> tuple[bytes, str]:
    """Reliability diagrams, one column per condition (clean, then levels); every model/mode
    overlaid in its colour (series: label, colour, condition -> bins). Top: accuracy against
    mean confidence per bin, dashed the perfect calibration; bottom: the share of
    predictions in each bin (log scale, so that sparse low-confidence bins stay visible)."""
    ncol = len(conditions)
    with plt.rc_context(STYLE):
        fig, axes = _panels(2, ncol, (1.75, 1.15), (0.22, 0.12), len(series), titles=True, sharex=True,
                            sharey="row", gridspec_kw={"height_ratios": (2.2, 1)})
        for j, cond in enumerate(conditions):
            top, bottom = axes[0, j], axes[1, j]
            top.plot([0, 1], [0, 1], color="black", lw=0.7, ls="--")
            for label, colour, bins in series:
                d = bins.get(cond)
                if d is None:
                    continue
                count = np.array(d["count"], dtype=float)
                seen = count > 0
                top.plot(np.array(d["confidence"], dtype=float)[seen], np.array(d["accuracy"], dtype=float)[seen],
                         marker="o", ms=2.5, lw=1.0, color=colour, label=label)
                bottom.stairs(count / max(count.sum(), 1), np.array(d["edges"]), color=colour, lw=1.0)
            top.set_title(cond)
            top.set_xlim(0, 1)
            top.set_xticks((0, 0.5, 1))
            top.set_ylim(0, 1)
            top.grid(alpha=0.3)
            _log_scale(bottom)
            bottom.set_ylim(1e-3, 1.5)
            bottom.set_xlabel("confidence")
        axes[0, 0].set_ylabel("accuracy")
        axes[1, 0].set_ylabel("share of predictions")
        _legend(fig, axes[0, 0])
        return render(fig)


def slice_lines(groups: dict[tuple[str, str], list[dict]], colours: dict, xlabel: str) -> tuple[bytes, str]:
    """1D slices overlaid per direction (small multiples), one line per model/mode; the panels
    share their loss scale, so that directions compare by eye."""
    directions = sorted({c["direction"] for cs in groups.values() for c in cs})
    ncol = min(4, len(directions))
    nrow = -(-len(directions) // ncol)
    with plt.rc_context(STYLE):
        fig, axes = _panels(nrow, ncol, (1.5, 1.2), (0.6, 0.35), len(groups), titles=True, sharex=True, sharey=True)
        for ax, d in zip(axes.flat, directions):
            for key, cs in groups.items():
                for c in cs:
                    if c["direction"] == d:
                        ax.plot(c["coords"], c["loss"], lw=1.0, color=colours[key], label=f"{key[0]} {key[1]}")
            ax.set_title(f"direction {d}")
            _log_scale(ax)
            ax.grid(alpha=0.3)
        for ax in axes.flat[len(directions):]:
            ax.axis("off")
        for ax in axes[-1]:
            ax.set_xlabel(xlabel)
        for ax in axes[:, 0]:
            ax.set_ylabel("loss (NLL)")
        _legend(fig, axes[0, 0])
        return render(fig)


def plane(curve: dict, title: str) -> tuple[bytes, str]:
    """A 2D slice as a filled contour map of log loss."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(COLUMN, COLUMN * 0.85))
        c = np.asarray(curve["coords"])
        z = np.log10(np.asarray(curve["loss"]))
        cf = ax.contourf(c, c, z.T, levels=20, cmap="viridis")
        fig.colorbar(cf, ax=ax, label="log10 loss")
        ax.plot(0, 0, "w+", ms=8)
        ax.set_xlabel("a (direction 1)")
        ax.set_ylabel("b (direction 2)")
        ax.set_title(title)
        fig.tight_layout()
        return render(fig)


def spike_rates(series: list[tuple[tuple[str, str], list[float], np.ndarray]], colours: dict, unit: str,
                log_x: bool, integer_x: bool = False) -> tuple[bytes, str]:
    """Mean spike rate per hidden layer against level (an energy proxy), one panel per layer;
    `integer_x` (bit widths) puts ticks on whole levels only."""
    layers = max(r.shape[1] for _, _, r in series)
    with plt.rc_context(STYLE):
        fig, axes = _panels(1, layers, (2.2, 1.6), (0.75, 0), len(series), titles=True)
        for i, ax in enumerate(axes[0]):
            for key, levels, rates in series:
                if rates.shape[1] > i:
                    ax.plot(levels, rates[:, i], marker="o", ms=2.5, lw=1.1, color=colours[key],
                            label=f"{key[0]} {key[1]}")
            ax.set_title(f"hidden layer {i}")
            ax.set_xlabel(unit)
            ax.set_ylabel("spikes / neuron / step")
            if log_x:
                _log_scale(ax, "x")
            if integer_x:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        _legend(fig, axes[0, 0])
        return render(fig)


LAYER_STYLES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1)), (0, (1, 1)))


def per_layer(curves: list[CurveSummary], labels: dict[str, str], colours: dict, unit: str, log_x: bool,
              integer_x: bool = False) -> tuple[bytes, str]:
    """Layer sensitivity: accuracy against level with one layer perturbed at a time; one panel
    per model/mode (its colour), one line style per layer, the clean accuracy dotted."""
    keys = list(dict.fromkeys((c.model, c.mode) for c in curves))
    layers = list(dict.fromkeys(c.layer for c in curves))
    with plt.rc_context(STYLE):
        fig, axes = _panels(1, len(keys), (2.6, 1.8), (0.6, 0), len(layers), titles=True, sharey=True)
        for ax, (model, mode) in zip(axes[0], keys):
            key = (labels[model], mode)
            for cs in (c for c in curves if (c.model, c.mode) == (model, mode)):
                lv = [s.level for s in cs.levels]
                acc = [100 * s.metrics["accuracy"][0] for s in cs.levels]
                ax.plot(lv, acc, marker="o", ms=2.5, lw=1.1, color=colours[key],
                        ls=LAYER_STYLES[layers.index(cs.layer) % len(LAYER_STYLES)], label=cs.layer)
                ax.axhline(100 * cs.clean["accuracy"], color=colours[key], lw=0.8, ls=":")
            ax.set_title(f"{key[0]} {key[1]}")
            ax.set_xlabel(unit)
            if log_x:
                _log_scale(ax, "x")
            if integer_x:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        axes[0, 0].set_ylabel("accuracy (%), one layer perturbed")
        _legend(fig, axes[0, 0])
        return render(fig)


def accuracy_energy(series: list[tuple[tuple[str, str], list[tuple[float, float, float | None]]]], colours: dict,
                    xlabel: str) -> tuple[bytes, str]:
    """Accuracy against a per-inference cost (energy estimate, or synaptic operations), one line
    per model/mode through its levels (the clean point ringed), ±95% chip interval on accuracy."""
    with plt.rc_context(STYLE):
        fig, axes = _panels(1, 1, (3.4, 2.4), (0, 0), len(series))
        ax = axes[0, 0]
        for i, (key, pts) in enumerate(series):  # a marker per series: one optimizer's models share a hue
            xs, ys, es = zip(*pts)
            ax.errorbar(xs, ys, yerr=[e or 0.0 for e in es], marker="osD^v<>"[i % 7], ms=3.5, lw=1.0, capsize=2,
                        color=colours[key], ls=("-", "--", ":", "-.")[i % 4], label=f"{key[0]} {key[1]}")
            ax.plot(xs[:1], ys[:1], marker="o", ms=8, mfc="none", color=colours[key])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
        _legend(fig, ax)
        return render(fig)
