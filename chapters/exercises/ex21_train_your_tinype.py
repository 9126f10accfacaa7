"""Exercise 21 (challenge): train_steps.

Read first: chapters/ch3_algorithm.py, section "The AdamW update"
Grade it:   python chapters/exercises/grade.py ex21
Plugs into: CAPSTONE: trains the quick model on every piece you finished and plots your loss curve next to tinype's
"""
import tinype


def train_steps(model, optimizer, batches, lrs, grad_clip=1.0):
    """The training loop; with tinype.use_exercises it runs on your own pieces.

    model: a tinype.Transformer; optimizer: a tinype.AdamW over model.parameters();
    batches: a list of (x, y) pairs, each (B, T) token ids (y is x shifted by one);
    lrs: one learning rate per batch; grad_clip: the global gradient-norm limit.
    Returns the list of losses (floats), one per batch, measured BEFORE that batch's update.

    Steps: for each batch and its learning rate
      1. the loss of the batch (model.loss)
      2. the gradients (model.backward)
      3. clip their global norm (tinype.clip_grad_norm)
      4. one optimizer step with this batch's learning rate

    When it is done, run this file: `python chapters/exercises/ex21_train_your_tinype.py`. It trains
    the quick model twice (tinype's pieces, then yours), saves both loss curves in one figure,
    and names the first piece that differs when they do not agree.
    """
    raise NotImplementedError("exercise ex21 (train_steps) is not done yet: write it in chapters/exercises/ex21_train_your_tinype.py")


if __name__ == "__main__":
    import os
    import sys

    import tinype.exercises
    sys.exit(tinype.exercises.main_compare(os.path.dirname(os.path.abspath(__file__))))
