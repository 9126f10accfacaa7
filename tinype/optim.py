"""AdamW with decoupled weight decay, global gradient-norm clipping, warmup + cosine schedule.

Matches torch.optim.AdamW and torch.nn.utils.clip_grad_norm_ step for step (the PyTorch
cross-check in tests/test_torch_crosscheck.py holds them equal).
"""
import math

import numpy as np


def decays(name, param):
    """Weight decay applies to 2-D weight matrices only (the tied embedding included), never to
    biases, LayerNorm gains or the positional encoding's parameters."""
    return param.ndim == 2 and not name.startswith("pe.")


class AdamW:
    """Adam (Kingma & Ba 2015) with decoupled weight decay (Loshchilov & Hutter 2019).

        p <- p - lr * wd * p                       (decay-eligible parameters only)
        m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
        p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1):
        self.params = params
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.t = 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.decay = {k: decays(k, v) for k, v in params.items()}

    def step(self, grads, lr=None):
        """Update self.params in place from grads (same keys)."""
        lr = self.lr if lr is None else lr
        b1, b2 = self.betas
        self.t += 1
        bc1 = 1.0 - b1 ** self.t
        bc2 = 1.0 - b2 ** self.t
        for name, p in self.params.items():
            g = grads[name]
            m, v = self.m[name], self.v[name]
            if self.decay[name] and self.weight_decay:
                p *= 1.0 - lr * self.weight_decay
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            v += (1.0 - b2) * (g * g)
            denom = np.sqrt(v) / math.sqrt(bc2) + self.eps
            p -= (lr / bc1) * m / denom

    def state_dict(self):
        """Arrays and the step count, for checkpoints."""
        state = {f"m/{k}": v for k, v in self.m.items()}
        state.update({f"v/{k}": v for k, v in self.v.items()})
        return state, {"t": self.t}

    def load_state_dict(self, arrays, meta):
        for k in self.m:
            self.m[k][...] = arrays[f"m/{k}"]
            self.v[k][...] = arrays[f"v/{k}"]
        self.t = int(meta["t"])


def clip_grad_norm(grads, max_norm):
    """Scale all gradients in place so their global L2 norm is at most max_norm.

    Returns the norm before clipping (as torch.nn.utils.clip_grad_norm_ does).
    """
    total = math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads.values()))
    if max_norm > 0:
        coef = max_norm / (total + 1e-6)
        if coef < 1.0:
            for g in grads.values():
                g *= coef
    return total


def lr_at(step, lr, steps, warmup, min_lr_ratio=0.1):
    """Linear warmup over `warmup` steps, then cosine decay to min_lr_ratio * lr at the last step.

    step is 0-based: step 0 uses lr / warmup, step warmup-1 uses the full lr.
    """
    if step < warmup:
        return lr * (step + 1) / warmup
    span = max(1, steps - 1 - warmup)
    progress = min(1.0, (step - warmup) / span)
    min_lr = min_lr_ratio * lr
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))
