"""Exercise 22 (challenge): PartialRoPE, a positional encoding of your own.

Read first: chapters/ch4_math.py, section "RoPE"
Grade it:   python chapters/exercises/grade.py ex22
Plugs into: CAPSTONE: the public extension API. Once it passes, run it like any of tinype's own:
    python -c "import tinype; print(tinype.gradcheck.check_encoding('chapters/exercises/ex22_your_own_encoding.py:PartialRoPE'))"
    tinype lab --pe chapters/exercises/ex22_your_own_encoding.py:PartialRoPE
    (or, with TINYPE_EXERCISES=chapters/exercises or after importing this file, by its name: --pe p_rope)

The worked example is an encoding tinype does not ship: p-RoPE (Barbero et al. 2024, "Round and
Round We Go! What makes Rotary Positional Encodings useful?", ICLR 2025). Trained models use RoPE's
highest frequencies for positional attention patterns and its lowest ones as "semantic" channels
that barely turn inside the training length but do turn beyond it. p-RoPE removes the lowest
frequencies: only the fastest fraction p of the channel pairs rotates; the rest are left as they are.
When it passes, write your own idea the same way: subclass PositionalEncoding, override the hooks
you need (base.py lists the four), register it, and check it with one call.
"""

from tinype.positions import PositionalEncoding, register


@register("p_rope")
class PartialRoPE(PositionalEncoding):
    """RoPE on the fastest `fraction` of the channel pairs only (rotate-half layout, no parameters)."""

    name = "p_rope"

    def __init__(self, fraction=0.75, base=10000.0):
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"p_rope: fraction must be in [0, 1], got {fraction}")
        self.fraction, self.base = float(fraction), float(base)

    def inv_freq(self):
        """(D/2,) the frequency of each channel pair; 0 for the pairs that do not rotate.

        self.head_dim is set by setup(config) before any hook runs.
        Steps:
          1. the plain RoPE frequencies, rope_inv_freq(self.head_dim, self.base)[0], fastest first
          2. how many pairs keep theirs: round(fraction * D/2)
          3. the other (slowest) pairs get frequency 0: an angle of 0 at every position
        """
        raise NotImplementedError("exercise ex22 (PartialRoPE.inv_freq) is not done yet: write it in chapters/exercises/ex22_your_own_encoding.py")

    def rotate(self, q, k, positions):
        """q, k: (B, H, T, D) in the model's dtype; positions: (T,).
        Returns ((q', k'), cache): q and k rotated, in their own dtype, and what the backward needs.

        Steps:
          1. the frequencies from self.inv_freq()
          2. rotate q and k as in exercise 05 (tinype.positions.apply_rope(x, positions, inv_freq) does it)
          3. the cache: the backward needs only the positions and the frequencies
        """
        raise NotImplementedError("exercise ex22 (PartialRoPE.rotate) is not done yet: write it in chapters/exercises/ex22_your_own_encoding.py")

    def rotate_backward(self, dq, dk, cache):
        """dq, dk: (B, H, T, D), gradients of q' and k'. Returns (dq, dk) for the unrotated q and k.

        Steps:
          1. the rotation is linear, so its backward is its transpose (exercise 06)
          2. the transpose of a rotation by an angle is the rotation by minus that angle
        """
        raise NotImplementedError("exercise ex22 (PartialRoPE.rotate_backward) is not done yet: write it in chapters/exercises/ex22_your_own_encoding.py")

    def describe(self):
        return f"p_rope(fraction={self.fraction:g}, base={self.base:g})"
