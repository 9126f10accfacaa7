"""Exercise 03: t5_bucket. Grade it with `python chapters/exercises/grade.py ex03`."""
import numpy as np


def t5_bucket(relative_position, bidirectional, num_buckets=32, max_distance=128):
    """T5's relative-position buckets (chapter 4), as transformers' _relative_position_bucket.

    relative_position = j - i (key minus query), an int array. Half the buckets (all of them when
    causal) hold exact small distances, the rest grow logarithmically up to max_distance.
    Bidirectional: positive distances go to the upper half. Causal: only j <= i, distance i - j.
    """
    raise NotImplementedError("exercise ex03 (t5_bucket) is not done yet: write it in chapters/exercises/ex03_t5_bucket.py")
