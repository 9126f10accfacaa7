"""Bytes in, bytes out: the tokenizer, the bundled corpus, and random training windows.

The tokenizer is UTF-8 itself: token ids are byte values 0..255, so any text round-trips and the
vocabulary never needs training. The default corpus is Python's own help topics (the module
pydoc_data.topics), frozen from Python 3.11.7 into tinype/corpus/ so that every Python version trains
on the same bytes (each release rewrites that module); nothing is ever downloaded.

Shape letters: B batch, T time.
"""
import gzip
import hashlib
import json
import os
from functools import lru_cache

import numpy as np

VOCAB_SIZE = 256


def encode(text):
    """str -> (N,) uint8 token ids (the UTF-8 bytes)."""
    if not isinstance(text, str):
        raise TypeError(f"encode takes a str, got {type(text).__name__}")
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()


def decode(ids):
    """Token ids -> str. Byte sequences that are not valid UTF-8 (a sample can end mid-character)
    become U+FFFD instead of raising."""
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() > 255):
        raise ValueError("token ids must be bytes, 0..255")
    return ids.astype(np.uint8).tobytes().decode("utf-8", errors="replace")


CORPUS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "pydoc_topics.json.gz")
DEFAULT_CORPUS_NAME = "pydoc_data.topics (Python 3.11.7, frozen)"
# sha256 of default_corpus_text() encoded as UTF-8 (466,273 bytes), printed by scripts/freeze_corpus.py.
DEFAULT_CORPUS_SHA256 = "71f2ff5d99bdc1f9c48c5c2353ad138201c5ca1c377e0226857ef8fa89b8bcee"


@lru_cache(maxsize=1)
def default_topics():
    """The frozen help topics, {topic name: text}: pydoc_data.topics as Python 3.11.7 shipped it
    (tinype/corpus/SOURCE.md gives the origin and licence). The same on every Python version."""
    try:
        with gzip.open(CORPUS_FILE, "rt", encoding="utf-8") as f:
            payload = json.load(f)
    except (OSError, ValueError) as err:
        raise RuntimeError(f"tinype's bundled corpus {CORPUS_FILE} is missing or damaged ({err}); "
                           "reinstall tinype (pip install -e .)") from None
    return dict(payload["topics"])


def default_corpus_text():
    """The bundled corpus: the frozen help topics, joined with blank lines in sorted-key order."""
    topics = default_topics()
    return "\n\n".join(topics[k] for k in sorted(topics))


class Corpus:
    """Token ids split into train (first 90% of the bytes) and validation (the rest)."""

    def __init__(self, ids, name="corpus", val_fraction=0.1):
        ids = np.asarray(ids, dtype=np.uint8)
        if ids.ndim != 1:
            raise ValueError(f"corpus ids must be 1-D, got shape {ids.shape}")
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        self.name = name
        self.ids = ids
        n_train = int(len(ids) * (1 - val_fraction))
        self.train = ids[:n_train]
        self.val = ids[n_train:]
        self.sha256 = hashlib.sha256(ids.tobytes()).hexdigest()

    @classmethod
    def default(cls):
        corpus = cls(encode(default_corpus_text()), name=DEFAULT_CORPUS_NAME)
        if corpus.sha256 != DEFAULT_CORPUS_SHA256:       # a damaged or edited copy: never train on it silently
            raise RuntimeError(f"tinype's bundled corpus {CORPUS_FILE} has sha256 {corpus.sha256}, not the "
                               f"recorded {DEFAULT_CORPUS_SHA256}; reinstall tinype")
        return corpus

    @classmethod
    def from_file(cls, path, flag="--text"):
        """A user's UTF-8 text file as a corpus (load_text_file's checks; flag names the option in errors)."""
        return cls(load_text_file(path, flag), name=os.path.basename(path))

    def batch(self, batch_size, T, rng, step=None):
        """Random training windows x, y (B, T) from the train split (what train() asks a source for;
        the step, which a task's curriculum uses, changes nothing here)."""
        return get_batch(self.train, batch_size, T, rng)

    def check_window(self, T):
        """Both splits must hold at least one window of T inputs plus its next-byte target."""
        for split, data in (("train", self.train), ("validation", self.val)):
            if len(data) < T + 1:
                raise ValueError(
                    f"{self.name}: the {split} split has {len(data)} bytes, fewer than one window of "
                    f"{T} + 1; use a longer text (at least {int(np.ceil((T + 1) / 0.1))} bytes) or a "
                    f"shorter context")


def get_batch(data, batch_size, T, rng):
    """Random windows: x (B, T) and the next bytes y (B, T), as int64. rng: np.random.Generator."""
    if len(data) < T + 1:
        raise ValueError(f"data has {len(data)} tokens, fewer than one window of {T} + 1")
    starts = rng.integers(0, len(data) - T, size=batch_size)            # start + T <= len - 1
    offsets = starts[:, None] + np.arange(T + 1)[None, :]                 # (B, T+1)
    chunk = data[offsets].astype(np.int64)
    return chunk[:, :-1], chunk[:, 1:]


def windows(data, T, stride=None):
    """Evaluation windows: x (W, T), y (W, T), starting every `stride` bytes (default T: no overlap)."""
    stride = T if stride is None else stride
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if len(data) < T + 1:
        raise ValueError(f"data has {len(data)} tokens, fewer than one window of {T} + 1")
    starts = np.arange(0, len(data) - T, stride)
    offsets = starts[:, None] + np.arange(T + 1)[None, :]
    chunk = data[offsets].astype(np.int64)
    return chunk[:, :-1], chunk[:, 1:]


def load_text_file(path, flag="--text"):
    """A user's text file as (N,) uint8 token ids, refusing what cannot be used with a UserError:
    a missing path, a folder, a FIFO or device (reading one would block or never end), an
    unreadable file, an empty, binary or non-UTF-8 one."""
    import stat

    from .errors import InvalidFile, MissingFile
    if not isinstance(path, str) or not path.strip():
        raise InvalidFile(f"{flag} is empty: name a UTF-8 text file")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise MissingFile(f"text file not found: {path}") from None
    except OSError as err:
        raise InvalidFile(f"{flag} {path} cannot be read: {err.strerror or err}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InvalidFile(f"{flag} expects a file, got the folder {path}")
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "not a regular file"
        raise InvalidFile(f"{flag} {path} is {kind}: give a regular text file (save the stream to a file first)")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as err:
        raise InvalidFile(f"{flag} {path} cannot be read: {err.strerror or err}") from None
    if not raw:
        raise InvalidFile(f"{path} is empty: give a text file with some content to train on")
    if b"\x00" in raw[:65536]:
        raise InvalidFile(f"{path} looks binary (it contains NUL bytes): give a plain text file")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidFile(f"{path} is not UTF-8 text ({err}); convert it first, e.g. "
                          f"`iconv -f latin1 -t utf-8 {path} > out.txt`") from None
    return np.frombuffer(raw, dtype=np.uint8).copy()
