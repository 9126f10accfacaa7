"""Exercise 16: lstm_step. Grade it with `python chapters/exercises/grade.py ex16`."""
import numpy as np


def lstm_step(x, h, c, wx, wh, b):
    """One LSTM step (chapter 5, article 000's model), gates in the order i, f, g, o.

    z = x wx + h wh + b (B, 4H); i, f, o = sigmoid; g = tanh;
    c' = f c + i g; h' = o tanh(c'). Returns (h', c').
    """
    raise NotImplementedError("exercise ex16 (lstm_step) is not done yet: write it in chapters/exercises/ex16_lstm_step.py")
