"""Exercise 20 (core): lstm_step.

Read first: chapters/ch5_practice.py, section "The LSTM step"
Grade it:   python chapters/exercises/grade.py ex20
Plugs into: graded on its own: your steps must reproduce tinype.classify.lstm_forward
"""


def lstm_step(x, h, c, wx, wh, b):
    """One step of an LSTM (article 000's model), gates in the order i, f, g, o.

    x: (B, I) this step's input; h, c: (B, H) the previous hidden and cell state;
    wx: (I, 4H); wh: (H, 4H); b: (4H,).   Returns (h', c'), each (B, H).

    Steps:
      1. z = the input and the hidden state through their weights, plus b: (B, 4H)
      2. split z into four (B, H) blocks i, f, g, o; i, f, o through a sigmoid, g through tanh
      3. the new cell: forget part of the old cell, add the gated candidate
      4. the new hidden state: the output gate times tanh of the new cell
    """
    raise NotImplementedError("exercise ex20 (lstm_step) is not done yet: write it in chapters/exercises/ex20_lstm_step.py")
