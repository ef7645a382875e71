"""The filter's speed-ups (#26 part 2) change no output: the n-gram signals are the same floats, the
repetition rule stopped at its first crossing gives the same verdict (reason, bound, value) as
measuring everything first, the DOM-depth guard refuses the same pages with the same depth, and the
page bodies written without a dictionary read back the same."""

import random
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from documents import quality_rules as Q
from documents import rules as R
from documents.extract import _OPEN_CLOSE, _VOID, dom_depth
from documents.rules import DocumentFilter, FilterOptions
from sample_crawl import text as T
from sample_crawl.generator import _render
from tests.conftest import shared_data


def reference_ngram_repetition(words, top_ns=(2, 3, 4), dup_ns=(5, 6, 7, 8, 9, 10)):
    """The n-gram signals as they were computed before: np.unique's counts and a scatter-add cover."""
    out = {}
    if not words:
        return {**{f"top_{n}gram_char_frac": 0.0 for n in top_ns}, **{f"dup_{n}gram_char_frac": 0.0 for n in dup_ns}}
    vocab = {}
    ids = np.fromiter((vocab.setdefault(w, len(vocab)) for w in words), dtype=np.int64, count=len(words))
    lens = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
    total = float(lens.sum())
    csum = np.concatenate([[0], np.cumsum(lens)])
    for n in top_ns:
        key = f"top_{n}gram_char_frac"
        if len(words) < n:
            out[key] = 0.0
            continue
        uniq, first, counts = np.unique(Q._ngram_hashes(ids, n), return_index=True, return_counts=True)
        best = int(np.argmax(counts))
        if counts[best] < 2:
            out[key] = 0.0
            continue
        start = int(first[best])
        out[key] = min(1.0, float(csum[start + n] - csum[start]) * int(counts[best]) / total)
    for n in dup_ns:
        key = f"dup_{n}gram_char_frac"
        if len(words) < n:
            out[key] = 0.0
            continue
        _, inverse, counts = np.unique(Q._ngram_hashes(ids, n), return_inverse=True, return_counts=True)
        dup_starts = np.nonzero(counts[inverse] > 1)[0]
        if not len(dup_starts):
            out[key] = 0.0
            continue
        cover = np.zeros(len(words) + 1, dtype=np.int64)
        np.add.at(cover, dup_starts, 1)
        np.add.at(cover, dup_starts + n, -1)
        out[key] = float(lens[np.cumsum(cover)[:-1] > 0].sum()) / total
    return out


def reference_dom_depth(html: bytes, limit: int) -> int:
    """The deepest nesting by a full scan of every tag (no shortcut)."""
    depth = deepest = 0
    for m in _OPEN_CLOSE.finditer(html):
        if m.group(1):
            depth = max(0, depth - 1)
        elif not m.group(3) and m.group(2).lower() not in _VOID:
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                break
    return deepest


def word_lists(n: int, seed: int) -> list[list[str]]:
    """Short vocabularies, so that n-grams of every length repeat, in every amount."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        vocab = ["w" * rng.randint(1, 4) + str(i) for i in range(rng.randint(1, 40))]
        out.append([rng.choice(vocab) for _ in range(rng.randint(0, 300))])
    return out


def test_ngram_signals_are_the_same_floats_as_before():
    for words in word_lists(600, seed=3):
        assert Q.ngram_repetition(words) == reference_ngram_repetition(words)


def repetitive_texts(n: int, seed: int) -> list[str]:
    """Texts that cross each repetition bound in turn: repeated lines, paragraphs, phrases."""
    rng = random.Random(seed)
    texts = []
    for i in range(n):
        _, paras = T.article(rng) if i % 3 else T.spam(rng)
        paras = list(paras)
        k = rng.randint(0, 4)
        if k == 1:
            paras += paras[: rng.randint(1, len(paras))]  # repeated paragraphs
        elif k == 2:
            paras = ["\n".join([p] + [p.split(".")[0]] * rng.randint(1, 4)) for p in paras]  # repeated lines
        elif k == 3:
            phrase = " ".join(rng.choice(p.split()) for p in paras for _ in range(2))
            paras = [p + " " + phrase for p in paras]  # a long phrase again and again
        texts.append("\n\n".join(paras))
    return texts


@pytest.mark.parametrize(
    "options",
    [
        Q.GopherRepetitionOptions(),
        # another order of the n-gram bounds: the check follows the options' order, as the verdict does
        Q.GopherRepetitionOptions(top_ngram_char_frac={4: 0.1, 2: 0.15}, dup_ngram_char_frac={10: 0.05, 5: 0.08}),
    ],
)
def test_the_repetition_check_stops_at_the_verdict_of_measuring_everything(options):
    verdicts = set()
    for text in repetitive_texts(300, seed=5):
        words = Q.words_of(text)
        full = Q.gopher_repetition_signals(text, words, options)
        signals, verdict = Q.gopher_repetition_check(text, words, options)
        assert verdict == Q.gopher_repetition_verdict(full, options)
        if verdict is None:
            assert signals == full  # a kept document has every signal
        verdicts.add(verdict[0] if verdict else None)
    # the texts reach the line, paragraph and n-gram bounds, and some pass
    assert None in verdicts and len(verdicts) >= 4, verdicts


def eager_filter(options) -> DocumentFilter:
    """The same filter with the repetition rule measuring every signal before its verdict."""
    f = DocumentFilter(options)
    eager = R._measured(Q.gopher_repetition_signals, Q.gopher_repetition_verdict)
    f.active = [(replace(r, apply=eager) if r.key == "gopher_repetition" else r, o, s) for r, o, s in f.active]
    return f


def rows_of(pages: list[bytes]) -> list[dict]:
    return [
        {
            "doc_id": f"d{i}",
            "url": f"https://site{i % 7}.example/p{i}",
            "host": f"site{i % 7}.example",
            "warc_date": None,
            "warc_record_id": f"r{i}",
            "warc_file": "w",
            "warc_offset": i,
            "charset": None,
            "html": html,
        }
        for i, html in enumerate(pages)
    ]


def assert_same_outputs(pages: list[bytes], options) -> dict:
    rows = rows_of(pages)
    new, old = DocumentFilter(options), eager_filter(options)
    reasons: dict = {}
    for row in rows:
        got, want = new.one(row), old.one(row)
        assert got == want
        reason = got[1][0] if got[1] else None
        reasons[reason] = reasons.get(reason, 0) + 1
    return reasons


def test_the_filter_keeps_and_rejects_the_same_documents_on_generated_pages():
    rng = random.Random(17)
    pages = []
    for i in range(60):
        title, paras = T.spam(rng) if i % 4 == 1 else T.article(rng)
        if i % 4 == 2:
            paras = [*paras, *paras]
        pages.append(_render("site.example", title, paras, rng))
    options = FilterOptions(url={"enabled": False}, language={"enabled": False}, extract={"backend": "resiliparse", "max_seconds": 0})
    reasons = assert_same_outputs(pages, options)
    assert reasons.get(None, 0) > 0 and any(k and k.startswith("gopher_rep.") for k in reasons), reasons


def test_the_filter_keeps_and_rejects_the_same_documents_on_real_pages():
    import gzip

    pages = [gzip.open(p).read() for p in sorted(shared_data("html/trafilatura-eval/pages").glob("*.html.gz"))[::6]]
    # the fast extractor: the rules, not the extraction, are what changed
    # no language rule, so that most pages reach the repetition rule
    options = FilterOptions(url={"enabled": False}, language={"enabled": False}, extract={"backend": "resiliparse", "max_seconds": 0})
    reasons = assert_same_outputs(pages, options)
    assert reasons.get(None, 0) > 10 and any(k and k.startswith("gopher_rep.") for k in reasons), reasons


def test_the_cascade_skipping_its_slow_path_for_dropped_languages_keeps_the_same_documents(monkeypatch):
    """On real pages (mostly not English), with the default filter: the same documents kept, with
    the same text and signals, and every page rejected before is rejected still, while most of the
    slow-path extractions are skipped."""
    import gzip

    import documents.extract as X

    pages = [gzip.open(p).read() for p in sorted(shared_data("html/trafilatura-eval/pages").glob("*.html.gz"))[::6]]
    rows = rows_of(pages)
    options = FilterOptions.model_validate({"url": {"enabled": False}, "extract": {"max_seconds": 0}})
    slow = []
    real = X._trafilatura
    monkeypatch.setattr(X, "_trafilatura", lambda doc, fast=False: slow.append(doc) or real(doc, fast))
    routed = DocumentFilter(options).many(rows)
    n_routed = len(slow)
    monkeypatch.setattr(R, "_rule_options", lambda o, rule: getattr(o, rule.key))  # as before: no language for the extractor
    always = DocumentFilter(options).many(rows)
    assert n_routed < 0.5 * (len(slow) - n_routed), (n_routed, len(slow) - n_routed)
    assert [k for k, _ in routed] == [k for k, _ in always]
    assert sum(k is not None for k, _ in routed) > 10
    languages = {v[1] for k, v in always if k is None and v[0] == "language.not_selected"}
    assert len(languages) > 3  # German, French, Polish, ... pages
    changed = [(a[1], b[1]) for a, b in zip(routed, always) if a[1] != b[1]]
    # a rejected page may be rejected on its fast-path text's language (another score, or the language
    # instead of no text at all), never kept
    assert all(a[0] == "language.not_selected" for a, _ in changed), changed


def test_the_depth_guard_refuses_the_same_pages_with_the_same_depth():
    pages = [
        b"<html><body>" + b"<div>" * 6000 + b"x" + b"</div>" * 6000 + b"</body></html>",  # deep
        b"<html><body>" + b"<p>a</p>" * 4500 + b"</body></html>",  # more tags than the limit, but shallow: not scanned
        b"<html><body>" + b"<p>a</p>" * 9000 + b"</body></html>",  # too many opening tags to rule out: scanned
        b"<html><body>" + b"<br><img src=x>" * 4000 + b"<div>" * 5001 + b"</body></html>",  # voids, then deep, never closed
        b"<div><span>" * 3000,  # unclosed
    ]
    try:
        import gzip

        pages += [gzip.open(p).read() for p in sorted(shared_data("html/trafilatura-eval/pages").glob("*.html.gz"))[::12]]
    except pytest.skip.Exception:
        pass
    for limit in (50, 5000):
        for html in pages:
            ref = reference_dom_depth(html, limit)
            got = dom_depth(html, limit)
            assert (got > limit) == (ref > limit)
            if ref > limit:
                assert got == ref
    assert dom_depth(pages[0], 5000) == 5001 and dom_depth(pages[1], 5000) == 0 and dom_depth(pages[2], 5000) == 3


def test_page_bodies_written_plain_read_back_the_same(tmp_path):
    from storage.delta_table import parquet_stats
    from storage.task_output import TaskOutputs

    schema = pa.schema([("doc_id", pa.string()), ("html", pa.binary())])
    bodies = [random.Random(i).randbytes(50_000) for i in range(20)]
    batch = pa.RecordBatch.from_pydict({"doc_id": [f"d{i}" for i in range(20)], "html": bodies}, schema=schema)
    with TaskOutputs({"doc": (str(tmp_path), schema)}, 0, plain=("html",)) as out:
        out.write("doc", batch)
    path = tmp_path / "part-000000.parquet"
    assert pq.read_table(path).column("html").to_pylist() == bodies
    col = pq.ParquetFile(path).metadata.row_group(0).column(1)
    assert col.statistics is None and "PLAIN_DICTIONARY" not in col.encodings and "RLE_DICTIONARY" not in col.encodings
    rows, stats, _ = parquet_stats(path)  # the Delta add action still counts the rows
    assert rows == 20 and '"doc_id": 0' in stats


# ---- the extraction stream: no round trip per page, the same answers, the same bounds --------------------

DEEP = b"<html><body>" + b"<div>" * 40000 + b"words in the deep " * 50 + b"</div>" * 40000 + b"</body></html>"


def article_pages(n: int) -> list[bytes]:
    rng = random.Random(23)
    return [_render("site.example", *T.article(rng), rng) for _ in range(n)]


def test_a_stream_of_pages_gives_each_page_its_own_answer_past_a_slow_page_and_a_crash():
    import threading

    from documents.extract import ExtractCrashed, ExtractOptions, Extractor, ExtractTimeout, IsolatedExtractor

    a, b, c = article_pages(3)
    want = [Extractor(ExtractOptions()).extract_with_path(p) for p in (a, b, c)]
    ex = IsolatedExtractor(ExtractOptions(max_seconds=1.0, max_dom_depth=10**9))
    got = list(ex.extract_many([(a, None), (DEEP, None), (b, None), (c, None)]))
    assert got[0] == want[0] and isinstance(got[1], ExtractTimeout) and got[2:] == want[1:]
    ex.close()

    ex = IsolatedExtractor(ExtractOptions(max_seconds=30, max_dom_depth=10**9))
    ex.extract(a)  # started
    killer = threading.Timer(0.5, lambda: ex._proc.kill())
    killer.start()
    got = list(ex.extract_many([(DEEP, None), (b, None), (c, None)]))
    assert isinstance(got[0], ExtractCrashed) and got[1:] == want[1:]

    # a stream left early leaves no reply behind for the next page to read
    stream = ex.extract_many([(a, None), (b, None), (c, None)])
    assert next(stream) == want[0]
    stream.close()
    assert ex.extract_with_path(c) == want[2]
    ex.close()


def test_the_filter_over_a_batch_equals_the_filter_page_by_page():
    pages = article_pages(12)
    pages[3] = b"<html><body>" + b"<div>" * 6000 + b"</body></html>"  # refused before extraction (too deep)
    pages[7] = b"<html></html>"  # no text
    rows = rows_of(pages)
    f = DocumentFilter(FilterOptions(url={"enabled": False}, language={"enabled": False}))  # the child process, as a task runs it
    assert f.many(rows) == [f.one(r) for r in rows]
    assert [v[0] for _, v in f.many(rows[3:8:4])] == ["extract.too_deep", "extract.no_text"]
