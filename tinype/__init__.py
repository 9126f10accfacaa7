"""tinype: how positional encodings let a Transformer read past its training length.

NumPy layers with hand-written backward passes, Cython kernels with NumPy twins, every major
positional encoding, and an experiment lab. Start with the README, then chapters/.
"""
from . import gradcheck, kernels, positions
from .config import PRESETS, ModelConfig, TrainConfig, preset
from .data import Corpus, decode, encode
from .evaluate import evaluate_lm
from .model import Transformer
from .optim import AdamW, clip_grad_norm, lr_at
from .sample import generate
from .train import load_model, train

__version__ = "0.1.0"

__all__ = ["AdamW", "Corpus", "ModelConfig", "PRESETS", "TrainConfig", "Transformer", "clip_grad_norm",
           "decode", "encode", "evaluate_lm", "generate", "gradcheck", "kernels", "load_model", "lr_at",
           "positions", "preset", "train"]
