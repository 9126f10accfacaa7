"""Exercise 09 (challenge): llama3_inv_freq.

Read first: chapters/ch4_math.py, section "Llama 3 scaling"
Grade it:   python chapters/exercises/grade.py ex09
Plugs into: the frequencies of `pe="rope_llama3"` (rope_type "llama3")
"""


def llama3_inv_freq(inv_freq, factor, original_max, low_freq_factor=1.0, high_freq_factor=4.0):
    """Llama 3's RoPE scaling (as transformers' _compute_llama3_parameters): three wavelength bands.

    inv_freq: (D/2,) the plain RoPE frequencies; factor: s; original_max: the training length.
    Returns:  (D/2,) the scaled frequencies.

    Steps:
      1. each pair's wavelength, 2 pi / inv_freq
      2. two thresholds: low_wavelen = original_max / low_freq_factor, high_wavelen = original_max / high_freq_factor
      3. wavelengths longer than low_wavelen: interpolate (divide the frequency by s);
         shorter than high_wavelen: keep the frequency
      4. in between, blend the two with a weight that goes linearly from 0 to 1 as
         original_max / wavelen goes from low_freq_factor to high_freq_factor
    """
    raise NotImplementedError("exercise ex09 (llama3_inv_freq) is not done yet: write it in chapters/exercises/ex09_llama3_inv_freq.py")
