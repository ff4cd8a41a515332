"""MapReduce word count: map and reduce tasks over text files, shuffled by refs.

What it shows:
- Text files are written to a temporary directory first (sentences of Zipf-distributed
  words, with capitals and punctuation), then counted two ways.
- Map tasks each read one file, tokenize it and split their counts into one partition per
  reducer (`num_returns=REDUCERS`: one call returns one `ObjectRef` per partition).
- The shuffle is done by refs: reducer r receives partition r of every map task as a
  top-level argument, so actorlib hands it the values as soon as the map tasks finish,
  without the partitions passing through the driver.
- Words go to reducers by a stable hash (`zlib.crc32`); Python's `hash()` of a string
  differs from one process to another, so it cannot place keys across workers.
- The result is checked word for word against a single-process `collections.Counter` over
  the same files, and both are timed.

Expected output (times vary with the machine and the backend):

    wrote 16 files, 67.1 MB, 11,200,000 words, in /tmp/wordcount-niltnklh
    mapreduce: 16 map tasks x 4 reducers on 2 CPUs: 6.50 s
    single process (collections.Counter): 6.52 s
    distinct words: 50,000; total 11,200,000
    top words: the 1,253,288, of 605,885, and 397,027 ...
    per reducer: [12562, 12454, 12459, 12525] distinct words
    matches the single-process count
    done

Run it with:  python examples/mapreduce_wordcount.py          (full size)
              python examples/mapreduce_wordcount.py --small  (the size the tests use)
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

import actorlib

SMALL = "--small" in sys.argv or os.environ.get("ACTORLIB_EXAMPLE_SIZE") == "small"
FILES = 8 if SMALL else 16
WORDS_PER_FILE = 40_000 if SMALL else 700_000
REDUCERS = 4
VOCAB = 5_000 if SMALL else 50_000

WORD = re.compile(r"[a-z']+")
COMMON = ("the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was",
    "with", "be", "by", "on", "not", "he", "this", "are", "or", "his", "from", "at",
    "which", "but", "have", "an", "had", "they", "you", "were", "their", "one", "all",
    "we", "can", "her", "has", "there", "been", "if", "more", "when", "will", "would",
    "who", "so", "no")


def make_vocabulary(rng: np.random.Generator) -> np.ndarray:
    """Common English words first (most frequent), then made-up words of 2-11 letters."""
    n = 2 * VOCAB
    codes = rng.integers(ord("a"), ord("z") + 1, size=(n, 11), dtype=np.uint8)
    lengths = rng.integers(2, 12, size=n)
    made = (codes[i, :lengths[i]].tobytes().decode() for i in range(n))
    words = list(dict.fromkeys([*COMMON, *made]))[:VOCAB]
    assert len(words) == VOCAB
    return np.array(words, dtype=object)


def write_corpus(directory: Path, seed: int = 0) -> list[Path]:
    """Files of sentences: Zipf word frequencies, a capital at each start, punctuation."""
    rng = np.random.default_rng(seed)
    vocab = make_vocabulary(rng)
    ranks = np.arange(1, VOCAB + 1)
    probs = 1.0 / ranks**1.05
    probs /= probs.sum()
    paths = []
    capitalized = np.array([w.capitalize() for w in vocab], dtype=object)
    for i in range(FILES):
        idx = rng.choice(VOCAB, size=WORDS_PER_FILE, p=probs)
        ends = np.cumsum(rng.integers(4, 20, size=WORDS_PER_FILE // 4))
        ends = ends[ends < WORDS_PER_FILE]
        starts = np.concatenate(([0], ends))
        words = vocab[idx]
        words[starts] = capitalized[idx[starts]]
        suffix = np.full(WORDS_PER_FILE, "", dtype=object)
        suffix[rng.choice(WORDS_PER_FILE, size=WORDS_PER_FILE // 15, replace=False)] = ","
        suffix[ends - 1] = np.array([".", ".", "?", "!"], dtype=object)[
            rng.integers(0, 4, size=len(ends))]
        words = words + suffix
        lines = [" ".join(words[s:s + 12]) for s in range(0, WORDS_PER_FILE, 12)]
        path = directory / f"part-{i:03d}.txt"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def tokenize(text: str) -> list[str]:
    return WORD.findall(text.lower())


def reducer_of(word: str) -> int:
    return zlib.crc32(word.encode()) % REDUCERS


@actorlib.remote(num_returns=REDUCERS)
def map_file(path: str) -> list[dict[str, int]]:
    """Count one file's words; one partition (word -> count) per reducer."""
    counts = Counter(tokenize(Path(path).read_text(encoding="utf-8")))
    parts: list[dict[str, int]] = [{} for _ in range(REDUCERS)]
    for word, n in counts.items():
        parts[reducer_of(word)][word] = n
    return parts


@actorlib.remote
def reduce_counts(reducer: int, *partitions: dict[str, int]) -> dict[str, int]:
    """Sum partition ``reducer`` of every map task (the values arrive, not the refs)."""
    total: Counter[str] = Counter()
    for part in partitions:
        assert all(reducer_of(w) == reducer for w in part), "a word reached the wrong reducer"
        total.update(part)
    return dict(total)


def count_locally(paths: list[Path]) -> Counter[str]:
    total: Counter[str] = Counter()
    for path in paths:
        total.update(tokenize(path.read_text(encoding="utf-8")))
    return total


def main() -> None:
    actorlib.init(ignore_reinit_error=True)
    cpus = int(actorlib.cluster_resources().get("CPU", 1))
    with tempfile.TemporaryDirectory(prefix="wordcount-") as tmp:
        paths = write_corpus(Path(tmp))
        size = sum(p.stat().st_size for p in paths)
        print(f"wrote {len(paths)} files, {size / 1e6:.1f} MB, "
              f"{len(paths) * WORDS_PER_FILE:,} words, in {tmp}")

        t0 = time.perf_counter()
        partitions = [map_file.remote(str(p)) for p in paths]  # each: REDUCERS refs
        reduced = [
            reduce_counts.remote(r, *(parts[r] for parts in partitions))
            for r in range(REDUCERS)
        ]
        results = actorlib.get(reduced)
        t_mapreduce = time.perf_counter() - t0
        print(f"mapreduce: {len(paths)} map tasks x {REDUCERS} reducers on {cpus} CPUs: "
              f"{t_mapreduce:.2f} s")

        t0 = time.perf_counter()
        expected = count_locally(paths)
        print(f"single process (collections.Counter): {time.perf_counter() - t0:.2f} s")

    merged: dict[str, int] = {}
    for part in results:
        assert merged.keys().isdisjoint(part), "two reducers produced the same word"
        merged.update(part)
    total = sum(merged.values())
    print(f"distinct words: {len(merged):,}; total {total:,}")
    top = sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    print("top words:", ", ".join(f"{w} {n:,}" for w, n in top), "...")
    print("per reducer:", [len(p) for p in results], "distinct words")
    assert merged == dict(expected), "the mapreduce count differs from the local count"
    assert total == len(paths) * WORDS_PER_FILE, (total, len(paths) * WORDS_PER_FILE)
    assert top[0][0] == "the"
    print("matches the single-process count")
    actorlib.shutdown()
    print("done")


if __name__ == "__main__":
    main()
