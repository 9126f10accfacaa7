"""The thread count a benchmark was asked for, set before numpy loads its BLAS (which fixes its
thread pool then). Import this module first: `import _threads` in a script run as
`python benchmarks/<name>.py` (its folder is then on sys.path)."""
import os
import sys


def threads_asked(argv=None, default="2"):
    """The value after --threads on the command line, else default."""
    argv = sys.argv if argv is None else argv
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
    return default


def set_threads(argv=None, default="2"):
    """OMP_NUM_THREADS and OPENBLAS_NUM_THREADS from --threads, unless the environment sets them."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, threads_asked(argv, default))
