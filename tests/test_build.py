"""The build: the compiled extension is there, the switch works, a missing extension warns once."""
import os
import subprocess
import sys
import textwrap

import pytest

import tinype
from tinype import kernels

# TINYPE_BACKEND=numpy (a CI step runs this file so): the checks of the compiled build do not apply
compiled = pytest.mark.skipif(os.environ.get("TINYPE_BACKEND", "").strip().lower() == "numpy",
                              reason="TINYPE_BACKEND=numpy forces the NumPy references")


def _run(code, **env):
    full = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=full, timeout=120)


@compiled
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
    r = _run(code, TINYPE_BACKEND="cython")
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


@compiled
def test_cpu_path_and_build_info():
    # the path the attention tiles run is one this CPU supports, and build_info says how it was built
    assert kernels.CPU_PATH in ("avx512", "avx2", "portable")
    assert kernels.CPU_PATH in kernels.cpu_paths() and kernels.cpu_paths()[-1] == "portable"
    info = kernels.build_info()
    assert info["backend"] == "cython" and info["cpu_path"] == kernels.CPU_PATH
    assert set(info["cpu_paths"]) <= set(info["compiled_paths"])
    assert isinstance(info["openmp"], bool) and "-O3" in info["compiler_flags"]
    import platform
    if platform.machine() in ("x86_64", "AMD64") and not os.environ.get("TINYPE_NATIVE"):
        # portable by default: no -march=native unless asked for; the tiles are compiled anyway
        assert "-march=native" not in info["compiler_flags"]
        assert "avx2" in info["compiled_paths"]


@compiled
def test_cpu_path_env_lowers_the_path():
    r = _run("from tinype import kernels; print(kernels.CPU_PATH, kernels._ext._get_cpu_path())",
             TINYPE_CPU_PATH="portable")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["portable", "portable"]


@compiled
def test_cpu_path_env_bad_name_is_a_clear_error():
    r = _run("import tinype", TINYPE_CPU_PATH="sse9")
    assert r.returncode != 0 and "TINYPE_CPU_PATH must be" in r.stderr


@compiled
def test_set_cpu_path_refuses_what_the_cpu_lacks():
    with pytest.raises(ValueError, match="must be one of"):
        kernels.set_cpu_path("neon")
    missing = [p for p in ("avx512", "avx2") if p not in kernels.cpu_paths()]
    for p in missing:
        with pytest.raises(ValueError, match="not available"):
            kernels.set_cpu_path(p)
    assert kernels.CPU_PATH == kernels.cpu_paths()[0]


def test_one_version_source():
    # pyproject.toml reads the version from tinype.__version__; the installed metadata agrees
    from importlib.metadata import version
    assert version("tinype") == tinype.__version__
    root = os.path.dirname(os.path.dirname(os.path.abspath(tinype.__file__)))
    pyproject = os.path.join(root, "pyproject.toml")
    if os.path.exists(pyproject):
        text = open(pyproject).read()
        assert 'dynamic = ["version"]' in text and "\nversion =" not in text.split("[tool.setuptools.dynamic]")[0]


def test_build_info_on_the_numpy_backend():
    r = _run("from tinype import kernels; i = kernels.build_info(); print(i['backend'], i['cpu_path'], kernels.CPU_PATH)",
             TINYPE_BACKEND="numpy")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["numpy", "None", "None"]


@compiled
def test_only_the_tile_functions_use_wide_instructions():
    # portable by default: outside tp_mm_avx2 / tp_mm_avx512, the decoding rows tp_rowdots_* /
    # tp_wsum_* (and their helpers) and the float32 GELU, cross-entropy and attention-row loops of elementwise.h,
    # the extension holds no VEX or EVEX instruction (AVX, AVX2, FMA, AVX-512), so it runs on any x86-64
    import platform
    import re
    import shutil
    if platform.machine() != "x86_64" or "-march=native" in kernels.build_info()["compiler_flags"]:
        pytest.skip("checks the default x86-64 build")
    if shutil.which("objdump") is None:
        pytest.skip("objdump not installed")
    dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn", kernels._ext.__file__], capture_output=True,
                         text=True, timeout=120).stdout
    wide, fn = {}, None
    for line in dis.splitlines():
        head = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
        if head:
            fn = head.group(1)
            continue
        parts = line.split("\t")
        if len(parts) >= 2 and re.match(r"v[a-z]", parts[1].strip()):
            wide[fn] = wide.get(fn, 0) + 1
    tiles = {f for f in wide if re.match(r"tp_(mm|micro|plain|rowdots|wsum|hsum|gelu_fwd|gelu_bwd|xent_row|row_logits|row_weights|max)"
                                         r"_avx(2|512)", f)}
    assert tiles, "the AVX2 / AVX-512 tile functions are missing"
    assert set(wide) == tiles, f"wide instructions outside the tile functions: {sorted(set(wide) - tiles)}"


def test_blas_info_names_the_kernels_and_who_chose_them():
    # the GEMMs are most of a step, so `tinype info` and the benchmarks name the BLAS and its kernels;
    # OPENBLAS_CORETYPE (read when OpenBLAS loads) picks them, and the line says when it did
    code = "from tinype import kernels; print(kernels.blas_info())"
    forced = _run(code, OPENBLAS_CORETYPE="Haswell")
    assert forced.returncode == 0, forced.stderr
    own_env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    own = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=own_env, timeout=120)
    assert own.returncode == 0, own.stderr
    if not forced.stdout.startswith("openblas"):
        pytest.skip(f"NumPy's BLAS here is not OpenBLAS: {forced.stdout.strip()}")
    import platform
    if platform.machine() not in ("x86_64", "AMD64") or "Haswell kernels" not in forced.stdout:
        # elsewhere Haswell is no kernel set of this OpenBLAS (or it was built for one CPU): it says so
        assert "OPENBLAS_CORETYPE=Haswell is set, but OpenBLAS chose" in forced.stdout, forced.stdout
        pytest.skip(f"OpenBLAS here has no Haswell kernels to force: {forced.stdout.strip()}")
    assert "Haswell kernels (OPENBLAS_CORETYPE=Haswell in the environment)" in forced.stdout
    assert "kernels (chosen by OpenBLAS for this CPU)" in own.stdout and "OPENBLAS_CORETYPE" not in own.stdout
    bogus = _run(code, OPENBLAS_CORETYPE="NoSuchCore")            # ignored by OpenBLAS: not credited
    assert bogus.returncode == 0 and "OPENBLAS_CORETYPE=NoSuchCore is set, but OpenBLAS chose" in bogus.stdout
    cli = _run("from tinype.cli import main; main(['info'])")
    assert cli.returncode == 0 and "NumPy's BLAS (the GEMMs): openblas" in cli.stdout, cli.stderr
