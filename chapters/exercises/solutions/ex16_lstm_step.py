"""Reference solution of exercise 16: lstm_step."""
import numpy as np


def lstm_step(x, h, c, wx, wh, b):
    """One LSTM step (chapter 5, article 000's model), gates in the order i, f, g, o.

    z = x wx + h wh + b (B, 4H); i, f, o = sigmoid; g = tanh;
    c' = f c + i g; h' = o tanh(c'). Returns (h', c').
    """
    H = h.shape[-1]
    z = x @ wx + h @ wh + b
    sig = lambda a: 1 / (1 + np.exp(-a))
    i, f, g, o = sig(z[:, :H]), sig(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H]), sig(z[:, 3 * H:])
    c = f * c + i * g
    return o * np.tanh(c), c
