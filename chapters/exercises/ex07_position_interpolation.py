"""Exercise 07 (warm-up): interpolate_positions.

Read first: chapters/ch4_math.py, section "Position interpolation"
Grade it:   python chapters/exercises/grade.py ex07
Plugs into: graded on its own: RoPE at your positions must equal tinype's rope_pi
"""


def interpolate_positions(positions, T_train, L):
    """Position Interpolation (Chen et al. 2023): squeeze L positions into the trained range.

    positions: (L,) the positions 0 .. L-1;  T_train: training length;  L: the window length.
    Returns:   (L,) float64 positions that RoPE should see.

    Steps:
      1. the scale s = L / T_train
      2. when the window fits (L <= T_train) nothing changes (as floats)
      3. otherwise every position shrinks by s, so the largest stays below T_train
    """
    raise NotImplementedError("exercise ex07 (interpolate_positions) is not done yet: write it in chapters/exercises/ex07_position_interpolation.py")
