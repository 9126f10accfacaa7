"""Tokenizer, the bundled corpus, batches and user text files."""
import gzip
import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinype import data
from tinype.data import (
    DEFAULT_CORPUS_SHA256,
    Corpus,
    decode,
    default_corpus_text,
    default_topics,
    encode,
    get_batch,
    load_text_file,
    windows,
)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_text_round_trips(text):
    ids = encode(text)
    assert ids.dtype == np.uint8 and ids.max(initial=0) <= 255
    assert decode(ids) == text


def test_decode_never_raises_on_partial_utf8():
    assert decode(encode("é")[:1]) == "\ufffd"


def test_default_corpus_is_the_frozen_topics_in_sorted_order():
    topics = default_topics()
    text = default_corpus_text()
    assert len(topics) == 79 and text == "\n\n".join(topics[k] for k in sorted(topics))
    c = Corpus.default()
    n = len(text.encode("utf-8"))
    assert n == 466_273                                  # Python 3.11.7's pydoc_data.topics
    assert len(c.train) == int(n * 0.9) and len(c.train) + len(c.val) == n
    assert np.array_equal(c.train, c.ids[: len(c.train)])
    assert c.sha256 == hashlib.sha256(text.encode("utf-8")).hexdigest() == DEFAULT_CORPUS_SHA256


def test_default_corpus_does_not_depend_on_the_running_python():
    """A fresh interpreter builds the corpus without importing pydoc_data (whose text changes with every
    Python release) and gets the recorded digest; CI runs this, so the frozen copy is the one used."""
    code = ("import sys, tinype; c = tinype.Corpus.default(); "
            "print(c.sha256, len(c.ids), 'pydoc_data' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [DEFAULT_CORPUS_SHA256, "466273", "False"]


def test_a_damaged_corpus_file_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "pydoc_topics.json.gz"
    with gzip.open(bad, "wt", encoding="utf-8") as f:
        json.dump({"topics": {"if": "edited"}}, f)
    monkeypatch.setattr(data, "CORPUS_FILE", str(bad))
    data.default_topics.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="sha256"):
            Corpus.default()
        bad.write_bytes(b"not gzip")
        data.default_topics.cache_clear()
        with pytest.raises(RuntimeError, match="missing or damaged"):
            Corpus.default()
    finally:
        data.default_topics.cache_clear()


def test_batches_are_seeded_windows():
    data = np.arange(1000, dtype=np.uint8) % 251
    x1, y1 = get_batch(data, 4, 16, np.random.default_rng(7))
    x2, y2 = get_batch(data, 4, 16, np.random.default_rng(7))
    assert np.array_equal(x1, x2) and x1.shape == (4, 16)
    np.testing.assert_array_equal(x1[:, 1:], y1[:, :-1])    # targets are the inputs shifted by one
    for row_x, row_y in zip(x1, y1):
        s = int(np.flatnonzero(np.all(np.lib.stride_tricks.sliding_window_view(data, 16) == row_x, axis=1))[0])
        assert row_y[-1] == data[s + 16]


def test_eval_windows_do_not_overlap():
    data = np.arange(100, dtype=np.uint8)
    x, y = windows(data, 10)
    assert x.shape == (9, 10) and x[1, 0] == 10 and y[0, -1] == 10
    xs, _ = windows(data, 10, stride=5)
    assert xs[1, 0] == 5


def test_text_file_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        load_text_file(str(empty))
    binary = tmp_path / "b.bin"
    binary.write_bytes(b"\x00\x01\x02abc")
    with pytest.raises(ValueError, match="binary"):
        load_text_file(str(binary))
    latin = tmp_path / "l.txt"
    latin.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        load_text_file(str(latin))
    with pytest.raises(FileNotFoundError, match="not found"):
        load_text_file(str(tmp_path / "nope.txt"))
    short = tmp_path / "s.txt"
    short.write_text("hello world")
    with pytest.raises(ValueError, match="fewer than one window"):
        Corpus.from_file(str(short)).check_window(64)
