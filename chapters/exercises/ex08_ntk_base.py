"""Exercise 08 (warm-up): ntk_base.

Read first: chapters/ch4_math.py, section "NTK-aware scaling"
Grade it:   python chapters/exercises/grade.py ex08
Plugs into: the base of `pe="rope_ntk"` (tinype.positions.rope.rope_inv_freq, rope_type "ntk")
"""


def ntk_base(base, head_dim, factor):
    """The NTK-aware RoPE base (bloc97, 2023): slow the lowest frequency down by `factor`, keep the highest.

    base: float (10000); head_dim: D (even); factor: s = L / T_train (> 1).
    Returns: the new base, a float.

    Steps:
      1. inv_freq_i = base^(-2i/D): the highest (i = 0) does not depend on the base at all
      2. the lowest is i = D/2 - 1, exponent -(D-2)/D; ask that with the new base it is s times smaller
      3. solve for the new base
    """
    raise NotImplementedError("exercise ex08 (ntk_base) is not done yet: write it in chapters/exercises/ex08_ntk_base.py")
