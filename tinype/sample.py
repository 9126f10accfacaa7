"""Text generation: temperature and top-k sampling, one byte at a time, with a KV cache.

Each layer keeps the keys and values of the bytes read so far (tinype.kvcache), so a new byte costs
one query against them instead of a forward pass over the whole context. Where an encoding cannot
go on with a cache (learned positions past their table; randomized positions, drawn anew for each
length past T_train) generate() says so once and goes on by recomputing: a sliding window of the last
max_positions bytes for a fixed table, the whole context otherwise.
"""
from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Sequence

import numpy as np

from .data import decode, encode
from .errors import InvalidValue
from .kvcache import CacheInvalid, ContextLimit
from .layers import softmax


def _stderr(message):
    print(message, file=sys.stderr)


def generate(model, prompt: str | Sequence[int], max_new_tokens: int = 200, temperature: float = 1.0,
             top_k: int | None = None, seed: int = 0, use_cache: bool = True,
             log: Callable[[str], None] = _stderr) -> str:
    """Continue `prompt` (str or token ids) by sampling; returns the generated text (without the prompt).

    temperature 0 is greedy decoding. use_cache=False recomputes the whole context for every byte
    (the reference that the cached path equals). log: where the one-line notice goes when the
    cache has to be given up.
    """
    try:
        temperature = float(temperature)
    except (TypeError, ValueError):
        raise InvalidValue(f"temperature must be a number, got {temperature!r}") from None
    if not (math.isfinite(temperature) and temperature >= 0):
        raise InvalidValue(f"temperature must be a finite number >= 0 (0 is greedy), got {temperature}")
    if top_k is not None and not 1 <= top_k <= model.config.vocab_size:
        raise InvalidValue(f"top_k must be in 1..{model.config.vocab_size}, got {top_k}")
    if max_new_tokens < 0:
        raise InvalidValue(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    ids = list(encode(prompt) if isinstance(prompt, str) else np.asarray(prompt, dtype=np.int64))
    if not ids:
        ids = [ord("\n")]                             # an empty prompt starts at a line break
    rng = np.random.default_rng(seed)
    limit = model.pe.max_positions
    cache = model.new_cache(capacity=len(ids) + max_new_tokens) if use_cache else None
    unread = ids                                      # bytes the cache has not read yet
    new = []
    # NumPy's BLAS on one thread while the cache is in use; recomputing a whole context (its products
    # are matrices) gets the threads back (_one_blas_thread)
    with contextlib.ExitStack() as blas:
        if cache is not None:
            blas.enter_context(_one_blas_thread())
        for _ in range(max_new_tokens):
            logits = None
            if cache is not None:
                try:
                    logits = model.decode(np.array(unread, dtype=np.int64)[None, :], cache)[0, -1]
                except ContextLimit as err:
                    limit = limit or len(ids) - 1     # the longest context the encoding could take
                    log(f"generate: {err}\ngenerate: going on without the cache, from a sliding window of "
                        f"the last {limit} bytes")
                    cache = None
                    blas.close()
                except CacheInvalid as err:
                    log(f"generate: {err}; going on without the cache")
                    cache = None
                    blas.close()
            if logits is None:
                context = np.array(ids[-limit:] if limit else ids, dtype=np.int64)[None, :]
                logits = model.forward(context)[0, -1]
            logits = logits.astype(np.float64)        # (V,)
            with np.errstate(over="ignore"):
                scaled = logits / temperature if temperature > 0 else None
            if scaled is None or not np.isfinite(scaled).all():
                nxt = int(np.argmax(logits))      # temperature 0, or so small that it is greedy in the limit
            else:
                logits = scaled
                if top_k is not None:
                    kth = np.sort(logits)[-top_k]
                    logits = np.where(logits < kth, -np.inf, logits)
                nxt = int(rng.choice(len(logits), p=softmax(logits)))
            ids.append(nxt)
            new.append(nxt)
            unread = [nxt]
    return decode(new)


def _one_blas_thread():
    """NumPy's BLAS on one thread while generating with a cache. Each new byte's products are a
    vector against a weight matrix, a few ten thousand multiply-adds, which OpenBLAS still splits
    over its threads. When another program keeps both cores busy, the second thread waits for a time
    slice at every product: `tinype generate` (quick model) wrote 17-177 bytes/s that way beside a
    running `tinype lab`, and 1,568-2,583 bytes/s on one thread (four alternating pairs, 2-core
    machine). On a quiet machine one thread wrote 1-6% fewer bytes/s (medians of 3: ALiBi 9,939
    against 10,291 at 256 bytes and 9,271 against 9,365 at 1024; RoPE 7,837 against 8,312 and 7,556
    against 7,624), and in one pair beside the test suite, a lighter and burstier load, 40% fewer
    (1,805 against 3,022): the price of never falling to a hundredth. The limit holds while the
    cache is in use (the prompt's first pass included), not for generation without a cache, whose
    products are matrices. It is process-wide, for every BLAS threadpoolctl finds; the attention
    kernels decide their threads by their own size, as in training."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:                                 # an install from before it was a dependency
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")
