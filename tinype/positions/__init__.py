"""Positional encodings, selectable by name; `a+b` combines them (e.g. "rope+logn").

    tinype.positions.available()            -> sorted names
    tinype.positions.get("alibi", **opts)   -> a PositionalEncoding
    tinype.positions.get("my_pe.py:MyPE")   -> yours, by module path (or "package.module:MyPE")
    tinype.positions.register("my_pe", MyPE) (or @register("my_pe")): yours, by name
    sinusoidal_table, alibi_slopes, rope_inv_freq, apply_rope, t5_relative_bucket: the formulas

Each family lives in its own module with its paper cited; base.py defines the four hooks.
"""
from __future__ import annotations

from ..kernels import sinusoidal_table
from .alibi import ALiBi, alibi_slopes
from .base import PositionalEncoding
from .combined import Combined
from .fire import FIRE
from .kerple import KerpleLog, KerplePower
from .learned import Learned
from .log_sinusoidal import LogSinusoidal, log_positions
from .logn import LogN, logn_scale
from .nope import NoPE
from .randomized import RandomizedLearned, RandomizedRope, RandomizedSinusoidal
from .rope import (
    RopeDynamic,
    RopeLlama3,
    RopeNTK,
    RopePI,
    RopeYaRN,
    Rotary,
    XPos,
    apply_rope,
    rope_inv_freq,
    rope_tables,
)
from .sandwich import Sandwich
from .sinusoidal import Sinusoidal
from .t5 import T5Bias, t5_relative_bucket

_FAMILIES = (NoPE, Sinusoidal, Learned, LogSinusoidal, RandomizedSinusoidal, RandomizedLearned,
             RandomizedRope, Rotary, RopePI, RopeNTK, RopeDynamic, RopeYaRN, RopeLlama3, XPos, ALiBi,
             T5Bias, KerpleLog, KerplePower, Sandwich, FIRE, LogN)
_REGISTRY = {cls.name: cls for cls in _FAMILIES}

#: RoPE variants that only change evaluation: a model trained with "rope" is evaluated with them
EVAL_TIME_VARIANTS = {"rope_pi": "rope", "rope_ntk": "rope", "rope_dynamic": "rope",
                      "rope_yarn": "rope", "rope_llama3": "rope"}


_BUILTIN = frozenset(_REGISTRY)


def available() -> list[str]:
    """Names accepted by get() and by ModelConfig(pe=...), sorted ("a+b" combines two); your own
    registered encodings included."""
    return sorted(_REGISTRY)


def register(name, cls=None):
    """Register your own positional encoding under `name`, as a call or a decorator:

        tinype.positions.register("my_pe", MyPE)

        @tinype.positions.register("my_pe")
        class MyPE(tinype.positions.PositionalEncoding): ...

    cls must subclass PositionalEncoding and implement the hooks it needs (base.py). Afterwards
    get("my_pe"), ModelConfig(pe="my_pe") and `tinype lab --pe my_pe` build it. A built-in name
    cannot be taken; registering one of your names again replaces it (re-running a notebook cell).
    Returns cls.
    """
    if cls is None:
        return lambda c: register(name, c)
    if not isinstance(name, str) or not name.strip() or any(ch in name for ch in "+:/\\ "):
        raise ValueError(f"a PE name must be a non-empty string without '+', ':', '/' or spaces, got {name!r}")
    key = name.strip().lower()
    if key in _BUILTIN:
        raise ValueError(f"{key!r} is one of tinype's own encodings; register yours under another name")
    if not (isinstance(cls, type) and issubclass(cls, PositionalEncoding)):
        raise TypeError(f"register({key!r}, ...) needs a subclass of tinype.positions.PositionalEncoding, "
                        f"got {cls!r}")
    if "name" not in cls.__dict__:
        cls.name = key
    _REGISTRY[key] = cls
    return cls


def unregister(name):
    """Forget one of your registered encodings (tinype's own cannot be removed)."""
    key = name.strip().lower()
    if key in _BUILTIN:
        raise ValueError(f"{key!r} is one of tinype's own encodings")
    _REGISTRY.pop(key, None)


def _load_path(spec):
    """The class named by "module.path:Class" or "path/to/file.py:Class"."""
    import importlib
    import importlib.util
    import os
    import sys
    where, _, attr = spec.rpartition(":")
    if not where or not attr.isidentifier():
        raise ValueError(f"{spec!r}: a module path is 'package.module:ClassName' or 'path/to/file.py:ClassName'")
    if where.endswith(".py"):
        path = os.path.abspath(os.path.expanduser(where))
        if not os.path.isfile(path):
            raise ValueError(f"{spec!r}: no file {path}")
        mod_name = "_tinype_user_pe_" + "".join(c if c.isalnum() else "_" for c in path)
        module = sys.modules.get(mod_name)
        if module is None:
            loader_spec = importlib.util.spec_from_file_location(mod_name, path)
            module = importlib.util.module_from_spec(loader_spec)
            folder = os.path.dirname(path)
            sys.path.insert(0, folder)                   # the file may import its neighbours
            try:
                loader_spec.loader.exec_module(module)
            except Exception as err:
                raise ValueError(f"{spec!r}: importing {path} failed: {type(err).__name__}: {err}") from None
            finally:
                sys.path.remove(folder)
            sys.modules[mod_name] = module
    else:
        try:
            module = importlib.import_module(where)
        except Exception as err:
            raise ValueError(f"{spec!r}: cannot import module {where!r}: {type(err).__name__}: {err}") from None
    cls = getattr(module, attr, None)
    if cls is None:
        # a command line may have lower-cased the name: accept a unique case-insensitive match
        matches = [v for k, v in vars(module).items() if k.lower() == attr.lower() and isinstance(v, type)]
        cls = matches[0] if len(matches) == 1 else None
    if cls is None:
        raise ValueError(f"{spec!r}: {where} defines no {attr!r}")
    if not (isinstance(cls, type) and issubclass(cls, PositionalEncoding)):
        raise ValueError(f"{spec!r}: {attr} is not a subclass of tinype.positions.PositionalEncoding")
    return cls


def _resolve(key):
    """A registered name (any case) or a module path -> the class."""
    if ":" in key:
        return _load_path(key)
    name = key.lower()
    if name not in _REGISTRY:
        raise ValueError(f"unknown positional encoding {name!r}; available: {', '.join(available())} "
                         f"(or your own: 'package.module:Class' or 'path/to/file.py:Class')")
    return _REGISTRY[name]


def canonical(name: str) -> str:
    """The spelling of a PE name to store and compare: registered names lower-cased, module paths
    kept as they are (a file or class name is case-sensitive). "ROPE+logn" -> "rope+logn"."""
    return "+".join(k.strip() if ":" in k else k.strip().lower() for k in str(name).split("+"))


def get(name: str, **options) -> PositionalEncoding:
    """A new positional encoding by name, e.g. get("sinusoidal", scale=1.0) or get("rope+logn").

    name: a registered name (tinype's or yours, see register), a module path
    ("my_package.my_pe:MyPE" or "path/to/my_pe.py:MyPE", imported and constructed), or several of
    them joined by "+". Options go to a single encoding; a combination takes none (configure its
    parts separately). A bad name or option is a ValueError that says what is wrong.
    """
    if not isinstance(name, str):
        raise TypeError(f"a PE name must be a string, got {type(name).__name__}")
    keys = [k.strip() for k in name.split("+")]
    if any(not k for k in keys):
        raise ValueError(f"{name!r}: an empty PE name")
    classes = [_resolve(k) for k in keys]
    if len(keys) == 1:
        try:
            return classes[0](**options)
        except TypeError as err:
            raise ValueError(f"{keys[0]}: bad options {sorted(options)}: {err}") from None
    if options:
        raise ValueError(f"options cannot be given to a combination ({name}); got {sorted(options)}")
    if len(set(classes)) != len(classes):
        raise ValueError(f"{name} names an encoding twice")
    try:
        return Combined([cls() for cls in classes])
    except TypeError as err:
        raise ValueError(f"{name}: a part cannot be built without options: {err}") from None


__all__ = ["available", "canonical", "get", "register", "unregister", "sinusoidal_table", "alibi_slopes",
           "rope_inv_freq", "rope_tables", "apply_rope",
           "t5_relative_bucket", "logn_scale", "log_positions", "PositionalEncoding", "EVAL_TIME_VARIANTS"] + \
          [cls.__name__ for cls in _FAMILIES] + ["Combined"]
