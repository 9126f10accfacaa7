"""Figures for the lab (and the chapters): matplotlib, written to PNG files, no screen needed."""
import os

import numpy as np


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")                      # files only: works on machines without a display
    import matplotlib.pyplot as plt
    return plt


def lab_figures(results, out):
    """ppl_vs_length.png (log-log, one line per encoding) and position_loss.png (at the longest L)."""
    from .lab import table
    plt = _pyplot()
    T = results["T_train"]
    tab = table(results, "nonoverlap")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for pe, by_L in sorted(tab.items()):
        Ls = [L for L in sorted(by_L) if by_L[L] is not None]
        if not Ls:
            continue
        mean = np.array([by_L[L][0] for L in Ls])
        std = np.array([by_L[L][1] for L in Ls])
        line, = ax.plot(Ls, mean, marker="o", label=pe)
        ax.fill_between(Ls, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    ax.axvline(T, color="gray", linestyle="--", linewidth=1)
    ax.text(T, ax.get_ylim()[1] if ax.has_data() else 1, " T_train", va="top", color="gray")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("evaluation length L (bytes)")
    ax.set_ylabel("perplexity (non-overlapping windows)")
    ax.set_title(f"Train short ({T}), test long: {results['config']['preset']} preset")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "ppl_vs_length.png"), dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    curves = {}
    for r in results["records"]:
        c = r.get("position_curve")
        if c:
            curves.setdefault(r["pe"], []).append(np.array(c["nll"]))
    for pe, cs in sorted(curves.items()):
        n = min(len(c) for c in cs)
        mean = np.mean([c[:n] for c in cs], axis=0)
        # average within log-spaced bins of positions: every position counts, the curve stays readable
        edges = np.unique(np.round(np.logspace(0, np.log10(n), 48)).astype(int))
        edges = np.concatenate([[0], edges[edges < n], [n]])
        centres = [(a + b - 1) / 2 + 1 for a, b in zip(edges[:-1], edges[1:])]
        binned = [mean[a:b].mean() for a, b in zip(edges[:-1], edges[1:])]
        ax.plot(centres, binned, marker=".", label=f"{pe} (L={n})", linewidth=1.2)
    ax.axvline(T, color="gray", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("position in the window (1-based; T_train dashed)")
    ax.set_ylabel("mean NLL (nats per byte)")
    ax.set_title("Loss at each position, longest length each encoding runs at")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "position_loss.png"), dpi=120)
    plt.close(fig)
