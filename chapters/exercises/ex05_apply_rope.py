"""Exercise 05 (core): apply_rope.

Read first: chapters/ch4_math.py, section "RoPE"
Grade it:   python chapters/exercises/grade.py ex05
Plugs into: the rotation of q and k in `pe="rope"` and its variants (Rotary.rotate)
"""


def apply_rope(x, positions, inv_freq):
    """Rotary position embedding, rotate-half layout (Hugging Face transformers').

    x:         (..., T, D) queries or keys (D even)
    positions: (T,) positions (floats allowed)
    inv_freq:  (D/2,) the frequency of each channel pair (pair i = channels i and i + D/2)
    Returns:   (..., T, D), x with pair i at position t turned by the angle t * inv_freq[i].

    Steps:
      1. the angles, (T, D/2): one per position and pair
      2. cos and sin of them, each repeated twice along the last axis to width D ([c, c])
      3. rotate_half(x): the two halves [x1, x2] swapped, with one of them negated
      4. combine x, rotate_half(x), cos and sin so that each pair (a, b) turns by its angle
         (check on D = 2: (1, 0) at angle pi/2 must become (0, 1))
    """
    raise NotImplementedError("exercise ex05 (apply_rope) is not done yet: write it in chapters/exercises/ex05_apply_rope.py")
