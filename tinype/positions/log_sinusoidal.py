"""The second article's f(n) = log(n + 1), read as log-compressed positions in a sinusoid.

    p' = T_train * ln(1 + p) / ln(1 + T_train),   x_p = wte[token_p] + PE(p') / sqrt(C)

Positions 0..T_train map onto 0..T_train, and longer inputs are squeezed logarithmically: position
8 T_train lands at only ~1.5 T_train. The article claims this keeps quality on long inputs; the lab
measures it (and logn.py holds the other reading of the same formula).
"""
import numpy as np

from .sinusoidal import Sinusoidal


def log_positions(positions, T_train):
    return T_train * np.log1p(np.asarray(positions, dtype=np.float64)) / np.log1p(T_train)


class LogSinusoidal(Sinusoidal):
    """Sinusoidal table at log-compressed positions."""

    name = "log_sinusoidal"

    def table(self, positions):
        return super().table(log_positions(positions, self.T_train))
