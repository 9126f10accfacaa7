"""Exercise 14: nonoverlap_perplexity. Grade it with `python chapters/exercises/grade.py ex14`."""
import numpy as np


def nonoverlap_perplexity(model, data, T):
    """Perplexity over non-overlapping windows (chapter 5), the ALiBi paper's default protocol.

    data: 1-D token ids. Windows start at 0, T, 2T, ... while start + T + 1 <= len(data); each
    gives inputs data[s:s+T] and targets data[s+1:s+T+1]. model.forward(x (B, T)) -> logits
    (B, T, V). Return exp(mean NLL over every position of every window), the NLL in nats.
    """
    raise NotImplementedError("exercise ex14 (nonoverlap_perplexity) is not done yet: write it in chapters/exercises/ex14_nonoverlap_perplexity.py")
