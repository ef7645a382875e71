"""MinHash signatures, band keys and exact hashes: deterministic, batch-independent, and
estimating the Jaccard similarity they are meant to estimate."""

import random

import numpy as np
import pyarrow as pa
import pytest

from documents.minhash import (
    EMPTY_SLOT,
    DedupOptions,
    band_keys,
    exact_hashes,
    exact_jaccard,
    exact_jaccards,
    jaccard_estimate,
    minhash,
    shingles,
    words,
)

VOCAB = [f"w{i}" for i in range(5000)]


def text(seed: int, n: int = 300) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(VOCAB) for _ in range(n))


def edit(t: str, rate: float, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join("zz" if rng.random() < rate else w for w in t.split())


def sigs(texts, o=None):
    o = o or DedupOptions()
    sh = shingles(pa.array(texts), o.ngram)
    return sh, minhash(sh, o.num_perm, o.seed)


def test_words_are_lowercased_and_trimmed_of_punctuation():
    assert words(pa.array(["Hello, World! «Don't» stop... -- end."])).to_pylist() == [["hello", "world", "don't", "stop", "end"]]
    assert words(pa.array(["", "...", None])).to_pylist() == [[], [], []]


def test_signature_of_a_document_does_not_depend_on_its_batch():
    docs = [text(i, random.Random(i).randint(3, 3000)) for i in range(60)]
    docs[17] = text(17, 10_000)  # longer than one block of shingles: its minimum spans blocks
    _, together = sigs(docs)
    _, reversed_ = sigs(docs[::-1])
    assert (together == reversed_[::-1]).all()
    for i in (0, 17, 59):
        assert (sigs([docs[i]])[1][0] == together[i]).all()
    # The block-wise minimum equals a direct computation over all shingles of the document.
    from documents.minhash import permutations

    sh, _ = sigs([docs[17]])
    a, b = permutations(DedupOptions().num_perm, DedupOptions().seed)
    x = sh.values >> np.uint64(32)
    direct = ((x[:, None] * a[None, :] + b[None, :]) >> np.uint64(32)).min(axis=0).astype(np.uint32)
    assert (direct == together[17]).all()


def test_estimated_jaccard_tracks_the_exact_one():
    base = [text(i) for i in range(40)]
    for rate in (0.01, 0.05, 0.15):
        edited = [edit(t, rate, i) for i, t in enumerate(base)]
        _, a = sigs(base)
        _, b = sigs(edited)
        est = jaccard_estimate(a, b)
        exact = np.array([exact_jaccard(x, y, 5) for x, y in zip(base, edited)])
        assert np.abs(est - exact).mean() < 0.05, rate  # 112 hashes: standard error ≤ 0.047
    assert np.allclose(exact_jaccards(pa.array(base[:5]), pa.array(edited[:5]), 5), exact[:5])


def test_band_keys_collide_for_near_duplicates_and_not_for_unrelated_texts():
    o = DedupOptions()
    base = [text(i) for i in range(100)]
    near = [edit(t, 0.01, i) for i, t in enumerate(base)]
    other = [text(1000 + i) for i in range(100)]
    _, s = sigs(base + near + other)
    k = band_keys(s, o.bands, o.rows)
    assert (k[:100] == k[100:200]).any(axis=1).mean() >= 0.97
    assert not (k[:100] == k[200:300]).any()
    assert len(set(k[:, 0].tolist()) & set(k[:, 1].tolist())) == 0  # the band number is part of the key


def test_short_and_empty_texts():
    sh, s = sigs(["just three words", "", "  ... !!  ", "just three words"])
    assert sh.counts.tolist() == [1, 0, 0, 1]  # shorter than n words: one shingle of all of them
    assert (s[1] == EMPTY_SLOT).all() and (s[2] == EMPTY_SLOT).all()
    assert (s[0] == s[3]).all() and not (s[0] == EMPTY_SLOT).any()


def test_exact_hash_ignores_case_whitespace_and_surrounding_punctuation():
    h = exact_hashes(pa.array(["The cat sat.", "the   CAT sat", "The cat sat!\n", "The cat stood."]))
    assert h[0] == h[1] == h[2] != h[3]


def test_lsh_threshold_and_validation():
    assert DedupOptions().lsh_threshold == pytest.approx(0.719, abs=0.001)  # FineWeb's 14 × 8
    with pytest.raises(ValueError):
        DedupOptions(bands=64, rows=32)


def test_verified_pairs_need_both_texts():
    """The driver's verification: a pair passes on its exact Jaccard; a pair with a text missing
    fails (as the DataFrame path's join drops it), also when no text was found at all."""
    from spark_jobs.dedup_local import verified

    o = DedupOptions()
    text = "one two three four five six seven"
    texts = pa.table({"doc_id": ["a", "b", "c"], "text": [text, text + " eight", "nine ten eleven twelve thirteen fourteen"]})
    ok = verified(pa.array(["a", "a", "a"]), pa.array(["b", "c", "zz"]), texts, o)
    assert ok.tolist() == [exact_jaccard(text, text + " eight", o.ngram) >= o.verify_threshold, False, False]
    assert ok[0]
    assert verified(pa.array(["a"]), pa.array(["b"]), texts.slice(0, 0), o).tolist() == [False]
