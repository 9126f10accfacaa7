"""Exercise 11: logn_factor. Grade it with `python chapters/exercises/grade.py ex11`."""
import numpy as np


def logn_factor(T, T_train):
    """Log-n attention scaling (chapter 4; the second reading of article 002's log(n+1)).

    Returns (T,) multipliers of the logits of the query at 0-based position i:
    max(1, ln(i + 1) / ln(T_train)). Inside the training length nothing changes.
    """
    raise NotImplementedError("exercise ex11 (logn_factor) is not done yet: write it in chapters/exercises/ex11_logn_factor.py")
