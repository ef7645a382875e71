"""Each heuristic rule, with text just inside and just outside its threshold (FineWeb defaults)."""

import random
import string

import pytest

from documents import quality_rules as Q

GR = Q.GopherRepetitionOptions()
GQ = Q.GopherQualityOptions()
C4 = Q.C4Options()
FW = Q.FineWebOptions()


def uniq_words(n: int, seed: int = 0, length: int = 5) -> list[str]:
    """n distinct lowercase pseudo-words of a fixed length (no accidental repeats)."""
    rng = random.Random(seed)
    out: list[str] = []
    seen = set()
    while len(out) < n:
        w = "".join(rng.choice(string.ascii_lowercase) for _ in range(length))
        if w not in seen and w not in Q.STOP_WORDS:
            seen.add(w)
            out.append(w)
    return out


def rep_verdict(text: str, o: Q.GopherRepetitionOptions = GR):
    return Q.gopher_repetition_verdict(Q.gopher_repetition_signals(text, Q.words_of(text), o), o)


# Line/paragraph rules alone: a repeated line of 5+ words necessarily repeats 5-grams too.
GR_LINES = Q.GopherRepetitionOptions(top_ngram_char_frac={}, dup_ngram_char_frac={})


def qual_verdict(text: str):
    return Q.gopher_quality_verdict(Q.gopher_quality_signals(text, Q.words_of(text), GQ), GQ)


def fw_verdict(text: str):
    return Q.fineweb_verdict(Q.fineweb_signals(text, Q.words_of(text), FW), FW)


# ---- Gopher repetition ---------------------------------------------------------------------------


def lines_with_dups(n_unique: int, n_dup: int, dup_line: str = "short repeated line") -> str:
    words = uniq_words(n_unique * 12, seed=1)
    lines = [" ".join(words[i * 12 : (i + 1) * 12]) for i in range(n_unique)]
    lines += [dup_line] * (n_dup + 1)
    return "\n".join(lines)


def test_dup_line_frac():
    # 3 of 10 lines repeat an earlier one (0.30) vs 4 of 11 (0.36); their characters stay few.
    assert rep_verdict(lines_with_dups(6, 3, "ok")) is None
    rule, value, _bound = rep_verdict(lines_with_dups(6, 4, "ok"))
    assert rule == "gopher_rep.dup_line_frac" and value == pytest.approx(4 / 11)


def test_dup_line_char_frac():
    # One long line repeated once: its characters are 0.20 of the text or just above.
    words = uniq_words(400, seed=2)
    long_line = " ".join(words[:10])  # 59 chars
    base = [" ".join(words[10 + i * 12 : 22 + i * 12]) for i in range(30)]

    def text(n_base: int) -> str:
        return "\n".join(base[:n_base] + [long_line, long_line])

    sig = lambda t: Q.gopher_repetition_signals(t, Q.words_of(t), GR)["dup_line_char_frac"]  # noqa: E731
    inside = next(n for n in range(1, 30) if sig(text(n)) <= 0.20)
    assert sig(text(inside - 1)) > 0.20
    assert rep_verdict(text(inside), GR_LINES) is None
    assert rep_verdict(text(inside - 1), GR_LINES)[0] == "gopher_rep.dup_line_char_frac"


def test_dup_para_frac():
    words = uniq_words(200, seed=3)
    paras = [" ".join(words[i * 10 : (i + 1) * 10]) for i in range(7)]
    inside = "\n\n".join(paras + ["a b"] * 4)  # 3 repeats of 11 paragraphs = 0.27
    outside = "\n\n".join(paras[:5] + ["a b"] * 5)  # 4 of 10 = 0.40
    assert rep_verdict(inside) is None
    assert rep_verdict(outside)[0] == "gopher_rep.dup_para_frac"


@pytest.mark.parametrize("k,expected", [(12, None), (13, "gopher_rep.top_2gram_char_frac")])
def test_top_2gram_char_frac(k, expected):
    # 40 unique 5-letter words; the bigram "xx yy" k times: 4k / (200 + 4k) = 0.194 / 0.206.
    words = uniq_words(40, seed=4)
    toks = []
    for i, w in enumerate(words):
        toks.append(w)
        if i < k:
            toks += ["xx", "yy"]
    v = rep_verdict(" ".join(toks))
    assert (v[0] if v else None) == expected


@pytest.mark.parametrize("n_unique,expected", [(57, None), (56, "gopher_rep.dup_5gram_char_frac")])
def test_dup_5gram_char_frac(n_unique, expected):
    # A 5-word phrase twice: 50 covered chars / (5 * n_unique + 50) = 0.149 / 0.152.
    phrase = uniq_words(5, seed=99)
    words = uniq_words(n_unique, seed=5)
    half = n_unique // 2
    text = " ".join(words[:half] + phrase + words[half:] + phrase)
    v = rep_verdict(text)
    assert (v[0] if v else None) == expected


def test_ngram_signals_match_a_direct_count():
    words = "a b c a b c a b d".split()
    s = Q.ngram_repetition(words, (2,), (5,))
    assert s["top_2gram_char_frac"] == pytest.approx(6 / 9)  # "a b" three times
    assert s["dup_5gram_char_frac"] == pytest.approx(8 / 9)  # "a b c a b" at 0 and 3 covers 8 words
    s = Q.ngram_repetition("p q r s t x p q r s t".split(), (2,), (5,))
    assert s["dup_5gram_char_frac"] == pytest.approx(10 / 11)


# ---- Gopher quality ------------------------------------------------------------------------------


def prose(n_words: int, seed: int = 0) -> str:
    """Plausible prose: stop words and 5-letter words, no symbols."""
    w = uniq_words(n_words, seed=seed)
    w[0], w[1] = "the", "and"
    return " ".join(w)


def test_word_count():
    assert qual_verdict(prose(50)) is None
    assert qual_verdict(prose(49)) == ("gopher_quality.word_count", 49.0, "< 50")


def test_mean_word_length():
    ok = " ".join(["the", "and"] + ["abc"] * 48)  # mean 3.0
    low = " ".join(["the", "and"] + ["abc"] * 47 + ["ab"])  # mean 2.98
    assert qual_verdict(ok) is None
    assert qual_verdict(low)[0] == "gopher_quality.mean_word_length"
    high = " ".join(["the", "and"] + ["abcdefghijk"] * 60)
    assert qual_verdict(high)[0] == "gopher_quality.mean_word_length"


def test_symbol_word_ratio():
    base = prose(100).split()
    inside = " ".join(base[:90] + ["#x"] * 10)  # 10 symbols / 100 words
    outside = " ".join(base[:89] + ["#x"] * 11)
    assert qual_verdict(inside) is None
    assert qual_verdict(outside) == ("gopher_quality.symbol_word_ratio", pytest.approx(0.11), "> 0.1")


def test_bullet_lines_ratio():
    w = prose(200).split()
    lines = [" ".join(w[i * 2 : i * 2 + 2]) for i in range(100)]
    inside = "\n".join(("- " + l if i < 90 else l) for i, l in enumerate(lines))
    outside = "\n".join(("- " + l if i < 91 else l) for i, l in enumerate(lines))
    assert qual_verdict(inside) is None
    assert qual_verdict(outside) == ("gopher_quality.bullet_lines_ratio", pytest.approx(0.91), "> 0.9")


def test_ellipsis_lines_ratio():
    w = prose(100).split()
    lines = [" ".join(w[i * 10 : i * 10 + 10]) for i in range(10)]
    inside = "\n".join((l + "…" if i < 3 else l) for i, l in enumerate(lines))
    outside = "\n".join((l + "…" if i < 4 else l) for i, l in enumerate(lines))
    assert qual_verdict(inside) is None
    assert qual_verdict(outside) == ("gopher_quality.ellipsis_lines_ratio", pytest.approx(0.4), "> 0.3")


def test_alpha_words_ratio():
    w = prose(100).split()
    inside = " ".join(w[:80] + ["123"] * 20)
    outside = " ".join(w[:79] + ["123"] * 21)
    assert qual_verdict(inside) is None
    assert qual_verdict(outside) == ("gopher_quality.alpha_words_ratio", pytest.approx(0.79), "< 0.8")


def test_stop_word_count():
    w = uniq_words(60, seed=7)
    assert qual_verdict(" ".join(["the", "with"] + w)) is None
    assert qual_verdict(" ".join(["the"] + w)) == ("gopher_quality.stop_word_count", 1.0, "< 2")


# ---- C4 ------------------------------------------------------------------------------------------


def sentences(n: int, seed: int = 0) -> str:
    w = uniq_words(n * 6, seed=seed)
    return "\n".join(" ".join(w[i * 6 : i * 6 + 6]).capitalize() + "." for i in range(n))


def test_c4_min_sentences():
    new, v, _ = Q.c4_clean(sentences(5), C4)
    assert v is None and new.count(".") == 5
    assert Q.c4_clean(sentences(4), C4)[1] == ("c4.min_sentences", 4.0, "< 5")


def test_c4_document_rules():
    assert Q.c4_clean(sentences(6) + "\nLorem ipsum dolor sit amet.", C4)[1][0] == "c4.lorem_ipsum"
    assert Q.c4_clean(sentences(6) + "\nfunction() { return 1; }", C4)[1][0] == "c4.curly_bracket"


def test_c4_line_rules_remove_lines_not_documents():
    text = (
        sentences(6)
        + "\nPlease enable JavaScript to view this page.\nRead our privacy policy here today.\nTwo words.\nCitation here[12] stays kept okay."
    )
    new, v, sig = Q.c4_clean(text, C4)
    assert v is None and sig["c4_lines_removed"] == 3
    assert "JavaScript" not in new and "privacy" not in new and "Two words." not in new
    assert "Citation here stays kept okay." in new  # citation marker removed, line kept
    # Terminal punctuation rule is off by default (FineWeb), on when asked.
    no_punct = sentences(6) + "\nthis line has no final punctuation mark"
    assert "final punctuation" in Q.c4_clean(no_punct, C4)[0]
    strict = Q.C4Options(filter_no_terminal_punct=True)
    assert "final punctuation" not in Q.c4_clean(no_punct, strict)[0]


# ---- FineWeb -------------------------------------------------------------------------------------


def fw_lines(n_punct: int, n_plain: int, seed: int = 0) -> str:
    w = uniq_words((n_punct + n_plain) * 8, seed=seed)
    lines = [" ".join(w[i * 8 : i * 8 + 8]) for i in range(n_punct + n_plain)]
    return "\n".join((l + "." if i < n_punct else l) for i, l in enumerate(lines))


def test_line_punct_ratio():
    assert fw_verdict(fw_lines(3, 22)) is None  # 0.12
    assert fw_verdict(fw_lines(3, 23))[0] == "fineweb.line_punct_ratio"  # 0.115


def test_short_line_ratio():
    w = uniq_words(400, seed=8)
    long_lines = [" ".join(w[i * 8 : i * 8 + 8]) + "." for i in range(33)]  # 48 chars each
    short = [f"{x}." for x in w[300:367]]  # 6 chars each
    inside = "\n".join(long_lines + short)  # 67 / 100
    outside = "\n".join(long_lines[:32] + short + ["short" + "."])  # 68 / 100
    assert fw_verdict(inside) is None
    assert fw_verdict(outside)[0] == "fineweb.short_line_ratio"


def test_char_dup_ratio():
    w = uniq_words(2000, seed=9)
    body = [" ".join(w[i * 10 : i * 10 + 10]) + "." for i in range(150)]  # ~9,000 chars
    inside = "\n".join(body + ["Dup line.", "Dup line."])
    outside = "\n".join(body + ["A duplicated longer line here, many characters.", "A duplicated longer line here, many characters."] * 2)
    assert fw_verdict(inside) is None
    assert fw_verdict(outside)[0] == "fineweb.char_dup_ratio"


def test_newline_word_ratio():
    w = uniq_words(100, seed=10, length=10)

    # 30 newlines per 100 words (0.30) vs 31.
    def text(n_lines: int) -> str:
        per = [w[i :: n_lines + 1] for i in range(n_lines + 1)]
        return "\n".join(" ".join(p) + "." for p in per)

    assert Q.fineweb_signals(text(30), Q.words_of(text(30)), FW)["newline_word_ratio"] == pytest.approx(0.30)
    assert fw_verdict(text(30)) is None
    assert fw_verdict(text(31))[0] in ("fineweb.newline_word_ratio",)


def test_a_page_nested_too_deep_is_refused_before_it_is_parsed():
    """The hostile page of issue #14 (200,000 nested divs kept `filtered` busy for over 10 minutes):
    refused as extract.too_deep with its measured depth, before Resiliparse sees it."""
    from documents.extract import ExtractOptions, dom_depth
    from documents.rules import _extract

    deep = b"<html><body>" + b"<div>" * 200_000 + b"<p>text</p>" + b"</div>" * 200_000 + b"</body></html>"
    assert dom_depth(deep, 5000) == 5001  # stops counting past the limit
    doc = type("D", (), {"row": {"html": deep, "charset": "utf-8"}, "signals": {}, "text": ""})()
    assert _extract(doc, ExtractOptions(), None) == ("extract.too_deep", "> 5000", 5001.0)
    ordinary = b"<html><body>" + b"<div><p>a line of text<br>and another</p></div>" * 3000 + b"</body></html>"
    assert dom_depth(ordinary, 5000) == 4  # many tags, shallow (html, body, div, p): scanned, kept
