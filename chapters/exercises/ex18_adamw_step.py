"""Exercise 18 (core): adamw_step.

Read first: chapters/ch3_algorithm.py, section "The AdamW update"
Grade it:   python chapters/exercises/grade.py ex18
Plugs into: the optimizer (tinype.AdamW.step): each parameter is updated by your function
"""


def adamw_step(p, g, m, v, t, lr, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1):
    """One AdamW step on one parameter array (Loshchilov & Hutter's decoupled weight decay).

    p, g, m, v: arrays of one shape (parameter, gradient, first and second moment); t: the step
    number, starting at 1; lr: this step's learning rate.
    Returns new (p, m, v); do not modify the inputs in place.

    Steps:
      1. decoupled weight decay first: shrink p by a factor that uses lr and weight_decay (not the gradient)
      2. update the running means m (of g) and v (of g squared) with beta1 and beta2
      3. bias-correct both for step t (early steps: the means start at zero)
      4. step p against the corrected m, divided by the square root of the corrected v plus eps
    """
    raise NotImplementedError("exercise ex18 (adamw_step) is not done yet: write it in chapters/exercises/ex18_adamw_step.py")
