"""Freeze the default corpus: Python's help topics (pydoc_data.topics) into tinype/corpus/.

Every Python release rewrites pydoc_data.topics (460,220 bytes joined on 3.10.13, 466,273 on 3.11.7,
493,500 on 3.12.1, 511,947 on 3.13.0), so training on "the topics of the running interpreter" gives
other numbers on every version. tinype ships one frozen copy instead. It was made by running

    python3.11 scripts/freeze_corpus.py          # Python 3.11.7, the version of the README's tables

which writes tinype/corpus/pydoc_topics.json.gz (the topics dict, keys sorted, gzip with a zero
timestamp so the file is byte-for-byte reproducible) and prints the sha256 of the joined text, to be
recorded as tinype.data.DEFAULT_CORPUS_SHA256. Run it again only on purpose: a new corpus changes
every published number.
"""
import gzip
import hashlib
import io
import json
import os
import sys
from pydoc_data.topics import topics

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tinype", "corpus",
                   "pydoc_topics.json.gz")


def main():
    version = ".".join(map(str, sys.version_info[:3]))
    payload = {"source": "pydoc_data.topics", "python": version,
               "topics": {k: topics[k] for k in sorted(topics)}}
    raw = json.dumps(payload, ensure_ascii=False, sort_keys=True, indent=0).encode("utf-8")
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as f:
        f.write(raw)
    with open(OUT, "wb") as f:
        f.write(buf.getvalue())
    joined = "\n\n".join(payload["topics"][k] for k in sorted(payload["topics"])).encode("utf-8")
    print(f"wrote {OUT}: {len(buf.getvalue()):,} bytes compressed, Python {version}, "
          f"{len(topics)} topics")
    print(f"joined text: {len(joined):,} bytes, sha256 {hashlib.sha256(joined).hexdigest()}")


if __name__ == "__main__":
    main()
