"""Text generation: temperature and top-k sampling, one byte at a time."""
import math

import numpy as np

from .data import decode, encode
from .errors import InvalidValue
from .layers import softmax


def generate(model, prompt, max_new_tokens=200, temperature=1.0, top_k=None, seed=0):
    """Continue `prompt` (str or token ids) by sampling; returns the generated text (without the prompt).

    A PE with a fixed table (learned) sees only the last max_positions bytes; every other PE reads
    the whole context, which is how generation past the training length is tested.
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
    new = []
    for _ in range(max_new_tokens):
        context = np.array(ids[-limit:] if limit else ids, dtype=np.int64)[None, :]
        logits = model.forward(context)[0, -1].astype(np.float64)   # (V,)
        with np.errstate(over="ignore"):
            scaled = logits / temperature if temperature > 0 else None
        if scaled is None or not np.isfinite(scaled).all():
            nxt = int(np.argmax(logits))          # temperature 0, or so small that it is greedy in the limit
        else:
            logits = scaled
            if top_k is not None:
                kth = np.sort(logits)[-top_k]
                logits = np.where(logits < kth, -np.inf, logits)
            nxt = int(rng.choice(len(logits), p=softmax(logits)))
        ids.append(nxt)
        new.append(nxt)
    return decode(new)
