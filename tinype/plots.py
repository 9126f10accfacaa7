"""Figures for the lab (and the chapters): matplotlib, written to PNG files, no screen needed."""
import os

import numpy as np

from .lab.results import table, task_table  # the lab's tables; the lab imports this module only to draw


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")                      # files only: works on machines without a display
    import matplotlib.pyplot as plt
    return plt


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (what the chapters draw with)."""
    return _pyplot()


def lab_figures(results, out):
    """ppl_vs_length.png (log-log, one line per encoding) and position_loss.png (at the longest L);
    nothing without language-model records (a --tasks-only lab)."""
    if not results["config"].get("language_models", True):
        return
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


def task_figures(results, out):
    """task_accuracy.png (accuracy vs example length per task) and passkey_heatmap.png (per encoding:
    key depth x context length, mean over seeds). Returns the paths written."""
    plt = _pyplot()
    recs = results.get("task_records") or []
    written = []
    tasks = [t for t in results["config"].get("tasks", []) if t != "passkey" and any(r["task"] == t for r in recs)]
    if tasks:
        fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.8), squeeze=False)
        for ax, task in zip(axes[0], tasks):
            first = next(r for r in recs if r["task"] == task)
            lengths = {int(n): L for n, L in first["lengths"].items()}
            for pe, by_n in sorted(task_table(results, task).items()):
                ns = [n for n in sorted(by_n) if by_n[n] is not None]
                if ns:
                    ax.plot([lengths[n] for n in ns], [100 * by_n[n][0] for n in ns], marker="o", label=pe)
            hi = first["train_sizes"][1]
            ax.axvline(lengths.get(hi, results["T_train"]), color="gray", linestyle="--", linewidth=1)
            ax.set_xscale("log", base=2)
            ax.set_ylim(-3, 103)
            ax.set_xlabel("example length (bytes; longest trained dashed)")
            ax.set_title(task)
            ax.grid(True, alpha=0.3)
        axes[0][0].set_ylabel("exact-match accuracy (%)")
        axes[0][-1].legend(fontsize=7)
        fig.tight_layout()
        path = os.path.join(out, "task_accuracy.png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)

    pk = [r for r in recs if r["task"] == "passkey"]
    if pk:
        pes = list(dict.fromkeys(r["pe"] for r in pk))
        sizes = sorted(int(n) for n in pk[0]["lengths"])
        depths = sorted({float(d) for r in pk for cell in r["accuracy"].values() if cell for d in cell})
        cols = min(4, len(pes))
        rows = -(-len(pes) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.1 * rows), squeeze=False, layout="constrained")
        for ax in axes.ravel()[len(pes):]:
            ax.axis("off")
        for ax, pe in zip(axes.ravel(), pes):
            grid = np.full((len(depths), len(sizes)), np.nan)
            for j, n in enumerate(sizes):
                cells = [r["accuracy"][str(n)] for r in pk if r["pe"] == pe]
                if all(c is not None for c in cells):
                    for i, d in enumerate(depths):
                        grid[i, j] = 100 * np.mean([c[str(d)] for c in cells])
            im = ax.imshow(np.ma.masked_invalid(grid), vmin=0, vmax=100, cmap="viridis", aspect="auto")
            for i in range(len(depths)):
                for j in range(len(sizes)):
                    text = "n/a" if np.isnan(grid[i, j]) else f"{grid[i, j]:.0f}"
                    ax.text(j, i, text, ha="center", va="center", fontsize=7,
                            color="white" if np.isnan(grid[i, j]) or grid[i, j] < 50 else "black")
            ax.set_xticks(range(len(sizes)), [str(pk[0]["lengths"][str(n)]) for n in sizes], fontsize=7)
            ax.set_yticks(range(len(depths)), [f"{d:.2f}" for d in depths], fontsize=7)
            ax.set_title(pe, fontsize=9)
            ax.set_xlabel("context (bytes)", fontsize=8)
            ax.set_ylabel("key depth", fontsize=8)
            ax.set_facecolor("0.85")
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="passkey accuracy (%)")
        T_pk = (results.get("task_model") or {}).get("passkey", {}).get("T_train", results["T_train"])
        fig.suptitle(f"Passkey retrieval, trained at {T_pk} bytes", fontsize=10)
        path = os.path.join(out, "passkey_heatmap.png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def extend_figure(ext, out, references=None):
    """extend_ppl.png: perplexity at F x T_train against fine-tuning steps, one line per method, with
    each base model's in-distribution perplexity (at T_train) as a dashed reference line."""
    from .lab.extend import table as extend_table
    plt = _pyplot()
    T, F = ext["T_train"], ext["factor"]
    L = T * F
    tab = extend_table(ext)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in ext["methods"]:
        by_step = tab.get(method, {})
        steps = [s for s in sorted(by_step) if by_step[s]["ppl"].get(L) is not None]
        if not steps:
            continue
        mean = np.array([by_step[s]["ppl"][L][0] for s in steps])
        std = np.array([by_step[s]["ppl"][L][1] for s in steps])
        line, = ax.plot(steps, mean, marker="o", label=method)
        ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    drawn = set()
    for method, ref in sorted((references or {}).items()):
        from .lab.extend import METHODS
        base = METHODS[method][0]
        if ref is None or base in drawn:
            continue
        drawn.add(base)
        ax.axhline(ref, color="gray", linestyle="--" if base == "rope" else ":", linewidth=1)
        ax.axhspan(ref, 1.1 * ref, color="gray", alpha=0.08)          # "within 10%" of it
        ax.text(max(ext["finetune_steps"]), ref, f"{base} at T_train={T}: {ref:.2f} (band: +10%) ", ha="right",
                va="top", color="dimgray", fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("fine-tuning steps at the new length")
    ax.set_ylabel(f"perplexity at L = {F} x T_train = {L}")
    ax.set_title(f"context extension by fine-tuning, {F}x")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(out, "extend_ppl.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
