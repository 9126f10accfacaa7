"""The build: the compiled extension is there, the switch works, a missing extension warns once."""
import os
import subprocess
import sys
import textwrap

import tinype
from tinype import kernels


def _run(code, **env):
    full = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=full, timeout=120)


def test_backend_is_cython_after_install():
    # `pip install -e .` compiles pyx/ into tinype._ext; the README's set-up guarantees it.
    assert kernels.BACKEND == "cython", "tinype._ext is not built: run `pip install -e .`"
    assert kernels._ext is not None and hasattr(kernels._ext, "sinusoidal_table")


def test_env_switch_forces_numpy():
    r = _run("import tinype; print(tinype.kernels.BACKEND)", TINYPE_BACKEND="numpy")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "numpy"
    assert "not built" not in r.stderr                      # forcing numpy is not a warning


def test_bad_backend_name_is_a_clear_error():
    r = _run("import tinype", TINYPE_BACKEND="fortran")
    assert r.returncode != 0
    assert "TINYPE_BACKEND must be 'cython' or 'numpy'" in r.stderr


def test_missing_extension_warns_once_and_falls_back():
    code = """
    import sys, warnings
    class Block:                      # make the compiled extension unimportable
        def find_spec(self, name, path=None, target=None):
            if name == "tinype._ext":
                raise ImportError("blocked for the test")
    sys.meta_path.insert(0, Block())
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        import tinype, importlib
        from tinype import kernels
        import numpy as np
        t = kernels.sinusoidal_table(np.arange(3.0), 4)
    print(kernels.BACKEND, len([x for x in w if "not built" in str(x.message)]), t.shape)
    print([str(x.message) for x in w][0])
    """
    r = _run(code)
    assert r.returncode == 0, r.stderr
    first, message = r.stdout.strip().splitlines()
    assert first == "numpy 1 (3, 4)"
    assert "pip install -e ." in message


def test_generated_files_are_not_tracked():
    root = os.path.dirname(os.path.dirname(os.path.abspath(tinype.__file__)))
    if not os.path.isdir(os.path.join(root, ".git")):
        return
    out = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True).stdout.split()
    assert not [f for f in out if f.endswith((".so", ".c", ".o", ".pyd"))]
