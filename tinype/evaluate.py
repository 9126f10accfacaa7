"""Evaluation: per-token negative log-likelihood and perplexity over evaluation windows.

Shape letters: W windows, B batch, T time, V vocabulary.
"""
from __future__ import annotations

import time

import numpy as np

from .data import windows
from .tasks import encode_examples


def token_nll(logits, targets):
    """Per-position NLL in nats: logits (B, T, V), targets (B, T) -> (B, T), in float64."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    logsumexp = np.log(np.exp(z).sum(axis=-1))
    picked = np.take_along_axis(z, targets[..., None], axis=-1)[..., 0]
    return logsumexp - picked


def evaluate_lm(model, data: np.ndarray, T: int, batch_size: int = 16, max_windows: int | None = None) -> dict:
    """Mean NLL (nats per byte) over every position of non-overlapping windows of length T.

    Returns {"nll", "ppl", "windows", "tokens"}; ppl = exp(nll).
    """
    nll = position_nll(model, data, T, batch_size, max_windows)
    mean = float(nll.mean())
    return {"nll": mean, "ppl": float(np.exp(mean)), "windows": int(nll.shape[0]), "tokens": int(nll.size)}


def position_nll(model, data, L, batch_size=8, max_windows=None):
    """Per-position NLL (W, L) over non-overlapping windows of length L (the lab's raw material)."""
    x, y = windows(data, L)
    if max_windows is not None:
        x, y = x[:max_windows], y[:max_windows]
    rows = [token_nll(model.forward(x[s:s + batch_size]), y[s:s + batch_size])
            for s in range(0, len(x), batch_size)]
    return np.concatenate(rows, axis=0)


def sliding_nll(model, data, L, stride, batch_size=8, max_windows=None):
    """Mean NLL with a sliding window: windows of L start every `stride` bytes and each scores only
    its last `stride` positions (the first window scores all), so every byte is predicted once,
    with at least L - stride bytes of context."""
    if not 1 <= stride <= L:
        raise ValueError(f"stride must be in 1..{L}, got {stride}")
    x, y = windows(data, L, stride)
    if max_windows is not None:
        x, y = x[:max_windows], y[:max_windows]
    total, count = 0.0, 0
    for s in range(0, len(x), batch_size):
        nll = token_nll(model.forward(x[s:s + batch_size]), y[s:s + batch_size])
        if s == 0:
            total += float(nll[0].sum())
            count += L
            nll = nll[1:]
        total += float(nll[:, L - stride:].sum())
        count += nll[:, L - stride:].size
    return total / count


def evaluate_at_lengths(model, data, T_train, mults, max_windows=None, batch_size=8, stride=None):
    """The lab's protocols at L = T_train x m for every m in mults, on the token ids `data`.

    Returns ({L: row, or None when the PE cannot run at L}, curve). A row holds the mean NLLs
        nonoverlap  every position of non-overlapping windows (the ALiBi paper's default)
        beyond      only positions >= T_train of each window (None at L = T_train)
        sliding     windows every `stride` bytes (None: L // 2), each scoring its last `stride` positions
    and the non-overlapping pass's "tokens" and "seconds" (evaluation throughput). curve is
    (L, (L,) mean NLL at each position) at the longest L that runs, or None."""
    out, curve = {}, None
    for m in mults:
        L = int(T_train * m)
        s = max(1, L // 2) if stride is None else stride
        if s > L:
            raise ValueError(f"the sliding stride ({s} bytes) is longer than the window L={L}")
        try:
            model.pe.check_length(L)
        except ValueError:
            out[L] = None
            continue
        t0 = time.perf_counter()
        nll = position_nll(model, data, L, batch_size, max_windows)                      # (W, L)
        seconds = time.perf_counter() - t0
        row = {"nonoverlap": float(nll.mean()),
               "beyond": float(nll[:, T_train:].mean()) if L > T_train else None,
               "sliding": sliding_nll(model, data, L, s, batch_size, max_windows),
               "stride": s, "tokens": int(nll.size), "seconds": seconds}
        out[L] = row
        curve = (L, nll.mean(axis=0))
    return out, curve


def evaluate_task_nll(model, x, y, batch_size=32):
    """Mean NLL over the answer positions (targets != -1) of task examples x, y (N, T).

    Returns {"nll", "ppl", "windows", "tokens"} like evaluate_lm."""
    total, count = 0.0, 0
    for s in range(0, len(x), batch_size):
        yb = y[s:s + batch_size]
        keep = yb >= 0
        nll = token_nll(model.forward(x[s:s + batch_size]), np.where(keep, yb, 0))
        total += float(nll[keep].sum())
        count += int(keep.sum())
    mean = total / max(count, 1)
    return {"nll": mean, "ppl": float(np.exp(mean)), "windows": len(x), "tokens": count}


def task_accuracy(model, examples, batch_size=16):
    """Exact-match accuracy of greedy answers on [(prompt, answer)] examples of one length.

    Greedy decoding reproduces the answer exactly when, at every answer position, the likeliest
    byte given the correct prefix is the right one; so one teacher-forced forward pass grades it."""
    x, y = encode_examples(examples)
    correct = 0
    for s in range(0, len(x), batch_size):
        yb = y[s:s + batch_size]
        pred = model.forward(x[s:s + batch_size]).argmax(axis=-1)
        correct += int(np.all((pred == yb) | (yb < 0), axis=1).sum())
    return correct / len(x)
