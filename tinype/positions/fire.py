"""FIRE (Li et al. 2023, "Functional Interpolation for Relative Positions Improves Long Context
Transformers"): a small learned function of the normalised distance.

    bias[h, i, j] = f_theta( psi(i - j) / psi(max(L, i)) )_h,    psi(x) = ln(c x + 1)
f_theta is an MLP 1 -> 32 -> H with ReLU; c (init 0.1) and the threshold L (init T_train) are
learned too (used as |c| and |L|, as the authors' code does). Dividing by psi(i) maps every
query's distances into [0, 1], whatever the length: that is the interpolation that lets FIRE read
past T_train. The bias depends on i as well as i - j, so it is a dense (H, T, T) array rather than a
table over distances, and it is shared by all layers here. MLP init: PyTorch nn.Linear's default,
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as in the authors' code. The output bias b2 is kept for the same
reason, though it can never learn: it adds the same number to every logit of a softmax row, which
the softmax cancels, so its gradient is exactly zero (a good exercise to prove).
"""
import numpy as np

from .base import PositionalEncoding

CHUNK = 1 << 18          # pairs per MLP evaluation: bounds the (pairs, 32) hidden activations


class FIRE(PositionalEncoding):
    """Learned MLP of the log-normalised distance, dense bias."""

    name = "fire"

    def __init__(self, hidden=32, init_c=0.1, init_L=None):
        self.hidden = int(hidden)
        self.init_c = float(init_c)
        self.init_L = init_L

    def init_params(self, rng):
        H, M, dt = self.n_head, self.hidden, self.dtype
        L0 = float(self.T_train if self.init_L is None else self.init_L)
        k2 = 1.0 / np.sqrt(M)
        return {"fire_c": np.array([self.init_c], dt), "fire_L": np.array([L0], dt),
                "fire_w1": rng.uniform(-1, 1, (1, M)).astype(dt), "fire_b1": rng.uniform(-1, 1, M).astype(dt),
                "fire_w2": rng.uniform(-k2, k2, (M, H)).astype(dt), "fire_b2": rng.uniform(-k2, k2, H).astype(dt)}

    def _pairs(self, T):
        i, j = np.tril_indices(T) if self.causal else np.indices((T, T)).reshape(2, -1)
        return i, j

    def _normalised(self, params, T):
        c = abs(float(params["fire_c"][0]))
        L = abs(float(params["fire_L"][0]))
        i, j = self._pairs(T)
        r = np.abs(i - j).astype(np.float64)
        m = np.maximum(L, i.astype(np.float64))
        num, den = np.log1p(c * r), np.log1p(c * m)
        return i, j, r, m, num, den, num / den

    def _mlp(self, params, u):
        """f_theta(u): (pairs,) normalised distances -> (pairs, H) biases, chunk by chunk."""
        w1, b1 = params["fire_w1"][0].astype(np.float64), params["fire_b1"].astype(np.float64)
        w2, b2 = params["fire_w2"].astype(np.float64), params["fire_b2"].astype(np.float64)
        out = np.empty((len(u), self.n_head))
        for s in range(0, len(u), CHUNK):
            h = np.maximum(u[s:s + CHUNK, None] * w1 + b1, 0.0)              # (pairs, 32)
            out[s:s + CHUNK] = h @ w2 + b2
        return out

    def bias(self, params, T, positions):
        i, j, r, m, num, den, u = self._normalised(params, T)
        dense = np.zeros((self.n_head, T, T), dtype=self.dtype)
        dense[:, i, j] = self._mlp(params, u).T
        return dense, (T,)

    def bias_rows(self, params, t0, L, positions):
        """Rows t0..L-1 of the dense bias, (H, L - t0, L), without building the other rows: one new
        query costs O(L) MLP evaluations instead of O(L^2)."""
        c = abs(float(params["fire_c"][0]))
        thr = abs(float(params["fire_L"][0]))
        i, j = np.nonzero(np.arange(L)[None, :] <= (t0 + np.arange(L - t0))[:, None])   # (a, j), j <= t0 + a
        r = (t0 + i - j).astype(np.float64)
        m = np.maximum(thr, (t0 + i).astype(np.float64))
        u = np.log1p(c * r) / np.log1p(c * m)                 # the same formula as _normalised
        rows = np.zeros((self.n_head, L - t0, L), dtype=self.dtype)
        rows[:, i, j] = self._mlp(params, u).T
        return rows

    def bias_backward(self, params, dbias, cache):
        (T,) = cache
        i, j, r, m, num, den, u = self._normalised(params, T)
        c_raw, L_raw = float(params["fire_c"][0]), float(params["fire_L"][0])
        c = abs(c_raw)
        w1, b1 = params["fire_w1"][0].astype(np.float64), params["fire_b1"].astype(np.float64)
        w2 = params["fire_w2"].astype(np.float64)
        dout = dbias[:, i, j].T.astype(np.float64)                            # (pairs, H)
        dw1, db1 = np.zeros_like(w1), np.zeros_like(b1)
        dw2, db2 = np.zeros_like(w2), dout.sum(axis=0)
        du = np.empty_like(u)
        for s in range(0, len(u), CHUNK):                 # recompute the hidden layer chunk by chunk
            pre = u[s:s + CHUNK, None] * w1 + b1
            h = np.maximum(pre, 0.0)
            dw2 += h.T @ dout[s:s + CHUNK]
            dpre = (dout[s:s + CHUNK] @ w2.T) * (pre > 0)
            dw1 += (u[s:s + CHUNK, None] * dpre).sum(axis=0)
            db1 += dpre.sum(axis=0)
            du[s:s + CHUNK] = dpre @ w1
        # u = ln(1 + c r) / ln(1 + c m), m = max(L, i)
        du_dc = (r / (1 + c * r) * den - num * m / (1 + c * m)) / den ** 2
        du_dm = -num / den ** 2 * c / (1 + c * m)
        dm_dL = (abs(L_raw) > i).astype(np.float64)
        dc = np.sum(du * du_dc) * np.sign(c_raw)
        dL = np.sum(du * du_dm * dm_dL) * np.sign(L_raw)
        dt = self.dtype
        return {"fire_c": np.array([dc], dt), "fire_L": np.array([dL], dt), "fire_w1": dw1[None, :].astype(dt),
                "fire_b1": db1.astype(dt), "fire_w2": dw2.astype(dt), "fire_b2": db2.astype(dt)}
