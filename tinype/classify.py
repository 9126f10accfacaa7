"""Sequence classifiers, forward and backward by hand: article 000's LSTM classifier, corrected, and a
Transformer classifier that can start from a pretrained language model.

Article 000 §5 (Keras):  Embedding(V, 64, mask_zero) + PositionalEncoding -> LSTM(128)
                         -> Dense(64, relu) -> Dense(C, softmax), categorical cross-entropy.
Here the same, in NumPy. The article's PositionalEncoding was never defined; an LSTM reads its input
in order, so it needs none (pe=False is the default; pe=True adds the sinusoidal table to show it).

TransformerClassifier: a tinype Transformer's final activations, averaged over positions, then one
Linear layer to C classes. from_pretrained() copies a language model's weights into its trunk:
the article's pretrain -> fine-tune path (000 §3).

Shape letters: B batch, T time, E embedding width, H LSTM width, C classes.
"""
from typing import NamedTuple

import numpy as np

from .layers import cross_entropy_backward, cross_entropy_forward, embedding_backward, embedding_forward
from .model import Transformer
from .optim import AdamW, clip_grad_norm, lr_at


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))                 # = 1 / (1 + e^-x), without overflow


class LSTMCache(NamedTuple):
    x: np.ndarray          # (B, T, E) inputs
    mask: np.ndarray       # (B, T, 1) 1 where the step is real, 0 on padding
    h_prev: np.ndarray     # (T, B, H) state before each step
    c_prev: np.ndarray     # (T, B, H)
    gates: np.ndarray      # (T, B, 4H) activated i, f, g, o
    tanh_c: np.ndarray     # (T, B, H) tanh of the new cell
    wx: np.ndarray
    wh: np.ndarray


def lstm_forward(x, wx, wh, b, mask=None):
    """The last hidden state h_T (B, H) of an LSTM over x (B, T, E), and the cache.

    z = x_t wx + h_{t-1} wh + b, split into i, f, g, o (B, H each);
    i, f, o = sigmoid; g = tanh; c_t = f c_{t-1} + i g; h_t = o tanh(c_t).
    mask (B, T): where 0 (padding, Keras's mask_zero), the state is carried over unchanged, so h_T
    is the state after each sequence's last real step."""
    B, T, E = x.shape
    H = wh.shape[0]
    m = np.ones((B, T, 1), x.dtype) if mask is None else np.asarray(mask, x.dtype)[..., None]
    h = np.zeros((B, H), x.dtype)
    c = np.zeros((B, H), x.dtype)
    hs, cs = np.empty((T, B, H), x.dtype), np.empty((T, B, H), x.dtype)
    gates, tcs = np.empty((T, B, 4 * H), x.dtype), np.empty((T, B, H), x.dtype)
    xw = x @ wx + b                                           # (B, T, 4H): the input part, all steps
    for t in range(T):
        hs[t], cs[t] = h, c
        z = xw[:, t] + h @ wh
        a = np.concatenate([_sigmoid(z[:, :2 * H]), np.tanh(z[:, 2 * H:3 * H]), _sigmoid(z[:, 3 * H:])], axis=1)
        i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
        c_new = f * c + i * g
        tc = np.tanh(c_new)
        h_new = o * tc
        mt = m[:, t]
        c = mt * c_new + (1 - mt) * c
        h = mt * h_new + (1 - mt) * h
        gates[t], tcs[t] = a, tc
    return h, LSTMCache(x, m, hs, cs, gates, tcs, wx, wh)


def lstm_backward(dh_last, cache):
    """Backward through time from d(loss)/d(h_T): returns dx (B, T, E), dwx, dwh, db."""
    x, m, hs, cs, gates, tcs, wx, wh = cache
    B, T, E = x.shape
    H = wh.shape[0]
    dx = np.empty_like(x)
    dwx, dwh, db = np.zeros_like(wx), np.zeros_like(wh), np.zeros(4 * H, x.dtype)
    dh, dc = dh_last.copy(), np.zeros_like(dh_last)
    for t in reversed(range(T)):
        a, tc, mt = gates[t], tcs[t], m[:, t]
        i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
        # in the forward pass: h = m h_new + (1 - m) h_prev, c likewise
        dh_new = mt * dh
        dc_new = mt * dc + dh_new * o * (1 - tc * tc)        # h_new = o tanh(c_new)
        dz = np.concatenate([dc_new * g * i * (1 - i),         # c_new = f c_prev + i g
                             dc_new * cs[t] * f * (1 - f),
                             dc_new * i * (1 - g * g),
                             dh_new * tc * o * (1 - o)], axis=1)
        dwx += x[:, t].T @ dz
        dwh += hs[t].T @ dz
        db += dz.sum(axis=0)
        dx[:, t] = dz @ wx.T
        dh = (1 - mt) * dh + dz @ wh.T
        dc = (1 - mt) * dc + dc_new * f
    return dx, dwx, dwh, db


class LSTMClassifier:
    """Article 000 §5's model: Embedding(V, E) [+ sinusoidal PE] -> LSTM(H) -> Dense(64, relu) -> Dense(C)."""

    def __init__(self, n_classes, vocab_size=256, embed=64, hidden=128, dense=64, pe=False, max_len=4096,
                 seed=0, dtype="float32"):
        if n_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {n_classes}")
        rng = np.random.default_rng(seed)
        dt = np.dtype(dtype)

        def uniform(shape, fan_in):                          # Glorot-style, as Keras initialises
            lim = np.sqrt(6.0 / (fan_in + shape[-1]))
            return rng.uniform(-lim, lim, shape).astype(dt)

        b = np.zeros(4 * hidden, dt)
        b[hidden:2 * hidden] = 1.0                           # forget-gate bias 1 (Keras's unit_forget_bias)
        self.params = {"emb": rng.normal(0, 0.05, (vocab_size, embed)).astype(dt),
                       "lstm.wx": uniform((embed, 4 * hidden), embed),
                       "lstm.wh": uniform((hidden, 4 * hidden), hidden), "lstm.b": b,
                       "fc1.w": uniform((hidden, dense), hidden), "fc1.b": np.zeros(dense, dt),
                       "fc2.w": uniform((dense, n_classes), dense), "fc2.b": np.zeros(n_classes, dt)}
        self.pe_table = None
        if pe:
            from .positions import sinusoidal_table
            self.pe_table = (sinusoidal_table(np.arange(max_len), embed) / np.sqrt(embed)).astype(dt)
        self.grads = None

    def parameters(self):
        return self.params

    def logits(self, idx, mask=None):
        p = self.params
        idx = np.asarray(idx)
        x, emb = embedding_forward(idx, p["emb"])                        # (B, T, E)
        if self.pe_table is not None:
            if idx.shape[1] > len(self.pe_table):
                raise ValueError(f"sequence of {idx.shape[1]} exceeds the PE table ({len(self.pe_table)})")
            x = x + self.pe_table[:idx.shape[1]]
        h, lstm = lstm_forward(x, p["lstm.wx"], p["lstm.wh"], p["lstm.b"], mask)
        a = h @ p["fc1.w"] + p["fc1.b"]
        r = np.maximum(a, 0)
        self._cache = (emb, lstm, h, a, r)
        return r @ p["fc2.w"] + p["fc2.b"]

    def loss(self, idx, labels, mask=None):
        z = self.logits(idx, mask)
        loss, ce = cross_entropy_forward(z, np.asarray(labels))
        self._ce = ce
        return float(loss)

    def backward(self):
        p = self.params
        emb, lstm, h, a, r = self._cache
        dz = cross_entropy_backward(1.0, self._ce)                      # (B, C)
        g = {"fc2.w": r.T @ dz, "fc2.b": dz.sum(axis=0)}
        da = (dz @ p["fc2.w"].T) * (a > 0)                               # relu
        g["fc1.w"], g["fc1.b"] = h.T @ da, da.sum(axis=0)
        dx, g["lstm.wx"], g["lstm.wh"], g["lstm.b"] = lstm_backward(da @ p["fc1.w"].T, lstm)
        g["emb"] = embedding_backward(dx, emb)
        self.grads = {k: g[k] for k in p}
        return self.grads

    def predict(self, idx, mask=None):
        return self.logits(idx, mask).argmax(axis=-1)


class TransformerClassifier:
    """A tinype Transformer trunk, mean-pooled over positions, then Linear(C_model, n_classes)."""

    def __init__(self, config, n_classes, seed=0):
        if n_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {n_classes}")
        self.trunk = Transformer(config, seed=seed)
        rng = np.random.default_rng([seed, 1])
        dt = np.dtype(config.dtype)
        self.params = dict(self.trunk.parameters())
        self.params["cls.w"] = rng.normal(0, 0.02, (config.d_model, n_classes)).astype(dt)
        self.params["cls.b"] = np.zeros(n_classes, dt)
        self.grads = None

    @classmethod
    def from_pretrained(cls, lm, n_classes, seed=0):
        """Start from a trained language model's weights (copied); only the head is new."""
        model = cls(lm.config, n_classes, seed)
        model.trunk.load_parameters(lm.parameters())
        return model

    @property
    def config(self):
        return self.trunk.config

    def parameters(self):
        return self.params

    def logits(self, idx):
        hf = self.trunk.features(idx)                                   # (B, T, C)
        pooled = hf.mean(axis=1)
        self._pool = (pooled, hf.shape[1])
        return pooled @ self.params["cls.w"] + self.params["cls.b"]

    def loss(self, idx, labels):
        loss, self._ce = cross_entropy_forward(self.logits(idx), np.asarray(labels))
        return float(loss)

    def backward(self):
        pooled, T = self._pool
        dz = cross_entropy_backward(1.0, self._ce)                      # (B, n_classes)
        dpooled = dz @ self.params["cls.w"].T
        dhf = np.repeat(dpooled[:, None, :] / T, T, axis=1)              # mean over T
        g = dict(self.trunk.trunk_backward(dhf))
        g["cls.w"], g["cls.b"] = pooled.T @ dz, dz.sum(axis=0)
        self.grads = {k: g[k] for k in self.params}
        return self.grads

    def predict(self, idx):
        return self.logits(idx).argmax(axis=-1)


def fit(model, batches, steps, lr=3e-3, weight_decay=0.01, warmup=20, clip=1.0, progress=False, desc="fit"):
    """Train any model with parameters(), loss(x, y), backward() on batches(step) -> (x, y).

    AdamW, clipping, warmup + cosine, as the language model trains. Returns the loss history."""
    opt = AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    history = []
    it = range(steps)
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc=desc, unit="step", dynamic_ncols=True)
    for step in it:
        x, y = batches(step)
        loss = model.loss(x, y)
        if not np.isfinite(loss):
            raise FloatingPointError(f"{desc}: loss became {loss} at step {step}; lower the learning rate")
        grads = model.backward()
        clip_grad_norm(grads, clip)
        opt.step(grads, lr_at(step, lr, steps, min(warmup, steps // 10), 0.1))
        history.append(loss)
    return history


def accuracy(model, x, y, batch_size=64):
    """Fraction of x (N, T) classified as y (N,)."""
    pred = np.concatenate([model.predict(x[s:s + batch_size]) for s in range(0, len(x), batch_size)])
    return float((pred == np.asarray(y)).mean())
