"""tinype: how positional encodings let a Transformer read past its training length.

NumPy layers with hand-written backward passes, Cython kernels with NumPy twins, every major
positional encoding, and an experiment lab. Start with the README, then chapters/.
"""
import os as _os

from . import gradcheck, kernels, positions
from .config import PRESETS, ModelConfig, TrainConfig, preset
from .data import Corpus, decode, encode
from .errors import UserError
from .evaluate import evaluate_lm
from .exercises import use_exercises
from .model import Transformer
from .optim import AdamW, clip_grad_norm, lr_at
from .sample import generate
from .train import load_model, train

__version__ = "0.1.0"

__all__ = ["AdamW", "Corpus", "ModelConfig", "PRESETS", "TrainConfig", "Transformer", "clip_grad_norm",
           "decode", "encode", "evaluate_lm", "generate", "gradcheck", "kernels", "load_model", "lr_at",
           "positions", "preset", "train", "use_exercises", "UserError"]

# TINYPE_EXERCISES=<folder>: tinype calls the finished exercise pieces in that folder (see
# tinype.exercises). A folder that does not exist is a warning, not an error at import.
if _os.environ.get("TINYPE_EXERCISES"):
    import warnings as _warnings
    try:
        use_exercises(_os.environ["TINYPE_EXERCISES"], quiet=False)
    except ValueError as _err:
        _warnings.warn(f"TINYPE_EXERCISES: {_err}; tinype uses its own pieces", RuntimeWarning, stacklevel=2)
