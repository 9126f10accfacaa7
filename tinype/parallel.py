"""Data parallelism for the training step: the batch in shards, one core each.

    step = ShardedStep(model, shards=2)
    loss, grads = step(idx, targets, train=True, rng=rng)     # = model.loss(...), model.backward()
    step.close()

Why. A training step alternates between GEMMs, which NumPy hands to OpenBLAS's thread pool, and
tinype's own kernels, which run on OpenMP's. On two cores the two pools get in each other's way:
OpenBLAS's worker keeps spinning for a while after each GEMM, so the attention kernel that
follows gets no second core (measured on the standard preset: the fused attention forward took
5.2 ms per layer right after a GEMM with two OpenMP threads, as long as with one; 2.8 ms alone).
Cutting the batch instead, and giving each shard a whole core for its forward and backward (BLAS
and OpenMP both on one thread there), leaves nothing to share: each core runs its shard's GEMMs
and kernels back to back, and the cores meet once per step, to add the gradients.

What it computes. The loss is the mean over every counted target of the batch, so shard s (n_s of
the N counted targets) weighs n_s / N:
    loss = sum_s (n_s / N) loss_s,      grads = sum_s (n_s / N) grads_s
which is the full batch's loss and gradient up to float rounding (the sums run in another order).
The shards are added in shard order, and each is computed on one thread whatever the machine has,
so the result depends on the number of shards, not on the number of threads: one thread runs the
shards one after the other and ends at the same bits as two threads running them side by side.
A randomized PE draws the step's positions once, and every shard uses them.

What to know:
- Each shard's forward and backward runs your code too, in two threads at once: an exercise layer
  you swapped in (tinype.exercises) or an encoding of your own must not keep shared state between
  calls (tinype's own keep none). TrainConfig(shards=1) runs the batch whole, on the calling thread.
- The BLAS limit is process-wide while a step runs (OpenMP's is per thread): two trainings in
  threads of one process (rather than in processes, as the lab's --jobs runs them) would share it.
- A step uses at most `shards` cores; a machine with more cores uses them with more shards.
"""
import contextlib
import os
import warnings
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

IGNORE = -1          # targets that do not count (Transformer.loss)


def thread_budget() -> int:
    """Threads this process may use: OMP_NUM_THREADS when it is set (the lab's workers set it to
    their share of the cores), else the cores this process may run on."""
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                   # not Linux
        return os.cpu_count() or 1


def _controller():
    """threadpoolctl's handle on the BLAS and OpenMP libraries this process has loaded, or None
    without threadpoolctl (an install from before it was a dependency): the shards then run one
    after the other on the calling thread, with the same result."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        warnings.warn("threadpoolctl is not installed, so the shards of a training step run one after the other "
                      "(the same result, without the speed-up); reinstall tinype (pip install -e .) to get it",
                      RuntimeWarning, stacklevel=3)
        return None
    return ThreadpoolController()


def _limit(controller, api):
    """controller.limit(limits=1, user_api=api) as a context, or nothing without a controller."""
    return controller.limit(limits=1, user_api=api) if controller is not None else contextlib.nullcontext()


def _one_thread(controller):
    """Run in each worker thread once: its OpenMP regions and (inside a step) its GEMMs on one
    thread. OpenMP's thread count is a per-thread setting, so this leaves the caller's alone."""
    controller.limit(limits=1, user_api="openmp")


def shard_slices(batch_size: int, shards: int) -> list[slice]:
    """min(shards, batch_size) consecutive slices of the batch, sizes differing by at most one."""
    n = min(shards, batch_size)
    edges = [batch_size * s // n for s in range(n + 1)]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


class ShardedStep:
    """One training step's loss and gradients, the batch cut into `shards` (module docstring).

    shards=1, or a batch of one sequence, is exactly model.loss() then model.backward().
    Otherwise shard 0 runs on `model` and the others on replicas over the same parameter arrays
    (Transformer.replica), on min(shards, threads) worker threads (threads: thread_budget() by
    default), each with BLAS and OpenMP on one thread. On a machine with more cores than shards,
    more shards use them (TrainConfig.shards)."""

    def __init__(self, model, shards: int, threads: int | None = None) -> None:
        if isinstance(shards, bool) or not isinstance(shards, (int, np.integer)) or shards < 1:
            raise ValueError(f"shards must be a whole number >= 1, got {shards!r}")
        self.model = model
        self.shards = int(shards)
        self.replicas = [model] + [model.replica() for _ in range(self.shards - 1)]
        self._pool = None
        self._limits = None
        self.threads = 1
        if self.shards > 1:
            self._limits = _controller()
            budget = thread_budget() if threads is None else threads
            if self._limits is not None and budget > 1:
                self.threads = min(self.shards, budget)
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="tinype-shard",
                                                initializer=_one_thread, initargs=(self._limits,))

    def __call__(self, idx, targets, train=False, rng=None):
        """(loss, grads) of the batch: model.loss(idx, targets, train, rng) and model.backward()."""
        model = self.model
        if self.shards == 1 or np.ndim(idx) < 2 or np.shape(idx)[0] == 1:
            loss = model.loss(idx, targets, train=train, rng=rng)
            return loss, model.backward()
        idx = model._check_idx(idx)                                       # the model's own checks
        targets = model._check_idx(targets, "targets", ignore=IGNORE)
        if targets.shape != idx.shape:
            raise ValueError(f"targets shape {targets.shape} differs from idx shape {idx.shape}")
        T = idx.shape[1]
        model.pe.check_length(T)
        positions = model.pe.positions(T, train=train, rng=rng)           # one draw for every shard
        parts = shard_slices(idx.shape[0], self.shards)
        counted = np.array([np.count_nonzero(targets[s] != IGNORE) for s in parts], dtype=np.float64)
        weights = counted / counted.sum() if counted.sum() else np.full(len(parts), 1 / len(parts))
        errors = np.geterr()                     # NumPy's error state is per thread: the caller's applies
        for replica in self.replicas[1:]:
            replica.params = model.params        # in case the model's dict was replaced

        def run(k):
            replica, s = self.replicas[k], parts[k]
            with np.errstate(**errors):
                loss = replica.loss(idx[s], targets[s], train=train, positions=positions)
                return loss, replica.backward()

        with _limit(self._limits, "blas"):
            if self._pool is None:
                with _limit(self._limits, "openmp"):
                    results = [run(k) for k in range(len(parts))]
            else:
                futures = [self._pool.submit(run, k) for k in range(len(parts))]
                try:
                    results = [f.result() for f in futures]
                finally:                     # an error or Ctrl-C: the other shards end under the limits too
                    for f in futures:
                        f.cancel()
                    wait(futures)
        loss = float(sum(w * r[0] for w, r in zip(weights, results)))
        grads = {}
        for name, g in results[0][1].items():
            total = g * g.dtype.type(weights[0])
            for w, (_, other) in zip(weights[1:], results[1:]):
                total += other[name] * g.dtype.type(w)
            grads[name] = total
        # the shards' caches and gradients stay until the next step replaces them: freed at once, their
        # memory went back to the system and came back as fresh pages the next step had to fault in
        # (measured: the standard step took 143 ms instead of 129)
        model.grads = grads
        return loss, grads

    def close(self) -> None:
        """Stop the worker threads; a later call runs its shards one after the other."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self.threads = 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
