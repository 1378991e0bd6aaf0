"""Report figures (matplotlib, Agg), each returned as PNG bytes and SVG text.

One colour per (model, mode) across every figure of a report; sizes and fonts chosen to
stay legible at one-column width (3.4 in) for single panels.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402

from reports.summary import CurveSummary  # noqa: E402

COLUMN = 3.4  # inches: one column of a two-column paper
PANEL_METRICS = (("accuracy", "accuracy (%)", 100.0), ("nll", "NLL (nats)", 1.0), ("ece", "ECE", 1.0),
                 ("brier", "Brier score", 1.0))
STYLE = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7, "xtick.labelsize": 7,
         "ytick.labelsize": 7, "figure.dpi": 120, "svg.fonttype": "none"}


def palette(keys: list[tuple[str, str]]) -> dict[tuple[str, str], tuple]:
    """A fixed colour per (model label, mode), in first-seen order."""
    colours = sns.color_palette("colorblind", max(len(keys), 1))
    return {k: colours[i % len(colours)] for i, k in enumerate(dict.fromkeys(keys))}


def _legend_below(fig, ax) -> None:
    """One legend for the whole figure, under the panels, so that it hides no data."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(3, len(handles)),
                   frameon=False)


def render(fig) -> tuple[bytes, str]:
    # The tight box once for both files: each "tight" save would draw the figure twice.
    box = fig.get_tightbbox(fig.canvas.get_renderer()).padded(0.05)
    png, svg = io.BytesIO(), io.StringIO()
    fig.savefig(png, format="png", bbox_inches=box)
    fig.savefig(svg, format="svg", bbox_inches=box)
    plt.close(fig)
    return png.getvalue(), svg.getvalue()


def degradation(curves: list[CurveSummary], labels: dict[str, str], colours: dict, unit: str, log_x: bool):
    """Accuracy, NLL, ECE and Brier against level: mean and 95% band over chips, clean marked."""
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(2, 2, figsize=(2 * COLUMN, 2 * COLUMN * 0.62), sharex=True)
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
                ax.set_xscale("log")
            ax.grid(alpha=0.3)
        for ax in axes[1]:
            ax.set_xlabel(unit)
        fig.tight_layout()
        _legend_below(fig, axes[0, 0])
        return render(fig)


def reliability(rows: list[tuple[str, tuple, list[tuple[str, dict]]]]) -> tuple[bytes, str]:
    """Reliability diagrams: one row per model/mode (label, colour, panels), one column per
    condition (clean, then levels). Bars: accuracy per confidence bin; grey: the share of
    predictions in each bin; dashed: perfect calibration."""
    ncol = max(len(p) for _, _, p in rows)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(len(rows), ncol, figsize=(1.7 * ncol + 0.4, 1.55 * len(rows) + 0.3),
                                 squeeze=False, sharex=True, sharey=True)
        for i, (label, colour, panels) in enumerate(rows):
            for j, (title, d) in enumerate(panels):
                ax = axes[i, j]
                edges = np.array(d["edges"])
                share = np.array(d["count"], dtype=float) / max(sum(d["count"]), 1)
                ax.stairs(share, edges, fill=True, color="grey", alpha=0.35)  # one artist, not 15 bars
                acc = np.nan_to_num(np.array(d["accuracy"], dtype=float))
                ax.stairs(acc, edges, fill=True, color=colour, alpha=0.6)
                ax.plot([0, 1], [0, 1], color="black", lw=0.7, ls="--")
                ax.set_xlim(0, 1)
                ax.set_ylim(0, 1)
                ax.set_title(f"{label}, {title}\nECE {d['ece']:.3f} / aECE {d['adaptive_ece']:.3f}", fontsize=6.5)
                if i == len(rows) - 1:
                    ax.set_xlabel("confidence")
                if j == 0:
                    ax.set_ylabel("accuracy")
            for j in range(len(panels), ncol):
                axes[i, j].axis("off")
        fig.tight_layout()
        return render(fig)


def slice_lines(groups: dict[tuple[str, str], list[dict]], colours: dict, xlabel: str) -> tuple[bytes, str]:
    """1D slices overlaid per direction (small multiples), one line per model/mode."""
    directions = sorted({c["direction"] for cs in groups.values() for c in cs})
    ncol = min(4, len(directions))
    nrow = -(-len(directions) // ncol)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrow, ncol, figsize=(1.75 * ncol + 0.3, 1.5 * nrow + 0.3), squeeze=False,
                                 sharex=True)
        for ax, d in zip(axes.flat, directions):
            for key, cs in groups.items():
                for c in cs:
                    if c["direction"] == d:
                        ax.plot(c["coords"], c["loss"], lw=1.0, color=colours[key], label=f"{key[0]} {key[1]}")
            ax.set_title(f"direction {d}")
            ax.set_yscale("log")
            ax.grid(alpha=0.3)
        for ax in axes.flat[len(directions):]:
            ax.axis("off")
        for ax in axes[-1]:
            ax.set_xlabel(xlabel)
        for ax in axes[:, 0]:
            ax.set_ylabel("loss (NLL)")
        fig.tight_layout()
        _legend_below(fig, axes[0, 0])
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
                log_x: bool) -> tuple[bytes, str]:
    """Mean spike rate per hidden layer against level (an energy proxy), one panel per layer."""
    layers = max(r.shape[1] for _, _, r in series)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, layers, figsize=(COLUMN * min(layers, 2), COLUMN * 0.7), squeeze=False)
        for i, ax in enumerate(axes[0]):
            for key, levels, rates in series:
                if rates.shape[1] > i:
                    ax.plot(levels, rates[:, i], marker="o", ms=2.5, lw=1.1, color=colours[key],
                            label=f"{key[0]} {key[1]}")
            ax.set_title(f"hidden layer {i}")
            ax.set_xlabel(unit)
            ax.set_ylabel("spikes / neuron / step")
            if log_x:
                ax.set_xscale("log")
            ax.grid(alpha=0.3)
        fig.tight_layout()
        _legend_below(fig, axes[0, 0])
        return render(fig)
