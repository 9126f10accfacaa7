"""Exercise 03 (warm-up): logn_factor.

Read first: chapters/ch4_math.py, section "Log-n scaling"
Grade it:   python chapters/exercises/grade.py ex03
Plugs into: the logit multipliers of `pe="logn"` (`rope+logn`, `alibi+logn`)
"""


def logn_factor(T, T_train):
    """Log-n attention scaling: the multiplier of each query's logits (article 002's log(n+1), read
    as a logit scale).

    T: window length; T_train: training length (>= 2).
    Returns: (T,) float64, the factor of the query at 0-based position i, i = 0 .. T-1.

    Steps:
      1. query i attends over n = i + 1 keys
      2. its softmax entropy grows like ln n; pick the factor that scales the logits enough to bring
         that growth back to what the model saw at n = T_train (the chapter derives it)
      3. inside the training length nothing may change: the factor never goes below 1
    """
    raise NotImplementedError("exercise ex03 (logn_factor) is not done yet: write it in chapters/exercises/ex03_logn_factor.py")
