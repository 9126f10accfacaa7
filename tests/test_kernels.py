"""Every compiled kernel equals its NumPy twin, float32 and float64, and rejects bad input clearly."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinype import kernels, reference

ext = kernels._ext
pytestmark = pytest.mark.skipif(ext is None, reason="compiled extension not built")

TOL = {np.float64: 1e-12, np.float32: 1e-5}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dim", [1, 2, 7, 16, 64])
def test_sinusoidal_matches_reference(dtype, dim):
    pos = np.concatenate([np.arange(0, 300), [0.5, 1.25, 4095.75, 1e4 / 3]]).astype(dtype)
    fast = ext.sinusoidal_table(pos, dim)
    ref = reference.sinusoidal_table(pos, dim)
    assert fast.dtype == ref.dtype == dtype
    assert fast.shape == (len(pos), dim)
    np.testing.assert_allclose(fast, ref, rtol=0, atol=TOL[dtype])


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 50), dim=st.integers(1, 40), base=st.floats(2.0, 1e6),
       f32=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_sinusoidal_property(n, dim, base, f32, seed):
    dtype = np.float32 if f32 else np.float64
    pos = (np.random.default_rng(seed).random(n) * 5000).astype(dtype)
    np.testing.assert_allclose(ext.sinusoidal_table(pos, dim, base), reference.sinusoidal_table(pos, dim, base),
                               rtol=0, atol=TOL[dtype])


def test_sinusoidal_formula_values():
    # The convention of DESIGN.md, checked by hand at real-valued positions.
    p, d = np.array([0.0, 1.0, 2.5, 100.0]), 6
    t = kernels.sinusoidal_table(p, d)
    for i in range(3):
        w = 1.0 / 10000 ** (2 * i / d)
        np.testing.assert_allclose(t[:, 2 * i], np.sin(p * w), atol=1e-15)
        np.testing.assert_allclose(t[:, 2 * i + 1], np.cos(p * w), atol=1e-15)


@pytest.mark.parametrize("bad, err, msg", [
    (np.zeros((2, 2)), ValueError, "1-D"),
    (np.arange(3, dtype=np.int64), TypeError, "float32 or float64"),
    (np.arange(6.0)[::2], ValueError, "C-contiguous"),
    ([1.0, 2.0], TypeError, "numpy array"),
])
def test_sinusoidal_kernel_rejects_bad_input(bad, err, msg):
    with pytest.raises(err, match=msg):
        ext.sinusoidal_table(bad, 4)


def test_sinusoidal_kernel_rejects_bad_dim_and_base():
    with pytest.raises(ValueError, match="dim"):
        ext.sinusoidal_table(np.arange(3.0), 0)
    with pytest.raises(ValueError, match="base"):
        ext.sinusoidal_table(np.arange(3.0), 4, -1.0)


def test_switch_accepts_lists_and_ints():
    # The public switch converts what a user naturally passes; the kernel itself stays strict.
    t = kernels.sinusoidal_table([0, 1, 2], 4)
    assert t.dtype == np.float64 and t.shape == (3, 4)
    np.testing.assert_allclose(t, reference.sinusoidal_table(np.arange(3.0), 4), atol=1e-15)
    with pytest.raises(TypeError, match="real numbers"):
        kernels.sinusoidal_table(np.array(["a"]), 4)
