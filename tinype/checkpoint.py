"""Files: checkpoints (one .npz of arrays plus JSON metadata) and JSON results, written atomically,
checked on load, and models rebuilt from checkpoints only after their metadata agrees with them.

Writing goes to a temporary file in the same folder, is fsync'ed, then renamed over the target,
so a crash at any moment leaves either the old file or the new one, never half of one; a
temporary left by a killed write is removed by the next run in that folder
(remove_orphan_temporaries). Loading never unpickles (allow_pickle=False), verifies a SHA-256
checksum over every array and the metadata, and refuses complex, non-numeric or non-finite arrays.
A checkpoint is a file from anywhere: load_model checks its metadata against its own array shapes
before it allocates a model, so a metadata edit (with a recomputed checksum) cannot make tinype
allocate what the file does not hold.
"""
import glob
import hashlib
import json
import math
import os
import tempfile
import zipfile

import numpy as np

from .errors import InvalidFile, MissingFile, UserError

FORMAT = "tinype-checkpoint-1"
CKPT_NAME = "ckpt.npz"
TMP_PREFIX = ".tmp-"


class CheckpointError(InvalidFile):
    """A checkpoint that cannot be used: corrupt, tampered with, or from another configuration."""


def _checksum(arrays, meta_json):
    h = hashlib.sha256(meta_json.encode("utf-8"))
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def atomic_write_bytes(path, write):
    """Call write(file) on a temporary file beside `path`, fsync, then rename it over `path`."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=os.path.basename(path), dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:                                  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def remove_orphan_temporaries(folder):
    """Delete the temporaries a killed atomic write left in `folder`; returns their paths.

    Call it only where no other process is writing into the folder (at the start of a run)."""
    removed = []
    for path in glob.glob(os.path.join(glob.escape(folder), TMP_PREFIX + "*")):
        try:
            os.unlink(path)
            removed.append(path)
        except OSError:
            pass
    return removed


def _finite_or_none(obj):
    """A copy of obj with every NaN or infinite float replaced by None (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, np.floating):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


def write_json(path, obj):
    """Write obj as strict JSON (a NaN or inf becomes null), atomically."""
    text = json.dumps(_finite_or_none(obj), indent=2, sort_keys=True, allow_nan=False) + "\n"
    atomic_write_bytes(path, lambda f: f.write(text.encode("utf-8")))


def _refuse_constant(name):
    raise ValueError(f"{name} is not JSON")


def read_json(path, what="file"):
    """A JSON file tinype wrote earlier; a clear InvalidFile (naming the file) when it is not JSON."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise MissingFile(f"{what} not found: {path}") from None
    except OSError as err:
        raise InvalidFile(f"cannot read the {what} {path}: {err.strerror or err}") from None
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as err:
        raise InvalidFile(f"{path} is not valid JSON ({err}); it was edited or damaged: delete it "
                          f"(tinype recomputes what it held) or restore it") from None


def save_checkpoint(path, arrays, meta):
    """arrays: {name: ndarray} (names may contain '/' and '.'); meta: a JSON-serialisable dict."""
    meta = dict(meta, format=FORMAT)
    meta_json = json.dumps(_finite_or_none(meta), sort_keys=True, allow_nan=False)
    payload = {name: np.asarray(a) for name, a in arrays.items()}
    if any(name.startswith("__") for name in payload):
        raise ValueError("array names starting with '__' are reserved")
    payload["__meta__"] = np.array(meta_json)
    payload["__checksum__"] = np.array(_checksum(arrays, meta_json))
    atomic_write_bytes(path, lambda f: np.savez(f, **payload))


def _check_arrays(path, arrays):
    """Real numbers only, and finite: a NaN weight would silently turn every output into NaN."""
    for name, a in arrays.items():
        if a.dtype.kind not in "fiub":
            raise CheckpointError(f"{path}: array {name} has dtype {a.dtype} (tinype stores real numbers "
                                  f"only); the file was not written by tinype")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            bad = int((~np.isfinite(a)).sum())
            raise CheckpointError(f"{path}: array {name} holds {bad} NaN or infinite value(s); "
                                  f"such weights compute nothing but NaN: use an earlier checkpoint or retrain")


def load_checkpoint(path):
    """Returns (arrays, meta). Raises MissingFile or CheckpointError with what is wrong."""
    if not os.path.exists(path):
        raise MissingFile(f"checkpoint not found: {path}")
    if os.path.isdir(path):
        raise CheckpointError(f"{path} is a folder; a checkpoint is a file (ckpt.npz inside a run folder)")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {name: z[name] for name in z.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"{path} is not a readable tinype checkpoint (truncated or corrupt?): {err}") from None
    if "__meta__" not in data or "__checksum__" not in data:
        raise CheckpointError(f"{path} is not a tinype checkpoint (no metadata or checksum)")
    meta_json = str(data.pop("__meta__"))
    stored = str(data.pop("__checksum__"))
    if _checksum(data, meta_json) != stored:
        raise CheckpointError(f"{path} failed its checksum: the file was modified or damaged; "
                              f"use another checkpoint or retrain")
    try:
        meta = json.loads(meta_json, parse_constant=_refuse_constant)
    except ValueError as err:
        raise CheckpointError(f"{path}: its metadata is not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: its metadata is not a JSON object")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} has format {meta.get('format')!r}, expected {FORMAT!r}")
    _check_arrays(path, data)
    return data, meta


def _expected_trunk_shapes(cfg):
    """{parameter name: shape} of everything but the PE's own parameters, from the configuration
    alone (no allocation): what model.Transformer._init_params makes."""
    V, C = cfg["vocab_size"], cfg["d_model"]
    shapes = {"wte": (V, C), "ln_f.w": (C,), "ln_f.b": (C,)}
    for l in range(cfg["n_layer"]):
        h = f"h{l}."
        shapes.update({h + "ln_1.w": (C,), h + "ln_1.b": (C,), h + "attn.w_qkv": (C, 3 * C),
                       h + "attn.b_qkv": (3 * C,), h + "attn.w_proj": (C, C), h + "attn.b_proj": (C,),
                       h + "ln_2.w": (C,), h + "ln_2.b": (C,), h + "mlp.w_fc": (C, 4 * C),
                       h + "mlp.b_fc": (4 * C,), h + "mlp.w_proj": (4 * C, C), h + "mlp.b_proj": (C,)})
    return shapes


def check_model_metadata(path, meta, params):
    """The checkpoint's model configuration, checked against its own arrays before any allocation.

    Returns a ModelConfig. Raises CheckpointError naming the first disagreement."""
    from dataclasses import fields

    from .config import ModelConfig
    cfg = meta.get("model_config")
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path} has no model configuration (metadata key 'model_config')")
    missing = [f.name for f in fields(ModelConfig) if f.name not in cfg]
    if missing:
        raise CheckpointError(f"{path}: its model configuration lacks {', '.join(missing)}; "
                              f"the metadata was edited or written by another program")
    for name in ("vocab_size", "n_layer", "d_model", "n_head", "T_train"):
        v = cfg[name]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise CheckpointError(f"{path}: model_config.{name} = {v!r} is not a positive integer")
    # the trunk's shapes follow from (vocab_size, d_model, n_layer): compare them with the arrays
    expected = _expected_trunk_shapes(cfg)
    for name, shape in expected.items():
        if name not in params:
            raise CheckpointError(f"{path}: its metadata describes parameter {name} {shape} "
                                  f"(n_layer={cfg['n_layer']}, d_model={cfg['d_model']}), which the file lacks")
        if tuple(params[name].shape) != shape:
            raise CheckpointError(f"{path}: its metadata says {name} has shape {shape} (d_model={cfg['d_model']}, "
                                  f"vocab_size={cfg['vocab_size']}), the file holds {tuple(params[name].shape)}")
    extra = sorted(k for k in params if k not in expected and not k.startswith("pe."))
    if extra:
        raise CheckpointError(f"{path}: parameters {extra[:3]} do not belong to the model its metadata "
                              f"describes (n_layer={cfg['n_layer']})")
    try:
        config = ModelConfig.from_dict(cfg)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: its model configuration is not usable: {err}") from None
    # the PE's own table is sized by T_train (learned, randomized_learned): it must be in the file too
    from . import positions
    pe = positions.get(config.pe, **config.pe_options)
    pe.setup(config)
    limit = getattr(pe, "max_positions", None)
    pe_bytes = (limit or 0) * config.d_model * np.dtype(config.dtype).itemsize
    held = sum(a.nbytes for k, a in params.items() if k.startswith("pe."))
    if pe_bytes > 2 * held + (1 << 20):
        raise CheckpointError(f"{path}: its metadata describes a {config.pe} table of {limit} positions "
                              f"(T_train={config.T_train}), which its arrays do not hold")
    return config


def load_model(path, trust_code=False, check=None):
    """(Transformer, metadata) from a checkpoint written by tinype.train (for generate and the lab).

    A checkpoint may name an encoding defined outside tinype ("dir/my_pe.py:MyPE"); building it
    imports and runs that file. A checkpoint is data, and may come from anyone, so that happens only
    with trust_code=True (`tinype generate --trust-code`); the lab passes it for the runs it trained
    itself. check: an optional callable(meta) that raises when the checkpoint is not the one wanted;
    it runs before anything is built from the metadata."""
    from .model import Transformer
    arrays, meta = load_checkpoint(path)
    params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
    config = check_model_metadata(path, meta, params)
    if check is not None:
        check(meta)
    if ":" in str(config.pe) and not trust_code:
        raise CheckpointError(
            f"{path} uses the encoding {config.pe!r}, defined outside tinype: building it would import and "
            f"run that file's code. If you trust the checkpoint and the file, pass trust_code=True "
            f"(tinype generate --trust-code)")
    model = Transformer(config)
    try:
        model.load_parameters(params)
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from None
    return model, meta


__all__ = ["CKPT_NAME", "CheckpointError", "FORMAT", "UserError", "atomic_write_bytes", "check_model_metadata",
           "load_checkpoint", "load_model", "read_json", "remove_orphan_temporaries", "save_checkpoint",
           "write_json"]
