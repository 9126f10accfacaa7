"""Exercise 06 (core): rope_backward.

Read first: chapters/ch4_math.py, section "RoPE backward"
Grade it:   python chapters/exercises/grade.py ex06
Plugs into: the backward of the rotation (Rotary.rotate_backward): your gradients train the model
"""


def rope_backward(dout, positions, inv_freq):
    """The backward of apply_rope with respect to x.

    dout:      (..., T, D) the gradient of apply_rope's output
    positions: (T,);  inv_freq: (D/2,)  (the same as in the forward)
    Returns:   dx, (..., T, D)

    Steps:
      1. the forward is linear in x: out_t = R_t x_t with R_t a rotation matrix per position
      2. so dx_t = (R_t)^T dout_t; what is the transpose of a rotation by an angle?
      3. write it with the same cos / sin / rotate_half pieces as exercise 05 (no matrix needed)
    """
    raise NotImplementedError("exercise ex06 (rope_backward) is not done yet: write it in chapters/exercises/ex06_rope_backward.py")
