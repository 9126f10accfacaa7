"""Exercise 15 (core): attention_forward.

Read first: chapters/ch3_algorithm.py, section "Attention backward"
Grade it:   python chapters/exercises/grade.py ex15
Plugs into: the attention kernel (tinype.kernels.attention_forward): tinype passes you the dense bias and the causal flag
"""


def attention_forward(q, k, v, causal=True, bias=None):
    """Softmax attention, dense (it holds the T x T matrix; tinype's kernel does not).

    q, k, v: (..., T, D) (e.g. (B, H, T, D));  causal: mask keys j > i;
    bias:    None, or an additive bias of the logits broadcastable to (..., T, T) (ALiBi, T5, ...).
    Returns  out, (..., T, D).

    Steps:
      1. s = the logits: q times k transposed over the last two axes, scaled by 1/sqrt(D); plus the bias
      2. causal: -inf above the diagonal, so those keys get probability 0
      3. p = the softmax of s along the keys (subtract the row max first: logits of 1e4 must not overflow)
      4. out = p times v
    """
    raise NotImplementedError("exercise ex15 (attention_forward) is not done yet: write it in chapters/exercises/ex15_attention_forward.py")
