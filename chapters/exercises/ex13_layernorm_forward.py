"""Exercise 13 (warm-up): layernorm_forward.

Read first: chapters/ch3_algorithm.py, section "LayerNorm backward"
Grade it:   python chapters/exercises/grade.py ex13
Plugs into: every LayerNorm of the model (tinype.layers.layernorm_forward)
"""


def layernorm_forward(x, w, b, eps=1e-5):
    """LayerNorm over the last axis, as PyTorch's nn.LayerNorm.

    x: (..., C); w, b: (C,) gain and bias.  Returns out, (..., C).

    Steps:
      1. mean and variance of each row over C (the biased variance: divide by C, not C - 1)
      2. xhat: the row centred, divided by sqrt(var + eps)
      3. scale by w and shift by b
    """
    raise NotImplementedError("exercise ex13 (layernorm_forward) is not done yet: write it in chapters/exercises/ex13_layernorm_forward.py")
