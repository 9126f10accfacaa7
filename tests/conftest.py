import importlib.util
import os

import numpy as np
import pytest
from hypothesis import settings

from tinype import ModelConfig, Transformer

# Property tests draw the same cases on every run (seeded from each test's name, no example
# database): the suite stays deterministic, and a failure is reproduced by running it again.
settings.register_profile("tinype", derandomize=True, database=None)
settings.load_profile("tinype")


def tiny_config(**overrides):
    """A model small enough for central differences over every parameter in seconds."""
    kw = dict(n_layer=2, d_model=16, n_head=2, T_train=8, dtype="float64")
    kw.update(overrides)
    return ModelConfig(**kw)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def tiny_batch():
    r = np.random.default_rng(0)
    return r.integers(0, 256, (2, 8)), r.integers(0, 256, (2, 8))


def tiny_model(seed=1, **overrides):
    return Transformer(tiny_config(**overrides), seed=seed)


@pytest.fixture
def task_search():
    """scripts/task_search.py as a module (it is a script, not part of the package)."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "task_search.py")
    spec = importlib.util.spec_from_file_location("task_search", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
