"""Reference solution of exercise 14: nonoverlap_perplexity."""
import numpy as np


def nonoverlap_perplexity(model, data, T):
    """Perplexity over non-overlapping windows (chapter 5), the ALiBi paper's default protocol.

    data: 1-D token ids. Windows start at 0, T, 2T, ... while start + T + 1 <= len(data); each
    gives inputs data[s:s+T] and targets data[s+1:s+T+1]. model.forward(x (B, T)) -> logits
    (B, T, V). Return exp(mean NLL over every position of every window), the NLL in nats.
    """
    starts = range(0, len(data) - T, T)
    x = np.stack([data[s:s + T] for s in starts]).astype(np.int64)
    y = np.stack([data[s + 1:s + T + 1] for s in starts]).astype(np.int64)
    z = model.forward(x).astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=-1))
    nll = lse - np.take_along_axis(z, y[..., None], axis=-1)[..., 0]
    return float(np.exp(nll.mean()))
