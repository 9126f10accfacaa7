"""Exercise 04 (core): t5_bucket.

Read first: chapters/ch4_math.py, section "T5 buckets"
Grade it:   python chapters/exercises/grade.py ex04
Plugs into: the distance buckets of `pe="t5"`
"""


def t5_bucket(relative_position, bidirectional, num_buckets=32, max_distance=128):
    """T5's relative-position buckets, as transformers' T5Attention._relative_position_bucket.

    relative_position: int array of any shape, j - i (key minus query).
    Returns: int64 array of the same shape, bucket ids in [0, num_buckets).

    Steps:
      1. bidirectional: half the buckets per direction; keys after the query (j > i) are offset by
         num_buckets // 2; continue with |j - i| and the halved bucket count.
         causal: only the past counts; the distance is i - j, and future keys get distance 0
      2. max_exact = (remaining buckets) // 2: a distance below it is its own bucket
      3. larger distances share the buckets left, spaced logarithmically: log(d / max_exact), scaled
         so that d = max_distance reaches the last bucket; truncate to an int, cap at the last bucket.
         Take the log in float32, as transformers does, or a few distances land one bucket off.
    """
    raise NotImplementedError("exercise ex04 (t5_bucket) is not done yet: write it in chapters/exercises/ex04_t5_bucket.py")
