# cython: language_level=3
"""tinype's compiled kernels, one extension module: tinype._ext.

Each kernel is a `def` wrapper that validates its inputs (tinype/_checks.py) and allocates its
outputs, around a `nogil` loop; _common.pxi holds what all of them share. Each has a NumPy twin
of the same name in tinype/reference.py, which is the specification; tests/test_kernels.py holds
the two equal in float32 and float64, on every CPU path of the attention tiles (pyx/tiles.h).
Project-wide directives (boundscheck, wraparound, cdivision) are set in setup.py, where
TINYPE_CYTHON_DEBUG=1 turns the checks back on.
"""
include "_common.pxi"
include "encodings.pxi"
include "layers.pxi"
include "attention.pxi"
include "rotary.pxi"
include "decode.pxi"
