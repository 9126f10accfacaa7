"""Exercise 16 (challenge): attention_backward.

Read first: chapters/ch3_algorithm.py, section "Attention backward"
Grade it:   python chapters/exercises/grade.py ex16
Plugs into: the attention kernel's backward: your dq, dk, dv (and dbias for T5/KERPLE/FIRE) train the model
"""


def attention_backward(dout, q, k, v, causal=True, bias=None):
    """The backward of attention_forward: four matrix products and a softmax backward.

    dout, q, k, v: (..., T, D);  causal, bias: as in the forward.
    Returns (dq, dk, dv, dbias): the first three (..., T, D); dbias None when bias is None, otherwise
    the gradient of the logits' bias with the logits' shape (..., T, T).

    Steps:
      1. recompute s and p as in the forward (exercise 15)
      2. out = p v: dv from p and dout; dp from dout and v           (two of the four products)
      3. ds from dp and p: the softmax backward of exercise 12
      4. the bias was added to s as it is: dbias is ...
      5. s = q k^T / sqrt(D): dq from ds and k; dk from ds and q     (the other two products);
         do not forget the scale
    """
    raise NotImplementedError("exercise ex16 (attention_backward) is not done yet: write it in chapters/exercises/ex16_attention_backward.py")
