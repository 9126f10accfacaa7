"""Exercise 19 (core): nonoverlap_perplexity.

Read first: chapters/ch2_concepts.py, section "Perplexity over non-overlapping windows"
Grade it:   python chapters/exercises/grade.py ex19
Plugs into: graded on its own: your number must equal tinype.evaluate_lm's
"""


def nonoverlap_perplexity(model, data, T):
    """Perplexity over non-overlapping windows of length T (the ALiBi paper's default protocol).

    model: a tinype.Transformer; model.forward(x (B, T)) -> logits (B, T, V).
    data:  (N,) token ids.   Returns a float: exp(mean negative log-likelihood, in nats).

    Steps:
      1. windows start at 0, T, 2T, ... while the window and its next-token target fit: start + T + 1 <= N
      2. inputs data[s : s+T], targets data[s+1 : s+T+1]; stack them into (B, T)
      3. logits -> log-softmax (stably) -> the log-probability of each target
      4. average the negative log-likelihood over every position of every window; exponentiate
    """
    raise NotImplementedError("exercise ex19 (nonoverlap_perplexity) is not done yet: write it in chapters/exercises/ex19_nonoverlap_perplexity.py")
