"""Kernel speed, measured in one run: tinype's Cython kernels against their NumPy twins and PyTorch.

    python benchmarks/bench_kernels.py [--lengths 256,1024,4096,8192] [--numpy-max 4096] [--skip-memory]
    python benchmarks/bench_kernels.py --builds-only --against native=/path/to/other/_ext.so --lengths 4096

1. Attention forward + backward, float32, B=1, H=4, D=64, causal with an ALiBi bias:
   tinype's fused kernel; its NumPy twin (dense T x T matrices: up to --numpy-max);
   torch.nn.functional.scaled_dot_product_attention given the bias as a dense (1, H, T, T) float
   mask (its fastest way to take a bias), and its own causal kernel with no bias at all.
   FLOPs are counted as the kernel does them: 4 D per visible (query, key) pair forward, 10 D
   backward (the scores are recomputed), against numpy's sgemm on 2048^3 as the machine's peak.
2. RoPE on (1, 4, 4096, 64) float32 against the memory-bandwidth bound: bytes moved (x read, y
   written, cos/sin read) / the copy bandwidth of a 256 MiB np.copyto.
3. Peak resident memory of attention forward + backward at T=16384 (in a fresh process).
4. Training tokens/s of the quick preset, learned, alibi and rope PEs, compiled vs NumPy backend.
5. The bias tables over distances (ALiBi, KERPLE and its gradient, Sandwich) at T=32768, two-sided.
6. Builds and CPU paths side by side: attention forward + backward (as in 1) with this build's
   register tiles on each CPU path it can run here (tinype.kernels.CPU_PATH: avx512, avx2,
   portable), and with other builds of the extension given by --against NAME=FILE.so (e.g. a
   -march=native build kept from another checkout), all taking turns within each round. Prints
   each one's best and worst round, and its best relative to this build's default path.
Threads: 2 (OMP_NUM_THREADS, BLAS, torch).
"""
import argparse
import os
import subprocess
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402

from tinype import _ext, kernels, reference  # noqa: E402
from tinype.positions import alibi_slopes  # noqa: E402


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def sgemm_peak():
    a = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)
    a @ a
    return 2 * 2048 ** 3 / best_of(lambda: a @ a, 5) / 1e9


def attention_case(T, H=4, D=64):
    g = np.random.default_rng(0)
    q, k, v = [g.standard_normal((1, H, T, D)).astype(np.float32) for _ in range(3)]
    bias = (-alibi_slopes(H)[:, None] * np.arange(T)[None, :]).astype(np.float32)    # (H, T) causal table
    return q, k, v, bias, np.ones_like(q)


def run_tinype(q, k, v, bias, dout, impl):
    out, lse = impl.attention_forward(q, k, v, 0.125, True, bias)
    impl.attention_backward(dout, q, k, v, out, lse, 0.125, True, bias)


def torch_runners(q, k, v, bias, dout):
    import torch
    F = torch.nn.functional
    T = q.shape[2]
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    tdout = torch.tensor(dout)
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    slopes = torch.tensor(alibi_slopes(q.shape[1]), dtype=torch.float32)
    mask = (-slopes[:, None, None] * (i - j)).masked_fill(j > i, float("-inf"))[None]   # (1, H, T, T)

    def with_mask():
        out = F.scaled_dot_product_attention(tq, tk, tv, attn_mask=mask, scale=0.125)
        out.backward(tdout)

    def causal_no_bias():
        out = F.scaled_dot_product_attention(tq, tk, tv, is_causal=True, scale=0.125)
        out.backward(tdout)
    return [with_mask, causal_no_bias]


def rounds_for(T, repeat):
    """More rounds where a call is short (a slow spell of the machine then cannot decide the minimum)."""
    return 3 * repeat if T <= 1024 else repeat if T <= 4096 else 2


def interleaved_best(fns, rounds):
    """Best time of each function over `rounds` rounds, the functions taking turns within a round,
    so that the machine's slow spells fall on all sides alike."""
    best = [np.inf] * len(fns)
    for _ in range(rounds):
        for n, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[n] = min(best[n], time.perf_counter() - t0)
    return best


def bench_attention(lengths, numpy_max, repeat, torch_ok):
    peak = sgemm_peak()
    print(f"\n1. attention forward+backward, float32, B=1 H=4 D=64, causal + ALiBi (seconds, best of "
          f"{3 * repeat} rounds up to T=1024, {repeat} up to 4096, 2 beyond; the implementations take "
          f"turns within a round; the NumPy twin runs once)")
    print(f"   numpy sgemm peak on this machine: {peak:.0f} GFLOP/s")
    head = f"{'T':>6}{'tinype':>9}{'GFLOP/s':>9}{'% peak':>8}{'numpy':>9}{'x numpy':>9}"
    if torch_ok:
        head += f"{'torch+mask':>12}{'x mask':>8}{'torch causal':>14}{'x causal':>10}"
    print(head)
    rows = []
    for T in lengths:
        q, k, v, bias, dout = attention_case(T)
        fns = [lambda: run_tinype(q, k, v, bias, dout, _ext)]
        if torch_ok:
            fns += torch_runners(q, k, v, bias, dout)
        for fn in fns:                                              # warm-up
            fn()
        times = interleaved_best(fns, rounds_for(T, repeat))
        ours = times[0]
        flops = 4 * T * (T + 1) / 2 * 64 * 14
        line = f"{T:>6}{ours:>9.3f}{flops / ours / 1e9:>9.1f}{100 * flops / ours / 1e9 / peak:>7.0f}%"
        ref = best_of(lambda: run_tinype(q, k, v, bias, dout, reference), 1) if T <= numpy_max else None
        line += f"{ref:>9.3f}{ref / ours:>8.1f}x" if ref else f"{'n/a':>9}{'':>9}"
        if torch_ok:
            tm, tc = times[1], times[2]
            line += f"{tm:>12.3f}{tm / ours:>7.2f}x{tc:>14.3f}{tc / ours:>9.2f}x"
        print(line, flush=True)
        rows.append((T, ours, ref))
    return rows


def bench_rope(repeat):
    x = np.random.default_rng(0).standard_normal((1, 4, 4096, 64)).astype(np.float32)
    theta = np.outer(np.arange(4096.0), 10000.0 ** (-np.arange(0, 64, 2) / 64))
    c, s = np.cos(theta).astype(np.float32), np.sin(theta).astype(np.float32)
    big = np.ones(64 << 20, dtype=np.float32)                                   # 256 MiB
    dst = np.empty_like(big)
    np.copyto(dst, big)
    bandwidth = 2 * big.nbytes / best_of(lambda: np.copyto(dst, big), 5)       # read + write bytes/s
    moved = 2 * x.nbytes + 2 * c.nbytes
    bound = moved / bandwidth
    ours = best_of(lambda: _ext.apply_rotary(x, c, s), repeat * 10)
    ref = best_of(lambda: reference.apply_rotary(x, c, s), repeat * 3)
    print(f"\n2. RoPE (1, 4, 4096, 64) float32: tinype {ours * 1e3:.2f} ms, numpy {ref * 1e3:.2f} ms "
          f"({ref / ours:.1f}x); bandwidth bound {bound * 1e3:.2f} ms ({moved / 2 ** 20:.1f} MiB at "
          f"{bandwidth / 1e9:.1f} GB/s copy): {ours / bound:.2f}x the bound")


def bench_tables(repeat):
    T, H = 32768, 8
    slopes = alibi_slopes(H)
    r1, r2 = np.linspace(0.5, 1.5, H), np.linspace(0.2, 1.8, H)
    scale = 8 * np.arange(1, H + 1) / H
    dtable = np.random.default_rng(0).standard_normal((H, 2 * T - 1))
    cases = [("alibi", lambda m: m.alibi_table(slopes, T, False)),
             ("kerple_log", lambda m: m.kerple_table(r1, r2, T, False, False)),
             ("kerple_power backward", lambda m: m.kerple_table_backward(dtable, r1, r2, T, False, True)),
             ("sandwich (dim 128)", lambda m: m.sandwich_table(scale, 128, T, False))]
    print(f"\n5. bias tables over distances, (H, 2T-1) = ({H}, {2 * T - 1}) float64: " + ",  ".join(
        f"{name} {1e3 * (ours := best_of(lambda: fn(_ext), repeat * 3)):.2f} ms "
        f"({best_of(lambda: fn(reference), repeat) / ours:.1f}x numpy)" for name, fn in cases))


def bench_memory():
    # VmHWM of the child itself: ru_maxrss would start from this (parent) process's peak
    code = ("import numpy as np\n"
            "from tinype import _ext\n"
            "from tinype.positions import alibi_slopes\n"
            "T, H, D = 16384, 4, 64\n"
            "g = np.random.default_rng(0)\n"
            "q, k, v = [g.standard_normal((1, H, T, D)).astype(np.float32) for _ in range(3)]\n"
            "bias = (-alibi_slopes(H)[:, None] * np.arange(T)).astype(np.float32)\n"
            "out, lse = _ext.attention_forward(q, k, v, 0.125, True, bias)\n"
            "_ext.attention_backward(np.ones_like(out), q, k, v, out, lse, 0.125, True, bias)\n"
            "print([int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')][0] / 1024)\n")
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if r.returncode:
        print("\n3. memory test failed:", r.stderr[-500:])
        return
    print(f"\n3. attention forward+backward at B=1 H=4 T=16384 D=64: peak resident memory "
          f"{float(r.stdout):.0f} MiB (a dense T x T float32 is 1024 MiB per head), {time.perf_counter() - t0:.1f} s")


def bench_training():
    code = ("import time, numpy as np, sys\n"
            "from tinype import preset, Transformer, kernels\n"
            "from tinype.data import Corpus, get_batch\n"
            "c = Corpus.default()\n"
            "for pe in ('learned', 'alibi', 'rope'):\n"
            "    mc, tc = preset('quick', pe=pe); m = Transformer(mc)\n"
            "    bs = [get_batch(c.train, 32, 64, np.random.default_rng([0, s])) for s in range(23)]\n"
            "    for x, y in bs[:3]: m.loss(x, y); m.backward()\n"
            "    t = time.perf_counter()\n"
            "    for x, y in bs[3:]: m.loss(x, y); m.backward()\n"
            "    print(pe, 20 * 32 * 64 / (time.perf_counter() - t))\n")
    rates = {}
    for backend in ("numpy", "cython"):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=dict(os.environ, TINYPE_BACKEND=backend))
        rates[backend] = dict((line.split()[0], float(line.split()[1])) for line in r.stdout.split("\n") if line)
    print("\n4. quick preset forward+backward tokens/s:  " + ",  ".join(
        f"{pe}: numpy {rates['numpy'][pe]:,.0f} -> cython {rates['cython'][pe]:,.0f} "
        f"({rates['cython'][pe] / rates['numpy'][pe]:.2f}x)" for pe in rates["cython"]))


def load_build(path):
    """Another build of tinype._ext (a .so file) as a separate module, beside this one."""
    import importlib.machinery
    import importlib.util
    loader = importlib.machinery.ExtensionFileLoader("_ext", path)       # its init function is PyInit__ext
    spec = importlib.util.spec_from_file_location("_ext", path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def bench_builds(lengths, against, rounds):
    paths = kernels.cpu_paths()
    others = [(name, load_build(path)) for name, path in against]
    print(f"\n6. builds and CPU paths, attention forward+backward as in 1 (seconds; best and worst of {rounds} "
          f"rounds, all taking turns within a round). This build: {kernels.build_info()['compiler_flags']}")
    for T in lengths:
        q, k, v, bias, dout = attention_case(T)
        names, fns = [], []
        for path in paths:
            def run(path=path):
                kernels.set_cpu_path(path)
                run_tinype(q, k, v, bias, dout, _ext)
            names.append(f"this build, {path}")
            fns.append(run)
        for name, module in others:
            names.append(name)
            fns.append(lambda module=module: run_tinype(q, k, v, bias, dout, module))
        for fn in fns:
            fn()
        times = [[] for _ in fns]
        for _ in range(rounds):
            for n, fn in enumerate(fns):
                t0 = time.perf_counter()
                fn()
                times[n].append(time.perf_counter() - t0)
        kernels.set_cpu_path(paths[0])
        ref = min(times[0])
        print(f"   T={T}")
        for name, t in zip(names, times):
            print(f"   {name:<28} best {min(t):.3f}  worst {max(t):.3f}  ({min(t) / ref:.2f}x this build's default)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", default="256,1024,4096,8192")
    ap.add_argument("--numpy-max", type=int, default=4096,
                    help="longest T for the NumPy twin (memory: ~6 T^2 x 4 B x H; 8192 needs ~6 GB and ~30 s)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--against", action="append", default=[], metavar="NAME=FILE.so",
                    help="another build of tinype._ext to time beside this one (section 6)")
    ap.add_argument("--builds-only", action="store_true", help="run only section 6")
    ap.add_argument("--rounds", type=int, default=7, help="rounds of section 6")
    args = ap.parse_args()
    try:
        import torch
        torch.set_num_threads(2)
        torch_ok = True
    except ImportError:
        torch_ok = False
    print(f"tinype backend {kernels.BACKEND}; CPU path {kernels.CPU_PATH} (of {', '.join(kernels.cpu_paths())}); "
          f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}; "
          f"torch {torch.__version__ if torch_ok else 'not installed'}")
    lengths = [int(t) for t in args.lengths.split(",")]
    against = [tuple(a.split("=", 1)) for a in args.against]
    if args.builds_only:
        bench_builds(lengths, against, args.rounds)
        return
    bench_attention(lengths, args.numpy_max, args.repeat, torch_ok)
    bench_rope(args.repeat)
    if not args.skip_memory:
        bench_memory()
    bench_training()
    bench_tables(args.repeat)
    bench_builds([4096], against, args.rounds)


if __name__ == "__main__":
    main()
