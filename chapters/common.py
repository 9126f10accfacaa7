"""Helpers shared by the chapter scripts: where figures go, a quick language model, checks that print.

Only tinype's public API is used here, as in the chapters themselves.
"""
import os
import re
import sys
import textwrap
import time
from dataclasses import replace

import tinype
from tinype.plots import pyplot

HERE = os.path.dirname(os.path.abspath(__file__))
_T0 = time.time()


def figure_dir(chapter):
    """chapters/figures/<chapter>/ (TINYPE_FIGURES overrides the parent folder), created if needed."""
    root = os.environ.get("TINYPE_FIGURES") or os.path.join(HERE, "figures")
    path = os.path.join(root, chapter)
    os.makedirs(path, exist_ok=True)
    print(f"[figures of this chapter go to {path}]")
    return path


def say(text):
    """Print the chapter's explanation, wrapped; a blank line or a line starting "1. " starts a paragraph."""
    paragraphs = re.split(r"\n\s*\n|\n(?=\d+\. )", textwrap.dedent(text).strip())
    for p in paragraphs:
        print(textwrap.fill(" ".join(p.split()), width=100))
    print()


def heading(text):
    print("\n" + text + "\n" + "=" * len(text))


def check(claim, ok, detail=""):
    """Print a claim and whether the measurement supports it; never hides a failure."""
    print(f"  [{'yes' if ok else 'NO '}] {claim}" + (f"  ({detail})" if detail else ""))
    return ok


def savefig(fig, folder, name):
    """Save the figure under folder/name; inside a Jupyter kernel, also show it in the notebook."""
    path = os.path.join(folder, name)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    if "ipykernel" in sys.modules:            # run as a notebook: show the saved picture under the cell
        from IPython.display import Image, display
        display(Image(filename=path))
    pyplot().close(fig)
    print(f"  figure: {path}")
    return path


_CORPUS = None


def corpus():
    global _CORPUS
    if _CORPUS is None:
        _CORPUS = tinype.Corpus.default()
    return _CORPUS


def quick_lm(pe, steps=300, seed=0, progress=True, **model_overrides):
    """A byte-level LM on the quick preset's model (2 layers, width 64, T_train 64), trained for
    `steps` steps on the bundled corpus. Returns the model."""
    model_cfg, train_cfg = tinype.preset("quick", pe=pe, **model_overrides)
    train_cfg = replace(train_cfg, steps=steps, warmup=min(train_cfg.warmup, steps // 10), seed=seed,
                        eval_every=0, ckpt_every=0)
    result = tinype.train(model_cfg, train_cfg, corpus(), progress=progress and sys.stderr.isatty(),
                          log=lambda m: None)
    print(f"  trained {pe:>16s}: {steps} steps, validation perplexity at T={model_cfg.T_train}: "
          f"{result.val['ppl']:.2f} ({result.tokens_per_sec:,.0f} tokens/s)")
    return result.model


def ppl(model, L, max_bytes=16384, data=None):
    """Perplexity of non-overlapping validation windows of length L over the first max_bytes of the
    validation text (the same text at every L), or None when the PE cannot run at L."""
    try:
        model.pe.check_length(L)
    except ValueError:
        return None
    data = corpus().val if data is None else data
    return tinype.evaluate_lm(model, data, L, batch_size=4, max_windows=max(1, max_bytes // L))["ppl"]


def plot_lengths(ax, lengths, rows, title, T_train=64):
    """Perplexity vs evaluation length, one line per encoding (None: cannot run there, not drawn)."""
    for pe, row in rows.items():
        xs = [L for L, v in zip(lengths, row) if v is not None]
        ax.plot(xs, [v for v in row if v is not None], marker="o", label=pe,
                linestyle="--" if "logn" in pe else "-")
    ax.axvline(T_train, color="gray", linestyle=":")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ticker = pyplot().matplotlib.ticker
    ax.xaxis.set_major_formatter(ticker.ScalarFormatter())              # 64, 128, ... rather than 2^6
    for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
        axis(ticker.FormatStrFormatter("%g"))                            # 5, 6, 7 rather than 5 x 10^0
    ax.set_xlabel(f"evaluation length L (bytes; log scale; T_train = {T_train} dotted)")
    ax.set_ylabel("perplexity, exp(mean NLL per byte) (log scale)")
    ax.set_title(title)
    ax.legend(fontsize=8)


def fmt(v):
    return "n/a" if v is None else f"{v:.2f}"


def done():
    print(f"\n(chapter finished in {time.time() - _T0:.0f} s)")
