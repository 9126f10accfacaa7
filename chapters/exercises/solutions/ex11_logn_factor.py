"""Reference solution of exercise 11: logn_factor."""
import numpy as np


def logn_factor(T, T_train):
    """Log-n attention scaling (chapter 4; the second reading of article 002's log(n+1)).

    Returns (T,) multipliers of the logits of the query at 0-based position i:
    max(1, ln(i + 1) / ln(T_train)). Inside the training length nothing changes.
    """
    return np.maximum(1.0, np.log(np.arange(1, T + 1)) / np.log(T_train))
