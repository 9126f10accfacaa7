"""Exercise 10: adamw_step. Grade it with `python chapters/exercises/grade.py ex10`."""
import numpy as np


def adamw_step(p, g, m, v, t, lr, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1):
    """One AdamW step on one parameter (chapter 3). t: the step number, starting at 1.

    p <- p - lr * weight_decay * p                  (decoupled weight decay, first)
    m <- beta1 m + (1 - beta1) g;  v <- beta2 v + (1 - beta2) g^2
    p <- p - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)
    Returns new (p, m, v); do not modify the inputs.
    """
    raise NotImplementedError("exercise ex10 (adamw_step) is not done yet: write it in chapters/exercises/ex10_adamw_step.py")
