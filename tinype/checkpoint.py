"""Checkpoints: one .npz of arrays plus JSON metadata, written atomically, checked on load.

Writing goes to a temporary file in the same folder, is fsync'ed, then renamed over the target,
so a crash at any moment leaves either the old checkpoint or the new one, never half of one.
Loading never unpickles (allow_pickle=False) and verifies a SHA-256 checksum over every array and
the metadata, so a truncated or edited file is refused with a clear message.
"""
import hashlib
import json
import os
import tempfile
import zipfile

import numpy as np

FORMAT = "tinype-checkpoint-1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: corrupt, tampered with, or from another configuration."""


def _checksum(arrays, meta_json):
    h = hashlib.sha256(meta_json.encode("utf-8"))
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}".encode("utf-8"))
        h.update(a.tobytes())
    return h.hexdigest()


def atomic_write_bytes(path, write):
    """Call write(file) on a temporary file beside `path`, fsync, then rename it over `path`."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=folder)
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


def save_checkpoint(path, arrays, meta):
    """arrays: {name: ndarray} (names may contain '/' and '.'); meta: a JSON-serialisable dict."""
    meta = dict(meta, format=FORMAT)
    meta_json = json.dumps(meta, sort_keys=True)
    payload = {name: np.asarray(a) for name, a in arrays.items()}
    if any(name.startswith("__") for name in payload):
        raise ValueError("array names starting with '__' are reserved")
    payload["__meta__"] = np.array(meta_json)
    payload["__checksum__"] = np.array(_checksum(arrays, meta_json))
    atomic_write_bytes(path, lambda f: np.savez(f, **payload))


def load_checkpoint(path):
    """Returns (arrays, meta). Raises FileNotFoundError or CheckpointError with what is wrong."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
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
    meta = json.loads(meta_json)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} has format {meta.get('format')!r}, expected {FORMAT!r}")
    return data, meta
